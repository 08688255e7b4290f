//! Rate cards (`rates.yaml`): what each metered figure costs, from which date, with per-project
//! overrides; and exact charges.
//!
//! ```yaml
//! currency: EUR
//! decimals: 6                  # charges are given to this many places (0-12)
//! rates:                       # each from a UTC date until the next one's
//!   - from: 2026-01-01
//!     prices:                  # per unit, as a decimal string (at most 18 places)
//!       invocations: "0.0000002"
//!       gb_seconds: "0.0000166667"
//! projects:                    # overrides: a project's price of a meter, where it names one
//!   example:
//!     - from: 2026-06-01
//!       prices: {invocations: "0"}
//! ```
//!
//! A meter's unit ([`Meter`]) is a figure of the signed records scaled exactly (a GB is 10^9
//! bytes). Money is never a float: a price is an integer count of 10^-18 of the currency, and a
//! charge is computed over the integers, the records' raw figures times their prices, summed,
//! and rounded **once, half up, to `decimals` places** per line item and meter. A statement's
//! total is the sum of its rounded charges, so the lines always add up to it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use alloy_primitives::U256;
use serde::{Deserialize, Serialize};
use tau_proto::counters::Usage;
use tau_proto::yaml::{self, YamlError};

/// The most places a price may have: prices are counted in 10^-18 of the currency.
pub const PRICE_PLACES: u32 = 18;
/// The most places a charge may be given to.
pub const MAX_DECIMALS: u32 = 12;
/// The largest price of one unit, in whole currency.
pub const MAX_PRICE: u64 = 1_000_000_000;

/// A metered figure and its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    /// Invocations finished.
    Invocations,
    /// Memory × wall time: each record's peak memory (GB) times its wall time (seconds).
    GbSeconds,
    /// CPU time, milliseconds.
    CpuMs,
    /// Request bodies received, GB.
    GbIn,
    /// Response bodies sent, GB.
    GbOut,
    /// Key-value reads.
    KvReads,
    /// Key-value writes.
    KvWrites,
    /// Bytes read from storage, GB.
    StorageGbRead,
    /// Bytes written to storage, GB.
    StorageGbWritten,
    /// Outgoing HTTP requests.
    OutboundRequests,
    /// Outgoing HTTP bytes sent and received on the wire, GB.
    OutboundGb,
}

impl Meter {
    /// Every meter, in the order statements list them.
    pub const ALL: [Meter; 11] = [
        Meter::Invocations,
        Meter::GbSeconds,
        Meter::CpuMs,
        Meter::GbIn,
        Meter::GbOut,
        Meter::KvReads,
        Meter::KvWrites,
        Meter::StorageGbRead,
        Meter::StorageGbWritten,
        Meter::OutboundRequests,
        Meter::OutboundGb,
    ];

    /// The record's figure for this meter, in the raw unit the records count in.
    pub fn raw(self, usage: &Usage) -> U256 {
        let one = |n: u64| U256::from(n);
        match self {
            Meter::Invocations => one(usage.invocations),
            Meter::GbSeconds => one(usage.peak_memory) * one(usage.wall_micros),
            Meter::CpuMs => one(usage.cpu_micros),
            Meter::GbIn => one(usage.bytes_in),
            Meter::GbOut => one(usage.bytes_out),
            Meter::KvReads => one(usage.kv_reads),
            Meter::KvWrites => one(usage.kv_writes),
            Meter::StorageGbRead => one(usage.storage_read_bytes),
            Meter::StorageGbWritten => one(usage.storage_written_bytes),
            Meter::OutboundRequests => one(usage.outbound_requests),
            Meter::OutboundGb => {
                one(usage.outbound_sent_bytes) + one(usage.outbound_received_bytes)
            }
        }
    }

    /// How many raw units make one unit of the meter: 10^[`Meter::places`] (bytes ×
    /// microseconds per GB-second, microseconds per millisecond, bytes per GB).
    pub fn divisor(self) -> U256 {
        U256::from(10u64).pow(U256::from(self.places()))
    }
}

impl Meter {
    /// Decimal places of one unit in raw units (the divisor's power of ten).
    pub fn places(self) -> u32 {
        match self {
            Meter::Invocations | Meter::KvReads | Meter::KvWrites | Meter::OutboundRequests => 0,
            Meter::GbSeconds => 15,
            Meter::CpuMs => 3,
            Meter::GbIn
            | Meter::GbOut
            | Meter::StorageGbRead
            | Meter::StorageGbWritten
            | Meter::OutboundGb => 9,
        }
    }

    /// The unit's name, as an invoice prints it.
    pub fn unit(self) -> &'static str {
        match self {
            Meter::Invocations => "invocations",
            Meter::GbSeconds => "GB-s",
            Meter::CpuMs => "CPU ms",
            Meter::KvReads => "reads",
            Meter::KvWrites => "writes",
            Meter::OutboundRequests => "requests",
            Meter::GbIn
            | Meter::GbOut
            | Meter::StorageGbRead
            | Meter::StorageGbWritten
            | Meter::OutboundGb => "GB",
        }
    }
}

/// `value` / 10^places as a decimal, trailing zeros dropped (`1.5`, `20`).
pub fn decimal(value: U256, places: u32) -> String {
    let text = Money { minor: value, decimals: places }.to_string();
    if places == 0 {
        return text;
    }
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl fmt::Display for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).ok();
        f.write_str(name.as_ref().and_then(|v| v.as_str()).unwrap_or("meter"))
    }
}

/// A price of one unit: an integer count of 10^-[`PRICE_PLACES`] of the currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price(U256);

impl Price {
    /// Parses a non-negative decimal (`"0.0000166667"`, `"2"`): at most [`PRICE_PLACES`] places
    /// and [`MAX_PRICE`]; no sign, exponent or separator.
    pub fn parse(text: &str) -> Result<Price, String> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || (text.contains('.') && fraction.is_empty())
        {
            return Err(format!("`{text}` is not a price: write a decimal like \"0.0000002\""));
        }
        if fraction.len() > PRICE_PLACES as usize {
            return Err(format!("`{text}` has more than {PRICE_PLACES} decimal places"));
        }
        let whole: u64 = match whole.parse() {
            Ok(w) if w <= MAX_PRICE => w,
            _ => return Err(format!("`{text}` is more than {MAX_PRICE} per unit")),
        };
        let mut units = U256::from(whole) * U256::from(10u64).pow(U256::from(PRICE_PLACES));
        if !fraction.is_empty() {
            let padded = format!("{fraction:0<width$}", width = PRICE_PLACES as usize);
            let fraction: u64 = padded.parse().map_err(|_| format!("`{text}` is not a price"))?;
            units += U256::from(fraction);
        }
        Ok(Price(units))
    }

    /// The price in 10^-18 of the currency.
    pub fn units(&self) -> U256 {
        self.0
    }
}

/// A UTC date (`2026-01-01`), as the millisecond it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub u64);

impl Date {
    /// Parses `YYYY-MM-DD` (a real date of the proleptic Gregorian calendar, from 1970).
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || format!("`{text}` is not a date like 2026-01-31");
        let mut parts = text.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let (y, m, d): (i64, i64, i64) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
            return Err(bad());
        }
        // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Ok(Date(days as u64 * 86_400_000))
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Date::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Prices from a date on.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The first day they apply.
    pub from: Date,
    /// Price per unit of each meter named (a meter not named is not charged, or, in a project's
    /// override, charged at the card's price).
    pub prices: BTreeMap<Meter, Price>,
}

/// A rate card, checked.
#[derive(Debug, Clone)]
pub struct RateCard {
    /// The currency's code (`EUR`, `USD`, or any 1-12 letters and digits).
    pub currency: String,
    /// Places charges are given to.
    pub decimals: u32,
    /// The card's prices, by date.
    pub rates: Vec<Effective>,
    /// Projects' own prices, by date.
    pub projects: BTreeMap<String, Vec<Effective>>,
}

/// `rates.yaml` as written: prices by name, checked into a [`RateCard`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    currency: String,
    decimals: u32,
    rates: Vec<EffectiveFile>,
    #[serde(default)]
    projects: BTreeMap<String, Vec<EffectiveFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectiveFile {
    from: Date,
    prices: BTreeMap<String, String>,
}

impl RateCard {
    /// Loads and checks `rates.yaml`; errors name the file and field.
    pub fn load(path: &Path) -> Result<RateCard, YamlError> {
        RateCard::check(yaml::load(path)?, path)
    }

    /// Parses and checks a card's text (`path` only names it in messages).
    pub fn parse(text: &str, path: &Path) -> Result<RateCard, YamlError> {
        RateCard::check(yaml::parse(text, path)?, path)
    }

    fn check(file: CardFile, path: &Path) -> Result<RateCard, YamlError> {
        let ok_currency = (1..=12).contains(&file.currency.len())
            && file.currency.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok_currency {
            return Err(YamlError::invalid(path, "currency", "1-12 letters or digits, like EUR"));
        }
        if file.decimals > MAX_DECIMALS {
            return Err(YamlError::invalid(
                path,
                "decimals",
                format!("at most {MAX_DECIMALS}, not {}", file.decimals),
            ));
        }
        if file.rates.is_empty() {
            return Err(YamlError::invalid(path, "rates", "at least one set of prices is needed"));
        }
        let rates = check_list(path, "rates", file.rates)?;
        let mut projects = BTreeMap::new();
        for (project, list) in file.projects {
            let checked = check_list(path, &format!("projects.{project}"), list)?;
            projects.insert(project, checked);
        }
        Ok(RateCard { currency: file.currency, decimals: file.decimals, rates, projects })
    }

    /// The price of `meter` for `project` at `ms`: the project's latest override that names
    /// it, else the card's latest prices (none: not charged).
    pub fn price(&self, project: &str, meter: Meter, ms: u64) -> Option<Price> {
        let at = |list: &[Effective]| {
            list.iter().rev().find(|e| e.from.0 <= ms).and_then(|e| e.prices.get(&meter).copied())
        };
        self.projects.get(project).and_then(|list| at(list)).or_else(|| at(&self.rates))
    }

    /// A charge of this card's currency, from its minor units.
    pub fn money(&self, minor: U256) -> Money {
        Money { minor, decimals: self.decimals }
    }
}

/// Checks one list of prices by date: each meter known, each price a decimal, dates rising.
fn check_list(
    path: &Path,
    field: &str,
    list: Vec<EffectiveFile>,
) -> Result<Vec<Effective>, YamlError> {
    let mut checked: Vec<Effective> = Vec::with_capacity(list.len());
    for (i, effective) in list.into_iter().enumerate() {
        if checked.last().is_some_and(|before| effective.from <= before.from) {
            return Err(YamlError::invalid(
                path,
                format!("{field}[{i}].from"),
                "each set of prices must start after the one before it",
            ));
        }
        let mut prices = BTreeMap::new();
        for (name, text) in effective.prices {
            let at = format!("{field}[{i}].prices.{name}");
            let meter: Meter = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| {
                    let known: Vec<String> = Meter::ALL.iter().map(Meter::to_string).collect();
                    YamlError::invalid(
                        path,
                        &at,
                        format!("no such meter; the meters are {}", known.join(", ")),
                    )
                })?;
            let price = Price::parse(&text).map_err(|e| YamlError::invalid(path, &at, e))?;
            prices.insert(meter, price);
        }
        checked.push(Effective { from: effective.from, prices });
    }
    Ok(checked)
}

/// Why a charge cannot be computed.
#[derive(Debug, thiserror::Error)]
#[error("the charge of {meter} is beyond 2^256 before rounding")]
pub struct Overflow {
    /// The meter.
    pub meter: Meter,
}

/// One line item's charges, built record by record: the exact sum of each meter's raw figures
/// times their prices, rounded only when read.
#[derive(Debug, Clone, Default)]
pub struct Charges {
    /// Per meter, Σ raw × price units (10^-18 of the currency per unit of the meter).
    exact: BTreeMap<Meter, U256>,
}

impl Charges {
    /// Adds one record of `project` whose window starts at `window_ms`.
    pub fn add(
        &mut self,
        card: &RateCard,
        project: &str,
        window_ms: u64,
        usage: &Usage,
    ) -> Result<(), Overflow> {
        for meter in Meter::ALL {
            let Some(price) = card.price(project, meter, window_ms) else { continue };
            let raw = meter.raw(usage);
            if raw.is_zero() {
                continue;
            }
            let product = raw.checked_mul(price.units()).ok_or(Overflow { meter })?;
            let sum = self.exact.entry(meter).or_default();
            *sum = sum.checked_add(product).ok_or(Overflow { meter })?;
        }
        Ok(())
    }

    /// Each meter's charge in minor units of the card (10^-decimals), rounded half up.
    pub fn rounded(&self, card: &RateCard) -> Result<BTreeMap<Meter, U256>, Overflow> {
        self.exact
            .iter()
            .map(|(meter, exact)| Ok((*meter, round(*exact, *meter, card.decimals)?)))
            .collect()
    }
}

/// `exact` (Σ raw × price in 10^-18 per unit) in minor units of `decimals` places, half up.
fn round(exact: U256, meter: Meter, decimals: u32) -> Result<U256, Overflow> {
    let ten = |places: u32| U256::from(10u64).pow(U256::from(places));
    let numerator = exact.checked_mul(ten(decimals)).ok_or(Overflow { meter })?;
    let denominator = meter.divisor() * ten(PRICE_PLACES);
    let half = denominator / U256::from(2u64);
    Ok(numerator.checked_add(half).ok_or(Overflow { meter })? / denominator)
}

/// An amount of a card's currency, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    /// In 10^-decimals of the currency.
    pub minor: U256,
    /// The places.
    pub decimals: u32,
}

impl fmt::Display for Money {
    /// `12.345600` for 12345600 minor units at 6 places.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.minor.to_string();
        let places = self.decimals as usize;
        if places == 0 {
            return f.write_str(&digits);
        }
        let padded = format!("{digits:0>width$}", width = places + 1);
        let (whole, fraction) = padded.split_at(padded.len() - places);
        write!(f, "{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "currency: EUR\ndecimals: 6\nrates:\n  - from: 2026-01-01\n    prices:\n      invocations: \"0.0000002\"\n      gb_seconds: \"0.0000166667\"\n      cpu_ms: \"0.000001\"\n  - from: 2026-07-01\n    prices:\n      invocations: \"0.0000003\"\nprojects:\n  free:\n    - from: 2026-01-01\n      prices: {invocations: \"0\"}\n";

    fn card() -> RateCard {
        RateCard::parse(CARD, Path::new("rates.yaml")).unwrap()
    }

    fn day(text: &str) -> u64 {
        Date::parse(text).unwrap().0
    }

    #[test]
    fn prices_and_dates_parse_exactly_or_not_at_all() {
        assert_eq!(Price::parse("0.0000002").unwrap().units(), U256::from(200_000_000_000u64));
        assert_eq!(Price::parse("2").unwrap().units(), U256::from(2_000_000_000_000_000_000u64));
        for bad in ["-1", "1e-6", "0.", ".5", "1,5", "", "0.0000000000000000001", "1000000001"] {
            assert!(Price::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(day("1970-01-01"), 0);
        assert_eq!(day("2026-12-04"), 1_796_342_400_000);
        assert_eq!(day("2024-02-29"), 1_709_164_800_000);
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "1969-12-31", "2026/01/01"] {
            assert!(Date::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_typo_names_the_file_and_field() {
        let path = Path::new("billing/rates.yaml");
        let typo = CARD.replace("cpu_ms", "cpu_msec");
        let error = RateCard::parse(&typo, path).unwrap_err().to_string();
        assert!(error.contains("billing/rates.yaml"), "{error}");
        assert!(error.contains("field `rates[0].prices.cpu_msec`: no such meter"), "{error}");
        let bad_price = CARD.replace("\"0.000001\"", "\"0,000001\"");
        let error = RateCard::parse(&bad_price, path).unwrap_err().to_string();
        assert!(error.contains("rates[0].prices.cpu_ms") && error.contains("0,000001"), "{error}");
        let unordered = CARD.replace("2026-07-01", "2025-07-01");
        let error = RateCard::parse(&unordered, path).unwrap_err().to_string();
        assert!(error.contains("rates[1].from"), "{error}");
        let error = RateCard::parse(&CARD.replace("decimals: 6", "decimals: 13"), path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `decimals`"), "{error}");
        let error = RateCard::parse(&CARD.replace("currency", "curency"), path).unwrap_err();
        assert!(error.to_string().contains("curency"), "{error}");
    }

    #[test]
    fn the_price_in_force_is_the_projects_then_the_cards_by_date() {
        let card = card();
        let price = |project: &str, meter, date: &str| card.price(project, meter, day(date));
        assert_eq!(price("p", Meter::Invocations, "2026-03-01"), Price::parse("0.0000002").ok());
        assert_eq!(price("p", Meter::Invocations, "2026-07-01"), Price::parse("0.0000003").ok());
        // The July prices name only invocations: no meter carries over from earlier prices.
        assert_eq!(price("p", Meter::CpuMs, "2026-07-02"), None);
        assert_eq!(price("p", Meter::CpuMs, "2025-12-31"), None, "before the first prices");
        assert_eq!(price("free", Meter::Invocations, "2026-08-01"), Price::parse("0").ok());
        assert_eq!(price("free", Meter::CpuMs, "2026-03-01"), Price::parse("0.000001").ok());
    }

    #[test]
    fn a_million_records_at_six_places_total_to_the_last_unit() {
        let card = card();
        let mut charges = Charges::default();
        let (march, july) = (day("2026-03-01"), day("2026-07-15"));
        // 600,000 records in March and 400,000 in July, each one invocation of 128 MiB for
        // 0.25 s, 3 ms of CPU: in floats, 0.0000002 added a million times is not 0.2.
        let usage = Usage {
            invocations: 1,
            wall_micros: 250_000,
            cpu_micros: 3_000,
            peak_memory: 128 << 20,
            ..Usage::default()
        };
        for i in 0..1_000_000u64 {
            let window = if i < 600_000 { march } else { july };
            charges.add(&card, "shop", window, &usage).unwrap();
        }
        let rounded = charges.rounded(&card).unwrap();
        // Invocations: 600,000 × 0.0000002 + 400,000 × 0.0000003 = 0.24 EUR.
        assert_eq!(card.money(rounded[&Meter::Invocations]).to_string(), "0.240000");
        // GB-seconds, March only (July's prices name none): 600,000 × 0.134217728 GB × 0.25 s
        // = 20,132.6592 GB-s × 0.0000166667 = 0.33554499... EUR, half up to 0.335545.
        assert_eq!(card.money(rounded[&Meter::GbSeconds]).to_string(), "0.335545");
        // CPU, March only: 600,000 × 3 ms × 0.000001 = 1.8 EUR.
        assert_eq!(card.money(rounded[&Meter::CpuMs]).to_string(), "1.800000");
    }

    #[test]
    fn rounding_is_half_up_once_per_line() {
        let card = RateCard::parse(
            "currency: USD\ndecimals: 2\nrates: [{from: 2026-01-01, prices: {invocations: \"0.005\"}}]\n",
            Path::new("r.yaml"),
        )
        .unwrap();
        let one = Usage { invocations: 1, ..Usage::default() };
        let mut charges = Charges::default();
        // Before the card's first prices: nothing is charged.
        charges.add(&card, "p", 0, &one).unwrap();
        assert!(charges.rounded(&card).unwrap().is_empty());
        charges.add(&card, "p", day("2026-01-01"), &one).unwrap();
        // Half a cent rounds up.
        assert_eq!(
            card.money(charges.rounded(&card).unwrap()[&Meter::Invocations]).to_string(),
            "0.01"
        );
        charges.add(&card, "p", day("2026-01-01"), &one).unwrap();
        // Two half cents are one cent exactly: not 0.01 + 0.01 rounded separately.
        assert_eq!(
            card.money(charges.rounded(&card).unwrap()[&Meter::Invocations]).to_string(),
            "0.01"
        );
        assert_eq!(Money { minor: U256::from(5u64), decimals: 3 }.to_string(), "0.005");
        assert_eq!(Money { minor: U256::from(12_345u64), decimals: 0 }.to_string(), "12345");
    }
}

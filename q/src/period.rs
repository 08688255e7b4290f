//! A period of time as the command line names it: `FROM..TO`, a half-open interval `[FROM, TO)`
//! of window start times. Each end is a date (`2026-11-01`, midnight UTC), an RFC 3339 time
//! (`2026-11-01T12:00:00Z`), `now`, or milliseconds since the Unix epoch; an end left out is
//! open (`..2026-12-01`, `2026-11-01..`, `..`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `[from_ms, to_ms)`, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First millisecond in the period.
    pub from_ms: u64,
    /// First millisecond after it.
    pub to_ms: u64,
}

/// The end of time as far as q stores it (window starts are compared as `i64` in the database).
pub const OPEN_END: u64 = i64::MAX as u64;

impl Period {
    /// Every window ever.
    pub const ALL: Period = Period { from_ms: 0, to_ms: OPEN_END };
}

/// Why a period could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    /// No `..` between the ends.
    #[error("`{0}` is not a period: write FROM..TO (either end may be left out)")]
    NotAPeriod(String),
    /// FROM is not before TO.
    #[error("the period `{0}` is empty: FROM must come before TO")]
    Empty(String),
    /// Milliseconds past what q stores.
    #[error("`{0}` is too large for milliseconds")]
    TooLarge(String),
    /// An end that is no time q reads.
    #[error(
        "`{text}` is not a date (2026-11-01), a time (2026-11-01T12:00:00Z), `now` or milliseconds: {reason}"
    )]
    NotATime {
        /// The end as written.
        text: String,
        /// Why.
        reason: String,
    },
    /// A time before the Unix epoch.
    #[error("`{0}` is before 1970")]
    Before1970(String),
}

fn parse_end(text: &str, open: u64) -> Result<u64, PeriodError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(open);
    }
    if text == "now" {
        return Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| PeriodError::TooLarge(text.to_string()));
    }
    // A bare date is midnight UTC.
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    let time = humantime::parse_rfc3339_weak(&full)
        .map_err(|e| PeriodError::NotATime { text: text.to_string(), reason: e.to_string() })?;
    let since =
        time.duration_since(UNIX_EPOCH).map_err(|_| PeriodError::Before1970(text.to_string()))?;
    Ok(since.as_millis() as u64)
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (from, to) =
            text.split_once("..").ok_or_else(|| PeriodError::NotAPeriod(text.to_string()))?;
        let period = Period { from_ms: parse_end(from, 0)?, to_ms: parse_end(to, OPEN_END)? };
        if period.from_ms >= period.to_ms {
            return Err(PeriodError::Empty(text.to_string()));
        }
        Ok(period)
    }
}

fn show(ms: u64) -> String {
    if ms == OPEN_END {
        return String::new();
    }
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    if ms.is_multiple_of(1000) {
        humantime::format_rfc3339_seconds(time).to_string()
    } else {
        humantime::format_rfc3339_millis(time).to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = if self.from_ms == 0 { String::new() } else { show(self.from_ms) };
        write!(f, "{from}..{}", show(self.to_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_can_be_dates_times_milliseconds_or_open() {
        let p: Period = "2026-11-01..2026-12-01".parse().expect("period");
        assert_eq!(p, Period { from_ms: 1_793_491_200_000, to_ms: 1_796_083_200_000 });
        assert_eq!(p.to_string(), "2026-11-01T00:00:00Z..2026-12-01T00:00:00Z");
        let p: Period = "2026-11-01T12:00:00Z..".parse().expect("period");
        assert_eq!(p, Period { from_ms: 1_793_534_400_000, to_ms: OPEN_END });
        assert_eq!("..".parse::<Period>().expect("period"), Period::ALL);
        assert_eq!(Period::ALL.to_string(), "..");
        assert_eq!("5..17".parse::<Period>().expect("period"), Period { from_ms: 5, to_ms: 17 });
        let now: Period = "..now".parse().expect("period");
        assert!(now.to_ms > 1_793_491_200_000);
    }

    #[test]
    fn bad_periods_say_what_is_wrong() {
        assert!("2026-11-01".parse::<Period>().unwrap_err().to_string().contains("FROM..TO"));
        assert!(
            "nov..dec".parse::<Period>().unwrap_err().to_string().contains("`nov` is not a date")
        );
        assert!("9..3".parse::<Period>().unwrap_err().to_string().contains("empty"));
    }
}

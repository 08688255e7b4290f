//! Usage proofs: what `q prove` writes and `q verify-proof` (and `contracts/UsageVerifier.sol`)
//! checks.
//!
//! A proof covers a period (and optionally one project). Its line items are the per-(project,
//! function) sums of the stored records whose windows start in the period, each with the keccak
//! of its records' hashes and, when priced with a rate card ([`crate::rates`]), its charge per
//! meter and in all. The line items, sorted by project then function, are the leaves of a
//! Merkle *sum* tree: every node carries a keccak hash and the six sums below it (the five
//! figures and the charge), so the root commits to every line item and to the totals. q signs
//! the statement (period, project, root, totals, charge, currency, the rate card's digest, and
//! the root it amends) as EIP-712 typed data with its secp256k1 key; a contract checks a line
//! item with one signature recovery and the line's path to the root.
//!
//! An amendment covers the records of an already proven period that q stored after the proof
//! was made (late records): only those, priced by the same card, its statement naming the
//! amended root. The original's and the amendments' totals add up to the period's; charges add
//! up too, to within the rounding of each line and meter (half a minor unit each).
//!
//! Hashing (all words 32 bytes, as Solidity's `abi.encode` lays them out):
//! - leaf  = keccak256(0, keccak256(project), keccak256(function), invocations, errors,
//!   wallMicros, cpuMicros, records, charge, recordsDigest, chargesDigest)
//! - inner = keccak256(1, left.hash, left's six sums, right.hash, right's six sums); its sums
//!   are the children's sums added
//! - a level with an odd count carries its last node up unchanged
//! - recordsDigest = keccak256 of the line's record hashes (BLAKE3, 32 bytes each) concatenated
//!   in (node, seq) order
//! - chargesDigest = keccak256 of (meter's index in [`Meter::ALL`], amount) for each charged
//!   meter in that order (of nothing for an unpriced line)
//! - a charge is in minor units of the statement's currency (10^-decimals)
//!
//! The file is JSON in one canonical rendering (the one q writes): `verify` also refuses a file
//! that differs from it by any byte, so no edit goes unnoticed, even where the numbers survive it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use alloy_primitives::{Address, B256, Keccak256, Signature, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};
use tau_proto::yaml::YamlError;

use crate::key::SigningKey;
use crate::period::Period;
use crate::rates::{Charges, Meter, RateCard};
use crate::store::{Proven, Store, StoreError, StoredRecord};

/// The value of a proof file's `format`.
pub const FORMAT: &str = "tau-q-usage-proof/2";
/// The EIP-712 domain's name.
pub const DOMAIN_NAME: &str = "Tau q usage";
/// The EIP-712 domain's version.
pub const DOMAIN_VERSION: &str = "2";

mod typed {
    #![allow(missing_docs, unreachable_pub)]
    alloy_sol_types::sol! {
        /// What q signs. `project` is empty when the proof covers every project.
        #[derive(Debug, PartialEq, Eq)]
        struct UsageStatement {
            uint64 periodStart;
            uint64 periodEnd;
            string project;
            bytes32 amends;
            bytes32 root;
            uint64 invocations;
            uint64 errors;
            uint64 wallMicros;
            uint64 cpuMicros;
            uint64 records;
            uint128 charge;
            string currency;
            uint8 decimals;
            bytes32 ratesDigest;
        }
    }
}
pub use typed::UsageStatement;

/// An amount of money in minor units (10^-decimals of the statement's currency); a decimal
/// string in the file, as JSON numbers past 2^53 are not read exactly everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub u128);

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let canonical = text.bytes().all(|b| b.is_ascii_digit())
            && !text.is_empty()
            && (text == "0" || !text.starts_with('0'));
        match text.parse() {
            Ok(n) if canonical => Ok(Amount(n)),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not an amount (minor units, digits only)"
            ))),
        }
    }
}

/// The six sums a line item and every tree node carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sums {
    /// Invocations.
    pub invocations: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Wall-clock time, microseconds.
    pub wall_micros: u64,
    /// CPU time, microseconds.
    pub cpu_micros: u64,
    /// Records summed.
    pub records: u64,
    /// What they cost, in minor units (0 in an unpriced proof).
    pub charge: Amount,
}

impl Sums {
    /// One record's contribution.
    pub fn of(record: &StoredRecord) -> Self {
        Sums {
            invocations: record.usage.invocations,
            errors: record.usage.errors,
            wall_micros: record.usage.wall_micros,
            cpu_micros: record.usage.cpu_micros,
            records: 1,
            charge: Amount(0),
        }
    }

    /// Field by field; `None` on overflow (the contract reverts there too).
    pub fn checked_add(self, other: Sums) -> Option<Sums> {
        Some(Sums {
            invocations: self.invocations.checked_add(other.invocations)?,
            errors: self.errors.checked_add(other.errors)?,
            wall_micros: self.wall_micros.checked_add(other.wall_micros)?,
            cpu_micros: self.cpu_micros.checked_add(other.cpu_micros)?,
            records: self.records.checked_add(other.records)?,
            charge: Amount(self.charge.0.checked_add(other.charge.0)?),
        })
    }

    fn words(&self) -> [B256; 6] {
        let [a, b, c, d, e] =
            [self.invocations, self.errors, self.wall_micros, self.cpu_micros, self.records]
                .map(word);
        [a, b, c, d, e, B256::from(U256::from(self.charge.0))]
    }
}

fn word(n: u64) -> B256 {
    B256::from(U256::from(n))
}

fn hash_words(words: &[B256]) -> B256 {
    let mut hasher = Keccak256::new();
    for w in words {
        hasher.update(w);
    }
    hasher.finalize()
}

/// A node of the sum tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Its hash.
    pub hash: B256,
    /// The sums below it.
    pub sums: Sums,
}

impl Node {
    /// A leaf: one line item.
    pub fn leaf(
        project: &str,
        function: &str,
        sums: Sums,
        records_digest: B256,
        charges_digest: B256,
    ) -> Node {
        let mut words = vec![word(0), keccak256(project), keccak256(function)];
        words.extend(sums.words());
        words.push(records_digest);
        words.push(charges_digest);
        Node { hash: hash_words(&words), sums }
    }

    /// The parent of `left` and `right`; `None` if a sum overflows.
    pub fn parent(left: &Node, right: &Node) -> Option<Node> {
        let mut words = vec![word(1), left.hash];
        words.extend(left.sums.words());
        words.push(right.hash);
        words.extend(right.sums.words());
        Some(Node { hash: hash_words(&words), sums: left.sums.checked_add(right.sums)? })
    }
}

/// Which side of the path a sibling is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The sibling is the left child; the path's node the right.
    Left,
    /// The sibling is the right child.
    Right,
}

/// One step from a leaf towards the root: the sibling met there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Where the sibling sits.
    pub side: Side,
    /// The sibling's hash, 0x-hex.
    pub hash: String,
    /// The sibling's sums.
    pub totals: Sums,
}

/// The digest of a line's charges per meter, as its leaf hashes them.
pub fn charges_digest(charges: &BTreeMap<Meter, Amount>) -> B256 {
    let mut words = Vec::with_capacity(2 * charges.len());
    for (meter, amount) in charges {
        let index = Meter::ALL.iter().position(|m| m == meter).expect("every meter is in ALL");
        words.push(word(index as u64));
        words.push(B256::from(U256::from(amount.0)));
    }
    hash_words(&words)
}

/// One line item and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// Its sums over the period; `charge` is the sum of `charges`.
    pub totals: Sums,
    /// Its charge per meter priced, in minor units (empty in an unpriced proof).
    pub charges: BTreeMap<Meter, Amount>,
    /// keccak256 of its records' hashes in (node, seq) order, 0x-hex.
    pub records_digest: String,
    /// Siblings from the leaf up to the root.
    pub path: Vec<Step>,
}

impl LineItem {
    /// `project/function`: how `--line` names it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.project, self.function)
    }
}

/// The EIP-712 domain, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Always [`DOMAIN_NAME`].
    pub name: String,
    /// Always [`DOMAIN_VERSION`].
    pub version: String,
    /// The chain whose contracts may accept the statement.
    pub chain_id: u64,
}

impl Domain {
    fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(self.name.clone().into()),
            Some(self.version.clone().into()),
            Some(U256::from(self.chain_id)),
            None,
            None,
        )
    }
}

/// The signed statement, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// First millisecond of the period.
    pub period_start_ms: u64,
    /// First millisecond after it.
    pub period_end_ms: u64,
    /// The project, or empty for every project.
    pub project: String,
    /// The root of the proof this one amends (its late records), 0x-hex; zero for an original.
    pub amends: String,
    /// The sum tree's root hash, 0x-hex.
    pub root: String,
    /// The sums at the root; `charge` is the total.
    pub totals: Sums,
    /// The currency of the charges (empty in an unpriced proof).
    pub currency: String,
    /// The places of a charge: an amount counts 10^-decimals of the currency.
    pub decimals: u8,
    /// keccak256 of the rate card's file, 0x-hex; zero in an unpriced proof.
    pub rates_digest: String,
}

impl Statement {
    fn typed(&self) -> Result<UsageStatement, ProofError> {
        Ok(UsageStatement {
            periodStart: self.period_start_ms,
            periodEnd: self.period_end_ms,
            project: self.project.clone(),
            amends: B256::from(parse_hex::<32>("statement.amends", &self.amends)?),
            root: B256::from(parse_hex::<32>("statement.root", &self.root)?),
            invocations: self.totals.invocations,
            errors: self.totals.errors,
            wallMicros: self.totals.wall_micros,
            cpuMicros: self.totals.cpu_micros,
            records: self.totals.records,
            charge: self.totals.charge.0,
            currency: self.currency.clone(),
            decimals: self.decimals,
            ratesDigest: B256::from(parse_hex::<32>("statement.rates_digest", &self.rates_digest)?),
        })
    }

    /// The charge total, written in the currency (`12.345600 EUR`), or "unpriced".
    pub fn charge_text(&self) -> String {
        if self.currency.is_empty() {
            return "unpriced".into();
        }
        let money = crate::rates::Money {
            minor: U256::from(self.totals.charge.0),
            decimals: u32::from(self.decimals),
        };
        format!("{money} {}", self.currency)
    }
}

/// What `q prove` writes: the signed statement and every line item with its Merkle path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    /// [`FORMAT`].
    pub format: String,
    /// The EIP-712 domain.
    pub domain: Domain,
    /// What is signed.
    pub statement: Statement,
    /// The address that signed, 0x-hex.
    pub signer: String,
    /// The signature: r, s and v (27 or 28), 65 bytes, 0x-hex.
    pub signature: String,
    /// Every line item with its path.
    pub line_items: Vec<LineItem>,
}

impl ProofFile {
    /// The file's text: the one canonical rendering.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        text
    }
}

/// Why `q prove` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A line's sums do not fit 64 bits.
    #[error("the sums of {0} do not fit in 64 bits")]
    Overflow(String),
    /// Signing failed.
    #[error("signing the statement failed: {0}")]
    Sign(String),
    /// A charge does not fit.
    #[error(transparent)]
    Charge(#[from] crate::rates::Overflow),
    /// The proof to amend cannot be amended.
    #[error("{0}")]
    Amend(String),
}

/// Why a proof does not verify. Each names what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    /// Not JSON, or not the shape of a proof.
    #[error("not a q proof: {0}")]
    Shape(String),
    /// Another format.
    #[error("format `{0}` is not {FORMAT}")]
    Format(String),
    /// The domain is not q's.
    #[error(
        "the EIP-712 domain is `{0}` version `{1}`, not q's `{DOMAIN_NAME}` version `{DOMAIN_VERSION}`"
    )]
    Domain(String, String),
    /// A hex field is malformed.
    #[error("{field}: {reason}")]
    Hex {
        /// Which field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The signature is malformed or does not recover to the signer.
    #[error("the signature {0}")]
    Signature(String),
    /// The signer is not the one required.
    #[error("signed by {found}, not by the required signer {required}")]
    Signer {
        /// Who signed.
        found: String,
        /// Who should have.
        required: String,
    },
    /// A line item does not lead to the signed root.
    #[error("line item {line}: {reason}")]
    Line {
        /// `project/function`.
        line: String,
        /// What is wrong.
        reason: String,
    },
    /// `--line` names no line item.
    #[error("the proof has no line item {0}")]
    NoSuchLine(String),
    /// The line items do not add up to the statement's totals.
    #[error("the line items add up to {found:?}, the statement says {signed:?}")]
    Incomplete {
        /// Their sum.
        found: Box<Sums>,
        /// The statement's totals.
        signed: Box<Sums>,
    },
    /// The statement's pricing is not whole.
    #[error("{0}")]
    Pricing(String),
    /// The numbers check out but the bytes are not the ones q wrote.
    #[error("the file differs from q's rendering of its own content at byte {0}: it was edited")]
    NotCanonical(usize),
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Parses `0x` + lowercase hex of exactly `N` bytes.
fn parse_hex<const N: usize>(field: &str, text: &str) -> Result<[u8; N], ProofError> {
    let bad = |reason: &str| ProofError::Hex { field: field.to_string(), reason: reason.into() };
    let digits = text.strip_prefix("0x").ok_or_else(|| bad("does not start with 0x"))?;
    if digits.len() != 2 * N {
        return Err(bad(&format!("is {} hex digits, not {}", digits.len(), 2 * N)));
    }
    if digits.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad("holds a character that is not a lowercase hex digit"));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| bad(&e.to_string()))?;
    Ok(out)
}

/// The sum tree over the leaves, bottom level first.
fn levels(leaves: Vec<Node>) -> Result<Vec<Vec<Node>>, ProveError> {
    let mut levels = vec![leaves];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().expect("non-empty");
        let mut up = Vec::with_capacity(below.len().div_ceil(2));
        for pair in below.chunks(2) {
            up.push(match pair {
                [left, right] => Node::parent(left, right)
                    .ok_or_else(|| ProveError::Overflow("the period's totals".into()))?,
                [alone] => *alone,
                _ => unreachable!("chunks of two"),
            });
        }
        levels.push(up);
    }
    Ok(levels)
}

fn path(levels: &[Vec<Node>], mut index: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for level in &levels[..levels.len() - 1] {
        let sibling = index ^ 1;
        if let Some(node) = level.get(sibling) {
            let side = if sibling < index { Side::Left } else { Side::Right };
            steps.push(Step { side, hash: hex0x(node.hash.as_slice()), totals: node.sums });
        }
        index /= 2;
    }
    steps
}

/// A rate card and the digest of its file, which a priced proof names.
#[derive(Debug, Clone)]
pub struct Pricing {
    /// The card.
    pub card: RateCard,
    /// keccak256 of the file's bytes.
    pub digest: B256,
}

impl Pricing {
    /// Reads and checks a rate card file.
    pub fn load(path: &Path) -> Result<Pricing, YamlError> {
        let read = |source| YamlError::Read { path: path.display().to_string(), source };
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| {
            read(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        })?;
        Ok(Pricing { card: RateCard::parse(&text, path)?, digest: keccak256(&bytes) })
    }

    /// Its currency's decimals, as the statement carries them.
    fn decimals(&self) -> u8 {
        u8::try_from(self.card.decimals).expect("a card's decimals are at most 12")
    }
}

/// What to prove.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Windows starting in this period.
    pub period: Period,
    /// Only this project's.
    pub project: Option<&'a str>,
    /// The EIP-712 domain's chain.
    pub chain_id: u64,
    /// Price the line items with this card.
    pub pricing: Option<&'a Pricing>,
}

impl<'a> Request<'a> {
    /// An unpriced proof of `period` (and `project`) for chain 1.
    pub fn new(period: Period, project: Option<&'a str>) -> Self {
        Request { period, project, chain_id: 1, pricing: None }
    }
}

/// A line item being summed from its records.
struct Accumulating {
    project: String,
    function: String,
    sums: Sums,
    digest: Keccak256,
    charges: Charges,
}

/// A summed line item: its sums with the charge, its charges and digests.
struct Summed {
    project: String,
    function: String,
    sums: Sums,
    charges: BTreeMap<Meter, Amount>,
    records_digest: B256,
}

impl Accumulating {
    fn finish(self, pricing: Option<&Pricing>) -> Result<Summed, ProveError> {
        let name = format!("{}/{}", self.project, self.function);
        let mut charges = BTreeMap::new();
        let mut sums = self.sums;
        if let Some(pricing) = pricing {
            for (meter, minor) in self.charges.rounded(&pricing.card)? {
                let amount =
                    u128::try_from(minor).map_err(|_| ProveError::Overflow(name.clone()))?;
                charges.insert(meter, Amount(amount));
                sums.charge.0 = sums
                    .charge
                    .0
                    .checked_add(amount)
                    .ok_or_else(|| ProveError::Overflow(name.clone()))?;
            }
        }
        Ok(Summed {
            project: self.project,
            function: self.function,
            sums,
            charges,
            records_digest: self.digest.finalize(),
        })
    }
}

/// Builds and signs the proof of `request` from the store's records, and notes it in the store.
pub async fn prove(
    store: &Store,
    request: Request<'_>,
    key: &SigningKey,
) -> Result<ProofFile, ProveError> {
    let through = store.clock().await?;
    build(store, request, None, through, key).await
}

/// As [`prove`], over the records stored by an ingest up to `through` (a [`Store::clock`]
/// read earlier), so that what else is read of them agrees with the proof.
pub async fn prove_through(
    store: &Store,
    request: Request<'_>,
    through: u64,
    key: &SigningKey,
) -> Result<ProofFile, ProveError> {
    build(store, request, None, through, key).await
}

/// Builds and signs the amendment of `old`, a proof this store noted, from the records of its
/// period stored after it was made; priced by the same card, or unpriced like it.
pub async fn amend(
    store: &Store,
    old: &ProofFile,
    pricing: Option<&Pricing>,
    key: &SigningKey,
) -> Result<ProofFile, ProveError> {
    let s = &old.statement;
    let fail = |reason: String| Err(ProveError::Amend(reason));
    let old_digest = parse_hex::<32>("statement.rates_digest", &s.rates_digest)
        .map_err(|e| ProveError::Amend(e.to_string()))?;
    match pricing {
        None if old_digest != [0; 32] => {
            return fail(format!(
                "the proof is priced (rates {}): give the same rate card with --rates",
                s.rates_digest
            ));
        }
        Some(p) if p.digest.0 != old_digest => {
            return fail(format!(
                "the proof was priced by the rate card {}, not by the one given ({}): an amendment \
                 is priced by the same card",
                if old_digest == [0; 32] { "(none)".to_string() } else { s.rates_digest.clone() },
                hex0x(p.digest.as_slice())
            ));
        }
        _ => {}
    }
    let root =
        parse_hex::<32>("statement.root", &s.root).map_err(|e| ProveError::Amend(e.to_string()))?;
    let proofs = store.proofs().await?;
    let Some(noted) = proofs.iter().find(|p| {
        p.root == root
            && p.period_start_ms == s.period_start_ms
            && p.period_end_ms == s.period_end_ms
            && p.project == s.project
    }) else {
        return fail(format!("no proof with root {} was made from this database", s.root));
    };
    if let Some(later) = proofs.iter().find(|p| p.amends == root) {
        return fail(format!(
            "it was amended already, by the proof with root {}: amend that one",
            hex0x(&later.root)
        ));
    }
    let late =
        store.count_after(s.period_start_ms, s.period_end_ms, project_of(s), noted.through).await?;
    if late == 0 {
        return fail("no record of its period was stored after it: nothing to amend".into());
    }
    let request = Request {
        period: Period { from_ms: s.period_start_ms, to_ms: s.period_end_ms },
        project: project_of(s),
        chain_id: old.domain.chain_id,
        pricing,
    };
    let through = store.clock().await?;
    build(store, request, Some(noted), through, key).await
}

fn project_of(s: &Statement) -> Option<&str> {
    Some(s.project.as_str()).filter(|p| !p.is_empty())
}

/// The proof of the records of `request` stored by an ingest after `amends.through` (or any)
/// up to `through`.
async fn build(
    store: &Store,
    request: Request<'_>,
    amends: Option<&Proven>,
    through: u64,
    key: &SigningKey,
) -> Result<ProofFile, ProveError> {
    let Request { period, project, chain_id, pricing } = request;
    let mut done: Vec<Summed> = Vec::new();
    let mut current: Option<Accumulating> = None;
    let mut failed: Option<ProveError> = None;
    let after = amends.map(|p| p.through);
    store
        .records_received(period.from_ms, period.to_ms, project, (after, through), |record| {
            let same = current
                .as_ref()
                .is_some_and(|c| c.project == record.project && c.function == record.function);
            if !same {
                if let Some(line) = current.take() {
                    match line.finish(pricing) {
                        Ok(summed) => done.push(summed),
                        Err(e) => {
                            let text = e.to_string();
                            failed = Some(e);
                            return Err(std::io::Error::other(text));
                        }
                    }
                }
                current = Some(Accumulating {
                    project: record.project.clone(),
                    function: record.function.clone(),
                    sums: Sums::default(),
                    digest: Keccak256::new(),
                    charges: Charges::default(),
                });
            }
            let line = current.as_mut().expect("set above");
            line.sums = line.sums.checked_add(Sums::of(&record)).ok_or_else(|| {
                std::io::Error::other(format!(
                    "the sums of {}/{} do not fit in 64 bits",
                    line.project, line.function
                ))
            })?;
            if let Some(pricing) = pricing {
                line.charges
                    .add(&pricing.card, &record.project, record.window_start_ms, &record.usage)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            line.digest.update(record.hash);
            Ok(())
        })
        .await
        .map_err(|e| failed.take().unwrap_or(ProveError::Store(e)))?;
    if let Some(line) = current.take() {
        done.push(line.finish(pricing)?);
    }

    let leaves = done
        .iter()
        .map(|l| {
            let charges = charges_digest(&l.charges);
            Node::leaf(&l.project, &l.function, l.sums, l.records_digest, charges)
        })
        .collect();
    let levels = levels(leaves)?;
    let root = levels
        .last()
        .and_then(|l| l.first())
        .copied()
        .unwrap_or(Node { hash: B256::ZERO, sums: Sums::default() });
    let line_items = done
        .into_iter()
        .enumerate()
        .map(|(i, line)| LineItem {
            project: line.project,
            function: line.function,
            totals: line.sums,
            charges: line.charges,
            records_digest: hex0x(line.records_digest.as_slice()),
            path: path(&levels, i),
        })
        .collect();

    let domain = Domain { name: DOMAIN_NAME.into(), version: DOMAIN_VERSION.into(), chain_id };
    let amends_root = amends.map_or([0; 32], |p| p.root);
    let statement = Statement {
        period_start_ms: period.from_ms,
        period_end_ms: period.to_ms,
        project: project.unwrap_or_default().to_string(),
        amends: hex0x(&amends_root),
        root: hex0x(root.hash.as_slice()),
        totals: root.sums,
        currency: pricing.map(|p| p.card.currency.clone()).unwrap_or_default(),
        decimals: pricing.map_or(0, Pricing::decimals),
        rates_digest: hex0x(pricing.map_or(B256::ZERO, |p| p.digest).as_slice()),
    };
    let typed = statement.typed().expect("q's own hex is well formed");
    let digest = typed.eip712_signing_hash(&domain.eip712());
    let signature = key.sign_hash(&digest).map_err(|e| ProveError::Sign(e.to_string()))?;
    store
        .note_proof(&Proven {
            period_start_ms: period.from_ms,
            period_end_ms: period.to_ms,
            project: statement.project.clone(),
            root: root.hash.0,
            amends: amends_root,
            through,
        })
        .await?;
    Ok(ProofFile {
        format: FORMAT.into(),
        domain,
        statement,
        signer: hex0x(key.address().as_slice()),
        signature: hex0x(&signature.as_bytes()),
        line_items,
    })
}

/// What a proof that verified says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Who signed it.
    pub signer: String,
    /// Whether the signer is one the caller trusts; false when none was named.
    pub trusted: bool,
    /// The signed statement whose root and totals every line item was checked against.
    pub statement: Statement,
    /// The line items checked (`project/function`).
    pub lines: Vec<String>,
}

/// The signer of the statement's EIP-712 digest, checked for form: 65 bytes, v 27 or 28, s in
/// the lower half (the form ecrecover-based contracts accept).
fn recover(file: &ProofFile) -> Result<Address, ProofError> {
    let raw = parse_hex::<65>("signature", &file.signature)?;
    let signature = Signature::from_raw(&raw)
        .map_err(|e| ProofError::Signature(format!("is malformed: {e}")))?;
    if signature.normalize_s().is_some() {
        return Err(ProofError::Signature("has a high s value (malleated)".into()));
    }
    let digest = file.statement.typed()?.eip712_signing_hash(&file.domain.eip712());
    signature
        .recover_address_from_prehash(&digest)
        .map_err(|e| ProofError::Signature(format!("recovers no key: {e}")))
}

/// Walks a line item's path: the root it leads to.
fn climb(line: &LineItem) -> Result<Node, ProofError> {
    let name = line.name();
    let digest =
        B256::from(parse_hex::<32>(&format!("{name}: records_digest"), &line.records_digest)?);
    let charged = line.charges.values().try_fold(0u128, |sum, a| sum.checked_add(a.0));
    if charged != Some(line.totals.charge.0) {
        return Err(ProofError::Line {
            line: name,
            reason: format!(
                "its charges add up to {}, its charge is {}",
                charged.map_or("more than 2^128".into(), |c| c.to_string()),
                line.totals.charge
            ),
        });
    }
    let charges = charges_digest(&line.charges);
    let mut node = Node::leaf(&line.project, &line.function, line.totals, digest, charges);
    for (i, step) in line.path.iter().enumerate() {
        let sibling = Node {
            hash: B256::from(parse_hex::<32>(&format!("{name}: path step {i}"), &step.hash)?),
            sums: step.totals,
        };
        let (left, right) = match step.side {
            Side::Left => (&sibling, &node),
            Side::Right => (&node, &sibling),
        };
        node = Node::parent(left, right).ok_or_else(|| ProofError::Line {
            line: name.clone(),
            reason: format!("its sums overflow at path step {i}"),
        })?;
    }
    Ok(node)
}

/// Checks a proof file offline: its form, the signature, every line item (or only `only`,
/// `project/function`) against the signed root and totals, that the lines add up to the totals,
/// and that the bytes are exactly q's rendering. With `trusted` addresses, the signer must be
/// one of them, and the result says it is trusted; with none, the proof is checked for form and
/// [`Verified::trusted`] is false: anyone can sign a well-formed proof.
pub fn verify(text: &str, only: Option<&str>, trusted: &[&str]) -> Result<Verified, ProofError> {
    let file: ProofFile =
        serde_json::from_str(text).map_err(|e| ProofError::Shape(e.to_string()))?;
    if file.format != FORMAT {
        return Err(ProofError::Format(file.format));
    }
    if file.domain.name != DOMAIN_NAME || file.domain.version != DOMAIN_VERSION {
        return Err(ProofError::Domain(file.domain.name, file.domain.version));
    }
    let root = B256::from(parse_hex::<32>("statement.root", &file.statement.root)?);
    let signer = Address::from(parse_hex::<20>("signer", &file.signer)?);
    let recovered = recover(&file)?;
    if recovered != signer {
        return Err(ProofError::Signature(format!(
            "is by {}, not by the signer the file names ({})",
            hex0x(recovered.as_slice()),
            file.signer
        )));
    }
    if !trusted.is_empty() && !trusted.iter().any(|t| t.eq_ignore_ascii_case(&file.signer)) {
        return Err(ProofError::Signer { found: file.signer, required: trusted.join(" or ") });
    }

    let s = &file.statement;
    let unpriced = parse_hex::<32>("statement.rates_digest", &s.rates_digest)? == [0; 32];
    if unpriced && (!s.currency.is_empty() || s.decimals != 0 || s.totals.charge.0 != 0) {
        return Err(ProofError::Pricing(
            "the statement names no rate card, yet gives a currency, decimals or a charge".into(),
        ));
    }
    if !unpriced && s.currency.is_empty() {
        return Err(ProofError::Pricing("the statement is priced but names no currency".into()));
    }

    let mut lines = Vec::new();
    let mut added = Sums::default();
    let mut previous: Option<(&str, &str)> = None;
    for line in &file.line_items {
        let name = line.name();
        let key = (line.project.as_str(), line.function.as_str());
        if previous.is_some_and(|p| p >= key) {
            return Err(ProofError::Line {
                line: name,
                reason: "out of order or repeated (line items are sorted by project, function)"
                    .into(),
            });
        }
        previous = Some(key);
        if only.is_some_and(|o| o != name) {
            continue;
        }
        if !file.statement.project.is_empty() && line.project != file.statement.project {
            return Err(ProofError::Line {
                line: name,
                reason: format!("not of the statement's project {}", file.statement.project),
            });
        }
        let top = climb(line)?;
        if top.hash != root {
            return Err(ProofError::Line {
                line: name,
                reason: format!(
                    "its path leads to root {}, not to the signed root {}",
                    hex0x(top.hash.as_slice()),
                    file.statement.root
                ),
            });
        }
        if top.sums != file.statement.totals {
            return Err(ProofError::Line {
                line: name,
                reason: format!(
                    "its path sums to {:?}, the statement says {:?}",
                    top.sums, file.statement.totals
                ),
            });
        }
        added = added.checked_add(line.totals).ok_or_else(|| ProofError::Line {
            line: name.clone(),
            reason: "the line items' sums overflow".into(),
        })?;
        lines.push(name);
    }
    match only {
        Some(only) if lines.is_empty() => return Err(ProofError::NoSuchLine(only.to_string())),
        None if added != file.statement.totals => {
            return Err(ProofError::Incomplete {
                found: Box::new(added),
                signed: Box::new(file.statement.totals),
            });
        }
        _ => {}
    }

    let canonical = file.render();
    if canonical != text {
        let at = canonical.bytes().zip(text.bytes()).take_while(|(a, b)| a == b).count();
        return Err(ProofError::NotCanonical(at));
    }
    let trusted = !trusted.is_empty();
    Ok(Verified { signer: file.signer.clone(), trusted, statement: file.statement, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(n: u64) -> Sums {
        Sums {
            invocations: n,
            errors: n / 3,
            wall_micros: 100 * n,
            cpu_micros: 40 * n,
            records: 1,
            charge: Amount(7 * u128::from(n)),
        }
    }

    #[test]
    fn every_path_leads_to_the_root_and_its_sums() {
        for count in 1..=9 {
            let leaves: Vec<Node> = (0..count)
                .map(|i| {
                    let charges = BTreeMap::from([(Meter::CpuMs, Amount(7 * (u128::from(i) + 1)))]);
                    let charges = charges_digest(&charges);
                    Node::leaf(
                        "p",
                        &format!("f{i}"),
                        sums(i as u64 + 1),
                        B256::repeat_byte(i),
                        charges,
                    )
                })
                .collect();
            let levels = levels(leaves.clone()).expect("no overflow");
            let root = levels.last().expect("levels")[0];
            let n = count as u64;
            assert_eq!(root.sums.invocations, n * (n + 1) / 2);
            assert_eq!(root.sums.records, n);
            assert_eq!(root.sums.charge, Amount(7 * u128::from(n * (n + 1) / 2)));
            for (i, leaf) in leaves.iter().enumerate() {
                let line = LineItem {
                    project: "p".into(),
                    function: format!("f{i}"),
                    totals: leaf.sums,
                    charges: BTreeMap::from([(Meter::CpuMs, leaf.sums.charge)]),
                    records_digest: hex0x(B256::repeat_byte(i as u8).as_slice()),
                    path: path(&levels, i),
                };
                assert_eq!(climb(&line).expect("climbs"), root, "leaf {i} of {count}");
            }
        }
    }

    #[test]
    fn hex_fields_are_strict() {
        assert!(parse_hex::<2>("f", "0xabcd").is_ok());
        for bad in ["abcd", "0xABCD", "0xabc", "0xabcdef", "0xabcg"] {
            assert!(parse_hex::<2>("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaf_and_inner_hashes_cannot_be_confused() {
        let a = Node::leaf("p", "f", sums(1), B256::ZERO, B256::ZERO);
        let b = Node::leaf("p", "g", sums(2), B256::ZERO, B256::ZERO);
        assert_ne!(a.hash, Node::leaf("p", "f", sums(1), B256::ZERO, B256::repeat_byte(1)).hash);
        let parent = Node::parent(&a, &b).expect("no overflow");
        assert_ne!(parent.hash, Node::parent(&b, &a).expect("no overflow").hash);
        assert_ne!(parent.hash, a.hash);
        let max = Sums { invocations: u64::MAX, ..sums(1) };
        assert!(Node::parent(&Node { sums: max, ..a }, &a).is_none());
        let max = Sums { charge: Amount(u128::MAX), ..sums(1) };
        assert!(Node::parent(&Node { sums: max, ..a }, &a).is_none());
    }

    #[test]
    fn amounts_are_canonical_decimal_strings() {
        let json = serde_json::to_string(&Amount(u128::MAX)).unwrap();
        assert_eq!(json, format!("\"{}\"", u128::MAX));
        assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), Amount(u128::MAX));
        for bad in [
            "\"01\"",
            "\"\"",
            "\"-1\"",
            "\"1.5\"",
            "12",
            "\"340282366920938463463374607431768211456\"",
        ] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }
}

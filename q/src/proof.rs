//! Usage proofs: what `q prove` writes and `q verify-proof` (and `contracts/UsageVerifier.sol`)
//! checks.
//!
//! A proof covers a period (and optionally one project). Its line items are the per-(project,
//! function) sums of the stored records whose windows start in the period, each with the keccak
//! of its records' hashes. The line items, sorted by project then function, are the leaves of a
//! Merkle *sum* tree: every node carries a keccak hash and the five sums below it, so the root
//! commits to every line item and to the totals. q signs the statement (period, project, root,
//! totals) as EIP-712 typed data with its secp256k1 key; a contract checks a line item with one
//! signature recovery and the line's path to the root.
//!
//! Hashing (all words 32 bytes, as Solidity's `abi.encode` lays them out):
//! - leaf  = keccak256(0, keccak256(project), keccak256(function), invocations, errors,
//!   wallMicros, cpuMicros, records, recordsDigest)
//! - inner = keccak256(1, left.hash, left's five sums, right.hash, right's five sums); its sums
//!   are the children's sums added
//! - a level with an odd count carries its last node up unchanged
//! - recordsDigest = keccak256 of the line's record hashes (BLAKE3, 32 bytes each) concatenated
//!   in (node, seq) order
//!
//! The file is JSON in one canonical rendering (the one q writes): `verify` also refuses a file
//! that differs from it by any byte, so no edit goes unnoticed, even where the numbers survive it.

use alloy_primitives::{Address, B256, Keccak256, Signature, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

use crate::key::SigningKey;
use crate::period::Period;
use crate::store::{Store, StoreError, StoredRecord};

/// The value of a proof file's `format`.
pub const FORMAT: &str = "tau-q-usage-proof/1";
/// The EIP-712 domain's name.
pub const DOMAIN_NAME: &str = "Tau q usage";
/// The EIP-712 domain's version.
pub const DOMAIN_VERSION: &str = "1";

mod typed {
    #![allow(missing_docs, unreachable_pub)]
    alloy_sol_types::sol! {
        /// What q signs. `project` is empty when the proof covers every project.
        #[derive(Debug, PartialEq, Eq)]
        struct UsageStatement {
            uint64 periodStart;
            uint64 periodEnd;
            string project;
            bytes32 root;
            uint64 invocations;
            uint64 errors;
            uint64 wallMicros;
            uint64 cpuMicros;
            uint64 records;
        }
    }
}
pub use typed::UsageStatement;

/// The five sums a line item and every tree node carry.
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
        })
    }

    fn words(&self) -> [B256; 5] {
        [self.invocations, self.errors, self.wall_micros, self.cpu_micros, self.records].map(word)
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
    pub fn leaf(project: &str, function: &str, sums: Sums, records_digest: B256) -> Node {
        let mut words = vec![word(0), keccak256(project), keccak256(function)];
        words.extend(sums.words());
        words.push(records_digest);
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

/// One line item and its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItem {
    /// The project id, as in TNS.
    pub project: String,
    /// The function's name within the project.
    pub function: String,
    /// Its sums over the period.
    pub totals: Sums,
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
    /// The sum tree's root hash, 0x-hex.
    pub root: String,
    /// The sums at the root.
    pub totals: Sums,
}

impl Statement {
    fn typed(&self, root: B256) -> UsageStatement {
        UsageStatement {
            periodStart: self.period_start_ms,
            periodEnd: self.period_end_ms,
            project: self.project.clone(),
            root,
            invocations: self.totals.invocations,
            errors: self.totals.errors,
            wallMicros: self.totals.wall_micros,
            cpuMicros: self.totals.cpu_micros,
            records: self.totals.records,
        }
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
        found: Sums,
        /// The statement's totals.
        signed: Sums,
    },
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

/// A line item being summed from its records.
struct Accumulating {
    project: String,
    function: String,
    sums: Sums,
    digest: Keccak256,
}

/// Builds and signs the proof over `period` (and `project`, if named) from the store.
pub async fn prove(
    store: &Store,
    period: Period,
    project: Option<&str>,
    key: &SigningKey,
    chain_id: u64,
) -> Result<ProofFile, ProveError> {
    let mut done: Vec<(String, String, Sums, B256)> = Vec::new();
    let mut current: Option<Accumulating> = None;
    store
        .records(period.from_ms, period.to_ms, project, |record| {
            let same = current
                .as_ref()
                .is_some_and(|c| c.project == record.project && c.function == record.function);
            if !same {
                if let Some(line) = current.take() {
                    done.push((line.project, line.function, line.sums, line.digest.finalize()));
                }
                current = Some(Accumulating {
                    project: record.project.clone(),
                    function: record.function.clone(),
                    sums: Sums::default(),
                    digest: Keccak256::new(),
                });
            }
            let line = current.as_mut().expect("set above");
            line.sums = line.sums.checked_add(Sums::of(&record)).ok_or_else(|| {
                std::io::Error::other(format!(
                    "the sums of {}/{} do not fit in 64 bits",
                    line.project, line.function
                ))
            })?;
            line.digest.update(record.hash);
            Ok(())
        })
        .await?;
    if let Some(line) = current.take() {
        done.push((line.project, line.function, line.sums, line.digest.finalize()));
    }

    let leaves = done.iter().map(|(p, f, sums, digest)| Node::leaf(p, f, *sums, *digest)).collect();
    let levels = levels(leaves)?;
    let root = levels
        .last()
        .and_then(|l| l.first())
        .copied()
        .unwrap_or(Node { hash: B256::ZERO, sums: Sums::default() });
    let line_items = done
        .into_iter()
        .enumerate()
        .map(|(i, (project, function, totals, digest))| LineItem {
            project,
            function,
            totals,
            records_digest: hex0x(digest.as_slice()),
            path: path(&levels, i),
        })
        .collect();

    let domain = Domain { name: DOMAIN_NAME.into(), version: DOMAIN_VERSION.into(), chain_id };
    let statement = Statement {
        period_start_ms: period.from_ms,
        period_end_ms: period.to_ms,
        project: project.unwrap_or_default().to_string(),
        root: hex0x(root.hash.as_slice()),
        totals: root.sums,
    };
    let digest = statement.typed(root.hash).eip712_signing_hash(&domain.eip712());
    let signature = key.sign_hash(&digest).map_err(|e| ProveError::Sign(e.to_string()))?;
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
fn recover(file: &ProofFile, root: B256) -> Result<Address, ProofError> {
    let raw = parse_hex::<65>("signature", &file.signature)?;
    let signature = Signature::from_raw(&raw)
        .map_err(|e| ProofError::Signature(format!("is malformed: {e}")))?;
    if signature.normalize_s().is_some() {
        return Err(ProofError::Signature("has a high s value (malleated)".into()));
    }
    let digest = file.statement.typed(root).eip712_signing_hash(&file.domain.eip712());
    signature
        .recover_address_from_prehash(&digest)
        .map_err(|e| ProofError::Signature(format!("recovers no key: {e}")))
}

/// Walks a line item's path: the root it leads to.
fn climb(line: &LineItem) -> Result<Node, ProofError> {
    let name = line.name();
    let digest =
        B256::from(parse_hex::<32>(&format!("{name}: records_digest"), &line.records_digest)?);
    let mut node = Node::leaf(&line.project, &line.function, line.totals, digest);
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
    let recovered = recover(&file, root)?;
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
            return Err(ProofError::Incomplete { found: added, signed: file.statement.totals });
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
        Sums { invocations: n, errors: n / 3, wall_micros: 100 * n, cpu_micros: 40 * n, records: 1 }
    }

    #[test]
    fn every_path_leads_to_the_root_and_its_sums() {
        for count in 1..=9 {
            let leaves: Vec<Node> = (0..count)
                .map(|i| {
                    Node::leaf("p", &format!("f{i}"), sums(i as u64 + 1), B256::repeat_byte(i))
                })
                .collect();
            let levels = levels(leaves.clone()).expect("no overflow");
            let root = levels.last().expect("levels")[0];
            let n = count as u64;
            assert_eq!(root.sums.invocations, n * (n + 1) / 2);
            assert_eq!(root.sums.records, n);
            for (i, leaf) in leaves.iter().enumerate() {
                let line = LineItem {
                    project: "p".into(),
                    function: format!("f{i}"),
                    totals: leaf.sums,
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
        let a = Node::leaf("p", "f", sums(1), B256::ZERO);
        let b = Node::leaf("p", "g", sums(2), B256::ZERO);
        let parent = Node::parent(&a, &b).expect("no overflow");
        assert_ne!(parent.hash, Node::parent(&b, &a).expect("no overflow").hash);
        assert_ne!(parent.hash, a.hash);
        let max = Sums { invocations: u64::MAX, ..sums(1) };
        assert!(Node::parent(&Node { sums: max, ..a }, &a).is_none());
    }
}

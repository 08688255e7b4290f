//! Usage proofs: made from a real store (SQLite and PostgreSQL), checked offline, altered byte by
//! byte, and checked by the Solidity contract on an in-process EVM (revm); the committed contract
//! bytecode is what the pinned solc makes from the committed source.

use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use libp2p::identity::Keypair;
use q::period::Period;
use q::proof::{self, ProofError, ProofFile, Side};
use q::store::{Batch, Store};
use revm::context::TxEnv;
use revm::context_interface::result::ExecutionResult;
use revm::database::{CacheDB, EmptyDB};
use revm::{ExecuteCommitEvm, MainBuilder, MainContext};
use tau_tests::harness::{Result, run};
use tau_tests::postgres::PgServer;

use super::store::signed;

/// Seven line items over two projects, from three nodes: (project, function, records).
const LINES: [(&str, &str, u64); 7] = [
    ("lab", "echo", 4),
    ("lab", "hash", 2),
    ("lab", "ping", 9),
    ("shop", "cart", 3),
    ("shop", "checkout", 1),
    ("shop", "search", 5),
    ("shop", "thumbnail", 2),
];

/// Fills `store`; returns the invocations per project.
async fn fill(store: &Store) -> (u64, u64) {
    let nodes: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let mut next = [1u64; 3];
    let mut batches: Vec<Vec<_>> = vec![Vec::new(); 3];
    let (mut lab, mut shop) = (0, 0);
    for (project, function, records) in LINES {
        for r in 0..records {
            let n = (r % 3) as usize;
            let mut record = signed(&nodes[n], next[n], function, r + 1).record;
            record.project = project.into();
            if project == "lab" {
                lab += r + 1
            } else {
                shop += r + 1
            }
            batches[n].push(record.sign(&nodes[n]).expect("own key"));
            next[n] += 1;
        }
    }
    for (n, records) in batches.into_iter().enumerate() {
        let batch =
            Batch { accepted: records, ..Batch::new(nodes[n].public().to_peer_id(), next[n]) };
        store.ingest(&batch).await.expect("ingest");
    }
    (lab, shop)
}

/// Proofs over every project and over one verify, match the store's totals, and fail on any
/// altered byte.
async fn proofs_verify_and_any_altered_byte_fails(db: &str) {
    let store = Store::open(db).await.expect("open");
    let (lab, shop) = fill(&store).await;
    let key = q::key::SigningKey::random();
    let signer = format!("0x{}", alloy_primitives::hex::encode(key.address()));

    let all = proof::prove(&store, Period::ALL, None, &key, 1).await.expect("prove");
    assert_eq!(all.line_items.len(), LINES.len());
    assert_eq!(all.statement.totals.invocations, lab + shop);
    assert_eq!(all.statement.totals.records, LINES.iter().map(|l| l.2).sum::<u64>());
    let totals = store.totals(0, Period::ALL.to_ms, None).await.expect("totals");
    for (line, total) in all.line_items.iter().zip(&totals) {
        assert_eq!((&line.project, &line.function), (&total.project, &total.function));
        assert_eq!(line.totals.invocations, total.invocations);
        assert_eq!(line.totals.wall_micros, total.wall_micros);
    }
    let text = all.render();
    let verified = proof::verify(&text, None, &[&signer]).expect("verifies");
    assert_eq!(verified.lines.len(), LINES.len());
    assert!(proof::verify(&text, Some("shop/search"), &[]).is_ok());
    assert_eq!(
        proof::verify(&text, Some("shop/nothing"), &[]),
        Err(ProofError::NoSuchLine("shop/nothing".into()))
    );
    let other = "0x0000000000000000000000000000000000000001";
    assert!(matches!(proof::verify(&text, None, &[other]), Err(ProofError::Signer { .. })));

    let lab_only = proof::prove(&store, Period::ALL, Some("lab"), &key, 1).await.expect("prove");
    assert_eq!(lab_only.statement.totals.invocations, lab);
    assert!(lab_only.line_items.iter().all(|l| l.project == "lab"));
    proof::verify(&lab_only.render(), None, &[]).expect("verifies");

    // Every byte, altered two ways (the low bit; a letter's case), fails, each with a reason.
    let mut checked = 0;
    for i in 0..text.len() {
        for flip in [0x01u8, 0x20] {
            let mut bytes = text.clone().into_bytes();
            if flip == 0x20 && !bytes[i].is_ascii_alphabetic() {
                continue;
            }
            bytes[i] ^= flip;
            let Ok(altered) = String::from_utf8(bytes) else { continue };
            let err = proof::verify(&altered, None, &[])
                .expect_err(&format!("byte {i} ^ {flip:#x} went unnoticed"));
            assert!(!err.to_string().is_empty());
            checked += 1;
        }
    }
    assert!(checked > text.len(), "{checked} alterations for {} bytes", text.len());

    // Dropping a line item, or moving numbers between lines, fails too.
    let mut dropped: ProofFile = serde_json::from_str(&text).expect("json");
    dropped.line_items.pop();
    assert!(matches!(
        proof::verify(&dropped.render(), None, &[]),
        Err(ProofError::Incomplete { .. })
    ));
    let mut moved: ProofFile = serde_json::from_str(&text).expect("json");
    moved.line_items[0].totals.invocations += 1;
    moved.line_items[1].totals.invocations -= 1;
    let err = proof::verify(&moved.render(), None, &[]).expect_err("moved");
    assert!(err.to_string().contains("lab/echo: its path leads to root"), "{err}");
}

#[test]
fn on_sqlite_proofs_verify_and_any_altered_byte_fails() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    block_on(proofs_verify_and_any_altered_byte_fails(&db))
}

#[test]
fn on_postgresql_proofs_verify_and_any_altered_byte_fails() -> Result {
    let server = PgServer::start(false)?;
    let url = server.database("proofs")?;
    block_on(proofs_verify_and_any_altered_byte_fails(&url))
}

fn block_on<F: std::future::Future<Output = ()>>(future: F) -> Result {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future);
    Ok(())
}

sol! {
    struct Sums { uint64 invocations; uint64 errors; uint64 wallMicros; uint64 cpuMicros; uint64 records; }
    struct Node { bytes32 hash; Sums sums; }
    struct Step { Node sibling; bool left; }
    struct Statement {
        uint64 periodStart; uint64 periodEnd; string project; bytes32 root;
        uint64 invocations; uint64 errors; uint64 wallMicros; uint64 cpuMicros; uint64 records;
    }
    struct LineItem { string project; string functionName; Sums sums; bytes32 recordsDigest; }
    function verifyLineItem(Statement s, bytes signature, LineItem item, Step[] path) external view returns (bool);
}

fn sums(s: &proof::Sums) -> Sums {
    Sums {
        invocations: s.invocations,
        errors: s.errors,
        wallMicros: s.wall_micros,
        cpuMicros: s.cpu_micros,
        records: s.records,
    }
}

/// The contract call that checks line item `i` of `file`.
fn call_for(file: &ProofFile, i: usize) -> verifyLineItemCall {
    let s = &file.statement;
    let line = &file.line_items[i];
    verifyLineItemCall {
        s: Statement {
            periodStart: s.period_start_ms,
            periodEnd: s.period_end_ms,
            project: s.project.clone(),
            root: B256::from_str(&s.root).expect("hex"),
            invocations: s.totals.invocations,
            errors: s.totals.errors,
            wallMicros: s.totals.wall_micros,
            cpuMicros: s.totals.cpu_micros,
            records: s.totals.records,
        },
        signature: Bytes::from_str(&file.signature).expect("hex"),
        item: LineItem {
            project: line.project.clone(),
            functionName: line.function.clone(),
            sums: sums(&line.totals),
            recordsDigest: B256::from_str(&line.records_digest).expect("hex"),
        },
        path: line
            .path
            .iter()
            .map(|step| Step {
                sibling: Node {
                    hash: B256::from_str(&step.hash).expect("hex"),
                    sums: sums(&step.totals),
                },
                left: step.side == Side::Left,
            })
            .collect(),
    }
}

/// An EVM with the contract deployed, trusting `signer`.
struct Chain {
    evm: revm::handler::MainnetEvm<revm::handler::MainnetContext<CacheDB<EmptyDB>>>,
    contract: Address,
    nonce: u64,
}

const CALLER: Address = Address::repeat_byte(0x11);

impl Chain {
    fn deploy(signer: Address) -> Chain {
        let bin = include_str!("../../../q/contracts/UsageVerifier.bin");
        let mut code = alloy_primitives::hex::decode(bin.trim()).expect("hex bytecode");
        code.extend(signer.abi_encode());
        let mut evm =
            revm::Context::mainnet().with_db(CacheDB::<EmptyDB>::default()).build_mainnet();
        let tx = TxEnv::builder()
            .caller(CALLER)
            .kind(TxKind::Create)
            .data(code.into())
            .gas_limit(10_000_000)
            .build()
            .expect("tx");
        let result = evm.transact_commit(tx).expect("deploys");
        let contract =
            result.created_address().unwrap_or_else(|| panic!("not deployed: {result:?}"));
        Chain { evm, contract, nonce: 1 }
    }

    /// Calls verifyLineItem: Some(answer), or None when the call reverts.
    fn verify(&mut self, call: &verifyLineItemCall) -> Option<bool> {
        let tx = TxEnv::builder()
            .caller(CALLER)
            .nonce(self.nonce)
            .call(self.contract)
            .data(call.abi_encode().into())
            .gas_limit(10_000_000)
            .build()
            .expect("tx");
        self.nonce += 1;
        match self.evm.transact_commit(tx).expect("executes") {
            ExecutionResult::Success { output, .. } => {
                Some(verifyLineItemCall::abi_decode_returns(output.data()).expect("a bool"))
            }
            _ => None,
        }
    }
}

#[test]
fn the_contract_accepts_a_line_item_q_proved_and_rejects_a_tampered_one() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    let key = q::key::SigningKey::random();
    let file =
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
            let store = Store::open(&db).await.expect("open");
            fill(&store).await;
            proof::prove(&store, Period { from_ms: 0, to_ms: 1 << 50 }, None, &key, 1).await
        })?;
    let mut chain = Chain::deploy(key.address());
    for i in 0..file.line_items.len() {
        assert_eq!(chain.verify(&call_for(&file, i)), Some(true), "line {i}");
    }

    let rejected = |chain: &mut Chain, call: &verifyLineItemCall, what: &str| {
        assert_ne!(chain.verify(call), Some(true), "accepted with {what}");
    };
    let mut call = call_for(&file, 2);
    call.item.sums.invocations += 1;
    rejected(&mut chain, &call, "one invocation more on the line");
    let mut call = call_for(&file, 2);
    call.s.invocations += 1;
    rejected(&mut chain, &call, "one invocation more in the statement");
    let mut call = call_for(&file, 2);
    call.item.functionName = "echo".into();
    rejected(&mut chain, &call, "another function's name");
    let mut call = call_for(&file, 2);
    call.item.recordsDigest.0[0] ^= 1;
    rejected(&mut chain, &call, "another records digest");
    let mut call = call_for(&file, 2);
    call.path[0].sibling.hash.0[31] ^= 1;
    rejected(&mut chain, &call, "an altered sibling hash");
    let mut call = call_for(&file, 2);
    call.path[0].left = !call.path[0].left;
    rejected(&mut chain, &call, "a sibling on the wrong side");
    let mut call = call_for(&file, 2);
    call.s.periodEnd += 1;
    rejected(&mut chain, &call, "another period");
    let mut call = call_for(&file, 2);
    let mut signature = call.signature.to_vec();
    signature[10] ^= 1;
    call.signature = signature.into();
    rejected(&mut chain, &call, "an altered signature");
    // The malleated twin of the valid signature (s -> n - s, v flipped) is refused too.
    let mut call = call_for(&file, 2);
    let mut signature = call.signature.to_vec();
    let order = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )?;
    let s = U256::from_be_slice(&signature[32..64]);
    signature[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
    signature[64] = if signature[64] == 27 { 28 } else { 27 };
    call.signature = signature.into();
    rejected(&mut chain, &call, "the malleated signature");

    // A contract that trusts another key accepts nothing q signed.
    let mut stranger = Chain::deploy(Address::repeat_byte(0x42));
    assert_eq!(stranger.verify(&call_for(&file, 0)), Some(false));
    Ok(())
}

#[test]
fn the_committed_bytecode_is_what_the_pinned_solc_makes_from_the_source() -> Result {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../q/contracts");
    let npm = run(
        Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&contracts),
        Duration::from_secs(300),
    )
    .map_err(|e| format!("npm (Node.js) is needed to compile the contract: {e}"))?;
    assert!(npm.status.success(), "npm ci: {}", String::from_utf8_lossy(&npm.stderr));
    let check = run(
        Command::new("node").args(["build.js", "--check"]).current_dir(&contracts),
        Duration::from_secs(300),
    )?;
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    Ok(())
}

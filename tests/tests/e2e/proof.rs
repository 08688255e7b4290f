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

    let all =
        proof::prove(&store, proof::Request::new(Period::ALL, None), &key).await.expect("prove");
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

    let lab_only = proof::prove(&store, proof::Request::new(Period::ALL, Some("lab")), &key)
        .await
        .expect("prove");
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
    struct Sums { uint64 invocations; uint64 errors; uint64 wallMicros; uint64 cpuMicros; uint64 records; uint128 charge; }
    struct Node { bytes32 hash; Sums sums; }
    struct Step { Node sibling; bool left; }
    struct Statement {
        uint64 periodStart; uint64 periodEnd; string project; bytes32 amends; bytes32 root;
        uint64 invocations; uint64 errors; uint64 wallMicros; uint64 cpuMicros; uint64 records;
        uint128 charge; string currency; uint8 decimals; bytes32 ratesDigest;
    }
    struct LineItem { string project; string functionName; Sums sums; bytes32 recordsDigest; bytes32 chargesDigest; }
    function verifyLineItem(Statement s, bytes signature, LineItem item, Step[] path) external view returns (bool);
    function settle(Statement s, bytes signature) external returns (uint256 paid);
    function deposit() external payable;
    function withdraw() external returns (uint256 amount);
}

fn sums(s: &proof::Sums) -> Sums {
    Sums {
        invocations: s.invocations,
        errors: s.errors,
        wallMicros: s.wall_micros,
        cpuMicros: s.cpu_micros,
        records: s.records,
        charge: s.charge.0,
    }
}

/// The statement of `file` as the contracts take it.
fn statement(file: &ProofFile) -> Statement {
    let s = &file.statement;
    Statement {
        periodStart: s.period_start_ms,
        periodEnd: s.period_end_ms,
        project: s.project.clone(),
        amends: B256::from_str(&s.amends).expect("hex"),
        root: B256::from_str(&s.root).expect("hex"),
        invocations: s.totals.invocations,
        errors: s.totals.errors,
        wallMicros: s.totals.wall_micros,
        cpuMicros: s.totals.cpu_micros,
        records: s.totals.records,
        charge: s.totals.charge.0,
        currency: s.currency.clone(),
        decimals: s.decimals,
        ratesDigest: B256::from_str(&s.rates_digest).expect("hex"),
    }
}

/// The contract call that checks line item `i` of `file`.
fn call_for(file: &ProofFile, i: usize) -> verifyLineItemCall {
    let line = &file.line_items[i];
    verifyLineItemCall {
        s: statement(file),
        signature: Bytes::from_str(&file.signature).expect("hex"),
        item: LineItem {
            project: line.project.clone(),
            functionName: line.function.clone(),
            sums: sums(&line.totals),
            recordsDigest: B256::from_str(&line.records_digest).expect("hex"),
            chargesDigest: proof::charges_digest(&line.charges),
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

/// An in-process EVM with one contract deployed.
struct Chain {
    evm: revm::handler::MainnetEvm<revm::handler::MainnetContext<CacheDB<EmptyDB>>>,
    contract: Address,
}

const CALLER: Address = Address::repeat_byte(0x11);
const PROVIDER: Address = Address::repeat_byte(0x22);
const CUSTOMER: Address = Address::repeat_byte(0x33);
/// The EVM's clock, seconds: after every period the tests prove.
const NOW: u64 = 2_000_000_000;

impl Chain {
    /// Deploys `bin` (hex creation code) with `args` (ABI-encoded constructor arguments).
    fn deploy(bin: &str, args: Vec<u8>) -> Chain {
        let mut code = alloy_primitives::hex::decode(bin.trim()).expect("hex bytecode");
        code.extend(args);
        let mut db = CacheDB::<EmptyDB>::default();
        for who in [CALLER, PROVIDER, CUSTOMER] {
            let ether = U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18u64));
            db.insert_account_info(who, revm::state::AccountInfo::from_balance(ether));
        }
        let mut evm = revm::Context::mainnet()
            .with_db(db)
            .modify_block_chained(|block| block.timestamp = U256::from(NOW))
            .build_mainnet();
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
        Chain { evm, contract }
    }

    /// UsageVerifier trusting `signer`.
    fn verifier(signer: Address) -> Chain {
        Chain::deploy(include_str!("../../../q/contracts/UsageVerifier.bin"), signer.abi_encode())
    }

    /// Calls the contract as `caller` with `value` wei: its output, or the revert reason.
    fn call(
        &mut self,
        caller: Address,
        data: Vec<u8>,
        value: U256,
    ) -> std::result::Result<Bytes, String> {
        use revm::Database;
        use revm::context::ContextTr;
        let nonce = self.evm.ctx.db_mut().basic(caller).expect("db").map_or(0, |a| a.nonce);
        let tx = TxEnv::builder()
            .caller(caller)
            .nonce(nonce)
            .call(self.contract)
            .value(value)
            .data(data.into())
            .gas_limit(10_000_000)
            .build()
            .expect("tx");
        match self.evm.transact_commit(tx).expect("executes") {
            ExecutionResult::Success { output, .. } => Ok(output.data().clone()),
            ExecutionResult::Revert { output, .. } => {
                Err(alloy_sol_types::decode_revert_reason(&output)
                    .unwrap_or_else(|| "revert".into()))
            }
            halt => Err(format!("{halt:?}")),
        }
    }

    fn balance(&mut self, who: Address) -> U256 {
        use revm::Database;
        use revm::context::ContextTr;
        self.evm.ctx.db_mut().basic(who).expect("db").map_or(U256::ZERO, |a| a.balance)
    }

    /// Calls verifyLineItem: Some(answer), or None when the call reverts.
    fn verify(&mut self, call: &verifyLineItemCall) -> Option<bool> {
        let output = self.call(CALLER, call.abi_encode(), U256::ZERO).ok()?;
        Some(verifyLineItemCall::abi_decode_returns(&output).expect("a bool"))
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
            proof::prove(
                &store,
                proof::Request::new(Period { from_ms: 0, to_ms: 1 << 50 }, None),
                &key,
            )
            .await
        })?;
    let mut chain = Chain::verifier(key.address());
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
    let mut stranger = Chain::verifier(Address::repeat_byte(0x42));
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

/// Invocations at 0.000123 EUR (lab: 0.000002) and CPU at 0.01 EUR a millisecond (each
/// record's CPU is 50 µs an invocation): every charge is a whole number of micro-euros.
const RATES: &str = "currency: EUR\ndecimals: 6\nrates:\n  - from: 1970-01-01\n    prices:\n      invocations: \"0.000123\"\n      cpu_ms: \"0.01\"\nprojects:\n  lab:\n    - from: 1970-01-01\n      prices: {invocations: \"0.000002\"}\n";

fn pricing(dir: &Path) -> proof::Pricing {
    let path = dir.join("rates.yaml");
    std::fs::write(&path, RATES).expect("write rates");
    proof::Pricing::load(&path).expect("rates load")
}

/// A priced line's charge, worked out here: per invocation, its price plus 0.05 ms of CPU.
fn expected_charge(project: &str, invocations: u64) -> u128 {
    let per = if project == "lab" { 2 } else { 123 };
    u128::from(invocations) * (per + 500)
}

#[test]
fn priced_proofs_verify_offline_and_on_the_contract_and_a_changed_charge_fails_both() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    let key = q::key::SigningKey::random();
    let pricing = pricing(dir.path());
    let file =
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
            let store = Store::open(&db).await.expect("open");
            fill(&store).await;
            let request = proof::Request {
                pricing: Some(&pricing),
                ..proof::Request::new(Period::ALL, None)
            };
            proof::prove(&store, request, &key).await
        })?;
    let s = &file.statement;
    assert_eq!((s.currency.as_str(), s.decimals), ("EUR", 6));
    assert_eq!(
        s.rates_digest,
        format!("0x{}", alloy_primitives::hex::encode(alloy_primitives::keccak256(RATES)))
    );
    let mut total = 0;
    for line in &file.line_items {
        let charge = expected_charge(&line.project, line.totals.invocations);
        assert_eq!(line.totals.charge.0, charge, "{}", line.name());
        assert_eq!(line.charges.len(), 2, "{}: {:?}", line.name(), line.charges);
        total += charge;
    }
    assert_eq!(s.totals.charge.0, total);
    let text = file.render();
    let signer = format!("0x{}", alloy_primitives::hex::encode(key.address()));
    proof::verify(&text, None, &[&signer]).expect("the priced proof verifies");

    // Offline: a line's charge changed (its meters kept adding up), or the statement's.
    let mut changed: ProofFile = serde_json::from_str(&text)?;
    changed.line_items[3].totals.charge.0 += 1;
    *changed.line_items[3].charges.values_mut().next().expect("a meter") =
        proof::Amount(changed.line_items[3].charges.values().next().expect("a meter").0 + 1);
    let err = proof::verify(&changed.render(), None, &[]).expect_err("a changed line charge");
    assert!(err.to_string().contains("shop/cart: its path leads to root"), "{err}");
    let mut changed: ProofFile = serde_json::from_str(&text)?;
    changed.line_items[3].totals.charge.0 += 1;
    let err = proof::verify(&changed.render(), None, &[]).expect_err("charges not adding up");
    assert!(err.to_string().contains("shop/cart: its charges add up to"), "{err}");
    let mut changed: ProofFile = serde_json::from_str(&text)?;
    changed.statement.totals.charge.0 -= 1;
    assert!(matches!(proof::verify(&changed.render(), None, &[]), Err(ProofError::Signature(_))));

    // On the EVM: every priced line verifies; a changed charge does not.
    let mut chain = Chain::verifier(key.address());
    for i in 0..file.line_items.len() {
        assert_eq!(chain.verify(&call_for(&file, i)), Some(true), "line {i}");
    }
    let mut call = call_for(&file, 3);
    call.item.sums.charge += 1;
    assert_ne!(chain.verify(&call), Some(true), "accepted a line charge one unit higher");
    let mut call = call_for(&file, 3);
    call.item.chargesDigest.0[0] ^= 1;
    assert_ne!(chain.verify(&call), Some(true), "accepted other charges per meter");
    let mut call = call_for(&file, 3);
    call.s.charge -= 1;
    assert_ne!(chain.verify(&call), Some(true), "accepted a statement charge one unit lower");
    let mut call = call_for(&file, 3);
    call.s.currency = "USD".into();
    assert_ne!(chain.verify(&call), Some(true), "accepted another currency");
    Ok(())
}

/// Wei per micro-euro in the escrow's agreement.
const WEI_PER_UNIT: u64 = 1_000_000_000_000;

fn settlement(signer: Address) -> Chain {
    let args = (
        signer,
        PROVIDER,
        CUSTOMER,
        "shop".to_string(),
        "EUR".to_string(),
        U256::from(6u8), // uint8: encoded as one word like any uint
        U256::from(WEI_PER_UNIT),
        NOW + 3_600,
    );
    Chain::deploy(
        include_str!("../../../q/contracts/UsageSettlement.bin"),
        args.abi_encode_params(),
    )
}

fn settle_call(file: &ProofFile) -> Vec<u8> {
    settleCall { s: statement(file), signature: Bytes::from_str(&file.signature).expect("hex") }
        .abi_encode()
}

#[test]
fn a_late_record_is_amended_and_the_escrow_pays_each_proof_exactly_once() -> Result {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("q.db").to_string_lossy().to_string();
    let key = q::key::SigningKey::random();
    let pricing = pricing(dir.path());
    let period = Period { from_ms: 0, to_ms: 1 << 40 };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (original, amendment, whole, late) = runtime.block_on(async {
        let store = Store::open(&db).await.expect("open");
        let (_, shop) = fill(&store).await;
        let request =
            proof::Request { pricing: Some(&pricing), ..proof::Request::new(period, Some("shop")) };
        let original = proof::prove(&store, request, &key).await.expect("prove");
        assert_eq!(original.statement.totals.invocations, shop);
        let err =
            proof::amend(&store, &original, Some(&pricing), &key).await.expect_err("none late");
        assert!(err.to_string().contains("nothing to amend"), "{err}");

        // Two records of the proven period arrive late: one of a line already proven, one of a
        // new function; and one of another project, which this proof does not cover.
        let node = Keypair::generate_ed25519();
        let mut records = Vec::new();
        for (seq, project, function, invocations) in
            [(1, "shop", "cart", 40), (2, "shop", "refund", 7), (3, "lab", "echo", 5)]
        {
            let mut record = signed(&node, seq, function, invocations).record;
            record.project = project.into();
            records.push(record.sign(&node).expect("own key"));
        }
        let batch = Batch { accepted: records, ..Batch::new(node.public().to_peer_id(), 4) };
        store.ingest(&batch).await.expect("ingest");
        let late = store.late().await.expect("late");

        let err = proof::amend(&store, &original, None, &key).await.expect_err("unpriced");
        assert!(err.to_string().contains("give the same rate card"), "{err}");
        let amendment = proof::amend(&store, &original, Some(&pricing), &key).await.expect("amend");
        let err = proof::amend(&store, &original, Some(&pricing), &key).await.expect_err("twice");
        assert!(err.to_string().contains("amended already"), "{err}");
        let whole = proof::prove(&store, request, &key).await.expect("prove again");
        (original, amendment, whole, late)
    });

    // q status's view: two late records of the proven period, none once amended.
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!((late[0].records, late[0].project.as_str()), (2, "shop"));

    // The amendment verifies on its own, names the original, and holds only the late records.
    let text = amendment.render();
    proof::verify(&text, None, &[&format!("{}", key.address())]).expect("the amendment verifies");
    assert_eq!(amendment.statement.amends, original.statement.root);
    let names: Vec<String> = amendment.line_items.iter().map(|l| l.name()).collect();
    assert_eq!(names, ["shop/cart", "shop/refund"]);
    assert_eq!(amendment.statement.totals.invocations, 47);
    // The amounts add up: original and amendment are the period's proof made now.
    let (o, a, w) = (original.statement.totals, amendment.statement.totals, whole.statement.totals);
    assert_eq!(o.invocations + a.invocations, w.invocations);
    assert_eq!(o.records + a.records, w.records);
    assert_eq!(o.charge.0 + a.charge.0, w.charge.0);
    assert_eq!(a.charge.0, expected_charge("shop", 47));

    // The escrow: pays the original's charge exactly, once; then the amendment's, once; refuses
    // a proof signed by another key and a second submission of a period.
    let mut chain = settlement(key.address());
    let escrow = U256::from(10u64).pow(U256::from(18u64));
    chain.call(CUSTOMER, depositCall {}.abi_encode(), escrow).expect("deposit");
    let before = chain.balance(PROVIDER);
    let stranger = q::key::SigningKey::random();
    let forged = runtime.block_on(async {
        let store =
            Store::open(&dir.path().join("other.db").to_string_lossy()).await.expect("open");
        fill(&store).await;
        let request =
            proof::Request { pricing: Some(&pricing), ..proof::Request::new(period, Some("shop")) };
        proof::prove(&store, request, &stranger).await.expect("prove")
    });
    let refused = chain.call(PROVIDER, settle_call(&forged), U256::ZERO).expect_err("another key");
    assert!(refused.contains("not signed by the agreed q key"), "{refused}");
    let refused =
        chain.call(CUSTOMER, settle_call(&original), U256::ZERO).expect_err("not the provider");
    assert!(refused.contains("only the provider"), "{refused}");
    let refused = chain.call(PROVIDER, settle_call(&amendment), U256::ZERO).expect_err("too early");
    assert!(refused.contains("amends no proof last paid"), "{refused}");

    chain.call(PROVIDER, settle_call(&original), U256::ZERO).expect("settles");
    let paid = U256::from(o.charge.0) * U256::from(WEI_PER_UNIT);
    assert_eq!(chain.balance(PROVIDER) - before, paid);
    let refused = chain.call(PROVIDER, settle_call(&original), U256::ZERO).expect_err("again");
    assert!(refused.contains("settled already"), "{refused}");
    chain.call(PROVIDER, settle_call(&amendment), U256::ZERO).expect("the amendment settles");
    let paid = paid + U256::from(a.charge.0) * U256::from(WEI_PER_UNIT);
    assert_eq!(chain.balance(PROVIDER) - before, paid);
    assert_eq!(chain.balance(chain.contract), escrow - paid);
    let refused = chain.call(PROVIDER, settle_call(&amendment), U256::ZERO).expect_err("again");
    assert!(refused.contains("amends no proof last paid"), "{refused}");
    let refused = chain.call(PROVIDER, settle_call(&whole), U256::ZERO).expect_err("overlap");
    assert!(refused.contains("settled already"), "{refused}");
    let refused = chain.call(CUSTOMER, withdrawCall {}.abi_encode(), U256::ZERO).expect_err("open");
    assert!(refused.contains("still open"), "{refused}");
    Ok(())
}

//! q as the front of a billing pipeline, with the real `q` binary: exports in the shapes
//! billing systems ingest (CloudEvents against the CloudEvents 1.0 JSON schema; Stripe's and
//! Lago's documented fields), `q push` killed with SIGKILL at twenty moments and against a
//! receiver that refuses 30% of batches (every event ends up at the receiver exactly once),
//! and an invoice rendered by headless Chromium and read back by OCR.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libp2p::identity::Keypair;
use q::store::{Batch, Store};
use tau_proto::counters::{CounterRecord, Usage};
use tau_tests::harness::{Result, binary, run, wait_for};
use tau_tests::receiver::{self, Options, Receiver};

const CUSTOMERS: &str = "projects:\n  shop: cus_shop\n  lab: cus_lab\n";

/// `count` records over three nodes and two projects, windows an hour apart from `from_ms`,
/// each with six non-zero figures; stored in `db` from sequence `first` on. Returns every
/// event id they make.
fn fill(db: &str, count: u64, first: u64, from_ms: u64) -> Result<HashSet<String>> {
    let nodes: Vec<Keypair> = (0..3)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[0] = i;
            Keypair::ed25519_from_bytes(seed).expect("32 bytes")
        })
        .collect();
    let mut batches: Vec<Vec<_>> = vec![Vec::new(); 3];
    for i in 0..count {
        let n = (i % 3) as usize;
        let seq = first + i / 3;
        let (project, function) = if i % 4 == 0 { ("lab", "ping") } else { ("shop", "checkout") };
        let record = CounterRecord {
            node: nodes[n].public().to_peer_id(),
            seq,
            project: project.into(),
            function: function.into(),
            window_start_ms: from_ms + (first + i) * 3_600_000,
            window_ms: 60_000,
            usage: Usage {
                invocations: 1 + i % 7,
                wall_micros: 250_000,
                cpu_micros: 3_000,
                peak_memory: 128 << 20,
                bytes_in: 1_000,
                bytes_out: 50_000,
                kv_reads: 2,
                ..Usage::default()
            },
        };
        batches[n].push(record.sign(&nodes[n]).expect("own key"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(db).await?;
        let mut ids = HashSet::new();
        for (n, records) in batches.into_iter().enumerate() {
            let next = records.last().map_or(first, |r| r.record.seq + 1);
            let batch =
                Batch { accepted: records, ..Batch::new(nodes[n].public().to_peer_id(), next) };
            store.ingest(&batch).await?;
        }
        store
            .records(0, i64::MAX as u64, None, |record| {
                if record.seq >= first {
                    ids.extend(q::events::events_of(&record).into_iter().map(|e| e.id));
                }
                Ok(())
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(ids)
    })
}

/// Runs `q ARGS`; its output, or an error with its stderr.
fn q_ok(args: &[&str]) -> Result<String> {
    let out = run(Command::new(binary("q")?).args(args), Duration::from_secs(120))?;
    if !out.status.success() {
        return Err(format!("q {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn exports_have_each_billing_systems_fields_and_cloudevents_match_the_schema() -> Result {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let ids = fill(&db, 300, 1, 1_796_342_400_000)?;
    let customers = tmp.path().join("customers.yaml");
    std::fs::write(&customers, CUSTOMERS)?;
    let customers = customers.to_string_lossy().to_string();
    let export = |format: &str| -> Result<serde_json::Value> {
        let text = q_ok(&["export", "--db", &db, "--format", format, "--customers", &customers])?;
        Ok(serde_json::from_str(&text)?)
    };

    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/cloudevents-1.0.json"))?;
    let validator = jsonschema::options().should_validate_formats(true).build(&schema)?;
    let cloud = export("cloudevents")?;
    let cloud = cloud.as_array().ok_or("cloudevents: not a batch (a JSON array)")?;
    for event in cloud {
        if let Err(error) = validator.validate(event) {
            return Err(
                format!("{event} does not match the CloudEvents 1.0 schema: {error}").into()
            );
        }
        assert_eq!(event["datacontenttype"], "application/json", "{event}");
    }
    // The schema can fail: an event without its source, or with a time that is no time.
    let mut broken = cloud[0].clone();
    broken.as_object_mut().ok_or("an object")?.remove("source");
    assert!(validator.validate(&broken).is_err(), "no source passed");
    let mut broken = cloud[0].clone();
    broken["time"] = "yesterday".into();
    assert!(validator.validate(&broken).is_err(), "a bad time passed");

    let stripe = export("stripe")?;
    let lago = export("lago")?;
    let checked =
        |events: &[serde_json::Value],
         check: fn(&serde_json::Value) -> std::result::Result<String, String>| {
            events.iter().map(check).collect::<std::result::Result<HashSet<String>, String>>()
        };
    let cloud_ids = checked(cloud, receiver::check_cloudevent)?;
    let stripe_ids =
        checked(stripe.as_array().ok_or("stripe: not an array")?, receiver::check_stripe)?;
    let lago_ids =
        checked(lago["events"].as_array().ok_or("lago: no events")?, receiver::check_lago)?;
    assert_eq!(cloud_ids, ids, "CloudEvents carry every event once");
    assert_eq!(stripe_ids, ids, "Stripe events carry every event once");
    assert_eq!(lago_ids, ids, "Lago events carry every event once");
    assert_eq!(cloud.len(), ids.len());
    // The checks can fail too: a Stripe value that is a number, a Lago event without its code.
    let mut broken = stripe[0].clone();
    broken["payload"]["value"] = 3.into();
    assert!(receiver::check_stripe(&broken).is_err());
    let mut broken = lago["events"][0].clone();
    broken.as_object_mut().ok_or("an object")?.remove("code");
    assert!(receiver::check_lago(&broken).is_err());
    Ok(())
}

/// `q push` to `to` in `format`, its key from the environment.
fn push_command(db: &str, to: &str, format: &str, customers: &Path, batch: u32) -> Result<Command> {
    let mut command = Command::new(binary("q")?);
    command
        .args(["push", "--db", db, "--to", to, "--format", format, "--customers"])
        .arg(customers)
        .args([
            "--batch",
            &batch.to_string(),
            "--header",
            "Authorization: Bearer {env:BILLING_KEY}",
        ])
        .env("BILLING_KEY", "test-key-0123456789");
    Ok(command)
}

fn kill(mut child: Child) -> Result<String> {
    child.kill()?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stderr).to_string())
}

/// Runs `q push` and SIGKILLs it at `kills` moments: some before it sent anything, the rest
/// once the receiver acknowledged a few more batches, plus a few milliseconds that vary. Then
/// runs it to the end. Returns everything q printed.
fn push_with_kills(
    command: &mut dyn FnMut() -> Result<Command>,
    receiver: &Receiver,
    kills: u32,
) -> Result<String> {
    let mut printed = String::new();
    for i in 0..kills {
        let child = command()?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let before = receiver.seen().batches;
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(u64::from(i) * 3));
        } else {
            let wanted = before + 2 + u64::from(i % 3);
            let _ = wait_for(Duration::from_secs(30), "the receiver to take more batches", || {
                Ok((receiver.seen().batches >= wanted).then_some(()))
            });
            std::thread::sleep(Duration::from_micros(u64::from(i) * 397 % 4_000));
        }
        printed += &kill(child)?;
    }
    let out = run(&mut command()?, Duration::from_secs(300))?;
    printed += &String::from_utf8_lossy(&out.stderr);
    printed += &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("the last q push failed: {printed}").into());
    }
    Ok(printed)
}

#[test]
fn push_killed_at_twenty_moments_delivers_every_event_exactly_once() -> Result {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let mut ids = fill(&db, 3_000, 1, 1_796_342_400_000)?;
    let customers = tmp.path().join("customers.yaml");
    std::fs::write(&customers, CUSTOMERS)?;
    let receiver = Receiver::start(Options {
        shape: Some("lago".into()),
        require: Some(("authorization".into(), "Bearer test-key-0123456789".into())),
        ..Options::default()
    })?;
    const BATCH: u32 = 25;
    let mut command = || push_command(&db, &receiver.url, "lago", &customers, BATCH);
    let printed = push_with_kills(&mut command, &receiver, 20)?;

    // Following: records stored while it runs are sent too.
    let mut follow = command()?;
    let child = follow
        .args(["--follow", "--poll", "100ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    ids.extend(fill(&db, 300, 2_000, 1_796_342_400_000)?);
    wait_for(Duration::from_secs(60), "the receiver to hold every event", || {
        Ok((receiver.seen().ids.len() >= ids.len()).then_some(()))
    })?;
    let printed = printed + &kill(child)?;

    let seen = receiver.seen();
    assert!(seen.invalid.is_empty(), "{:?}", &seen.invalid[..seen.invalid.len().min(3)]);
    assert_eq!(seen.unauthorized, 0);
    let got: HashSet<String> = seen.ids.keys().cloned().collect();
    assert_eq!(got.len(), ids.len(), "{} events expected", ids.len());
    assert_eq!(got, ids, "every event, none other");
    // A kill resends at most the batch in flight; the receiver absorbed those by id.
    let most = 21 * u64::from(BATCH);
    assert!(seen.duplicates() <= most, "{} events sent twice, more than {most}", seen.duplicates());
    assert!(!printed.contains("test-key-0123456789"), "the key was printed: {printed}");
    drop(seen);

    // Nothing is left to send.
    let out = run(command()?.arg("--json"), Duration::from_secs(60))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(summary["pushed"]["events"], 0, "{summary}");
    // Each batch is counted once, when its acknowledgement moved the cursor.
    assert_eq!(summary["pushed"]["total_events"], got.len() as u64, "{summary}");
    Ok(())
}

#[test]
fn push_against_a_receiver_refusing_30_percent_still_delivers_every_event_once() -> Result {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let ids = fill(&db, 1_200, 1, 1_796_342_400_000)?;
    let customers = tmp.path().join("customers.yaml");
    std::fs::write(&customers, CUSTOMERS)?;
    for format in ["stripe", "cloudevents"] {
        let receiver = Receiver::start(Options {
            shape: Some(format.into()),
            fail_ratio: 0.3,
            require: Some(("authorization".into(), "Bearer test-key-0123456789".into())),
        })?;
        let mut command = || push_command(&db, &receiver.url, format, &customers, 40);
        let printed = push_with_kills(&mut command, &receiver, 5)?;
        let seen = receiver.seen();
        assert!(
            seen.invalid.is_empty(),
            "{format}: {:?}",
            &seen.invalid[..seen.invalid.len().min(3)]
        );
        assert!(seen.refused > 0, "{format}: no batch was refused");
        let got: HashSet<String> = seen.ids.keys().cloned().collect();
        assert_eq!(got, ids, "{format}: every event, none other");
        assert!(printed.contains("answered 503 Service Unavailable"), "{format}: {printed}");
        assert!(!printed.contains("test-key-0123456789"), "the key was printed: {printed}");
    }

    // A refusal a retry cannot mend stops the push, naming it, and moves nothing.
    let receiver = Receiver::start(Options {
        shape: Some("lago".into()),
        require: Some(("authorization".into(), "Bearer another-key".into())),
        ..Options::default()
    })?;
    let out = run(
        &mut push_command(&db, &receiver.url, "lago", &customers, 40)?,
        Duration::from_secs(60),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("refused a batch of") && err.contains("401 Unauthorized"), "{err}");
    assert!(!err.contains("test-key-0123456789"), "the key was printed: {err}");
    assert_eq!(receiver.seen().batches, 0);
    Ok(())
}

/// 10^places.
fn ten(places: u32) -> u128 {
    10u128.pow(places)
}

/// Σ raw × price (in 10^-18 per unit of 10^unit_places raw), in cents, half up.
fn cents(raw: u128, price_e18: u128, unit_places: u32) -> u128 {
    let exact = raw * price_e18;
    let denominator = ten(unit_places) * ten(18) / ten(2);
    (exact + denominator / 2) / denominator
}

#[test]
fn an_invoice_renders_in_headless_chromium_with_its_total_readable() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let db = dir.join("q.db").to_string_lossy().to_string();
    // November 2026: 240 records an hour apart from the 1st.
    let november = 1_793_491_200_000;
    fill(&db, 240, 1, november)?;
    let rates = dir.join("rates.yaml");
    std::fs::write(
        &rates,
        "currency: EUR\ndecimals: 2\nrates:\n  - from: 2026-01-01\n    prices:\n      invocations: \"0.02\"\n      gb_seconds: \"0.0166667\"\n      gb_out: \"9\"\n",
    )?;
    let out = dir.join("invoice.html");
    let summary: serde_json::Value = serde_json::from_str(&q_ok(&[
        "invoice",
        "--db",
        &db,
        "--key",
        &dir.join("q.key").to_string_lossy(),
        "--period",
        "2026-11-01..2026-12-01",
        "--project",
        "shop",
        "--rates",
        &rates.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--json",
    ])?)?;

    // The total, worked out here from the records `fill` made: three of four are shop's.
    let shop: Vec<u64> = (0..240u64).filter(|i| i % 4 != 0).collect();
    let invocations: u128 = shop.iter().map(|i| u128::from(1 + i % 7)).sum();
    let records = shop.len() as u128;
    let total = cents(invocations, 20_000_000_000_000_000, 0)
        + cents(records * (128 << 20) * 250_000, 16_666_700_000_000_000, 15)
        + cents(records * 50_000, 9_000_000_000_000_000_000, 9);
    let total = format!("{}.{:02} EUR", total / 100, total % 100);
    assert_eq!(summary["total"], total.as_str(), "{summary}");

    // The proof beside it verifies, signed by q's key, and carries the same total.
    let proof = dir.join("invoice.proof.json");
    let signer = summary["signer"].as_str().ok_or("a signer")?;
    let verified: serde_json::Value = serde_json::from_str(&q_ok(&[
        "verify-proof",
        &proof.to_string_lossy(),
        "--signer",
        signer,
        "--json",
    ])?)?;
    assert_eq!(verified["trusted"], true, "{verified}");
    let html = std::fs::read_to_string(&out)?;
    assert!(html.contains(summary["root"].as_str().ok_or("a root")?), "the page names the root");
    assert!(
        html.contains(signer) && html.contains("<svg"),
        "the page names the signer, draws the chart"
    );

    // Headless Chromium draws it; OCR reads the total off the screenshot.
    let shot = dir.join("invoice.png");
    let chromium = run(
        Command::new("chromium").args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,1500",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", out.display()),
        ]),
        Duration::from_secs(120),
    )
    .map_err(|e| format!("chromium (Debian package chromium) is needed: {e}"))?;
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&chromium.stderr));
    let ocr = run(Command::new("tesseract").arg(&shot).arg("stdout"), Duration::from_secs(120))
        .map_err(|e| format!("tesseract (Debian package tesseract-ocr) is needed: {e}"))?;
    let read = String::from_utf8_lossy(&ocr.stdout);
    assert!(read.contains("Usage invoice"), "the title is not on the screenshot: {read}");
    let amount = total.trim_end_matches(" EUR");
    assert!(
        read.lines().any(|l| l.contains("Total") && l.contains(amount)),
        "the total {amount} is not readable on the screenshot: {read}"
    );
    Ok(())
}

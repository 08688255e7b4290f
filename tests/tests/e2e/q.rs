//! q against a real local cloud: `q collect` reads every node's signed counter records into a
//! SQLite file, each once; its totals equal the calls made, and so do the proof `q prove` signs,
//! the exports and the chart.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use tau_tests::harness::{
    DevCloud, Result, binary, http, push_ping_functions, push_ping_project, run, tau_node_ok,
    wait_for,
};
use tau_tests::otlp::OtlpReceiver;
use tau_tests::postgres::PgServer;

/// `q collect --cloud PROFILE --db DB --json`: its report.
fn collect(cloud: &DevCloud, db: &str) -> Result<serde_json::Value> {
    let out = run(
        Command::new(binary("q")?)
            .args(["collect", "--json", "--db", db, "--cloud"])
            .arg(&cloud.profile)
            .env("Q_IDENTITY", cloud.dir.join("q-identity.key")),
        Duration::from_secs(60),
    )?;
    if !out.status.success() {
        return Err(format!("q collect: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The nodes' records as `tau-node counters --json` lists them.
fn records(cloud: &DevCloud) -> Result<Vec<serde_json::Value>> {
    let out = tau_node_ok(&["counters", "--json", "--cloud", &cloud.profile.to_string_lossy()])?;
    let value: serde_json::Value = serde_json::from_str(&out)?;
    Ok(value.as_array().cloned().unwrap_or_default())
}

/// Every integer data point an OTLP receiver got, by metric name (what the exporter sent before
/// q exited).
fn received_metrics(receiver: &OtlpReceiver) -> Result<BTreeMap<String, Vec<i64>>> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    use prost::Message;

    let mut points: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    while let Ok((path, body)) = receiver.requests.recv_timeout(Duration::from_secs(5)) {
        assert_eq!(path, "/v1/metrics");
        let request = ExportMetricsServiceRequest::decode(body.as_slice())?;
        for metric in
            request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics)
        {
            let data = match &metric.data {
                Some(Data::Sum(sum)) => &sum.data_points,
                Some(Data::Gauge(gauge)) => &gauge.data_points,
                _ => continue,
            };
            let entry = points.entry(metric.name.clone()).or_default();
            entry.extend(data.iter().filter_map(|p| match p.value {
                Some(Value::AsInt(n)) => Some(n),
                _ => None,
            }));
        }
    }
    Ok(points)
}

/// Runs `q ARGS`; fails with its stderr unless it succeeds.
fn q_ok(args: &[&str]) -> Result<String> {
    let out = run(Command::new(binary("q")?).args(args), Duration::from_secs(60))?;
    if !out.status.success() {
        return Err(format!("q {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn invocations(records: &[serde_json::Value]) -> u64 {
    records.iter().filter_map(|r| r["invocations"].as_u64()).sum()
}

#[test]
fn q_collect_counts_every_call_once() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(3, &tmp.path().join("cloud"), &["--counter-window", "1s"])?;
    push_ping_project(&cloud, tmp.path(), "lab")?;
    // 1 call by push_ping_project, 29 more spread over the three gateways.
    for i in 0..29 {
        let gateway = &cloud.gateways[i % cloud.gateways.len()];
        let answer = http(gateway, "GET", "ping.lab.tau", "/ping", b"")?;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let (listed, _) = wait_for(Duration::from_secs(30), "30 calls in signed records", || {
        let listed = records(&cloud)?;
        Ok((invocations(&listed) == 30).then_some(listed))
    })?;

    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let profile = cloud.profile.to_string_lossy().to_string();
    // Once seer has every node's heartbeat: 3 healthy nodes, every record still to collect.
    let (status, _) = wait_for(Duration::from_secs(30), "seer to hear 3 nodes", || {
        let status: serde_json::Value =
            serde_json::from_str(&q_ok(&["status", "--db", &db, "--cloud", &profile, "--json"])?)?;
        Ok((status["healthy"] == 3).then_some(status))
    })?;
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3), "{status}");
    assert_eq!(status["healthy"], 3, "{status}");
    assert_eq!(status["lag"], listed.len() as u64, "{status}");
    assert!(status["nodes"][0]["cpus"].as_u64() > Some(0), "{status}");

    // The first collection also sends q's metrics to an OTLP receiver.
    let receiver = OtlpReceiver::start()?;
    let out = run(
        Command::new(binary("q")?)
            .args(["collect", "--json", "--db", &db, "--cloud", &profile, "--otlp", &receiver.url])
            .env("Q_IDENTITY", cloud.dir.join("q-identity.key")),
        Duration::from_secs(60),
    )?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["inserted"], listed.len() as u64, "{report}");
    let metrics = received_metrics(&receiver)?;
    assert_eq!(metrics.get("q.records.ingested"), Some(&vec![listed.len() as i64]), "{metrics:?}");
    assert_eq!(metrics.get("q.records.rejected"), Some(&vec![0]), "{metrics:?}");
    assert_eq!(metrics.get("q.lag"), Some(&vec![0, 0, 0]), "{metrics:?}");
    let table = q_ok(&["status", "--db", &db, "--cloud", &profile])?;
    assert!(table.contains("3 nodes, 3 healthy; 0 records not collected yet"), "{table}");
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(report["gaps"], 0, "{report}");
    // Again: nothing new, nothing counted twice.
    let again = collect(&cloud, &db)?;
    assert_eq!(again["inserted"], 0, "{again}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let totals = runtime.block_on(async {
        let store = q::store::Store::open(&db).await?;
        store.totals(0, i64::MAX as u64, Some("lab")).await
    })?;
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!(
        (totals[0].function.as_str(), totals[0].invocations, totals[0].errors),
        ("ping", 30, 0)
    );

    // The proof: 30 invocations, signed by q's key, verified offline; one changed byte fails.
    let dir = tmp.path();
    let path = |name: &str| dir.join(name).to_string_lossy().to_string();
    let (key, proof) = (path("q.key"), path("proof.json"));
    let summary: serde_json::Value = serde_json::from_str(&q_ok(&[
        "prove", "--db", &db, "--key", &key, "--out", &proof, "--period", "..now", "--json",
    ])?)?;
    assert_eq!(summary["totals"]["invocations"], 30, "{summary}");
    assert_eq!(summary["line_items"], 1, "{summary}");
    let address = q_ok(&["key", "--key", &key])?.trim().to_lowercase();
    assert_eq!(summary["signer"], address.as_str());
    let verified: serde_json::Value = serde_json::from_str(&q_ok(&[
        "verify-proof",
        &proof,
        "--signer",
        &address,
        "--line",
        "lab/ping",
        "--json",
    ])?)?;
    assert_eq!(verified["statement"]["totals"]["invocations"], 30, "{verified}");
    assert_eq!(verified["trusted"], true, "{verified}");
    // Anyone can sign a well-formed proof: with no trusted signer named it is not trusted, and
    // the exit status says so.
    let untrusted = run(
        Command::new(binary("q")?).args(["verify-proof", &proof, "--json"]),
        Duration::from_secs(30),
    )?;
    let shown: serde_json::Value = serde_json::from_slice(&untrusted.stdout)?;
    assert!(!untrusted.status.success(), "a proof with no trusted signer passed: {shown}");
    assert_eq!(shown["trusted"], false, "{shown}");
    let signers = path("trusted-signers");
    std::fs::write(&signers, format!("# q of the lab cloud\n{address}\n"))?;
    let from_file: serde_json::Value = serde_json::from_str(&q_ok(&[
        "verify-proof",
        &proof,
        "--trusted-signers",
        &signers,
        "--json",
    ])?)?;
    assert_eq!(from_file["trusted"], true, "{from_file}");
    std::fs::write(&signers, "0x0000000000000000000000000000000000000001\n")?;
    let other = run(
        Command::new(binary("q")?).args(["verify-proof", &proof, "--trusted-signers", &signers]),
        Duration::from_secs(30),
    )?;
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains("not by the required signer"), "{err}");
    let text = std::fs::read_to_string(&proof)?;
    std::fs::write(&proof, text.replacen("\"invocations\": 30", "\"invocations\": 31", 1))?;
    let out =
        run(Command::new(binary("q")?).args(["verify-proof", &proof]), Duration::from_secs(30))?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("does not verify"), "{err}");

    // Exports: the totals line and the raw records agree with the nodes.
    let csv = q_ok(&["export", "--db", &db, "--format", "csv"])?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "project,function,invocations,errors,wall_micros,cpu_micros,kv_reads,kv_writes,\
         storage_read_bytes,storage_written_bytes,outbound_sent_bytes,outbound_received_bytes,\
         records"
    );
    assert!(lines[1].starts_with("lab,ping,30,0,"), "{csv}");
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(&q_ok(&["export", "--db", &db, "--format", "json", "--records"])?)?;
    assert_eq!(raw.len(), listed.len());
    assert_eq!(invocations(&raw), 30);
    let raw_csv = q_ok(&["export", "--db", &db, "--records", "--out", &path("records.csv")]);
    assert_eq!(raw_csv?, "");
    assert_eq!(std::fs::read_to_string(path("records.csv"))?.lines().count(), listed.len() + 1);

    // Usage events for billing systems: Stripe's and Lago's shapes, one per record and figure,
    // the same ids on every export; a project without a customer is refused before anything is
    // written.
    let customers = path("customers.yaml");
    std::fs::write(&customers, "projects:\n  other: cus_9\n")?;
    let out = run(
        Command::new(binary("q")?).args([
            "export",
            "--db",
            &db,
            "--format",
            "stripe",
            "--customers",
            &customers,
        ]),
        Duration::from_secs(60),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no customer for project `lab`"), "{err}");
    assert!(out.stdout.is_empty(), "nothing written before the check");
    std::fs::write(&customers, "projects:\n  lab: cus_lab\n")?;
    let export = |format: &str| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&q_ok(&[
            "export",
            "--db",
            &db,
            "--format",
            format,
            "--customers",
            &customers,
        ])?)?)
    };
    let stripe = export("stripe")?;
    let stripe = stripe.as_array().ok_or("stripe: not an array")?;
    let sum = |name: &str| -> u64 {
        stripe
            .iter()
            .filter(|e| e["event_name"] == name)
            .filter_map(|e| e["payload"]["value"].as_str()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(sum("tau_invocations"), 30);
    assert!(stripe.iter().all(|e| e["payload"]["stripe_customer_id"] == "cus_lab"));
    let ids: std::collections::HashSet<&str> =
        stripe.iter().filter_map(|e| e["identifier"].as_str()).collect();
    assert_eq!(ids.len(), stripe.len(), "every event has its own id");
    assert_eq!(export("stripe")?.as_array(), Some(stripe), "a second export is the same");
    let lago = export("lago")?;
    let lago = lago["events"].as_array().ok_or("lago: no events")?;
    assert_eq!(lago.len(), stripe.len());
    let lago_ids: std::collections::HashSet<&str> =
        lago.iter().filter_map(|e| e["transaction_id"].as_str()).collect();
    assert_eq!(lago_ids, ids, "both formats carry the same ids");

    // Charts, PNG and SVG, with the function named.
    let png = path("usage.png");
    let chart: serde_json::Value =
        serde_json::from_str(&q_ok(&["plot", "--db", &db, "--out", &png, "--json"])?)?;
    assert_eq!(chart["functions"], serde_json::json!(["lab/ping"]), "{chart}");
    assert!(std::fs::read(&png)?.starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = path("usage.svg");
    q_ok(&["plot", "--db", &db, "--out", &svg])?;
    assert!(std::fs::read_to_string(&svg)?.contains("lab/ping"));
    Ok(())
}

/// Sums of a store's totals: (invocations, records).
fn stored(db: &str) -> Result<(u64, u64)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let totals = runtime.block_on(async {
        let store = q::store::Store::open(db).await?;
        store.totals(0, i64::MAX as u64, None).await
    })?;
    Ok((totals.iter().map(|t| t.invocations).sum(), totals.iter().map(|t| t.records).sum()))
}

/// Starts `q collect` into `db`.
fn spawn_collect(cloud: &DevCloud, db: &str) -> Result<std::process::Child> {
    Ok(Command::new(binary("q")?)
        .args(["collect", "--json", "--db", db, "--cloud"])
        .arg(&cloud.profile)
        .env("Q_IDENTITY", cloud.dir.join("q-identity.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?)
}

#[test]
fn q_collect_killed_mid_batch_then_run_again_counts_exactly() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(3, &tmp.path().join("cloud"), &["--counter-window", "1s"])?;
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    push_ping_functions(&cloud, tmp.path(), "load", &names)?;
    // Calls over every gateway and function for a few seconds: records for many windows.
    let mut calls = 1;
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let gateway = &cloud.gateways[calls % cloud.gateways.len()];
        let path = format!("/{}", names[(calls / 3) % names.len()]);
        let answer = http(gateway, "GET", "ping.load.tau", &path, b"")?;
        assert_eq!(answer.status, 200, "{}", answer.text());
        calls += 1;
    }
    let calls = calls as u64;
    let (listed, _) = wait_for(Duration::from_secs(30), "every call in signed records", || {
        let listed = records(&cloud)?;
        Ok((invocations(&listed) == calls).then_some(listed))
    })?;
    let expected = (calls, listed.len() as u64);
    eprintln!("{calls} calls in {} records", listed.len());

    // PostgreSQL: q killed inside its transaction, for certain. The test holds the cursors table
    // so that q's first batch writes its records and then waits to move its cursor; the kill
    // lands there, and PostgreSQL rolls the batch back.
    let server = PgServer::start(false)?;
    let url = server.database("q")?;
    assert_eq!(stored(&url)?, (0, 0)); // the schema, made before the lock
    let lock = server.session("q", "BEGIN; LOCK TABLE cursors IN EXCLUSIVE MODE;")?;
    let mut child = spawn_collect(&cloud, &url)?;
    // Waiting on the lock with its cursor update means its records are written, uncommitted.
    wait_for(Duration::from_secs(30), "q to wait inside its transaction", || {
        let waiting = server.psql(
            "q",
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND state = 'active' AND query LIKE 'INSERT INTO cursors%'",
        )?;
        Ok((waiting == "1").then_some(()))
    })?;
    child.kill()?;
    child.wait()?;
    lock.end_with("COMMIT;")?;
    assert_eq!(stored(&url)?, (0, 0), "a killed batch left records");
    let report = collect(&cloud, &url)?;
    assert_eq!(report["inserted"], expected.1, "{report}");
    assert_eq!(stored(&url)?, expected);

    // SQLite: killed at many moments of its run (connecting, reading, inside a transaction,
    // between pages), each time run again: never more than the truth, and exact at the end.
    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let mut partial = 0;
    for delay in [0, 20, 40, 60, 80, 100, 130, 160, 200, 250, 300, 400] {
        let mut child = spawn_collect(&cloud, &db)?;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill()?;
        child.wait()?;
        if tmp.path().join("q.db").exists() {
            let (invocations, records) = stored(&db)?;
            assert!(invocations <= calls && records <= expected.1, "over-counted: {invocations}");
            partial += usize::from(records > 0 && records < expected.1);
        }
    }
    eprintln!("SQLite: {partial} of 12 kills left a part of the records stored");
    collect(&cloud, &db)?;
    assert_eq!(stored(&db)?, expected);
    Ok(())
}

#[test]
fn an_alert_posts_once_when_crossed_and_once_when_cleared() -> Result {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(1, &tmp.path().join("cloud"), &["--counter-window", "1s"])?;
    push_ping_project(&cloud, tmp.path(), "lab")?;
    let posts: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let kept = Arc::clone(&posts);
    let webhook = tau_tests::http_server::serve(move |request| {
        let body = serde_json::from_slice(&request.body).unwrap_or_default();
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(body);
        (200, "{}".into())
    })?;
    let posted = || posts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let db = tmp.path().join("q.db").to_string_lossy().to_string();
    let rule = "project=lab invocations>20/8s";
    // Collects every second; each collection prints one JSON line, counted here.
    let collections = Arc::new(AtomicUsize::new(0));
    let start_collector = || -> Result<std::process::Child> {
        let mut child = Command::new(binary("q")?)
            .args(["collect", "--follow", "--every", "1s", "--json", "--db", &db, "--cloud"])
            .arg(&cloud.profile)
            .args(["--alert", rule, "--webhook", &webhook])
            .env("Q_IDENTITY", cloud.dir.join("q-identity.key"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let counter = Arc::clone(&collections);
        std::thread::spawn(move || {
            for _ in std::io::BufReader::new(stdout).lines() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(child)
    };
    let collected_more = |n: usize| {
        let target = collections.load(Ordering::SeqCst) + n;
        wait_for(Duration::from_secs(30), "more collections", || {
            Ok((collections.load(Ordering::SeqCst) >= target).then_some(()))
        })
    };
    let mut collector = start_collector()?;
    collected_more(2)?;
    assert!(posted().is_empty(), "posted before any crossing: {:?}", posted());

    for _ in 0..25 {
        let answer = http(&cloud.gateways[0], "GET", "ping.lab.tau", "/ping", b"")?;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    wait_for(Duration::from_secs(30), "the alert to fire", || {
        Ok((!posted().is_empty()).then_some(()))
    })?;
    let fired = &posted()[0];
    assert_eq!(fired["state"], "firing", "{fired}");
    assert_eq!(fired["alert"], rule, "{fired}");
    let value: u64 = fired["value"].as_str().ok_or("a value")?.parse()?;
    assert!(value > 20, "{fired}");
    // Collections go on while it stays above: no second post.
    collected_more(2)?;
    wait_for(Duration::from_secs(45), "the alert to clear", || {
        Ok((posted().len() >= 2).then_some(()))
    })?;
    let posts_now = posted();
    assert_eq!(posts_now.len(), 2, "{posts_now:?}");
    assert_eq!(posts_now[1]["state"], "cleared", "{posts_now:?}");
    collected_more(3)?;
    assert_eq!(posted().len(), 2, "posted again while cleared: {:?}", posted());

    // A restarted collector remembers: it posts nothing again.
    collector.kill()?;
    collector.wait()?;
    let mut collector = start_collector()?;
    collected_more(3)?;
    collector.kill()?;
    collector.wait()?;
    assert_eq!(posted().len(), 2, "posted again after a restart: {:?}", posted());
    Ok(())
}

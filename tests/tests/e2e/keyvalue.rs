//! Functions that keep state (issue 25): the example `counter` on a real 3-node dev cloud,
//! whose nodes all run `database` and `substrate`, its store `counts` held by all three.
//! Increments sent at once through every gateway are all counted on every node; a database
//! node killed with SIGKILL while increments go on catches up once restarted; a project's
//! stores are its own, and only the functions a store lists may open it; a full store refuses.
//! The example `notes`: a note set through one node is read through another within a second.
//! A cloud of 3 test hosts cut 2|1, written on both sides, converges once healed: the last
//! write by clock on every node, the counter the sum of both sides.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tau_tests::harness::{
    DevCloud, HttpAnswer, Result, Signal, alive, binary, create_project, example_wasm, http,
    push_project, run_node, signal, tau_node_ok, wait_for,
};
use tau_tests::lab::Lab;

/// A project `id` with the example counter (`POST /count` as `counter`, `GET /count` as
/// `count`) on `counter.<id>.tau`, and a store `counts` of `size` that `functions` may open.
fn write_counter_project(dir: &Path, id: &str, functions: &[&str], size: &str) -> Result {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::create_dir_all(dir.join("databases"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {id}\n"))?;
    std::fs::copy(example_wasm("counter")?, dir.join("counter.wasm"))?;
    for (name, method) in [("counter", "POST"), ("count", "GET")] {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: {method}, paths: [/count]}}\n\
                 domains: [counter.{id}.tau]\nsource: counter.wasm\n\
                 execution: {{timeout: 10s, memory: 32MB}}\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("databases/counts.yaml"),
        format!("id: counts\nfunctions: [{}]\nsize: {size}\n", functions.join(", ")),
    )?;
    Ok(())
}

/// Adds the example notes (`notes`, `notes-put`, `notes-delete` on `notes.<id>.tau`) and
/// their store to the project in `dir`.
fn add_notes(dir: &Path, id: &str) -> Result {
    std::fs::copy(example_wasm("notes")?, dir.join("notes.wasm"))?;
    for (name, method) in [("notes", "GET"), ("notes-put", "PUT"), ("notes-delete", "DELETE")] {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: {method}, paths: [/notes]}}\n\
                 domains: [notes.{id}.tau]\nsource: notes.wasm\n"
            ),
        )?;
    }
    std::fs::write(
        dir.join("databases/notes.yaml"),
        "id: notes\nfunctions: [notes, notes-put, notes-delete]\nsize: 1MB\n",
    )?;
    Ok(())
}

fn count(gateway: &str, id: &str, key: &str) -> Result<HttpAnswer> {
    http(gateway, "POST", &format!("counter.{id}.tau"), &format!("/count?key={key}"), b"")
}

fn read(gateway: &str, id: &str, key: &str) -> Result<HttpAnswer> {
    http(gateway, "GET", &format!("counter.{id}.tau"), &format!("/count?key={key}"), b"")
}

/// The counter `key` as `gateway` reads it.
fn value(gateway: &str, id: &str, key: &str) -> Result<u64> {
    let answer = read(gateway, id, key)?;
    if answer.status != 200 {
        return Err(format!("GET /count on {gateway}: {} {}", answer.status, answer.text()).into());
    }
    Ok(answer.text().trim().parse()?)
}

/// Sends `total` increments of `key` from `threads` threads at once, each to the gateways in
/// turn, calling `progress` with the number answered 200 so far after each; fails on any other
/// answer.
fn increments(
    gateways: &[String],
    id: &str,
    key: &str,
    total: usize,
    threads: usize,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Result {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(progress);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (next, done, progress) = (next.clone(), done.clone(), progress.clone());
            let (gateways, id, key) = (gateways.to_vec(), id.to_string(), key.to_string());
            std::thread::spawn(move || -> std::result::Result<(), String> {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= total {
                        return Ok(());
                    }
                    let gateway = &gateways[n % gateways.len()];
                    let answer = count(gateway, &id, &key).map_err(|e| e.to_string())?;
                    if answer.status != 200 {
                        return Err(format!(
                            "increment {n} on {gateway}: {} {}",
                            answer.status,
                            answer.text()
                        ));
                    }
                    progress(done.fetch_add(1, Ordering::SeqCst) + 1);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    Ok(())
}

/// Waits until every gateway reads `expected` for `key`.
fn all_read(gateways: &[String], id: &str, key: &str, expected: u64) -> Result {
    for gateway in gateways {
        let mut last = None;
        let seen = wait_for(Duration::from_secs(30), "every node reads the sum", || {
            let value = value(gateway, id, key)?;
            last = Some(value);
            Ok((value == expected).then_some(()))
        });
        if seen.is_err() {
            return Err(format!("{gateway} reads {key} = {last:?}, not {expected}").into());
        }
    }
    Ok(())
}

#[test]
fn increments_on_three_nodes_are_all_counted_even_when_a_database_node_is_killed() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let key = create_project(&cloud.profile, tmp.path(), "tally")?;
    let project = tmp.path().join("tally");
    write_counter_project(&project, "tally", &["counter", "count"], "1MB")?;
    add_notes(&project, "tally")?;
    push_project(&cloud.profile, &project, &key, None)?;
    for gateway in &cloud.gateways {
        wait_for(Duration::from_secs(30), "the counter answers", || {
            Ok((count(gateway, "tally", "warm")?.status == 200).then_some(()))
        })?;
    }

    // 1,000 increments through the three gateways at once.
    increments(&cloud.gateways, "tally", "hits", 1_000, 24, |_| {})?;
    all_read(&cloud.gateways, "tally", "hits", 1_000)?;
    // taucorder lists the store, held by the three nodes, with its two keys.
    let out = tau_tests::harness::run(
        std::process::Command::new(binary("taucorder")?)
            .args(["stores", "--json", "--cloud"])
            .arg(&cloud.profile),
        Duration::from_secs(30),
    )?;
    let stores: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let counts = stores
        .as_array()
        .and_then(|all| all.iter().find(|s| s["project"] == "tally" && s["store"] == "counts"))
        .ok_or_else(|| format!("taucorder stores: {stores}"))?;
    assert_eq!(counts["keys"], 2, "{counts}");
    assert_eq!(counts["nodes"].as_array().map(Vec::len), Some(3), "{counts}");
    assert!(counts["bytes"].as_u64().is_some_and(|b| b > 0), "{counts}");

    // A note set through node 0 is read through node 2 within a second.
    let notes = "notes.tally.tau";
    let (a, c) = (&cloud.gateways[0], &cloud.gateways[2]);
    let note = br#"{"title":"shopping","items":["milk"]}"#;
    let put = http(a, "PUT", notes, "/notes/today", note)?;
    assert_eq!(put.status, 201, "{}", put.text());
    let written = std::time::Instant::now();
    let (seen, _) = wait_for(Duration::from_secs(1), "node 2 reads the note", || {
        let answer = http(c, "GET", notes, "/notes/today", b"")?;
        Ok((answer.status == 200).then_some(answer))
    })?;
    eprintln!("a note set on node 0 was read on node 2 after {:?}", written.elapsed());
    assert_eq!(seen.body, note);
    let bad = http(a, "PUT", notes, "/notes/bad", b"{not json")?;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(http(c, "PUT", notes, "/notes/other", b"[1,2]")?.status, 201);
    let (listed, _) = wait_for(Duration::from_secs(5), "node 1 lists both", || {
        let answer = http(&cloud.gateways[1], "GET", notes, "/notes", b"")?;
        Ok(answer.text().contains("other").then_some(answer))
    })?;
    assert_eq!(listed.text(), r#"{"ids":["other","today"]}"#);
    assert_eq!(http(c, "DELETE", notes, "/notes/today", b"")?.status, 204);
    wait_for(Duration::from_secs(5), "node 0 sees the delete", || {
        Ok((http(a, "GET", notes, "/notes/today", b"")?.status == 404).then_some(()))
    })?;

    // 1,000 more of another key through nodes 0 and 1, node 2 killed halfway.
    let pid = cloud.node_pid(2)?;
    let killed = Arc::new(AtomicUsize::new(0));
    let kill = killed.clone();
    increments(&cloud.gateways[..2], "tally", "busy", 1_000, 16, move |done| {
        if done >= 500 && kill.swap(1, Ordering::SeqCst) == 0 {
            signal(pid, Signal::SIGKILL);
        }
    })?;
    assert_eq!(killed.load(Ordering::SeqCst), 1, "node 2 was killed");
    wait_for(Duration::from_secs(10), "node 2 is gone", || Ok((!alive(pid)).then_some(())))?;
    all_read(&cloud.gateways[..2], "tally", "busy", 1_000)?;
    let node2 = cloud.dir.join("node-2");
    let _restarted = run_node(&node2.join("node.yaml"), &node2.join("restart.log"))?;
    all_read(&cloud.gateways[2..], "tally", "busy", 1_000)?;
    all_read(&cloud.gateways, "tally", "hits", 1_000)?;
    Ok(())
}

#[test]
fn a_store_is_its_projects_own_and_refuses_past_its_size() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(1, &tmp.path().join("cloud"), &["--counter-window", "1s"])?;
    let gateway = &cloud.gateways[0];
    // Project a's store lets only `counter` open it, and holds at most 200 bytes.
    let key_a = create_project(&cloud.profile, tmp.path(), "alpha")?;
    let alpha = tmp.path().join("alpha");
    write_counter_project(&alpha, "alpha", &["counter"], "200B")?;
    push_project(&cloud.profile, &alpha, &key_a, None)?;
    // Project b declares no store at all.
    let key_b = create_project(&cloud.profile, tmp.path(), "beta")?;
    let beta = tmp.path().join("beta");
    write_counter_project(&beta, "beta", &["counter"], "1MB")?;
    std::fs::remove_dir_all(beta.join("databases"))?;
    push_project(&cloud.profile, &beta, &key_b, None)?;

    let (first, _) = wait_for(Duration::from_secs(30), "the counter answers", || {
        let answer = count(gateway, "alpha", "a")?;
        Ok((answer.status != 404).then_some(answer))
    })?;
    assert_eq!((first.status, first.text()), (200, "1\n".to_string()));
    // `count` is not listed for the store: it may not open it.
    let denied = read(gateway, "alpha", "a")?;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("may not open"), "{}", denied.text());
    // Project b's functions, with the same store name, reach nothing of a's.
    let (other, _) = wait_for(Duration::from_secs(30), "b's counter answers", || {
        let answer = count(gateway, "beta", "a")?;
        Ok((answer.status != 404 || answer.text().contains("no store")).then_some(answer))
    })?;
    assert_eq!(other.status, 404, "{}", other.text());
    assert!(other.text().contains("the project has no store `counts`"), "{}", other.text());

    // Each new key takes its length and a 16-byte slot: the store fills up, then refuses with
    // a reason, and what it holds stays readable.
    let mut refused = None;
    for i in 0..40 {
        let answer = count(gateway, "alpha", &format!("key-{i:02}"))?;
        if answer.status != 200 {
            refused = Some((i, answer));
            break;
        }
    }
    let (at, answer) = refused.ok_or("the store never filled up")?;
    assert!(at > 3, "refused too early, at key {at}");
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.text().contains("store `counts` is full"), "{}", answer.text());
    assert_eq!(count(gateway, "alpha", "a")?.text(), "2\n", "the node is unharmed");

    // Every call to the store is counted in the node's signed records (version 2): the
    // counter reads once and writes once per request, the refused ones included.
    let requests = 2 + at as u64 + 1;
    let profile = cloud.profile.to_string_lossy().into_owned();
    wait_for(Duration::from_secs(30), "the key-value calls are counted", || {
        let records: Vec<serde_json::Value> =
            serde_json::from_str(&tau_node_ok(&["counters", "--cloud", &profile, "--json"])?)?;
        let mine: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r["project"] == "alpha" && r["function"] == "counter")
            .collect();
        let sum = |field: &str| mine.iter().filter_map(|r| r[field].as_u64()).sum::<u64>();
        let figures = (sum("invocations"), sum("kv_reads"), sum("kv_writes"));
        let verified = mine.iter().all(|r| r["verified"] == true);
        match figures == (requests, requests, requests) && verified {
            true => Ok(Some(())),
            false => Err(format!("{requests} requests; counted {figures:?}, {verified}").into()),
        }
    })?;
    Ok(())
}

#[test]
fn a_partitioned_store_converges_once_healed() -> Result {
    let lab = Lab::new(3)?;
    let tmp = tempfile::tempdir()?;
    let services = "tns,hoarder,substrate,database";
    let cloud = lab.start_cloud(tmp.path(), services, &["--http-port", "8080"], "info")?;
    let (profile, ids) = (&cloud.profile, &cloud.ids);
    wait_for(Duration::from_secs(60), "every node connects to every other", || {
        Ok((cloud.peer_counts()? == vec![2, 2, 2]).then_some(()))
    })?;
    let key = create_project(profile, tmp.path(), "split")?;
    let project = tmp.path().join("split");
    write_counter_project(&project, "split", &["counter", "count"], "1MB")?;
    add_notes(&project, "split")?;
    push_project(profile, &project, &key, Some(&ids[0]))?;
    let gateways: Vec<String> = lab.hosts.iter().map(|h| format!("{}:8080", h.ip)).collect();
    for gateway in &gateways {
        wait_for(Duration::from_secs(60), "the counter answers on every node", || {
            Ok((count(gateway, "split", "warm")?.status == 200).then_some(()))
        })?;
    }
    let notes = "notes.split.tau";
    assert_eq!(http(&gateways[0], "PUT", notes, "/notes/color", b"\"white\"")?.status, 201);
    increments(&gateways, "split", "votes", 30, 3, |_| {})?;
    all_read(&gateways, "split", "votes", 30)?;

    // Cut {0,1} off from {2}; both sides write the same key and count the same counter.
    lab.partition(&[0, 1], &[2])?;
    wait_for(Duration::from_secs(60), "the partition takes effect on every node", || {
        Ok((cloud.peer_counts()? == vec![1, 1, 0]).then_some(()))
    })?;
    assert_eq!(http(&gateways[0], "PUT", notes, "/notes/color", b"\"red\"")?.status, 200);
    increments(&gateways[..2], "split", "votes", 40, 4, |_| {})?;
    std::thread::sleep(Duration::from_millis(50));
    // The later write, on the other side.
    assert_eq!(http(&gateways[2], "PUT", notes, "/notes/color", b"\"blue\"")?.status, 200);
    increments(&gateways[2..], "split", "votes", 25, 2, |_| {})?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(value(&gateways[0], "split", "votes")?, 70, "side {{0, 1}} counts its own");
    assert_eq!(value(&gateways[2], "split", "votes")?, 55, "side {{2}} counts its own");
    assert_eq!(http(&gateways[1], "GET", notes, "/notes/color", b"")?.text(), "\"red\"");

    lab.heal(&[0, 1], &[2])?;
    let (_, took) = wait_for(Duration::from_secs(60), "every node converges", || {
        for gateway in &gateways {
            let color = http(gateway, "GET", notes, "/notes/color", b"")?.text();
            if value(gateway, "split", "votes")? != 95 || color != "\"blue\"" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    eprintln!("converged {took:?} after the partition healed");
    Ok(())
}

//! q against a real local cloud: `q collect` reads every node's signed counter records into a
//! SQLite file, each once; its totals equal the calls made.

use std::process::Command;
use std::time::Duration;

use tau_tests::harness::{
    DevCloud, Result, binary, http, push_ping_project, run, tau_node_ok, wait_for,
};

/// `q collect --cloud PROFILE --db DB --json`: its report.
fn collect(cloud: &DevCloud, db: &str) -> Result<serde_json::Value> {
    let out = run(
        Command::new(binary("q")?)
            .args(["collect", "--json", "--db", db, "--cloud"])
            .arg(&cloud.profile),
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
    let report = collect(&cloud, &db)?;
    assert_eq!(report["inserted"], listed.len() as u64, "{report}");
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
    Ok(())
}

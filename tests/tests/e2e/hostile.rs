//! What a hostile holder of the swarm key can do to a cloud, each case against real processes:
//! a stock `tau-node` started by a tenant, with whatever it chooses to claim.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tau_proto::admin::{AdminProtocol, AdminRequest, AdminResponse};
use tau_proto::client::{ClientError, ConnectOptions};
use tau_proto::tns::{Draft, MAX_CLOCK_AHEAD, TnsProtocol, TnsRequest, TnsResponse, keys};
use tau_proto::{Client, CloudProfile};
use tau_tests::harness::{
    DevCloud, KillOnDrop, Result, binary, converged, create_project, dig, http, push_ping_project,
    run, run_node, tau_node_ok, tns_status, wait_for,
};

/// A stock node that joins `cloud` with the swarm key from its profile, set up by `tau-node
/// init` with `options`, running until dropped; and its peer id.
fn rogue_node(cloud: &DevCloud, dir: &Path, options: &[&str]) -> Result<(KillOnDrop, String)> {
    rogue_node_with(cloud, dir, options, "")
}

/// [`rogue_node`] with `yaml` added to the end of its `node.yaml`.
fn rogue_node_with(
    cloud: &DevCloud,
    dir: &Path,
    options: &[&str],
    yaml: &str,
) -> Result<(KillOnDrop, String)> {
    let profile = CloudProfile::load(&cloud.profile)?;
    let bootstrap = profile.bootstrap.first().ok_or("the profile names no bootstrap node")?;
    let node_dir = dir.join("rogue");
    let swarm_key = profile.swarm_key.to_string_lossy().into_owned();
    let (dir_arg, bootstrap) = (node_dir.to_string_lossy().into_owned(), bootstrap.to_string());
    let mut args = vec!["init", "--dir", &dir_arg, "--swarm-key", &swarm_key];
    args.extend(["--bootstrap", &bootstrap, "--listen", "127.0.0.1", "--p2p-port", "0"]);
    for port in ["--http-port", "--dns-port"] {
        if !options.contains(&port) {
            args.extend([port, "0"]);
        }
    }
    args.extend(options);
    let peer = tau_node_ok(&args)?.trim().to_string();
    let config = node_dir.join("node.yaml");
    let written = std::fs::read_to_string(&config)?;
    std::fs::write(&config, format!("{written}{yaml}"))?;
    Ok((run_node(&config, &node_dir.join("node.log"))?, peer))
}

fn profile_arg(cloud: &DevCloud) -> String {
    cloud.profile.to_string_lossy().into_owned()
}

/// A node's region reaches every operator's terminal through `tau-node nodes` and `tau-node
/// status`: sent raw, `\e]0;TITLE\a\e[2J` would retitle their window and clear their screen.
#[test]
fn a_hostile_region_cannot_drive_an_operators_terminal() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let hostile = "\u{1b}]0;TITLE\u{7}\u{1b}[2J\u{202e}";
    let (_rogue, rogue) = rogue_node(&cloud, dir.path(), &["--region", hostile])?;
    let profile = profile_arg(&cloud);
    // The operator admitted it: a node's own heartbeat says where it is.
    tau_node_ok(&["nodes", "admit", &rogue, "--service", "seer", "--cloud", &profile])?;
    let shown = "\\x1b]0;TITLE\\x07\\x1b[2J\\u{202e}";
    for command in ["nodes", "status"] {
        let (out, _) = wait_for(
            Duration::from_secs(30),
            &format!("`tau-node {command}` lists the rogue node"),
            || {
                let out = tau_node_ok(&[command, "--cloud", &profile])?;
                // Raw or escaped: once the region is there at all, look at how.
                Ok((out.contains("TITLE")).then_some(out))
            },
        )?;
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'),
            "`tau-node {command}` printed a control character a node sent:\n{}",
            out.escape_debug()
        );
        assert!(
            out.contains(shown),
            "`tau-node {command}` does not show the region escaped:\n{out}"
        );
    }
    Ok(())
}

/// A tenant signs a record of its own project at version `u64::MAX` and sends it to a node: taken
/// into the Lamport clock, it would leave no version for anyone's later write (the operator's
/// included), which would wrap to 0 and lose.
#[test]
fn a_record_at_the_end_of_the_clock_is_refused_and_writes_go_on() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let profile = profile_arg(&cloud);
    let owner_key = create_project(&cloud.profile, dir.path(), "tenant")?;
    let owner = tau_proto::keyfile::read(&owner_key)?;
    let frozen =
        Draft { key: keys::function("tenant", "f"), scope: "tenant".into(), value: Some(vec![1]) }
            .sign(u64::MAX, &owner)
            .ok_or("cannot sign")?;
    let ids = cloud.peer_ids()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        let node = ids[0].parse()?;
        let answer =
            client.call::<TnsProtocol>(node, TnsRequest::Put { records: vec![frozen] }).await?;
        Ok::<_, tau_tests::harness::Error>(answer)
    })?;
    let TnsResponse::Put(put) = answer else {
        return Err(format!("unexpected answer {answer:?}").into());
    };
    assert_eq!(put.stored, 0, "{put:?}");
    assert!(
        put.rejected.iter().any(|(_, why)| why.contains("beyond this node's clock")),
        "{put:?}"
    );

    // The operator and the tenant write on, at ordinary versions, on every node.
    create_project(&cloud.profile, dir.path(), "later")?;
    let (status, _) = wait_for(Duration::from_secs(10), "both nodes hold the new project", || {
        let status = tns_status(&cloud.profile)?;
        Ok(converged(&status, 2).then_some(status))
    })?;
    for node in &status {
        let clock = node["clock"].as_u64().ok_or("no clock")?;
        assert!(clock < MAX_CLOCK_AHEAD, "the clock moved to {clock}: {node}");
    }
    assert!(status.iter().any(|s| s["ahead"].as_u64() >= Some(1)), "the refusal is counted");
    let record = tau_node_ok(&["tns", "get", "/projects/later", "--cloud", &profile, "--json"])?;
    let record: serde_json::Value = serde_json::from_str(&record)?;
    assert_eq!(record["deleted"], false, "{record}");
    Ok(())
}

/// A tenant runs a stock node that claims substrate, tns and hoarder and announces an
/// address of its choosing. Before admission, seer sent clients for `substrate.tau.dev` there
/// and every node listed it as theirs. Now it is a client until the operator admits it, and
/// again within seconds of a revocation.
#[test]
fn a_peer_the_operator_did_not_admit_is_no_node() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let profile = profile_arg(&cloud);
    let steered: std::net::IpAddr = "10.66.66.66".parse()?;
    let (_rogue, rogue) = rogue_node(
        &cloud,
        dir.path(),
        &["--services", "substrate,tns,hoarder", "--announce", "/ip4/10.66.66.66/tcp/4001"],
    )?;
    let dns = &cloud.dns[0];
    let listed = |command: &str| -> Result<bool> {
        Ok(tau_node_ok(&[command, "--cloud", &profile])?.contains(&rogue))
    };
    // Long enough for a node to be heard (heartbeats every second, the mesh in a few).
    let watch_until = std::time::Instant::now() + Duration::from_secs(12);
    while std::time::Instant::now() < watch_until {
        assert!(
            !dig(dns, "substrate.tau.dev", false)?.contains(&steered),
            "seer sent clients to it"
        );
        assert!(!listed("nodes")?, "`tau-node nodes` lists it");
        assert!(!listed("peers")?, "`tau-node peers` lists it");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The operator admits it for substrate only: now it is a node, believed for that alone.
    tau_node_ok(&["nodes", "admit", &rogue, "--service", "substrate", "--cloud", &profile])?;
    wait_for(Duration::from_secs(15), "seer answers with the admitted node", || {
        Ok(dig(dns, "substrate.tau.dev", false)?.contains(&steered).then_some(()))
    })?;
    assert!(!dig(dns, "tns.tau.dev", false)?.contains(&steered), "believed for tns too");
    let admitted = tau_node_ok(&["nodes", "admitted", "--cloud", &profile, "--json"])?;
    let admitted: Vec<serde_json::Value> = serde_json::from_str(&admitted)?;
    assert_eq!(admitted.len(), 3, "{admitted:?}");

    // Revoked: gone from seer's answers and the node lists within seconds.
    tau_node_ok(&["nodes", "revoke", &rogue, "--cloud", &profile])?;
    wait_for(Duration::from_secs(10), "the revoked node leaves seer's answers", || {
        let gone = !dig(dns, "substrate.tau.dev", false)?.contains(&steered)
            && !listed("nodes")?
            && !listed("peers")?;
        Ok(gone.then_some(()))
    })?;
    Ok(())
}

/// A tenant's stock node runs substrate and serves another project's function on its own
/// gateway. Its counter records, signed with its own key, were collected by q and billed to that
/// project. Now q asks only the nodes the operator admitted.
#[test]
fn q_bills_nothing_that_a_node_the_operator_did_not_admit_served() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(2, &dir.path().join("cloud"), &["--counter-window", "1s"])?;
    push_ping_project(&cloud, dir.path(), "victim")?; // one call, on the cloud's own gateway
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let (_rogue, _) = rogue_node_with(
        &cloud,
        dir.path(),
        &["--services", "substrate", "--http-port", &port],
        "substrate:\n  counter_window: 1s\n",
    )?;
    let gateway = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "the rogue gateway serves the victim's function", || {
        let answer = http(&gateway, "GET", "ping.victim.tau", "/ping", b"");
        Ok(answer.is_ok_and(|a| a.status == 200).then_some(()))
    })?;
    for _ in 0..9 {
        let answer = http(&gateway, "GET", "ping.victim.tau", "/ping", b"")?;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // The rogue's windows (1 s) close and its records are signed.
    std::thread::sleep(Duration::from_secs(3));

    let db = dir.path().join("q.db").to_string_lossy().into_owned();
    let profile = profile_arg(&cloud);
    let out = run(
        Command::new(binary("q")?)
            .args(["collect", "--json", "--db", &db, "--cloud", &profile])
            .env("Q_IDENTITY", dir.path().join("q-identity.key")),
        Duration::from_secs(60),
    )?;
    assert!(out.status.success(), "q collect: {}", String::from_utf8_lossy(&out.stderr));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let totals = runtime.block_on(async {
        let store = q::store::Store::open(&db).await?;
        store.totals(0, i64::MAX as u64, Some("victim")).await
    })?;
    let billed: u64 = totals.iter().map(|t| t.invocations).sum();
    assert_eq!(billed, 1, "q billed calls that an unadmitted node served: {totals:?}");
    Ok(())
}

/// Any client could tell a node that q had stored its counter records (`AckCounters`), and the
/// node then pruned them at the end of their retention, whether q had read them or not: usage
/// nobody could bill. Now only a client the operator admitted for the `q` role is heard.
#[test]
fn only_a_q_the_operator_admitted_acknowledges_counter_records() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(1, &dir.path().join("cloud"), &["--counter-window", "1s"])?;
    push_ping_project(&cloud, dir.path(), "lab")?;
    let profile = profile_arg(&cloud);
    wait_for(Duration::from_secs(30), "a signed counter record", || {
        let out = tau_node_ok(&["counters", "--cloud", &profile, "--json"])?;
        let records: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        Ok((!records.is_empty()).then_some(()))
    })?;
    let node: libp2p::PeerId = cloud.peer_ids()?.first().ok_or("no node")?.parse()?;
    let identity = libp2p::identity::Keypair::generate_ed25519();
    let peer = identity.public().to_peer_id().to_string();
    let runtime = tokio::runtime::Runtime::new()?;
    let ack = || {
        runtime.block_on(async {
            let options =
                ConnectOptions { identity: Some(identity.clone()), ..ConnectOptions::default() };
            let client =
                Client::connect_with(&CloudProfile::load(&cloud.profile)?, options).await?;
            let through = u64::MAX;
            Ok::<_, tau_tests::harness::Error>(
                client.call::<AdminProtocol>(node, AdminRequest::AckCounters { through }).await,
            )
        })
    };
    match ack()? {
        Err(ClientError::Remote { message, .. }) => {
            assert!(message.contains("admitted for the `q` role"), "{message}")
        }
        other => panic!("a client no operator admitted acknowledged counters: {other:?}"),
    }
    // Admitted for the role, the same client is heard (once the node has the record).
    tau_node_ok(&["nodes", "admit", &peer, "--service", "q", "--cloud", &profile])?;
    let (acked, _) = wait_for(Duration::from_secs(15), "the admitted q's acknowledgement", || {
        Ok(match ack()? {
            Ok(AdminResponse::Acked(seq)) => Some(seq),
            _ => None,
        })
    })?;
    assert!(acked >= 1, "acknowledged through {acked}");
    Ok(())
}

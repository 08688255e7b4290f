//! What a hostile holder of the swarm key can do to a cloud, each case against real processes:
//! a stock `tau-node` started by a tenant, with whatever it chooses to claim.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tau_proto::admin::{AdminProtocol, AdminRequest, AdminResponse};
use tau_proto::client::{ClientError, ConnectOptions};
use tau_proto::tns::{
    Draft, MAX_CLOCK_AHEAD, PutOutcome, TnsProtocol, TnsRequest, TnsResponse, keys,
};
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
    for port in ["--http-port", "--dns-port", "--admin-port"] {
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
    // It knows the operator's public key, as every node does: once admitted without tns, it
    // knows that no tns node will sync with its own registry, and offers its gateway at once.
    let operator = tau_proto::keyfile::read(&cloud.dir.join("operator.key"))?;
    let operator = tau_proto::identity::WriterKey::of(&operator).ok_or("no operator key")?;
    let (_rogue, rogue) = rogue_node(
        &cloud,
        dir.path(),
        &[
            "--services",
            "substrate,tns,hoarder",
            "--announce",
            "/ip4/10.66.66.66/tcp/4001",
            "--operator-key",
            &operator.to_string(),
        ],
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

/// A tenant's project pushed `domains: [127.0.0.1, api.victim.tau, substrate.tau.dev]` and was
/// then served for requests to the gateway's address, to a service name and inside the victim's
/// generated domain; any project could overwrite another's domain and routes, or route its own
/// domain to the victim's function (billed to the victim). Now a domain belongs to the project
/// that claimed it, every registry node refuses the rest, and the gateway serves nothing for an
/// address or a request without a Host.
#[test]
fn a_project_cannot_take_another_projects_domain_or_route() -> Result {
    use tau_proto::cbor;
    use tau_proto::tns::values::{DomainClaim, Route};
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    push_ping_project(&cloud, dir.path(), "victim")?;
    let victim = tau_proto::keyfile::read(&dir.path().join("victim-owner.key"))?;
    let tenant = tau_proto::keyfile::read(&create_project(&cloud.profile, dir.path(), "tenant")?)?;
    let gateway = cloud.gateways.first().ok_or("no gateway")?.clone();

    // The CLI says what is wrong before anything is sent.
    let project = dir.path().join("tenant");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: tenant\nname: tenant\n")?;
    std::fs::copy(tau_tests::harness::example_wasm("ping")?, project.join("ping.wasm"))?;
    std::fs::write(
        project.join("functions/ping.yaml"),
        "id: ping\ntrigger: {type: http, method: GET, paths: [/ping]}\n\
         domains: [127.0.0.1]\nsource: ping.wasm\n",
    )?;
    let (profile, folder) = (profile_arg(&cloud), project.to_string_lossy().into_owned());
    let key = dir.path().join("tenant-owner.key").to_string_lossy().into_owned();
    let out = tau_tests::harness::tau_node(&[
        "project", "push", &folder, "--cloud", &profile, "--key", &key,
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("domains[0]"), "{stderr}");
    assert!(stderr.contains("IP address"), "{stderr}");

    let claim = |fqdn: &str, project: &str, named: &str| Draft {
        key: keys::domain(fqdn),
        scope: project.into(),
        value: Some(cbor::to_vec(&DomainClaim { project: named.into() }).expect("encodes")),
    };
    let route = |fqdn: &str, path: &str, project: &str, named: &str| Draft {
        key: keys::route(fqdn, "GET", path),
        scope: project.into(),
        value: Some(
            cbor::to_vec(&Route { project: named.into(), function: "ping".into() })
                .expect("encodes"),
        ),
    };
    let node: libp2p::PeerId = cloud.peer_ids()?.first().ok_or("no node")?.parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        Ok::<_, tau_tests::harness::Error>(client)
    })?;
    // Each draft signed by its key at a version past the clock, sent straight to a node.
    let put = |drafts: Vec<(Draft, &libp2p::identity::Keypair)>| -> Result<PutOutcome> {
        runtime.block_on(async {
            let clock = client.tns_clock(node).await?;
            let records = drafts
                .into_iter()
                .map(|(draft, key)| draft.sign(clock + 1, key).ok_or("cannot sign"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            match client.call::<TnsProtocol>(node, TnsRequest::Put { records }).await? {
                TnsResponse::Put(put) => Ok(put),
                other => Err(format!("unexpected answer {other:?}").into()),
            }
        })
    };

    // The victim claims a custom domain too, and routes it.
    let done = put(vec![
        (claim("victim.example", "victim", "victim"), &victim),
        (route("victim.example", "/ping", "victim", "victim"), &victim),
    ])?;
    assert_eq!(done.stored, 2, "{done:?}");
    wait_for(Duration::from_secs(30), "the victim's custom domain serves", || {
        let answer = http(&gateway, "GET", "victim.example", "/ping", b"")?;
        Ok((answer.status == 200).then_some(()))
    })?;

    let release =
        Draft { key: keys::domain("victim.example"), scope: "tenant".into(), value: None };
    for (draft, why) in [
        (claim("127.0.0.1", "tenant", "tenant"), "IP address"),
        (claim("api.victim.tau", "tenant", "tenant"), "inside project `victim`"),
        (claim("substrate.tau.dev", "tenant", "tenant"), "service name"),
        (claim("victim.example", "tenant", "tenant"), "claimed by project `victim`"),
        (route("victim.example", "/admin", "tenant", "tenant"), "claimed by project `victim`"),
        (route("victim.example", "/ping", "tenant", "tenant"), "held by project `victim`"),
        (release, "claimed by project `victim`"),
        (route("tenant.tau", "/ping", "tenant", "victim"), "names project `victim`"),
    ] {
        let key = draft.key.clone();
        let done = put(vec![(draft, &tenant)])?;
        assert_eq!(done.stored, 0, "{key} was taken: {done:?}");
        assert!(done.rejected.iter().any(|(_, reason)| reason.contains(why)), "{key}: {done:?}");
    }
    // Its own generated domain is the tenant's to claim.
    let done = put(vec![(claim("api.tenant.tau", "tenant", "tenant"), &tenant)])?;
    assert_eq!(done.stored, 1, "{done:?}");

    // The victim is served as before; nothing is served for an address or without a Host.
    for host in ["victim.example", "ping.victim.tau"] {
        let answer = http(&gateway, "GET", host, "/ping", b"")?;
        assert_eq!(answer.status, 200, "{host}: {}", answer.text());
    }
    let answer = http(&gateway, "GET", "127.0.0.1", "/ping", b"")?;
    assert_eq!(answer.status, 404, "{}", answer.text());
    let no_host = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&gateway)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(b"GET /ping HTTP/1.0\r\n\r\n")?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        String::from_utf8_lossy(&raw).into_owned()
    };
    assert!(
        no_host.starts_with("HTTP/1.0 404") || no_host.starts_with("HTTP/1.1 404"),
        "{no_host}"
    );
    Ok(())
}

/// Any client ran `hoarder get CID` then `hoarder put --replicas 1`, and the blob dropped from
/// three holders to one; `Unpin` from anyone removed it everywhere. Now each pin has an owner, a
/// blob keeps the highest factor of its pins, and only a pin's owner or the operator lowers it.
#[test]
fn only_a_pins_owner_or_the_operator_lowers_it() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &dir.path().join("cloud"))?;
    let profile = profile_arg(&cloud);
    let key = |name: &str| -> Result<String> {
        let path = dir.path().join(format!("{name}.key")).to_string_lossy().into_owned();
        tau_node_ok(&["key", "generate", "--out", &path])?;
        Ok(path)
    };
    let (owner, stranger, nobody) = (key("owner")?, key("stranger")?, key("nobody")?);
    let file = dir.path().join("blob");
    std::fs::write(&file, tau_tests::harness::random_bytes(300_000, 7))?;
    let file = file.to_string_lossy().into_owned();
    let hoarder = |args: &[&str], key: Option<&str>| {
        let mut all = vec!["hoarder"];
        all.extend(args);
        all.extend(["--cloud", &profile]);
        if let Some(key) = key {
            all.extend(["--key", key]);
        }
        tau_tests::harness::tau_node(&all)
    };
    let out = hoarder(&["put", &file, "--replicas", "3"], Some(&owner))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let holders = || -> Result<usize> {
        let out = tau_node_ok(&["hoarder", "list", "--cloud", &profile, "--json"])?;
        let pins: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        let pin = pins.iter().find(|p| p["cid"] == cid.as_str());
        Ok(pin.and_then(|p| p["holders"].as_array()).map_or(0, Vec::len))
    };
    wait_for(Duration::from_secs(30), "three holders", || Ok((holders()? == 3).then_some(())))?;

    // A stranger fetches the blob and stores it again at one replica, with a key of its own and
    // with none, then drops its own pin; a key that never pinned it tries to unpin it.
    let copy = dir.path().join("copy").to_string_lossy().into_owned();
    let got = hoarder(&["get", &cid, "-o", &copy], None)?;
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    for key in [Some(stranger.as_str()), None] {
        let out = hoarder(&["put", &copy, "--replicas", "1"], key)?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let own = hoarder(&["unpin", &cid], Some(&stranger))?;
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
    let refused = hoarder(&["unpin", &cid], Some(&nobody))?;
    assert!(!refused.status.success(), "a key that never pinned the blob unpinned it");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("only the client that pinned a blob"), "{why}");
    // Several reconcile rounds (one a second): had its factor dropped, copies would go.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(holders()?, 3, "a stranger lowered the owner's pin");
    }

    // The owner lowers its own pin to 2 (the stranger's, at 1, is lower): two holders.
    let out = hoarder(&["pin", &cid, "--replicas", "2"], Some(&owner))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(Duration::from_secs(30), "two holders", || Ok((holders()? == 2).then_some(())))?;
    // The operator unpins every pin: the blob goes.
    let operator = cloud.dir.join("operator.key").to_string_lossy().into_owned();
    let out = hoarder(&["unpin", &cid], Some(&operator))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(Duration::from_secs(30), "no holder", || Ok((holders()? == 0).then_some(())))?;
    // A client with a new key per request cannot grow the blob's pins (which every heartbeat
    // carries) without end: past the bound its pin is refused, with the reason.
    let mut refused = None;
    for _ in 0..16 {
        // `hoarder::pins::MAX_PINS_PER_BLOB`: four records are there already.
        let out = hoarder(&["put", &copy, "--replicas", "1"], None)?;
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused = refused.ok_or("a blob took pins from any number of keys")?;
    assert!(refused.contains("pins already"), "{refused}");
    Ok(())
}

/// Two vault nodes registering one id at once each kept their own owner and refused the other's:
/// the cloud split for good. A deleted project's id could be registered again by anyone,
/// inheriting what still named it. Now the first registration holds on every node, and only the
/// operator brings a deleted id back.
#[test]
fn two_registrations_of_one_id_end_the_same_and_a_deleted_id_stays_deleted() -> Result {
    use tau_proto::tns::values::ProjectRoot;
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let profile = profile_arg(&cloud);
    let registrar =
        |i: usize| tau_proto::keyfile::read(&cloud.dir.join(format!("node-{i}/identity.key")));
    let (first, second) = (registrar(0)?, registrar(1)?);
    let root = |owner: &libp2p::identity::Keypair| -> Result<Draft> {
        let owner = tau_proto::identity::WriterKey::of(owner).ok_or("not ed25519")?;
        Ok(Draft {
            key: keys::project("race"),
            scope: "race".into(),
            value: Some(tau_proto::cbor::to_vec(&ProjectRoot { owner })?),
        })
    };
    let (alice, bob) = (
        libp2p::identity::Keypair::generate_ed25519(),
        libp2p::identity::Keypair::generate_ed25519(),
    );
    let ids: Vec<libp2p::PeerId> =
        cloud.peer_ids()?.iter().map(|p| p.parse()).collect::<std::result::Result<_, _>>()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        Ok::<_, tau_tests::harness::Error>(client)
    })?;
    let put = |node: libp2p::PeerId, record: tau_proto::tns::Record| {
        let client = &client;
        async move {
            match client
                .call::<TnsProtocol>(node, TnsRequest::Put { records: vec![record] })
                .await?
            {
                TnsResponse::Put(put) => Ok::<_, tau_tests::harness::Error>(put),
                other => Err(format!("unexpected answer {other:?}").into()),
            }
        }
    };
    // Each vault node registers `race` for its own owner, sent to it at the same moment.
    let clock = tns_status(&cloud.profile)?
        .iter()
        .filter_map(|s| s["clock"].as_u64())
        .max()
        .ok_or("no clock")?;
    let a = root(&alice)?.sign(clock + 1, &first).ok_or("cannot sign")?;
    let b = root(&bob)?.sign(clock + 2, &second).ok_or("cannot sign")?;
    let (to_first, to_second) =
        runtime.block_on(async { tokio::join!(put(ids[0], a.clone()), put(ids[1], b.clone())) });
    // The first registration is taken wherever it arrives; the second only where it came
    // first (unless gossip beat it there).
    let (to_first, _) = (to_first?, to_second?);
    assert_eq!(to_first.stored, 1, "{to_first:?}");
    let owner_on = |node: &libp2p::PeerId| -> Result<String> {
        let node = node.to_string();
        let out = tau_node_ok(&[
            "tns",
            "get",
            "/projects/race",
            "--cloud",
            &profile,
            "--node",
            &node,
            "--json",
        ])?;
        let record: serde_json::Value = serde_json::from_str(&out)?;
        Ok(record["writer"].as_str().unwrap_or_default().to_string())
    };
    let winner = tau_proto::identity::WriterKey::of(&first).ok_or("not ed25519")?.to_string();
    wait_for(Duration::from_secs(30), "both nodes hold the first registration", || {
        let held = (owner_on(&ids[0])?, owner_on(&ids[1])?);
        Ok((held.0 == winner && held.1 == winner).then_some(()))
    })?;

    // The operator deletes it; a registrar cannot give the id out again, the operator can.
    let operator = tau_proto::keyfile::read(&cloud.dir.join("operator.key"))?;
    let gone = Draft { key: keys::project("race"), scope: "race".into(), value: None };
    let clock = clock + 10;
    let put_one = |record| runtime.block_on(put(ids[0], record));
    assert_eq!(put_one(gone.sign(clock, &operator).ok_or("cannot sign")?)?.stored, 1);
    let again = put_one(root(&bob)?.sign(clock + 1, &second).ok_or("cannot sign")?)?;
    assert_eq!(again.stored, 0, "{again:?}");
    assert!(again.rejected.iter().any(|(_, why)| why.contains("was deleted")), "{again:?}");
    let back = put_one(root(&bob)?.sign(clock + 2, &operator).ok_or("cannot sign")?)?;
    assert_eq!(back.stored, 1, "{back:?}");
    Ok(())
}

/// A decrypt request signed only `{action, project, name, at}` and went to every vault node
/// alike: whoever received one could replay it to `t + 1` vault nodes within 300 s and combine
/// the plaintext from their shares. Now a request names its node, is answered once, and the
/// share comes back sealed to a one-time key only the requester holds.
#[test]
fn a_captured_vault_request_yields_nothing_to_whoever_replays_it() -> Result {
    use tau_proto::vault::{ReplyKey, RequestBody, VaultProtocol, VaultRequest, VaultResponse};
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &dir.path().join("cloud"))?;
    let owner = tau_proto::keyfile::read(&create_project(&cloud.profile, dir.path(), "victim")?)?;
    let nodes: Vec<libp2p::PeerId> =
        cloud.peer_ids()?.iter().map(|p| p.parse()).collect::<std::result::Result<_, _>>()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        let secret = b"the victim's database password";
        client.put_secret("victim", "db", secret, &owner).await?;
        assert_eq!(client.get_secret("victim", "db", &owner).await?.plaintext, secret);

        // The victim asks node 0 for its share; the request and the answer are captured.
        let reply = ReplyKey::generate();
        let now = tau_proto::client::secrets::unix_now();
        let body = RequestBody::decrypt("victim", "db", &nodes[0], &reply, now);
        let request = body.clone().sign(&owner).ok_or("cannot sign")?;
        let ask = |node, request| client.call::<VaultProtocol>(node, VaultRequest::Decrypt { request });
        let VaultResponse::Share { sealed, .. } = ask(nodes[0], request.clone()).await? else {
            return Err("no share".into());
        };
        assert!(reply.open(&sealed, &body).is_ok(), "the victim opens its share");
        // Whoever captured them holds no key that opens the share.
        let mut theirs = body.clone();
        let thief = ReplyKey::generate();
        assert!(thief.open(&sealed, &theirs).is_err(), "a captured share opened");

        // Replayed to the same node, and to the others: refused.
        let again = ask(nodes[0], request.clone()).await;
        assert!(
            matches!(&again, Err(ClientError::Remote { message, .. }) if message.contains("answered already")),
            "the same request answered twice: {again:?}"
        );
        for node in &nodes[1..] {
            let replayed = ask(*node, request.clone()).await;
            assert!(
                matches!(&replayed, Err(ClientError::Remote { message, .. }) if message.contains("for vault node")),
                "{node} answered a request for another node: {replayed:?}"
            );
        }
        // Pointed at another node and the thief's own key, the signature no longer holds.
        theirs.reply_to = thief.public().to_vec();
        theirs.node = nodes[1].to_string();
        let mut edited = request.clone();
        edited.body = theirs;
        let forged = ask(nodes[1], edited).await;
        assert!(
            matches!(&forged, Err(ClientError::Remote { message, .. }) if message.contains("only the owner")),
            "{forged:?}"
        );
        Ok::<_, tau_tests::harness::Error>(())
    })
}

/// A function record's timeout and memory were taken as written (a timeout of `u64::MAX` ms was
/// stored), no node capped them, and a request waiting for an instance slot waited without end.
/// Now registry nodes refuse limits out of range, each node cuts a function's limits to its own
/// caps, and a request that finds no slot within the node's `slot_wait` is answered 503.
#[test]
fn a_function_cannot_hold_a_node_past_its_caps() -> Result {
    use tau_proto::tns::values::Function;
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &dir.path().join("cloud"))?;
    let key = create_project(&cloud.profile, dir.path(), "lab")?;
    let project = dir.path().join("lab");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: lab\nname: lab\n")?;
    for name in ["faulty", "ping"] {
        std::fs::copy(
            tau_tests::harness::example_wasm(name)?,
            project.join(format!("{name}.wasm")),
        )?;
        std::fs::write(
            project.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: GET, paths: [/]}}\n\
                 domains: [{name}.lab.tau]\nsource: {name}.wasm\n\
                 execution: {{timeout: 60s, memory: 64MB}}\n"
            ),
        )?;
    }
    tau_tests::harness::push_project(&cloud.profile, &project, &key, None)?;

    // A registry node refuses a function whose record asks for a timeout out of range.
    let owner = tau_proto::keyfile::read(&key)?;
    let profile = profile_arg(&cloud);
    let out = tau_node_ok(&[
        "tns",
        "get",
        &keys::function("lab", "ping"),
        "--cloud",
        &profile,
        "--json",
    ])?;
    let version =
        serde_json::from_str::<serde_json::Value>(&out)?["version"].as_u64().ok_or("no version")?;
    let node: libp2p::PeerId = cloud.peer_ids()?.first().ok_or("no node")?.parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        let record =
            client.tns_record(node, &keys::function("lab", "ping")).await?.ok_or("no record")?;
        let mut function: Function =
            tau_proto::cbor::from_slice(record.value.as_deref().ok_or("deleted")?)?;
        function.execution.timeout_ms = u64::MAX;
        let draft = Draft {
            key: record.key,
            scope: "lab".into(),
            value: Some(tau_proto::cbor::to_vec(&function)?),
        };
        let endless = draft.sign(version + 1, &owner).ok_or("cannot sign")?;
        Ok::<_, tau_tests::harness::Error>(
            client.call::<TnsProtocol>(node, TnsRequest::Put { records: vec![endless] }).await?,
        )
    })?;
    let TnsResponse::Put(put) = answer else { return Err(format!("unexpected {answer:?}").into()) };
    assert_eq!(put.stored, 0, "{put:?}");
    assert!(put.rejected.iter().any(|(_, why)| why.contains("timeout must be")), "{put:?}");

    // A node with one slot, a 1 s wait for it, and a 2 s cap on any function's time.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let (_node, _) = rogue_node_with(
        &cloud,
        dir.path(),
        &["--services", "substrate", "--http-port", &port],
        "substrate:\n  max_instances: 1\n  slot_wait: 1s\n  max_timeout: 2s\n",
    )?;
    let gateway = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "the capped node serves the function", || {
        let answer = http(&gateway, "GET", "ping.lab.tau", "/", b"");
        Ok(answer.is_ok_and(|a| a.status == 200).then_some(()))
    })?;
    wait_for(Duration::from_secs(30), "the capped node has the sleeper loaded", || {
        let answer = http(&gateway, "GET", "faulty.lab.tau", "/", b"");
        Ok(answer.is_ok_and(|a| a.status == 200).then_some(()))
    })?;
    // The sleeper asks for 60 s; the node cuts it to 2 s. While it holds the one slot, another
    // request waits 1 s and is told to come back.
    let sleeper = {
        let gateway = gateway.clone();
        std::thread::spawn(move || http(&gateway, "GET", "faulty.lab.tau", "/sleep", b""))
    };
    std::thread::sleep(Duration::from_millis(300));
    let busy = http(&gateway, "GET", "ping.lab.tau", "/", b"")?;
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert!(
        busy.text().contains("busy") && busy.header("retry-after") == Some("1"),
        "{}",
        busy.text()
    );
    let slept = sleeper.join().map_err(|_| "the sleeper panicked")??;
    assert_eq!(slept.status, 504, "{}", slept.text());
    assert!(slept.text().contains("timeout of 2s"), "{}", slept.text());
    // The slot is free again.
    assert_eq!(http(&gateway, "GET", "ping.lab.tau", "/", b"")?.status, 200);
    Ok(())
}

/// Anti-entropy (`Sync`) and replication (`Replicate`, reads of a blob still being uploaded) are
/// between nodes, yet any client could send them: read every bucket's summaries in one call, or
/// have a node fetch a blob from any peer the client named. Now a client's such request is closed
/// unanswered, while the same node answers the client's ordinary requests and the nodes still
/// sync with each other.
#[test]
fn requests_between_nodes_are_refused_to_clients() -> Result {
    use tau_proto::hoarder::{BlobId, HoarderProtocol, HoarderRequest};
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let node: libp2p::PeerId = cloud.peer_ids()?.first().ok_or("no node")?.parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        client.nodes().await?;
        let digests = vec![[0u8; 32]; tau_proto::tns::BUCKETS];
        let sync = client.call::<TnsProtocol>(node, TnsRequest::Sync { digests }).await;
        assert!(
            sync.is_err() && !matches!(sync, Err(ClientError::Remote { .. })),
            "a client's anti-entropy request was answered: {sync:?}"
        );
        let from = node;
        let cid = BlobId::of(b"anything");
        let replicate =
            client.call::<HoarderProtocol>(node, HoarderRequest::Replicate { cid, from }).await;
        assert!(
            replicate.is_err() && !matches!(replicate, Err(ClientError::Remote { .. })),
            "a client's replication request was answered: {replicate:?}"
        );
        let waiting = HoarderRequest::Manifest { cid, in_progress: true };
        let waiting = client.call::<HoarderProtocol>(node, waiting).await;
        assert!(
            waiting.is_err() && !matches!(waiting, Err(ClientError::Remote { .. })),
            "a client's wait on an upload was answered: {waiting:?}"
        );
        // The client's own requests are answered as before.
        let status = client.call::<TnsProtocol>(node, TnsRequest::Status).await?;
        assert!(matches!(status, TnsResponse::Status(_)), "{status:?}");
        Ok::<_, tau_tests::harness::Error>(())
    })?;
    // The nodes still sync: a record written to one reaches the other.
    create_project(&cloud.profile, dir.path(), "later")?;
    wait_for(Duration::from_secs(30), "both nodes hold the new project", || {
        Ok(converged(&tns_status(&cloud.profile)?, 2).then_some(()))
    })?;
    Ok(())
}

/// 500 half-sent requests stayed open past 70 s: the gateway had no header timeout and no cap on
/// connections. Now a connection that sends no complete headers within the node's
/// `header_timeout` is closed, and one past the caps (in all, or from one address) is closed as
/// it arrives; the gateway answers again once they are gone.
#[test]
fn half_sent_requests_cannot_hold_a_gateway() -> Result {
    use std::io::{ErrorKind, Read, Write};
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &dir.path().join("cloud"))?;
    push_ping_project(&cloud, dir.path(), "lab")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let (_node, _) = rogue_node_with(
        &cloud,
        dir.path(),
        &["--services", "substrate", "--http-port", &port],
        "substrate:\n  header_timeout: 1s\n  max_connections_per_ip: 20\n",
    )?;
    let gateway = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "the node serves the function", || {
        let answer = http(&gateway, "GET", "ping.lab.tau", "/ping", b"");
        Ok(answer.is_ok_and(|a| a.status == 200).then_some(()))
    })?;
    let mut streams = Vec::new();
    for _ in 0..30 {
        let mut stream = std::net::TcpStream::connect(&gateway)?;
        stream.write_all(b"GET /ping HTTP/1.1\r\nHost: ping.lab.tau\r\n")?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
            Err(e) => panic!("half-sent request {i} still holds its connection after 20 s: {e}"),
        }
    }
    let answer = http(&gateway, "GET", "ping.lab.tau", "/ping", b"")?;
    assert_eq!(answer.status, 200, "{}", answer.text());
    Ok(())
}

/// Pages and batches counted records, not bytes: a project of records near the 256 KB value
/// limit made `tns list` fail (a page past the answer limit) and a node that was down never
/// caught up (anti-entropy batches past the request and answer limits). Now pages, `Get`
/// answers and pushed batches stop at 4 MiB.
#[test]
fn large_records_page_and_sync_within_the_message_limits() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let owner = tau_proto::keyfile::read(&create_project(&cloud.profile, dir.path(), "big")?)?;
    let ids: Vec<libp2p::PeerId> =
        cloud.peer_ids()?.iter().map(|p| p.parse()).collect::<std::result::Result<_, _>>()?;
    wait_for(Duration::from_secs(30), "both nodes hold the project", || {
        Ok(converged(&tns_status(&cloud.profile)?, 2).then_some(()))
    })?;
    // Node 1 is down while 300 records of 250 KB (75 MB) are written to node 0.
    let pid = cloud.node_pid(1)?;
    tau_tests::harness::signal(pid, tau_tests::harness::Signal::SIGTERM);
    wait_for(Duration::from_secs(10), "node 1 stops", || {
        Ok((!tau_tests::harness::alive(pid)).then_some(()))
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(Client::connect(&CloudProfile::load(&cloud.profile)?))?;
    runtime.block_on(async {
        let clock = client.tns_clock(ids[0]).await?;
        let records = (0..300)
            .map(|i| {
                let value = vec![(i % 251) as u8; 250_000];
                Draft {
                    key: format!("/projects/big/files/{i:03}"),
                    scope: "big".into(),
                    value: Some(value),
                }
                .sign(clock + 1, &owner)
                .ok_or("cannot sign")
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for batch in records.chunks(40) {
            let request = TnsRequest::Put { records: batch.to_vec() };
            match client.call::<TnsProtocol>(ids[0], request).await? {
                TnsResponse::Put(put) if put.stored as usize == batch.len() => {}
                other => return Err(format!("unexpected answer {other:?}").into()),
            }
        }
        Ok::<_, tau_tests::harness::Error>(())
    })?;
    // Listed in pages (the light client and `tau-node tns list` read them the same way).
    let listed = |node: libp2p::PeerId| -> Result<usize> {
        let records = runtime.block_on(client.tns_list(node, "/projects/big/files/", false))?;
        Ok(records.len())
    };
    assert_eq!(listed(ids[0])?, 300, "node 0 lists every record");
    // Node 1 comes back and catches up by anti-entropy.
    let _node1 = tau_tests::harness::run_node(
        &cloud.dir.join("node-1/node.yaml"),
        &cloud.dir.join("node-1/restart.log"),
    )?;
    wait_for(Duration::from_secs(90), "node 1 catches up", || {
        Ok((listed(ids[1]).unwrap_or(0) == 300).then_some(()))
    })?;
    Ok(())
}

/// Substrate checked the size a function record names, and then read whatever blob the CID
/// named, of any size, into memory. Now the blob's manifest must give the record's size (which
/// the node bounds) before a byte of it is fetched.
#[test]
fn a_function_record_cannot_make_a_node_fetch_a_larger_blob() -> Result {
    use tau_proto::tns::values::{
        DomainClaim, Execution, Function, Route, Source, Trigger, TriggerKind,
    };
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &dir.path().join("cloud"))?;
    let key = create_project(&cloud.profile, dir.path(), "lab")?;
    let owner = tau_proto::keyfile::read(&key)?;
    let profile = profile_arg(&cloud);
    // A 2 MB blob that a record will say is 100 bytes.
    let file = dir.path().join("big.bin");
    std::fs::write(&file, tau_tests::harness::random_bytes(2 << 20, 3))?;
    let (file, key) = (file.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let cid = tau_node_ok(&["hoarder", "put", &file, "--cloud", &profile, "--key", &key])?
        .trim()
        .to_string();
    let function = Function {
        name: "liar".into(),
        description: String::new(),
        trigger: Trigger { kind: TriggerKind::Http, method: "GET".into(), paths: vec!["/".into()] },
        domains: vec!["liar.lab.tau".into()],
        source: Source { file: "liar.wasm".into(), cid: cid.parse()?, size: 100 },
        execution: Execution { timeout_ms: 1_000, memory_bytes: 16 << 20, call: None },
        allowed_outbound_hosts: Vec::new(),
        variables: Default::default(),
    };
    let drafts = vec![
        (
            keys::domain("liar.lab.tau"),
            tau_proto::cbor::to_vec(&DomainClaim { project: "lab".into() })?,
        ),
        (
            keys::route("liar.lab.tau", "GET", "/"),
            tau_proto::cbor::to_vec(&Route { project: "lab".into(), function: "liar".into() })?,
        ),
        (keys::function("lab", "liar"), tau_proto::cbor::to_vec(&function)?),
    ];
    let node: libp2p::PeerId = cloud.peer_ids()?.first().ok_or("no node")?.parse()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let put = runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        let clock = client.tns_clock(node).await?;
        let records = drafts
            .into_iter()
            .map(|(key, value)| {
                Draft { key, scope: "lab".into(), value: Some(value) }
                    .sign(clock + 1, &owner)
                    .ok_or("cannot sign")
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok::<_, tau_tests::harness::Error>(
            client.call::<TnsProtocol>(node, TnsRequest::Put { records }).await?,
        )
    })?;
    assert!(matches!(&put, TnsResponse::Put(p) if p.stored == 3), "{put:?}");
    let gateway = cloud.gateways.first().ok_or("no gateway")?;
    let (answer, _) =
        wait_for(Duration::from_secs(30), "the gateway answers for the function", || {
            let answer = http(gateway, "GET", "liar.lab.tau", "/", b"")?;
            Ok((answer.status != 404).then_some(answer))
        })?;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert!(
        answer.text().contains("not the 100 its function record names"),
        "the node fetched the blob: {}",
        answer.text()
    );
    Ok(())
}

/// A project's records were bounded only by the page and value limits: one owner could fill
/// every TNS node's disk and memory. Now each node holds at most its quota per project (here
/// 50 records and 1 MiB), refusing the rest with the reason, and deleting always works.
#[test]
fn a_project_holds_no_more_than_the_nodes_quota() -> Result {
    let dir = tempfile::tempdir()?;
    let quota = ["--max-project-records", "50", "--max-project-bytes", "1MiB"];
    let cloud = DevCloud::start_with(2, &dir.path().join("cloud"), &quota)?;
    let greedy = tau_proto::keyfile::read(&create_project(&cloud.profile, dir.path(), "greedy")?)?;
    let heavy = tau_proto::keyfile::read(&create_project(&cloud.profile, dir.path(), "heavy")?)?;
    let ids: Vec<libp2p::PeerId> =
        cloud.peer_ids()?.iter().map(|p| p.parse()).collect::<std::result::Result<_, _>>()?;
    wait_for(Duration::from_secs(30), "both nodes hold the projects", || {
        Ok(converged(&tns_status(&cloud.profile)?, 2).then_some(()))
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(Client::connect(&CloudProfile::load(&cloud.profile)?))?;
    let put = |records: Vec<tau_proto::tns::Record>| -> Result<PutOutcome> {
        match runtime.block_on(client.call::<TnsProtocol>(ids[0], TnsRequest::Put { records }))? {
            TnsResponse::Put(outcome) => Ok(outcome),
            other => Err(format!("unexpected answer {other:?}").into()),
        }
    };
    let draft = |project: &str, name: &str, value: Option<Vec<u8>>| Draft {
        key: format!("/projects/{project}/files/{name}"),
        scope: project.into(),
        value,
    };
    let clock = runtime.block_on(client.tns_clock(ids[0]))?;

    // 60 small records: the root and 49 files fit, the other 11 are refused, saying why.
    let mut stored = 0;
    let mut refused = Vec::new();
    for batch in (0..60).collect::<Vec<_>>().chunks(20) {
        let records = batch
            .iter()
            .map(|i| {
                draft("greedy", &format!("{i:02}"), Some(vec![1; 100])).sign(clock + 1, &greedy)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("cannot sign")?;
        let outcome = put(records)?;
        stored += outcome.stored;
        refused.extend(outcome.rejected);
    }
    assert_eq!((stored, refused.len()), (49, 11), "{refused:?}");
    assert!(
        refused.iter().all(|(_, why)| why.contains("over quota: project greedy may hold 50")),
        "{refused:?}"
    );

    // Five records of 250 KB: four fit in 1 MiB, the fifth is refused for its size.
    let mut outcomes = Vec::new();
    for i in 0..5 {
        let record = draft("heavy", &i.to_string(), Some(vec![2; 250_000]))
            .sign(clock + 1, &heavy)
            .ok_or("cannot sign")?;
        outcomes.push(put(vec![record])?);
    }
    let stored: Vec<u32> = outcomes.iter().map(|o| o.stored).collect();
    assert_eq!(stored, [1, 1, 1, 1, 0], "{outcomes:?}");
    assert!(outcomes[4].rejected[0].1.contains("bytes"), "{outcomes:?}");

    // Deleting works at the quota, and makes room.
    let gone = draft("greedy", "00", None).sign(clock + 2, &greedy).ok_or("cannot sign")?;
    let again = draft("greedy", "59", Some(vec![1; 100])).sign(clock + 2, &greedy).ok_or("sign")?;
    let outcome = put(vec![gone, again])?;
    assert_eq!((outcome.stored, outcome.rejected.len()), (2, 0), "{outcome:?}");

    // The other node holds the same (gossip and anti-entropy carry only what was stored), and
    // `tns status` counts what node 0 refused.
    wait_for(Duration::from_secs(30), "both nodes hold the same registry", || {
        Ok(converged(&tns_status(&cloud.profile)?, 2).then_some(()))
    })?;
    let listed = runtime.block_on(client.tns_list(ids[1], "/projects/greedy/files/", false))?;
    assert_eq!(listed.len(), 49);
    let status = tns_status(&cloud.profile)?;
    let refused: Vec<u64> = status.iter().filter_map(|s| s["over_quota"].as_u64()).collect();
    assert_eq!(refused.iter().sum::<u64>(), 12, "{status:?}");
    Ok(())
}

/// The most memory a node's process has held (`VmHWM`), bytes.
fn peak_memory(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or("no VmHWM")?;
    let kib: u64 = line.split_whitespace().nth(1).ok_or("no figure")?.parse()?;
    Ok(kib * 1024)
}

/// `wasm` (a component) with a custom section of `payload` appended: another CID, as large as
/// wished, that compiles in no time.
fn with_custom_section(wasm: &[u8], payload: &[u8]) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            out.push(if value == 0 { byte } else { byte | 0x80 });
            if value == 0 {
                break;
            }
        }
    }
    let name = b"ballast";
    let mut section = Vec::new();
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(section.len(), &mut out);
    out.extend(section);
    out
}

/// Substrate read each component whole into memory, fetched or local, for as many components
/// as were asked for at once: a tenant with large functions could take a node's memory. Now a
/// fetched component goes to disk as it arrives, and the bytes held to compile share one
/// budget (`substrate.load_memory`, here 64 MiB): four 60 MB components asked for at once load
/// one after another.
#[test]
fn large_components_load_within_the_nodes_memory_budget() -> Result {
    use tau_proto::node_config::NodeConfig;
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start_with(2, &dir.path().join("cloud"), &["--substrate-nodes", "1"])?;
    // Node 0 comes back without hoarder (so it fetches every component) and a 64 MiB budget.
    let pid = cloud.node_pid(0)?;
    tau_tests::harness::signal(pid, tau_tests::harness::Signal::SIGTERM);
    wait_for(Duration::from_secs(10), "node 0 stops", || {
        Ok((!tau_tests::harness::alive(pid)).then_some(()))
    })?;
    let config_path = cloud.dir.join("node-0/node.yaml");
    let mut config = NodeConfig::load(&config_path)?;
    config.services.retain(|s| s != "hoarder");
    config.substrate.load_memory = "64MiB".into();
    config.save(&config_path)?;
    let node0 = run_node(&config_path, &cloud.dir.join("node-0/restart.log"))?;
    let gateway = cloud.gateways[0].clone();

    let project = dir.path().join("big");
    std::fs::create_dir_all(project.join("functions"))?;
    std::fs::write(project.join("config.yaml"), "id: big\nname: big\n")?;
    let ping = std::fs::read(tau_tests::harness::example_wasm("ping")?)?;
    let names = ["a", "b", "c", "d"];
    for (i, name) in names.iter().enumerate() {
        let ballast = tau_tests::harness::random_bytes(60 << 20, i as u64 + 1);
        std::fs::write(project.join(format!("{name}.wasm")), with_custom_section(&ping, &ballast))?;
        std::fs::write(
            project.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: GET, paths: [/{name}]}}\n\
                 domains: [ping.big.tau]\nsource: {name}.wasm\n"
            ),
        )?;
    }
    let key = create_project(&cloud.profile, dir.path(), "big")?;
    let node1 = cloud.peer_ids()?[1].clone();
    tau_tests::harness::push_project(&cloud.profile, &project, &key, Some(&node1))?;
    // Node 0 runs tns: once it holds what node 1 holds, it has the routes.
    wait_for(Duration::from_secs(30), "node 0 holds the project's records", || {
        Ok(converged(&tns_status(&cloud.profile)?, 2).then_some(()))
    })?;
    let before = peak_memory(node0.0.id())?;

    let answers: Vec<_> = names
        .iter()
        .map(|name| {
            let gateway = gateway.clone();
            let path = format!("/{name}");
            std::thread::spawn(move || {
                http(&gateway, "GET", "ping.big.tau", &path, b"").map(|a| a.status).ok()
            })
        })
        .collect();
    let statuses: Vec<Option<u16>> = answers.into_iter().map(|t| t.join().ok().flatten()).collect();
    assert_eq!(statuses, [Some(200); 4], "every function answers");
    let grown = peak_memory(node0.0.id())?.saturating_sub(before);
    assert!(
        grown < 150 << 20,
        "node 0's peak memory grew by {} MB loading four 60 MB components",
        grown >> 20
    );
    // Nothing is left in the fetching folder.
    let left = std::fs::read_dir(cloud.dir.join("node-0/data/substrate/fetching"))?.count();
    assert_eq!(left, 0, "files left in fetching/");
    Ok(())
}

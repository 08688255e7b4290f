//! Seer across real processes: 4 nodes, 2 with substrate. `dig` and hickory-resolver get the
//! substrate nodes' addresses for a pushed function's domain and `curl` reaches the function
//! there; a custom domain is served only once its TXT record holds the validation token; a
//! stopped substrate node leaves the answers within 10 s; fuzzed and truncated packets get no
//! answer and harm nothing.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tau_tests::harness::{
    DevCloud, Result, Signal, alive, dig, example_wasm, http, push_project, run, signal,
    tau_node_ok, wait_for,
};

/// A project `shop` whose ping function answers on a generated domain and a custom one.
fn write_shop(dir: &Path) -> Result {
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), "id: shop\nname: Shop\n")?;
    std::fs::copy(example_wasm("ping")?, dir.join("ping.wasm"))?;
    std::fs::write(
        dir.join("functions/ping.yaml"),
        "id: ping\ntrigger: {type: http, method: GET, paths: [/ping]}\n\
         domains: [ping.shop.tau, www.shop-custom.test]\nsource: ping.wasm\n",
    )?;
    Ok(())
}

/// `dig`'s status line word (NOERROR, NXDOMAIN, ...).
fn dig_status(server: &str, name: &str) -> Result<String> {
    let (ip, port) = server.rsplit_once(':').ok_or("no port")?;
    let out = run(
        Command::new("dig").args([&format!("@{ip}"), "-p", port, name, "+time=2", "+tries=1"]),
        Duration::from_secs(10),
    )?;
    let text = String::from_utf8(out.stdout)?;
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .ok_or_else(|| format!("no status from dig: {text}"))?;
    Ok(status.to_string())
}

/// A tiny authoritative TXT server standing in for the world's DNS: answers TXT queries from
/// `records`, NXDOMAIN otherwise.
fn txt_server(records: Arc<Mutex<HashMap<String, String>>>) -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            let Ok(query) = Message::from_vec(&buffer[..len]) else { continue };
            let Some(question) = query.queries.first().cloned() else { continue };
            let mut response = Message::response(query.metadata.id, OpCode::Query);
            response.metadata.message_type = MessageType::Response;
            response.metadata.authoritative = true;
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.add_query(question.clone());
            let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
            let value = records.lock().map(|r| r.get(&name).cloned()).unwrap_or_default();
            match value {
                Some(value) if question.query_type() == RecordType::TXT => {
                    let data = RData::TXT(TXT::new(vec![value]));
                    response.add_answer(Record::from_rdata(question.name().clone(), 1, data));
                }
                _ => response.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain,
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, from);
            }
        }
    });
    Ok(addr)
}

/// Sends `packet` to the DNS server and says whether anything came back within `wait`.
fn answered(server: &str, packet: &[u8], wait: Duration) -> Result<bool> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(wait))?;
    socket.send_to(packet, server)?;
    let mut buffer = [0u8; 1500];
    Ok(socket.recv_from(&mut buffer).is_ok())
}

fn a_query(name: &str) -> Result<Vec<u8>> {
    let mut message = Message::query();
    message.metadata.id = 7;
    message.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

#[test]
fn dns_sends_clients_to_healthy_substrate_nodes_and_survives_garbage() -> Result {
    let tmp = tempfile::tempdir()?;
    let records = Arc::new(Mutex::new(HashMap::new()));
    let txt = txt_server(records.clone())?;
    let cloud = DevCloud::start_with(
        4,
        &tmp.path().join("cloud"),
        &["--substrate-nodes", "2", "--txt-resolver", &txt.to_string()],
    )?;
    assert_eq!((cloud.gateways.len(), cloud.dns.len()), (2, 4));
    let dns = cloud.dns[3].clone(); // a seer that runs no substrate itself
    let profile = cloud.profile.to_string_lossy().into_owned();
    let substrate: BTreeSet<IpAddr> = cloud
        .gateways
        .iter()
        .map(|g| g.parse::<SocketAddr>().map(|a| a.ip()))
        .collect::<std::result::Result<_, _>>()?;

    // The service names answer at once with the nodes that run each service.
    wait_for(Duration::from_secs(10), "every node's heartbeat", || {
        Ok((dig(&dns, "tns.tau.dev", false)?.len() == 4).then_some(()))
    })?;
    assert_eq!(dig(&dns, "substrate.tau.dev", false)?, substrate);
    assert_eq!(dig(&dns, "substrate.tau.dev", true)?, substrate, "over TCP too");
    assert_eq!(dig_status(&dns, "mail.tau.dev")?, "NXDOMAIN");
    assert_eq!(dig_status(&dns, "nowhere.example.org")?, "NXDOMAIN");

    // A project with a generated and a custom domain.
    let owner = tmp.path().join("owner.key");
    tau_node_ok(&["key", "generate", "--out", &owner.to_string_lossy()])?;
    let project = tmp.path().join("shop");
    write_shop(&project)?;
    let owner_arg = owner.to_string_lossy();
    tau_node_ok(&[
        "project",
        "register",
        &project.to_string_lossy(),
        "--cloud",
        &profile,
        "--key",
        &owner_arg,
    ])?;
    push_project(&cloud.profile, &project, &owner, None)?;
    let found = wait_for(Duration::from_secs(10), "the generated domain resolves", || {
        let found = dig(&dns, "ping.shop.tau", false)?;
        Ok((found.len() == 2).then_some(found))
    })?
    .0;
    assert_eq!(found, substrate);

    // hickory-resolver, pointed at the same seer, agrees.
    let runtime = tokio::runtime::Runtime::new()?;
    let server: SocketAddr = dns.parse()?;
    let resolved: BTreeSet<IpAddr> = runtime.block_on(async {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        let mut name_server = NameServerConfig::udp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let resolver = hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![name_server]),
            hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
        )
        .build()?;
        let lookup = resolver.lookup_ip("ping.shop.tau.").await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lookup.iter().collect())
    })?;
    assert_eq!(resolved, substrate);

    // Each returned address serves the function (on the cloud's one HTTP port).
    let port = cloud.gateways[0].rsplit_once(':').ok_or("no port")?.1;
    for ip in &found {
        let answer = http(&format!("{ip}:{port}"), "GET", "ping.shop.tau", "/ping", b"")?;
        assert_eq!((answer.status, answer.text().trim()), (200, "pong"), "{ip}");
    }

    // The custom domain is not served until its TXT record holds the project's token.
    assert_eq!(dig_status(&dns, "www.shop-custom.test")?, "NXDOMAIN");
    // The owner asks the cloud for the TXT record to publish.
    let line = tau_node_ok(&[
        "project",
        "domain-token",
        "--id",
        "shop",
        "--domain",
        "www.shop-custom.test",
        "--cloud",
        &profile,
    ])?;
    let token = line.split('"').nth(1).ok_or("no token")?.to_string();
    assert!(
        line.starts_with("_tau.www.shop-custom.test. TXT ") && token.starts_with("tau-"),
        "{line}"
    );
    let owner_key = tau_node_ok(&["key", "public", &owner_arg])?;
    assert_eq!(
        token,
        tau_proto::seer::validation_token(
            "shop",
            &owner_key.trim().parse()?,
            "www.shop-custom.test"
        )
    );
    records.lock().map_err(|_| "lock")?.insert("_tau.www.shop-custom.test".into(), "wrong".into());
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(dig_status(&dns, "www.shop-custom.test")?, "NXDOMAIN", "a wrong token");
    records.lock().map_err(|_| "lock")?.insert("_tau.www.shop-custom.test".into(), token);
    wait_for(Duration::from_secs(10), "the validated custom domain resolves", || {
        Ok((dig(&dns, "www.shop-custom.test", false)? == substrate).then_some(()))
    })?;

    // Garbage gets no answer, and the server answers the next good query.
    let good = a_query("ping.shop.tau.")?;
    let mut seed = 11u64;
    let mut packets: Vec<Vec<u8>> = [1usize, 11, 12, 30, 300]
        .iter()
        .map(|len| {
            (0..*len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect()
        })
        .collect();
    packets.extend([good[..5].to_vec(), good[..12].to_vec(), good[..good.len() - 3].to_vec()]);
    let mut flipped = good.clone();
    flipped[12] = 0x3f; // the first label's length, now past the end of the packet
    packets.push(flipped);
    for packet in &packets {
        assert!(
            !answered(&dns, packet, Duration::from_millis(300))?,
            "{} bytes answered",
            packet.len()
        );
    }
    assert!(answered(&dns, &good, Duration::from_secs(2))?, "the good query after the garbage");
    assert_eq!(dig(&dns, "ping.shop.tau", false)?, substrate);

    // A substrate node stops: within 10 s it is gone from the answers.
    let pid = cloud.node_pid(1)?;
    signal(pid, Signal::SIGTERM);
    let stopped = Instant::now();
    let gone: IpAddr = cloud.gateways[1].parse::<SocketAddr>()?.ip();
    wait_for(Duration::from_secs(10), "the stopped node leaves the answers", || {
        Ok((!dig(&dns, "ping.shop.tau", false)?.contains(&gone)).then_some(()))
    })?;
    assert!(stopped.elapsed() < Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "node 1 exits", || Ok((!alive(pid)).then_some(())))?;
    assert_eq!(dig(&dns, "ping.shop.tau", false)?.len(), 1);

    // `tau-node nodes` shows it unhealthy and the three others healthy.
    let nodes: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["nodes", "--cloud", &profile, "--json"])?)?;
    let health: Vec<bool> = nodes
        .as_array()
        .ok_or("not a list")?
        .iter()
        .filter_map(|n| n["healthy"].as_bool())
        .collect();
    assert_eq!((health.len(), health.iter().filter(|h| **h).count()), (4, 3), "{nodes}");
    Ok(())
}

/// Seer answered every UDP query: anyone could aim it at a victim by forging the source address
/// and have the victim flooded with answers larger than the queries. Now one source (an IPv4
/// /24) gets at most 100 answers a second and a burst of 100; of the queries over that, every
/// second gets a truncated answer no larger than the query (a real client retries over TCP),
/// the others none. Other sources are answered as before, and so is the same source later.
#[test]
fn dns_answers_one_source_at_its_rate() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &tmp.path().join("cloud"))?;
    let dns: SocketAddr = cloud.dns[0].parse()?;
    wait_for(Duration::from_secs(10), "the node's heartbeat", || {
        Ok((dig(&cloud.dns[0], "tns.tau.dev", false)?.len() == 1).then_some(()))
    })?;
    std::thread::sleep(Duration::from_millis(1_500)); // the dig calls' tokens come back

    let query = a_query("tns.tau.dev.")?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(1_000)))?;
    let receiver = socket.try_clone()?;
    let received = std::thread::spawn(move || {
        let mut replies = Vec::new();
        let mut buffer = [0u8; 1500];
        while let Ok(len) = receiver.recv(&mut buffer) {
            replies.push((Instant::now(), buffer[..len].to_vec()));
        }
        replies
    });
    let started = Instant::now();
    for _ in 0..1000 {
        socket.send_to(&query, dns)?;
    }
    let replies = received.join().map_err(|_| "the receiving thread panicked")?;
    let last = replies.last().map_or(started, |(at, _)| *at);
    let window = last.duration_since(started).as_secs_f64();
    let mut full = 0;
    let mut truncated = 0;
    for (_, packet) in &replies {
        let message = Message::from_vec(packet)?;
        if message.metadata.truncation {
            assert!(message.answers.is_empty() && packet.len() <= query.len(), "{message:?}");
            truncated += 1;
        } else {
            assert_eq!(message.answers.len(), 1, "{message:?}");
            full += 1;
        }
    }
    // Answers at most the burst plus the rate over the time the queries took to arrive.
    let allowed = 100.0 + 100.0 * window + 1.0;
    assert!(
        f64::from(full) <= allowed && full >= 100,
        "{full} full answers to 1000 queries within {window:.3} s (allowed {allowed:.0})"
    );
    assert!(truncated > 0 && full + truncated < 1000, "{full} full, {truncated} truncated");

    // Another source is answered at once; so is the first one, a second later.
    let other = UdpSocket::bind("127.0.1.1:0")?;
    other.set_read_timeout(Some(Duration::from_secs(2)))?;
    other.send_to(&query, dns)?;
    let mut buffer = [0u8; 1500];
    let len = other.recv(&mut buffer)?;
    assert_eq!(Message::from_vec(&buffer[..len])?.answers.len(), 1, "another source");
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(dig(&cloud.dns[0], "tns.tau.dev", false)?.len(), 1, "the first source again");
    Ok(())
}

//! Functions that reach out (issue 25): outgoing HTTP only to the hosts a function's YAML
//! allows and never to a private address the node's operator did not allow, checked after name
//! resolution and on every redirect; and variables read with `wasi:config`. The example `fetch`
//! function on a real dev cloud, against a real HTTP server on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tau_tests::harness::{
    DevCloud, HttpAnswer, KillOnDrop, Result, create_project, example_wasm, http, push_project,
    run, wait_for,
};

/// A server on `127.0.0.2` (the one block the cloud's nodes allow): `/ok` answers, `/redirect`
/// sends the client to `localhost` (127.0.0.1 or ::1: private, not allowed), `/slow` answers
/// after 20 s. Returns its port.
fn upstream() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.2:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(|s| s.ok()) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                // The rest of the head.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let answer = match path.as_str() {
                    "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nupstream ok\n".into(),
                    "/redirect" => format!(
                        "HTTP/1.1 302 Found\r\nlocation: http://localhost:{port}/ok\r\n\
                         content-length: 0\r\n\r\n"
                    ),
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(20));
                        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nlate\n".into()
                    }
                    _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
                };
                let _ = (&stream).write_all(answer.as_bytes());
            });
        }
    });
    Ok(port)
}

/// Runs `openssl` with `args` in `dir`; fails with its output.
fn openssl(dir: &Path, args: &[&str]) -> Result {
    let out = run(Command::new("openssl").args(args).current_dir(dir), Duration::from_secs(30))?;
    if !out.status.success() {
        return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// A test CA (`ca.pem`) and a certificate it signed for 127.0.0.2 (`leaf.pem`, `leaf.key`).
fn certificates(dir: &Path) -> Result {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"];
    ca.extend(ec);
    ca.extend(["-subj", "/CN=tau test CA", "-addext", "basicConstraints=critical,CA:TRUE"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.2"];
    csr.extend(ec);
    openssl(dir, &csr)?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.2
",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    )
}

/// `openssl s_server -www` on 127.0.0.2 with `cert` and `key`: it answers `GET /` with a
/// status page. Killed on drop.
fn tls_server(dir: &Path, cert: &str, key: &str) -> Result<(KillOnDrop, u16)> {
    let port = TcpListener::bind("127.0.0.2:0")?.local_addr()?.port();
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.2:{port}"), "-cert", cert, "-key", key])
        .args(["-www", "-quiet"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = KillOnDrop(child);
    wait_for(Duration::from_secs(10), "openssl s_server listens", || {
        Ok(std::net::TcpStream::connect(("127.0.0.2", port)).is_ok().then_some(()))
    })?;
    Ok((server, port))
}

/// A project with the example `fetch` allowed `hosts`, with a 3 s deadline and a greeting.
fn write_fetch_project(dir: &Path, id: &str, hosts: &[String]) -> Result {
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {id}\n"))?;
    std::fs::copy(example_wasm("fetch")?, dir.join("fetch.wasm"))?;
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    std::fs::write(
        dir.join("functions/fetch.yaml"),
        format!(
            "id: fetch\ntrigger: {{type: http, method: GET, paths: [/fetch]}}\n\
             domains: [fetch.{id}.tau]\nsource: fetch.wasm\n\
             execution: {{timeout: 3s, memory: 32MB}}\n\
             allowed_outbound_hosts: [{}]\n\
             variables: {{greeting: \"hello from {id}: \"}}\n",
            hosts.join(", ")
        ),
    )?;
    Ok(())
}

fn fetch(gateway: &str, id: &str, url: &str) -> Result<HttpAnswer> {
    http(gateway, "GET", &format!("fetch.{id}.tau"), &format!("/fetch?url={url}"), b"")
}

#[test]
fn a_function_reaches_only_allowed_hosts_at_public_or_allowed_addresses() -> Result {
    let tmp = tempfile::tempdir()?;
    // https: a server whose certificate the test's CA signed, which the nodes trust; and one
    // whose certificate (the CA's own) does not name the host.
    certificates(tmp.path())?;
    let (_good, tls_port) = tls_server(tmp.path(), "leaf.pem", "leaf.key")?;
    let (_bad, bad_tls_port) = tls_server(tmp.path(), "ca.pem", "ca.key")?;
    let roots = tmp.path().join("ca.pem").to_string_lossy().into_owned();
    let options =
        ["--outbound-allow", "127.0.0.2/32", "--outbound-roots", &roots, "--counter-window", "1s"];
    let cloud = DevCloud::start_with(2, &tmp.path().join("cloud"), &options)?;
    let port = upstream()?;
    let allowed = [
        format!("https://127.0.0.2:{tls_port}"),
        format!("https://127.0.0.2:{bad_tls_port}"),
        format!("http://127.0.0.2:{port}"),
        // Allowed by name, but the name resolves to addresses the nodes do not allow.
        format!("http://localhost:{port}"),
        // Allowed, but link-local: where cloud metadata services answer.
        "http://169.254.169.254:80".to_string(),
    ];
    let key = create_project(&cloud.profile, tmp.path(), "out")?;
    let project = tmp.path().join("out");
    write_fetch_project(&project, "out", &allowed)?;
    push_project(&cloud.profile, &project, &key, None)?;

    let ok = format!("http://127.0.0.2:{port}/ok");
    for gateway in &cloud.gateways {
        let (answer, _) = wait_for(Duration::from_secs(30), "fetch answers", || {
            let answer = fetch(gateway, "out", &ok)?;
            Ok((answer.status != 404).then_some(answer))
        })?;
        // The allowed host answers, and the greeting comes from the function's variables.
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.text(), "hello from out: 200\nupstream ok\n");
    }
    let gateway = &cloud.gateways[0];
    let refused = |url: &str, why: &str| -> Result {
        let answer = fetch(gateway, "out", url)?;
        let text = answer.text();
        if answer.status != 502 || !text.contains(why) {
            return Err(format!("{url}: expected 502 {why}, got {} {text}", answer.status).into());
        }
        Ok(())
    };
    // A host the YAML does not list, even at an address the node allows.
    refused(&format!("http://127.0.0.2:{}/ok", port + 1), "HttpRequestDenied")?;
    refused(&format!("http://127.0.0.3:{port}/ok"), "HttpRequestDenied")?;
    // Allowed names and addresses that are private or link-local.
    refused(&format!("http://localhost:{port}/ok"), "DestinationIpProhibited")?;
    refused("http://169.254.169.254/latest/meta-data/", "DestinationIpProhibited")?;
    // A redirect from an allowed host to a forbidden address.
    refused(&format!("http://127.0.0.2:{port}/redirect"), "DestinationIpProhibited")?;
    // https to a host allowed only over http.
    refused("https://127.0.0.2/ok", "HttpRequestDenied")?;
    // https: the certificate checked against the operator's roots and the host's address.
    let secure = fetch(gateway, "out", &format!("https://127.0.0.2:{tls_port}/"))?;
    assert_eq!(secure.status, 200, "{}", secure.text());
    assert!(secure.text().contains("s_server"), "{}", secure.text());
    refused(&format!("https://127.0.0.2:{bad_tls_port}/"), "TlsCertificateError")?;

    // A slow upstream is cut at the function's 3 s deadline.
    let started = Instant::now();
    let slow = fetch(gateway, "out", &format!("http://127.0.0.2:{port}/slow"))?;
    let took = started.elapsed();
    assert!(slow.status >= 500, "{} {}", slow.status, slow.text());
    assert!(took < Duration::from_secs(10), "the slow call took {took:?}");
    // And the gateway still serves.
    assert_eq!(fetch(gateway, "out", &ok)?.status, 200);

    // The requests that went out are counted, with their bytes on the wire, in the nodes'
    // signed records.
    let profile = cloud.profile.to_string_lossy().into_owned();
    wait_for(Duration::from_secs(30), "outgoing requests are counted", || {
        let out = tau_tests::harness::tau_node_ok(&["counters", "--cloud", &profile, "--json"])?;
        let records: Vec<serde_json::Value> = serde_json::from_str(&out)?;
        let fetches = records.iter().filter(|r| r["project"] == "out" && r["function"] == "fetch");
        let sum = |field: &str| fetches.clone().filter_map(|r| r[field].as_u64()).sum::<u64>();
        let figures =
            (sum("outbound_requests"), sum("outbound_sent_bytes"), sum("outbound_received_bytes"));
        // At least the answered ones: one per gateway, the https one, the slow one, the last.
        let enough = figures.0 >= cloud.gateways.len() as u64 + 3 && figures.1 > 500;
        match enough && figures.2 > figures.1 {
            true => Ok(Some(())),
            false => Err(format!("counted (requests, sent, received) {figures:?}").into()),
        }
    })?;
    Ok(())
}

#[test]
fn a_project_without_allowed_hosts_reaches_nothing() -> Result {
    let tmp = tempfile::tempdir()?;
    let options = ["--outbound-allow", "127.0.0.2/32"];
    let cloud = DevCloud::start_with(1, &tmp.path().join("cloud"), &options)?;
    let port = upstream()?;
    let key = create_project(&cloud.profile, tmp.path(), "sealed")?;
    let project = tmp.path().join("sealed");
    write_fetch_project(&project, "sealed", &[])?;
    push_project(&cloud.profile, &project, &key, None)?;
    let gateway = &cloud.gateways[0];
    let (answer, _) = wait_for(Duration::from_secs(30), "fetch answers", || {
        let answer = fetch(gateway, "sealed", &format!("http://127.0.0.2:{port}/ok"))?;
        Ok((answer.status != 404).then_some(answer))
    })?;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(answer.text().contains("HttpRequestDenied"), "{}", answer.text());
    Ok(())
}

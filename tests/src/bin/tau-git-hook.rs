//! `tau-git-hook`: a test git host's `post-receive` hook. For each ref git says was pushed (one
//! `<old> <new> <ref>` line each on stdin), posts a push webhook as GitHub sends one: a JSON
//! body (`ref`, `before`, `after`, `deleted`, `repository`), `X-GitHub-Event: push`,
//! `X-GitHub-Delivery`, and `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` under the
//! repository's webhook secret, read from a file (never from the command line).
//!
//! usage: tau-git-hook --url http://HOST:PORT/PATH --secret-file FILE --name REPO

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tau-git-hook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut url = None;
    let mut secret_file = None;
    let mut name = String::from("repository");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--secret-file" => secret_file = Some(value()?),
            "--name" => name = value()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is needed")?;
    let secret_file = secret_file.ok_or("--secret-file is needed")?;
    let secret = std::fs::read(&secret_file).map_err(|e| format!("{secret_file}: {e}"))?;
    let secret = String::from_utf8_lossy(&secret).trim().to_string();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let mut parts = line.split_whitespace();
        let (Some(before), Some(after), Some(reference)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let body = serde_json::json!({
            "ref": reference,
            "before": before,
            "after": after,
            "created": before.bytes().all(|b| b == b'0'),
            "deleted": after.bytes().all(|b| b == b'0'),
            "repository": { "name": name },
        })
        .to_string();
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
        mac.update(body.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let (status, answer) = post(&url, &body, &signature)?;
        println!("webhook {reference} {after}: {status} {}", answer.trim());
    }
    Ok(())
}

/// One HTTP/1.1 POST; the status and body of the answer.
fn post(url: &str, body: &str, signature: &str) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_string()),
    };
    let mut stream =
        std::net::TcpStream::connect(authority).map_err(|e| format!("{authority}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let delivery = hex::encode(&signature.as_bytes()[..8]);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         User-Agent: tau-git-hook\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: sha256={signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    stream.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer from {authority}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

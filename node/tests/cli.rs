//! The `tau-node` commands that set things up: `init` and `swarm-key`, run as the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tau_node::NodeConfig;
use tau_proto::{SwarmKey, keyfile};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn tau_node(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_tau-node")).args(args).output()?)
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn init_writes_a_config_and_a_private_identity() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("n1");
    let dir_arg = dir.to_string_lossy();
    let out =
        tau_node(&["init", "--dir", &dir_arg, "--services", "tns,hoarder", "--p2p-port", "4100"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout)?.trim().to_string();

    let identity = dir.join("identity.key");
    assert_eq!(mode(&identity)?, 0o600);
    assert_eq!(keyfile::read(&identity)?.public().to_peer_id().to_string(), printed);
    assert_eq!(mode(&dir.join("swarm.key"))?, 0o600, "a generated swarm key is private");
    let config = NodeConfig::load(&dir.join("node.yaml"))?;
    assert_eq!(config.services, ["tns", "hoarder"]);
    assert_eq!(config.ports.p2p, 4100);
    SwarmKey::load(&config.swarm_key)?;

    // A second init does not overwrite the config...
    let out = tau_node(&["init", "--dir", &dir_arg])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    // ...and with --force it keeps the identity.
    let out = tau_node(&["init", "--dir", &dir_arg, "--force"])?;
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout)?.trim(), printed);
    Ok(())
}

#[test]
fn init_checks_its_inputs_before_writing() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("n2");
    let dir_arg = dir.to_string_lossy();
    let out = tau_node(&["init", "--dir", &dir_arg, "--services", "tns,mail"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service `mail`"));
    for file in ["node.yaml", "identity.key", "swarm.key"] {
        assert!(!dir.join(file).exists(), "{file} was written");
    }

    let bad_key = tmp.path().join("bad.key");
    std::fs::write(&bad_key, "/key/swarm/psk/1.0.0/\n/base16/\nxyz\n")?;
    let out = tau_node(&["init", "--dir", &dir_arg, "--swarm-key", &bad_key.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("bad.key: not a swarm key"), "{stderr}");
    Ok(())
}

#[test]
fn swarm_key_prints_fresh_keys_and_writes_private_files() -> Result {
    let a = String::from_utf8(tau_node(&["swarm-key"])?.stdout)?;
    let b = String::from_utf8(tau_node(&["swarm-key"])?.stdout)?;
    assert!(a.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"), "{a}");
    assert_ne!(SwarmKey::parse(&a)?, SwarmKey::parse(&b)?);

    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("swarm.key");
    let out = tau_node(&["swarm-key", "--out", &path.to_string_lossy()])?;
    assert!(out.status.success());
    assert_eq!(mode(&path)?, 0o600);
    SwarmKey::load(&path)?;
    // The key itself is never echoed when written to a file.
    let key_line = std::fs::read_to_string(&path)?.lines().nth(2).unwrap_or_default().to_string();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&key_line));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key_line));
    Ok(())
}

#[test]
fn init_a_vault_node_names_its_key_files() -> Result {
    let tmp = tempfile::tempdir()?;
    let node = tmp.path().join("node");
    let node_arg = node.to_string_lossy();
    let out = tau_node(&["init", "--dir", &node_arg, "--services", "vault"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field `vault`: a vault node needs"), "{err}");
    assert!(!node.join("node.yaml").exists());

    let keys = tmp.path().join("keys");
    let keys_arg = keys.to_string_lossy();
    let dealt =
        tau_node(&["vault", "deal", "--shares", "2", "--threshold", "1", "--out", &keys_arg])?;
    assert!(dealt.status.success());
    let out = tau_node(&[
        "init",
        "--dir",
        &node_arg,
        "--services",
        "tns,vault",
        "--vault-keyset",
        &keys.join("keyset.yaml").to_string_lossy(),
        "--vault-share",
        &keys.join("share-0.yaml").to_string_lossy(),
    ])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = std::fs::read_to_string(node.join("node.yaml"))?;
    assert!(config.contains("vault:") && config.contains("share-0.yaml"), "{config}");
    Ok(())
}

#[test]
fn vault_deal_writes_private_shares_that_decrypt_together() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("vault");
    let dir_arg = dir.to_string_lossy();
    let out = tau_node(&["vault", "deal", "--shares", "4", "--threshold", "1", "--out", &dir_arg])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keyset: tau_proto::vault::KeySet =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("keyset.yaml"))?)?;
    keyset.validate()?;
    assert_eq!((keyset.shares, keyset.threshold), (4, 1));
    let mut shares = Vec::new();
    let ct = keyset.encrypt(b"s3cret")?;
    let checked = tau_proto::vault::CheckedCiphertext::parse(&ct)?;
    for i in 0..4 {
        let path = dir.join(format!("share-{i}.yaml"));
        assert_eq!(mode(&path)?, 0o600, "{} must be private", path.display());
        let file: tau_proto::vault::ShareFile =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)?;
        assert_eq!((file.keyset.as_str(), file.index), (keyset.id.as_str(), i));
        shares.push((libp2p::PeerId::random(), i, file.decryption_share(&checked)?));
    }
    assert_eq!(keyset.combine(&ct, &shares[2..])?, b"s3cret");
    // Nothing printed carries a share.
    let printed = String::from_utf8(out.stdout)?;
    let share0 = std::fs::read_to_string(dir.join("share-0.yaml"))?;
    let secret_line = share0.lines().find(|l| l.starts_with("secret:")).ok_or("no secret")?;
    assert!(!printed.contains(secret_line.trim_start_matches("secret: ")));

    // A second deal into the same folder overwrites nothing; bad parameters are refused.
    let again =
        tau_node(&["vault", "deal", "--shares", "4", "--threshold", "1", "--out", &dir_arg])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(dir.join("share-0.yaml"))?, share0);
    let bad = tau_node(&["vault", "deal", "--shares", "2", "--threshold", "2", "--out", "/tmp/x"])?;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("threshold"));
    Ok(())
}

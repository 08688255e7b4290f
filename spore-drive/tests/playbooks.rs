//! The example playbooks read as their golden files say, every invalid playbook fails with its
//! expected error naming the file and field, and `init` writes a playbook that loads, with
//! private secrets that a second run keeps.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use spore_drive::Playbook;
use spore_drive::playbook::Transport;
use spore_drive::secrets::{self, Layout};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn playbooks() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks")
}

#[test]
fn the_example_playbooks_match_their_golden_files() -> Result {
    for name in ["local", "lab", "production.example"] {
        let playbook = Playbook::load(&playbooks().join(format!("{name}.yaml")))?;
        let json = serde_json::to_string_pretty(&playbook)? + "\n";
        let golden = playbooks().join("golden").join(format!("{name}.json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &json)?;
        }
        let expected = std::fs::read_to_string(&golden).map_err(|e| {
            format!("{}: {e} (run with UPDATE_GOLDEN=1 to write it)", golden.display())
        })?;
        assert_eq!(json, expected, "{name}.yaml no longer reads as {}", golden.display());
    }
    Ok(())
}

#[test]
fn every_invalid_playbook_fails_with_its_expected_error() -> Result {
    let mut checked = 0;
    for entry in std::fs::read_dir(playbooks().join("invalid"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .ok_or_else(|| format!("{}: no `# expect:` line", path.display()))?;
        let err = match Playbook::load(&path) {
            Ok(_) => return Err(format!("{} loaded", path.display()).into()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{}: expected `{expected}`, got `{err}`", path.display());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(err.contains(name), "the error names the file: {err}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} invalid playbooks");
    Ok(())
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn init_writes_a_playbook_and_private_secrets_that_a_second_run_keeps() -> Result {
    let tmp = tempfile::tempdir()?;
    for (transport, dir) in [(Transport::Local, "local"), (Transport::Ssh, "ssh")] {
        let dir = tmp.path().join(dir);
        let (path, made) = spore_drive::init::init(&dir, "demo", 3, transport)?;
        let playbook = Playbook::load(&path)?;
        assert_eq!((playbook.transport, playbook.hosts.len()), (transport, 3));
        let layout = Layout { dir: playbook.secrets_dir() };
        assert_eq!(mode(&layout.dir)?, 0o700);
        let mut expected = vec![layout.swarm_key(), layout.operator_key(), layout.vault_keyset()];
        for host in &playbook.hosts {
            expected.push(layout.identity(&host.name));
            expected.push(layout.vault_share(&host.name));
        }
        for file in &expected {
            assert!(made.created.contains(file), "{} not created", file.display());
            if file != &layout.vault_keyset() {
                assert_eq!(mode(file)?, 0o600, "{} must be private", file.display());
            }
        }
        let keyset: tau_proto::vault::KeySet = tau_proto::yaml::load(&layout.vault_keyset())?;
        assert_eq!((keyset.shares, keyset.threshold), (3, 1));
        // A second run creates nothing and keeps every identity.
        let before = std::fs::read(layout.identity("node-1"))?;
        let again = secrets::ensure(&playbook)?;
        assert!(again.created.is_empty(), "{:?}", again.created);
        assert_eq!(std::fs::read(layout.identity("node-1"))?, before);
        // init never overwrites a playbook.
        assert!(spore_drive::init::init(&dir, "demo", 3, transport).is_err());
    }
    Ok(())
}

/// Shapes edited after `init` deal a new vault key set, until the first deploy; after it, a
/// change in the vault hosts is refused (a new key set would make stored secrets unreadable).
#[test]
fn vault_hosts_may_change_until_the_first_deploy() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cloud");
    let (path, _) = spore_drive::init::init(&dir, "demo", 5, Transport::Ssh)?;
    let text = std::fs::read_to_string(&path)?;
    let edge = "  edge: { services: [hoarder, substrate] }\n";
    let text = text.replacen("shapes:\n", &format!("shapes:\n{edge}"), 1);
    let text = ["node-4", "node-5"].iter().fold(text, |text, host| {
        let line = text.lines().find(|l| l.contains(&format!("name: {host},"))).unwrap_or("");
        text.replace(line, &line.replace("shape: full", "shape: edge"))
    });
    std::fs::write(&path, &text)?;
    let playbook = Playbook::load(&path)?;
    let layout = Layout { dir: playbook.secrets_dir() };
    let made = secrets::ensure(&playbook)?;
    assert!(made.created.contains(&layout.vault_keyset()), "{:?}", made.created);
    let keyset: tau_proto::vault::KeySet = tau_proto::yaml::load(&layout.vault_keyset())?;
    assert_eq!((keyset.shares, keyset.threshold), (3, 1), "three vault hosts now");
    assert!(!layout.vault_share("node-4").exists(), "edge hosts hold no share");

    // Once deployed, the same edit back is refused, naming the key set.
    std::fs::write(layout.state(), "{}")?;
    let all_full = text.replace("shape: edge", "shape: full");
    std::fs::write(&path, all_full)?;
    let error = secrets::ensure(&Playbook::load(&path)?).err().map(|e| e.to_string());
    let error = error.unwrap_or_default();
    assert!(error.contains("keyset.yaml") && error.contains("3 shares"), "{error}");
    Ok(())
}

#[test]
fn the_cli_prints_paths_never_secrets() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cloud");
    let out = Command::new(env!("CARGO_BIN_EXE_spore-drive"))
        .args(["init", "--transport", "local", "--hosts", "2", "--json"])
        .arg(&dir)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout)? + &String::from_utf8(out.stderr)?;
    let report: serde_json::Value = serde_json::from_str(&printed)?;
    assert!(report["created"].as_array().is_some_and(|c| c.len() >= 7), "{report}");
    let swarm = std::fs::read_to_string(dir.join("secrets/swarm.key"))?;
    let key_line = swarm.lines().last().ok_or("empty swarm key")?;
    assert!(!printed.contains(key_line), "the swarm key was printed");
    let check = Command::new(env!("CARGO_BIN_EXE_spore-drive"))
        .arg("check")
        .arg(dir.join("playbook.yaml"))
        .output()?;
    assert!(check.status.success());
    assert!(String::from_utf8(check.stdout)?.contains("node-2"));
    Ok(())
}

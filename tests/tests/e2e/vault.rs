//! Vault across real processes: a project registered through a vault node, a secret stored and
//! read back with two of five vault nodes down and refused with three down, no plaintext in any
//! node's files or logs, and forged registrations that create nothing.

use std::path::Path;
use std::time::Duration;
use tau_proto::tns::TnsProtocol;
use tau_proto::vault::VaultProtocol;

use libp2p::identity::Keypair;
use tau_proto::cbor;
use tau_proto::tns::{Draft, Record, TnsRequest, TnsResponse, keys};
use tau_proto::vault::{Registration, SecretValue};
use tau_proto::{Client, CloudProfile};
use tau_tests::harness::{
    DevCloud, Result, Signal, alive, files_containing, random_bytes, signal, tau_node, tau_node_ok,
    wait_for, write_project,
};

/// `tau-node secret get` as `key`: the plaintext, or the error text.
fn secret_get(
    profile: &Path,
    project: &str,
    name: &str,
    key: &Path,
) -> Result<(bool, Vec<u8>, String)> {
    let out = tau_node(&[
        "secret",
        "get",
        project,
        name,
        "--cloud",
        &profile.to_string_lossy(),
        "--key",
        &key.to_string_lossy(),
    ])?;
    Ok((out.status.success(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned()))
}

fn stop_node(cloud: &DevCloud, i: usize) -> Result {
    let pid = cloud.node_pid(i)?;
    signal(pid, Signal::SIGTERM);
    wait_for(Duration::from_secs(15), "a node stops", || Ok((!alive(pid)).then_some(())))?;
    Ok(())
}

#[test]
fn secrets_read_with_two_of_five_down_fail_with_three_and_no_node_sees_a_plaintext() -> Result {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cloud");
    let cloud = DevCloud::start(5, &dir)?;
    let profile = cloud.profile.clone();
    let cloud_arg = profile.to_string_lossy().into_owned();

    // The owner registers the project through a vault node.
    let owner = tmp.path().join("owner.key");
    tau_node_ok(&["key", "generate", "--out", &owner.to_string_lossy()])?;
    let project = tmp.path().join("vaulted");
    write_project(&project, "vaulted", &["ping"])?;
    let registered: serde_json::Value = serde_json::from_str(&tau_node_ok(&[
        "project",
        "register",
        &project.to_string_lossy(),
        "--cloud",
        &cloud_arg,
        "--key",
        &owner.to_string_lossy(),
        "--json",
    ])?)?;
    let written: Vec<&str> = registered["written"]
        .as_array()
        .ok_or("no written")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    // Without repositories a registration creates the project and nothing else.
    assert_eq!(written, ["/projects/vaulted"]);
    // The owner can push to the project the vault node created.
    tau_tests::harness::push_project(&profile, &project, &owner, None)?;

    // A secret, stored from a file.
    let plaintext = format!("tau-e2e-secret-{}", hex_of(&random_bytes(16, 7)));
    let value_file = tmp.path().join("value");
    std::fs::write(&value_file, &plaintext)?;
    let put = tau_node_ok(&[
        "secret",
        "put",
        "vaulted",
        "db-password",
        "--from-file",
        &value_file.to_string_lossy(),
        "--cloud",
        &cloud_arg,
        "--key",
        &owner.to_string_lossy(),
        "--json",
    ])?;
    std::fs::remove_file(&value_file)?;
    assert!(!put.contains(&plaintext), "the --json report holds no value");
    let put: serde_json::Value = serde_json::from_str(&put)?;
    assert_eq!(put["nodes"].as_array().map(Vec::len), Some(5), "{put}");

    let (ok, value, err) = secret_get(&profile, "vaulted", "db-password", &owner)?;
    assert!(ok, "{err}");
    assert_eq!(value, plaintext.as_bytes());
    // A stranger is refused by every node, and learns nothing.
    let stranger = tmp.path().join("stranger.key");
    tau_node_ok(&["key", "generate", "--out", &stranger.to_string_lossy()])?;
    let (ok, value, err) = secret_get(&profile, "vaulted", "db-password", &stranger)?;
    assert!(!ok && value.is_empty());
    assert!(err.contains("only the owner of project `vaulted`"), "{err}");
    assert!(!err.contains(&plaintext));

    // Every node holds a different share of the same key set, and they are enough.
    let shares: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["vault", "shares", "--cloud", &cloud_arg, "--json"])?)?;
    let nodes = shares["nodes"].as_array().ok_or("no nodes")?;
    let mut indexes: Vec<u64> = nodes.iter().filter_map(|n| n["index"].as_u64()).collect();
    indexes.sort();
    assert_eq!(indexes, [0, 1, 2, 3, 4], "{shares}");
    assert_eq!((shares["needed"].as_u64(), shares["readable"].as_bool()), (Some(3), Some(true)));
    assert!(nodes.iter().all(|n| n["secrets"].as_u64() >= Some(1)), "{shares}");
    assert!(!shares.to_string().contains(&plaintext));

    // Two nodes down: three shares remain, enough.
    stop_node(&cloud, 3)?;
    stop_node(&cloud, 4)?;
    let (ok, value, err) = secret_get(&profile, "vaulted", "db-password", &owner)?;
    assert!(ok, "{err}");
    assert_eq!(value, plaintext.as_bytes());

    // Three down: two shares cannot decrypt, and the error says why.
    stop_node(&cloud, 2)?;
    let (ok, value, err) = secret_get(&profile, "vaulted", "db-password", &owner)?;
    assert!(!ok && value.is_empty(), "read with two shares");
    assert!(err.contains("2 good decryption shares, 3 needed"), "{err}");
    assert!(!err.contains(&plaintext));

    // No node's data folder or log holds a plaintext.
    drop(cloud);
    let found = files_containing(&dir, plaintext.as_bytes())?;
    assert!(found.is_empty(), "a plaintext is in {found:?}");
    Ok(())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many of `nodes` hold a record under `key`.
async fn holders(client: &Client, nodes: &[libp2p::PeerId], key: &str) -> Result<usize> {
    let mut count = 0;
    for node in nodes {
        match client
            .call::<TnsProtocol>(*node, TnsRequest::Get { keys: vec![key.to_string()] })
            .await?
        {
            TnsResponse::Records(records) if !records.is_empty() => count += 1,
            _ => {}
        }
    }
    Ok(count)
}

/// Tampers with the ciphertext of `record` and signs it again as `owner`: a well-signed record
/// whose ciphertext fails its check.
fn with_bad_ciphertext(record: &Record, owner: &Keypair) -> Result<Record> {
    let mut value: SecretValue = cbor::from_slice(record.value.as_deref().ok_or("tombstone")?)?;
    let last = value.ciphertext.len() - 1;
    value.ciphertext[last] ^= 0x01;
    resign(record, cbor::to_vec(&value)?, owner)
}

fn resign(record: &Record, value: Vec<u8>, owner: &Keypair) -> Result<Record> {
    let draft = Draft { key: record.key.clone(), scope: record.scope.clone(), value: Some(value) };
    Ok(draft.sign(record.version, owner).ok_or("cannot sign")?)
}

#[test]
fn forged_registrations_and_copied_ciphertexts_create_nothing() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(3, &tmp.path().join("cloud"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = Client::connect(&CloudProfile::load(&cloud.profile)?).await?;
        let nodes = client.nodes().await?;
        let keyset = client.vault_keyset(nodes[0]).await?;
        let owner = Keypair::generate_ed25519();
        let version = client.tns_clock(nodes[0]).await? + 1;
        let now = tau_proto::client::secrets::unix_now();
        let secrets: [(&str, &[u8]); 1] = [("deploy-key", b"key material")];
        let good = Registration::new(&keyset, "forged", &owner, &secrets, version, now)?;

        // A signature that does not verify.
        let mut bad_signature = good.clone();
        bad_signature.request.signature[3] ^= 0x01;
        // Signed by a stranger who claims to be the owner.
        let stranger = Keypair::generate_ed25519();
        let mut stranger_signed =
            Registration::new(&keyset, "forged", &stranger, &secrets, version, now)?;
        stranger_signed.request.signer = good.request.signer;
        // A ciphertext whose validity proof fails, in a record the owner did sign.
        let mut bad_proof = good.clone();
        bad_proof.secrets[0] = with_bad_ciphertext(&good.secrets[0], &owner)?;
        // A stale request, replayed long after it was signed.
        let stale = Registration::new(&keyset, "forged", &owner, &secrets, version, now - 3_600)?;
        for (what, registration, expected) in [
            ("bad signature", bad_signature, "not validly signed"),
            ("stranger", stranger_signed, "not validly signed"),
            ("bad proof", bad_proof, "fails its validity check"),
            ("stale", stale, "stale"),
        ] {
            let refused = client.register(registration).await;
            let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(expected), "{what}: {message}");
            assert!(holders(&client, &nodes, &keys::project("forged")).await? == 0, "{what}");
        }

        // The real registration goes through; a copy of its ciphertext under another project
        // (registered, or stored later) is refused rather than decrypted.
        client.register(good.clone()).await?;
        let thief = Keypair::generate_ed25519();
        let copied = resign(
            &Record {
                key: keys::secret("heist", "loot"),
                scope: "heist".into(),
                ..good.secrets[0].clone()
            },
            good.secrets[0].value.clone().ok_or("tombstone")?,
            &thief,
        )?;
        let version = client.tns_clock(nodes[0]).await? + 1;
        let mut heist = Registration::new(&keyset, "heist", &thief, &[], version, now)?;
        heist.secrets.push(copied.clone());
        let message = client.register(heist).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("already stored as /projects/forged/secrets/deploy-key"),
            "{message}"
        );
        assert!(holders(&client, &nodes, &keys::project("heist")).await? == 0);

        client.register_project("heist", &thief, &[]).await?;
        // Once the original has reached every node (the thief copied it from TNS, after all),
        // no node stores the copy, whether or not it checked the original itself.
        let original = keys::secret("forged", "deploy-key");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while holders(&client, &nodes, &original).await? < nodes.len() {
            assert!(std::time::Instant::now() < deadline, "{original} did not spread");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for node in &nodes {
            let store = tau_proto::vault::VaultRequest::Store { record: copied.clone() };
            let answer = client
                .call::<VaultProtocol>(*node, store)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(answer.contains("already stored as"), "{node}: {answer}");
        }
        let read = client.get_secret("heist", "loot", &thief).await;
        assert!(read.is_err(), "the copy was never stored, so it cannot be read");

        // Nothing of the refused ones arrived anywhere, even after anti-entropy had a chance.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(holders(&client, &nodes, &keys::project("forged")).await?, nodes.len());
        assert!(holders(&client, &nodes, &keys::secret("heist", "loot")).await? == 0);
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}

//! A project's named storage (issue 25): the example `gateway`'s `/files` routes on a real
//! 3-node dev cloud put a blob through one node and read it byte for byte through another,
//! list and delete keys; a blob stays pinned in hoarder while a key names it and is let go
//! (after the nodes' storage grace, 2 s here) once none does, as is a blob whose key the full
//! storage refused; the bytes put are counted. A project's storage is its own: another
//! project's functions reach only their own, and a function the storage does not list cannot
//! open it.

use std::path::Path;
use std::time::Duration;

use tau_proto::hoarder::BlobId;
use tau_tests::harness::{
    DevCloud, HttpAnswer, Result, create_project, example_wasm, http, push_project, random_bytes,
    tau_node_ok, wait_for,
};

/// A project `id` with the example gateway on `files.<id>.tau` (`gateway` for GET, `files-put`
/// and `files-delete`) and, when `size` is given, a storage `files` of that size that
/// `functions` may open.
fn write_files_project(dir: &Path, id: &str, storage: Option<(&str, &[&str])>) -> Result {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("functions"))?;
    std::fs::write(dir.join("config.yaml"), format!("id: {id}\n"))?;
    std::fs::copy(example_wasm("gateway")?, dir.join("gateway.wasm"))?;
    for (name, method) in [("gateway", "GET"), ("files-put", "PUT"), ("files-delete", "DELETE")] {
        std::fs::write(
            dir.join(format!("functions/{name}.yaml")),
            format!(
                "id: {name}\ntrigger: {{type: http, method: {method}, paths: [/blob, /files]}}\n\
                 domains: [files.{id}.tau]\nsource: gateway.wasm\n\
                 execution: {{timeout: 60s, memory: 32MB}}\n"
            ),
        )?;
    }
    if let Some((size, functions)) = storage {
        std::fs::create_dir_all(dir.join("storages"))?;
        std::fs::write(
            dir.join("storages/files.yaml"),
            format!("id: files\nfunctions: [{}]\nsize: {size}\n", functions.join(", ")),
        )?;
    }
    Ok(())
}

/// The CIDs hoarder lists as pinned.
fn pinned(profile: &str) -> Result<Vec<String>> {
    let pins: serde_json::Value =
        serde_json::from_str(&tau_node_ok(&["hoarder", "list", "--cloud", profile, "--json"])?)?;
    Ok(pins
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["cid"].as_str().map(String::from)).collect())
        .unwrap_or_default())
}

fn files(gateway: &str, id: &str, method: &str, key: &str, body: &[u8]) -> Result<HttpAnswer> {
    let path = if key.is_empty() { "/files".to_string() } else { format!("/files/{key}") };
    http(gateway, method, &format!("files.{id}.tau"), &path, body)
}

#[test]
fn a_storage_keeps_what_its_keys_name_and_lets_go_of_the_rest() -> Result {
    let tmp = tempfile::tempdir()?;
    let options = ["--storage-grace", "2s", "--counter-window", "1s"];
    let cloud = DevCloud::start_with(3, &tmp.path().join("cloud"), &options)?;
    let profile = cloud.profile.to_string_lossy().into_owned();
    let key = create_project(&cloud.profile, tmp.path(), "media")?;
    let project = tmp.path().join("media");
    let all = ["gateway", "files-put", "files-delete"];
    write_files_project(&project, "media", Some(("8MB", &all)))?;
    push_project(&cloud.profile, &project, &key, None)?;
    let (a, c) = (&cloud.gateways[0], &cloud.gateways[2]);
    for gateway in &cloud.gateways {
        wait_for(Duration::from_secs(30), "the gateway answers", || {
            Ok((files(gateway, "media", "GET", "", b"")?.status == 200).then_some(()))
        })?;
    }

    // A 3 MB put through node 0 names its blob, pinned, and node 2 reads it byte for byte.
    let photo = random_bytes(3 << 20, 11);
    let cid = BlobId::of(&photo).to_string();
    let put = files(a, "media", "PUT", "photo.jpg", &photo)?;
    assert_eq!((put.status, put.text().trim()), (201, cid.as_str()), "{}", put.text());
    wait_for(Duration::from_secs(5), "the blob is pinned", || {
        Ok(pinned(&profile)?.contains(&cid).then_some(()))
    })?;
    let (read, _) = wait_for(Duration::from_secs(5), "node 2 reads the key", || {
        let read = files(c, "media", "GET", "photo.jpg", b"")?;
        Ok((read.status != 404).then_some(read))
    })?;
    assert_eq!(read.status, 200, "{}", read.text());
    assert!(read.body == photo, "the blob came back different ({} bytes)", read.body.len());
    assert_eq!(files(c, "media", "GET", "missing", b"")?.status, 404);

    // Two keys may name the same blob: deleting one keeps it.
    assert_eq!(files(c, "media", "PUT", "copy.jpg", &photo)?.status, 201);
    assert_eq!(files(a, "media", "PUT", "notes.txt", b"hello")?.status, 201);
    // Written through nodes 0 and 2, listed through node 1 once its copy has all three.
    let expected = "copy.jpg\nnotes.txt\nphoto.jpg\n";
    let mut listed = String::new();
    let all_listed = wait_for(Duration::from_secs(5), "node 1 lists the three keys", || {
        listed = files(&cloud.gateways[1], "media", "GET", "", b"")?.text();
        Ok((listed == expected).then_some(()))
    });
    assert!(all_listed.is_ok(), "node 1 lists {listed:?}");
    assert_eq!(files(a, "media", "DELETE", "photo.jpg", b"")?.status, 204);
    wait_for(Duration::from_secs(5), "node 2 sees the delete", || {
        Ok((files(c, "media", "GET", "photo.jpg", b"")?.status == 404).then_some(()))
    })?;
    // Three sweeps' worth past the grace: still named by copy.jpg, still pinned and served.
    std::thread::sleep(Duration::from_secs(5));
    assert!(pinned(&profile)?.contains(&cid), "a blob a key still names was let go");
    assert!(files(a, "media", "GET", "copy.jpg", b"")?.body == photo);

    // A put past the storage's size (8 MB: 3 MB + 6 MB) is refused with the reason, and the
    // blob it stored is let go too, as is the one no key names once copy.jpg is deleted.
    let big = random_bytes(6 << 20, 12);
    let refused = files(a, "media", "PUT", "big.bin", &big)?;
    assert_eq!(refused.status, 507, "{}", refused.text());
    assert!(refused.text().contains("storage `files` is full"), "{}", refused.text());
    assert_eq!(files(c, "media", "GET", "big.bin", b"")?.status, 404);
    assert_eq!(files(c, "media", "DELETE", "copy.jpg", b"")?.status, 204);
    let big_cid = BlobId::of(&big).to_string();
    wait_for(Duration::from_secs(30), "the unnamed blobs are unpinned", || {
        let pins = pinned(&profile)?;
        Ok((!pins.contains(&cid) && !pins.contains(&big_cid)).then_some(()))
    })?;
    assert_eq!(files(a, "media", "GET", "notes.txt", b"")?.text(), "hello");
    // With room again, the same 6 MB fits.
    assert_eq!(files(a, "media", "PUT", "big.bin", &big)?.status, 201);

    // The bytes put are counted in the signed records, for the function that put them.
    let put_bytes = 2 * photo.len() as u64 + 5 + big.len() as u64;
    wait_for(Duration::from_secs(30), "the bytes put are counted", || {
        let records: Vec<serde_json::Value> =
            serde_json::from_str(&tau_node_ok(&["counters", "--cloud", &profile, "--json"])?)?;
        let written: u64 = records
            .iter()
            .filter(|r| r["project"] == "media" && r["function"] == "files-put")
            .filter_map(|r| r["storage_written_bytes"].as_u64())
            .sum();
        Ok((written == put_bytes).then_some(()))
    })?;
    Ok(())
}

#[test]
fn a_storage_is_its_projects_own() -> Result {
    let tmp = tempfile::tempdir()?;
    let cloud = DevCloud::start(1, &tmp.path().join("cloud"))?;
    let gateway = &cloud.gateways[0];
    // Project alpha's storage does not list `files-delete`.
    let key_a = create_project(&cloud.profile, tmp.path(), "alpha")?;
    let alpha = tmp.path().join("alpha");
    write_files_project(&alpha, "alpha", Some(("1MB", &["gateway", "files-put"])))?;
    push_project(&cloud.profile, &alpha, &key_a, None)?;
    // Project beta has a storage of the same name; project gamma none at all.
    let key_b = create_project(&cloud.profile, tmp.path(), "beta")?;
    let beta = tmp.path().join("beta");
    write_files_project(&beta, "beta", Some(("1MB", &["gateway", "files-put", "files-delete"])))?;
    push_project(&cloud.profile, &beta, &key_b, None)?;
    let key_g = create_project(&cloud.profile, tmp.path(), "gamma")?;
    let gamma = tmp.path().join("gamma");
    write_files_project(&gamma, "gamma", None)?;
    push_project(&cloud.profile, &gamma, &key_g, None)?;
    for id in ["alpha", "beta", "gamma"] {
        wait_for(Duration::from_secs(30), "the gateway answers", || {
            Ok((files(gateway, id, "GET", "", b"")?.status != 404).then_some(()))
        })?;
    }

    let put = files(gateway, "alpha", "PUT", "secret", b"alpha's")?;
    assert_eq!(put.status, 201, "{}", put.text());
    // A blob past the storage's size (1 MB) is refused as it streams in, and nothing is named.
    let big = files(gateway, "alpha", "PUT", "big", &vec![7u8; 1_100_000])?;
    assert_eq!(big.status, 507, "{}", big.text());
    assert!(big.text().contains("past the storage's size"), "{}", big.text());
    assert_eq!(files(gateway, "alpha", "GET", "big", b"")?.status, 404);
    // A function the storage does not list cannot open it.
    let denied = files(gateway, "alpha", "DELETE", "secret", b"")?;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(files(gateway, "alpha", "GET", "secret", b"")?.text(), "alpha's");
    // Beta's functions open beta's `files`: alpha's key is not there, and a write stays there.
    assert_eq!(files(gateway, "beta", "GET", "secret", b"")?.status, 404);
    assert_eq!(files(gateway, "beta", "GET", "", b"")?.text().trim(), "");
    assert_eq!(files(gateway, "beta", "PUT", "secret", b"beta's")?.status, 201);
    assert_eq!(files(gateway, "alpha", "GET", "secret", b"")?.text(), "alpha's");
    assert_eq!(files(gateway, "beta", "DELETE", "secret", b"")?.status, 204);
    assert_eq!(files(gateway, "alpha", "GET", "secret", b"")?.text(), "alpha's");
    // Gamma declares none: no name reaches another project's.
    let none = files(gateway, "gamma", "GET", "secret", b"")?;
    assert_eq!(none.status, 500, "{}", none.text());
    assert!(none.text().contains("declares no storage `files`"), "{}", none.text());
    Ok(())
}

//! `tau:storage/storage` for functions: a project's named storages ([`tau_proto::storage`]).
//!
//! A function opens a storage of its own project by name: one its project does not declare is
//! `no-such-storage`, one that does not list the function `access-denied`; the project is
//! always the function's own. A key's entry (CID and size) is in the storage's index, a hidden
//! store of the database service reached through [`Kv`]; its blob is read like any blob
//! (`super::blobs`). A put is spooled to this node's disk as the function writes it (never
//! held in memory, at most the storage's size, never into the node's last 512 MiB of disk),
//! streamed to a hoarder node that pins it for the
//! storage, and only then is the key written, so a key never names a blob not stored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use libp2p::PeerId;
use tau_proto::database::{Op, StoreId, check_key};
use tau_proto::hoarder::{BlobId, DEFAULT_REPLICAS, Manifest, ManifestBuilder, transfer};
use tau_proto::storage::{Entry, index};
use tokio::io::AsyncWriteExt;
use wasmtime::component::Resource;

use super::blobs::bindings::tau::storage::storage::{self, Error, KeyPage};
use super::blobs::{BlobSource, BlobsView, MAX_OPEN, OpenBlob};
use crate::database::{Kv, KvError};

/// The largest piece a function writes at once.
const MAX_WRITE: usize = 1 << 20;
/// How many hoarder nodes a finished put is offered to before it fails.
const MAX_TRIES: usize = 3;
/// The free disk a put leaves the node: one that would take less is refused.
const SPOOL_RESERVE: u64 = 512 << 20;
/// How many bytes a put spools between two looks at the free disk (a system call).
const DISK_CHECK_EVERY: u64 = 16 << 20;

/// Whether the disk holding `path` has room for [`DISK_CHECK_EVERY`] more bytes past the
/// reserve; the refusal names what is free.
fn disk_room(path: &std::path::Path) -> Result<(), Error> {
    let free = crate::resources::free_bytes(path).unwrap_or(u64::MAX);
    if free < SPOOL_RESERVE.saturating_add(DISK_CHECK_EVERY) {
        return Err(other(format!(
            "this node's disk is too full to take the put ({} MiB free)",
            free >> 20
        )));
    }
    Ok(())
}

/// What a function's instances may open: its project's storages, by name, each with whether
/// the function may use it and its size.
#[derive(Clone, Default)]
pub struct Storages {
    /// The way to the database nodes (the storages' indexes); none on a node built without one.
    pub kv: Option<Kv>,
    /// The function's project.
    pub project: String,
    /// The project's storages: `Some(size)` for those the function may open.
    pub declared: BTreeMap<String, Option<u64>>,
}

/// An open storage.
pub struct Container {
    index: StoreId,
    max_bytes: u64,
}

/// A put in progress: the spool file and the manifest built as the bytes pass.
pub struct Upload {
    index: StoreId,
    key: String,
    path: PathBuf,
    file: Option<tokio::fs::File>,
    builder: Option<ManifestBuilder>,
    size: u64,
    max_bytes: u64,
    /// Up to where the free disk was looked at.
    checked_to: u64,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

/// A refusal of the index as the function sees it: a full storage is `full`.
fn refused(e: KvError) -> Error {
    match e {
        KvError::Refused(why) if why.contains(" is full: ") => Error::Full(why),
        e => Error::Other(e.to_string()),
    }
}

impl BlobsView<'_> {
    fn kv(&self) -> Result<Kv, Error> {
        self.storages.kv.clone().ok_or_else(|| other("this node cannot reach storages"))
    }

    fn container(&self, container: &Resource<Container>) -> wasmtime::Result<(StoreId, u64)> {
        let open = self.table.get(container)?;
        Ok((open.index.clone(), open.max_bytes))
    }
}

/// The entry `key` names in `index`.
async fn entry(kv: Kv, index: &StoreId, key: String) -> Result<Option<Entry>, Error> {
    check_key(&key).map_err(Error::BadKey)?;
    let values = kv.get(index, DEFAULT_REPLICAS, vec![key.clone()]).await;
    let value = values.map_err(refused)?.pop().flatten();
    match value {
        None => Ok(None),
        Some(value) => Entry::decode(&value)
            .map(Some)
            .ok_or_else(|| other(format!("key `{key}` holds no storage entry"))),
    }
}

/// Streams a finished put (spooled at `path`) to a hoarder node, pinned for the storage whose
/// index is `index`.
async fn store(
    source: Option<BlobSource>,
    path: PathBuf,
    index: StoreId,
    manifest: &Manifest,
) -> Result<(), Error> {
    let Some(source) = source else { return Err(other("this node cannot store blobs")) };
    let mut failures = Vec::new();
    // This node's own hoarder first, unless its disk is nearly full: no copy over the network
    // before the blob is stored once.
    if let Some(local) = source.local.as_ref().filter(|l| !l.full().load(Ordering::Relaxed)) {
        let me = source.handle.peer_id();
        let storage = Some(index.clone());
        match transfer::upload_for(local, me, &path, manifest, DEFAULT_REPLICAS, storage, &|_| {})
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let nodes = source.handle.nodes("hoarder").await.map_err(other)?;
    let peers: Vec<PeerId> = nodes.into_iter().map(|n| n.peer).take(MAX_TRIES).collect();
    if peers.is_empty() && failures.is_empty() {
        return Err(other("no hoarder node is reachable"));
    }
    for peer in peers {
        let stored = transfer::upload_for(
            &source.handle,
            peer,
            &path,
            manifest,
            DEFAULT_REPLICAS,
            Some(index.clone()),
            &|_| {},
        )
        .await;
        match stored {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(other(format!("cannot store the blob: {}", failures.join("; "))))
}

impl storage::Host for BlobsView<'_> {
    async fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<Container>, Error>> {
        let max_bytes = match self.storages.declared.get(&name) {
            None => return Ok(Err(Error::NoSuchStorage)),
            Some(None) => return Ok(Err(Error::AccessDenied)),
            Some(Some(max_bytes)) => *max_bytes,
        };
        if self.storages.kv.is_none() {
            return Ok(Err(other("this node cannot reach storages")));
        }
        let index = index(&self.storages.project, &name);
        Ok(Ok(self.table.push(Container { index, max_bytes })?))
    }
}

impl storage::HostContainer for BlobsView<'_> {
    async fn get(
        &mut self,
        container: Resource<Container>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Resource<OpenBlob>>, Error>> {
        let (index, _) = self.container(&container)?;
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(e) => return Ok(Err(e)),
        };
        let entry = match entry(kv, &index, key).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.open_blob(entry.cid).await?.map(Some).map_err(|e| {
            use super::blobs::bindings::tau::storage::blobs::Error as BlobError;
            match e {
                BlobError::TooManyOpen => Error::TooManyOpen,
                BlobError::NotFound => other(format!("no node holds {}", entry.cid)),
                BlobError::BadCid(why) | BlobError::Other(why) => Error::Other(why),
            }
        }))
    }

    async fn stat(
        &mut self,
        container: Resource<Container>,
        key: String,
    ) -> wasmtime::Result<Result<Option<storage::Entry>, Error>> {
        let (index, _) = self.container(&container)?;
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(e) => return Ok(Err(e)),
        };
        Ok(entry(kv, &index, key)
            .await
            .map(|e| e.map(|e| storage::Entry { cid: e.cid.to_string(), size: e.size })))
    }

    async fn put(
        &mut self,
        container: Resource<Container>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Upload>, Error>> {
        let (index, max_bytes) = self.container(&container)?;
        if let Err(why) = check_key(&key) {
            return Ok(Err(Error::BadKey(why)));
        }
        let Some(source) = self.source else {
            return Ok(Err(other("this node cannot store blobs")));
        };
        if *self.open >= MAX_OPEN {
            return Ok(Err(Error::TooManyOpen));
        }
        let path = source.spool.join(format!("put-{:032x}", rand::random::<u128>()));
        let file = match tokio::fs::File::create(&path).await {
            Ok(file) => file,
            Err(e) => return Ok(Err(other(format!("cannot spool the put: {e}")))),
        };
        *self.open += 1;
        let upload = Upload {
            index,
            key,
            path,
            file: Some(file),
            builder: Some(ManifestBuilder::default()),
            size: 0,
            max_bytes,
            checked_to: 0,
        };
        Ok(Ok(self.table.push(upload)?))
    }

    async fn delete(
        &mut self,
        container: Resource<Container>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (index, _) = self.container(&container)?;
        if let Err(why) = check_key(&key) {
            return Ok(Err(Error::BadKey(why)));
        }
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(e) => return Ok(Err(e)),
        };
        let written = kv.write(&index, DEFAULT_REPLICAS, vec![Op::Delete { key }]).await;
        Ok(written.map(drop).map_err(refused))
    }

    async fn list_keys(
        &mut self,
        container: Resource<Container>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyPage, Error>> {
        let (index, _) = self.container(&container)?;
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(e) => return Ok(Err(e)),
        };
        Ok(kv
            .list(&index, DEFAULT_REPLICAS, cursor.unwrap_or(0))
            .await
            .map(|(keys, cursor)| KeyPage { keys, cursor })
            .map_err(refused))
    }

    async fn drop(&mut self, container: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(container)?;
        Ok(())
    }
}

impl storage::HostUpload for BlobsView<'_> {
    async fn write(
        &mut self,
        upload: Resource<Upload>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if data.len() > MAX_WRITE {
            return Ok(Err(other(format!("write at most {MAX_WRITE} bytes at a time"))));
        }
        let open = self.table.get_mut(&upload)?;
        if open.file.is_none() || open.builder.is_none() {
            return Ok(Err(other("the put is finished")));
        }
        let size = open.size.saturating_add(data.len() as u64);
        if size > open.max_bytes {
            let max = open.max_bytes;
            return Ok(Err(Error::Full(format!(
                "the blob is past the storage's size ({max} bytes)"
            ))));
        }
        if size > open.checked_to {
            if let Err(e) = disk_room(&open.path) {
                return Ok(Err(e));
            }
            open.checked_to = open.size.saturating_add(DISK_CHECK_EVERY);
        }
        let Some(file) = open.file.as_mut() else { return Ok(Err(other("the put is finished"))) };
        if let Err(e) = file.write_all(&data).await {
            return Ok(Err(other(format!("cannot spool the put: {e}"))));
        }
        if let Some(builder) = open.builder.as_mut() {
            builder.update(&data);
        }
        open.size = size;
        Ok(Ok(()))
    }

    async fn finish(
        &mut self,
        upload: Resource<Upload>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let open = self.table.get_mut(&upload)?;
        let (Some(mut file), Some(builder)) = (open.file.take(), open.builder.take()) else {
            return Ok(Err(other("the put is finished")));
        };
        if let Err(e) = file.flush().await {
            return Ok(Err(other(format!("cannot spool the put: {e}"))));
        }
        drop(file);
        let manifest = builder.finish();
        let (path, index, key) = (open.path.clone(), open.index.clone(), open.key.clone());
        let kv = match self.kv() {
            Ok(kv) => kv,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = store(self.source.cloned(), path, index.clone(), &manifest).await {
            return Ok(Err(e));
        }
        let value = Entry { cid: manifest.cid, size: manifest.size }.encode();
        // A refused key leaves its blob pinned but unnamed: the storage's sweep lets it go.
        let written = kv.write(&index, DEFAULT_REPLICAS, vec![Op::Set { key, value }]).await;
        if let Err(e) = written {
            return Ok(Err(refused(e)));
        }
        *self.written += manifest.size;
        let cid: BlobId = manifest.cid;
        Ok(Ok(cid.to_string()))
    }

    async fn drop(&mut self, upload: Resource<Upload>) -> wasmtime::Result<()> {
        self.table.delete(upload)?;
        *self.open = self.open.saturating_sub(1);
        Ok(())
    }
}

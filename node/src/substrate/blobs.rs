//! `tau:storage/blobs` for functions: any hoarder blob read by CID, a chunk at a time (the
//! bindings of `tau:storage/storage`, whose host side is `super::storage`, are here too).
//!
//! The node reads the blob's manifest from its own hoarder store, else from the hoarder nodes
//! (nearest first, each given [`ASK_TIMEOUT`], at most [`MAX_ASKED`] of them); then each 1 MiB
//! chunk as the function reads into it, from its own store or the node that gave the manifest,
//! checked against the manifest's hash. One chunk is held per open blob, so a function streams
//! a blob of any size in about a megabyte of the node's memory.

use std::time::Duration;

use libp2p::PeerId;
use tau_proto::hoarder::transfer::Asker;
use tau_proto::hoarder::{BlobId, CHUNK_SIZE, HoarderRequest, HoarderResponse, Manifest};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::{hoarder, p2p};

pub(super) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "tau:node/storage",
        imports: { default: async | trappable },
        with: {
            "tau:storage/blobs.blob": super::OpenBlob,
            "tau:storage/storage.container": crate::substrate::storage::Container,
            "tau:storage/storage.upload": crate::substrate::storage::Upload,
        },
    });
}

use bindings::tau::storage::blobs::{self, Error};

/// How long one hoarder node is given to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// The most hoarder nodes asked for a manifest.
const MAX_ASKED: usize = 4;
/// The most blobs one invocation has open at once.
pub(super) const MAX_OPEN: usize = 16;

/// Where blobs are read from (this node's hoarder store, and the hoarder nodes) and where
/// storage puts are spooled before they go to hoarder.
#[derive(Clone)]
pub struct BlobSource {
    pub(super) handle: p2p::Handle,
    pub(super) local: Option<hoarder::Local>,
    /// The folder puts are written to first.
    pub(super) spool: std::path::PathBuf,
}

impl BlobSource {
    /// Blobs read through `handle`, and from `local` first when the node runs hoarder; puts
    /// spooled in `spool`.
    pub fn new(
        handle: p2p::Handle,
        local: Option<hoarder::Local>,
        spool: std::path::PathBuf,
    ) -> Self {
        Self { handle, local, spool }
    }
}

/// An open blob: its manifest, where it is read from, how far, and the chunk read last.
pub struct OpenBlob {
    manifest: Manifest,
    /// `None`: this node's own store.
    peer: Option<PeerId>,
    position: u64,
    chunk: Option<(u32, Vec<u8>)>,
}

/// The host side of one invocation.
pub struct BlobsView<'a> {
    pub(super) source: Option<&'a BlobSource>,
    pub(super) table: &'a mut ResourceTable,
    pub(super) open: &'a mut usize,
    /// Bytes read so far.
    pub(super) read: &'a mut u64,
    /// The storages the function may open.
    pub(super) storages: &'a super::storage::Storages,
    /// Bytes put into storages so far.
    pub(super) written: &'a mut u64,
}

/// The [`HasData`] of the blob bindings.
pub struct HasBlobs;

impl HasData for HasBlobs {
    type Data<'a> = BlobsView<'a>;
}

/// Adds `tau:storage/blobs` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> BlobsView<'_>,
) -> wasmtime::Result<()> {
    blobs::add_to_linker::<T, HasBlobs>(linker, view)?;
    bindings::tau::storage::storage::add_to_linker::<T, HasBlobs>(linker, view)
}

impl BlobSource {
    /// The manifest of `cid` and who holds it (`None`: this node).
    async fn manifest(&self, cid: BlobId) -> Result<(Manifest, Option<PeerId>), Error> {
        if let Some(manifest) = self.local.as_ref().and_then(|l| l.manifest(&cid)) {
            return Ok((manifest, None));
        }
        // The nearest hoarder nodes first; one that does not hold the blob names the holders
        // it knows of, which are asked next.
        let nearest = self.handle.nodes("hoarder").await.unwrap_or_default();
        let mut queue: Vec<PeerId> = nearest.into_iter().take(MAX_ASKED).map(|n| n.peer).collect();
        queue.reverse();
        let mut asked: Vec<PeerId> = Vec::new();
        let mut last = None;
        while let Some(peer) = queue.pop() {
            if asked.contains(&peer) || asked.len() >= 2 * MAX_ASKED {
                continue;
            }
            asked.push(peer);
            let asked_one = crate::hoarder::ask_manifest(&self.handle, peer, cid);
            match tokio::time::timeout(ASK_TIMEOUT, asked_one).await {
                Ok(Ok(hoarder::ManifestAnswer::Found(manifest))) => {
                    return Ok((manifest, Some(peer)));
                }
                Ok(Ok(hoarder::ManifestAnswer::NotHeld(holders))) => {
                    queue.extend(holders.into_iter().filter(|h| !asked.contains(h)));
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(format!("{peer} did not answer in time")),
            }
        }
        Err(match last {
            Some(reason) => Error::Other(format!("cannot read {cid}: {reason}")),
            None => Error::NotFound,
        })
    }

    /// Chunk `index` of an open blob, checked.
    async fn chunk(&self, blob: &OpenBlob, index: u32) -> Result<Vec<u8>, Error> {
        let manifest = &blob.manifest;
        let Some(peer) = blob.peer else {
            return self.local.as_ref().and_then(|l| l.chunk(manifest, index)).ok_or_else(|| {
                Error::Other(format!("chunk {index} of {} is unreadable", manifest.cid))
            });
        };
        let request = HoarderRequest::Chunk { cid: manifest.cid, index, in_progress: false };
        let answer = tokio::time::timeout(ASK_TIMEOUT * 2, self.handle.ask(peer, request))
            .await
            .map_err(|_| Error::Other(format!("{peer} did not send chunk {index} in time")))?
            .map_err(|e| Error::Other(format!("chunk {index} from {peer}: {e}")))?;
        match answer {
            HoarderResponse::Chunk(data) => {
                manifest.verify_chunk(index, &data).map_err(|e| Error::Other(e.to_string()))?;
                Ok(data)
            }
            other => Err(Error::Other(format!("{peer} answered {other:?} for a chunk"))),
        }
    }
}

impl BlobsView<'_> {
    /// Opens the blob `cid` for the function (counted against [`MAX_OPEN`]).
    pub(super) async fn open_blob(
        &mut self,
        cid: BlobId,
    ) -> wasmtime::Result<Result<Resource<OpenBlob>, Error>> {
        let Some(source) = self.source else {
            return Ok(Err(Error::Other("this node cannot read blobs".into())));
        };
        if *self.open >= MAX_OPEN {
            return Ok(Err(Error::TooManyOpen));
        }
        let (manifest, peer) = match source.manifest(cid).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        *self.open += 1;
        let blob = OpenBlob { manifest, peer, position: 0, chunk: None };
        Ok(Ok(self.table.push(blob)?))
    }
}

impl blobs::Host for BlobsView<'_> {
    async fn open(&mut self, cid: String) -> wasmtime::Result<Result<Resource<OpenBlob>, Error>> {
        match cid.parse() {
            Ok(cid) => self.open_blob(cid).await,
            Err(e) => Ok(Err(Error::BadCid(format!("{e}")))),
        }
    }
}

impl blobs::HostBlob for BlobsView<'_> {
    async fn size(&mut self, blob: Resource<OpenBlob>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&blob)?.manifest.size)
    }

    async fn read(
        &mut self,
        blob: Resource<OpenBlob>,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        let Some(source) = self.source else {
            return Ok(Err(Error::Other("this node cannot read blobs".into())));
        };
        let open = self.table.get(&blob)?;
        let (size, position) = (open.manifest.size, open.position);
        if position >= size || len == 0 {
            return Ok(Ok(Vec::new()));
        }
        let index = (position / CHUNK_SIZE) as u32;
        let cached = open.chunk.as_ref().is_some_and(|(i, _)| *i == index);
        if !cached {
            let data = match source.chunk(open, index).await {
                Ok(data) => data,
                Err(e) => return Ok(Err(e)),
            };
            self.table.get_mut(&blob)?.chunk = Some((index, data));
        }
        let open = self.table.get_mut(&blob)?;
        let Some((_, data)) = &open.chunk else { return Ok(Ok(Vec::new())) };
        let offset = (position % CHUNK_SIZE) as usize;
        let take = (len.min(CHUNK_SIZE) as usize).min(data.len().saturating_sub(offset));
        let bytes = data[offset..offset + take].to_vec();
        open.position += take as u64;
        *self.read += take as u64;
        Ok(Ok(bytes))
    }

    async fn drop(&mut self, blob: Resource<OpenBlob>) -> wasmtime::Result<()> {
        self.table.delete(blob)?;
        *self.open = self.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_copies_of_the_storage_wit_are_protos() {
        assert_eq!(
            include_str!("../../wit/deps/storage/storage.wit"),
            include_str!("../../../proto/wit/storage.wit"),
            "copy proto/wit/storage.wit to node/wit/deps/storage/"
        );
        assert_eq!(
            include_str!("../../../examples/functions/gateway/wit/storage.wit"),
            include_str!("../../../proto/wit/storage.wit"),
            "copy proto/wit/storage.wit to examples/functions/gateway/wit/"
        );
    }
}

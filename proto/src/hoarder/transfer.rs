//! Moving blobs chunk by chunk, with a bounded number of chunks in flight (the back-pressure:
//! the next chunk is asked for only as earlier ones are written), so memory does not grow with
//! blob size. Used by light clients and by nodes alike, through [`Asker`].

use std::future::Future;
use std::path::Path;

use futures::{Stream, StreamExt, TryStreamExt};
use libp2p::PeerId;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::{BlobId, CHUNK_SIZE, HoarderRequest, HoarderResponse, Manifest, ManifestBuilder};

/// Chunks in flight at once, each way.
pub const WINDOW: usize = 8;

/// Something that can send a hoarder request to a peer: the light client, or a node's p2p handle.
pub trait Asker: Send + Sync {
    /// Why a request got no answer, or an error answer.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends `request` to `peer` and returns the answer (an error answer as `Err`).
    fn ask(
        &self,
        peer: PeerId,
        request: HoarderRequest,
    ) -> impl Future<Output = Result<HoarderResponse, Self::Error>> + Send;
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum TransferError {
    /// A peer failed or refused.
    #[error("{peer}: {reason}")]
    Peer {
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// A peer sent data that does not match its hash.
    #[error("{peer} sent bad data: {reason}")]
    BadData {
        peer: PeerId,
        /// What did not match.
        reason: String,
    },
    /// The local file failed.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// No node holds the blob.
    #[error("no node holds {0}")]
    NotFound(BlobId),
}

fn peer_err<E: std::fmt::Display>(peer: PeerId) -> impl Fn(E) -> TransferError {
    move |reason| TransferError::Peer { peer, reason: reason.to_string() }
}

/// Reads a file once to build its manifest.
pub async fn manifest_of(path: &Path) -> Result<Manifest, TransferError> {
    let io = |source| TransferError::Io { path: path.display().to_string(), source };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut builder = ManifestBuilder::default();
    let mut buffer = vec![0u8; CHUNK_SIZE as usize];
    loop {
        let n = file.read(&mut buffer).await.map_err(io)?;
        if n == 0 {
            return Ok(builder.finish());
        }
        builder.update(&buffer[..n]);
    }
}

/// Uploads the file at `path` (whose manifest is `manifest`) to `peer` and asks it to pin the
/// blob at `replicas`; returns the nodes that hold it when the node answers. `progress` is
/// called with each chunk's length once the node has it.
pub async fn upload<A: Asker>(
    asker: &A,
    peer: PeerId,
    path: &Path,
    manifest: &Manifest,
    replicas: u8,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<PeerId>, TransferError> {
    upload_for(asker, peer, path, manifest, replicas, None, progress).await
}

/// [`upload`], the pin set for `storage`'s index (a node's upload, [`crate::storage`]) when
/// one is given.
pub async fn upload_for<A: Asker>(
    asker: &A,
    peer: PeerId,
    path: &Path,
    manifest: &Manifest,
    replicas: u8,
    storage: Option<crate::database::StoreId>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<PeerId>, TransferError> {
    let io = |source| TransferError::Io { path: path.display().to_string(), source };
    let cid = manifest.cid;
    match asker
        .ask(peer, HoarderRequest::PutStart { manifest: manifest.clone(), replicas })
        .await
        .map_err(peer_err(peer))?
    {
        HoarderResponse::Ready => {
            let file = tokio::sync::Mutex::new(tokio::fs::File::open(path).await.map_err(io)?);
            let count = manifest.chunks.len() as u32;
            futures::stream::iter(0..count)
                .map(|index| {
                    let file = &file;
                    async move {
                        let len = manifest
                            .chunk_len(index)
                            .map_err(|e| TransferError::Peer { peer, reason: e.to_string() })?;
                        let mut data = vec![0u8; len as usize];
                        {
                            let mut file = file.lock().await;
                            file.seek(std::io::SeekFrom::Start(u64::from(index) * CHUNK_SIZE))
                                .await
                                .map_err(io)?;
                            file.read_exact(&mut data).await.map_err(io)?;
                        }
                        match asker
                            .ask(peer, HoarderRequest::PutChunk { cid, index, data })
                            .await
                            .map_err(peer_err(peer))?
                        {
                            HoarderResponse::Done => {
                                progress(len);
                                Ok(())
                            }
                            other => Err(TransferError::Peer {
                                peer,
                                reason: format!("unexpected answer {other:?}"),
                            }),
                        }
                    }
                })
                .buffer_unordered(WINDOW)
                .try_collect::<Vec<()>>()
                .await?;
        }
        HoarderResponse::Exists => {}
        other => {
            return Err(TransferError::Peer {
                peer,
                reason: format!("unexpected answer {other:?}"),
            });
        }
    }
    match asker
        .ask(peer, HoarderRequest::PutFinish { cid, replicas, storage })
        .await
        .map_err(peer_err(peer))?
    {
        HoarderResponse::Stored { holders } => Ok(holders),
        other => Err(TransferError::Peer { peer, reason: format!("unexpected answer {other:?}") }),
    }
}

/// The manifest of `cid` from `peer`, checked to be `cid`'s. With `in_progress`, a peer still
/// receiving the blob answers too.
pub async fn fetch_manifest<A: Asker>(
    asker: &A,
    peer: PeerId,
    cid: BlobId,
    in_progress: bool,
) -> Result<Manifest, TransferError> {
    match asker
        .ask(peer, HoarderRequest::Manifest { cid, in_progress })
        .await
        .map_err(peer_err(peer))?
    {
        HoarderResponse::Manifest(manifest) => {
            if manifest.cid != cid {
                return Err(TransferError::BadData {
                    peer,
                    reason: format!("asked for {cid}, got {}", manifest.cid),
                });
            }
            manifest.check().map_err(|e| TransferError::BadData { peer, reason: e.to_string() })?;
            Ok(manifest)
        }
        HoarderResponse::NotFound { .. } => Err(TransferError::NotFound(cid)),
        other => Err(TransferError::Peer { peer, reason: format!("unexpected answer {other:?}") }),
    }
}

/// The chunks `wanted` of `manifest` from `peer`, in order, each checked against its hash. At
/// most [`WINDOW`] chunks are in flight; the next is asked for only as the consumer takes one.
/// With `in_progress`, a peer still receiving the blob waits for each chunk.
pub fn chunks<'a, A: Asker>(
    asker: &'a A,
    peer: PeerId,
    manifest: &'a Manifest,
    wanted: Vec<u32>,
    in_progress: bool,
) -> impl Stream<Item = Result<(u32, Vec<u8>), TransferError>> + 'a {
    let cid = manifest.cid;
    futures::stream::iter(wanted)
        .map(move |index| async move {
            match asker
                .ask(peer, HoarderRequest::Chunk { cid, index, in_progress })
                .await
                .map_err(peer_err(peer))?
            {
                HoarderResponse::Chunk(data) => {
                    manifest
                        .verify_chunk(index, &data)
                        .map_err(|e| TransferError::BadData { peer, reason: e.to_string() })?;
                    Ok((index, data))
                }
                other => Err(TransferError::Peer {
                    peer,
                    reason: format!("unexpected answer {other:?}"),
                }),
            }
        })
        .buffered(WINDOW)
}

/// Downloads `cid` from `peer` into `out`, checking every chunk and the whole blob; returns the
/// blob's size.
pub async fn download<A: Asker, W: AsyncWrite + Unpin>(
    asker: &A,
    peer: PeerId,
    cid: BlobId,
    out: &mut W,
) -> Result<u64, TransferError> {
    let manifest = fetch_manifest(asker, peer, cid, false).await?;
    download_chunks(asker, peer, cid, &manifest, out).await
}

/// [`download`] with `cid`'s manifest already fetched from `peer`.
pub async fn download_chunks<A: Asker, W: AsyncWrite + Unpin>(
    asker: &A,
    peer: PeerId,
    cid: BlobId,
    manifest: &Manifest,
    out: &mut W,
) -> Result<u64, TransferError> {
    let out_err = |source| TransferError::Io { path: "the output".into(), source };
    let mut whole = blake3::Hasher::new();
    let wanted = (0..manifest.chunks.len() as u32).collect();
    let mut stream = std::pin::pin!(chunks(asker, peer, manifest, wanted, false));
    while let Some(chunk) = stream.next().await {
        let (_, data) = chunk?;
        whole.update(&data);
        out.write_all(&data).await.map_err(out_err)?;
    }
    out.flush().await.map_err(out_err)?;
    if BlobId::from_blake3(whole.finalize().as_bytes()) != cid {
        return Err(TransferError::BadData {
            peer,
            reason: format!("the blob does not hash to {cid}"),
        });
    }
    Ok(manifest.size)
}

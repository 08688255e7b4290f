//! Answers `/tau/vault/1` requests, each in its own task.

use std::collections::HashSet;
use std::sync::Arc;

use libp2p::PeerId;
use tau_proto::cbor;
use tau_proto::client::secrets::unix_now;
use tau_proto::git::{self, Grants, Right};
use tau_proto::identity::WriterKey;
use tau_proto::membership::Admitted;
use tau_proto::tns::values::ProjectRoot;
use tau_proto::tns::{Draft, Record, keys};
use tau_proto::vault::{
    CheckedCiphertext, MAX_REQUEST_AGE, NONCE_LEN, Registration, SecretValue, ShareInfo,
    SignedRequest, VaultError, VaultRequest, VaultResponse, ciphertext_id_unchecked, seal_share,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::bindings::Bound;
use crate::db::DbError;
use crate::p2p::Inbound;
use crate::tns::RegistryError;

/// The most secrets one registration may carry.
const MAX_REGISTRATION_SECRETS: usize = 16;

pub(super) async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<Inbound<VaultRequest, VaultResponse>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(inbound) = requests.recv() => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let response = match answer(&shared, inbound.peer, inbound.request).await {
                        Ok(response) => response,
                        Err(refusal) => VaultResponse::Error(refusal.to_string()),
                    };
                    let _ = inbound.reply.send(response);
                });
            }
            else => break,
        }
    }
    tracing::debug!("vault service stopped");
}

async fn answer(
    shared: &Shared,
    peer: PeerId,
    request: VaultRequest,
) -> Result<VaultResponse, Refusal> {
    match request {
        VaultRequest::Store { record } => store(shared, peer, record).await,
        VaultRequest::Decrypt { request } => {
            let answer = decrypt(shared, peer, request).await;
            if answer.is_ok() {
                shared.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            answer
        }
        VaultRequest::Shares => Ok(VaultResponse::Shares(ShareInfo {
            keyset: shared.keyset.id.clone(),
            index: shared.share.index,
            threshold: shared.keyset.threshold,
            shares: shared.keyset.shares,
            secrets: shared.bindings.count()?,
        })),
        VaultRequest::Register(registration) => register(shared, peer, *registration).await,
        _ => Err(invalid("unsupported vault request")),
    }
}

/// The owner of `project`, from TNS.
async fn owner(shared: &Shared, project: &str) -> Result<WriterKey, Refusal> {
    let record = shared
        .registry
        .get(&keys::project(project))
        .await
        .map_err(registry(format!("cannot read project `{project}` from tns")))?
        .ok_or_else(|| invalid(format!("project `{project}` does not exist")))?;
    record
        .value
        .as_deref()
        .and_then(|v| cbor::from_slice::<ProjectRoot>(v).ok())
        .map(|root| root.owner)
        .ok_or_else(|| invalid(format!("project `{project}` has no readable owner")))
}

/// Checks a secret record's key, signature, writer and ciphertext; returns the checked
/// ciphertext.
fn check_secret(
    shared: &Shared,
    record: &Record,
    owner: &WriterKey,
    project: &str,
) -> Result<CheckedCiphertext, Refusal> {
    let Some((in_project, _)) = keys::parse_secret(&record.key) else {
        return Err(invalid(format!(
            "`{}` is not a secret key (/projects/<id>/secrets/<name>)",
            record.key
        )));
    };
    if in_project != project || record.scope != project {
        return Err(invalid(format!("{} does not belong to project `{project}`", record.key)));
    }
    if !record.verify() {
        return Err(invalid(format!("{}: bad signature", record.key)));
    }
    if record.writer != *owner {
        return Err(invalid(format!(
            "{}: only the owner of project `{project}` may write it",
            record.key
        )));
    }
    let value: SecretValue = record
        .value
        .as_deref()
        .and_then(|v| cbor::from_slice(v).ok())
        .ok_or_else(|| invalid(format!("{}: not an encrypted secret", record.key)))?;
    if value.keyset != shared.keyset.id {
        return Err(invalid(format!(
            "{}: encrypted to key set {}, this vault uses {}",
            record.key, value.keyset, shared.keyset.id
        )));
    }
    CheckedCiphertext::parse(&value.ciphertext).map_err(|e| invalid(format!("{}: {e}", record.key)))
}

/// Why a vault request was refused: the text is what the caller reads, and never holds a
/// secret.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    /// The request is not acceptable, for the reason given.
    #[error("{0}")]
    Invalid(String),
    /// The ciphertext belongs to another secret.
    #[error("this ciphertext is already stored as {0}: encrypt the value anew for each secret")]
    Elsewhere(String),
    /// TNS could not be read or written.
    #[error("{what}: {source}")]
    Registry {
        /// What the node was doing.
        what: String,
        /// Why it failed.
        source: Box<RegistryError>,
    },
    /// This node's bindings database failed.
    #[error(transparent)]
    Bindings(#[from] DbError),
    /// The share could not decrypt.
    #[error(transparent)]
    Crypto(#[from] VaultError),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

fn registry(what: impl Into<String>) -> impl FnOnce(RegistryError) -> Refusal {
    let what = what.into();
    move |source| Refusal::Registry { what, source: Box::new(source) }
}

/// Binds the ciphertexts to their keys, or says which other secret one belongs to. A ciphertext
/// this node has not seen yet is first looked for in TNS under every other secret key: a node
/// that was down when a secret was stored must not take a copy of it for a new one.
async fn bind(shared: &Shared, pairs: &[([u8; 32], &str)]) -> Result<(), Refusal> {
    let mut unseen = Vec::new();
    for (id, key) in pairs {
        match shared.bindings.lookup(id)? {
            Some(bound) if bound == *key => {}
            Some(bound) => return Err(Refusal::Elsewhere(bound)),
            None => unseen.push((id, *key)),
        }
    }
    if !unseen.is_empty() {
        let records = shared
            .registry
            .list("/projects/")
            .await
            .map_err(registry("cannot read the project secrets from tns"))?;
        for record in records.iter().filter(|r| keys::parse_secret(&r.key).is_some()) {
            let Some(id) = record
                .value
                .as_deref()
                .and_then(|v| cbor::from_slice::<SecretValue>(v).ok())
                .and_then(|v| ciphertext_id_unchecked(&v.ciphertext))
            else {
                continue;
            };
            if let Some((_, key)) = unseen.iter().find(|(unseen, _)| **unseen == id)
                && record.key != *key
            {
                tracing::warn!(secret = key, stored = record.key, "refused a copied ciphertext");
                return Err(Refusal::Elsewhere(record.key.clone()));
            }
        }
    }
    match shared.bindings.bind(pairs)? {
        Bound::Ok => Ok(()),
        Bound::Elsewhere(other) => Err(Refusal::Elsewhere(other)),
    }
}

async fn store(shared: &Shared, peer: PeerId, record: Record) -> Result<VaultResponse, Refusal> {
    let (project, name) = keys::parse_secret(&record.key)
        .map(|(p, n)| (p.to_string(), n.to_string()))
        .ok_or_else(|| invalid(format!("`{}` is not a secret key", record.key)))?;
    if record.is_tombstone() {
        return Err(invalid("delete a secret through tns, not the vault"));
    }
    let owner = owner(shared, &project).await?;
    let ciphertext = check_secret(shared, &record, &owner, &project)?;
    bind(shared, &[(ciphertext.id(), record.key.as_str())]).await?;
    let key = record.key.clone();
    let outcome = shared
        .registry
        .put(vec![record])
        .await
        .map_err(registry("cannot store the secret in tns"))?;
    if let Some((key, why)) = outcome.rejected.first() {
        return Err(invalid(format!("tns refused {key}: {why}")));
    }
    tracing::info!(%peer, project, name, "secret checked and stored");
    Ok(VaultResponse::Stored { key })
}

async fn decrypt(
    shared: &Shared,
    peer: PeerId,
    request: SignedRequest,
) -> Result<VaultResponse, Refusal> {
    let body = &request.body;
    if body.action != "decrypt" || !keys::is_name(&body.project) || !keys::is_name(&body.name) {
        return Err(invalid("not a decrypt request for a project's secret"));
    }
    let me = shared.keypair.public().to_peer_id().to_string();
    if body.node != me {
        tracing::warn!(%peer, project = body.project, for_node = body.node, "refused a decrypt request for another node");
        return Err(invalid(format!(
            "this request is for vault node `{}`, not this one ({me}): sign one request per node",
            tau_proto::text::printable(&body.node)
        )));
    }
    if body.nonce.len() != NONCE_LEN {
        return Err(invalid(format!("a decrypt request needs a {NONCE_LEN}-byte nonce")));
    }
    let owner = owner(shared, &body.project).await?;
    let now = unix_now();
    let reader = match request.signer == owner {
        true => "owner",
        false => {
            granted_reader(shared, peer, &request, &owner).await.inspect_err(|e| {
                tracing::warn!(%peer, project = body.project, name = body.name, "refused a decrypt request: {e}");
            })?;
            "granted node"
        }
    };
    if let Err(e) = request.verify(&request.signer, now) {
        tracing::warn!(%peer, project = body.project, "refused a decrypt request: {e}");
        return Err(invalid(format!(
            "refused: {e}; only the owner of project `{}` may read its secrets",
            body.project
        )));
    }
    // Remembered past the request's lifetime, allowing for a clock ahead by the same slack
    // `verify` allows.
    let expires = body.at.saturating_add(MAX_REQUEST_AGE + 60);
    let taken = shared.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(
        &body.nonce,
        expires,
        now,
    );
    if let Err(e) = taken {
        tracing::warn!(%peer, project = body.project, "refused a decrypt request: {e}");
        return Err(invalid(e.to_string()));
    }
    let key = keys::secret(&body.project, &body.name);
    let record = shared
        .registry
        .get(&key)
        .await
        .map_err(registry(format!("cannot read {key} from tns")))?
        .ok_or_else(|| {
            invalid(format!("project `{}` has no secret `{}`", body.project, body.name))
        })?;
    let ciphertext = check_secret(shared, &record, &owner, &body.project)?;
    bind(shared, &[(ciphertext.id(), key.as_str())]).await?;
    let share = shared.share.decryption_share(&ciphertext)?;
    let sealed = seal_share(&share, body)?;
    tracing::info!(%peer, project = body.project, name = body.name, reader, "decryption share given, sealed");
    Ok(VaultResponse::Share { keyset: shared.keyset.id.clone(), index: shared.share.index, sealed })
}

/// Checks a decrypt request signed by someone other than the project's owner: it must come from
/// the node that signed it, over its own connection; the operator must have admitted that node
/// for a role the owner's grant (`/projects/<id>/grants`, signed by the owner) gives
/// [`Right::Secrets`]; and the secret must be one that right covers (a repository's deploy key
/// or webhook secret). Without an operator key no node is admitted for a role, so nobody is.
async fn granted_reader(
    shared: &Shared,
    peer: PeerId,
    request: &SignedRequest,
    owner: &WriterKey,
) -> Result<(), Refusal> {
    let body = &request.body;
    let refused = |why: String| {
        invalid(format!(
            "only the owner of project `{}` may read secret `{}`: {why}",
            body.project, body.name
        ))
    };
    if !git::granted_secret(&body.name) {
        return Err(refused("no grant covers it".into()));
    }
    if WriterKey::of_peer(&peer).as_ref() != Some(&request.signer) {
        return Err(refused("the request was not signed by the node that sent it".into()));
    }
    let roles = match &*shared.admitted.borrow() {
        Admitted::Listed(nodes) => nodes.get(&peer).cloned().unwrap_or_default(),
        Admitted::Open => Vec::new(),
    };
    if roles.is_empty() {
        return Err(refused(format!("{peer} is not a node the operator admitted")));
    }
    let key = git::grants_key(&body.project);
    let grants = shared
        .registry
        .get(&key)
        .await
        .map_err(registry(format!("cannot read {key} from tns")))?
        .filter(|record| record.writer == *owner && record.verify())
        .and_then(|record| cbor::from_slice::<Grants>(record.value.as_deref()?).ok());
    match grants {
        Some(grants) if grants.allows(&roles, Right::Secrets) => Ok(()),
        _ => Err(refused(format!(
            "the owner granted none of {peer}'s roles ({}) its secrets",
            roles.join(", ")
        ))),
    }
}

async fn register(
    shared: &Shared,
    peer: PeerId,
    registration: Registration,
) -> Result<VaultResponse, Refusal> {
    let Registration { request, secrets } = registration;
    let project = request.body.project.clone();
    if request.body.action != "register"
        || !request.body.name.is_empty()
        || !keys::is_name(&project)
    {
        return Err(invalid("not a registration of a project"));
    }
    let owner = request.signer;
    if let Err(e) = request.verify(&owner, unix_now()) {
        tracing::warn!(%peer, project, "refused a registration: {e}");
        return Err(invalid(format!("refused: {e}")));
    }
    if secrets.len() > MAX_REGISTRATION_SECRETS {
        return Err(invalid(format!(
            "at most {MAX_REGISTRATION_SECRETS} secrets per registration"
        )));
    }
    let mut names = HashSet::new();
    let mut ids = Vec::with_capacity(secrets.len());
    for record in &secrets {
        let ciphertext = check_secret(shared, record, &owner, &project).inspect_err(|e| {
            tracing::warn!(%peer, project, "refused a registration: {e}");
        })?;
        if !names.insert(record.key.as_str()) {
            return Err(invalid(format!("{} is given twice", record.key)));
        }
        ids.push((ciphertext.id(), record.key.as_str()));
    }
    let existing = shared
        .registry
        .get(&keys::project(&project))
        .await
        .map_err(registry(format!("cannot read project `{project}` from tns")))?;
    if existing.is_some() {
        return Err(invalid(format!("project `{project}` already exists")));
    }
    bind(shared, &ids).await?;
    let version = shared
        .registry
        .clock()
        .await
        .map_err(registry("cannot read the tns clock"))?
        .saturating_add(1);
    let value = cbor::to_vec(&ProjectRoot { owner }).map_err(|e| invalid(e.to_string()))?;
    let root = Draft { key: keys::project(&project), scope: project.clone(), value: Some(value) }
        .sign(version, &shared.keypair)
        .ok_or_else(|| invalid("this node's key cannot sign records"))?;
    let written: Vec<String> =
        std::iter::once(root.key.clone()).chain(secrets.iter().map(|r| r.key.clone())).collect();
    let outcome = shared
        .registry
        .put(std::iter::once(root).chain(secrets).collect())
        .await
        .map_err(registry("cannot write the project to tns"))?;
    if !outcome.rejected.is_empty() {
        let lines: Vec<String> =
            outcome.rejected.iter().map(|(key, why)| format!("{key}: {why}")).collect();
        return Err(invalid(format!(
            "tns refused the registration (is this node a registrar? the operator names it with \
             `tau-node vault publish --registrar {}`): {}",
            shared.keypair.public().to_peer_id(),
            lines.join("; ")
        )));
    }
    tracing::info!(%peer, project, %owner, "project registered");
    Ok(VaultResponse::Registered { project, written })
}

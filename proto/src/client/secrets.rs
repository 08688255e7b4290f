//! Secrets through the vault, as a project's owner uses them: store, read, register a project,
//! and inspect the vault nodes' shares.
//!
//! Reading asks every vault node at once and combines as soon as `t + 1` shares have come back
//! and passed their checks, so a slow or dead node costs nothing while enough others answer.
//! No error or report here ever holds a plaintext, a share or a key.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::registry::OperatorWriteError;
use super::{Client, ClientError};
use crate::cbor;
use crate::identity::WriterKey;
use crate::tns::values::{ProjectRoot, Registrar};
use crate::tns::{Record, TnsProtocol, TnsRequest, TnsResponse, keys};
use crate::vault::{
    self, CheckedCiphertext, KeySet, Registration, ReplyKey, RequestBody, SecretValue, ShareInfo,
    VaultError, VaultProtocol, VaultRequest, VaultResponse,
};

/// The vault's state as [`Client::vault_report`] finds it. Holds no share and no secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VaultReport {
    /// The key set published in TNS (`/vault/keyset`), if any.
    pub keyset: Option<String>,
    /// How many distinct shares reading a secret takes (`t + 1`), when a key set is published.
    pub needed: Option<usize>,
    /// How many distinct shares of that key set answered.
    pub reachable: usize,
    /// Whether secrets can be read right now.
    pub readable: bool,
    /// Every vault node.
    pub nodes: Vec<NodeShare>,
}

/// One vault node's answer: its share's public facts, or why it did not answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeShare {
    /// The node's peer id.
    pub node: String,
    /// Its share index, key set, threshold, secrets bound.
    #[serde(flatten)]
    pub info: Option<ShareInfo>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Why a secret operation failed. Names nodes, projects and secrets; never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum SecretError {
    /// Talking to the cloud failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No node runs the service.
    #[error("no {0} node is reachable in this cloud")]
    NoNode(&'static str),
    /// `/vault/keyset` is missing or unreadable.
    #[error(
        "the cloud has no usable vault key set in TNS ({key}): {reason}; the operator publishes it with `tau-node vault publish`"
    )]
    NoKeySet {
        /// `/vault/keyset`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The project does not exist.
    #[error("project `{0}` does not exist in this cloud")]
    NoProject(String),
    /// The project exists already (registration).
    #[error("project `{project}` already exists, owned by {owner}")]
    ProjectExists { project: String, owner: WriterKey },
    /// The key is not the project's owner.
    #[error("project `{project}` is owned by {owner}, not by {key}")]
    NotOwner { project: String, owner: WriterKey, key: WriterKey },
    /// The secret does not exist.
    #[error("project `{project}` has no secret `{name}`")]
    NoSecret {
        project: String,
        /// The secret's name.
        name: String,
    },
    /// A name is not 1-63 of a-z, 0-9 and -.
    #[error("`{0}` is not a valid name: 1-63 of a-z, 0-9 and -, not starting or ending with -")]
    BadName(String),
    /// A vault operation failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Every vault node refused or failed.
    #[error("no vault node accepted the request:\n  {}", .failures.join("\n  "))]
    Refused {
        /// One line per node.
        failures: Vec<String>,
    },
    /// Too few good decryption shares.
    #[error(
        "{good} good decryption shares, {needed} needed: {asked} of the key set's {shares} vault nodes are reachable{}",
        .failures.iter().map(|f| format!("\n  {f}")).collect::<String>()
    )]
    NotEnoughShares {
        /// Good shares.
        good: usize,
        /// `t + 1`.
        needed: usize,
        /// Vault nodes asked.
        asked: usize,
        /// `n`: the key set's shares.
        shares: u32,
        /// One line per node that failed or lied.
        failures: Vec<String>,
    },
}

/// A secret put together from the vault nodes' shares.
pub struct Revealed {
    /// Exactly as stored; never log it.
    pub plaintext: Vec<u8>,
    /// Nodes whose shares were bad or that failed, named (the read still succeeded).
    pub failures: Vec<String>,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Revealed({} bytes, failures {:?})", self.plaintext.len(), self.failures)
    }
}

/// What storing a secret did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    /// The TNS key.
    pub key: String,
    /// The key set it is encrypted to.
    pub keyset: String,
    /// The vault nodes that checked and stored it.
    pub nodes: Vec<PeerId>,
    /// The nodes that failed, with why.
    pub failures: Vec<String>,
}

/// What a registration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    /// The id just registered.
    pub project: String,
    /// The vault node that checked and wrote it.
    pub node: PeerId,
    /// The TNS keys written.
    pub written: Vec<String>,
}

/// The seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn check_name(name: &str) -> Result<(), SecretError> {
    if keys::is_name(name) { Ok(()) } else { Err(SecretError::BadName(name.to_string())) }
}

impl Client {
    /// The nodes that run each service, as the entry node knows them (itself and its
    /// directory: every node admitted for a service, connected to it or not); those that answer
    /// now first (see [`Client::nodes_running`]).
    pub async fn services(&self) -> Result<HashMap<String, Vec<PeerId>>, ClientError> {
        let mut map: HashMap<String, Vec<PeerId>> = HashMap::new();
        for service in crate::node_config::SERVICES {
            let nodes = self.nodes_running_unprobed(service).await?;
            if !nodes.is_empty() {
                map.insert(service.to_string(), nodes);
            }
        }
        let mut everyone: Vec<PeerId> = map.values().flatten().copied().collect();
        everyone.sort();
        everyone.dedup();
        let answering = self.answering(&everyone).await;
        for nodes in map.values_mut() {
            nodes.sort_by_key(|peer| !answering.contains(peer));
        }
        Ok(map)
    }

    /// The records at `keys` (live ones, correctly signed), from a tns node.
    async fn tns_get(&self, node: PeerId, keys: Vec<String>) -> Result<Vec<Record>, SecretError> {
        match self.call::<TnsProtocol>(node, TnsRequest::Get { keys }).await? {
            TnsResponse::Records(records) => {
                Ok(records.into_iter().filter(|r| !r.is_tombstone() && r.verify()).collect())
            }
            _ => Err(ClientError::Unexpected { peer: node }.into()),
        }
    }

    /// [`Client::tns_get`] from the first of `nodes` that answers: a tns node that is leaving
    /// (stopped while asked) does not fail the read. A refusal is final.
    async fn tns_get_any(
        &self,
        nodes: &[PeerId],
        keys: Vec<String>,
    ) -> Result<Vec<Record>, SecretError> {
        let mut last = SecretError::NoNode("tns");
        for node in nodes {
            match self.tns_get(*node, keys.clone()).await {
                Ok(records) => return Ok(records),
                Err(SecretError::Client(e @ ClientError::Remote { .. })) => return Err(e.into()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The vault's key set, as the operator published it in TNS.
    pub async fn vault_keyset(&self, tns: PeerId) -> Result<KeySet, SecretError> {
        let records = self.tns_get(tns, vec![keys::VAULT_KEYSET.into()]).await?;
        keyset_of(&records)
    }

    /// Every tns node and every vault node.
    async fn tns_and_vaults(&self) -> Result<(Vec<PeerId>, Vec<PeerId>), SecretError> {
        let services = self.services().await?;
        let tns = services.get("tns").cloned().unwrap_or_default();
        if tns.is_empty() {
            return Err(SecretError::NoNode("tns"));
        }
        match services.get("vault") {
            Some(vaults) if !vaults.is_empty() => Ok((tns, vaults.clone())),
            _ => Err(SecretError::NoNode("vault")),
        }
    }

    /// Encrypts `plaintext` to the vault's key set and stores it as secret `name` of `project`,
    /// signed by its owner; every reachable vault node checks it.
    pub async fn put_secret(
        &self,
        project: &str,
        name: &str,
        plaintext: &[u8],
        owner: &Keypair,
    ) -> Result<Stored, SecretError> {
        check_name(project)?;
        check_name(name)?;
        let (tns_nodes, vaults) = self.tns_and_vaults().await?;
        let tns = tns_nodes[0];
        let records =
            self.tns_get(tns, vec![keys::project(project), keys::VAULT_KEYSET.into()]).await?;
        check_owner(&records, project, owner)?;
        let keyset = keyset_of(&records)?;
        let version = self.tns_clock(tns).await?.saturating_add(1);
        let record = vault::secret_record(&keyset, project, name, plaintext, version, owner)?;
        let key = record.key.clone();
        let mut asks: FuturesUnordered<_> = vaults
            .iter()
            .map(|node| {
                let record = record.clone();
                async move {
                    (*node, self.call::<VaultProtocol>(*node, VaultRequest::Store { record }).await)
                }
            })
            .collect();
        let mut stored = Stored { key, keyset: keyset.id, nodes: Vec::new(), failures: Vec::new() };
        while let Some((node, answer)) = asks.next().await {
            match answer {
                Ok(VaultResponse::Stored { .. }) => stored.nodes.push(node),
                Ok(_) => stored.failures.push(format!("{node}: unexpected answer")),
                Err(e) => stored.failures.push(e.to_string()),
            }
        }
        if stored.nodes.is_empty() {
            return Err(SecretError::Refused { failures: stored.failures });
        }
        Ok(stored)
    }

    /// Reads secret `name` of `project` as its owner: asks every vault node for its decryption
    /// share (one signed request per node, each with its own nonce, every share sealed to a
    /// one-time key made here), opens and checks each, and combines `t + 1` good ones.
    pub async fn get_secret(
        &self,
        project: &str,
        name: &str,
        owner: &Keypair,
    ) -> Result<Revealed, SecretError> {
        check_name(project)?;
        check_name(name)?;
        let (tns_nodes, vaults) = self.tns_and_vaults().await?;
        let key = keys::secret(project, name);
        let records =
            self.tns_get_any(&tns_nodes, vec![key.clone(), keys::VAULT_KEYSET.into()]).await?;
        let keyset = keyset_of(&records)?;
        let secret =
            records.iter().find(|r| r.key == key).and_then(|r| r.value.as_deref()).ok_or_else(
                || SecretError::NoSecret { project: project.to_string(), name: name.to_string() },
            )?;
        reveal(&keyset, secret, project, name, owner, &vaults, |node, request| async move {
            self.call::<VaultProtocol>(node, VaultRequest::Decrypt { request })
                .await
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Sends a registration to the vault nodes in turn until one answers (a refusal is final).
    pub async fn register(&self, registration: Registration) -> Result<Registered, SecretError> {
        let services = self.services().await?;
        let vaults = services.get("vault").cloned().unwrap_or_default();
        let mut failures = Vec::new();
        for node in vaults {
            let request = VaultRequest::Register(Box::new(registration.clone()));
            match self.call::<VaultProtocol>(node, request).await {
                Ok(VaultResponse::Registered { project, written }) => {
                    return Ok(Registered { project, node, written });
                }
                Ok(_) => failures.push(format!("{node}: unexpected answer")),
                Err(e @ ClientError::Remote { .. }) => return Err(e.into()),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            return Err(SecretError::NoNode("vault"));
        }
        Err(SecretError::Refused { failures })
    }

    /// Creates `project` owned by `owner` through a vault node, with `secrets` encrypted to the
    /// vault's key set.
    pub async fn register_project(
        &self,
        project: &str,
        owner: &Keypair,
        secrets: &[(&str, &[u8])],
    ) -> Result<Registered, SecretError> {
        check_name(project)?;
        for (name, _) in secrets {
            check_name(name)?;
        }
        let services = self.services().await?;
        let tns = first(&services, "tns")?;
        let records =
            self.tns_get(tns, vec![keys::project(project), keys::VAULT_KEYSET.into()]).await?;
        if let Some(owner) = records.iter().find(|r| r.key == keys::project(project)).and_then(root)
        {
            return Err(SecretError::ProjectExists { project: project.to_string(), owner });
        }
        let keyset = keyset_of(&records)?;
        let version = self.tns_clock(tns).await?.saturating_add(1);
        let registration =
            Registration::new(&keyset, project, owner, secrets, version, unix_now())?;
        self.register(registration).await
    }

    /// Every vault node's share information (never a share).
    pub async fn vault_shares(
        &self,
    ) -> Result<Vec<(PeerId, Result<ShareInfo, ClientError>)>, SecretError> {
        let services = self.services().await?;
        let vaults = services.get("vault").cloned().unwrap_or_default();
        let answers = futures::future::join_all(vaults.iter().map(|node| async move {
            let answer = match self.call::<VaultProtocol>(*node, VaultRequest::Shares).await {
                Ok(VaultResponse::Shares(info)) => Ok(info),
                Ok(_) => Err(ClientError::Unexpected { peer: *node }),
                Err(e) => Err(e),
            };
            (*node, answer)
        }))
        .await;
        Ok(answers)
    }

    /// The vault as an operator checks it: each vault node's share (or why it did not answer),
    /// the key set published in TNS, and whether enough distinct shares of it are reachable
    /// right now to read a secret.
    pub async fn vault_report(&self) -> Result<VaultReport, SecretError> {
        let answers = self.vault_shares().await?;
        let keyset = match self.nodes_running("tns").await?.first() {
            Some(tns) => self.vault_keyset(*tns).await.ok(),
            None => None,
        };
        let nodes: Vec<NodeShare> = answers
            .into_iter()
            .map(|(node, answer)| {
                let (info, error) = match answer {
                    Ok(info) => (Some(info), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                NodeShare { node: node.to_string(), info, error }
            })
            .collect();
        let reachable = nodes
            .iter()
            .filter_map(|n| n.info.as_ref())
            .filter(|i| keyset.as_ref().is_none_or(|k| k.id == i.keyset))
            .map(|i| i.index)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let needed = keyset.as_ref().map(|k| k.threshold as usize + 1);
        Ok(VaultReport {
            keyset: keyset.map(|k| k.id),
            needed,
            reachable,
            readable: needed.is_some_and(|n| reachable >= n),
            nodes,
        })
    }

    /// Publishes the vault's public key set at `/vault/keyset` and names each of `registrars`
    /// (vault nodes) under `/registrars/<peer id>`, signed by the operator key. Writes only what
    /// differs from what TNS holds; returns the keys written.
    pub async fn publish_vault(
        &self,
        keyset: &KeySet,
        registrars: &[PeerId],
        operator: &Keypair,
    ) -> Result<Vec<String>, SecretError> {
        let services = self.services().await?;
        let tns = first(&services, "tns")?;
        let mut wanted = vec![(keys::VAULT_KEYSET.to_string(), Some(cbor_of(keyset)?))];
        for peer in registrars {
            let key = WriterKey::of_peer(peer).ok_or_else(|| SecretError::Refused {
                failures: vec![format!("{peer}: not an ed25519 peer id, cannot be a registrar")],
            })?;
            wanted.push((keys::registrar(&peer.to_string()), Some(cbor_of(&Registrar { key })?)));
        }
        self.put_operator_records(tns, wanted, operator).await.map_err(|e| match e {
            OperatorWriteError::Client(e) => SecretError::Client(e),
            OperatorWriteError::OperatorKey => {
                VaultError::Malformed { what: "the operator key (not ed25519)" }.into()
            }
            OperatorWriteError::Refused(failures) => SecretError::Refused { failures },
        })
    }

    /// The tns node's clock: a writer signs one above it.
    pub async fn tns_clock(&self, node: PeerId) -> Result<u64, ClientError> {
        match self.call::<TnsProtocol>(node, TnsRequest::Status).await? {
            TnsResponse::Status(status) => Ok(status.clock),
            _ => Err(ClientError::Unexpected { peer: node }),
        }
    }
}

fn first(
    services: &HashMap<String, Vec<PeerId>>,
    service: &'static str,
) -> Result<PeerId, SecretError> {
    services
        .get(service)
        .and_then(|nodes| nodes.first())
        .copied()
        .ok_or(SecretError::NoNode(service))
}

fn cbor_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SecretError> {
    cbor::to_vec(value).map_err(|_| VaultError::Malformed { what: "a value to publish" }.into())
}

fn root(record: &Record) -> Option<WriterKey> {
    cbor::from_slice::<ProjectRoot>(record.value.as_deref()?).ok().map(|r| r.owner)
}

fn check_owner(records: &[Record], project: &str, owner: &Keypair) -> Result<(), SecretError> {
    let key = WriterKey::of(owner)
        .ok_or(VaultError::Malformed { what: "the owner key (not ed25519)" })?;
    let found = records
        .iter()
        .find(|r| r.key == keys::project(project))
        .and_then(root)
        .ok_or_else(|| SecretError::NoProject(project.to_string()))?;
    if found != key {
        return Err(SecretError::NotOwner { project: project.to_string(), owner: found, key });
    }
    Ok(())
}

/// The vault's key set from a page of records holding `/vault/keyset`.
pub fn keyset_of(records: &[Record]) -> Result<KeySet, SecretError> {
    let no =
        |reason: &str| SecretError::NoKeySet { key: keys::VAULT_KEYSET, reason: reason.into() };
    let record = records
        .iter()
        .find(|r| r.key == keys::VAULT_KEYSET)
        .and_then(|r| r.value.as_deref())
        .ok_or_else(|| no("not published"))?;
    let keyset: KeySet = cbor::from_slice(record).map_err(|_| no("does not decode"))?;
    keyset.validate().map_err(|_| no("fails its checks"))?;
    Ok(keyset)
}

/// Reads a secret as `signer` (the project's owner, or a node whose role the owner granted it):
/// `secret` is the value of `/projects/<project>/secrets/<name>`, encrypted to `keyset`.
/// Sends one signed request per vault node through `ask` (each with its own nonce, every share
/// sealed to a one-time key made here), opens and checks each answer, and combines as soon as
/// `t + 1` good shares are in.
pub async fn reveal<F, Fut>(
    keyset: &KeySet,
    secret: &[u8],
    project: &str,
    name: &str,
    signer: &Keypair,
    vaults: &[PeerId],
    ask: F,
) -> Result<Revealed, SecretError>
where
    F: Fn(PeerId, vault::SignedRequest) -> Fut,
    Fut: std::future::Future<Output = Result<VaultResponse, String>>,
{
    let secret: SecretValue =
        cbor::from_slice(secret).map_err(|_| VaultError::Malformed { what: "the secret" })?;
    if secret.keyset != keyset.id {
        return Err(
            VaultError::Malformed { what: "the secret (encrypted to another key set)" }.into()
        );
    }
    let reply = ReplyKey::generate();
    let at = unix_now();
    let requests = vaults
        .iter()
        .map(|node| {
            RequestBody::decrypt(project, name, node, &reply, at)
                .sign(signer)
                .map(|request| (*node, request))
                .ok_or(VaultError::Malformed { what: "the signing key (not ed25519)" })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ciphertext = CheckedCiphertext::parse(&secret.ciphertext)?;
    let mut combiner = keyset.combiner(&ciphertext)?;
    let mut asks: FuturesUnordered<_> = requests
        .into_iter()
        .map(|(node, request)| {
            let body = request.body.clone();
            let answer = ask(node, request);
            async move { (node, body, answer.await) }
        })
        .collect();
    let mut failures = Vec::new();
    while let Some((node, body, answer)) = asks.next().await {
        match answer {
            Ok(VaultResponse::Share { keyset: id, index, sealed }) if id == keyset.id => {
                match reply.open(&sealed, &body) {
                    Ok(share) => {
                        if let Err(e) = combiner.add(node, index, &share) {
                            failures.push(e.to_string());
                        }
                    }
                    Err(e) => failures.push(format!("{node}: {e}")),
                }
            }
            Ok(VaultResponse::Share { keyset: id, .. }) => {
                failures.push(format!("{node}: answered for key set {id}, not {}", keyset.id))
            }
            Ok(VaultResponse::Error(e)) => failures.push(format!("{node}: {e}")),
            Ok(_) => failures.push(format!("{node}: unexpected answer")),
            Err(e) => failures.push(e),
        }
        if combiner.good() >= combiner.needed() {
            let plaintext = combiner.finish()?;
            return Ok(Revealed { plaintext, failures });
        }
    }
    Err(SecretError::NotEnoughShares {
        good: combiner.good(),
        needed: combiner.needed(),
        asked: vaults.len(),
        shares: keyset.shares,
        failures,
    })
}

//! Vault: threshold encryption of project secrets over BLS12-381 (the `blsttc` crate), so that
//! no single node can read a secret.
//!
//! - The operator's tooling deals a key set once per cloud ([`deal`]): `n` secret key shares with
//!   threshold `t` (any `t + 1` shares decrypt, `t` reveal nothing) and the public key set.
//!   Each vault node keeps only its own [`ShareFile`] (mode 0600) and the public [`KeySet`].
//! - A client encrypts to the group public key ([`KeySet::encrypt`]); the ciphertext carries its
//!   own validity check ([`KeySet::check`]), which every node runs before it stores or answers.
//! - A vault node answers an authorized request with its decryption share only; the client checks
//!   every share against the node's public key share and combines `t + 1` of them
//!   ([`KeySet::combine`]). A node that returns a bad share is named.
//! - Requests for a secret are signed by the project's owner, or by a node of a role the owner
//!   granted the secret (`crate::git::Grants`: only a repository's deploy key or webhook secret,
//!   only over that node's own connection) ([`SignedRequest`]), over a
//!   canonical encoding with a domain tag and a timestamp, so a stranger's request is refused and
//!   an old one cannot be replayed after [`MAX_REQUEST_AGE`]. A decrypt request names the one
//!   vault node it is for, carries a nonce that node answers once, and a one-time public key the
//!   requester made ([`ReplyKey`]): the node seals its share to that key (HPKE, bound to the
//!   request), so a request intercepted, replayed or sent to another node yields nothing usable.
//!
//! No cryptographic primitive is implemented here: encryption, shares, their checks and the
//! combination are `blsttc`'s; signatures are libp2p's ed25519; sealing is the `hpke` crate's
//! (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode).

use std::collections::BTreeMap;
use std::fmt;

use blsttc::{Ciphertext, DecryptionShare, PublicKeySet, SecretKeySet, SecretKeyShare};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::identity::WriterKey;
use crate::tns::Record;

/// The request-response protocol, `/tau/vault/1`.
pub struct VaultProtocol;

impl crate::protocol::Protocol for VaultProtocol {
    const NAME: &'static str = "/tau/vault/1";
    const TIMEOUT: std::time::Duration = REQUEST_TIMEOUT;
    type Request = VaultRequest;
    type Response = VaultResponse;

    fn refusal(response: &VaultResponse) -> Option<&str> {
        match response {
            VaultResponse::Error(message) => Some(message),
            _ => None,
        }
    }
}

/// How long a vault request may wait for its answer.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest plaintext a secret may have, bytes.
pub const MAX_SECRET: usize = 64 * 1024;

/// How old a signed request may be, seconds.
pub const MAX_REQUEST_AGE: u64 = 300;

/// The domain tag of a signed vault request.
const REQUEST_TAG: &[u8] = b"tau/vault/request/2\n";

/// Bytes of a request's nonce.
pub const NONCE_LEN: usize = 16;

/// The HPKE suite a decryption share is sealed with.
type ShareKem = hpke::kem::X25519HkdfSha256;
type ShareKdf = hpke::kdf::HkdfSha256;
type ShareAead = hpke::aead::ChaCha20Poly1305;

/// HPKE's `info` for a sealed share: what the key is for.
const SHARE_INFO: &[u8] = b"tau/vault/share/1";

/// Bytes of an X25519 public key, the first bytes of a sealed share (its encapsulated key).
const KEY_LEN: usize = 32;

/// Why a vault operation failed. Never carries a secret, a share or a plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum VaultError {
    /// `t + 1` must be at most `n`, and `n` at most 255.
    #[error(
        "a key set needs 1 <= threshold + 1 <= shares <= 255 (got {shares} shares, threshold {threshold})"
    )]
    BadParameters {
        /// n.
        shares: u32,
        /// t.
        threshold: u32,
    },
    /// Bytes that do not decode as what they should be.
    #[error("{what} does not decode")]
    Malformed {
        /// What it was meant to be.
        what: &'static str,
    },
    /// The ciphertext fails its validity check (altered, or not made for this key set).
    #[error("the ciphertext fails its validity check")]
    BadCiphertext,
    /// A node's decryption share does not match its public key share.
    #[error("node {node} (share {index}) returned a bad decryption share")]
    BadShare {
        node: PeerId,
        /// Its share index.
        index: u32,
    },
    /// Fewer than `t + 1` good shares.
    #[error("{got} good decryption shares, {needed} needed")]
    NotEnoughShares {
        /// Good shares received.
        got: usize,
        /// `t + 1`.
        needed: usize,
    },
    /// A share index outside the key set.
    #[error("share index {index} is outside the key set of {shares} shares")]
    BadIndex {
        index: u32,
        /// n.
        shares: u32,
    },
    /// A secret larger than [`MAX_SECRET`].
    #[error("a secret may have at most {MAX_SECRET} bytes, this one has {size}")]
    TooLarge { size: usize },
    /// The request is not signed by the key it names, or is too old or from the future.
    #[error("the request is not validly signed by {0}, or is stale")]
    BadRequest(WriterKey),
}

/// The public half of a cloud's vault key set: published in TNS under `/vault/keyset` and kept
/// by every vault node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// The key set's id: the first 8 bytes of the BLAKE3 hash of `public`, in hex.
    pub id: String,
    /// `t`: any `t + 1` shares decrypt.
    pub threshold: u32,
    /// `n`: how many shares were dealt.
    pub shares: u32,
    /// The public key set (`blsttc::PublicKeySet::to_bytes`).
    #[serde(with = "crate::bytes::vec")]
    pub public: Vec<u8>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet({}, {} of {})", self.id, self.threshold + 1, self.shares)
    }
}

/// One node's secret key share. Its `Debug` shows no key material.
#[derive(Clone, Serialize, Deserialize)]
pub struct ShareFile {
    /// The key set it belongs to.
    pub keyset: String,
    /// Its index, 0..n.
    pub index: u32,
    /// The secret key share (`blsttc::SecretKeyShare::to_bytes`).
    #[serde(with = "crate::bytes::vec")]
    pub secret: Vec<u8>,
}

impl fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareFile(key set {}, index {}, secret redacted)", self.keyset, self.index)
    }
}

/// Deals a key set of `shares` shares with threshold `threshold` (`threshold + 1` decrypt).
pub fn deal(shares: u32, threshold: u32) -> Result<(KeySet, Vec<ShareFile>), VaultError> {
    if shares == 0 || shares > 255 || threshold >= shares {
        return Err(VaultError::BadParameters { shares, threshold });
    }
    let secret = SecretKeySet::random(threshold as usize, &mut blsttc::rand::rngs::OsRng);
    let public = secret.public_keys().to_bytes();
    let id = hex::encode(&blake3::hash(&public).as_bytes()[..8]);
    let files = (0..shares)
        .map(|index| ShareFile {
            keyset: id.clone(),
            index,
            secret: secret.secret_key_share(index as usize).to_bytes().to_vec(),
        })
        .collect();
    Ok((KeySet { id, threshold, shares, public }, files))
}

impl KeySet {
    fn public_set(&self) -> Result<PublicKeySet, VaultError> {
        PublicKeySet::from_bytes(self.public.clone())
            .map_err(|_| VaultError::Malformed { what: "the public key set" })
    }

    /// Checks that `public` decodes and has the stated threshold and id.
    pub fn validate(&self) -> Result<(), VaultError> {
        let set = self.public_set()?;
        let id = hex::encode(&blake3::hash(&self.public).as_bytes()[..8]);
        if set.threshold() != self.threshold as usize
            || id != self.id
            || self.threshold >= self.shares
        {
            return Err(VaultError::Malformed { what: "the key set" });
        }
        Ok(())
    }

    /// Encrypts `plaintext` to the group's public key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        Ok(self.public_set()?.public_key().encrypt(plaintext).to_bytes())
    }

    /// Decodes a ciphertext and runs its validity check.
    pub fn check(&self, ciphertext: &[u8]) -> Result<(), VaultError> {
        CheckedCiphertext::parse(ciphertext).map(|_| ())
    }

    /// A [`Combiner`] for the decryption shares of `ciphertext`.
    pub fn combiner(&self, ciphertext: &CheckedCiphertext) -> Result<Combiner, VaultError> {
        Ok(Combiner {
            set: self.public_set()?,
            shares: self.shares,
            needed: self.threshold as usize + 1,
            ct: ciphertext.0.clone(),
            good: BTreeMap::new(),
        })
    }

    /// Checks each node's decryption share against its public key share, then combines
    /// `t + 1` good ones. A bad share is an error naming its node, even when enough good ones
    /// came: a node that lies must be seen.
    pub fn combine(
        &self,
        ciphertext: &[u8],
        shares: &[(PeerId, u32, Vec<u8>)],
    ) -> Result<Vec<u8>, VaultError> {
        let mut combiner = self.combiner(&CheckedCiphertext::parse(ciphertext)?)?;
        for (node, index, bytes) in shares {
            combiner.add(*node, *index, bytes)?;
        }
        combiner.finish()
    }
}

/// A ciphertext that passed its validity check, decoded once.
#[derive(Clone)]
pub struct CheckedCiphertext(Ciphertext);

impl CheckedCiphertext {
    /// Decodes `bytes` and runs the ciphertext's validity check (two pairings).
    pub fn parse(bytes: &[u8]) -> Result<Self, VaultError> {
        let ct = Ciphertext::from_bytes(bytes).map_err(|_| VaultError::BadCiphertext)?;
        if !ct.verify() {
            return Err(VaultError::BadCiphertext);
        }
        Ok(Self(ct))
    }

    /// The ciphertext's id (see [`ciphertext_id`]).
    pub fn id(&self) -> [u8; 32] {
        id_of(&self.0)
    }
}

/// Collects the decryption shares of one ciphertext, checking each against its node's public
/// key share as it comes, until `t + 1` good ones combine.
pub struct Combiner {
    set: PublicKeySet,
    shares: u32,
    needed: usize,
    ct: Ciphertext,
    good: BTreeMap<usize, DecryptionShare>,
}

impl Combiner {
    /// Checks `node`'s share (index `index`) and keeps it; a bad one is an error naming the node.
    pub fn add(&mut self, node: PeerId, index: u32, bytes: &[u8]) -> Result<(), VaultError> {
        if index >= self.shares {
            return Err(VaultError::BadIndex { index, shares: self.shares });
        }
        let bad = || VaultError::BadShare { node, index };
        let array: [u8; 48] = bytes.try_into().map_err(|_| bad())?;
        let share = DecryptionShare::from_bytes(array).map_err(|_| bad())?;
        if !self.set.public_key_share(index as usize).verify_decryption_share(&share, &self.ct) {
            return Err(bad());
        }
        self.good.insert(index as usize, share);
        Ok(())
    }

    /// How many distinct good shares have come.
    pub fn good(&self) -> usize {
        self.good.len()
    }

    /// `t + 1`.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// The plaintext, from `t + 1` of the good shares.
    pub fn finish(&self) -> Result<Vec<u8>, VaultError> {
        let (got, needed) = (self.good.len(), self.needed);
        if got < needed {
            return Err(VaultError::NotEnoughShares { got, needed });
        }
        self.set
            .decrypt(self.good.iter().take(needed).map(|(i, s)| (*i, s)), &self.ct)
            .map_err(|_| VaultError::NotEnoughShares { got, needed })
    }
}

/// A ciphertext's identity: the BLAKE3 hash of its canonical first component (`U = g^r`),
/// after its validity check. Decryption shares depend only on `U`, and a valid ciphertext with
/// the same `U` cannot be made without its randomness, so a vault node binds each id to the one
/// secret it was stored as: a copy of someone else's ciphertext under another project is
/// refused instead of decrypted.
pub fn ciphertext_id(ciphertext: &[u8]) -> Result<[u8; 32], VaultError> {
    CheckedCiphertext::parse(ciphertext).map(|ct| ct.id())
}

/// [`ciphertext_id`] without the validity check (which costs two pairings): for comparing
/// against many stored ciphertexts. `None` if the bytes do not decode.
pub fn ciphertext_id_unchecked(ciphertext: &[u8]) -> Option<[u8; 32]> {
    Ciphertext::from_bytes(ciphertext).ok().map(|ct| id_of(&ct))
}

fn id_of(ct: &Ciphertext) -> [u8; 32] {
    let canonical = ct.to_bytes();
    *blake3::hash(&canonical[..48]).as_bytes()
}

impl ShareFile {
    /// Whether this share belongs to `keyset` at its index: its public half is the key set's
    /// public key share there.
    pub fn matches(&self, keyset: &KeySet) -> bool {
        let Ok(array) = <[u8; 32]>::try_from(self.secret.as_slice()) else { return false };
        let (Ok(share), Ok(set)) = (SecretKeyShare::from_bytes(array), keyset.public_set()) else {
            return false;
        };
        self.keyset == keyset.id
            && self.index < keyset.shares
            && share.public_key_share() == set.public_key_share(self.index as usize)
    }

    /// This node's decryption share of a checked ciphertext.
    pub fn decryption_share(&self, ciphertext: &CheckedCiphertext) -> Result<Vec<u8>, VaultError> {
        let array: [u8; 32] = self
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::Malformed { what: "the secret key share" })?;
        let share = SecretKeyShare::from_bytes(array)
            .map_err(|_| VaultError::Malformed { what: "the secret key share" })?;
        Ok(share.decrypt_share_no_verify(&ciphertext.0).to_bytes().to_vec())
    }
}

/// What a signed request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// What is asked: `decrypt`, `register`.
    pub action: String,
    /// The project id the secret belongs to.
    pub project: String,
    /// The secret's name.
    pub name: String,
    /// When the request was made, Unix seconds.
    pub at: u64,
    /// The peer id of the one vault node the request is for; empty for a registration, which
    /// any vault node may take.
    #[serde(default)]
    pub node: String,
    /// [`NONCE_LEN`] random bytes: a node answers a decrypt request once.
    #[serde(default, with = "crate::bytes::vec")]
    pub nonce: Vec<u8>,
    /// The requester's one-time public key ([`ReplyKey`]) a decryption share is sealed to.
    #[serde(default, with = "crate::bytes::vec")]
    pub reply_to: Vec<u8>,
}

impl RequestBody {
    /// A request for `node`'s decryption share of secret `name` of `project`, answered sealed
    /// to `reply`, with a fresh nonce.
    pub fn decrypt(project: &str, name: &str, node: &PeerId, reply: &ReplyKey, at: u64) -> Self {
        Self {
            action: "decrypt".into(),
            project: project.into(),
            name: name.into(),
            at,
            node: node.to_string(),
            nonce: nonce(),
            reply_to: reply.public.clone(),
        }
    }

    /// The signed bytes: the domain tag, then each field length-prefixed, then the time.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = REQUEST_TAG.to_vec();
        let fields: [&[u8]; 6] = [
            self.action.as_bytes(),
            self.project.as_bytes(),
            self.name.as_bytes(),
            self.node.as_bytes(),
            &self.nonce,
            &self.reply_to,
        ];
        for field in fields {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.at.to_be_bytes());
        out
    }

    /// Signs the request with `key` (an ed25519 key).
    pub fn sign(self, key: &Keypair) -> Option<SignedRequest> {
        let signer = WriterKey::of(key)?;
        let signature = key.sign(&self.canonical_bytes()).ok()?;
        Some(SignedRequest { body: self, signer, signature })
    }
}

/// [`NONCE_LEN`] bytes from the operating system's generator.
fn nonce() -> Vec<u8> {
    let mut nonce = vec![0; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    nonce
}

/// A requester's one-time key pair (X25519): vault nodes seal their decryption shares to its
/// public half, and only this side can open them. Made for one read, never stored or shown.
pub struct ReplyKey {
    secret: <ShareKem as hpke::Kem>::PrivateKey,
    public: Vec<u8>,
}

impl fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplyKey({}, secret redacted)", hex::encode(&self.public))
    }
}

impl ReplyKey {
    /// A new key pair.
    pub fn generate() -> Self {
        use hpke::{Kem, Serializable};
        let (secret, public) = ShareKem::gen_keypair(&mut rand::rng());
        Self { secret, public: public.to_bytes().to_vec() }
    }

    /// The public half, which a request carries as `reply_to`.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// Opens `sealed`, a share a node sealed for `request` ([`seal_share`]).
    pub fn open(&self, sealed: &[u8], request: &RequestBody) -> Result<Vec<u8>, VaultError> {
        use hpke::Deserializable;
        let malformed = VaultError::Malformed { what: "a sealed decryption share" };
        if sealed.len() < KEY_LEN || request.reply_to != self.public {
            return Err(malformed);
        }
        let (encapped, ciphertext) = sealed.split_at(KEY_LEN);
        let encapped = <ShareKem as hpke::Kem>::EncappedKey::from_bytes(encapped)
            .map_err(|_| malformed.clone())?;
        hpke::single_shot_open::<ShareAead, ShareKdf, ShareKem>(
            &hpke::OpModeR::Base,
            &self.secret,
            &encapped,
            SHARE_INFO,
            ciphertext,
            &request.canonical_bytes(),
        )
        .map_err(|_| malformed)
    }
}

/// Seals `share` to `request`'s reply key, bound to the request (its canonical bytes are the
/// associated data): the encapsulated key, then the ciphertext.
pub fn seal_share(share: &[u8], request: &RequestBody) -> Result<Vec<u8>, VaultError> {
    use hpke::{Deserializable, Serializable};
    let key = <ShareKem as hpke::Kem>::PublicKey::from_bytes(&request.reply_to)
        .map_err(|_| VaultError::Malformed { what: "the request's reply key" })?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<ShareAead, ShareKdf, ShareKem, _>(
        &hpke::OpModeS::Base,
        &key,
        SHARE_INFO,
        share,
        &request.canonical_bytes(),
        &mut rand::rng(),
    )
    .map_err(|_| VaultError::Malformed { what: "the request's reply key" })?;
    let mut sealed = encapped.to_bytes().to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// A request signed by a project's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// What is asked.
    pub body: RequestBody,
    /// Who signed it.
    pub signer: WriterKey,
    /// The ed25519 signature over [`RequestBody::canonical_bytes`].
    #[serde(with = "crate::bytes::vec")]
    pub signature: Vec<u8>,
}

impl SignedRequest {
    /// Checks that `owner` signed this request within [`MAX_REQUEST_AGE`] of `now` (Unix
    /// seconds).
    pub fn verify(&self, owner: &WriterKey, now: u64) -> Result<(), VaultError> {
        let fresh = self.body.at + MAX_REQUEST_AGE >= now && self.body.at <= now + 60;
        if self.signer != *owner
            || !fresh
            || !owner.verify(&self.body.canonical_bytes(), &self.signature)
        {
            return Err(VaultError::BadRequest(self.signer));
        }
        Ok(())
    }
}

/// `/projects/<id>/secrets/<name>` in TNS: a secret encrypted to the vault's key set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValue {
    /// The key set it is encrypted to.
    pub keyset: String,
    /// The ciphertext (`blsttc::Ciphertext::to_bytes`).
    #[serde(with = "crate::bytes::vec")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(key set {}, {} bytes)", self.keyset, self.ciphertext.len())
    }
}

/// A project registration: the owner's signed request (action `register`, the project id, an
/// empty name) and the owner-signed TNS records of the project's encrypted secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Signed by the new project's owner, who becomes its owner.
    pub request: SignedRequest,
    /// `/projects/<id>/secrets/<name>` records signed by the owner.
    pub secrets: Vec<Record>,
}

/// The owner-signed TNS record of `plaintext` encrypted to `keyset` as secret `name` of
/// `project`, at `version`.
pub fn secret_record(
    keyset: &KeySet,
    project: &str,
    name: &str,
    plaintext: &[u8],
    version: u64,
    owner: &Keypair,
) -> Result<Record, VaultError> {
    if plaintext.len() > MAX_SECRET {
        return Err(VaultError::TooLarge { size: plaintext.len() });
    }
    let value = SecretValue { keyset: keyset.id.clone(), ciphertext: keyset.encrypt(plaintext)? };
    let value =
        crate::cbor::to_vec(&value).map_err(|_| VaultError::Malformed { what: "a secret" })?;
    let draft = crate::tns::Draft {
        key: crate::tns::keys::secret(project, name),
        scope: project.to_string(),
        value: Some(value),
    };
    draft.sign(version, owner).ok_or(VaultError::Malformed { what: "the owner key (not ed25519)" })
}

impl Registration {
    /// Encrypts `secrets` to `keyset` as records of `project` at `version`, and signs the
    /// registration with `owner` (who becomes the project's owner) at time `at`.
    pub fn new(
        keyset: &KeySet,
        project: &str,
        owner: &Keypair,
        secrets: &[(&str, &[u8])],
        version: u64,
        at: u64,
    ) -> Result<Self, VaultError> {
        let secrets = secrets
            .iter()
            .map(|(name, plaintext)| {
                secret_record(keyset, project, name, plaintext, version, owner)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = RequestBody {
            action: "register".into(),
            project: project.to_string(),
            name: String::new(),
            at,
            node: String::new(),
            nonce: nonce(),
            reply_to: Vec::new(),
        };
        let request = body
            .sign(owner)
            .ok_or(VaultError::Malformed { what: "the owner key (not ed25519)" })?;
        Ok(Self { request, secrets })
    }
}

/// A request to a vault node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VaultRequest {
    /// Store an owner-signed `/projects/<id>/secrets/<name>` record after checking its
    /// ciphertext, as [`VaultResponse::Stored`].
    Store {
        /// The secret's signed TNS record (its ciphertext).
        record: Record,
    },
    /// This node's decryption share of a secret, for its owner, as [`VaultResponse::Share`].
    Decrypt {
        /// Action `decrypt`, signed by the project's owner.
        request: SignedRequest,
    },
    /// The node's share index, key set and count of secrets, as [`VaultResponse::Shares`].
    Shares,
    /// Create a project with its secrets, as [`VaultResponse::Registered`].
    Register(Box<Registration>),
}

/// A vault node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VaultResponse {
    /// The secret is stored (or was already).
    Stored {
        /// Its key.
        key: String,
    },
    /// This node's decryption share of a ciphertext, sealed to the request's reply key.
    Share {
        /// Id of the key set the share is under.
        keyset: String,
        /// The node's share index.
        index: u32,
        /// The decryption share (48 bytes), sealed ([`seal_share`]).
        #[serde(with = "crate::bytes::vec")]
        sealed: Vec<u8>,
    },
    /// What the node holds.
    Shares(ShareInfo),
    /// The project exists now, with its secrets.
    Registered {
        /// The project id asked for.
        project: String,
        /// The TNS keys written, in order.
        written: Vec<String>,
    },
    /// The request was refused.
    Error(String),
}

/// A vault node's share, for inspection: never the share itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// Id of the key set the share is under.
    pub keyset: String,
    /// This node's share index.
    pub index: u32,
    /// `t`: `t + 1` shares decrypt.
    pub threshold: u32,
    /// `n`.
    pub shares: u32,
    /// Secrets this node has checked and bound (stored or answered for).
    pub secrets: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node's decryption share of `ct`, with a peer id per node.
    fn shares_of(files: &[ShareFile], ct: &[u8]) -> Vec<(PeerId, u32, Vec<u8>)> {
        let ct = CheckedCiphertext::parse(ct).unwrap();
        files
            .iter()
            .map(|f| (PeerId::random(), f.index, f.decryption_share(&ct).unwrap()))
            .collect()
    }

    #[test]
    fn t_plus_one_shares_decrypt_and_t_do_not() {
        let (keyset, files) = deal(5, 2).unwrap();
        keyset.validate().unwrap();
        let ct = keyset.encrypt(b"the deploy key").unwrap();
        keyset.check(&ct).unwrap();
        let shares = shares_of(&files, &ct);
        // Any 3 of 5 decrypt.
        for pick in [[0, 1, 2], [2, 3, 4], [0, 2, 4]] {
            let chosen: Vec<_> = pick.iter().map(|i| shares[*i].clone()).collect();
            assert_eq!(keyset.combine(&ct, &chosen).unwrap(), b"the deploy key");
        }
        // 2 do not.
        let two = &shares[1..3];
        assert_eq!(
            keyset.combine(&ct, two),
            Err(VaultError::NotEnoughShares { got: 2, needed: 3 })
        );
        // Nor does interpolating 2 shares as if they were enough (what a cheating client would
        // try): the result is not the plaintext.
        let set = keyset.public_set().unwrap();
        let parsed = Ciphertext::from_bytes(&ct).unwrap();
        let decoded: Vec<(usize, DecryptionShare)> = two
            .iter()
            .map(|(_, i, b)| {
                (*i as usize, DecryptionShare::from_bytes(b.clone().try_into().unwrap()).unwrap())
            })
            .collect();
        let guess = set.decrypt(decoded.iter().map(|(i, s)| (*i, s)), &parsed);
        assert!(guess.is_err() || guess.unwrap() != b"the deploy key");
    }

    #[test]
    fn a_corrupted_share_is_detected_and_its_node_named() {
        let (keyset, files) = deal(5, 2).unwrap();
        let ct = keyset.encrypt(b"webhook secret").unwrap();
        let mut shares = shares_of(&files, &ct);
        let liar = shares[1].0;
        shares[1].2[5] ^= 0x01;
        match keyset.combine(&ct, &shares) {
            Err(VaultError::BadShare { node, index: 1 }) => assert_eq!(node, liar),
            other => panic!("expected the bad share to be named, got {other:?}"),
        }
        // A node that answers with another node's share is caught too.
        let mut swapped = shares_of(&files, &ct);
        swapped[0].2 = swapped[2].2.clone();
        assert!(matches!(
            keyset.combine(&ct, &swapped),
            Err(VaultError::BadShare { index: 0, .. })
        ));
    }

    #[test]
    fn an_altered_ciphertext_fails_its_check_everywhere() {
        let (keyset, files) = deal(3, 1).unwrap();
        let ct = keyset.encrypt(b"database password").unwrap();
        for position in [0, 60, ct.len() - 1] {
            let mut altered = ct.clone();
            altered[position] ^= 0x80;
            assert!(keyset.check(&altered).is_err(), "byte {position}");
            assert!(CheckedCiphertext::parse(&altered).is_err(), "byte {position}");
            assert!(ciphertext_id(&altered).is_err(), "byte {position}");
        }
        // A node answers for a ciphertext only once it is checked, and any share of it is
        // checked against the right ciphertext: a share of another one is refused.
        let other = CheckedCiphertext::parse(&keyset.encrypt(b"another").unwrap()).unwrap();
        let share = files[0].decryption_share(&other).unwrap();
        let mut combiner = keyset.combiner(&CheckedCiphertext::parse(&ct).unwrap()).unwrap();
        assert!(combiner.add(PeerId::random(), 0, &share).is_err());
        assert!(keyset.check(&ct[..40]).is_err(), "a cut ciphertext");
    }

    #[test]
    fn a_request_signed_by_a_stranger_or_replayed_late_is_refused() {
        let owner = Keypair::generate_ed25519();
        let owner_key = WriterKey::of(&owner).unwrap();
        let stranger = Keypair::generate_ed25519();
        let reply = ReplyKey::generate();
        let body = RequestBody::decrypt("shop", "db", &PeerId::random(), &reply, 1_000_000);
        let signed = body.clone().sign(&owner).unwrap();
        assert_eq!(signed.verify(&owner_key, 1_000_010), Ok(()));
        let forged = body.clone().sign(&stranger).unwrap();
        assert!(forged.verify(&owner_key, 1_000_010).is_err(), "a stranger's signature");
        let mut claimed = forged.clone();
        claimed.signer = owner_key;
        assert!(claimed.verify(&owner_key, 1_000_010).is_err(), "a stranger claiming the owner");
        let mut edited = signed.clone();
        edited.body.name = "other".into();
        assert!(edited.verify(&owner_key, 1_000_010).is_err(), "an edited request");
        assert!(signed.verify(&owner_key, 1_000_000 + MAX_REQUEST_AGE + 1).is_err(), "too old");
        let edits: [fn(&mut RequestBody); 3] = [
            |b: &mut RequestBody| b.node = PeerId::random().to_string(),
            |b: &mut RequestBody| b.nonce[0] ^= 1,
            |b: &mut RequestBody| b.reply_to = ReplyKey::generate().public,
        ];
        for edit in edits {
            let mut edited = signed.clone();
            edit(&mut edited.body);
            assert!(
                edited.verify(&owner_key, 1_000_010).is_err(),
                "node, nonce and key are signed"
            );
        }
    }

    #[test]
    fn a_sealed_share_opens_only_with_its_key_and_for_its_request() {
        let reply = ReplyKey::generate();
        let node = PeerId::random();
        let request = RequestBody::decrypt("shop", "db", &node, &reply, 1_000_000);
        let share = [7u8; 48];
        let sealed = seal_share(&share, &request).unwrap();
        assert_ne!(&sealed[KEY_LEN..KEY_LEN + 48], &share[..], "the share is not in the clear");
        assert_eq!(reply.open(&sealed, &request).unwrap(), share);
        // Another one-time key, another request, or an altered byte: nothing opens.
        let other = ReplyKey::generate();
        let mut for_other = request.clone();
        for_other.reply_to = other.public.clone();
        assert!(other.open(&sealed, &for_other).is_err());
        let replayed = RequestBody { nonce: vec![0; NONCE_LEN], ..request.clone() };
        assert!(reply.open(&sealed, &replayed).is_err());
        let mut altered = sealed.clone();
        altered[KEY_LEN + 3] ^= 1;
        assert!(reply.open(&altered, &request).is_err());
        assert!(reply.open(&sealed[..10], &request).is_err());
        assert!(format!("{reply:?}").contains("secret redacted"));
        assert!(seal_share(&share, &RequestBody { reply_to: vec![1, 2], ..request }).is_err());
    }

    #[test]
    fn dealing_checks_its_parameters_and_hides_the_shares() {
        assert!(deal(3, 3).is_err());
        assert!(deal(0, 0).is_err());
        assert!(deal(256, 1).is_err());
        let (keyset, files) = deal(2, 0).unwrap();
        assert_eq!((keyset.shares, keyset.threshold, files.len()), (2, 0, 2));
        let shown = format!("{:?}", files[0]);
        assert!(shown.contains("redacted") && !shown.contains(&hex::encode(&files[0].secret)));
        let mut wrong = keyset.clone();
        wrong.threshold = 1;
        assert!(wrong.validate().is_err());
    }
}

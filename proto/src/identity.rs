//! Who signs: the ed25519 keys of writers (the operator, project owners, registrars) and of
//! nodes, whose peer ids carry their public key.
//!
//! [`WriterKey`] is how a key is written in records, files and on command lines;
//! [`public_key_of`] is the one way to read the key inside a peer id (only an identity
//! multihash holds one).

use std::fmt;
use std::str::FromStr;

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, ed25519};
use serde::{Deserialize, Serialize};

/// The multihash code of an identity hash: its digest is the data itself.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The public key a peer id embeds, if it embeds one: ed25519 peer ids are an identity
/// multihash of the protobuf-encoded key; any other hash (a long RSA key's sha256) holds none.
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    PublicKey::try_decode_protobuf(multihash.digest()).ok()
}

/// An ed25519 public key that signs records: the operator's, a project owner's.
///
/// Written as `ed25519:<64 hex digits>` in files and on command lines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriterKey(pub [u8; 32]);

impl Serialize for WriterKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serde_bytes::serialize(&self.0, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for WriterKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            String::deserialize(deserializer)?.parse().map_err(D::Error::custom)
        } else {
            Ok(Self(serde_bytes::deserialize(deserializer)?))
        }
    }
}

impl WriterKey {
    /// The public half of `keypair`, if it is an ed25519 key.
    pub fn of(keypair: &Keypair) -> Option<Self> {
        let public = keypair.public().try_into_ed25519().ok()?;
        Some(Self(public.to_bytes()))
    }

    /// The key inside an ed25519 peer id (a node's identity key), if it holds one.
    pub fn of_peer(peer: &PeerId) -> Option<Self> {
        Some(Self(public_key_of(peer)?.try_into_ed25519().ok()?.to_bytes()))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ed25519::PublicKey::try_from_bytes(&self.0).is_ok_and(|key| key.verify(message, signature))
    }
}

impl fmt::Display for WriterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a public key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a public key: expected ed25519:<64 hex digits>")]
pub struct WriterKeyError(String);

impl FromStr for WriterKey {
    type Err = WriterKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || WriterKeyError(s.chars().take(80).collect());
        let digits = s.trim().strip_prefix("ed25519:").ok_or_else(err)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(digits, &mut key).map_err(|_| err())?;
        ed25519::PublicKey::try_from_bytes(&key).map_err(|_| err())?;
        Ok(Self(key))
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use multihash::Multihash;

    use super::*;

    #[test]
    fn a_node_peer_id_yields_its_key() {
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        assert_eq!(public_key_of(&peer), Some(keypair.public()));
        assert_eq!(WriterKey::of_peer(&peer), WriterKey::of(&keypair));
    }

    #[test]
    fn a_hashed_peer_id_holds_no_key() -> Result<(), Box<dyn std::error::Error>> {
        // The same protobuf bytes under a sha2-256 code: not the key itself, whatever it decodes to.
        let keypair = Keypair::generate_ed25519();
        let encoded = keypair.public().encode_protobuf();
        let hashed = Multihash::<64>::wrap(0x12, &encoded)?;
        let peer = PeerId::from_multihash(hashed).map_err(|_| "peer id refused")?;
        assert_eq!(public_key_of(&peer), None);
        assert_eq!(WriterKey::of_peer(&peer), None);
        Ok(())
    }

    #[test]
    fn keys_read_back_as_written() -> Result<(), Box<dyn std::error::Error>> {
        let key = WriterKey::of(&Keypair::generate_ed25519()).ok_or("not ed25519")?;
        assert_eq!(key.to_string().parse::<WriterKey>()?, key);
        assert!("ed25519:zz".parse::<WriterKey>().is_err());
        Ok(())
    }
}

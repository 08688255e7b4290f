//! Serde for byte strings: raw bytes in CBOR, hex in human-readable formats (JSON, YAML), so
//! that `--json` output shows hashes and keys the way people read them.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// For `[u8; 32]` fields: `#[serde(with = "crate::bytes::fixed")]`.
pub mod fixed {
    use super::*;

    /// Serializes 32 bytes.
    pub fn serialize<S: Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serde_bytes::serialize(bytes, serializer)
        }
    }

    /// Deserializes 32 bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
            Ok(out)
        } else {
            serde_bytes::deserialize(deserializer)
        }
    }
}

/// For `Vec<u8>` fields: `#[serde(with = "crate::bytes::vec")]`.
pub mod vec {
    use super::*;

    /// Serializes bytes.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serde_bytes::serialize(bytes, serializer)
        }
    }

    /// Deserializes bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            hex::decode(String::deserialize(deserializer)?).map_err(D::Error::custom)
        } else {
            serde_bytes::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super::fixed")]
        hash: [u8; 32],
        #[serde(with = "super::vec")]
        data: Vec<u8>,
    }

    #[test]
    fn bytes_in_cbor_and_hex_in_yaml() {
        let t = T { hash: [0xab; 32], data: vec![1, 2] };
        let cbor = crate::cbor::to_vec(&t).unwrap();
        assert!(cbor.len() < 50, "raw bytes, not arrays of numbers: {} bytes", cbor.len());
        assert_eq!(crate::cbor::from_slice::<T>(&cbor).unwrap(), t);
        let yaml = serde_yaml_ng::to_string(&t).unwrap();
        assert!(yaml.contains(&"ab".repeat(32)) && yaml.contains("data: '0102'"), "{yaml}");
        assert_eq!(serde_yaml_ng::from_str::<T>(&yaml).unwrap(), t);
    }
}

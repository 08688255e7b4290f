//! CBOR, the encoding of every Tau wire message and TNS value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("cbor: {0}")]
pub struct CborError(String);

/// Encodes `value`. Struct fields are written in declaration order, so equal values always
/// encode to equal bytes.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CborError> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(|e| CborError(e.to_string()))
}

/// Decodes a value.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| CborError(e.to_string()))
}

//! Signature checks of counter records, in batches: one batched ed25519 verification for a whole
//! page, and a record-by-record check (the same one every Tau tool uses) only when the batch
//! fails, to find which records are bad.

use ed25519_dalek::{Signature, VerifyingKey};
use libp2p::PeerId;
use tau_proto::counters::SignedCounter;
use tau_proto::identity::public_key_of;

/// The ed25519 key a peer id holds, if any.
fn key_of(node: &PeerId) -> Option<VerifyingKey> {
    let key = public_key_of(node)?.try_into_ed25519().ok()?;
    VerifyingKey::from_bytes(&key.to_bytes()).ok()
}

/// The parts of a record a batch verification needs, or `None` when its node's peer id holds no
/// ed25519 key or its signature is not 64 bytes (then it cannot verify). `last` remembers the
/// previous record's node and key: a page is one node's, and decoding a key (a point
/// decompression) costs a third of a verification.
fn parts(
    signed: &SignedCounter,
    last: &mut Option<(PeerId, Option<VerifyingKey>)>,
) -> Option<(Vec<u8>, Signature, VerifyingKey)> {
    let node = &signed.record.node;
    let key = match last {
        Some((peer, key)) if peer == node => *key,
        _ => {
            let key = key_of(node);
            *last = Some((*node, key));
            key
        }
    }?;
    let signature = Signature::from_slice(&signed.signature).ok()?;
    let too_long =
        [&signed.record.project, &signed.record.function].iter().any(|s| s.len() > 0xffff);
    (!too_long).then(|| (signed.record.canonical_bytes(), signature, key))
}

/// Whether each record's signature verifies, in order.
pub fn verify_all(records: &[SignedCounter]) -> Vec<bool> {
    let mut last = None;
    let parts: Vec<_> = records.iter().map(|r| parts(r, &mut last)).collect();
    if parts.iter().all(Option::is_some) {
        let (mut messages, mut signatures, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for (message, signature, key) in parts.iter().flatten() {
            messages.push(message.as_slice());
            signatures.push(*signature);
            keys.push(*key);
        }
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; records.len()];
        }
    }
    records.iter().map(|r| r.verify().is_ok()).collect()
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use tau_proto::counters::{CounterRecord, Usage};

    use super::*;

    fn signed(key: &Keypair, seq: u64) -> SignedCounter {
        let record = CounterRecord {
            node: key.public().to_peer_id(),
            seq,
            project: "p".into(),
            function: "f".into(),
            window_start_ms: 1_000 * seq,
            window_ms: 1_000,
            usage: Usage {
                invocations: seq,
                wall_micros: 1,
                cpu_micros: 1,
                peak_memory: 1,
                ..Usage::default()
            },
        };
        record.sign(key).expect("the node's own key")
    }

    #[test]
    fn a_batch_finds_the_forged_record() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let mut records: Vec<_> =
            (1..=50).map(|s| signed(if s % 2 == 0 { &a } else { &b }, s)).collect();
        assert!(verify_all(&records).iter().all(|ok| *ok));
        records[17].record.usage.invocations += 1;
        records[30].signature[3] ^= 1;
        let verdicts = verify_all(&records);
        let bad: Vec<usize> =
            verdicts.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
        assert_eq!(bad, [17, 30]);
        records[40].signature.truncate(10);
        assert!(!verify_all(&records)[40]);
    }
}

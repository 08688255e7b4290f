//! The replicated state of a project's key-value stores: what `database` nodes keep and
//! exchange.
//!
//! - A key's value is last-writer-wins by a hybrid logical clock ([`Hlc`]): the physical time
//!   in milliseconds, a logical counter for events within one millisecond or behind a peer's
//!   clock, and the writer's node id as the final tiebreak, so that every replica picks the
//!   same winner whatever order writes arrive in. A delete is a tombstone with its own time.
//! - A counter (`wasi:keyvalue/atomics.increment`) is a grow-only CRDT ([`Counter`]): each node
//!   adds to its own slot, merging takes the larger of each slot, and the value is their sum,
//!   so concurrent increments on different nodes are never lost and a merge repeated or
//!   reordered changes nothing.
//! - A key's whole state is a [`KeyState`]: its last write and the increments made on top of
//!   it. A `set` or `delete` starts a new count (increments concurrent with it are lost to it,
//!   as any write is to a later one); increments on top of the same write all count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading; ordered by time, then counter, then node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Physical time, Unix milliseconds (never behind an earlier reading on this node).
    pub ms: u64,
    /// Events at the same `ms`.
    pub counter: u32,
    /// A number that tells the writing nodes apart (from the node's id), the last tiebreak.
    pub node: u64,
}

/// A node's hybrid logical clock.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
}

impl Hlc {
    /// Before every write: the time of a key never written.
    pub const ZERO: Hlc = Hlc { ms: 0, counter: 0, node: 0 };
}

impl Clock {
    /// A clock for the node numbered `node`.
    pub fn new(node: u64) -> Self {
        Self { last: Hlc { ms: 0, counter: 0, node } }
    }

    /// A reading for a local event at wall time `now_ms`: later than every reading this clock
    /// gave or saw, even if the wall clock went back.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last.ms {
            self.last.ms = now_ms;
            self.last.counter = 0;
        } else {
            self.last.counter = self.last.counter.saturating_add(1);
        }
        self.last
    }

    /// Takes in a reading `seen` from another node (a write it replicated), so that this
    /// node's next reading is later than it.
    pub fn observe(&mut self, seen: Hlc, now_ms: u64) {
        let ms = now_ms.max(seen.ms).max(self.last.ms);
        let counter = match (ms == seen.ms, ms == self.last.ms) {
            (true, true) => seen.counter.max(self.last.counter),
            (true, false) => seen.counter,
            (false, true) => self.last.counter,
            (false, false) => 0,
        };
        self.last.ms = ms;
        self.last.counter = counter;
    }
}

/// A key's value at a time; `None` is a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value, or `None` once deleted.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    /// When it was written.
    pub at: Hlc,
}

impl Entry {
    /// The entry that wins between `self` and `other`: the later write.
    pub fn merge(self, other: Entry) -> Entry {
        if other.at > self.at { other } else { self }
    }
}

/// A grow-only counter: each node's own total, by node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Node to the sum of its increments.
    pub slots: BTreeMap<u64, u64>,
}

impl Counter {
    /// Adds `delta` on `node`; the new value.
    pub fn increment(&mut self, node: u64, delta: u64) -> u64 {
        let slot = self.slots.entry(node).or_default();
        *slot = slot.saturating_add(delta);
        self.value()
    }

    /// Takes in another replica's counter.
    pub fn merge(&mut self, other: &Counter) {
        for (node, total) in &other.slots {
            let slot = self.slots.entry(*node).or_default();
            *slot = (*slot).max(*total);
        }
    }

    /// The counter's value: every node's total.
    pub fn value(&self) -> u64 {
        self.slots.values().fold(0u64, |sum, v| sum.saturating_add(*v))
    }
}

/// A key's value is not a number, so it cannot be incremented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the value is not a decimal number, so it cannot be incremented")]
pub struct NotANumber;

/// Everything a replica holds for one key: the last write, and the increments made on top of
/// it (by the nodes that took them). Merging is a join: the later write wins with its own
/// increments; on the same write, the increments merge slot by slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The last `set` or `delete`; [`Hlc::ZERO`] and no value for a key only incremented.
    pub entry: Entry,
    /// The increments on top of `entry`.
    pub counts: Counter,
}

impl Default for KeyState {
    fn default() -> Self {
        Self { entry: Entry { value: None, at: Hlc::ZERO }, counts: Counter::default() }
    }
}

impl KeyState {
    /// Takes in another replica's state of the same key.
    pub fn merge(&mut self, other: &KeyState) {
        match other.entry.at.cmp(&self.entry.at) {
            std::cmp::Ordering::Greater => *self = other.clone(),
            std::cmp::Ordering::Equal => self.counts.merge(&other.counts),
            std::cmp::Ordering::Less => {}
        }
    }

    /// The key's value: the last write's, or, once incremented, the sum as a decimal number
    /// (what `wasi:keyvalue` functions read back). `None` when deleted or never written.
    pub fn value(&self) -> Option<Vec<u8>> {
        if self.counts.slots.is_empty() {
            return self.entry.value.clone();
        }
        let base = self.base().unwrap_or(0);
        Some(base.saturating_add(self.counts.value()).to_string().into_bytes())
    }

    /// The number increments build on: the last write's value, 0 if none.
    fn base(&self) -> Result<u64, NotANumber> {
        match &self.entry.value {
            None => Ok(0),
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or(NotANumber),
        }
    }

    /// Writes `value` (`None`: deletes) at `at`, which must be later than the current write.
    pub fn write(&mut self, value: Option<Vec<u8>>, at: Hlc) {
        *self = KeyState { entry: Entry { value, at }, counts: Counter::default() };
    }

    /// Adds `delta` on `node`; the new value.
    pub fn increment(&mut self, node: u64, delta: u64) -> Result<u64, NotANumber> {
        let base = self.base()?;
        let counted = self.counts.increment(node, delta);
        Ok(base.saturating_add(counted))
    }

    /// The bytes this key takes against its store's limit: the key, the value, and each
    /// node's increments slot (16 bytes). A deleted key counts its key.
    pub fn size(&self, key: &str) -> u64 {
        let value = self.entry.value.as_ref().map_or(0, Vec::len);
        (key.len() + value + 16 * self.counts.slots.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_never_goes_back_and_passes_what_it_saw() {
        let mut clock = Clock::new(1);
        let a = clock.tick(1_000);
        let b = clock.tick(1_000);
        let c = clock.tick(900); // the wall clock went back
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
        let remote = Hlc { ms: 5_000, counter: 7, node: 2 };
        clock.observe(remote, 1_100);
        let d = clock.tick(1_200);
        assert!(d > remote, "{d:?} after {remote:?}");
        assert_eq!(d.node, 1);
    }

    #[test]
    fn every_replica_keeps_the_same_last_write_whatever_the_order() {
        let writes: Vec<Entry> = (0..6u64)
            .map(|i| Entry {
                value: (i != 3).then(|| vec![i as u8]),
                at: Hlc { ms: 100 + i % 3, counter: (i % 2) as u32, node: i },
            })
            .collect();
        let merged = |order: &[usize]| {
            order.iter().map(|&i| writes[i].clone()).reduce(Entry::merge).expect("writes")
        };
        let first = merged(&[0, 1, 2, 3, 4, 5]);
        for order in [[5, 4, 3, 2, 1, 0], [2, 5, 0, 3, 1, 4], [3, 3, 1, 5, 5, 0]] {
            let mut order = order.to_vec();
            // Every write, in this order (some twice: a resent write changes nothing).
            order.extend(0..6);
            assert_eq!(merged(&order), first, "{order:?}");
        }
        assert_eq!(first.at, Hlc { ms: 102, counter: 1, node: 5 });
    }

    #[test]
    fn concurrent_increments_are_never_lost_and_merges_repeat_safely() {
        let (mut a, mut b, mut c) = (Counter::default(), Counter::default(), Counter::default());
        for _ in 0..300 {
            a.increment(1, 1);
        }
        for _ in 0..500 {
            b.increment(2, 1);
        }
        c.increment(3, 200);
        let mut all = a.clone();
        all.merge(&b);
        all.merge(&c);
        all.merge(&b); // again
        let mut other_way = c.clone();
        other_way.merge(&a);
        other_way.merge(&b);
        assert_eq!(all, other_way);
        assert_eq!(all.value(), 1_000);
        // A stale copy of a slot does not take anything back.
        let mut stale = Counter::default();
        stale.increment(1, 10);
        all.merge(&stale);
        assert_eq!(all.value(), 1_000);
    }

    #[test]
    fn a_key_merges_writes_and_increments_to_one_state_in_any_order() {
        let at = |ms| Hlc { ms, counter: 0, node: ms };
        let mut base = KeyState::default();
        base.write(Some(b"10".to_vec()), at(5));
        // Two nodes increment on top of the same write; a third writes later.
        let (mut a, mut b) = (base.clone(), base.clone());
        assert_eq!(a.increment(1, 3), Ok(13));
        assert_eq!(b.increment(2, 4), Ok(14));
        let mut ab = a.clone();
        ab.merge(&b);
        ab.merge(&a);
        assert_eq!(ab.value(), Some(b"17".to_vec()));
        let mut later = base.clone();
        later.write(Some(b"x".to_vec()), at(9));
        let mut one = ab.clone();
        one.merge(&later);
        let mut other = later.clone();
        other.merge(&b);
        other.merge(&a);
        assert_eq!(one, other, "the later write wins, with none of the older increments");
        assert_eq!(one.value(), Some(b"x".to_vec()));
        assert_eq!(one.clone().increment(1, 1), Err(NotANumber));
        // Never written, only incremented: counts from 0; a delete ends it.
        let mut fresh = KeyState::default();
        assert_eq!(fresh.increment(7, 2), Ok(2));
        assert_eq!(fresh.value(), Some(b"2".to_vec()));
        fresh.write(None, at(11));
        assert_eq!(fresh.value(), None);
        assert_eq!(fresh.size("key"), 3);
    }
}

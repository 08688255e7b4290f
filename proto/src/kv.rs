//! The replicated state of a project's key-value stores: what `database` nodes keep and
//! exchange (the service itself comes with its own issue work).
//!
//! - A key's value is last-writer-wins by a hybrid logical clock ([`Hlc`]): the physical time
//!   in milliseconds, a logical counter for events within one millisecond or behind a peer's
//!   clock, and the writer's node id as the final tiebreak, so that every replica picks the
//!   same winner whatever order writes arrive in. A delete is a tombstone with its own time.
//! - A counter (`wasi:keyvalue/atomics.increment`) is a grow-only CRDT ([`Counter`]): each node
//!   adds to its own slot, merging takes the larger of each slot, and the value is their sum,
//!   so concurrent increments on different nodes are never lost and a merge repeated or
//!   reordered changes nothing.

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
}

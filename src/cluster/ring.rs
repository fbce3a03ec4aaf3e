//! Which member owns a trace: rendezvous (highest random weight) hashing. Each member's
//! weight for a trace id is a hash of the id seeded by the member's name; the heaviest
//! member owns it. Every member computes the same owner from the same list, in any order,
//! without talking; a member that joins or leaves moves only the traces it wins or held
//! (1/n of them), never reshuffles the rest.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::model::TraceId;

/// The members, by name (their OTLP address as the configuration lists it).
#[derive(Debug, Clone)]
pub struct Ring {
    names: Vec<String>,
    seeds: Vec<u64>,
}

impl Ring {
    pub fn new(names: Vec<String>) -> Ring {
        let seeds = names.iter().map(|n| xxh3_64(n.as_bytes())).collect();
        Ring { names, seeds }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn name(&self, member: usize) -> &str {
        &self.names[member]
    }

    /// The member that owns `id` (its position in the list); ties go to the greater name,
    /// so the order of the list never matters.
    pub fn owner(&self, id: &TraceId) -> usize {
        self.owner_among(id, |_| true)
    }

    /// [`Ring::owner`] among the members `up` says are in the ring (member 0 when none is).
    pub fn owner_among(&self, id: &TraceId, up: impl Fn(usize) -> bool) -> usize {
        let mut best: Option<(usize, u64)> = None;
        for (i, seed) in self.seeds.iter().enumerate() {
            if !up(i) {
                continue;
            }
            let w = xxh3_64_with_seed(id, *seed);
            let better = match best {
                None => true,
                Some((b, bw)) => w > bw || (w == bw && self.names[i] > self.names[b]),
            };
            if better {
                best = Some((i, w));
            }
        }
        best.map_or(0, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<TraceId> {
        (0..n)
            .map(|i| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes()).to_be_bytes())
            .collect()
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:4317")).collect()
    }

    /// Traces spread evenly, and the owner does not depend on the list's order.
    #[test]
    fn owners_are_even_and_independent_of_the_order() {
        let ring = Ring::new(members(4));
        let mut reversed = members(4);
        reversed.reverse();
        let rev = Ring::new(reversed);
        let mut count = [0usize; 4];
        for id in ids(40_000) {
            let o = ring.owner(&id);
            count[o] += 1;
            assert_eq!(rev.name(rev.owner(&id)), ring.name(o));
        }
        for c in count {
            assert!((9_000..11_000).contains(&c), "{count:?}");
        }
    }

    /// A member leaving moves only its own traces; one joining takes about 1/n and takes
    /// them only from the others, never swapping traces among them.
    #[test]
    fn a_membership_change_moves_only_the_traces_it_must() {
        let four = Ring::new(members(4));
        let three = Ring::new(members(3));
        let five = Ring::new(members(5));
        let mut joined = 0;
        for id in ids(20_000) {
            let before = four.name(four.owner(&id));
            if before != "10.0.0.3:4317" {
                assert_eq!(
                    three.name(three.owner(&id)),
                    before,
                    "a stayer's trace moved"
                );
            }
            let after = five.name(five.owner(&id));
            if after != before {
                assert_eq!(after, "10.0.0.4:4317", "moved between old members");
                joined += 1;
            }
        }
        assert!((3_400..4_600).contains(&joined), "{joined}");
    }
}

//! carbon 1.1.10's rings: `ConsistentHashRing` behind `ConsistentHashingRouter`, and
//! `FastHashRing` behind `fast-hashing`.
//!
//! A node is `(server, instance)`. Replica keys are Python's `"%s:%d" % (node, i)` (the tuple's
//! repr) for carbon_ch and mmh3_ch, `"%d-%s" % (i, instance)` for fnv1a_ch. A position already
//! taken is bumped by +1 until free, so placement depends on the order nodes were added.

use std::collections::HashSet;

use super::balance::position_shares;
use super::nodeset::NodeSet;
use super::table::{OwnerTable, StartIndex};
use super::{Algorithm, Destination, hash};

/// carbon's `carbonHash(key, hash_type)`.
fn carbon_hash(algorithm: Algorithm, key: &[u8]) -> i64 {
    match algorithm {
        Algorithm::Fnv1aCh => hash::fold16(hash::fnv1a_32(key)),
        Algorithm::Mmh3Ch => hash::mmh3_32(key),
        Algorithm::CarbonCh | Algorithm::JumpFnv1aCh => hash::carbon_ch(key),
    }
}

/// The hash range of `algorithm` as `(lowest, highest)`.
fn hash_range(algorithm: Algorithm) -> (i64, i64) {
    match algorithm {
        Algorithm::Mmh3Ch => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (0, 65535),
    }
}

/// Python's `str((server, instance))`.
fn py_node_repr(d: &Destination) -> String {
    let instance = d
        .instance
        .as_deref()
        .map_or_else(|| "None".to_string(), py_str_repr);
    format!("({}, {})", py_str_repr(&d.host), instance)
}

/// Python 3's `repr(str)`: single quotes unless the text has a single quote and no double one.
fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Which replicas a carbon router returns: `DIVERSE_REPLICAS` skips nodes on a server already
/// used; otherwise the first `replication` nodes of the walk.
#[derive(Debug, Clone)]
struct Replicas {
    replication: usize,
    diverse: bool,
    /// Server id of each node, so diversity compares integers.
    server_of: Vec<u32>,
}

impl Replicas {
    fn new(destinations: &[Destination], replication: usize, diverse: bool) -> Self {
        let mut servers: Vec<&str> = Vec::new();
        let server_of = destinations
            .iter()
            .map(|d| match servers.iter().position(|s| *s == d.host) {
                Some(i) => i as u32,
                None => {
                    servers.push(&d.host);
                    servers.len() as u32 - 1
                }
            })
            .collect();
        Replicas {
            replication,
            diverse,
            server_of,
        }
    }

    fn select(&self, walk: impl Iterator<Item = usize>, out: &mut Vec<usize>) {
        if !self.diverse {
            out.extend(walk.take(self.replication));
            return;
        }
        for node in walk {
            let server = self.server_of[node];
            if out.iter().any(|&o| self.server_of[o] == server) {
                continue;
            }
            out.push(node);
            if out.len() >= self.replication {
                return;
            }
        }
    }
}

/// `ConsistentHashRing` + `ConsistentHashingRouter`.
#[derive(Debug, Clone)]
pub(crate) struct ConsistentRing {
    algorithm: Algorithm,
    /// Positions (unique after bumping) and the node at each, sorted by position.
    entries: Vec<(i64, u32)>,
    starts: StartIndex,
    owners: OwnerTable,
}

const REPLICA_COUNT: usize = 100;

impl ConsistentRing {
    pub(crate) fn new(
        destinations: &[Destination],
        algorithm: Algorithm,
        replication: usize,
        diverse: bool,
    ) -> Self {
        let mut taken: HashSet<i64> = HashSet::with_capacity(destinations.len() * REPLICA_COUNT);
        let mut entries = Vec::with_capacity(destinations.len() * REPLICA_COUNT);
        for (node, d) in destinations.iter().enumerate() {
            let repr = py_node_repr(d);
            for i in 0..REPLICA_COUNT {
                let key = match algorithm {
                    Algorithm::Fnv1aCh => {
                        format!("{i}-{}", d.instance.as_deref().unwrap_or("None"))
                    }
                    _ => format!("{repr}:{i}"),
                };
                let mut position = carbon_hash(algorithm, key.as_bytes());
                while !taken.insert(position) {
                    position += 1;
                }
                entries.push((position, node as u32));
            }
        }
        entries.sort_unstable();
        let replicas = Replicas::new(destinations, replication, diverse);
        let owners = OwnerTable::build(entries.len(), |start, out| {
            replicas.select(walk(&entries, destinations.len(), start), out);
        });
        let starts = StartIndex::new(
            entries.iter().map(|e| e.0).collect(),
            algorithm != Algorithm::Mmh3Ch,
        );
        ConsistentRing {
            algorithm,
            entries,
            starts,
            owners,
        }
    }

    pub(crate) fn position(&self, key: &[u8]) -> i64 {
        carbon_hash(self.algorithm, key)
    }

    pub(crate) fn owners_at(&self, position: i64, out: &mut Vec<usize>) {
        self.owners.extend(self.starts.start(position), out);
    }

    pub(crate) fn balance(&self, nodes: usize) -> Vec<f64> {
        position_shares(&self.entries, hash_range(self.algorithm), nodes)
    }
}

/// `get_nodes` from entry `start`: each node the first time it is met, stopping before the entry
/// just behind the start. A one-node ring yields its node twice (once from a special case, once
/// from the walk), as carbon does.
fn walk(entries: &[(i64, u32)], nodes: usize, start: usize) -> impl Iterator<Item = usize> + '_ {
    let len = entries.len();
    let single = (nodes == 1).then_some(entries[0].1 as usize);
    let mut seen = NodeSet::new(nodes);
    let mut seen_count = 0;
    let last = (start + len - 1) % len;
    let mut index = start;
    let rest = std::iter::from_fn(move || {
        while seen_count < nodes && index != last {
            let node = entries[index].1 as usize;
            index = if index + 1 == len { 0 } else { index + 1 };
            if seen.insert(node) {
                seen_count += 1;
                return Some(node);
            }
        }
        None
    });
    single.into_iter().chain(rest)
}

/// `FastHashRing` + the router's replica rules: nodes sorted by the hash of their repr; a
/// metric starts at `hash % n` and takes the following nodes in order.
#[derive(Debug, Clone)]
pub(crate) struct FastRing {
    algorithm: Algorithm,
    sorted: Vec<u32>,
    /// Owners for each seed `hash % n`.
    owners: OwnerTable,
}

impl FastRing {
    pub(crate) fn new(
        destinations: &[Destination],
        algorithm: Algorithm,
        replication: usize,
        diverse: bool,
    ) -> Self {
        let mut keyed: Vec<(i64, u32)> = destinations
            .iter()
            .enumerate()
            .map(|(i, d)| (carbon_hash(algorithm, py_node_repr(d).as_bytes()), i as u32))
            .collect();
        keyed.sort_by_key(|&(h, _)| h);
        let sorted: Vec<u32> = keyed.into_iter().map(|(_, n)| n).collect();
        let replicas = Replicas::new(destinations, replication, diverse);
        let n = sorted.len();
        let owners = OwnerTable::build(n, |seed, out| {
            replicas.select((seed..seed + n).map(|i| sorted[i % n] as usize), out);
        });
        FastRing {
            algorithm,
            sorted,
            owners,
        }
    }

    pub(crate) fn position(&self, key: &[u8]) -> i64 {
        carbon_hash(self.algorithm, key)
    }

    pub(crate) fn owners_at(&self, position: i64, out: &mut Vec<usize>) {
        let seed = position.rem_euclid(self.sorted.len() as i64) as usize;
        self.owners.extend(seed, out);
    }

    pub(crate) fn balance(&self, nodes: usize) -> Vec<f64> {
        let (lo, hi) = hash_range(self.algorithm);
        let n = self.sorted.len() as i64;
        let total = (hi - lo + 1) as f64;
        let mut shares = vec![0.0; nodes];
        for (slot, &node) in self.sorted.iter().enumerate() {
            // Hash values h in [lo, hi] with h mod n == slot.
            let first = lo + (slot as i64 - lo).rem_euclid(n);
            let count = if first > hi { 0 } else { (hi - first) / n + 1 };
            shares[node as usize] += count as f64 / total;
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py_str_repr("a'b"), "\"a'b\"");
        assert_eq!(py_str_repr("a'b\""), "'a\\'b\"'");
        assert_eq!(py_str_repr("x\\y\t"), "'x\\\\y\\t'");
        let d = super::super::destination::parse_carbon("10.0.0.1:2004").unwrap();
        assert_eq!(py_node_repr(&d), "('10.0.0.1', None)");
    }
}

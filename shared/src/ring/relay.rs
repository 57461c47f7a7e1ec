//! carbon-c-relay 3.7's `carbon_ch` and `fnv1a_ch` clusters (consistent-hash.c).
//!
//! 100 entries per member. carbon_ch keys are `('<host>', '<instance>'):<i>` (or `None`),
//! fnv1a_ch keys `<i>-<instance>`, or `<i>-<host>:<port>` without instance. Entries are sorted by
//! position, equal positions by host then instance (carbon_ch; no instance after one) or by host
//! then port (fnv1a_ch), then config order. There is no collision bump: a position belongs to the
//! first member in that order. Lookup walks from the first entry at or after the metric's
//! position, collecting distinct members until `replication` are found.

use std::cmp::Ordering;

use super::balance::position_shares;
use super::table::{OwnerTable, StartIndex};
use super::{Algorithm, Destination, Error, hash};

const REPLICA_COUNT: usize = 100;

/// The relay refuses a replication count above its member count.
pub(crate) fn check_replication(replication: usize, members: usize) -> Result<(), Error> {
    if replication > members {
        return Err(Error::Invalid(format!(
            "replication count ({replication}) is larger than the number of servers ({members})"
        )));
    }
    Ok(())
}

/// From entry `start`, distinct members until `replication` are found (or a full lap).
fn walk(entries: &[(i64, u32)], start: usize, replication: usize, out: &mut Vec<usize>) {
    let len = entries.len();
    let mut index = start;
    for _ in 0..len {
        let member = entries[index].1 as usize;
        index = if index + 1 == len { 0 } else { index + 1 };
        if !out.contains(&member) {
            out.push(member);
            if out.len() == replication {
                return;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RelayRing {
    algorithm: Algorithm,
    /// One entry per distinct position, with the member that holds it, sorted by position.
    entries: Vec<(i64, u32)>,
    starts: StartIndex,
    owners: OwnerTable,
}

fn position(algorithm: Algorithm, key: &[u8]) -> i64 {
    match algorithm {
        Algorithm::Fnv1aCh => hash::fold16(hash::fnv1a_32_signed(key)),
        _ => hash::carbon_ch(key),
    }
}

/// The order of two members whose entries share a position.
fn tie_order(algorithm: Algorithm, a: &Destination, b: &Destination) -> Ordering {
    let by_host = a.host.as_bytes().cmp(b.host.as_bytes());
    match algorithm {
        Algorithm::Fnv1aCh => by_host.then(a.port.cmp(&b.port)),
        _ => by_host.then_with(|| match (&a.instance, &b.instance) {
            (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }),
    }
}

impl RelayRing {
    pub(crate) fn new(members: &[Destination], algorithm: Algorithm, replication: usize) -> Self {
        let mut all: Vec<(i64, u32)> = Vec::with_capacity(members.len() * REPLICA_COUNT);
        for (m, d) in members.iter().enumerate() {
            for i in 0..REPLICA_COUNT {
                let key = match (algorithm, &d.instance) {
                    (Algorithm::Fnv1aCh, Some(instance)) => format!("{i}-{instance}"),
                    (Algorithm::Fnv1aCh, None) => format!("{i}-{}:{}", d.host, d.port),
                    (_, Some(instance)) => format!("('{}', '{instance}'):{i}", d.host),
                    (_, None) => format!("('{}', None):{i}", d.host),
                };
                all.push((position(algorithm, key.as_bytes()), m as u32));
            }
        }
        // Stable: members that tie completely keep config order.
        all.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| tie_order(algorithm, &members[a.1 as usize], &members[b.1 as usize]))
        });
        all.dedup_by_key(|e| e.0);
        let owners = OwnerTable::build(all.len(), |start, out| walk(&all, start, replication, out));
        let starts = StartIndex::new(all.iter().map(|e| e.0).collect(), true);
        RelayRing {
            algorithm,
            entries: all,
            starts,
            owners,
        }
    }

    pub(crate) fn position(&self, key: &[u8]) -> i64 {
        position(self.algorithm, key)
    }

    pub(crate) fn owners_at(&self, position: i64, out: &mut Vec<usize>) {
        self.owners.extend(self.starts.start(position), out);
    }

    pub(crate) fn balance(&self, members: usize) -> Vec<f64> {
        position_shares(&self.entries, (0, 65535), members)
    }
}

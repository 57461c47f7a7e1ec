//! carbon-c-relay 3.7's `jump_fnv1a_ch`: jump consistent hash over 64-bit FNV-1a.
//!
//! Members with an instance come first, sorted by instance (numerically when both are integers,
//! else byte-wise), then members without instance in config order; host and port are not
//! hashed. Each further replica rehashes the key (xorshift-multiply), moves the last member into
//! the chosen one's place and jumps among one member fewer.

use std::cmp::Ordering;

use super::{Destination, hash};

#[derive(Debug, Clone)]
pub(crate) struct JumpRing {
    order: Vec<u32>,
    replication: usize,
}

fn instance_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Lamping and Veach's jump consistent hash, with the relay's floating-point arithmetic.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

impl JumpRing {
    pub(crate) fn new(members: &[Destination], replication: usize) -> Self {
        let mut with: Vec<u32> = (0..members.len() as u32)
            .filter(|&m| members[m as usize].instance.is_some())
            .collect();
        with.sort_by(|&a, &b| {
            let (a, b) = (&members[a as usize].instance, &members[b as usize].instance);
            instance_order(a.as_deref().unwrap_or(""), b.as_deref().unwrap_or(""))
        });
        let without = (0..members.len() as u32).filter(|&m| members[m as usize].instance.is_none());
        with.extend(without);
        JumpRing {
            order: with,
            replication,
        }
    }

    pub(crate) fn owners(&self, key: &[u8], out: &mut Vec<usize>) {
        let mut h = hash::fnv1a_64_signed(key);
        // The relay moves the last member into each chosen slot; with few replicas a short list
        // of those moves is cheaper than copying the member order for every name.
        let mut moved: Vec<(usize, u32)> = Vec::new();
        let member_at = |moved: &[(usize, u32)], i: usize| {
            moved
                .iter()
                .rev()
                .find(|(at, _)| *at == i)
                .map_or(self.order[i], |&(_, m)| m)
        };
        let mut n = self.order.len();
        loop {
            let chosen = jump(h, n);
            out.push(member_at(&moved, chosen) as usize);
            if out.len() == self.replication || n == 1 {
                return;
            }
            h ^= h >> 12;
            h ^= h << 25;
            h ^= h >> 27;
            h = h.wrapping_mul(2_685_821_657_736_338_717);
            let last = member_at(&moved, n - 1);
            moved.push((chosen, last));
            n -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_is_within_bounds_and_moves_little() {
        let mut moved = 0;
        for k in 0..10_000u64 {
            let key = k.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (a, b) = (jump(key, 10), jump(key, 11));
            assert!(a < 10 && b < 11);
            moved += usize::from(a != b);
        }
        // Adding an 11th bucket moves about 1/11 of the keys, all to the new bucket.
        assert!((700..1100).contains(&moved), "{moved}");
        assert_eq!(instance_order("2", "10"), Ordering::Less);
        assert_eq!(instance_order("b", "a1"), Ordering::Greater);
    }
}

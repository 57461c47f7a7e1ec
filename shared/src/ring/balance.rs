//! The share of the hash space each destination owns as primary on a position ring.

/// `entries` sorted by position; a metric hashing to `p` in `range` belongs to the first entry at
/// or after `p`, wrapping to the first entry. Returns each node's share of `range`.
pub(crate) fn position_shares(entries: &[(i64, u32)], range: (i64, i64), nodes: usize) -> Vec<f64> {
    let (lo, hi) = range;
    let total = (hi - lo + 1) as f64;
    let mut shares = vec![0.0; nodes];
    let mut previous = lo - 1; // positions above `previous` and up to the entry's own
    for &(position, node) in entries {
        let top = position.min(hi);
        if top > previous {
            shares[node as usize] += (top - previous) as f64;
            previous = top;
        }
    }
    // What lies after the last entry wraps to the first.
    if let Some(&(_, first)) = entries.first()
        && hi > previous
    {
        shares[first as usize] += (hi - previous) as f64;
    }
    shares.iter_mut().for_each(|s| *s /= total);
    shares
}

#[cfg(test)]
mod tests {
    use super::position_shares;

    #[test]
    fn shares_cover_the_range() {
        let entries = [(9, 0), (19, 1), (29, 0)];
        let shares = position_shares(&entries, (0, 39), 2);
        assert_eq!(shares, vec![(10.0 + 10.0 + 10.0) / 40.0, 10.0 / 40.0]);
        // Bumped past the range: the first such entry catches the tail, the next one nothing.
        let entries = [(5, 1), (65536, 0), (65537, 1)];
        let shares = position_shares(&entries, (0, 65535), 2);
        assert_eq!(shares, vec![65530.0 / 65536.0, 6.0 / 65536.0]);
    }
}

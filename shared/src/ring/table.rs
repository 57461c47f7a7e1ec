//! Precomputed placement for position rings. A walk's result depends only on the ring entry it
//! starts at, so the owners are computed once per entry at build time; for 16-bit hashes the
//! entry for every position is a table lookup too. Placing a name is then a hash and two reads.

/// Owners for each starting entry (or seed), flattened.
#[derive(Debug, Clone)]
pub(crate) struct OwnerTable {
    offsets: Vec<u32>,
    owners: Vec<u32>,
}

impl OwnerTable {
    /// Runs `walk(start, &mut owners)` for every start in `0..starts`.
    pub(crate) fn build(starts: usize, mut walk: impl FnMut(usize, &mut Vec<usize>)) -> Self {
        let mut offsets = Vec::with_capacity(starts + 1);
        let mut owners = Vec::new();
        let mut buf = Vec::new();
        offsets.push(0);
        for start in 0..starts {
            buf.clear();
            walk(start, &mut buf);
            owners.extend(buf.iter().map(|&o| o as u32));
            offsets.push(owners.len() as u32);
        }
        OwnerTable { offsets, owners }
    }

    /// Appends the owners of a walk from `start` to `out`.
    pub(crate) fn extend(&self, start: usize, out: &mut Vec<usize>) {
        let (from, to) = (
            self.offsets[start] as usize,
            self.offsets[start + 1] as usize,
        );
        out.extend(self.owners[from..to].iter().map(|&o| o as usize));
    }
}

/// The first entry at or after a position, wrapping to entry 0.
#[derive(Debug, Clone)]
pub(crate) struct StartIndex {
    positions: Vec<i64>,
    /// For hashes in 0..=65535: the start entry of every position.
    direct: Option<Vec<u32>>,
}

impl StartIndex {
    /// `positions` sorted ascending; `sixteen_bit` when metric positions are 0..=65535.
    pub(crate) fn new(positions: Vec<i64>, sixteen_bit: bool) -> Self {
        let direct = sixteen_bit.then(|| {
            let mut table = Vec::with_capacity(1 << 16);
            let mut entry = 0;
            for p in 0..=65535i64 {
                while entry < positions.len() && positions[entry] < p {
                    entry += 1;
                }
                table.push((entry % positions.len()) as u32);
            }
            table
        });
        StartIndex { positions, direct }
    }

    pub(crate) fn start(&self, position: i64) -> usize {
        match &self.direct {
            Some(table) if (0..=65535).contains(&position) => table[position as usize] as usize,
            _ => self.positions.partition_point(|&p| p < position) % self.positions.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_table_equals_binary_search() {
        let positions = vec![3, 3000, 3001, 65535, 65536, 70000];
        let direct = StartIndex::new(positions.clone(), true);
        let search = StartIndex::new(positions, false);
        for p in (0..=65535)
            .step_by(7)
            .chain([2, 3, 4, 3000, 3001, 65534, 65535])
        {
            assert_eq!(direct.start(p), search.start(p), "{p}");
        }
        assert_eq!(direct.start(65535), 3);
        assert_eq!(direct.start(4000), 3);
    }

    #[test]
    fn owner_table_replays_walks() {
        let table = OwnerTable::build(3, |s, out| out.extend(0..=s));
        let mut out = vec![9];
        table.extend(2, &mut out);
        assert_eq!(out, vec![9, 0, 1, 2]);
    }
}

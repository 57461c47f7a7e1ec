//! The iteration order of CPython 3.11's `set()` of ints.
//!
//! whisper.py propagates `for interval in set(lowerIntervals)`. Into an empty lower archive the
//! first interval written becomes the archive's base point, which fixes where every later point
//! lands; byte-identical files therefore need the exact order CPython iterates the set in. This
//! replays setobject.c (`set_add_entry`, `set_table_resize`, `set_insert_clean`: linear probing
//! of 9, perturbation shift 5, growth to 4x used past 60% fill) for int keys, whose hash is the
//! value modulo 2**61 - 1.

const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;
const MIN_SIZE: usize = 8;

/// The distinct values in the order `for x in set(values)` visits them in CPython 3.11.
#[cfg(test)]
pub(crate) fn iteration_order(values: impl IntoIterator<Item = i64>) -> Vec<i64> {
    let mut out = Vec::new();
    iteration_order_into(values, &mut out);
    out
}

/// [`iteration_order`] into `out`.
pub(crate) fn iteration_order_into(values: impl IntoIterator<Item = i64>, out: &mut Vec<i64>) {
    out.clear();
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return;
    };
    // Adding a value already present changes nothing, so the repeats of the first value can
    // go; when nothing else is left (a small update, the common case), no table is needed.
    let mut rest = values.skip_while(|&v| v == first).peekable();
    if rest.peek().is_none() {
        out.push(first);
        return;
    }
    let mut set = PySet::new();
    set.add(first);
    for v in rest {
        set.add(v);
    }
    out.extend(set.table.into_iter().flatten().map(|(key, _)| key));
}

struct PySet {
    table: Vec<Option<(i64, u64)>>,
    fill: usize,
}

impl PySet {
    fn new() -> Self {
        PySet {
            table: vec![None; MIN_SIZE],
            fill: 0,
        }
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn add(&mut self, key: i64) {
        let hash = py_hash(key);
        let mask = self.mask();
        let mut perturb = hash;
        let mut i = hash as usize & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in i..=i + probes {
                match self.table[j] {
                    None => {
                        self.table[j] = Some((key, hash));
                        self.fill += 1;
                        if self.fill * 5 >= mask * 3 {
                            let used = self.fill; // no deletions, so used == fill
                            self.resize(if used > 50_000 { used * 2 } else { used * 4 });
                        }
                        return;
                    }
                    Some((existing, _)) if existing == key => return,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }

    fn resize(&mut self, min_used: usize) {
        let mut size = MIN_SIZE;
        while size <= min_used {
            size <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![None; size]);
        for (key, hash) in old.into_iter().flatten() {
            self.insert_clean(key, hash);
        }
    }

    fn insert_clean(&mut self, key: i64, hash: u64) {
        let mask = self.mask();
        let mut perturb = hash;
        let mut i = hash as usize & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            if let Some(j) = (i..=i + probes).find(|&j| self.table[j].is_none()) {
                self.table[j] = Some((key, hash));
                return;
            }
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }
}

/// CPython's `hash(int)`, as the unsigned `size_t` setobject.c works with.
fn py_hash(v: i64) -> u64 {
    const MODULUS: i128 = (1 << 61) - 1;
    let magnitude = i128::from(v).abs() % MODULUS;
    let signed = if v < 0 { -magnitude } else { magnitude };
    let hash = if signed == -1 { -2 } else { signed as i64 };
    hash as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_iterate_by_slot() {
        // CPython 3.11: list(set([9, 1, 17, 3])) == [9, 3, 1, 17]: 1 and 17 collide with 9 in
        // slot 1 and are perturbed to slots 6 and 7.
        assert_eq!(iteration_order([9, 1, 17, 3]), vec![9, 3, 1, 17]);
        assert_eq!(iteration_order([5, 5, 5]), vec![5]);
    }

    #[test]
    fn every_value_appears_once_after_resizes() {
        let values: Vec<i64> = (0..5000)
            .map(|i| 1_700_000_000 + (i % 1200) * 600)
            .collect();
        let order = iteration_order(values.iter().copied());
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), order.len());
        assert_eq!(order.len(), 1200);
    }

    #[test]
    fn negative_hashes_follow_cpython() {
        assert_eq!(py_hash(-1) as i64, -2);
        assert_eq!(py_hash((1 << 61) - 1), 0);
        assert_eq!(py_hash(-5) as i64, -5);
    }
}

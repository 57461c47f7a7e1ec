//! A set of node indices that needs no allocation for rings of up to 256 nodes: the walks look
//! up millions of names, and a heap set per lookup would cost more than the hash.

const INLINE_WORDS: usize = 4;

/// Nodes seen so far in one walk.
pub(crate) enum NodeSet {
    Inline([u64; INLINE_WORDS]),
    Heap(Vec<u64>),
}

impl NodeSet {
    /// An empty set for a ring of `nodes` nodes.
    pub(crate) fn new(nodes: usize) -> Self {
        if nodes <= INLINE_WORDS * 64 {
            NodeSet::Inline([0; INLINE_WORDS])
        } else {
            NodeSet::Heap(vec![0; nodes.div_ceil(64)])
        }
    }

    /// Adds `node`; false if it was already there.
    pub(crate) fn insert(&mut self, node: usize) -> bool {
        let words: &mut [u64] = match self {
            NodeSet::Inline(w) => w,
            NodeSet::Heap(w) => w,
        };
        let (word, bit) = (node / 64, 1u64 << (node % 64));
        let fresh = words[word] & bit == 0;
        words[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::NodeSet;

    #[test]
    fn inline_and_heap_sets_agree() {
        for nodes in [3, 256, 1000] {
            let mut set = NodeSet::new(nodes);
            assert!(set.insert(nodes - 1));
            assert!(!set.insert(nodes - 1));
            assert!(set.insert(0));
        }
    }
}

//! carbon_ch positions for many names at once: MD5 of up to 55-byte keys (one block), eight
//! names side by side in plain arrays so the compiler vectorises the rounds with the baseline
//! SSE2 of x86-64 (no `unsafe`, no target flags). Only the first digest word is needed, so the
//! last three of MD5's 64 steps, which update the other words, are skipped.

use super::hash;

/// Names hashed side by side.
pub(crate) const LANES: usize = 8;
/// The longest key that fits MD5's first block with its padding.
const ONE_BLOCK: usize = 55;

const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];
const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

type Lanes = [u32; LANES];

/// One MD5 step for all lanes with a constant rotation, as a macro so every rotation is a
/// compile-time shift the vectoriser can use.
macro_rules! step {
    ($a:ident, $b:ident, $c:ident, $d:ident, $f:expr, $m:expr, $k:expr, $s:literal) => {{
        let mut next: Lanes = [0; LANES];
        for l in 0..LANES {
            let (b, c, d) = ($b[l], $c[l], $d[l]);
            let f: u32 = $f(b, c, d);
            let sum = $a[l].wrapping_add(f).wrapping_add($k).wrapping_add($m[l]);
            next[l] = b.wrapping_add(sum.rotate_left($s));
        }
        $a = $d;
        $d = $c;
        $c = $b;
        $b = next;
    }};
}

fn f1(b: u32, c: u32, d: u32) -> u32 {
    (b & c) | (!b & d)
}
fn f2(b: u32, c: u32, d: u32) -> u32 {
    (d & b) | (!d & c)
}
fn f3(b: u32, c: u32, d: u32) -> u32 {
    b ^ c ^ d
}
fn f4(b: u32, c: u32, d: u32) -> u32 {
    c ^ (b | !d)
}

/// The first digest word of MD5 for eight one-block messages given as their 16 words per lane.
fn first_words(m: &[Lanes; 16]) -> Lanes {
    let (mut a, mut b, mut c, mut d) = (
        [INIT[0]; LANES],
        [INIT[1]; LANES],
        [INIT[2]; LANES],
        [INIT[3]; LANES],
    );
    for q in 0..4 {
        let i = q * 4;
        step!(a, b, c, d, f1, m[i], K[i], 7);
        step!(a, b, c, d, f1, m[i + 1], K[i + 1], 12);
        step!(a, b, c, d, f1, m[i + 2], K[i + 2], 17);
        step!(a, b, c, d, f1, m[i + 3], K[i + 3], 22);
    }
    for q in 0..4 {
        let i = 16 + q * 4;
        let g = |i: usize| (5 * i + 1) % 16;
        step!(a, b, c, d, f2, m[g(i)], K[i], 5);
        step!(a, b, c, d, f2, m[g(i + 1)], K[i + 1], 9);
        step!(a, b, c, d, f2, m[g(i + 2)], K[i + 2], 14);
        step!(a, b, c, d, f2, m[g(i + 3)], K[i + 3], 20);
    }
    for q in 0..4 {
        let i = 32 + q * 4;
        let g = |i: usize| (3 * i + 5) % 16;
        step!(a, b, c, d, f3, m[g(i)], K[i], 4);
        step!(a, b, c, d, f3, m[g(i + 1)], K[i + 1], 11);
        step!(a, b, c, d, f3, m[g(i + 2)], K[i + 2], 16);
        step!(a, b, c, d, f3, m[g(i + 3)], K[i + 3], 23);
    }
    for q in 0..3 {
        let i = 48 + q * 4;
        let g = |i: usize| (7 * i) % 16;
        step!(a, b, c, d, f4, m[g(i)], K[i], 6);
        step!(a, b, c, d, f4, m[g(i + 1)], K[i + 1], 10);
        step!(a, b, c, d, f4, m[g(i + 2)], K[i + 2], 15);
        step!(a, b, c, d, f4, m[g(i + 3)], K[i + 3], 21);
    }
    // Step 60 produces the value that ends as the first word; 61..63 only touch the others.
    step!(a, b, c, d, f4, m[(7 * 60) % 16], K[60], 6);
    let _ = (a, c, d);
    let mut out = [0u32; LANES];
    for l in 0..LANES {
        out[l] = INIT[0].wrapping_add(b[l]);
    }
    out
}

/// carbon_ch positions of `keys`, written to `out` (same length): the batch path for keys of
/// up to 55 bytes, the scalar MD5 for longer ones.
pub(crate) fn carbon_ch_many(keys: &[&[u8]], out: &mut [i64]) {
    debug_assert_eq!(keys.len(), out.len());
    for (keys, out) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
        let mut m = [[0u32; LANES]; 16];
        for (lane, key) in keys.iter().enumerate() {
            if key.len() > ONE_BLOCK {
                continue;
            }
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            block[key.len()] = 0x80;
            block[56..].copy_from_slice(&(key.len() as u64 * 8).to_le_bytes());
            for (w, word) in block.chunks_exact(4).enumerate() {
                m[w][lane] = u32::from_le_bytes(word.try_into().expect("4 bytes"));
            }
        }
        let words = first_words(&m);
        for (lane, key) in keys.iter().enumerate() {
            out[lane] = if key.len() > ONE_BLOCK {
                hash::carbon_ch(key)
            } else {
                // Digest bytes 0 and 1 are the low two bytes of the first word, little-endian.
                let w = words[lane];
                i64::from(w & 0xff) << 8 | i64::from((w >> 8) & 0xff)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_positions_equal_scalar_md5_for_every_length() {
        // 1 to 200 keys: partial chunks leave lanes empty.
        let keys: Vec<Vec<u8>> = (0..200usize)
            .map(|i| (0..i % 80).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for n in [1, 3, 8, 9, 200] {
            let mut out = vec![0; n];
            carbon_ch_many(&refs[..n], &mut out);
            for (key, got) in refs.iter().zip(&out) {
                assert_eq!(*got, hash::carbon_ch(key), "len {}", key.len());
            }
        }
    }
}

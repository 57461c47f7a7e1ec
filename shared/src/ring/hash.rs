//! The hash functions behind the rings, as carbon and carbon-c-relay compute them.

use md5::{Digest, Md5};

/// carbon_ch: the first two bytes of the MD5 digest, big-endian (0..=65535).
pub(crate) fn carbon_ch(key: &[u8]) -> i64 {
    let digest = Md5::digest(key);
    i64::from(digest[0]) << 8 | i64::from(digest[1])
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a over unsigned bytes (carbon's Python implementation).
pub(crate) fn fnv1a_32(key: &[u8]) -> u32 {
    key.iter().fold(FNV32_OFFSET, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(FNV32_PRIME)
    })
}

/// 32-bit FNV-1a reading bytes as C's signed `char` (carbon-c-relay): a byte >= 0x80 enters as
/// `0xffffff00 | b`.
pub(crate) fn fnv1a_32_signed(key: &[u8]) -> u32 {
    key.iter().fold(FNV32_OFFSET, |h, &b| {
        (h ^ (b as i8 as i32 as u32)).wrapping_mul(FNV32_PRIME)
    })
}

/// Folds a 32-bit FNV hash to 16 bits: `(h >> 16) ^ (h & 0xffff)`.
pub(crate) fn fold16(h: u32) -> i64 {
    i64::from((h >> 16) ^ (h & 0xffff))
}

/// 64-bit FNV-1a reading bytes as signed `char` (carbon-c-relay's jump_fnv1a_ch).
pub(crate) fn fnv1a_64_signed(key: &[u8]) -> u64 {
    key.iter().fold(14_695_981_039_346_656_037u64, |h, &b| {
        (h ^ (b as i8 as i64 as u64)).wrapping_mul(1_099_511_628_211)
    })
}

/// MurmurHash3 x86_32 with seed 0, signed, as Python's `mmh3.hash`.
pub(crate) fn mmh3_32(key: &[u8]) -> i64 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h: u32 = 0;
    let mut blocks = key.chunks_exact(4);
    for block in &mut blocks {
        h ^= mix(u32::from_le_bytes(block.try_into().expect("4-byte block")));
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .enumerate()
            .fold(0u32, |k, (i, &b)| k ^ (u32::from(b) << (8 * i)));
        h ^= mix(k);
    }
    h ^= key.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    i64::from(h as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // md5("") = d41d8cd9...
        assert_eq!(carbon_ch(b""), 0xd41d);
        // FNV-1a 32 of "a" is 0xe40c292c; 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_64_signed(b"a"), 0xaf63_dc4c_8601_ec8c);
        // mmh3.hash("foo") == -156908512, mmh3.hash("") == 0.
        assert_eq!(mmh3_32(b"foo"), -156_908_512);
        assert_eq!(mmh3_32(b""), 0);
        assert_eq!(fnv1a_32_signed(b"abc"), fnv1a_32(b"abc"));
        assert_ne!(fnv1a_32_signed("é".as_bytes()), fnv1a_32("é".as_bytes()));
    }
}

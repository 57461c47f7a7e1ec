//! Object encoding: SHA-1 of the raw file, gzip for storage, and decoding of gzip and
//! whisper-backup's snappy-framed objects.

use std::io::{Read, Write};

use bucky_shared::layout::Encoding;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use sha1::{Digest, Sha1};

/// SHA-1 as 40 lowercase hex characters (the `.sha1` object's content).
pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One gzip member of `bytes` at `level` (0-9).
pub fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut gz = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        Compression::new(level.min(9)),
    );
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// The raw file inside a stored object.
///
/// # Errors
/// The object is not valid gzip or snappy framing.
pub fn decode(bytes: &[u8], encoding: Encoding) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    match encoding {
        Encoding::Gzip => MultiGzDecoder::new(bytes).read_to_end(&mut out)?,
        Encoding::Snappy => snap::read::FrameDecoder::new(bytes).read_to_end(&mut out)?,
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_snappy_round_trip_and_corruption_is_an_error() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        assert_eq!(decode(&gzip(&raw, 6), Encoding::Gzip).unwrap(), raw);
        let mut sz = snap::write::FrameEncoder::new(Vec::new());
        sz.write_all(&raw).unwrap();
        assert_eq!(
            decode(&sz.into_inner().unwrap(), Encoding::Snappy).unwrap(),
            raw
        );
        let gz = gzip(&raw, 6);
        assert!(decode(&gz[..gz.len() / 2], Encoding::Gzip).is_err());
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}

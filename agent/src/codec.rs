//! Object encoding: SHA-1 of the raw file, gzip for storage, and decoding of gzip and
//! whisper-backup's snappy-framed objects, never past the size the file's own header gives (a
//! small object may expand to gigabytes; memory must not follow it).

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

/// Largest whisper file a restore decodes unless configured otherwise: 1 GiB (a year of
/// one-second points is 378 MB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// Most archives a header may list before it is taken for garbage.
const MAX_ARCHIVES: u32 = 1024;

/// Why an object could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not valid gzip or snappy framing, or shorter than its header says.
    #[error("corrupt object: {0}")]
    Corrupt(#[from] std::io::Error),
    /// The decoded bytes do not begin with a whisper header.
    #[error("not a whisper file: {0}")]
    NotWhisper(String),
    /// The header gives a file larger than allowed.
    #[error("its whisper header gives a file of {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Size from the header.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// More bytes follow the file the header describes.
    #[error("decompresses past the {size} bytes its whisper header gives")]
    Overlong {
        /// Size from the header.
        size: u64,
    },
}

/// The whisper file inside a stored object, decoded only as far as its header says the file
/// goes, and at most `max_file_bytes`.
///
/// # Errors
/// [`DecodeError`]: corrupt framing, no whisper header, a file over the limit, or trailing data.
pub fn decode(
    bytes: &[u8],
    encoding: Encoding,
    max_file_bytes: u64,
) -> Result<Vec<u8>, DecodeError> {
    match encoding {
        Encoding::Gzip => decode_whisper(MultiGzDecoder::new(bytes), max_file_bytes),
        Encoding::Snappy => decode_whisper(snap::read::FrameDecoder::new(bytes), max_file_bytes),
    }
}

fn decode_whisper(mut reader: impl Read, max_file_bytes: u64) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; 16];
    reader.read_exact(&mut out)?;
    let count = u32::from_be_bytes(out[12..16].try_into().expect("4 bytes"));
    if count == 0 || count > MAX_ARCHIVES {
        return Err(DecodeError::NotWhisper(format!("{count} archives")));
    }
    out.resize(16 + 12 * count as usize, 0);
    reader.read_exact(&mut out[16..])?;
    let size = out[16..]
        .chunks_exact(12)
        .map(|a| {
            let offset = u32::from_be_bytes(a[0..4].try_into().expect("4 bytes"));
            let points = u32::from_be_bytes(a[8..12].try_into().expect("4 bytes"));
            u64::from(offset) + u64::from(points) * 12
        })
        .max()
        .unwrap_or(0)
        .max(out.len() as u64);
    if size > max_file_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_file_bytes,
        });
    }
    let header_len = out.len() as u64;
    // Grows with what actually arrives, never reserved up front from the header's word.
    reader
        .by_ref()
        .take(size - header_len)
        .read_to_end(&mut out)?;
    if (out.len() as u64) < size {
        return Err(DecodeError::Corrupt(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} of the {size} bytes its header gives", out.len()),
        )));
    }
    if reader.read(&mut [0u8; 1])? != 0 {
        return Err(DecodeError::Overlong { size });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use bucky_shared::whisper::{CreateOptions, create_image, parse_retentions};

    fn whisper_file() -> Vec<u8> {
        let schema = parse_retentions(&["60s:1d", "15m:7d"]).unwrap();
        let mut raw = create_image(&schema, &CreateOptions::default())
            .unwrap()
            .into_bytes();
        for (i, b) in raw.iter_mut().enumerate().skip(64) {
            *b = (i % 251) as u8;
        }
        raw
    }

    const MAX: u64 = DEFAULT_MAX_FILE_BYTES;

    #[test]
    fn gzip_and_snappy_round_trip_and_corruption_is_an_error() {
        let raw = whisper_file();
        assert_eq!(decode(&gzip(&raw, 6), Encoding::Gzip, MAX).unwrap(), raw);
        let mut sz = snap::write::FrameEncoder::new(Vec::new());
        sz.write_all(&raw).unwrap();
        assert_eq!(
            decode(&sz.into_inner().unwrap(), Encoding::Snappy, MAX).unwrap(),
            raw
        );
        let gz = gzip(&raw, 6);
        assert!(matches!(
            decode(&gz[..gz.len() / 2], Encoding::Gzip, MAX),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn a_bomb_is_refused_without_being_expanded() {
        // 64 MiB of zeros after a valid header: stops at the header's size.
        let mut raw = whisper_file();
        let size = raw.len();
        raw.resize(64 << 20, 0);
        let bomb = gzip(&raw, 9);
        assert!(bomb.len() < 200_000);
        let err = decode(&bomb, Encoding::Gzip, MAX).unwrap_err();
        assert!(
            matches!(err, DecodeError::Overlong { size: s } if s == size as u64),
            "{err}"
        );
        // Zeros from the start: no header at all.
        let zeros = gzip(&vec![0u8; 64 << 20], 9);
        assert!(matches!(
            decode(&zeros, Encoding::Gzip, MAX),
            Err(DecodeError::NotWhisper(_))
        ));
        // A header claiming more than the limit is refused before reading on.
        let err = decode(&gzip(&whisper_file(), 6), Encoding::Gzip, 1000).unwrap_err();
        assert!(
            err.to_string().contains("more than the 1000 allowed"),
            "{err}"
        );
    }
}

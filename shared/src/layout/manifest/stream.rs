//! A manifest as lines of JSON in one gzip stream, written and read one metric at a time, so a
//! node of millions of metrics never holds its manifest decoded: a header line, one line per
//! metric in name order (a metric's versions expired by the run ride on its line; a purged
//! metric has a line of its own), and an end line with the counts. A manifest without its end
//! line, or whose counts differ from its lines, was cut off and is refused.

use std::io::{BufRead, BufReader, Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::{Error, FORMAT, MAX_EXPANSION, MIN_EXPANDED_LIMIT, ManifestEntry, RunStats, Summary};
use crate::layout::Version;

/// One line of a manifest after its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A metric, with the versions this run expired (deleted once the manifest is written).
    Entry(ManifestEntry, Vec<Version>),
    /// A metric purged by this run: its versions are deleted once the manifest is written.
    Purged(String, Vec<Version>),
}

impl Record {
    /// The metric's name.
    pub fn name(&self) -> &str {
        match self {
            Record::Entry(e, _) => &e.name,
            Record::Purged(name, _) => name,
        }
    }

    /// The versions this run deletes after its commit.
    pub fn deletes(&self) -> &[Version] {
        match self {
            Record::Entry(_, expired) => expired,
            Record::Purged(_, versions) => versions,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    format: u32,
    node: String,
    started: Version,
}

/// The end line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trailer {
    /// When the run wrote the manifest.
    pub finished: Version,
    /// Metric lines.
    pub metrics: u64,
    /// Of those, metrics missing from disk.
    pub missing: u64,
    /// What the run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RunStats>,
}

/// A metric line as written: borrowed, so writing allocates nothing per metric.
#[derive(serde::Serialize)]
struct EntryLine<'a> {
    name: &'a str,
    versions: &'a [Version],
    sha1: &'a str,
    size: u64,
    stored_size: u64,
    mtime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_since: Option<Version>,
    #[serde(skip_serializing_if = "<[Version]>::is_empty")]
    expired: &'a [Version],
}

#[derive(serde::Serialize)]
struct PurgedLine<'a> {
    purged: &'a str,
    versions: &'a [Version],
}

#[derive(serde::Serialize)]
struct EndLine {
    end: Trailer,
}

/// Any line after the header, as read.
#[derive(serde::Deserialize)]
struct Line {
    name: Option<String>,
    #[serde(default)]
    versions: Vec<Version>,
    sha1: Option<String>,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    stored_size: u64,
    #[serde(default)]
    mtime_ns: i64,
    missing_since: Option<Version>,
    #[serde(default)]
    expired: Vec<Version>,
    purged: Option<String>,
    end: Option<Trailer>,
}

/// Writes a manifest line by line into memory, compressed (tens of bytes per metric).
pub struct Writer {
    gz: GzEncoder<Vec<u8>>,
    started: Version,
    metrics: u64,
    missing: u64,
    last: String,
}

impl Writer {
    /// A manifest of `node`'s run started at `started`.
    pub fn new(node: &str, started: Version) -> Self {
        Self::with_capacity(node, started, 0)
    }

    /// A manifest expected to take about `bytes` compressed (the previous one's size, say): its
    /// buffer is sized once instead of doubling past it, which on a node of millions of metrics
    /// is tens of megabytes.
    pub fn with_capacity(node: &str, started: Version, bytes: usize) -> Self {
        let mut writer = Writer {
            gz: GzEncoder::new(Vec::with_capacity(bytes), Compression::default()),
            started,
            metrics: 0,
            missing: 0,
            last: String::new(),
        };
        writer.line(&Header {
            format: FORMAT,
            node: node.to_string(),
            started,
        });
        writer
    }

    fn line(&mut self, value: &impl serde::Serialize) {
        serde_json::to_writer(&mut self.gz, value).expect("writing to memory");
        self.gz.write_all(b"\n").expect("writing to memory");
    }

    fn order(&mut self, name: &str) {
        debug_assert!(
            self.last.is_empty() || self.last.as_str() < name,
            "manifest lines out of order: {name} after {}",
            self.last
        );
        self.last.clear();
        self.last.push_str(name);
    }

    /// A metric, with the versions its run expired; names strictly increasing.
    pub fn entry(&mut self, entry: &ManifestEntry, expired: &[Version]) {
        self.order(&entry.name);
        self.metrics += 1;
        self.missing += u64::from(entry.missing_since.is_some());
        self.line(&EntryLine {
            name: &entry.name,
            versions: &entry.versions,
            sha1: &entry.sha1,
            size: entry.size,
            stored_size: entry.stored_size,
            mtime_ns: entry.mtime_ns,
            missing_since: entry.missing_since,
            expired,
        });
    }

    /// A record as read from another manifest.
    pub fn record(&mut self, record: &Record) {
        match record {
            Record::Entry(entry, expired) => self.entry(entry, expired),
            Record::Purged(name, versions) => self.purged(name, versions),
        }
    }

    /// A metric purged, with every version it had.
    pub fn purged(&mut self, name: &str, versions: &[Version]) {
        self.order(name);
        self.line(&PurgedLine {
            purged: name,
            versions,
        });
    }

    /// Metric lines written so far.
    pub fn metrics(&self) -> u64 {
        self.metrics
    }

    /// Ends the manifest: its compressed bytes and summary.
    pub fn finish(mut self, finished: Version, stats: Option<RunStats>) -> (Vec<u8>, Summary) {
        let end = Trailer {
            finished,
            metrics: self.metrics,
            missing: self.missing,
            stats,
        };
        self.line(&EndLine { end });
        let mut bytes = self.gz.finish().expect("writing to memory");
        bytes.shrink_to_fit();
        let summary = Summary {
            started: self.started,
            finished,
            metrics: self.metrics,
            missing: self.missing,
            stats,
        };
        (bytes, summary)
    }
}

/// A reader that gives at most `left` bytes and then fails, so a bomb stops where it is seen.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(
                "the decompressed manifest is too large",
            ));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a manifest's records in name order from its compressed bytes, checking order, versions
/// and the end line as it goes. Reads format 1 (one JSON document) too, decoded whole.
pub struct Reader<'a> {
    lines: BufReader<Bounded<GzDecoder<&'a [u8]>>>,
    compressed: usize,
    limit: u64,
    node: String,
    started: Version,
    buf: Vec<u8>,
    last: String,
    metrics: u64,
    missing: u64,
    trailer: Option<Trailer>,
    failed: bool,
    v1: Option<std::vec::IntoIter<ManifestEntry>>,
}

impl<'a> Reader<'a> {
    /// Opens `bytes` and reads the header.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Format`].
    pub fn new(bytes: &'a [u8]) -> Result<Self, Error> {
        let limit = (bytes.len() as u64 * MAX_EXPANSION).max(MIN_EXPANDED_LIMIT);
        let mut reader = Reader {
            lines: BufReader::new(Bounded {
                inner: GzDecoder::new(bytes),
                left: limit,
            }),
            compressed: bytes.len(),
            limit,
            node: String::new(),
            started: Version(0),
            buf: Vec::new(),
            last: String::new(),
            metrics: 0,
            missing: 0,
            trailer: None,
            failed: false,
            v1: None,
        };
        if !reader.next_line()? {
            return Err(Error::Corrupt("empty manifest".into()));
        }
        #[derive(serde::Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format = serde_json::from_slice(&reader.buf).map_err(corrupt)?;
        match format.format {
            1 => reader.open_v1()?,
            FORMAT => {
                let header: Header = serde_json::from_slice(&reader.buf).map_err(corrupt)?;
                (reader.node, reader.started) = (header.node, header.started);
            }
            newer if newer > FORMAT => return Err(Error::Format(newer)),
            other => return Err(Error::Corrupt(format!("unknown manifest format {other}"))),
        }
        Ok(reader)
    }

    /// Format 1: the whole manifest on one line.
    fn open_v1(&mut self) -> Result<(), Error> {
        #[derive(serde::Deserialize)]
        struct V1 {
            node: String,
            started: Version,
            finished: Version,
            metrics: Vec<ManifestEntry>,
            #[serde(default)]
            stats: Option<RunStats>,
        }
        let v1: V1 = serde_json::from_slice(&self.buf).map_err(corrupt)?;
        self.buf = Vec::new();
        (self.node, self.started) = (v1.node, v1.started);
        self.trailer = Some(Trailer {
            finished: v1.finished,
            metrics: v1.metrics.len() as u64,
            missing: v1
                .metrics
                .iter()
                .filter(|e| e.missing_since.is_some())
                .count() as u64,
            stats: v1.stats,
        });
        self.v1 = Some(v1.metrics.into_iter());
        Ok(())
    }

    /// The next line into `buf`; false at the end of the stream.
    fn next_line(&mut self) -> Result<bool, Error> {
        self.buf.clear();
        let read = self.lines.read_until(b'\n', &mut self.buf);
        if self.lines.get_ref().left == 0 {
            return Err(Error::Corrupt(format!(
                "{} compressed bytes expand past {}: not a manifest bucky wrote",
                self.compressed, self.limit
            )));
        }
        Ok(read.map_err(|e| Error::Corrupt(e.to_string()))? > 0)
    }

    /// The host whose tree this is.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// When the run started (also its key).
    pub fn started(&self) -> Version {
        self.started
    }

    /// The end line, once every record has been read.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref().filter(|_| self.v1.is_none())
    }

    /// Reads the rest, checking it, and returns the end line.
    ///
    /// # Errors
    /// The first problem found.
    pub fn finish(mut self) -> Result<Trailer, Error> {
        for record in self.by_ref() {
            record?;
        }
        self.trailer
            .ok_or_else(|| Error::Corrupt("manifest has no end".into()))
    }

    fn checked(&mut self, record: Record) -> Result<Record, Error> {
        let name = record.name();
        if !self.last.is_empty() && self.last.as_str() >= name {
            return Err(Error::Corrupt(format!(
                "metrics are not sorted by name: {name} after {}",
                self.last
            )));
        }
        if let Record::Entry(entry, _) = &record
            && entry.versions.is_empty()
        {
            return Err(Error::Corrupt(format!("metric {name} has no version")));
        }
        self.last.clear();
        self.last.push_str(name);
        Ok(record)
    }

    fn read_record(&mut self) -> Result<Option<Record>, Error> {
        if let Some(v1) = &mut self.v1 {
            return match v1.next() {
                Some(entry) => self.checked(Record::Entry(entry, Vec::new())).map(Some),
                None => {
                    self.v1 = None;
                    Ok(None)
                }
            };
        }
        if self.trailer.is_some() {
            return match self.next_line()? {
                false => Ok(None),
                true => Err(Error::Corrupt("lines after the manifest's end".into())),
            };
        }
        if !self.next_line()? {
            return Err(Error::Corrupt(format!(
                "manifest cut off after {} metrics: no end line",
                self.metrics
            )));
        }
        let line: Line = serde_json::from_slice(&self.buf).map_err(corrupt)?;
        let record = match line {
            Line { end: Some(end), .. } => {
                if (end.metrics, end.missing) != (self.metrics, self.missing) {
                    return Err(Error::Corrupt(format!(
                        "manifest ends claiming {} metrics ({} missing) after {} ({})",
                        end.metrics, end.missing, self.metrics, self.missing
                    )));
                }
                self.trailer = Some(end);
                return self.read_record();
            }
            Line {
                purged: Some(name),
                versions,
                ..
            } => Record::Purged(name, versions),
            Line {
                name: Some(name),
                versions,
                sha1: Some(sha1),
                size,
                stored_size,
                mtime_ns,
                missing_since,
                expired,
                ..
            } => {
                self.metrics += 1;
                self.missing += u64::from(missing_since.is_some());
                Record::Entry(
                    ManifestEntry {
                        name,
                        versions,
                        sha1,
                        size,
                        stored_size,
                        mtime_ns,
                        missing_since,
                    },
                    expired,
                )
            }
            _ => return Err(Error::Corrupt("a line that is no metric".into())),
        };
        self.checked(record).map(Some)
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.read_record().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

fn corrupt(e: serde_json::Error) -> Error {
    Error::Corrupt(e.to_string())
}

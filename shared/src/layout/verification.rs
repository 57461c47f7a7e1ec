//! What verification found, kept in the bucket beside the manifests so any coordinator sees it:
//! `.bucky/verify/<TS>.json.gz`, one small record per verification run.
//!
//! A bucket's metrics fall into [`PARTS`] parts by a hash of the name (all versions of a metric in
//! the same part). A run verifies whole parts, so the record says which parts it covered and
//! lists only the versions it found corrupt: a record costs bytes per corrupt version, not per
//! version. Every version is verified within N days when each day verifies the `PARTS / N` parts
//! verified longest ago. A part verified again supersedes what earlier records said about it (a
//! version still corrupt is found again); a record whose every part a newer one covered says
//! nothing any more and is deleted.

use std::collections::BTreeMap;

use super::Version;

/// Parts a bucket's metrics are verified in.
pub const PARTS: u32 = 1000;

/// The format this code writes.
pub const FORMAT: u32 = 1;

/// The part of `metric` (FNV-1a of the name).
pub fn part_of(metric: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in metric.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(PARTS)) as u32
}

/// A share of a bucket as an operator writes it, `0.1` or `10%`, as a fraction in (0, 1].
///
/// # Errors
/// Not a number, or outside (0, 100%].
pub fn parse_share(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text, 1.0),
    };
    let share = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("'{text}' is not a share: write 0.1 or 10%"))?
        / scale;
    if share > 0.0 && share <= 1.0 {
        Ok(share)
    } else {
        Err(format!("share '{text}' is not within (0, 100%]"))
    }
}

/// A version verification found damaged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorruptVersion {
    /// Dotted metric name.
    pub metric: String,
    /// The version.
    pub version: Version,
    /// What was wrong.
    pub reason: String,
}

/// One verification run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyRecord {
    /// [`FORMAT`].
    pub format: u32,
    /// The bucket's host.
    pub node: String,
    /// When the run started (its key).
    pub started: Version,
    /// When it ended.
    pub finished: Version,
    /// The parts whose every version was read (a part with a version that could not be read,
    /// the store failing, is left out: it stays due).
    pub parts: Vec<u32>,
    /// Versions read.
    pub checked: u64,
    /// Of those, sound.
    pub ok: u64,
    /// Versions that could not be read (store errors): neither sound nor corrupt.
    pub unread: u64,
    /// The corrupt versions, by name.
    pub corrupt: Vec<CorruptVersion>,
    /// Corrupt versions a backup replaced with a sound upload and deleted: no longer corrupt.
    /// (A backup writes a record of these alone, with no parts.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<CorruptVersion>,
}

impl VerifyRecord {
    /// The record as stored: gzip-compressed JSON.
    pub fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        serde_json::to_writer(&mut gz, self).expect("a record serialises");
        gz.flush().expect("writing to memory");
        gz.finish().expect("writing to memory")
    }

    /// Parses a stored record.
    ///
    /// # Errors
    /// Not gzip, not a record, or a newer format.
    pub fn decode(bytes: &[u8]) -> Result<VerifyRecord, String> {
        use std::io::Read;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(64 << 20)
            .read_to_end(&mut json)
            .map_err(|e| format!("not gzip: {e}"))?;
        let record: VerifyRecord =
            serde_json::from_slice(&json).map_err(|e| format!("not a verify record: {e}"))?;
        if record.format > FORMAT {
            return Err(format!(
                "verify record format {} is newer than this bucky understands ({FORMAT})",
                record.format
            ));
        }
        Ok(record)
    }
}

/// What a bucket's verify records say, together.
#[derive(Debug, Clone)]
pub struct Trust {
    last_verified: Vec<Option<Version>>,
    corrupt: BTreeMap<(String, Version), String>,
    records: Vec<(Version, Vec<u32>)>,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            last_verified: vec![None; PARTS as usize],
            corrupt: BTreeMap::new(),
            records: Vec::new(),
        }
    }
}

/// How a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Its part was verified after it was stored, and it was sound.
    Verified,
    /// Not verified since it was stored.
    Unverified,
    /// Found damaged.
    Corrupt,
}

impl Trust {
    /// The records, added in any order.
    pub fn from_records(mut records: Vec<VerifyRecord>) -> Trust {
        records.sort_by_key(|r| r.started);
        let mut trust = Trust::default();
        for record in records {
            trust.add(record);
        }
        trust
    }

    /// Adds a record newer than every record added so far.
    pub fn add(&mut self, record: VerifyRecord) {
        let mut covered = vec![false; PARTS as usize];
        for &p in &record.parts {
            if let Some(slot) = self.last_verified.get_mut(p as usize) {
                *slot = Some(record.started);
                covered[p as usize] = true;
            }
        }
        self.corrupt
            .retain(|(metric, _), _| !covered[part_of(metric) as usize]);
        let mut touched = record.parts;
        for c in record.corrupt {
            touched.push(part_of(&c.metric));
            self.corrupt.insert((c.metric, c.version), c.reason);
        }
        for r in record.resolved {
            touched.push(part_of(&r.metric));
            self.corrupt.remove(&(r.metric, r.version));
        }
        self.records.push((record.started, touched));
    }

    /// Why `version` of `metric` is corrupt, if it was found so.
    pub fn corrupt_reason(&self, metric: &str, version: Version) -> Option<&str> {
        self.corrupt
            .get(&(metric.to_string(), version))
            .map(String::as_str)
    }

    /// How `version` of `metric` stands.
    pub fn standing(&self, metric: &str, version: Version) -> Standing {
        if self.corrupt_reason(metric, version).is_some() {
            return Standing::Corrupt;
        }
        match self.last_verified[part_of(metric) as usize] {
            Some(at) if at >= version => Standing::Verified,
            _ => Standing::Unverified,
        }
    }

    /// Every corrupt version: metric, version, reason, in name order.
    pub fn corrupt(&self) -> impl Iterator<Item = (&str, Version, &str)> {
        self.corrupt
            .iter()
            .map(|((m, v), r)| (m.as_str(), *v, r.as_str()))
    }

    /// The versions of `metric` found corrupt, oldest first.
    pub fn corrupt_versions(&self, metric: &str) -> Vec<Version> {
        let from = (metric.to_string(), Version(i64::MIN));
        self.corrupt
            .range(from..)
            .take_while(|((m, _), _)| m == metric)
            .map(|((_, v), _)| *v)
            .collect()
    }

    /// Corrupt versions known.
    pub fn corrupt_count(&self) -> usize {
        self.corrupt.len()
    }

    /// When the part verified longest ago was verified (`None`: a part never was).
    pub fn oldest(&self) -> Option<Version> {
        self.last_verified.iter().copied().min().flatten()
    }

    /// The newest verification.
    pub fn newest(&self) -> Option<Version> {
        self.records.last().map(|(at, _)| *at)
    }

    /// Parts not verified since `since`.
    pub fn parts_due(&self, since: Version) -> usize {
        self.last_verified
            .iter()
            .filter(|at| at.is_none_or(|at| at < since))
            .count()
    }

    /// The `n` parts verified longest ago (never verified first), in part order on a tie.
    pub fn stalest(&self, n: usize) -> Vec<u32> {
        let mut parts: Vec<u32> = (0..PARTS).collect();
        parts.sort_by_key(|&p| (self.last_verified[p as usize], p));
        parts.truncate(n);
        parts.sort_unstable();
        parts
    }

    /// Records whose every part (and the part of every metric they name) a newer record covered:
    /// they say nothing any more.
    pub fn superseded(&self) -> Vec<Version> {
        let mut covered = vec![false; PARTS as usize];
        let mut out = Vec::new();
        for (at, parts) in self.records.iter().rev() {
            if parts
                .iter()
                .all(|&p| covered.get(p as usize) == Some(&true))
            {
                out.push(*at);
            }
            for &p in parts {
                if let Some(c) = covered.get_mut(p as usize) {
                    *c = true;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at: i64, parts: Vec<u32>, corrupt: &[(&str, i64)]) -> VerifyRecord {
        VerifyRecord {
            format: FORMAT,
            node: "g1".into(),
            started: Version(at),
            finished: Version(at + 1),
            parts,
            checked: 0,
            ok: 0,
            unread: 0,
            corrupt: corrupt
                .iter()
                .map(|(m, v)| CorruptVersion {
                    metric: m.to_string(),
                    version: Version(*v),
                    reason: "SHA-1 differs".into(),
                })
                .collect(),
            resolved: Vec::new(),
        }
    }

    #[test]
    fn records_round_trip_and_refuse_what_is_not_one() {
        let r = record(10, vec![1, 2], &[("a.b", 5)]);
        assert_eq!(VerifyRecord::decode(&r.encode()).unwrap(), r);
        assert!(VerifyRecord::decode(b"junk").unwrap_err().contains("gzip"));
        let newer = VerifyRecord {
            format: FORMAT + 1,
            ..r
        };
        assert!(
            VerifyRecord::decode(&newer.encode())
                .unwrap_err()
                .contains("newer")
        );
    }

    #[test]
    fn a_part_verified_again_supersedes_what_was_said_of_it() {
        let (m, n) = ("servers.a.cpu", "servers.b.cpu");
        let (pm, pn) = (part_of(m), part_of(n));
        assert_ne!(pm, pn);
        let mut trust = Trust::from_records(vec![
            record(200, vec![pm], &[]),
            record(100, vec![pm, pn], &[(m, 50), (n, 60)]),
        ]);
        // m's part was verified again at 200 and found sound: only n stays corrupt.
        assert_eq!(trust.standing(m, Version(50)), Standing::Verified);
        assert_eq!(trust.standing(n, Version(60)), Standing::Corrupt);
        assert_eq!(trust.standing(m, Version(250)), Standing::Unverified);
        assert_eq!(trust.corrupt_count(), 1);
        assert!(trust.superseded().is_empty());
        trust.add(record(300, vec![pn], &[(n, 60)]));
        assert_eq!(trust.superseded(), [Version(100)]);
        assert_eq!(trust.standing(n, Version(60)), Standing::Corrupt);
        assert_eq!(trust.corrupt_versions(n), [Version(60)]);
        // A backup replaced it: its record of that alone clears it, and stays until n's part is
        // verified again.
        let replaced = VerifyRecord {
            resolved: vec![CorruptVersion {
                metric: n.into(),
                version: Version(60),
                reason: "replaced".into(),
            }],
            ..record(400, vec![], &[])
        };
        trust.add(replaced);
        assert_eq!(trust.corrupt_count(), 0);
        assert!(!trust.superseded().contains(&Version(400)));
        trust.add(record(500, vec![pn], &[]));
        assert!(trust.superseded().contains(&Version(400)));
    }

    #[test]
    fn the_stalest_parts_come_first_and_a_cycle_covers_every_part() {
        let mut trust = Trust::default();
        assert_eq!(trust.parts_due(Version(0)), PARTS as usize);
        let per_day = PARTS.div_ceil(30) as usize;
        for day in 0..30 {
            let parts = trust.stalest(per_day);
            trust.add(record(day * 86_400, parts, &[]));
        }
        assert_eq!(trust.parts_due(Version(0)), 0);
        assert_eq!(trust.oldest(), Some(Version(0)));
        // 30 slices of 34 parts overlap by 20: day 30 took the last 14 never verified and the
        // first 20 again; day 31 takes the rest of day 1's, which is then superseded.
        let again = trust.stalest(per_day);
        assert_eq!(again, (20..20 + per_day as u32).collect::<Vec<_>>());
        trust.add(record(30 * 86_400, again, &[]));
        assert_eq!(trust.superseded(), [Version(0)]);
    }

    #[test]
    fn shares_read_as_fractions_or_percentages() {
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("100%"), Ok(1.0));
        assert!(parse_share("0").unwrap_err().contains("within"));
        assert!(parse_share("150%").unwrap_err().contains("within"));
        assert!(parse_share("ten").unwrap_err().contains("not a share"));
    }

    #[test]
    fn parts_spread_names_evenly() {
        let mut counts = vec![0u32; PARTS as usize];
        for i in 0..100_000 {
            counts[part_of(&format!("servers.web{i}.cpu.user")) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 50 && *max < 150, "{min}..{max}");
    }
}

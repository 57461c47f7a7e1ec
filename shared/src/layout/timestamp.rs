//! Version timestamps: `YYYY-MM-DDTHH:MM:SS+00:00` in keys, ISO-8601 with any offset for
//! `--date`. Civil-date arithmetic after Howard Hinnant's `days_from_civil`.

use std::fmt;
use std::str::FromStr;

/// A point in time, whole seconds since the Unix epoch, shown as whisper-backup shows it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Version(pub i64);

impl Version {
    /// The current time, to the second.
    pub fn now() -> Version {
        Version(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        )
    }
}

/// A date that does not parse, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date '{0}': expected ISO-8601 such as 2026-11-21T10:00:00+00:00")]
pub struct BadDate(pub String);

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = (self.0.div_euclid(86_400), self.0.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Parses `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` (no offset means UTC) to Unix seconds.
///
/// # Errors
/// [`BadDate`] naming the text.
pub fn parse_date(text: &str) -> Result<Version, BadDate> {
    let bad = || BadDate(text.to_string());
    let num = |s: &str| -> Result<i64, BadDate> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let t = text.trim();
    let (date, rest) = t.split_at(t.find(['T', ' ']).unwrap_or(t.len()));
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts.as_slice() else {
        return Err(bad());
    };
    let (y, mo, d) = (num(y)?, num(mo)?, num(d)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let rest = rest.get(1..).unwrap_or("");
    let (time, offset) = match rest.find(['Z', '+', '-']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut hms = [0i64; 3];
    if !time.is_empty() {
        let time = time.split('.').next().unwrap_or("");
        let fields: Vec<&str> = time.split(':').collect();
        if fields.len() < 2 || fields.len() > 3 {
            return Err(bad());
        }
        for (slot, f) in hms.iter_mut().zip(&fields) {
            *slot = num(f)?;
        }
        if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
            return Err(bad());
        }
    }
    let offset_secs = match offset {
        "" | "Z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (h, m) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (num(h)? * 3600 + num(m)? * 60)
        }
    };
    let secs =
        days_from_civil(y, mo, d) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - offset_secs;
    Ok(Version(secs))
}

impl FromStr for Version {
    type Err = BadDate;

    fn from_str(s: &str) -> Result<Self, BadDate> {
        parse_date(s)
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.to_string()
    }
}

impl TryFrom<String> for Version {
    type Error = BadDate;

    fn try_from(s: String) -> Result<Self, BadDate> {
        parse_date(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        let v = Version(1_700_000_000);
        assert_eq!(v.to_string(), "2023-11-14T22:13:20+00:00");
        assert_eq!(parse_date("2023-11-14T22:13:20+00:00").unwrap(), v);
        assert_eq!(parse_date("2023-11-14T23:13:20+01:00").unwrap(), v);
        assert_eq!(parse_date("2023-11-14T22:13:20Z").unwrap(), v);
        assert_eq!(parse_date("2023-11-14T22:13:20.999Z").unwrap(), v);
        assert_eq!(parse_date("1970-01-01").unwrap(), Version(0));
        assert_eq!(Version(0).to_string(), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            parse_date("2000-02-29T12:00").unwrap().to_string(),
            "2000-02-29T12:00:00+00:00"
        );
    }

    #[test]
    fn every_day_round_trips() {
        for day in -800..80_000 {
            let v = Version(day * 86_400 + 3_723);
            assert_eq!(parse_date(&v.to_string()).unwrap(), v);
        }
    }

    #[test]
    fn garbage_is_refused_by_name() {
        for bad in [
            "",
            "yesterday",
            "2023-13-01",
            "2023-11-14T25:00",
            "2023-11-14T10",
        ] {
            assert!(
                parse_date(bad)
                    .unwrap_err()
                    .to_string()
                    .contains(&format!("'{bad}'"))
            );
        }
    }
}

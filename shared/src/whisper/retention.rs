//! Retention definitions such as `60s:30d` or `60:1440`, parsed as whisper.py's
//! `parseRetentionDef` does.

use std::fmt;

use super::{Error, Result};

/// One archive to create: precision and number of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveSpec {
    /// Seconds per point.
    pub seconds_per_point: u32,
    /// Number of points.
    pub points: u32,
}

impl ArchiveSpec {
    /// An archive of `points` points, `seconds_per_point` apart.
    pub fn new(seconds_per_point: u32, points: u32) -> Self {
        ArchiveSpec {
            seconds_per_point,
            points,
        }
    }

    /// Seconds of history: precision times points.
    pub fn retention(&self) -> u64 {
        u64::from(self.seconds_per_point) * u64::from(self.points)
    }
}

impl fmt::Display for ArchiveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seconds_per_point, self.points)
    }
}

const UNITS: [(&str, u64); 6] = [
    ("seconds", 1),
    ("minutes", 60),
    ("hours", 3600),
    ("days", 86400),
    ("weeks", 86400 * 7),
    ("years", 86400 * 365),
];

/// Parses `precision:retention`. A bare number of precision is seconds, a bare number of
/// retention is a point count; otherwise `<n><unit>` where unit is any prefix of seconds,
/// minutes, hours, days, weeks or years (`m` is minutes).
///
/// # Errors
/// [`Error::InvalidRetention`] naming the definition and the part that is wrong.
pub fn parse_retention(definition: &str) -> Result<ArchiveSpec> {
    let invalid = |reason: String| Error::InvalidRetention {
        definition: definition.to_string(),
        reason,
    };
    let (precision, retention) = definition
        .trim()
        .split_once(':')
        .ok_or_else(|| invalid("expected PRECISION:RETENTION".into()))?;
    let precision = if is_digits(precision) {
        parse_count(precision).map_err(&invalid)?
    } else {
        let (n, unit) = split_unit(precision)
            .ok_or_else(|| invalid(format!("invalid precision '{precision}'")))?;
        n.checked_mul(unit_seconds(unit).map_err(&invalid)?)
            .ok_or_else(|| invalid("precision too large".into()))?
    };
    if precision == 0 {
        return Err(invalid("precision must be at least one second".into()));
    }
    let points = if is_digits(retention) {
        parse_count(retention).map_err(&invalid)?
    } else {
        let (n, unit) = split_unit(retention)
            .ok_or_else(|| invalid(format!("invalid retention '{retention}'")))?;
        n.checked_mul(unit_seconds(unit).map_err(&invalid)?)
            .ok_or_else(|| invalid("retention too large".into()))?
            / precision
    };
    let to_u32 = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| invalid(format!("{what} {v} does not fit in 32 bits")))
    };
    Ok(ArchiveSpec {
        seconds_per_point: to_u32(precision, "precision")?,
        points: to_u32(points, "point count")?,
    })
}

/// Parses several definitions, e.g. `["60s:30d", "15m:2y"]`.
///
/// # Errors
/// The first definition that does not parse.
pub fn parse_retentions<S: AsRef<str>>(definitions: &[S]) -> Result<Vec<ArchiveSpec>> {
    definitions
        .iter()
        .map(|d| parse_retention(d.as_ref()))
        .collect()
}

/// Parses a duration in retention's units: `6h`, `90m`, `2d`, `1w`; a bare number is seconds.
///
/// # Errors
/// The text, and what is wrong with it.
pub fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    if is_digits(text) {
        return parse_count(text);
    }
    let (n, unit) = split_unit(text).ok_or_else(|| {
        format!("invalid duration '{text}': expected a number and a unit (6h, 2d)")
    })?;
    n.checked_mul(unit_seconds(unit).map_err(|e| format!("invalid duration '{text}': {e}"))?)
        .ok_or_else(|| format!("duration '{text}' is too large"))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_count(s: &str) -> std::result::Result<u64, String> {
    s.parse().map_err(|_| format!("number '{s}' is too large"))
}

/// `<digits><lowercase letters>`, as whisper's `^(\d+)([a-z]+)$`.
fn split_unit(s: &str) -> Option<(u64, &str)> {
    let at = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at(at);
    if digits.is_empty() || !unit.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Some((digits.parse().ok()?, unit))
}

fn unit_seconds(unit: &str) -> std::result::Result<u64, String> {
    UNITS
        .iter()
        .find(|(name, _)| name.starts_with(unit))
        .map(|&(_, seconds)| seconds)
        .ok_or_else(|| format!("invalid unit '{unit}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whisper_forms() {
        assert_eq!(
            parse_retention("60s:30d").unwrap(),
            ArchiveSpec::new(60, 43200)
        );
        assert_eq!(
            parse_retention("15m:2y").unwrap(),
            ArchiveSpec::new(900, 70080)
        );
        assert_eq!(
            parse_retention("60:1440").unwrap(),
            ArchiveSpec::new(60, 1440)
        );
        assert_eq!(
            parse_retention(" 1min:1w ").unwrap(),
            ArchiveSpec::new(60, 10080)
        );
        assert_eq!(
            parse_retention("1h:7days").unwrap(),
            ArchiveSpec::new(3600, 168)
        );
        assert_eq!(
            parse_retention("10s:6h").unwrap(),
            ArchiveSpec::new(10, 2160)
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        for (def, needle) in [
            ("60s", "PRECISION:RETENTION"),
            ("60x:1d", "invalid unit 'x'"),
            ("1mo:1y", "invalid unit 'mo'"),
            ("s:1d", "invalid precision 's'"),
            ("60s:1D", "invalid retention '1D'"),
            ("0:10", "at least one second"),
        ] {
            let err = parse_retention(def).unwrap_err().to_string();
            assert!(err.contains(needle), "{def}: {err}");
        }
    }

    #[test]
    fn durations_take_retention_units() {
        assert_eq!(parse_duration("6h"), Ok(6 * 3600));
        assert_eq!(parse_duration("90m"), Ok(90 * 60));
        assert_eq!(parse_duration("2d"), Ok(2 * 86400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("6 hours").is_err());
        assert!(parse_duration("3x").unwrap_err().contains("3x"));
    }
}

//! Which versions to keep, by count and by age class, as restic's `forget` keeps snapshots:
//! the newest `last`; the newest of each of the `daily` most recent days that have a version;
//! likewise per ISO week (`weekly`) and per calendar month (`monthly`), all in UTC. A version is
//! kept when any rule keeps it, and the newest is always kept.
//!
//! Applied every run to what exists, the rules give the same result as applied once at the end:
//! a version kept at the end was the newest of its day (week, month) at every earlier run too,
//! and had no more newer days before it. So a policy can be changed and takes effect at the next
//! run, and an interrupted run loses nothing.

use super::Version;
use super::timestamp::civil_from_days;

/// A retention policy. The default keeps the newest 5 and no age classes (bucky's behaviour
/// before age classes existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// The newest this many (at least 1).
    pub last: usize,
    /// The newest of each of this many most recent days with a version.
    pub daily: usize,
    /// The newest of each of this many most recent ISO weeks (Monday to Sunday) with a version.
    pub weekly: usize,
    /// The newest of each of this many most recent calendar months with a version.
    pub monthly: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention::last(5)
    }
}

impl Retention {
    /// Keep only the newest `n`.
    pub fn last(n: usize) -> Self {
        Retention {
            last: n,
            daily: 0,
            weekly: 0,
            monthly: 0,
        }
    }

    /// Whether each of `versions` (oldest first, as manifests list them) is kept.
    pub fn keeps(&self, versions: &[Version]) -> Vec<bool> {
        let mut keep = vec![false; versions.len()];
        let mut last = self.last.max(1);
        let mut classes = [
            (self.daily, None, day as fn(Version) -> i64),
            (self.weekly, None, week),
            (self.monthly, None, month),
        ];
        for (i, v) in versions.iter().enumerate().rev() {
            if last > 0 {
                last -= 1;
                keep[i] = true;
            }
            for (left, seen, period) in &mut classes {
                let p = period(*v);
                if *left > 0 && *seen != Some(p) {
                    *left -= 1;
                    *seen = Some(p);
                    keep[i] = true;
                }
            }
        }
        keep
    }

    /// Removes from `versions` (oldest first) what the policy does not keep, and returns it.
    pub fn expire(&self, versions: &mut Vec<Version>) -> Vec<Version> {
        let keeps = self.keeps(versions);
        let mut expired = Vec::new();
        let mut flags = keeps.into_iter();
        versions.retain(|v| {
            let kept = flags.next().unwrap_or(true);
            if !kept {
                expired.push(*v);
            }
            kept
        });
        expired
    }

    /// "5 last, 7 daily, 4 weekly, 12 monthly", for reports.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} last", self.last.max(1))];
        for (n, what) in [
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

fn day(v: Version) -> i64 {
    v.0.div_euclid(86_400)
}

/// The Monday of the version's ISO week, in days since the epoch (a Thursday).
fn week(v: Version) -> i64 {
    let d = day(v);
    d - (d + 3).rem_euclid(7)
}

fn month(v: Version) -> i64 {
    let (y, m, _) = civil_from_days(day(v));
    y * 12 + m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> Version {
        super::super::parse_date(date).unwrap()
    }

    #[test]
    fn the_default_keeps_the_newest_five() {
        let mut versions: Vec<Version> = (0..8).map(|i| Version(i * 60)).collect();
        let expired = Retention::default().expire(&mut versions);
        assert_eq!(expired, (0..3).map(|i| Version(i * 60)).collect::<Vec<_>>());
        assert_eq!(versions.len(), 5);
    }

    #[test]
    fn the_newest_is_kept_whatever_the_policy() {
        let none = Retention {
            last: 0,
            ..Retention::last(0)
        };
        let mut versions = vec![Version(1), Version(2)];
        none.expire(&mut versions);
        assert_eq!(versions, [Version(2)]);
    }

    #[test]
    fn a_year_of_daily_runs_keeps_each_class_exactly() {
        let policy = Retention {
            last: 7,
            daily: 30,
            weekly: 8,
            monthly: 12,
        };
        // Every day of 2026 at 02:00, expired as each run would, one at a time.
        let first = at("2026-01-01T02:00:00Z");
        let mut versions = Vec::new();
        for d in 0..365 {
            versions.push(Version(first.0 + d * 86_400));
            policy.expire(&mut versions);
        }
        let mut want: Vec<String> = (2..=31).map(|d| format!("2026-12-{d:02}")).collect();
        // Weeks 46-48 (Sundays); weeks 49-53 end inside the 30 days.
        want.extend(["2026-11-15", "2026-11-22", "2026-11-29"].map(String::from));
        // Month ends from January to November.
        want.extend(
            [
                "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30",
                "10-31", "11-30",
            ]
            .map(|md| format!("2026-{md}")),
        );
        want.sort();
        let got: Vec<String> = versions
            .iter()
            .map(|v| v.to_string()[..10].to_string())
            .collect();
        assert_eq!(got, want);
        // Applied once to the whole year, the same.
        let mut whole: Vec<Version> = (0..365).map(|d| Version(first.0 + d * 86_400)).collect();
        policy.expire(&mut whole);
        assert_eq!(whole, versions);
    }

    #[test]
    fn several_versions_a_day_keep_the_newest_of_the_day() {
        let policy = Retention {
            last: 1,
            daily: 3,
            ..Retention::last(1)
        };
        let mut versions: Vec<Version> = (0..12)
            .map(|h| Version(at("2026-03-01T00:00:00Z").0 + h * 6 * 3600))
            .collect();
        policy.expire(&mut versions);
        let got: Vec<String> = versions.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "2026-03-01T18:00:00+00:00",
                "2026-03-02T18:00:00+00:00",
                "2026-03-03T18:00:00+00:00"
            ]
        );
    }
}

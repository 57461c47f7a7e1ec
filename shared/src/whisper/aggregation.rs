//! Whisper's eight aggregation methods, computed exactly as whisper.py's `aggregate` does.

use std::fmt;
use std::str::FromStr;

use super::Error;

/// How a lower-precision archive summarises the points of a higher one (header field 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Mean of the known values (id 1, whisper's default).
    Average,
    /// Sum of the known values (id 2).
    Sum,
    /// The newest known value (id 3).
    Last,
    /// The largest known value (id 4).
    Max,
    /// The smallest known value (id 5).
    Min,
    /// Sum of the known values divided by the number of slots, unknown counting as 0 (id 6).
    AvgZero,
    /// The known value with the largest magnitude (id 7).
    Absmax,
    /// The known value with the smallest magnitude (id 8).
    Absmin,
}

impl Aggregation {
    /// Every method, in id order.
    pub const ALL: [Aggregation; 8] = [
        Aggregation::Average,
        Aggregation::Sum,
        Aggregation::Last,
        Aggregation::Max,
        Aggregation::Min,
        Aggregation::AvgZero,
        Aggregation::Absmax,
        Aggregation::Absmin,
    ];

    /// The method stored as `id` in a header, if it is one whisper knows.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL
            .get(usize::try_from(id).ok()?.checked_sub(1)?)
            .copied()
    }

    /// The id stored in the header.
    pub fn id(self) -> u32 {
        Self::ALL
            .iter()
            .position(|&m| m == self)
            .expect("ALL lists every variant") as u32
            + 1
    }

    /// whisper.py's name for the method.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Average => "average",
            Aggregation::Sum => "sum",
            Aggregation::Last => "last",
            Aggregation::Max => "max",
            Aggregation::Min => "min",
            Aggregation::AvgZero => "avg_zero",
            Aggregation::Absmax => "absmax",
            Aggregation::Absmin => "absmin",
        }
    }

    /// Aggregates one lower interval. `slots` are the higher archive's slots in time order, `None`
    /// where unknown; at least one must be known. CPython's `sum` adds floats left to right from
    /// 0.0, and `max`/`min` keep the first of equal candidates: both matter for the last bit.
    pub(crate) fn apply(self, slots: &[Option<f64>]) -> f64 {
        let known = || slots.iter().flatten().copied();
        let first = known().next().expect("aggregate needs a known value");
        let keep_first_by = |better: fn(f64, f64) -> bool| {
            known().fold(first, |best, v| if better(v, best) { v } else { best })
        };
        match self {
            Aggregation::Average => py_sum(known()) / known().count() as f64,
            Aggregation::Sum => py_sum(known()),
            Aggregation::Last => known().last().expect("a known value exists"),
            Aggregation::Max => keep_first_by(|v, best| v > best),
            Aggregation::Min => keep_first_by(|v, best| v < best),
            Aggregation::Absmax => keep_first_by(|v, best| v.abs() > best.abs()),
            Aggregation::Absmin => keep_first_by(|v, best| v.abs() < best.abs()),
            Aggregation::AvgZero => {
                // `x or 0`: unknown and 0.0 both count as 0; NaN is truthy and stays.
                py_sum(slots.iter().map(|v| v.unwrap_or(0.0))) / slots.len() as f64
            }
        }
    }
}

/// CPython 3.11's `sum()` of floats: plain left-to-right addition starting from 0.0.
fn py_sum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |acc, v| acc + v)
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aggregation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::UnknownAggregation(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for m in Aggregation::ALL {
            assert_eq!(Aggregation::from_id(m.id()), Some(m));
            assert_eq!(m.name().parse::<Aggregation>().unwrap(), m);
        }
        assert_eq!(Aggregation::from_id(0), None);
        assert_eq!(Aggregation::from_id(9), None);
        assert!("median".parse::<Aggregation>().is_err());
    }

    #[test]
    fn ties_keep_the_first_value_in_time_order() {
        let slots = [Some(-3.0), None, Some(3.0), Some(1.0)];
        assert_eq!(Aggregation::Absmax.apply(&slots), -3.0);
        let slots = [Some(1.0), Some(-1.0)];
        assert_eq!(Aggregation::Absmin.apply(&slots), 1.0);
    }

    #[test]
    fn avg_zero_counts_unknown_slots_as_zero() {
        let slots = [Some(4.0), None, None, Some(4.0)];
        assert_eq!(Aggregation::AvgZero.apply(&slots), 2.0);
        assert_eq!(Aggregation::Average.apply(&slots), 4.0);
        assert_eq!(Aggregation::Last.apply(&[Some(1.0), Some(2.0), None]), 2.0);
    }

    #[test]
    fn sums_left_to_right_like_cpython_311() {
        // Compensated summation would give 1e16 + 2; CPython 3.11's plain sum gives 1e16.
        let slots = [Some(1e16), Some(1.0), Some(1.0)];
        assert_eq!(Aggregation::Sum.apply(&slots), 1e16);
    }
}

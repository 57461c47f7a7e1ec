//! The metrics a job could not handle: a count, and the first few by name with their reasons.
//! A node of millions of metrics can fail millions of times (a store that died); a report, its
//! gRPC message and the operator's screen hold a bounded list and the number.

/// Failures kept by name; the count goes on.
pub const NAMED_FAILURES: usize = 100;

/// One metric a job could not handle; its previous state is kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileFailure {
    /// The metric.
    pub metric: String,
    /// Why.
    pub error: String,
}

/// Every failure counted, the first [`NAMED_FAILURES`] kept.
pub type Failures = Sample<FileFailure, NAMED_FAILURES>;

/// Items of one kind a job met: every one counted, the first `CAP` kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sample<T, const CAP: usize> {
    count: u64,
    first: Vec<T>,
}

impl<T, const CAP: usize> Default for Sample<T, CAP> {
    fn default() -> Self {
        Sample {
            count: 0,
            first: Vec::new(),
        }
    }
}

impl<T, const CAP: usize> Sample<T, CAP> {
    /// Records one.
    pub fn push(&mut self, item: T) {
        self.count += 1;
        if self.first.len() < CAP {
            self.first.push(item);
        }
    }

    /// How many.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first ones, in the order they came.
    pub fn first(&self) -> &[T] {
        &self.first
    }

    /// How many beyond those kept.
    pub fn unnamed(&self) -> u64 {
        self.count - self.first.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_everything_and_keeps_the_first() {
        let mut f = Failures::default();
        assert!(f.is_empty());
        for i in 0..NAMED_FAILURES + 5 {
            f.push(FileFailure {
                metric: format!("m{i}"),
                error: "e".into(),
            });
        }
        assert_eq!(f.len(), NAMED_FAILURES as u64 + 5);
        assert_eq!(f.first().len(), NAMED_FAILURES);
        assert_eq!(f.first()[0].metric, "m0");
        assert_eq!(f.unnamed(), 5);
    }
}

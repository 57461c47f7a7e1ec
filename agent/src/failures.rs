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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Failures {
    count: u64,
    first: Vec<FileFailure>,
}

impl Failures {
    /// Records a failure.
    pub fn push(&mut self, failure: FileFailure) {
        self.count += 1;
        if self.first.len() < NAMED_FAILURES {
            self.first.push(failure);
        }
    }

    /// How many failed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether none failed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first failures, in the order they happened.
    pub fn first(&self) -> &[FileFailure] {
        &self.first
    }

    /// How many failed beyond those kept by name.
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

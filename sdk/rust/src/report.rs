//! Building the outcome of a batch: [`BatchReport`] and [`SinkError`].

use crate::{BatchReport, ErrorKind, MessageFailure, SinkError};

impl SinkError {
    /// An error retrying can fix (destination unavailable, I/O error): the
    /// host retries later. `message` must hold no payload bytes or secrets.
    ///
    /// ```
    /// let err = sinkhost_sdk::SinkError::transient("disk full");
    /// assert_eq!(err.kind, sinkhost_sdk::ErrorKind::Transient);
    /// ```
    pub fn transient(message: impl Into<String>) -> SinkError {
        SinkError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    /// An error no retry can fix (bad data): the host dead-letters the
    /// message. `message` must hold no payload bytes or secrets.
    ///
    /// ```
    /// let err = sinkhost_sdk::SinkError::permanent("payload is not JSON");
    /// assert_eq!(err.kind, sinkhost_sdk::ErrorKind::Permanent);
    /// ```
    pub fn permanent(message: impl Into<String>) -> SinkError {
        SinkError {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    /// Whether the host will retry.
    ///
    /// ```
    /// assert!(sinkhost_sdk::SinkError::transient("x").is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

impl BatchReport {
    /// Every message of the batch stored.
    ///
    /// ```
    /// assert!(sinkhost_sdk::BatchReport::all_stored().failures.is_empty());
    /// ```
    pub fn all_stored() -> BatchReport {
        BatchReport {
            failures: Vec::new(),
        }
    }

    /// Records that message `index` of the batch was not stored.
    ///
    /// ```
    /// use sinkhost_sdk::{BatchReport, SinkError};
    /// let mut report = BatchReport::all_stored();
    /// report.fail(2, SinkError::permanent("not JSON"));
    /// assert_eq!(report.failures[0].index, 2);
    /// ```
    pub fn fail(&mut self, index: usize, error: SinkError) {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.failures.push(MessageFailure { index, error });
    }

    /// Stores each message with `store`, collecting its failures: the usual
    /// shape of `write_batch` for a sink that stores messages one by one.
    ///
    /// ```
    /// use sinkhost_sdk::{BatchReport, Envelope, SinkError};
    /// let batch = [Envelope::new("S", 1, "a", b"{}".to_vec()), Envelope::new("S", 2, "a", b"x".to_vec())];
    /// let report = BatchReport::each(&batch, |envelope| {
    ///     envelope.payload_json().map(|_| ()).map_err(SinkError::permanent)
    /// });
    /// assert_eq!(report.failures.len(), 1);
    /// assert_eq!(report.failures[0].index, 1);
    /// ```
    pub fn each<T>(batch: &[T], mut store: impl FnMut(&T) -> Result<(), SinkError>) -> BatchReport {
        let mut report = BatchReport::all_stored();
        for (index, item) in batch.iter().enumerate() {
            if let Err(error) = store(item) {
                report.fail(index, error);
            }
        }
        report
    }
}

//! The state behind [`export_sink!`](crate::export_sink): the one [`Sink`]
//! value of this instance, created by `init` and used by `write-batch`.
//! Not part of the API (the macro's expansion calls it); native tests use it
//! to drive a sink the way the host does.

use std::any::Any;
use std::cell::RefCell;

use crate::{BatchReport, Envelope, Sink, SinkError};

thread_local! {
    /// The instance's sink. A component instance is single-threaded.
    static SINK: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// `init`: builds the sink from `config` and keeps it (replacing any
/// previous one).
///
/// ```
/// # use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};
/// struct Nothing;
/// impl Sink for Nothing {
///     fn init(_: &str) -> Result<Self, String> { Ok(Nothing) }
///     fn write_batch(&mut self, _: &[Envelope]) -> Result<BatchReport, SinkError> { Ok(BatchReport::all_stored()) }
/// }
/// sinkhost_sdk::runtime::init::<Nothing>("{}").unwrap();
/// ```
pub fn init<S: Sink>(config: &str) -> Result<(), String> {
    let sink = S::init(config)?;
    SINK.with(|slot| *slot.borrow_mut() = Some(Box::new(sink)));
    Ok(())
}

/// `write-batch`: hands `batch` to the sink kept by [`init`]. Before `init`
/// (which the host never does) the whole batch fails permanently.
///
/// ```
/// # use sinkhost_sdk::{BatchReport, Envelope, Sink, SinkError};
/// struct Nothing;
/// impl Sink for Nothing {
///     fn init(_: &str) -> Result<Self, String> { Ok(Nothing) }
///     fn write_batch(&mut self, _: &[Envelope]) -> Result<BatchReport, SinkError> { Ok(BatchReport::all_stored()) }
/// }
/// sinkhost_sdk::runtime::init::<Nothing>("{}").unwrap();
/// assert!(sinkhost_sdk::runtime::write_batch::<Nothing>(&[]).is_ok());
/// ```
pub fn write_batch<S: Sink>(batch: &[Envelope]) -> Result<BatchReport, SinkError> {
    SINK.with(|slot| {
        let mut slot = slot
            .try_borrow_mut()
            .map_err(|_| SinkError::permanent("write-batch re-entered"))?;
        let sink = slot
            .as_mut()
            .and_then(|sink| sink.downcast_mut::<S>())
            .ok_or_else(|| SinkError::permanent("write-batch before init"))?;
        sink.write_batch(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(usize);

    impl Sink for Counting {
        fn init(config: &str) -> Result<Self, String> {
            match config {
                "bad" => Err("sink.x: bad".into()),
                _ => Ok(Counting(0)),
            }
        }
        fn write_batch(&mut self, batch: &[Envelope]) -> Result<BatchReport, SinkError> {
            self.0 += batch.len();
            let mut report = BatchReport::all_stored();
            if self.0 > 2 {
                report.fail(0, SinkError::transient("full"));
            }
            Ok(report)
        }
    }

    #[test]
    fn write_before_init_fails_permanently() {
        std::thread::spawn(|| {
            let err = write_batch::<Counting>(&[]).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Permanent);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn init_keeps_state_across_batches() {
        std::thread::spawn(|| {
            assert_eq!(init::<Counting>("bad").unwrap_err(), "sink.x: bad");
            init::<Counting>("{}").unwrap();
            let one = Envelope::new("S", 1, "a", Vec::new());
            assert!(write_batch::<Counting>(&[one.clone(), one.clone()])
                .unwrap()
                .failures
                .is_empty());
            assert_eq!(write_batch::<Counting>(&[one]).unwrap().failures.len(), 1);
        })
        .join()
        .unwrap();
    }
}

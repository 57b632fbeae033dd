//! The recorder's errors: [`RecorderError`] for appends, waits and closing,
//! [`StartError`] for starting, and [`Failure`], the I/O thread's error kept whole.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fswal_core::event::EventDefect;

/// Why the I/O thread stopped: the writer's error, kept whole (its type, its device
/// error's kind, file and offset), shared by every call that reports it.
#[derive(Clone)]
pub struct Failure {
    error: Arc<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// Wraps the error the I/O thread stopped on.
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            error: Arc::new(error),
        }
    }

    /// A failure with no error value underneath (the thread panicked).
    pub(crate) fn message(text: &'static str) -> Self {
        Self::new(Message(text))
    }

    /// The error the I/O thread stopped on: a `fswal_core::Error` over the store's
    /// error type, which callers that know the store downcast to.
    #[must_use]
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.error.as_ref()
    }

    /// The kind of the I/O error at the bottom of the chain, when there is one (a file
    /// backend's error keeps it).
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self.error.as_ref());
        // The chain is finite (each error owns its source); bounded anyway.
        for _ in 0..CHAIN_DEPTH_MAX {
            let e = next?;
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return Some(io.kind());
            }
            next = e.source();
        }
        None
    }
}

/// The most errors [`Failure::io_kind`] looks through.
const CHAIN_DEPTH_MAX: usize = 16;

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Two failures are equal when they are the same one (shared by the calls that
/// report it), or say the same.
impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.error, &other.error) || self.to_string() == other.to_string()
    }
}

impl Eq for Failure {}

/// An error that is only a text.
#[derive(Debug)]
struct Message(&'static str);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Message {}

/// Why the recorder did not take an event, or stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecorderError {
    /// The event is not valid (id 0, an undefined enum value, non-zero padding).
    InvalidEvent {
        /// Its id.
        event_id: u64,
        /// What is wrong.
        defect: EventDefect,
    },
    /// Its id is not greater than the last appended one.
    EventIdNotIncreasing {
        /// Its id.
        event_id: u64,
        /// The last appended id.
        last_event_id: u64,
    },
    /// The I/O thread stopped on an error; nothing past the durable watermark may be
    /// acknowledged. Reopen the log to recover.
    Stopped(Failure),
    /// The ring stayed full for [`crate::RecorderConfig::append_wait_max`]: the I/O
    /// thread takes no events (a device that stopped answering). The event was not
    /// appended; nothing past the durable watermark may be acknowledged.
    IoThreadStuck {
        /// The event that could not be appended.
        event_id: u64,
        /// How long the append waited.
        waited: Duration,
        /// The durable watermark at that moment.
        durable_event_id: u64,
    },
    /// Waiting for durability timed out.
    TimedOut {
        /// The id waited for.
        event_id: u64,
        /// The watermark reached.
        durable_event_id: u64,
    },
}

impl RecorderError {
    /// The kind of the I/O error underneath, when the I/O thread stopped on one.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Stopped(f) => f.io_kind(),
            _ => None,
        }
    }
}

impl fmt::Display for RecorderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent { event_id, defect } => {
                write!(f, "event {event_id} refused: {defect}")
            }
            Self::EventIdNotIncreasing {
                event_id,
                last_event_id,
            } => write!(
                f,
                "event {event_id} refused: its id is not greater than the last appended {last_event_id}"
            ),
            Self::Stopped(why) => write!(f, "the recorder stopped: {why}"),
            Self::IoThreadStuck {
                event_id,
                waited,
                durable_event_id,
            } => write!(
                f,
                "event {event_id} not appended: the I/O thread took no event for {} ms (the ring stayed full; durable through {durable_event_id})",
                waited.as_millis()
            ),
            Self::TimedOut {
                event_id,
                durable_event_id,
            } => write!(
                f,
                "event {event_id} not durable in time (durable through {durable_event_id})"
            ),
        }
    }
}

impl std::error::Error for RecorderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Stopped(f) => Some(f.error()),
            _ => None,
        }
    }
}

/// Why [`crate::Recorder::start`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError<E> {
    /// Opening (recovering) the log failed: the writer's error, with the store's.
    Open(fswal_core::Error<E>),
    /// A thread could not be started; the log was recovered but nothing was appended.
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl<E: fmt::Display> fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => write!(f, "{e}"),
            Self::Spawn { thread, source } => {
                write!(
                    f,
                    "could not start the recorder's {thread} thread: {source}"
                )
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for StartError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open(e) => Some(e),
            Self::Spawn { source, .. } => Some(source),
        }
    }
}

impl<E> From<fswal_core::Error<E>> for StartError<E> {
    fn from(e: fswal_core::Error<E>) -> Self {
        Self::Open(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_io_kind_is_found_through_the_chain() {
        let file = io::Error::new(io::ErrorKind::StorageFull, "no space");
        let core: fswal_core::Error<io::Error> = fswal_core::Error::Device(file);
        let stopped = RecorderError::Stopped(Failure::new(core));
        assert_eq!(stopped.io_kind(), Some(io::ErrorKind::StorageFull));
        assert!(stopped.to_string().contains("no space"), "{stopped}");
        let bug = RecorderError::Stopped(Failure::message("the I/O thread panicked"));
        assert_eq!(bug.io_kind(), None);
    }
}

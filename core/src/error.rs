//! Errors of the writer and of replay, generic over the device's error type.
//!
//! Damage found on disk is not an error of replay (it is an [`crate::issue::Issue`],
//! reported and classified); it becomes an error only where an operation cannot go on
//! safely because of it, such as opening a damaged log for append.

use core::fmt;

use crate::event::EventDefect;
use crate::issue::{Issue, Status};

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    /// The device or store failed.
    Device(E),
    /// The event is not valid (id 0, an undefined enum value, non-zero padding).
    /// Nothing was written.
    InvalidEvent {
        /// The event's id.
        event_id: u64,
        /// What is wrong with it.
        defect: EventDefect,
    },
    /// The event's id is not greater than the last id in the log. Nothing was written.
    EventIdNotIncreasing {
        /// The event's id.
        event_id: u64,
        /// The last id in the log.
        last_event_id: u64,
    },
    /// An earlier write or sync failed, so what the device holds is unknown: the
    /// writer accepts nothing more. Reopen the log to recover.
    Poisoned,
    /// The log is damaged before its end, so appending to it could bury the damage;
    /// nothing was changed.
    Damaged {
        /// The first problem found.
        issue: Issue,
        /// Whether valid data follows it.
        status: Status,
    },
    /// The checkpoint says events up to `durable_event_id` were made durable, but the
    /// log's valid prefix ends at `found_event_id`: data a sync covered is gone.
    /// Nothing was changed. (Deleting both watermark records, the checkpoint and the
    /// sync mark, accepts the loss.)
    DurableDataMissing {
        /// The last event the checkpoint recorded as durable.
        durable_event_id: u64,
        /// The last event of the log's valid prefix (0: none).
        found_event_id: u64,
        /// The first problem replay found, if any.
        issue: Option<Issue>,
    },
    /// The block a durable watermark record names is not where it says: the log is not
    /// the history that was acknowledged (segments deleted and rewritten behind
    /// fswal's back), even if its ids still climb. Nothing was changed.
    HistoryReplaced {
        /// Where the log and the record disagree ([`crate::issue::Reason::WatermarkMismatch`]).
        issue: Issue,
    },
    /// A configuration value is out of range.
    InvalidConfig(&'static str),
    /// The next segment would need an index above 99 999 999.
    SegmentIndexExhausted,
    /// A segment the store just listed or created is not there.
    SegmentVanished {
        /// Its index.
        segment: u32,
    },
    /// An internal invariant does not hold: a bug in fswal, reported instead of a panic.
    LogicBug(&'static str),
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Self::Device(e)
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "{e}"),
            Self::InvalidEvent { event_id, defect } => {
                write!(f, "event {event_id} refused: {defect}")
            }
            Self::EventIdNotIncreasing {
                event_id,
                last_event_id,
            } => write!(
                f,
                "event {event_id} refused: its id is not greater than the last event id {last_event_id}"
            ),
            Self::Poisoned => f.write_str(
                "an earlier write or sync failed; the writer stopped (reopen the log to recover)",
            ),
            Self::Damaged { issue, status } => write!(
                f,
                "log is {status} at {issue}; refusing to append (nothing was changed)"
            ),
            Self::DurableDataMissing {
                durable_event_id,
                found_event_id,
                issue,
            } => {
                write!(
                    f,
                    "events up to {durable_event_id} were made durable, but the log ends at event {found_event_id}"
                )?;
                if let Some(issue) = issue {
                    write!(f, " ({issue})")?;
                }
                f.write_str("; refusing to append (nothing was changed)")
            }
            Self::HistoryReplaced { issue } => {
                write!(f, "{issue}; refusing to append (nothing was changed)")
            }
            Self::InvalidConfig(what) => write!(f, "invalid configuration: {what}"),
            Self::SegmentIndexExhausted => f.write_str("no segment index left (limit 99999999)"),
            Self::SegmentVanished { segment } => {
                write!(f, "segment {segment} disappeared while in use")
            }
            Self::LogicBug(what) => write!(f, "internal error (a bug in fswal): {what}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Error<E> {
    /// The device error, for a device failure: its kind, file and offset stay
    /// reachable through the error chain.
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Device(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> Error<E> {
    /// Applies `f` to the device error, keeping every other variant.
    pub fn map_device<F, G: FnOnce(E) -> F>(self, g: G) -> Error<F> {
        match self {
            Self::Device(e) => Error::Device(g(e)),
            Self::InvalidEvent { event_id, defect } => Error::InvalidEvent { event_id, defect },
            Self::EventIdNotIncreasing {
                event_id,
                last_event_id,
            } => Error::EventIdNotIncreasing {
                event_id,
                last_event_id,
            },
            Self::Poisoned => Error::Poisoned,
            Self::Damaged { issue, status } => Error::Damaged { issue, status },
            Self::DurableDataMissing {
                durable_event_id,
                found_event_id,
                issue,
            } => Error::DurableDataMissing {
                durable_event_id,
                found_event_id,
                issue,
            },
            Self::HistoryReplaced { issue } => Error::HistoryReplaced { issue },
            Self::InvalidConfig(w) => Error::InvalidConfig(w),
            Self::SegmentIndexExhausted => Error::SegmentIndexExhausted,
            Self::SegmentVanished { segment } => Error::SegmentVanished { segment },
            Self::LogicBug(w) => Error::LogicBug(w),
        }
    }
}

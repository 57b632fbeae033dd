//! [`ReplicateError`]: what can go wrong while shipping, following or archiving.

use std::fmt;
use std::io;

use fswal_backends::file::FileError;

use crate::message::{MessageError, Position};

/// An error of replication. The `Display` text is one line that names the stream (and
/// its sequence) or the file (and its offset) concerned.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplicateError {
    /// A request to the NATS servers failed (after the retries its limit allows).
    Nats {
        /// What was asked (`"connect"`, `"publish"`, `"stream info"`, ...).
        op: &'static str,
        /// The stream or bucket concerned.
        target: String,
        /// The client's error.
        detail: String,
    },
    /// The stream moved to a newer writer epoch: another directory was promoted, and
    /// this writer must not extend the stream.
    Fenced {
        /// The stream.
        stream: String,
        /// The epoch this writer holds.
        own_epoch: u64,
        /// The stream's epoch.
        stream_epoch: u64,
    },
    /// The stream and the directory hold different histories at the same place.
    Diverged {
        /// The stream.
        stream: String,
        /// The place where they differ.
        position: Position,
        /// The stream sequence of the stream's message there (0: none).
        sequence: u64,
        /// What differs.
        detail: String,
    },
    /// A stream message does not verify against the log it would extend; nothing of it
    /// was written.
    Verify {
        /// The stream.
        stream: String,
        /// Its stream sequence.
        sequence: u64,
        /// Why.
        detail: String,
    },
    /// A stream message is not a message of a replicated log.
    Message {
        /// The stream.
        stream: String,
        /// Its stream sequence.
        sequence: u64,
        /// Why.
        source: MessageError,
    },
    /// A file of the directory failed.
    File(FileError),
    /// Local I/O outside a segment store failed (an epoch record, a directory).
    Io(io::Error),
    /// The directory's log does not verify, or cannot be replicated as it is.
    Log {
        /// The directory.
        dir: String,
        /// Why.
        detail: String,
    },
    /// No acknowledgement came within the limit.
    Timeout {
        /// What was waited for.
        what: String,
    },
    /// Something that cannot happen happened: a bug in fswal, reported instead of a
    /// panic.
    LogicBug(&'static str),
}

impl ReplicateError {
    /// The kind of the underlying I/O error, when there is one: kept end to end, so
    /// that a caller can tell a full disk from a permission problem.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ReplicateError::File(e) => Some(e.source.kind()),
            ReplicateError::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    pub(crate) fn nats(op: &'static str, target: &str, e: impl fmt::Display) -> Self {
        ReplicateError::Nats {
            op,
            target: target.to_owned(),
            detail: e.to_string(),
        }
    }
}

impl fmt::Display for ReplicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicateError::Nats { op, target, detail } => {
                write!(f, "nats {op} ({target}): {detail}")
            }
            ReplicateError::Fenced {
                stream,
                own_epoch,
                stream_epoch,
            } => write!(
                f,
                "fenced: stream {stream} is at writer epoch {stream_epoch} (a directory was promoted), this writer holds epoch {own_epoch}; it refuses appends"
            ),
            ReplicateError::Diverged {
                stream,
                position,
                sequence,
                detail,
            } => write!(
                f,
                "stream {stream} and the directory hold different histories at {position} (stream sequence {sequence}): {detail}"
            ),
            ReplicateError::Verify {
                stream,
                sequence,
                detail,
            } => write!(
                f,
                "stream {stream} sequence {sequence} does not verify: {detail}; nothing of it was written"
            ),
            ReplicateError::Message {
                stream,
                sequence,
                source,
            } => write!(
                f,
                "stream {stream} sequence {sequence} is not an fswal message: {source}"
            ),
            ReplicateError::File(e) => write!(f, "{e}"),
            ReplicateError::Io(e) => write!(f, "{e}"),
            ReplicateError::Log { dir, detail } => write!(f, "{dir}: {detail}"),
            ReplicateError::Timeout { what } => write!(f, "timed out waiting for {what}"),
            ReplicateError::LogicBug(what) => write!(f, "fswal bug: {what}"),
        }
    }
}

impl std::error::Error for ReplicateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplicateError::File(e) => Some(e),
            ReplicateError::Io(e) => Some(e),
            ReplicateError::Message { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A [`ReplicateError::Log`] about the directory `dir`.
pub(crate) fn log_error(dir: &std::path::Path, detail: String) -> ReplicateError {
    ReplicateError::Log {
        dir: dir.display().to_string(),
        detail,
    }
}

/// The error for a log in `dir` that strict replay found damaged before its end, or
/// `None` when it is not: `why` says why it must verify strictly.
pub(crate) fn refuse_corrupt(
    dir: &std::path::Path,
    summary: &fswal_core::Summary,
    why: &str,
) -> Option<ReplicateError> {
    (summary.status == fswal_core::Status::Corrupt).then(|| {
        let issue = summary
            .first_issue
            .map(|i| i.to_string())
            .unwrap_or_default();
        log_error(
            dir,
            format!("the log is damaged before its end ({issue}); {why}"),
        )
    })
}

impl From<FileError> for ReplicateError {
    fn from(e: FileError) -> Self {
        ReplicateError::File(e)
    }
}

impl From<io::Error> for ReplicateError {
    fn from(e: io::Error) -> Self {
        ReplicateError::Io(e)
    }
}

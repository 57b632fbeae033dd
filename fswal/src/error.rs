//! [`Error`]: why an operation on a log failed, with the device error's kind, file and
//! offset kept.

use std::fmt;
use std::io;

use fswal_backends::file::FileError;
use fswal_recorder::{RecorderError, StartError};

/// Why an operation on a log failed.
///
/// Damage and refusals name the segment, slot and offset ([`fswal_core::Issue`]); a
/// device error keeps its [`io::ErrorKind`], its file and its offset
/// ([`FileError`]), which [`Error::io_kind`] and [`Error::file_error`] return.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or recovering the log failed: a device error, damage found
    /// before the log's end, a refusal to append, an invalid event or option.
    Log(fswal_core::Error<FileError>),
    /// The recorder pipeline ([`crate::Options::pipelined`]) refused an event, timed
    /// out waiting for durability, or stopped on an error.
    Pipeline(RecorderError),
    /// A thread of the recorder pipeline could not be started (the log was recovered;
    /// nothing was appended).
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl Error {
    /// The kind of the I/O error underneath, when the error is a device's.
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Log(fswal_core::Error::Device(e)) => Some(e.source.kind()),
            Self::Pipeline(e) => e.io_kind(),
            Self::Spawn { source, .. } => Some(source.kind()),
            Self::Log(_) => None,
        }
    }

    /// The device error underneath (file, offset, operation, I/O error), when there is
    /// one the caller can look at.
    #[must_use]
    pub fn file_error(&self) -> Option<&FileError> {
        match self {
            Self::Log(fswal_core::Error::Device(e)) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log(e) => write!(f, "{e}"),
            Self::Pipeline(e) => write!(f, "{e}"),
            Self::Spawn { thread, source } => {
                write!(
                    f,
                    "could not start the recorder's {thread} thread: {source}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Log(fswal_core::Error::Device(e)) => Some(e),
            Self::Log(_) => None,
            Self::Pipeline(e) => Some(e),
            Self::Spawn { source, .. } => Some(source),
        }
    }
}

impl From<fswal_core::Error<FileError>> for Error {
    fn from(e: fswal_core::Error<FileError>) -> Self {
        Self::Log(e)
    }
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        Self::Log(fswal_core::Error::Device(e))
    }
}

impl From<StartError<FileError>> for Error {
    fn from(e: StartError<FileError>) -> Self {
        match e {
            StartError::Open(e) => Self::Log(e),
            StartError::Spawn { thread, source } => Self::Spawn { thread, source },
            // A kind added later: its text is all that can be kept.
            other => Self::Spawn {
                thread: "recorder",
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

impl From<RecorderError> for Error {
    fn from(e: RecorderError) -> Self {
        Self::Pipeline(e)
    }
}

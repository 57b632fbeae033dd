//! The error a command reports: one line, naming the file and the offset where there
//! is one, and exit code 2.

use std::fmt;
use std::path::Path;

use fswal_backends::file::FileError;

use crate::store::AnyStore;

/// A one-line error message; the command exits with code 2.
#[derive(Debug)]
pub struct CliError(pub String);

impl CliError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// An error about `path`.
    pub fn at(path: &Path, message: impl fmt::Display) -> Self {
        Self(format!("{}: {message}", path.display()))
    }

    /// An error of the core writer or replay over `store`, with damage described by
    /// file and offset, and for a refused recovery what can be done about it.
    pub fn from_core(store: &AnyStore, e: fswal_core::Error<FileError>) -> Self {
        let salvage = format!(
            "`{}` copies every event that verifies into a new log (README: \"When recovery refuses\")",
            crate::store::salvage_command(store)
        );
        let accept = match store {
            AnyStore::Raw(_) => format!(
                "the loss cannot be accepted in place on a device ({} hold the watermark)",
                store.watermark_records()
            ),
            _ => format!(
                "deleting both {} accepts the loss",
                store.watermark_records()
            ),
        };
        match e {
            fswal_core::Error::Damaged { issue, status } => Self(format!(
                "{}; the log is {status} there, refusing to append (nothing was changed); {salvage}",
                store.issue_line(&issue)
            )),
            fswal_core::Error::DurableDataMissing {
                durable_event_id,
                found_event_id,
                issue,
            } => {
                let at = issue
                    .map(|i| format!(" at {}", store.issue_line(&i)))
                    .unwrap_or_default();
                Self(format!(
                    "events up to {durable_event_id} were made durable, but the log ends at event {found_event_id}{at}; refusing to append (nothing was changed); {accept}; {salvage}"
                ))
            }
            fswal_core::Error::HistoryReplaced { issue } => Self(format!(
                "{}; refusing to append (nothing was changed); {accept}; {salvage}",
                store.issue_line(&issue)
            )),
            fswal_core::Error::Device(e) => Self(e.to_string()),
            other => Self(other.to_string()),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the parts said.
        f.write_str(&self.0.replace('\n', " "))
    }
}

impl std::error::Error for CliError {}

impl From<FileError> for CliError {
    fn from(e: FileError) -> Self {
        Self(e.to_string())
    }
}

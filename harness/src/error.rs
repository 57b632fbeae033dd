//! The error a command reports: one line, naming the file and the offset where there
//! is one, and exit code 2. The file and the offset are also kept apart from the text,
//! for the JSON object a command given `--json` prints ([`CliError::json_line`]).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use fswal_backends::file::FileError;
use serde::Serialize;

use crate::store::AnyStore;

/// What is added to an error opening a file with `O_DIRECT` that the file system
/// refuses: the error alone ("Invalid argument") does not say that direct I/O is the
/// cause, nor what to do instead.
pub const O_DIRECT_REFUSED: &str = "the file system refuses O_DIRECT (direct I/O, which --backend direct and --device use): use --backend file, or a file system that takes O_DIRECT";

/// A one-line error message, and the file and offset it is about when there are
/// such; the command exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
    file: Option<PathBuf>,
    offset_bytes: Option<u64>,
}

/// The JSON object of an error: `{"error": ..., "file": ..., "offset": ...}`.
#[derive(Serialize)]
struct JsonError<'a> {
    error: &'a str,
    file: Option<String>,
    offset: Option<u64>,
}

impl CliError {
    /// An error with `message`, about no file in particular.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            file: None,
            offset_bytes: None,
        }
    }

    /// An error about `path`.
    pub fn at(path: &Path, message: impl fmt::Display) -> Self {
        Self {
            message: format!("{}: {message}", path.display()),
            file: Some(path.to_path_buf()),
            offset_bytes: None,
        }
    }

    /// An error about byte `offset_bytes` of `path`.
    pub fn at_offset(path: &Path, offset_bytes: u64, message: impl fmt::Display) -> Self {
        Self {
            message: format!("{}: offset {offset_bytes}: {message}", path.display()),
            file: Some(path.to_path_buf()),
            offset_bytes: Some(offset_bytes),
        }
    }

    /// The same error, about the same file and offset, with `more` said after it.
    #[must_use]
    pub fn context(self, more: impl fmt::Display) -> Self {
        Self {
            message: format!("{}; {more}", self.message),
            ..self
        }
    }

    /// The message, as [`fmt::Display`] prints it: one line.
    #[must_use]
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The file the error is about, if any.
    #[must_use]
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The byte offset in [`CliError::file`] the error is about, if any.
    #[must_use]
    pub fn offset_bytes(&self) -> Option<u64> {
        self.offset_bytes
    }

    /// The error as one line of JSON: `{"error": message, "file": path or null,
    /// "offset": bytes or null}`.
    #[must_use]
    pub fn json_line(&self) -> String {
        let message = self.message();
        let json = JsonError {
            error: &message,
            file: self.file.as_ref().map(|p| p.display().to_string()),
            offset: self.offset_bytes,
        };
        // A struct of strings and numbers always serializes; the fallback keeps this
        // panic-free all the same.
        serde_json::to_string(&json).unwrap_or_else(|_| {
            r#"{"error":"the error could not be written as JSON","file":null,"offset":null}"#
                .to_owned()
        })
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
        // Where an issue is, as a file and an offset in it: for a raw device, the
        // device and the offset on it, as `issue_line` names them.
        let place = |issue: &fswal_core::Issue| match store {
            AnyStore::Raw(s) => (
                s.path().to_path_buf(),
                s.device_offset_bytes(issue.segment, issue.offset_bytes),
            ),
            _ => (store.segment_file(issue.segment), issue.offset_bytes),
        };
        let about = |message: String, issue: Option<&fswal_core::Issue>| {
            let (file, offset_bytes) = issue.map(&place).unzip();
            Self {
                message,
                file,
                offset_bytes,
            }
        };
        match e {
            fswal_core::Error::Damaged { issue, status } => about(
                format!(
                    "{}; the log is {status} there, refusing to append (nothing was changed); {salvage}",
                    store.issue_line(&issue)
                ),
                Some(&issue),
            ),
            fswal_core::Error::DurableDataMissing {
                durable_event_id,
                found_event_id,
                issue,
            } => {
                let at = issue
                    .map(|i| format!(" at {}", store.issue_line(&i)))
                    .unwrap_or_default();
                about(
                    format!(
                        "events up to {durable_event_id} were made durable, but the log ends at event {found_event_id}{at}; refusing to append (nothing was changed); {accept}; {salvage}"
                    ),
                    issue.as_ref(),
                )
            }
            fswal_core::Error::HistoryReplaced { issue } => about(
                format!(
                    "{}; refusing to append (nothing was changed); {accept}; {salvage}",
                    store.issue_line(&issue)
                ),
                Some(&issue),
            ),
            fswal_core::Error::Device(e) => Self::from(e),
            other => Self::new(other.to_string()),
        }
    }
}

/// Whether `e` is the operating system refusing to open a file with `O_DIRECT`: an
/// `open` that failed with `EINVAL`. The standard library maps `EINVAL`, and no other
/// error number, to [`io::ErrorKind::InvalidInput`]; the errors fswal makes up itself
/// with that kind (a misaligned window, not a regular file) carry no error number. The
/// flags fswal opens files with are otherwise ones every file system takes, so an
/// `EINVAL` from `open` is the file system turning `O_DIRECT` down.
#[must_use]
pub fn is_o_direct_refused(e: &FileError) -> bool {
    e.op == "open"
        && e.source.kind() == io::ErrorKind::InvalidInput
        && e.source.raw_os_error().is_some()
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the parts said.
        f.write_str(&self.message.replace('\n', " "))
    }
}

impl std::error::Error for CliError {}

impl From<FileError> for CliError {
    fn from(e: FileError) -> Self {
        let mut message = e.to_string();
        if is_o_direct_refused(&e) {
            message = format!("{message}: {O_DIRECT_REFUSED}");
        }
        Self {
            message,
            file: Some(e.path),
            offset_bytes: e.offset_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EINVAL` on Linux.
    const EINVAL: i32 = 22;

    #[test]
    fn the_json_object_has_the_message_the_file_and_the_offset_or_nulls() {
        let at = CliError::at_offset(Path::new("/w/FS.00000001.wal"), 64, "bad\nmagic");
        let json: serde_json::Value = serde_json::from_str(&at.json_line()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "error": "/w/FS.00000001.wal: offset 64: bad magic",
                "file": "/w/FS.00000001.wal",
                "offset": 64
            })
        );
        let plain: serde_json::Value =
            serde_json::from_str(&CliError::new("no").json_line()).expect("json");
        assert_eq!(
            plain,
            serde_json::json!({"error": "no", "file": null, "offset": null})
        );
        let more = CliError::at(Path::new("/w"), "full").context("durable through 5");
        assert_eq!(more.message(), "/w: full; durable through 5");
        assert_eq!(more.file(), Some(Path::new("/w")));
        assert_eq!(more.offset_bytes(), None);
    }

    #[test]
    fn a_file_error_keeps_its_path_and_offset() {
        let e = CliError::from(FileError::new(
            "read",
            "/w/FS.00000000.wal",
            Some(4096),
            io::Error::from(io::ErrorKind::UnexpectedEof),
        ));
        assert_eq!(e.file(), Some(Path::new("/w/FS.00000000.wal")));
        assert_eq!(e.offset_bytes(), Some(4096));
        assert!(!e.message().contains("O_DIRECT"), "{e}");
    }

    #[test]
    fn only_an_open_refused_by_the_os_with_einval_is_blamed_on_o_direct() {
        let refused = FileError::new(
            "open",
            "/w/FS.00000000.wal",
            None,
            io::Error::from_raw_os_error(EINVAL),
        );
        assert!(is_o_direct_refused(&refused));
        let message = CliError::from(refused).message();
        assert!(
            message.contains("O_DIRECT") && message.contains("--backend file"),
            "{message}"
        );
        // fswal's own refusals of the same kind, and other operations, are not.
        let own = FileError::custom(
            "open",
            "/w/x",
            None,
            io::ErrorKind::InvalidInput,
            "not a regular file",
        );
        assert!(!is_o_direct_refused(&own));
        let write = FileError::new(
            "write",
            "/w/x",
            Some(0),
            io::Error::from_raw_os_error(EINVAL),
        );
        assert!(!is_o_direct_refused(&write));
    }
}

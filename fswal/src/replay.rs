//! [`replay`]: read a log, verified, without modifying anything.

use std::path::Path;

use fswal_backends::dir::DirStore;
use fswal_core::{Mode, Replay, RequestEvent, Summary};

use crate::error::Error;

/// Replays the log at `path` (a WAL directory, or one segment file `FS.%08u.wal` or
/// `.wal.lz4`) strictly, read-only: hands every verified event to `on_event`, in order,
/// and stops at the first damaged or partial block. Nothing is created or modified,
/// and no lock is taken (a reader may watch a live log).
///
/// The summary's [`Summary::status`] says whether the log was valid to its end
/// ([`crate::Status::Ok`]), ended in a torn or partial tail
/// ([`crate::Status::Truncated`]: every event before it was handed), or holds damage
/// with valid data after it ([`crate::Status::Corrupt`]: the events before it were
/// handed; nothing after it is trusted). Its `first_issue` says where and why.
pub fn replay(
    path: impl AsRef<Path>,
    on_event: impl FnMut(&RequestEvent),
) -> Result<Summary, Error> {
    let path = path.as_ref();
    let store = if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        DirStore::single_segment(path)?
    } else {
        DirStore::open_read_only(path)?
    };
    Ok(Replay::new(store, Mode::Strict).run(on_event)?)
}

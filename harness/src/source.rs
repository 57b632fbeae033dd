//! Opening what the user names: a WAL directory or a single segment file, read-only.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use fswal_backends::dir::DirStore;
use fswal_core::segment_header::SEGMENT_MAGIC;
use fswal_core::{Issue, Reason, SegmentStore};

use crate::error::CliError;

/// What a path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory of `FS.%08u.wal` segment files.
    Directory,
    /// One segment file.
    SegmentFile,
}

/// A log opened read-only: nothing is created or modified through it.
#[derive(Debug)]
pub struct Source {
    /// The store over it.
    pub store: DirStore,
    /// Directory or single file.
    pub kind: Kind,
    /// The path as given.
    pub path: PathBuf,
}

/// Opens `path` read-only. A directory must hold at least one segment file.
pub fn open_read_only(path: &Path) -> Result<Source, CliError> {
    let meta = fs::metadata(path).map_err(|e| CliError::at(path, e))?;
    if meta.is_dir() {
        let mut store = DirStore::open_read_only(path)?;
        if store.segment_range()?.is_none() {
            return Err(CliError::at(
                path,
                "not a WAL: the directory holds no FS.########.wal segment file",
            ));
        }
        Ok(Source {
            store,
            kind: Kind::Directory,
            path: path.to_path_buf(),
        })
    } else if meta.is_file() {
        refuse_without_magic(path)?;
        Ok(Source {
            store: DirStore::single_segment(path)?,
            kind: Kind::SegmentFile,
            path: path.to_path_buf(),
        })
    } else {
        Err(CliError::at(
            path,
            "neither a WAL directory nor a segment file",
        ))
    }
}

/// Refuses a file given on its own that does not start with the segment magic: it is
/// not a damaged WAL but no WAL at all, a usage error (inside a WAL directory the same
/// finding is reported as damage by replay).
fn refuse_without_magic(path: &Path) -> Result<(), CliError> {
    let mut magic = [0u8; 2];
    let mut file = fs::File::open(path).map_err(|e| CliError::at(path, e))?;
    match file.read_exact(&mut magic) {
        Ok(()) => {}
        // Shorter than a magic: replay reports it as a segment too short for a header.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(CliError::at(path, e)),
    }
    let found = u16::from_le_bytes(magic);
    if found == SEGMENT_MAGIC {
        return Ok(());
    }
    Err(CliError::at(
        path,
        format!("offset 0: {}", Reason::BadMagic { found }),
    ))
}

/// An issue as one line naming the segment file and the offset in it.
#[must_use]
pub fn issue_line(store: &DirStore, issue: &Issue) -> String {
    let block = issue
        .block
        .map(|b| format!(" (block {b})"))
        .unwrap_or_default();
    format!(
        "{}: offset {}{block}: {}",
        store.segment_path(issue.segment).display(),
        issue.offset_bytes,
        issue.reason
    )
}

//! Torn-tail copies earlier versions of fswal made ([`TornCopy`]): listed, released, and
//! removed with their segment.

use super::*;

/// A copy of torn-tail bytes that an earlier version of fswal's recovery made before
/// clearing them: the side file `FS.<segment>.wal.torn-<offset, 12 digits>` (or that
/// name with `.1`, `.2`, ...). Recovery no longer makes them (it seals the segment at
/// its last valid block and leaves the slots after it in place), but the copies that
/// exist are listed, exported and released by `fswal preserved`, and removed with
/// their segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornCopy {
    /// The side file.
    pub path: PathBuf,
    /// The segment the bytes came from.
    pub segment: u32,
    /// Where in that segment.
    pub offset_bytes: u64,
    /// How many bytes the copy holds.
    pub len_bytes: u64,
}

impl TornCopy {
    /// The copy in side file `path` of `len_bytes` bytes from `offset_bytes` of
    /// segment `segment` (what the store lists; for tests of code that handles them).
    #[must_use]
    pub fn new(path: PathBuf, segment: u32, offset_bytes: u64, len_bytes: u64) -> Self {
        Self {
            path,
            segment,
            offset_bytes,
            len_bytes,
        }
    }
}

/// The segment and offset in the name of a torn-tail copy, or `None` for any other name.
pub(super) fn parse_torn_copy_name(name: &str) -> Option<(u32, u64)> {
    let at = name.find(TORN_COPY_INFIX)?;
    let segment = parse_segment_file_name(name.get(..at)?)?;
    let rest = name.get(at + TORN_COPY_INFIX.len()..)?;
    let (offset, copy) = rest.split_once('.').unwrap_or((rest, ""));
    let numbered = copy.is_empty() || copy.bytes().all(|b| b.is_ascii_digit());
    if offset.len() != 12 || !offset.bytes().all(|b| b.is_ascii_digit()) || !numbered {
        return None;
    }
    Some((segment, offset.parse().ok()?))
}

impl<D: SegmentFile> SegmentDir<D> {
    /// The torn-tail copies in the directory (see [`TornCopy`]), by segment and offset.
    pub fn torn_copies(&self) -> Result<Vec<TornCopy>, FileError> {
        if matches!(self.access, Access::Single { .. }) {
            return Ok(Vec::new());
        }
        let entries = fs::read_dir(&self.path)
            .map_err(|e| FileError::new("list", self.path.as_path(), None, e))?;
        let mut copies = Vec::new();
        // Bounded by the directory's entries.
        for entry in entries {
            let entry = entry.map_err(|e| FileError::new("list", self.path.as_path(), None, e))?;
            let Some((segment, offset_bytes)) =
                entry.file_name().to_str().and_then(parse_torn_copy_name)
            else {
                continue;
            };
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => copies.push(TornCopy {
                    path,
                    segment,
                    offset_bytes,
                    len_bytes: m.len(),
                }),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FileError::new("stat", path, None, e)),
            }
        }
        copies.sort_by(|a, b| {
            (a.segment, a.offset_bytes, &a.path).cmp(&(b.segment, b.offset_bytes, &b.path))
        });
        Ok(copies)
    }

    /// Removes the torn-tail copy `copy` durably (the directory synced after).
    pub fn release_torn_copy(&mut self, copy: &TornCopy) -> Result<(), FileError> {
        if !self.is_writable() {
            return Err(self.read_only_error("release", &copy.path, None));
        }
        if copy.path.parent() != Some(self.path.as_path()) {
            return Err(FileError::custom(
                "release",
                copy.path.as_path(),
                None,
                io::ErrorKind::InvalidInput,
                "not a torn-tail copy of this WAL directory",
            ));
        }
        match fs::remove_file(&copy.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(FileError::new("remove", copy.path.as_path(), None, e)),
        }
        sync_dir(&self.path)
    }

    /// Removes the torn-tail copies of segment `index`, which is being removed: they
    /// were copies of its slots, which go with it. The directory is listed once per
    /// store, on the first call; the caller syncs the directory after.
    pub(super) fn remove_torn_copies_of(&mut self, index: u32) -> Result<(), FileError> {
        if self.torn_segments.is_none() {
            let listed = self.torn_copies()?.iter().map(|c| c.segment).collect();
            self.torn_segments = Some(listed);
        }
        let has_copies = self
            .torn_segments
            .as_mut()
            .is_some_and(|segments| segments.remove(&index));
        if !has_copies {
            return Ok(());
        }
        for copy in self
            .torn_copies()?
            .into_iter()
            .filter(|c| c.segment == index)
        {
            match fs::remove_file(&copy.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FileError::new("remove", copy.path, None, e)),
            }
        }
        Ok(())
    }
}

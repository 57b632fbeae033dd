//! Segment files allocated ahead of need: [`DirPreparer`], and the store taking one when
//! it creates that segment.

use super::*;

/// Allocates segment files ahead of need: `FS.<index>.wal.prep`, full size, zeros,
/// synced, holding no header (so nothing reads it as a segment), made under a temporary
/// name and renamed, so that the store only ever finds whole ones. The store takes the
/// file when it creates that segment, and then only writes its header.
#[derive(Clone, Debug)]
pub struct DirPreparer {
    pub(super) dir: PathBuf,
}

impl DirPreparer {
    /// Allocates the file of segment `index`, `size_bytes` long, unless it exists.
    pub fn prepare(&self, index: u32, size_bytes: u64) -> Result<(), FileError> {
        let Some(name) = segment_file_name(index) else {
            return Ok(());
        };
        let path = with_suffix(&self.dir.join(name.as_str()), PREPARED_SUFFIX);
        if path.exists() || self.dir.join(name.as_str()).exists() {
            return Ok(());
        }
        let tmp = with_suffix(&path, ".tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::new("remove stale", tmp, None, e)),
        }
        FileDevice::create_preallocated(&tmp, size_bytes, &[])?;
        fs::rename(&tmp, &path).map_err(|e| FileError::new("rename", tmp.as_path(), None, e))
    }
}

impl<D: SegmentFile> SegmentDir<D> {
    /// The file prepared ahead of need for segment `index`.
    pub(super) fn prepared_path(&self, index: u32) -> Result<PathBuf, FileError> {
        self.named_segment_path("prepare", index)
            .map(|raw| with_suffix(&raw, PREPARED_SUFFIX))
    }

    /// Allocates the file of segment `index` ahead of need (see [`DirPreparer`]).
    pub(super) fn prepare(&mut self, index: u32, size_bytes: u64) -> Result<(), FileError> {
        self.preparer().prepare(index, size_bytes)
    }

    /// Moves the file prepared for segment `index` to `tmp` and writes `initial` into
    /// it, synced; returns whether there was one of `size_bytes` (a prepared file of
    /// another size is removed).
    pub(super) fn take_prepared(
        &mut self,
        index: u32,
        tmp: &Path,
        size_bytes: u64,
        initial: &[u8],
    ) -> Result<bool, FileError> {
        let prepared = self.prepared_path(index)?;
        match fs::metadata(&prepared) {
            Ok(m) if m.is_file() && m.len() == size_bytes => {}
            Ok(_) => {
                fs::remove_file(&prepared)
                    .map_err(|e| FileError::new("remove stale", prepared.as_path(), None, e))?;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(FileError::new("stat", prepared, None, e)),
        }
        fs::rename(&prepared, tmp)
            .map_err(|e| FileError::new("rename", prepared.as_path(), None, e))?;
        let mut file = FileDevice::open_read_write(tmp)?;
        file.write_all_at(0, initial)?;
        // `sync_data` covers the header; the size was synced when the file was prepared.
        file.sync()?;
        Ok(true)
    }
}

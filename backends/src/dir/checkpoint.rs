//! The checkpoint files of a WAL directory: `fswal.meta` (the sealed checkpoint, replaced
//! whole through a synced temporary copy and a rename) and `fswal.mark` (the sync mark,
//! one page rewritten in place after every sync).

use super::*;

/// The temporary name a new checkpoint is written under before it is renamed.
pub(super) const CHECKPOINT_TMP_NAME: &str = "fswal.meta.tmp";

/// Bytes in the sync mark file: one page, so that a rewrite is one sector write.
pub(super) const MARK_FILE_BYTES: u64 = 4096;

impl<D: SegmentFile> SegmentDir<D> {
    pub(super) fn read_checkpoint_file(
        &mut self,
        kind: CheckpointKind,
    ) -> Result<Option<[u8; CHECKPOINT_SIZE_BYTES]>, FileError> {
        if matches!(self.access, Access::Single { .. }) {
            return Ok(None);
        }
        let (name, size) = match kind {
            CheckpointKind::Sealed => (CHECKPOINT_FILE_NAME, CHECKPOINT_SIZE_BYTES as u64),
            CheckpointKind::Synced => (MARK_FILE_NAME, MARK_FILE_BYTES),
        };
        let path = self.path.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FileError::new("read checkpoint", path, None, e)),
        };
        // A file of another size is not a checkpoint; hand the core what is there (zero
        // padded) and let it refuse the record, rather than failing the open.
        let mut record = [0u8; CHECKPOINT_SIZE_BYTES];
        let n = bytes.len().min(CHECKPOINT_SIZE_BYTES);
        record[..n].copy_from_slice(&bytes[..n]);
        if bytes.len() as u64 != size {
            record[0] ^= 0xff;
        }
        Ok(Some(record))
    }

    pub(super) fn write_checkpoint_file(
        &mut self,
        kind: CheckpointKind,
        record: &[u8; CHECKPOINT_SIZE_BYTES],
    ) -> Result<(), FileError> {
        if kind == CheckpointKind::Synced {
            return self.write_mark(record);
        }
        let path = self.path.join(CHECKPOINT_FILE_NAME);
        if !self.is_writable() {
            return Err(self.read_only_error("write checkpoint", &path, None));
        }
        let tmp = self.path.join(CHECKPOINT_TMP_NAME);
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(record)?;
                f.sync_all()
            });
        written.map_err(|e| FileError::new("write checkpoint", tmp.as_path(), None, e))?;
        // Temporary copy synced, then renamed over the old one, then the directory
        // synced: a crash leaves the old record or the new one, never a mix.
        fs::rename(&tmp, &path).map_err(|e| FileError::new("rename", tmp.as_path(), None, e))?;
        sync_dir(&self.path)
    }

    /// Rewrites the sync mark in place (one sector) and syncs it. The file is made the
    /// first time like the checkpoint (temporary copy, sync, rename, directory sync), so
    /// that it always holds a whole record.
    fn write_mark(&mut self, record: &[u8; CHECKPOINT_SIZE_BYTES]) -> Result<(), FileError> {
        let path = self.path.join(MARK_FILE_NAME);
        if !self.is_writable() {
            return Err(self.read_only_error("write mark", &path, None));
        }
        if let Some(file) = &self.mark {
            return file
                .write_all_at(record, 0)
                .and_then(|()| file.sync_data())
                .map_err(|e| FileError::new("write mark", path.as_path(), Some(0), e));
        }
        let tmp = with_suffix(&path, ".tmp");
        let mut page = vec![0u8; usize::try_from(MARK_FILE_BYTES).unwrap_or(4096)];
        page[..CHECKPOINT_SIZE_BYTES].copy_from_slice(record);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&page)?;
                f.sync_all()
            })
            .map_err(|e| FileError::new("write mark", tmp.as_path(), None, e))?;
        fs::rename(&tmp, &path).map_err(|e| FileError::new("rename", tmp.as_path(), None, e))?;
        sync_dir(&self.path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| FileError::new("open", path.as_path(), None, e))?;
        self.mark = Some(file);
        Ok(())
    }
}

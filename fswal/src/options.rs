//! [`Options`]: how a log is opened, a builder reaching every capability.

use std::path::Path;
use std::time::Duration;

use fswal_backends::any::{AnyStore, Backend};
use fswal_core::writer::{OpenScan, Retention};
use fswal_core::{RequestEvent, WriterConfig};

use crate::error::Error;
use crate::wal::{Pipeline, Wal};

/// How [`Wal`] opens a log: the backend, the segment size, retention, compression,
/// sync marks, and whether appends go through the recorder pipeline. Start from
/// [`Wal::options`] (the defaults), change what you need, then open:
///
/// ```no_run
/// use std::time::Duration;
/// use fswal::{Backend, Wal};
///
/// let wal = Wal::options()
///     .backend(Backend::Direct)
///     .blocks_per_segment(1024)
///     .retain_segments(64)
///     .pipelined(true)
///     .commit_every(Duration::from_micros(100))
///     .open("/var/lib/engine/wal")?;
/// # Ok::<(), fswal::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) backend: Backend,
    pub(crate) raw_device: bool,
    pub(crate) dsync: bool,
    pub(crate) compress: bool,
    pub(crate) writer: WriterConfig,
    /// Whether appends go through the recorder pipeline.
    pub(crate) pipelined: bool,
    /// The pipeline's settings, used only when `pipelined`.
    pub(crate) pipeline: Pipeline,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::File,
            raw_device: false,
            dsync: false,
            compress: false,
            writer: WriterConfig::default(),
            pipelined: false,
            pipeline: Pipeline::default(),
        }
    }
}

impl Options {
    /// How segment files are written: [`Backend::File`] (the default: positioned I/O
    /// through the page cache), [`Backend::Mmap`] or [`Backend::Direct`] (`O_DIRECT`).
    #[must_use]
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Opens a raw block device (formatted on first use when its first 4 KiB are zero)
    /// instead of a directory: the path given to `open` is the device. Always
    /// `O_DIRECT`; the backend setting does not apply.
    #[must_use]
    pub fn raw_device(mut self, on: bool) -> Self {
        self.raw_device = on;
        self
    }

    /// With [`Options::raw_device`]: opens the device `O_DSYNC`.
    #[must_use]
    pub fn dsync(mut self, on: bool) -> Self {
        self.dsync = on;
        self
    }

    /// Block slots (256 events each) per new segment, 16..=524288 (default 4096, 64
    /// MiB). Without it, a reopened log keeps the size of its last segment; with it,
    /// new segments of an existing log get this size too.
    #[must_use]
    pub fn blocks_per_segment(mut self, blocks: u32) -> Self {
        self.writer.blocks_per_segment = blocks;
        self.writer.keep_segment_blocks = false;
        self
    }

    /// Keeps at most `segments` segments (the active one included, at least 1),
    /// deleting the oldest sealed ones.
    #[must_use]
    pub fn retain_segments(mut self, segments: u32) -> Self {
        self.writer.retention.segments_max = Some(segments);
        self
    }

    /// Keeps at most `bytes` of segments (their full preallocated size; the newest is
    /// always kept), deleting the oldest sealed ones.
    #[must_use]
    pub fn retain_bytes(mut self, bytes: u64) -> Self {
        self.writer.retention.bytes_max = Some(bytes);
        self
    }

    /// Keeps every segment (the default).
    #[must_use]
    pub fn retain_all(mut self) -> Self {
        self.writer.retention = Retention::KEEP_ALL;
        self
    }

    /// Replaces each sealed segment of a directory by `FS.%08u.wal.lz4`, a standard
    /// LZ4 frame with a block index, read back transparently.
    #[must_use]
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Whether every sync also rewrites the sync mark (on by default): it lets
    /// recovery tell acknowledged blocks, whose damage it refuses, from an unsynced
    /// tail, which it sets aside. Off saves one small write and sync per sync.
    #[must_use]
    pub fn sync_marks(mut self, on: bool) -> Self {
        self.writer.sync_marks = on;
        self
    }

    /// On reopening, verifies only from the segment the checkpoint names on, when it
    /// can (not with [`Options::open_replaying`], which hands every event).
    #[must_use]
    pub fn open_from_checkpoint(mut self, on: bool) -> Self {
        self.writer.open_scan = if on {
            OpenScan::FromCheckpoint
        } else {
            OpenScan::Full
        };
        self
    }

    /// Allows segments of more than 261 120 block slots (over 4 GiB), which the C++
    /// recorder's reader misreads: only for a log it will never read.
    #[must_use]
    pub fn allow_large_segments(mut self, on: bool) -> Self {
        self.writer.allow_large_segments = on;
        self
    }

    /// Appends through the recorder pipeline: [`Wal::append`] copies the event into a
    /// lock-free ring (no system call, no allocation, no lock) and an I/O thread
    /// writes and commits in groups. Off by default (appends are written on the
    /// calling thread).
    #[must_use]
    pub fn pipelined(mut self, on: bool) -> Self {
        self.pipelined = on;
        self
    }

    /// With the pipeline (these settings do not turn it on): commits (syncs) once this many events wait unsynced
    /// (default 256).
    #[must_use]
    pub fn commit_every_events(mut self, events: u64) -> Self {
        self.pipeline.commit_every_events = events;
        self
    }

    /// With the pipeline: commits once the oldest unsynced event has waited this long
    /// (default 200 µs).
    #[must_use]
    pub fn commit_every(mut self, wait: Duration) -> Self {
        self.pipeline.commit_every = wait;
        self
    }

    /// With the pipeline: events the ring holds (rounded up to a power of two; default
    /// 65 536).
    #[must_use]
    pub fn ring_capacity(mut self, events: usize) -> Self {
        self.pipeline.ring_capacity = events;
        self
    }

    /// With the pipeline: how long [`Wal::sync`] and [`Wal::close`] wait for the I/O
    /// thread before they return an error (default 30 s).
    #[must_use]
    pub fn sync_timeout(mut self, wait: Duration) -> Self {
        self.pipeline.sync_timeout = wait;
        self
    }

    /// Creates the log at `path` (a directory, made if missing), or recovers it and
    /// continues after its last event: verified once, strictly; a torn unsynced tail
    /// is set aside, damage before the end is refused with nothing changed.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Wal, Error> {
        Wal::open_with(self, path.as_ref(), None)
    }

    /// Like [`Options::open`], and hands every event of the recovered log to
    /// `on_event`, in order, once, from the same single verifying pass that recovery
    /// makes. An engine rebuilds its state here, then appends.
    ///
    /// When this fails, some events may have been handed already: they are not a state
    /// to act on (the log was refused, or could not be read to its end).
    pub fn open_replaying(
        &self,
        path: impl AsRef<Path>,
        mut on_event: impl FnMut(&RequestEvent),
    ) -> Result<Wal, Error> {
        Wal::open_with(self, path.as_ref(), Some(&mut on_event))
    }

    /// The store `path` names, opened for appending; `pipelined` leaves preparing the
    /// next segment's file to the recorder's preparer thread.
    pub(crate) fn open_store(&self, path: &Path, pipelined: bool) -> Result<AnyStore, Error> {
        if self.raw_device {
            return Ok(AnyStore::open_device_for_append(
                path,
                self.writer.blocks_per_segment,
                self.dsync,
            )?);
        }
        Ok(AnyStore::open_dir_for_append(path, self.backend)?
            .compress_sealed(self.compress)
            .prepare_ahead(!pipelined))
    }
}

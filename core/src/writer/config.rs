//! How a [`WalWriter`] is set up: [`WriterConfig`], [`Retention`], [`OpenScan`].

use super::*;

/// Why a configuration with segments over 4 GiB is refused.
pub const LARGE_SEGMENTS_REFUSED: &str = "segments of more than 261120 block slots (over 4 GiB) are misread by the C++ recorder, whose reader computes segment sizes in 32 bits; allow them (allow_large_segments, record --allow-large-segments) only for a log it will never read";

/// How a [`WalWriter`] is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterConfig {
    /// Block slots in each new segment (16..=524288) of a new log, and of a reopened
    /// one when `keep_segment_blocks` is off.
    pub blocks_per_segment: u32,
    /// Whether a reopened log's new segments keep the size of its last segment (on by
    /// default), so that opening a log without knowing its geometry does not change
    /// it; `blocks_per_segment` then sizes only the segments of a new log, or of a log
    /// whose last segment is too short to be a segment. Off, new segments get
    /// `blocks_per_segment` slots whatever the log holds: what an explicit size asks.
    pub keep_segment_blocks: bool,
    /// Which old segments to delete once newer ones are sealed.
    pub retention: Retention,
    /// How much of the log opening verifies.
    pub open_scan: OpenScan,
    /// Whether every sync also writes the sync mark (see
    /// [`CheckpointKind::Synced`]). With it, recovery can tell acknowledged blocks,
    /// whose damage it refuses, from an unsynced tail, which it sets aside, even when
    /// reordered writes left holes in that tail. It costs one small write and sync per
    /// sync; without it, only seals and closes record the durable watermark.
    pub sync_marks: bool,
    /// Whether segments may have more than
    /// [`CPP_READER_BLOCKS_MAX`] block slots (over
    /// 4 GiB), which the C++ recorder's reader misreads: only for a log it will never
    /// read. Off by default.
    pub allow_large_segments: bool,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self::with_blocks(SEGMENT_BLOCKS_DEFAULT)
    }
}

impl WriterConfig {
    /// The default configuration with `blocks_per_segment` slots per segment of a new
    /// log (a reopened log keeps its own: see [`WriterConfig::keep_segment_blocks`]).
    #[must_use]
    pub const fn with_blocks(blocks_per_segment: u32) -> Self {
        Self {
            blocks_per_segment,
            keep_segment_blocks: true,
            retention: Retention::KEEP_ALL,
            open_scan: OpenScan::Full,
            sync_marks: true,
            allow_large_segments: false,
        }
    }

    /// Block slots in each new segment of a new log (see
    /// [`WriterConfig::blocks_per_segment`](field@WriterConfig::blocks_per_segment)).
    #[must_use]
    pub const fn blocks_per_segment(mut self, blocks: u32) -> Self {
        self.blocks_per_segment = blocks;
        self
    }

    /// Whether a reopened log's new segments keep the size of its last segment (on by
    /// default; see
    /// [`WriterConfig::keep_segment_blocks`](field@WriterConfig::keep_segment_blocks)).
    #[must_use]
    pub const fn keep_segment_blocks(mut self, keep: bool) -> Self {
        self.keep_segment_blocks = keep;
        self
    }

    /// Which old segments to delete once newer ones are sealed (default: none,
    /// [`Retention::KEEP_ALL`]).
    #[must_use]
    pub const fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How much of the log opening verifies (default [`OpenScan::Full`]).
    #[must_use]
    pub const fn open_scan(mut self, open_scan: OpenScan) -> Self {
        self.open_scan = open_scan;
        self
    }

    /// Whether every sync also writes the sync mark (on by default; see
    /// [`WriterConfig::sync_marks`](field@WriterConfig::sync_marks)).
    #[must_use]
    pub const fn sync_marks(mut self, sync_marks: bool) -> Self {
        self.sync_marks = sync_marks;
        self
    }

    /// Whether segments may have more than [`CPP_READER_BLOCKS_MAX`] block slots
    /// (off by default; see
    /// [`WriterConfig::allow_large_segments`](field@WriterConfig::allow_large_segments)).
    #[must_use]
    pub const fn allow_large_segments(mut self, allow: bool) -> Self {
        self.allow_large_segments = allow;
        self
    }
}

/// Which old segments to delete. Only sealed (hence durable) segments older than the
/// newest one are ever deleted, oldest first, after a segment is sealed or created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Retention {
    /// Keep at most this many segments, the active one included (at least 1).
    pub segments_max: Option<u32>,
    /// Keep at most this many bytes of segments (their full preallocated size); the
    /// newest segment is always kept.
    pub bytes_max: Option<u64>,
}

impl Retention {
    /// Keep everything.
    pub const KEEP_ALL: Self = Self {
        segments_max: None,
        bytes_max: None,
    };

    /// Keep at most `segments` segments, the active one included (at least 1).
    #[must_use]
    pub const fn segments(segments: u32) -> Self {
        Self::KEEP_ALL.segments_max(Some(segments))
    }

    /// Keep at most `bytes` bytes of segments; the newest segment is always kept.
    #[must_use]
    pub const fn bytes(bytes: u64) -> Self {
        Self::KEEP_ALL.bytes_max(Some(bytes))
    }

    /// Keep at most this many segments (`None`: no limit on the count).
    #[must_use]
    pub const fn segments_max(mut self, segments: Option<u32>) -> Self {
        self.segments_max = segments;
        self
    }

    /// Keep at most this many bytes of segments (`None`: no limit on the bytes).
    #[must_use]
    pub const fn bytes_max(mut self, bytes: Option<u64>) -> Self {
        self.bytes_max = bytes;
        self
    }
}

/// How much of the log [`WalWriter::open`] verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenScan {
    /// Every segment, from the first: damage anywhere refuses to open.
    Full,
    /// Only from the segment the checkpoint names: faster, and what the checkpoint's
    /// segment and every later one hold is verified as usual; earlier segments were
    /// verified when they were written and are not read again. Falls back to `Full`
    /// when there is no valid checkpoint or its segment is gone.
    FromCheckpoint,
}

//! [`Wal`]: an open log, appending.

use std::path::Path;
use std::time::Duration;

use fswal_backends::any::AnyStore;
use fswal_core::writer::wall_clock_ns;
use fswal_core::{Recovery, RequestEvent, WalWriter};
use fswal_recorder::{Recorder, RecorderConfig, Telemetry};

use crate::error::Error;
use crate::options::Options;

/// The clock that stamps segment headers: the wall clock.
type WallClock = fn() -> u64;

/// The recorder pipeline's settings (see [`Options::pipelined`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pipeline {
    pub(crate) ring_capacity: usize,
    pub(crate) commit_every_events: u64,
    pub(crate) commit_every: Duration,
    pub(crate) sync_timeout: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        let recorder = RecorderConfig::default();
        Self {
            ring_capacity: recorder.ring_capacity,
            commit_every_events: recorder.commit_every_events,
            commit_every: recorder.commit_every,
            sync_timeout: SYNC_TIMEOUT_DEFAULT,
        }
    }
}

/// How long a pipelined [`Wal::sync`] or [`Wal::close`] waits by default.
const SYNC_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// How appends reach the log.
enum Inner {
    /// Written on the calling thread. Boxed: the writer holds a block (16 KiB), the
    /// recorder a handle, and a `Wal` should not be 16 KiB on the stack either way.
    Writer(Box<WalWriter<AnyStore, WallClock>>),
    /// Copied into the recorder's ring; its I/O thread writes and commits them.
    Pipeline {
        recorder: Recorder,
        sync_timeout: Duration,
    },
}

/// An open write-ahead log: create or recover it with [`Wal::open`] (or
/// [`Wal::options`] for everything else), append events, sync, close.
///
/// Events must be valid and their ids must increase; an event is durable (it survives
/// a crash or a power cut) once [`Wal::durable_event_id`] has reached its id, which
/// [`Wal::sync`] ensures for everything appended before it. Dropping a `Wal` without
/// [`Wal::close`] leaves the log as a crash would: what was synced is kept, the rest
/// is recovered or set aside on the next open.
pub struct Wal {
    inner: Inner,
    recovery: Recovery,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("pipelined", &matches!(self.inner, Inner::Pipeline { .. }))
            .field("last_event_id", &self.last_event_id())
            .field("durable_event_id", &self.durable_event_id())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Creates the log in the directory `dir` (made if missing), or recovers it and
    /// continues after its last event, with the default [`Options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Options::default().open(dir)
    }

    /// The default options, to change before opening: backend, raw device, segment
    /// size, retention, compression, sync marks, the recorder pipeline.
    #[must_use]
    pub fn options() -> Options {
        Options::default()
    }

    /// Opens `path` as `options` say, handing every recovered event to `on_event` when
    /// it is given (then the whole log is read, whatever the checkpoint says).
    pub(crate) fn open_with(
        options: &Options,
        path: &Path,
        on_event: Option<&mut dyn FnMut(&RequestEvent)>,
    ) -> Result<Self, Error> {
        let store = options.open_store(path, options.pipelined)?;
        let clock: WallClock = wall_clock_ns;
        let pipeline = options.pipeline;
        if !options.pipelined {
            let (writer, recovery) = match on_event {
                Some(f) => WalWriter::open_replaying(store, clock, options.writer, f)?,
                None => WalWriter::open(store, clock, options.writer)?,
            };
            return Ok(Self {
                inner: Inner::Writer(Box::new(writer)),
                recovery,
            });
        }
        let mut config = RecorderConfig::default()
            .writer(options.writer)
            .ring_capacity(pipeline.ring_capacity)
            .commit_every_events(pipeline.commit_every_events)
            .commit_every(pipeline.commit_every);
        if let Some(preparer) = store.preparer() {
            config = config.preparer(Box::new(preparer));
        }
        let (recorder, recovery) = match on_event {
            Some(f) => Recorder::start_replaying(store, clock, config, f)?,
            None => Recorder::start(store, clock, config)?,
        };
        Ok(Self {
            inner: Inner::Pipeline {
                recorder,
                sync_timeout: pipeline.sync_timeout,
            },
            recovery,
        })
    }

    /// Appends one event. Refused, with nothing written, when it is not valid or its id
    /// is not above [`Wal::last_event_id`].
    pub fn append(&mut self, event: &RequestEvent) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Writer(w) => Ok(w.append(event)?),
            Inner::Pipeline { recorder, .. } => Ok(recorder.append(event)?),
        }
    }

    /// Appends events in order, as [`Wal::append`] would one by one, but faster. Stops
    /// at the first one refused: those before it are appended.
    pub fn append_batch(&mut self, events: &[RequestEvent]) -> Result<(), Error> {
        match &mut self.inner {
            Inner::Writer(w) => Ok(w.append_batch(events)?),
            Inner::Pipeline { recorder, .. } => {
                for event in events {
                    recorder.append(event)?;
                }
                Ok(())
            }
        }
    }

    /// Makes everything appended so far durable and returns the durable event id.
    pub fn sync(&mut self) -> Result<u64, Error> {
        match &mut self.inner {
            Inner::Writer(w) => Ok(w.sync()?),
            Inner::Pipeline {
                recorder,
                sync_timeout,
            } => Ok(recorder.sync(*sync_timeout)?),
        }
    }

    /// The id of the last event appended (or recovered): the next one must be greater.
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        match &self.inner {
            Inner::Writer(w) => w.last_event_id(),
            Inner::Pipeline { recorder, .. } => recorder.last_event_id(),
        }
    }

    /// Every event up to this id is durable.
    #[must_use]
    pub fn durable_event_id(&self) -> u64 {
        match &self.inner {
            Inner::Writer(w) => w.durable_event_id(),
            Inner::Pipeline { recorder, .. } => recorder.durable_event_id(),
        }
    }

    /// What opening found and did: the replay summary, the watermark, a tail set
    /// aside, segments sealed late or removed.
    #[must_use]
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The pipeline's latency histograms and counters, when pipelined.
    #[must_use]
    pub fn telemetry(&self) -> Option<&Telemetry> {
        match &self.inner {
            Inner::Writer(_) => None,
            Inner::Pipeline { recorder, .. } => Some(recorder.telemetry().as_ref()),
        }
    }

    /// Syncs, seals the last segment and closes the log; returns the durable event id
    /// (every event appended).
    pub fn close(self) -> Result<u64, Error> {
        match self.inner {
            Inner::Writer(mut w) => Ok(w.close()?),
            Inner::Pipeline {
                recorder,
                sync_timeout,
            } => {
                // Everything appended is made durable within the bound first, so that a
                // stuck I/O thread is reported rather than waited for; the close then
                // only seals.
                recorder.sync(sync_timeout)?;
                Ok(recorder.close()?)
            }
        }
    }
}

//! fswal-recorder: the pipeline a matching engine calls to record its events.
//!
//! ```text
//!  engine thread                      I/O thread                      preparer thread
//!  ─────────────                      ──────────                      ───────────────
//!  Recorder::append(&event)
//!   check id, copy into the ring ──▶  pop events, WalWriter::append
//!   (no syscall, no allocation,       (blocks built, finalized, written)
//!    no lock)                         group commit: every N events or
//!                                     T µs, sync + sync mark
//!  durable_event_id()  ◀── atomic ─── publish the watermark, wake waiters
//!  wait_durable(id)    ◀── condvar ──┘
//!                                     segment created ───── channel ──▶ allocate the
//!                                                                       next segment's file
//! ```
//!
//! - [`Recorder::append`] checks the event and its id, copies the 64 bytes into a
//!   lock-free single-producer single-consumer ring, and returns. When the ring is full
//!   it waits, explicitly and counted: it spins, then yields its core. It never drops
//!   an event and never blocks on I/O.
//! - The I/O thread owns the [`WalWriter`]: it drains the ring, builds and writes blocks,
//!   and commits in groups (a sync once [`RecorderConfig::commit_every_events`] events
//!   or [`RecorderConfig::commit_every`] have passed since the first unsynced event).
//! - Durability is observable: [`Recorder::durable_event_id`], and
//!   [`Recorder::wait_durable`] to wait for an id.
//! - A [`Prepare`] implementation, on its own thread, keeps the next segment's file
//!   allocated ahead of need, so a rotation only writes a header.
//! - [`Telemetry`] measures append, block write, sync, commit and rotation latencies and
//!   counts ring-full waits, commits, syncs and bytes.
//!
//! A failure of the I/O thread (a write or sync error) stops the recorder: every later
//! append, wait or close returns the error, and nothing past the last watermark may be
//! acknowledged.

#![deny(missing_docs)]

mod error;
pub mod histogram;
// The ring is the recorder's own hand-off, public only so that fswal's micro-benchmarks
// (harness/benches/hot_loops.rs) can time a push and a pop: hidden from the docs and
// from the API listing, and exempt from semver.
#[doc(hidden)]
pub mod ring;
pub mod telemetry;
mod timed;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fswal_core::limits::BLOCK_EVENTS_MAX;
use fswal_core::{Clock, Recovery, RequestEvent, SegmentStore, WalWriter, WriterConfig};

pub use error::{Failure, RecorderError, StartError};
pub use telemetry::Telemetry;
use timed::{TimedStore, ns_since};

/// Events the I/O thread takes from the ring before it looks at its commit budget.
const DRAIN_BATCH_MAX: usize = 4096;

/// How long the I/O thread spins on an empty ring before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// How long it sleeps then, at most, before looking again.
const IDLE_SLEEP: Duration = Duration::from_micros(50);

/// The most the engine thread waits for room in a full ring by default before
/// [`Recorder::append`] reports the I/O thread stuck.
pub const APPEND_WAIT_MAX_DEFAULT: Duration = Duration::from_secs(10);

/// An error a [`Prepare`] implementation returns.
pub type PrepareError = Box<dyn std::error::Error + Send + Sync>;

/// Allocates segment files ahead of need, on the preparer thread.
///
/// A failure is not fatal: the writer creates the segment itself when it finds no
/// prepared file (a slower rotation). Failures are counted
/// ([`Telemetry::segments_prepare_failed`]) and the last one is kept
/// ([`Recorder::preparer_error`]).
pub trait Prepare: Send {
    /// Allocates the file of segment `index`, `size_bytes` long, unless it exists.
    fn prepare(&mut self, index: u32, size_bytes: u64) -> Result<(), PrepareError>;
}

impl Prepare for fswal_backends::dir::DirPreparer {
    fn prepare(&mut self, index: u32, size_bytes: u64) -> Result<(), PrepareError> {
        Ok(fswal_backends::dir::DirPreparer::prepare(
            self, index, size_bytes,
        )?)
    }
}

/// How a [`Recorder`] runs: start from [`RecorderConfig::default`] and change what you
/// need with the builder methods.
#[non_exhaustive]
pub struct RecorderConfig {
    /// The writer's configuration (segment size, retention, sync marks, ...).
    pub writer: WriterConfig,
    /// Events the ring holds (rounded up to a power of two).
    pub ring_capacity: usize,
    /// Commit once this many events wait unsynced.
    pub commit_every_events: u64,
    /// Commit once the oldest unsynced event waited this long.
    pub commit_every: Duration,
    /// When the ring is full, spins before the engine thread yields its core.
    pub spins_before_yield: u32,
    /// Prepares segment files ahead of need on a thread of its own, if given.
    pub preparer: Option<Box<dyn Prepare>>,
    /// The most [`Recorder::append`] waits for room in a full ring before it returns
    /// [`RecorderError::IoThreadStuck`] (default [`APPEND_WAIT_MAX_DEFAULT`]).
    pub append_wait_max: Duration,
}

impl RecorderConfig {
    /// The writer's configuration.
    #[must_use]
    pub fn writer(mut self, writer: WriterConfig) -> Self {
        self.writer = writer;
        self
    }

    /// Events the ring holds (rounded up to a power of two).
    #[must_use]
    pub fn ring_capacity(mut self, events: usize) -> Self {
        self.ring_capacity = events;
        self
    }

    /// Commit once this many events wait unsynced.
    #[must_use]
    pub fn commit_every_events(mut self, events: u64) -> Self {
        self.commit_every_events = events;
        self
    }

    /// Commit once the oldest unsynced event waited this long.
    #[must_use]
    pub fn commit_every(mut self, wait: Duration) -> Self {
        self.commit_every = wait;
        self
    }

    /// Spins before the engine thread yields its core on a full ring.
    #[must_use]
    pub fn spins_before_yield(mut self, spins: u32) -> Self {
        self.spins_before_yield = spins;
        self
    }

    /// Prepares segment files ahead of need on a thread of its own.
    #[must_use]
    pub fn preparer(mut self, preparer: Box<dyn Prepare>) -> Self {
        self.preparer = Some(preparer);
        self
    }

    /// The most an append waits for room in a full ring.
    #[must_use]
    pub fn append_wait_max(mut self, wait: Duration) -> Self {
        self.append_wait_max = wait;
        self
    }
}

impl fmt::Debug for RecorderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderConfig")
            .field("writer", &self.writer)
            .field("ring_capacity", &self.ring_capacity)
            .field("commit_every_events", &self.commit_every_events)
            .field("commit_every", &self.commit_every)
            .field("spins_before_yield", &self.spins_before_yield)
            .field("preparer", &self.preparer.is_some())
            .field("append_wait_max", &self.append_wait_max)
            .finish()
    }
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self {
            writer: WriterConfig::default(),
            ring_capacity: 1 << 16,
            commit_every_events: 256,
            commit_every: Duration::from_micros(200),
            spins_before_yield: 20_000,
            preparer: None,
            append_wait_max: APPEND_WAIT_MAX_DEFAULT,
        }
    }
}

/// What the engine thread and the I/O thread share.
struct Shared {
    /// The durable watermark: every event up to it survives a crash.
    durable: AtomicU64,
    /// The highest id someone asked to be made durable now.
    sync_requested: AtomicU64,
    /// Set by the engine: drain, seal, stop.
    stop: AtomicBool,
    /// Set by the I/O thread when it stopped on an error.
    failed: AtomicBool,
    error: Mutex<Option<Failure>>,
    /// The preparer's last failure, as text.
    preparer_error: Mutex<Option<String>>,
    /// Waiters for durability sleep here; the I/O thread notifies after every commit.
    lock: Mutex<()>,
    committed: Condvar,
}

impl Shared {
    fn error(&self) -> RecorderError {
        let why = self
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Failure::message("the I/O thread stopped without an error"));
        RecorderError::Stopped(why)
    }

    fn publish(&self, durable: u64) {
        self.durable.store(durable, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed.notify_all();
    }

    fn fail(&self, why: Failure) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        self.failed.store(true, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed.notify_all();
    }
}

/// The recorder: the engine thread's handle.
///
/// ```
/// use std::time::Duration;
/// use fswal_backends::dir::DirStore;
/// use fswal_core::reference::reference_event;
/// use fswal_core::writer::wall_clock_ns;
/// use fswal_recorder::{Recorder, RecorderConfig};
///
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path().join("wal");
/// // The preparer allocates the next segment's file on its own thread.
/// let store = DirStore::open_for_append(&dir)?.prepare_ahead(false);
/// let config = RecorderConfig::default().preparer(Box::new(store.preparer()));
/// let (mut recorder, recovery) = Recorder::start(store, wall_clock_ns, config)?;
/// assert_eq!(recovery.summary.events, 0);
/// for id in 1..=1000 {
///     recorder.append(&reference_event(id))?; // no system call, no allocation
/// }
/// assert_eq!(recorder.sync(Duration::from_secs(5))?, 1000);
/// assert_eq!(recorder.close()?, 1000); // drains, seals, syncs
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recorder {
    producer: ring::Producer<RequestEvent>,
    last_event_id: u64,
    spins_before_yield: u32,
    append_wait_max: Duration,
    shared: Arc<Shared>,
    telemetry: Arc<Telemetry>,
    io: Option<JoinHandle<Result<u64, Failure>>>,
    preparer: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Recovers the log in `store` (see [`WalWriter::open`]) on the calling thread,
    /// then starts the I/O thread (and the preparer's, if configured).
    pub fn start<S, C>(
        store: S,
        clock: C,
        config: RecorderConfig,
    ) -> Result<(Self, Recovery), StartError<S::Error>>
    where
        S: SegmentStore + Send + 'static,
        S::Device: Send,
        S::Error: std::error::Error + Send + Sync + 'static,
        C: Clock + Send + 'static,
    {
        Self::start_inner(store, clock, config, None)
    }

    /// Like [`Recorder::start`], and hands every event of the recovered log to
    /// `on_event`, in order, once, from recovery's one verifying pass (see
    /// [`WalWriter::open_replaying`]).
    pub fn start_replaying<S, C>(
        store: S,
        clock: C,
        config: RecorderConfig,
        mut on_event: impl FnMut(&RequestEvent),
    ) -> Result<(Self, Recovery), StartError<S::Error>>
    where
        S: SegmentStore + Send + 'static,
        S::Device: Send,
        S::Error: std::error::Error + Send + Sync + 'static,
        C: Clock + Send + 'static,
    {
        Self::start_inner(store, clock, config, Some(&mut on_event))
    }

    fn start_inner<S, C>(
        store: S,
        clock: C,
        mut config: RecorderConfig,
        on_event: Option<&mut dyn FnMut(&RequestEvent)>,
    ) -> Result<(Self, Recovery), StartError<S::Error>>
    where
        S: SegmentStore + Send + 'static,
        S::Device: Send,
        S::Error: std::error::Error + Send + Sync + 'static,
        C: Clock + Send + 'static,
    {
        let telemetry = Arc::new(Telemetry::new());
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(0),
            sync_requested: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            preparer_error: Mutex::new(None),
            lock: Mutex::new(()),
            committed: Condvar::new(),
        });
        let (prepare_tx, preparer) = match config.preparer.take() {
            Some(mut p) => {
                let (tx, rx) = mpsc::channel::<(u32, u64)>();
                let tel = Arc::clone(&telemetry);
                let prep_shared = Arc::clone(&shared);
                let handle = thread::Builder::new()
                    .name("fswal-preparer".into())
                    .spawn(move || {
                        // Ends when the I/O thread drops the sender.
                        for (index, size) in rx {
                            match p.prepare(index, size) {
                                Ok(()) => {
                                    tel.segments_prepared.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    tel.segments_prepare_failed.fetch_add(1, Ordering::Relaxed);
                                    *prep_shared
                                        .preparer_error
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner) =
                                        Some(format!("segment {index}: {e}"));
                                }
                            }
                        }
                    })
                    .map_err(|source| StartError::Spawn {
                        thread: "preparer",
                        source,
                    })?;
                (Some(tx), Some(handle))
            }
            None => (None, None),
        };
        let store = TimedStore::new(store, Arc::clone(&telemetry), prepare_tx);
        let opened = match on_event {
            Some(f) => WalWriter::open_replaying(store, clock, config.writer, f),
            None => WalWriter::open(store, clock, config.writer),
        };
        let (writer, recovery) = opened?;
        let durable = writer.durable_event_id();
        let last_event_id = writer.last_event_id();
        shared.durable.store(durable, Ordering::Release);
        let (producer, consumer) = ring::ring(config.ring_capacity, RequestEvent::ZERO);
        let io_shared = Arc::clone(&shared);
        let io_telemetry = Arc::clone(&telemetry);
        let budget = (config.commit_every_events.max(1), config.commit_every);
        let io = thread::Builder::new()
            .name("fswal-io".into())
            .spawn(move || io_loop(writer, consumer, &io_shared, &io_telemetry, budget))
            .map_err(|source| StartError::Spawn {
                thread: "I/O",
                source,
            })?;
        Ok((
            Self {
                producer,
                last_event_id,
                spins_before_yield: config.spins_before_yield,
                append_wait_max: config.append_wait_max,
                shared,
                telemetry,
                io: Some(io),
                preparer,
            },
            recovery,
        ))
    }

    /// Hands `event` to the I/O thread. An invalid event, or one whose id is not above
    /// the last appended one, is refused. No system call, allocation or lock, unless
    /// the ring is full: then it spins, then yields (counted in the telemetry).
    #[inline]
    pub fn append(&mut self, event: &RequestEvent) -> Result<(), RecorderError> {
        let start = Instant::now();
        let event_id = event.event_id();
        event
            .check()
            .map_err(|defect| RecorderError::InvalidEvent { event_id, defect })?;
        if event_id <= self.last_event_id {
            return Err(RecorderError::EventIdNotIncreasing {
                event_id,
                last_event_id: self.last_event_id,
            });
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.shared.error());
        }
        if let Err(mut value) = self.producer.try_push(*event) {
            self.telemetry.ring_full.fetch_add(1, Ordering::Relaxed);
            let mut spins = 0u32;
            // Bounded by the I/O thread, which drains the ring or fails (a failure ends
            // the wait), and by `append_wait_max`, for an I/O thread that does neither
            // (a device that stopped answering).
            loop {
                if self.shared.failed.load(Ordering::Acquire) {
                    return Err(self.shared.error());
                }
                match self.producer.try_push(value) {
                    Ok(()) => break,
                    Err(back) => value = back,
                }
                if spins < self.spins_before_yield {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    self.telemetry
                        .ring_full_yields
                        .fetch_add(1, Ordering::Relaxed);
                    let waited = start.elapsed();
                    if waited >= self.append_wait_max {
                        return Err(RecorderError::IoThreadStuck {
                            event_id,
                            waited,
                            durable_event_id: self.durable_event_id(),
                        });
                    }
                    thread::yield_now();
                }
            }
        }
        self.last_event_id = event_id;
        self.telemetry.append_ns.record(ns_since(start));
        Ok(())
    }

    /// The id of the last event appended.
    #[must_use]
    pub fn last_event_id(&self) -> u64 {
        self.last_event_id
    }

    /// The durable watermark: every event up to it survives a crash.
    #[must_use]
    pub fn durable_event_id(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Waits until event `event_id` is durable, for at most `timeout`.
    pub fn wait_durable(&self, event_id: u64, timeout: Duration) -> Result<(), RecorderError> {
        let deadline = Instant::now() + timeout;
        let mut guard = self
            .shared
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            let durable = self.durable_event_id();
            if durable >= event_id {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(self.shared.error());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecorderError::TimedOut {
                    event_id,
                    durable_event_id: durable,
                });
            }
            guard = self
                .shared
                .committed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Asks for every appended event to be made durable now, and waits for it.
    pub fn sync(&self, timeout: Duration) -> Result<u64, RecorderError> {
        self.shared
            .sync_requested
            .fetch_max(self.last_event_id, Ordering::AcqRel);
        self.wait_durable(self.last_event_id, timeout)?;
        Ok(self.durable_event_id())
    }

    /// The measurements.
    #[must_use]
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// The preparer's last failure (the segment and why), if it ever failed; how many
    /// failed is [`Telemetry::segments_prepare_failed`].
    #[must_use]
    pub fn preparer_error(&self) -> Option<String> {
        self.shared
            .preparer_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drains the ring, seals the log and stops the threads; returns the final durable
    /// watermark.
    pub fn close(mut self) -> Result<u64, RecorderError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<u64, RecorderError> {
        self.shared.stop.store(true, Ordering::Release);
        let result = match self.io.take() {
            Some(io) => io
                .join()
                .map_err(|_| RecorderError::Stopped(Failure::message("the I/O thread panicked")))?
                .map_err(RecorderError::Stopped),
            None => Ok(self.durable_event_id()),
        };
        if let Some(p) = self.preparer.take() {
            let _ = p.join();
        }
        result
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Without `close`, errors go unreported, but the thread still drains and seals.
        if self.io.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// The I/O thread: drains the ring into the writer and commits in groups.
fn io_loop<S, C>(
    mut writer: WalWriter<TimedStore<S>, C>,
    mut consumer: ring::Consumer<RequestEvent>,
    shared: &Shared,
    telemetry: &Telemetry,
    (commit_events, commit_every): (u64, Duration),
) -> Result<u64, Failure>
where
    S: SegmentStore,
    S::Error: std::error::Error + Send + Sync + 'static,
    C: Clock,
{
    let mut unsynced = 0u64;
    let mut batch = [RequestEvent::ZERO; BLOCK_EVENTS_MAX];
    let mut oldest: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    let fail = |e: fswal_core::Error<S::Error>| {
        let why = Failure::new(e);
        shared.fail(why.clone());
        why
    };
    // Runs until asked to stop (or an error): every pass drains, commits if due, or idles.
    loop {
        let mut drained = 0usize;
        while drained < DRAIN_BATCH_MAX {
            // A block's worth at a time, appended as one batch.
            let n = consumer.pop_into(&mut batch);
            let Some(events) = batch.get(..n).filter(|b| !b.is_empty()) else {
                break;
            };
            writer.append_batch(events).map_err(fail)?;
            drained += n;
            unsynced += n as u64;
            oldest.get_or_insert_with(Instant::now);
        }
        telemetry
            .events
            .fetch_add(drained as u64, Ordering::Relaxed);
        let stopping = shared.stop.load(Ordering::Acquire) && consumer.is_empty();
        let requested = shared.sync_requested.load(Ordering::Acquire) > writer.durable_event_id();
        let due = unsynced > 0
            && (unsynced >= commit_events
                || oldest.is_some_and(|t| t.elapsed() >= commit_every)
                || requested
                || stopping);
        if due {
            let start = Instant::now();
            let durable = writer.sync().map_err(fail)?;
            telemetry.commit_ns.record(ns_since(start));
            telemetry.commits.fetch_add(1, Ordering::Relaxed);
            shared.publish(durable);
            unsynced = 0;
            oldest = None;
        }
        if stopping {
            let durable = writer.close().map_err(fail)?;
            shared.publish(durable);
            return Ok(durable);
        }
        if drained == 0 && !due {
            // Nothing to do: spin a little (an event may come in nanoseconds), then
            // sleep, but never past the oldest unsynced event's commit deadline.
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < IDLE_SPIN {
                std::hint::spin_loop();
            } else {
                let until_due =
                    oldest.map_or(IDLE_SLEEP, |t| commit_every.saturating_sub(t.elapsed()));
                thread::sleep(IDLE_SLEEP.min(until_due));
            }
        } else {
            idle_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fswal_core::fault::{FaultStore, Faults};
    use fswal_core::mem::MemStore;
    use fswal_core::reference::reference_event;
    use fswal_core::{Mode, Replay, Status};

    fn config() -> RecorderConfig {
        RecorderConfig {
            writer: WriterConfig::with_blocks(16),
            ring_capacity: 1024,
            ..RecorderConfig::default()
        }
    }

    fn replay_ids(store: MemStore) -> (Vec<u64>, Status) {
        let mut ids = Vec::new();
        let s = Replay::new(store, Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        (ids, s.status)
    }

    #[test]
    fn records_everything_in_order_and_seals() {
        let store = MemStore::new();
        let (mut r, _) = Recorder::start(store.clone(), || 1u64, config()).unwrap();
        for i in 1..=50_000 {
            r.append(&reference_event(i)).unwrap();
        }
        let durable = r.close().unwrap();
        assert_eq!(durable, 50_000);
        // The store shares its segments with the recorder's copy.
        let (ids, status) = replay_ids(store.snapshot());
        assert!(
            ids.iter().copied().eq(1..=50_000),
            "replayed {} events",
            ids.len()
        );
        assert_eq!(status, Status::Ok);
    }

    #[test]
    fn refuses_bad_ids_on_the_engine_thread() {
        let (mut r, _) = Recorder::start(MemStore::new(), || 1u64, config()).unwrap();
        r.append(&reference_event(5)).unwrap();
        assert_eq!(
            r.append(&reference_event(5)),
            Err(RecorderError::EventIdNotIncreasing {
                event_id: 5,
                last_event_id: 5
            })
        );
        assert!(matches!(
            r.append(&RequestEvent::ZERO),
            Err(RecorderError::InvalidEvent { .. })
        ));
        r.close().unwrap();
    }

    #[test]
    fn durability_is_observable_and_waitable() {
        let (mut r, _) = Recorder::start(MemStore::new(), || 1u64, config()).unwrap();
        for i in 1..=10 {
            r.append(&reference_event(i)).unwrap();
        }
        // Ten events wait at most the time budget (200 µs) for their commit.
        r.wait_durable(10, Duration::from_secs(5)).unwrap();
        assert!(r.durable_event_id() >= 10);
        r.append(&reference_event(11)).unwrap();
        assert_eq!(r.sync(Duration::from_secs(5)).unwrap(), 11);
        assert!(r.telemetry().commits.load(Ordering::Relaxed) >= 2);
        r.close().unwrap();
    }

    #[test]
    fn a_full_ring_waits_and_counts_never_drops() {
        let cfg = RecorderConfig {
            ring_capacity: 2,
            spins_before_yield: 10,
            ..config()
        };
        let store = MemStore::new();
        let (mut r, _) = Recorder::start(store.clone(), || 1u64, cfg).unwrap();
        for i in 1..=20_000 {
            r.append(&reference_event(i)).unwrap();
        }
        let t = Arc::clone(r.telemetry());
        assert_eq!(r.close().unwrap(), 20_000);
        assert!(
            t.ring_full.load(Ordering::Relaxed) > 0,
            "a 2-slot ring fills"
        );
        assert_eq!(t.events.load(Ordering::Relaxed), 20_000);
        assert_eq!(replay_ids(store.snapshot()).0.len(), 20_000);
    }

    #[test]
    fn an_append_waits_for_a_stuck_io_thread_only_so_long() {
        // The clock stamps the first segment's header on the I/O thread: holding it
        // holds the thread, as a device that stopped answering would.
        let stalled = Arc::new(AtomicBool::new(false));
        let held = Arc::clone(&stalled);
        let clock = move || {
            while held.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(1));
            }
            1u64
        };
        let cfg = RecorderConfig {
            ring_capacity: 2,
            spins_before_yield: 10,
            append_wait_max: Duration::from_millis(50),
            ..config()
        };
        let (mut r, _) = Recorder::start(MemStore::new(), clock, cfg).unwrap();
        stalled.store(true, Ordering::Release);
        let mut refused = None;
        for i in 1..=100 {
            if let Err(e) = r.append(&reference_event(i)) {
                refused = Some((i, e));
                break;
            }
        }
        let (i, e) = refused.expect("a full ring behind a stuck thread is reported");
        assert!(
            matches!(e, RecorderError::IoThreadStuck { event_id, waited, durable_event_id: 0 }
                if event_id == i && waited >= Duration::from_millis(50)),
            "{e:?}"
        );
        assert!(e.to_string().contains("I/O thread took no event"), "{e}");
        // The event was not taken: once the thread moves again, it can be appended.
        assert_eq!(r.last_event_id(), i - 1);
        stalled.store(false, Ordering::Release);
        r.append(&reference_event(i)).unwrap();
        assert_eq!(r.close().unwrap(), i);
    }

    #[test]
    fn preparer_failures_are_counted_and_kept() {
        struct Failing;
        impl Prepare for Failing {
            fn prepare(&mut self, index: u32, _size_bytes: u64) -> Result<(), PrepareError> {
                Err(format!("no room for segment {index}").into())
            }
        }
        let store = MemStore::new();
        let cfg = RecorderConfig {
            preparer: Some(Box::new(Failing)),
            ..config()
        };
        let (mut r, _) = Recorder::start(store.clone(), || 1u64, cfg).unwrap();
        // Three segments of 4096 events: the preparer is asked for the next ones.
        for i in 1..=3 * 4096 {
            r.append(&reference_event(i)).unwrap();
        }
        r.sync(Duration::from_secs(5)).unwrap();
        let t = Arc::clone(r.telemetry());
        // The preparer runs on its own thread: give it a moment to report.
        for _ in 0..1000 {
            if r.preparer_error().is_some() {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let why = r.preparer_error().expect("the failure is kept");
        assert!(why.contains("no room for segment"), "{why}");
        assert_eq!(
            r.close().unwrap(),
            3 * 4096,
            "a failed preparation is not fatal"
        );
        assert!(t.segments_prepare_failed.load(Ordering::Relaxed) >= 1);
        assert_eq!(t.segments_prepared.load(Ordering::Relaxed), 0);
        assert_eq!(replay_ids(store.snapshot()).0.len(), 3 * 4096);
    }

    #[test]
    fn start_replaying_hands_the_recovered_events_once() {
        let store = MemStore::new();
        let (mut r, _) = Recorder::start(store.clone(), || 1u64, config()).unwrap();
        for i in 1..=5000 {
            r.append(&reference_event(i)).unwrap();
        }
        r.close().unwrap();
        let mut seen = Vec::new();
        let (mut r, rec) = Recorder::start_replaying(
            store.clone(),
            || 1u64,
            config(),
            |e: &RequestEvent| {
                seen.push(e.event_id());
            },
        )
        .unwrap();
        assert!(seen.iter().copied().eq(1..=5000));
        assert_eq!((rec.summary.events, r.last_event_id()), (5000, 5000));
        r.append(&reference_event(5001)).unwrap();
        assert_eq!(r.close().unwrap(), 5001);
    }

    #[test]
    fn an_io_error_stops_the_recorder_and_is_reported() {
        let store = FaultStore::new();
        let (mut r, _) = Recorder::start(store.clone(), || 1u64, config()).unwrap();
        store.set_faults(Faults {
            fail_sync_at: Some(3),
            ..Faults::default()
        });
        let mut stopped = None;
        for i in 1..=100_000 {
            if let Err(e) = r.append(&reference_event(i)) {
                stopped = Some(e);
                break;
            }
            if i % 100 == 0 {
                if let Err(e) = r.sync(Duration::from_secs(5)) {
                    stopped = Some(e);
                    break;
                }
            }
        }
        // The writer's error is kept whole, its type and its device error included.
        let Some(RecorderError::Stopped(failure)) = &stopped else {
            panic!("{stopped:?}");
        };
        let kept = failure
            .error()
            .downcast_ref::<fswal_core::Error<fswal_core::mem::MemError>>();
        assert!(
            matches!(kept, Some(fswal_core::Error::Device(_))),
            "{failure:?}"
        );
        let durable = r.durable_event_id();
        assert!(r.wait_durable(durable + 1, Duration::from_secs(1)).is_err());
        assert!(r.close().is_err());
        // Whatever was acknowledged is in the durable image.
        let image = store.snapshot().durable_image();
        let mut ids = Vec::new();
        Replay::new(FaultStore::from_image(&image), Mode::Strict)
            .run(|e| ids.push(e.event_id()))
            .unwrap();
        assert!(ids.len() as u64 >= durable);
    }
}

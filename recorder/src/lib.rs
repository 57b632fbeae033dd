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

pub mod histogram;
pub mod replay;
pub mod ring;
pub mod telemetry;
pub mod timed;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fswal_core::event::EventDefect;
use fswal_core::limits::BLOCK_EVENTS_MAX;
use fswal_core::{Clock, Recovery, RequestEvent, SegmentStore, WalWriter, WriterConfig};

pub use replay::ParallelReplay;
pub use telemetry::Telemetry;
use timed::{TimedStore, ns_since};

/// Events the I/O thread takes from the ring before it looks at its commit budget.
const DRAIN_BATCH_MAX: usize = 4096;

/// How long the I/O thread spins on an empty ring before it sleeps.
const IDLE_SPIN: Duration = Duration::from_micros(50);

/// How long it sleeps then, at most, before looking again.
const IDLE_SLEEP: Duration = Duration::from_micros(50);

/// Allocates segment files ahead of need, on the preparer thread.
pub trait Prepare: Send {
    /// Allocates the file of segment `index`, `size_bytes` long, unless it exists.
    fn prepare(&mut self, index: u32, size_bytes: u64) -> Result<(), String>;
}

impl Prepare for fswal_backends::dir::DirPreparer {
    fn prepare(&mut self, index: u32, size_bytes: u64) -> Result<(), String> {
        fswal_backends::dir::DirPreparer::prepare(self, index, size_bytes)
            .map_err(|e| e.to_string())
    }
}

/// How a [`Recorder`] runs.
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
        }
    }
}

/// Why the recorder did not take an event, or stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecorderError {
    /// The event is not valid (id 0, an undefined enum value, non-zero padding).
    InvalidEvent {
        /// Its id.
        event_id: u64,
        /// What is wrong.
        defect: EventDefect,
    },
    /// Its id is not greater than the last appended one.
    EventIdNotIncreasing {
        /// Its id.
        event_id: u64,
        /// The last appended id.
        last_event_id: u64,
    },
    /// The I/O thread stopped on an error; nothing past the durable watermark may be
    /// acknowledged. Reopen the log to recover.
    Stopped(String),
    /// Waiting for durability timed out.
    TimedOut {
        /// The id waited for.
        event_id: u64,
        /// The watermark reached.
        durable_event_id: u64,
    },
}

impl fmt::Display for RecorderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent { event_id, defect } => {
                write!(f, "event {event_id} refused: {defect}")
            }
            Self::EventIdNotIncreasing {
                event_id,
                last_event_id,
            } => write!(
                f,
                "event {event_id} refused: its id is not greater than the last appended {last_event_id}"
            ),
            Self::Stopped(why) => write!(f, "the recorder stopped: {why}"),
            Self::TimedOut {
                event_id,
                durable_event_id,
            } => write!(
                f,
                "event {event_id} not durable in time (durable through {durable_event_id})"
            ),
        }
    }
}

impl std::error::Error for RecorderError {}

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
    error: Mutex<Option<String>>,
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
            .unwrap_or_else(|| "unknown error".to_string());
        RecorderError::Stopped(why)
    }

    fn publish(&self, durable: u64) {
        self.durable.store(durable, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed.notify_all();
    }

    fn fail(&self, why: String) {
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        self.failed.store(true, Ordering::Release);
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed.notify_all();
    }
}

/// The recorder: the engine thread's handle.
pub struct Recorder {
    producer: ring::Producer<RequestEvent>,
    last_event_id: u64,
    spins_before_yield: u32,
    shared: Arc<Shared>,
    telemetry: Arc<Telemetry>,
    io: Option<JoinHandle<Result<u64, String>>>,
    preparer: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Recovers the log in `store` (see [`WalWriter::open`]) on the calling thread,
    /// then starts the I/O thread (and the preparer's, if configured).
    pub fn start<S, C>(
        store: S,
        clock: C,
        mut config: RecorderConfig,
    ) -> Result<(Self, Recovery), fswal_core::Error<S::Error>>
    where
        S: SegmentStore + Send + 'static,
        S::Device: Send,
        S::Error: fmt::Display,
        C: Clock + Send + 'static,
    {
        let telemetry = Arc::new(Telemetry::new());
        let (prepare_tx, preparer) = match config.preparer.take() {
            Some(mut p) => {
                let (tx, rx) = mpsc::channel::<(u32, u64)>();
                let tel = Arc::clone(&telemetry);
                let handle = thread::Builder::new()
                    .name("fswal-preparer".into())
                    .spawn(move || {
                        // Ends when the I/O thread drops the sender.
                        for (index, size) in rx {
                            if p.prepare(index, size).is_ok() {
                                tel.segments_prepared.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                    .ok();
                (Some(tx), handle)
            }
            None => (None, None),
        };
        let store = TimedStore::new(store, Arc::clone(&telemetry), prepare_tx);
        let (writer, recovery) = WalWriter::open(store, clock, config.writer)?;
        let durable = writer.durable_event_id();
        let last_event_id = writer.last_event_id();
        let (producer, consumer) = ring::ring(config.ring_capacity, RequestEvent::ZERO);
        let shared = Arc::new(Shared {
            durable: AtomicU64::new(durable),
            sync_requested: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            lock: Mutex::new(()),
            committed: Condvar::new(),
        });
        let io_shared = Arc::clone(&shared);
        let io_telemetry = Arc::clone(&telemetry);
        let budget = (config.commit_every_events.max(1), config.commit_every);
        let io = thread::Builder::new()
            .name("fswal-io".into())
            .spawn(move || io_loop(writer, consumer, &io_shared, &io_telemetry, budget))
            .map_err(|_| fswal_core::Error::LogicBug("could not start the I/O thread"))?;
        Ok((
            Self {
                producer,
                last_event_id,
                spins_before_yield: config.spins_before_yield,
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
            // Bounded by the I/O thread: it drains the ring or fails, and a failure ends
            // the wait.
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
                .map_err(|_| RecorderError::Stopped("the I/O thread panicked".into()))?
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
) -> Result<u64, String>
where
    S: SegmentStore,
    S::Error: fmt::Display,
    C: Clock,
{
    let mut unsynced = 0u64;
    let mut batch = [RequestEvent::ZERO; BLOCK_EVENTS_MAX];
    let mut oldest: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    let fail = |why: String| {
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
            writer
                .append_batch(events)
                .map_err(|e| fail(e.to_string()))?;
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
            let durable = writer.sync().map_err(|e| fail(e.to_string()))?;
            telemetry.commit_ns.record(ns_since(start));
            telemetry.commits.fetch_add(1, Ordering::Relaxed);
            shared.publish(durable);
            unsynced = 0;
            oldest = None;
        }
        if stopping {
            let durable = writer.close().map_err(|e| fail(e.to_string()))?;
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
        assert!(
            matches!(stopped, Some(RecorderError::Stopped(_))),
            "{stopped:?}"
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

//! The crash simulator: runs a seeded workload on a fault-injecting store, and at every
//! crash point builds the states a crash could leave under the fault model, recovers
//! each and checks what fswal promises.
//!
//! A crash point is any moment before an operation that changes what a crash would
//! leave (a device write or sync, a segment creation or removal, a checkpoint write, a
//! sync of the store's metadata). Two kinds of crash are taken at each:
//!
//! - a **power cut**: the images are the durable state alone; every subset of the
//!   pending writes (exhaustively up to [`SUBSETS_EXHAUSTIVE_MAX`] pending, sampled
//!   beyond); every sector-prefix cut of each pending write; sampled per-sector subsets
//!   of each pending write; and the last segment extended with zeros;
//! - a **process crash**: the machine stays up, so a restarted process reads every
//!   pending write from the cache, but none of them is durable
//!   ([`FaultStore::after_process_crash`]), and neither is an operation the process was
//!   in the middle of (a creation, a removal, a checkpoint replaced), tried both done
//!   and not done. The restarted process recovers, appends and syncs, and at every
//!   crash point of that run a power cut is taken again (the durable state, everything
//!   pending, a sampled subset), and now and then another process crash, up to
//!   [`RESTARTS_MAX`] restarts deep: crash, restart, append, crash again.
//!
//! On every state recovered:
//!
//! 1. recovery, replay and the checks do not panic or hang (every loop is bounded);
//! 2. the events acknowledged durable (those up to the watermark a returned sync or
//!    seal reported, and everything a recovery that returned found) are a prefix of
//!    the replayed events (`acknowledged_lost`);
//! 3. the replayed events are a prefix of the appended events (`phantom_events`);
//! 4. recovery ends exactly where the independent scanner ([`fswal_scan`]) says the
//!    valid data ends (`truncation_mismatches`);
//! 5. appending after recovery and reopening gives the old events then the new ones;
//! 6. a power cut right after recovery returned leaves the same log (recovery made
//!    what it read durable before relying on it).
//!
//! The report keeps one tally per lineage: power cuts of the workload (and crashes
//! during their recovery), the states process crashes leave, and power cuts in runs
//! restarted after a process crash.
//!
//! Some power-cut images are recovered on a store that itself records crash points, and
//! the images of a crash *during recovery* are checked the same way.
//!
//! Cost: segments sealed before the first one a pending write touches are the same in
//! every image of a crash point. They are verified once per crash point; per image,
//! recovery starts from the checkpoint ([`OpenScan::FromCheckpoint`]) and the checks
//! replay from the first segment that can differ, so a run costs what its tails cost,
//! not what the whole log costs. One image in [`FULL_SCAN_EVERY`] is recovered with a
//! full scan instead.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use fswal_core::fault::{FaultStore, Image, InFlight, Landed, Snapshot};
use fswal_core::reference::reference_event;
use fswal_core::writer::OpenScan;
use fswal_core::{Mode, Replay, RequestEvent, SegmentStore, WalWriter, WriterConfig};

use fswal_scan::valid_prefix;

/// Pending writes up to which every subset is tried.
pub const SUBSETS_EXHAUSTIVE_MAX: usize = 12;

/// Subsets sampled when more writes are pending.
pub const SUBSETS_SAMPLED: usize = 256;

/// Random sector subsets tried per pending write.
pub const SECTOR_MASKS_PER_WRITE: usize = 6;

/// One image in this many is recovered with a full scan rather than from the checkpoint.
pub const FULL_SCAN_EVERY: u64 = 16;

/// One image in this many is also recovered on a store that records crash points, to
/// check crashes during recovery.
pub const RECOVERY_CRASH_EVERY: u64 = 16;

/// Events appended after recovery, for check 5 (a sync after half of them, then a close).
const EVENTS_AFTER_RECOVERY: u64 = 40;

/// How deep process crashes nest: a process crash, a restart that appends, another
/// process crash, and so on.
pub const RESTARTS_MAX: u32 = 2;

/// In a run restarted after a process crash, one crash point in this many is also
/// taken as another process crash (while [`RESTARTS_MAX`] allows).
pub const RESTARTED_PROCESS_CRASH_EVERY: u64 = 8;

/// Failures described in the report, at most.
const FAILURES_LISTED_MAX: usize = 20;

/// The clock of every writer in a simulation: fixed, so that runs are reproducible.
type SimClock = fn() -> u64;

fn fixed_clock() -> u64 {
    1
}

const CLOCK: SimClock = fixed_clock;

/// The deterministic generator (xorshift64): the same seed gives the same run.
pub use fswal_core::rng::XorShift64 as Rng;

/// What to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Seeds the workload and the sampled images.
    pub seed: u64,
    /// Events the workload appends.
    pub events: u64,
    /// The sector size the fault model tears writes at.
    pub sector_bytes: u32,
    /// Block slots per segment (small, so that the workload crosses segments often).
    pub blocks_per_segment: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            events: 10_000,
            sector_bytes: 512,
            blocks_per_segment: 16,
        }
    }
}

/// What the states of one lineage of crashes gave.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// States recovered and checked.
    pub images: u64,
    /// Acknowledged events missing after recovery, summed over the states.
    pub acknowledged_lost: u64,
    /// Replayed events that were never appended (or differ), summed over the states.
    pub phantom_events: u64,
    /// States where recovery ended elsewhere than the independent scanner says.
    pub truncation_mismatches: u64,
    /// States where recovery refused a log that crashes alone produced.
    pub refusals: u64,
    /// States where appending after recovery, or a power cut right after it, went wrong.
    pub continuation_failures: u64,
    /// States whose processing panicked.
    pub panics: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.images += other.images;
        self.acknowledged_lost += other.acknowledged_lost;
        self.phantom_events += other.phantom_events;
        self.truncation_mismatches += other.truncation_mismatches;
        self.refusals += other.refusals;
        self.continuation_failures += other.continuation_failures;
        self.panics += other.panics;
    }

    /// Whether every check held.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.acknowledged_lost == 0
            && self.phantom_events == 0
            && self.truncation_mismatches == 0
            && self.refusals == 0
            && self.continuation_failures == 0
            && self.panics == 0
    }
}

/// The lineage of a state: what crash made it, after what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lineage {
    /// A power cut in the workload, or in the recovery of one.
    PowerCut,
    /// What a process crash leaves: every pending write visible, none durable.
    ProcessCrash,
    /// A power cut in a run restarted after a process crash.
    PowerCutAfterProcessCrash,
}

/// What a simulation found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Crash points explored (in the workload, during recovery, in restarted runs).
    pub crash_points: u64,
    /// Crash points in the workload itself, among them.
    pub workload_crash_points: u64,
    /// Crash points during the recovery of a power-cut image, among them.
    pub recovery_crash_points: u64,
    /// Crash points in runs restarted after a process crash, among them.
    pub restarted_crash_points: u64,
    /// States recovered and checked, of every lineage.
    pub images: u64,
    /// Power-cut images by kind, and process-crash states (`process-crash`, and
    /// `process-crash-half-done` with the interrupted operation visible).
    pub images_by_kind: BTreeMap<&'static str, u64>,
    /// Power cuts of the workload, and crashes during their recovery.
    pub power_cut: Tally,
    /// The states process crashes leave, recovered.
    pub process_crash: Tally,
    /// Power cuts in runs restarted after a process crash.
    pub power_cut_after_process_crash: Tally,
    /// The first failures, described.
    pub failures: Vec<String>,
}

impl SimReport {
    /// The three lineages summed.
    #[must_use]
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for lineage in [
            &self.power_cut,
            &self.process_crash,
            &self.power_cut_after_process_crash,
        ] {
            t.add(lineage);
        }
        t
    }

    /// Whether every check held on every state.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.total().is_clean()
    }

    fn tally(&mut self, lineage: Lineage) -> &mut Tally {
        match lineage {
            Lineage::PowerCut => &mut self.power_cut,
            Lineage::ProcessCrash => &mut self.process_crash,
            Lineage::PowerCutAfterProcessCrash => &mut self.power_cut_after_process_crash,
        }
    }

    fn fail(&mut self, what: String) {
        if self.failures.len() < FAILURES_LISTED_MAX {
            self.failures.push(what);
        }
    }
}

/// What a run had done when a crash point came, counted in events of its history.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// Events appended (including one being appended).
    appended: usize,
    /// Events acknowledged durable (a returned sync or seal covered them, or a
    /// recovery that returned found them).
    acknowledged: usize,
}

/// The shared state of a simulation: the workload's events and progress, the report.
struct Run {
    config: SimConfig,
    events: Arc<Vec<RequestEvent>>,
    progress: Progress,
    report: SimReport,
    rng: Rng,
    images_seen: u64,
    /// Sealed segments verified so far: (index, image, their event ids). A sealed
    /// segment never changes, and its image keeps its allocation, so a segment whose
    /// image is the same allocation need not be verified again. The entry holds the
    /// image, so that its allocation cannot be freed and reused for other bytes.
    verified: Vec<(u32, Arc<Vec<u8>>, Vec<u64>)>,
}

/// Where a crash point was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// In the workload.
    Workload,
    /// In the recovery of a power-cut image of the workload.
    Recovery,
    /// In a run restarted after `depth` process crashes.
    Restarted { depth: u32 },
}

/// A crash point with what the run had appended by then: `history` holds the events
/// appended in order (the run may not have reached the end of it), `progress` how
/// many of them were appended and acknowledged.
struct Point<'a> {
    snapshot: &'a Snapshot,
    history: &'a Arc<Vec<RequestEvent>>,
    progress: Progress,
    origin: Origin,
}

/// How the state to recover is made from a crash point.
enum Restart<'a> {
    /// A power cut left this image.
    PowerCut(&'a Image),
    /// The process crashed; `half_done` leaves the operation it was in visible.
    ProcessCrash {
        snapshot: &'a Snapshot,
        half_done: bool,
    },
}

/// Runs the simulation; `progress` is called now and then with the report so far.
pub fn simulate(config: SimConfig, mut progress: impl FnMut(&SimReport)) -> SimReport {
    let mut rng = Rng::new(config.seed);
    // Increasing ids with small random gaps, from the reference stream.
    let mut id = 0u64;
    let events: Arc<Vec<RequestEvent>> = Arc::new(
        (0..config.events)
            .map(|_| {
                id += 1 + rng.below(3);
                reference_event(id)
            })
            .collect(),
    );
    let run = Arc::new(Mutex::new(Run {
        config,
        events: Arc::clone(&events),
        progress: Progress {
            appended: 0,
            acknowledged: 0,
        },
        report: SimReport::default(),
        rng: Rng::new(config.seed ^ 0x5eed),
        images_seen: 0,
        verified: Vec::new(),
    }));

    let store = FaultStore::new();
    let observer_run = Arc::clone(&run);
    store.set_observer(Some(Box::new(move |snapshot: &Snapshot| {
        let mut run = lock(&observer_run);
        workload_point(&mut run, snapshot);
    })));

    let writer_config = writer_config(config, OpenScan::Full);
    let mut workload_rng = Rng::new(config.seed ^ 0xc0ffee);
    let mut writer = WalWriter::open(store.clone(), CLOCK, writer_config)
        .ok()
        .map(|(w, _)| w);
    let mut next = 0usize;
    let mut since_sync = 0u64;
    let mut sync_after = sync_interval(&mut workload_rng);
    // Bounded by the events: each pass appends one, or restarts once between appends.
    while next < events.len() {
        let Some(w) = writer.as_mut() else { break };
        lock(&run).progress.appended = next + 1;
        if w.append(&events[next]).is_err() {
            break;
        }
        next += 1;
        since_sync += 1;
        let acked = |w: &WalWriter<FaultStore, SimClock>| {
            events.partition_point(|e| e.event_id() <= w.durable_event_id())
        };
        lock(&run).progress.acknowledged = acked(w);
        if since_sync >= sync_after {
            since_sync = 0;
            sync_after = sync_interval(&mut workload_rng);
            if w.sync().is_err() {
                break;
            }
            lock(&run).progress.acknowledged = acked(w);
        }
        if workload_rng.below(1500) == 0 {
            // A clean restart: seal, reopen.
            if w.close().is_err() {
                break;
            }
            lock(&run).progress.acknowledged = acked(w);
            drop(writer.take());
            writer = WalWriter::open(store.clone(), CLOCK, writer_config)
                .ok()
                .map(|(w, _)| w);
        }
        if next % 256 == 0 {
            progress(&lock(&run).report);
        }
    }
    if let Some(w) = writer.as_mut() {
        let _ = w.close();
    }
    // The final state is a crash point too.
    {
        let snapshot = store.snapshot();
        let mut run = lock(&run);
        run.progress.acknowledged = run.progress.appended;
        workload_point(&mut run, &snapshot);
    }
    store.set_observer(None);
    let report = lock(&run).report.clone();
    progress(&report);
    report
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer_config(config: SimConfig, open_scan: OpenScan) -> WriterConfig {
    WriterConfig::with_blocks(config.blocks_per_segment).open_scan(open_scan)
}

/// Events between syncs: mostly a few, so that crash points come often; sometimes
/// a block or more, so that some crash points have several blocks pending (and a
/// segment sealed in between).
fn sync_interval(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=94 => 1 + rng.below(6),
        95..=98 => 1 + rng.below(300),
        _ => 257 + rng.below(1000),
    }
}

/// Which power-cut images a crash point gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Breadth {
    /// Every kind (see the module docs).
    Full,
    /// The durable state, everything pending, and one sampled subset: for the many
    /// crash points of restarted runs.
    Few,
}

/// The choices of landed pending writes to try at a crash point, with their kinds.
fn image_choices(
    snapshot: &Snapshot,
    sector_bytes: u32,
    breadth: Breadth,
    rng: &mut Rng,
) -> Vec<(&'static str, Vec<Landed>)> {
    let n = snapshot.pending.len();
    let mut out = vec![("durable", vec![Landed::Nothing; n])];
    if n == 0 {
        return out;
    }
    out.push(("all-pending", vec![Landed::All; n]));
    let random_subset = |rng: &mut Rng| -> Vec<Landed> {
        (0..n)
            .map(|_| {
                if rng.below(2) == 1 {
                    Landed::All
                } else {
                    Landed::Nothing
                }
            })
            .collect()
    };
    if breadth == Breadth::Few {
        if n > 1 {
            out.push(("subset", random_subset(rng)));
        }
        return out;
    }
    // Every subset (out-of-order loss), or a sample.
    if n <= SUBSETS_EXHAUSTIVE_MAX {
        for mask in 1..(1u64 << n) - 1 {
            out.push((
                "subset",
                (0..n)
                    .map(|i| {
                        if mask >> i & 1 == 1 {
                            Landed::All
                        } else {
                            Landed::Nothing
                        }
                    })
                    .collect(),
            ));
        }
    } else {
        for _ in 0..SUBSETS_SAMPLED {
            out.push(("subset", random_subset(rng)));
        }
    }
    for (i, write) in snapshot.pending.iter().enumerate() {
        let sectors = write.sectors(sector_bytes);
        let count = sectors.end - sectors.start;
        // Every sector-prefix cut of write i, the writes before it landed.
        for k in 1..count {
            let mut landed = vec![Landed::Nothing; n];
            landed[..i].fill(Landed::All);
            landed[i] = Landed::Prefix(k);
            out.push(("prefix-cut", landed));
        }
        // Sampled per-sector subsets of write i.
        if count > 1 {
            for _ in 0..SECTOR_MASKS_PER_WRITE {
                let mut landed = vec![Landed::Nothing; n];
                landed[..i].fill(Landed::All);
                landed[i] = Landed::Mask(rng.next_u64());
                out.push(("sector-mask", landed));
            }
        }
    }
    out
}

/// A crash point of the workload.
fn workload_point(run: &mut Run, snapshot: &Snapshot) {
    let history = Arc::clone(&run.events);
    let point = Point {
        snapshot,
        history: &history,
        progress: run.progress,
        origin: Origin::Workload,
    };
    crash_point(run, &point);
}

/// Explores one crash point: a power cut (every image, checked) and, in the workload
/// and now and then in a restarted run, a process crash.
fn crash_point(run: &mut Run, point: &Point<'_>) {
    run.report.crash_points += 1;
    let (breadth, lineage) = match point.origin {
        Origin::Workload => {
            run.report.workload_crash_points += 1;
            (Breadth::Full, Lineage::PowerCut)
        }
        Origin::Recovery => {
            run.report.recovery_crash_points += 1;
            (Breadth::Full, Lineage::PowerCut)
        }
        Origin::Restarted { .. } => {
            run.report.restarted_crash_points += 1;
            (Breadth::Few, Lineage::PowerCutAfterProcessCrash)
        }
    };
    let snapshot = point.snapshot;
    let sector = run.config.sector_bytes;
    let choices = image_choices(snapshot, sector, breadth, &mut run.rng);
    // Segments the pending writes touch may differ between images; those before the
    // first of them, and before the checkpoint's segment, are the same in all.
    let first_touched = snapshot.pending.iter().map(|p| p.segment).min();
    let base = stable_base(snapshot, first_touched);
    let Some(stable) = verify_stable(run, snapshot, base, point.history, lineage) else {
        return;
    };
    let mut images: Vec<(&'static str, Image)> = choices
        .into_iter()
        .map(|(kind, landed)| (kind, snapshot.image(&landed, sector)))
        .collect();
    if breadth == Breadth::Full {
        // Files extended with zeros: the last segment a little longer than written.
        let all = snapshot.image(&vec![Landed::All; snapshot.pending.len()], sector);
        for extra in [u64::from(sector), 8000] {
            let mut img = all.clone();
            if let Some((_, last)) = img.segments.iter_mut().next_back() {
                let bytes = Arc::make_mut(last);
                bytes.resize(bytes.len() + usize::try_from(extra).unwrap_or(0), 0);
            }
            images.push(("extended-zeros", img));
        }
    }
    let stable_part = Stable { base, ids: &stable };
    for (kind, image) in images {
        check(
            run,
            point,
            kind,
            lineage,
            &Restart::PowerCut(&image),
            &stable_part,
        );
    }
    // A process crash here: the restarted process sees everything pending.
    let take_process_crash = match point.origin {
        Origin::Workload => true,
        Origin::Recovery => false,
        Origin::Restarted { depth } => {
            depth < RESTARTS_MAX && run.rng.below(RESTARTED_PROCESS_CRASH_EVERY) == 0
        }
    };
    if take_process_crash {
        let metadata_in_flight = matches!(
            snapshot.in_flight,
            Some(InFlight::Create { .. } | InFlight::Remove { .. } | InFlight::Checkpoint { .. })
        );
        for half_done in [false, true] {
            if half_done && !metadata_in_flight {
                continue;
            }
            let kind = if half_done {
                "process-crash-half-done"
            } else {
                "process-crash"
            };
            // What a process crash leaves shows the durable segments before the first
            // pending write as they are, unless a segment removed without that being
            // durable yet (a ghost, or a removal left half done) is among them.
            let ghosts = !snapshot.ghosts.is_empty()
                || (half_done && matches!(snapshot.in_flight, Some(InFlight::Remove { .. })));
            let none = Stable {
                base: None,
                ids: &[],
            };
            check(
                run,
                point,
                kind,
                Lineage::ProcessCrash,
                &Restart::ProcessCrash {
                    snapshot,
                    half_done,
                },
                if ghosts { &none } else { &stable_part },
            );
        }
    }
}

/// The segments every image of a crash point shares, verified once: those before
/// `base`, holding the events `ids` (the first `ids.len()` of the history).
struct Stable<'a> {
    base: Option<u32>,
    ids: &'a [u64],
}

/// The segment from which images may differ: the first one a pending write touches,
/// or the checkpoint's segment if earlier (recovery reads from there).
fn stable_base(snapshot: &Snapshot, first_touched: Option<u32>) -> Option<u32> {
    let last = snapshot.durable.keys().next_back().copied();
    let checkpoint = snapshot.checkpoints[0]
        .and_then(|bytes| fswal_core::checkpoint::Checkpoint::decode(&bytes).ok())
        .map(|c| c.segment_index);
    [first_touched, checkpoint, last]
        .into_iter()
        .flatten()
        .min()
}

/// The events of the segments before `base`, verified: each is a sealed segment the
/// independent scanner accepts, the indices are contiguous, the ids keep increasing,
/// and together they are a prefix of `history`. `None` (with a failure recorded in
/// `lineage`'s tally) if not. Segments verified at an earlier crash point are not read
/// again.
fn verify_stable(
    run: &mut Run,
    snapshot: &Snapshot,
    base: Option<u32>,
    history: &[RequestEvent],
    lineage: Lineage,
) -> Option<Vec<u64>> {
    let Some(base) = base else {
        return Some(Vec::new());
    };
    let mut ids: Vec<u64> = Vec::new();
    let mut previous: Option<u32> = None;
    for (position, (&index, bytes)) in snapshot.durable.range(..base).enumerate() {
        let cached = run
            .verified
            .get(position)
            .filter(|(i, image, _)| *i == index && Arc::ptr_eq(image, bytes))
            .map(|(_, _, ids)| ids.clone());
        let segment_ids = match cached {
            Some(segment_ids) => segment_ids,
            None => {
                run.verified.truncate(position);
                let prefix = valid_prefix(&BTreeMap::from([(index, bytes.as_ref().clone())]));
                if prefix.stop.is_some() || !prefix.tail_sealed {
                    let what = format!(
                        "op {}: sealed segment {index} does not verify ({:?})",
                        snapshot.op,
                        prefix.stop.map(|s| s.rule)
                    );
                    run.report.tally(lineage).truncation_mismatches += 1;
                    run.report.fail(what);
                    return None;
                }
                run.verified
                    .push((index, Arc::clone(bytes), prefix.event_ids.clone()));
                prefix.event_ids
            }
        };
        let continues = previous.is_none_or(|p| index == p + 1)
            && segment_ids
                .first()
                .is_none_or(|first| ids.last().is_none_or(|last| first > last));
        if !continues {
            run.report.tally(lineage).truncation_mismatches += 1;
            run.report.fail(format!(
                "op {}: segment {index} does not continue the log",
                snapshot.op
            ));
            return None;
        }
        previous = Some(index);
        ids.extend(segment_ids);
    }
    let appended = history.iter().map(RequestEvent::event_id);
    if ids.iter().copied().ne(appended.take(ids.len())) {
        run.report.tally(lineage).phantom_events += 1;
        run.report.fail(format!(
            "op {}: the sealed segments hold events never appended",
            snapshot.op
        ));
        return None;
    }
    Some(ids)
}

/// The events a replay of `store` yields from segment `from` on (all of them when
/// `from` is its first), with the first event id of that segment to seek to.
fn replay_from<S: SegmentStore>(
    store: S,
    from_event: Option<u64>,
) -> Result<(Vec<RequestEvent>, fswal_core::Summary), String>
where
    S::Error: std::fmt::Debug,
{
    let mut replay = Replay::new(store, Mode::Strict);
    if let Some(id) = from_event {
        replay.seek(id).map_err(|e| format!("{e:?}"))?;
    }
    let mut events = Vec::new();
    while let Some(step) = replay.step().map_err(|e| format!("{e:?}"))? {
        if let fswal_core::Step::Block(b) = step {
            events.extend_from_slice(b.events);
        }
    }
    Ok((events, *replay.summary()))
}

/// What a restarted run collects: its crash points, with its progress at each.
type Collected = Arc<Mutex<Vec<(Snapshot, Progress)>>>;

/// Recovers, replays and checks one state of a crash point; for a process crash, then
/// explores the crash points of the restarted run.
fn check(
    run: &mut Run,
    point: &Point<'_>,
    kind: &'static str,
    lineage: Lineage,
    restart: &Restart<'_>,
    stable: &Stable<'_>,
) {
    run.report.images += 1;
    run.report.tally(lineage).images += 1;
    *run.report.images_by_kind.entry(kind).or_default() += 1;
    run.images_seen += 1;
    let seen = run.images_seen;
    let scan = if seen % FULL_SCAN_EVERY == 0 {
        OpenScan::Full
    } else {
        OpenScan::FromCheckpoint
    };
    let config = writer_config(run.config, scan);
    let (store, visible) = match restart {
        Restart::PowerCut(image) => (FaultStore::from_image(image), None),
        Restart::ProcessCrash {
            snapshot,
            half_done,
        } => {
            let store = FaultStore::after_process_crash(snapshot, *half_done);
            let visible = store.visible_image();
            (store, Some(visible))
        }
    };
    let image = match (restart, &visible) {
        (_, Some(visible)) => visible,
        (Restart::PowerCut(image), None) => *image,
        (Restart::ProcessCrash { .. }, None) => return,
    };
    // A restarted run records its crash points, to be explored after the checks.
    let depth = match point.origin {
        Origin::Restarted { depth } => depth,
        Origin::Workload | Origin::Recovery => 0,
    };
    let collected: Option<(Collected, Arc<Mutex<Progress>>)> = visible.as_ref().map(|_| {
        let points: Collected = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(Mutex::new(point.progress));
        let (to_points, to_progress) = (Arc::clone(&points), Arc::clone(&progress));
        store.set_observer(Some(Box::new(move |s: &Snapshot| {
            let now = *lock(&to_progress);
            lock(&to_points).push((s.clone(), now));
        })));
        (points, progress)
    });
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        check_state(
            &store,
            image,
            stable,
            point,
            config,
            kind,
            collected.as_ref().map(|(_, p)| p),
        )
    }));
    store.set_observer(None);
    let history2 = match outcome {
        Err(_) => {
            run.report.tally(lineage).panics += 1;
            run.report.fail(format!("{kind} state: panicked"));
            None
        }
        Ok((findings, history2)) => {
            absorb(&mut run.report, lineage, findings);
            history2
        }
    };
    // The restarted run's crash points, each a power cut (and now and then a process
    // crash) with the restarted run's history.
    if let (Some((points, _)), Some(history2)) = (collected, history2) {
        let history2 = Arc::new(history2);
        let points = std::mem::take(&mut *lock(&points));
        for (snapshot, progress) in &points {
            let restarted = Point {
                snapshot,
                history: &history2,
                progress: *progress,
                origin: Origin::Restarted { depth: depth + 1 },
            };
            crash_point(run, &restarted);
        }
        return;
    }
    // A crash during recovery: recover this image on a store that records crash points,
    // and explore those (once: no crash during the recovery of a recovery's crash).
    if let Restart::PowerCut(image) = restart {
        if point.origin == Origin::Workload && seen % RECOVERY_CRASH_EVERY == 0 {
            explore_recovery_crashes(run, point, image, config);
        }
    }
}

/// Recovers `image` on a store that records crash points, and explores each as a
/// power cut during recovery.
fn explore_recovery_crashes(run: &mut Run, point: &Point<'_>, image: &Image, config: WriterConfig) {
    let store = FaultStore::from_image(image);
    let points = Arc::new(Mutex::new(Vec::new()));
    let collect = Arc::clone(&points);
    store.set_observer(Some(Box::new(move |s: &Snapshot| {
        lock(&collect).push(s.clone())
    })));
    let recovered = catch_unwind(AssertUnwindSafe(|| {
        WalWriter::open(store.clone(), CLOCK, config).is_ok()
    }));
    store.set_observer(None);
    if recovered.is_err() {
        run.report.power_cut.panics += 1;
    }
    let points = std::mem::take(&mut *lock(&points));
    for snapshot in &points {
        let during = Point {
            snapshot,
            history: point.history,
            progress: point.progress,
            origin: Origin::Recovery,
        };
        crash_point(run, &during);
    }
}

/// Findings of one state, to add to the report.
#[derive(Default)]
struct Findings {
    acknowledged_lost: u64,
    phantom_events: u64,
    truncation_mismatch: bool,
    refused: bool,
    continuation_failure: bool,
    failures: Vec<String>,
}

fn absorb(report: &mut SimReport, lineage: Lineage, f: Findings) {
    let t = report.tally(lineage);
    t.acknowledged_lost += f.acknowledged_lost;
    t.phantom_events += f.phantom_events;
    t.truncation_mismatches += u64::from(f.truncation_mismatch);
    t.refusals += u64::from(f.refused);
    t.continuation_failures += u64::from(f.continuation_failure);
    for what in f.failures {
        report.fail(what);
    }
}

/// The checks of one state: `store` holds it (`image` is what its reads show);
/// `progress`, when given, is kept up to date as the continuation appends, for the
/// crash points the store's observer records. Returns the findings, and the history of
/// the continuation (the events recovered, then those appended after) once recovery
/// succeeded.
fn check_state(
    store: &FaultStore,
    image: &Image,
    stable: &Stable<'_>,
    point: &Point<'_>,
    config: WriterConfig,
    kind: &str,
    progress: Option<&Arc<Mutex<Progress>>>,
) -> (Findings, Option<Vec<RequestEvent>>) {
    let mut f = Findings::default();
    let events: &[RequestEvent] = point.history;
    let set_progress = |p: Progress| {
        if let Some(shared) = progress {
            *lock(shared) = p;
        }
    };
    let op = point.snapshot.op;
    // Replay from just after the stable prefix (everything, when it is empty): any
    // event above its last id, the ones appended after recovery included.
    let tail_from = stable.ids.len();
    let seek = stable.ids.last().map(|&last| last + 1);
    // 4. Where the independent scanner says the valid data ends (from the first
    //    segment that can differ: the stable prefix was checked once).
    let tail_map: BTreeMap<u32, Vec<u8>> = image
        .segments
        .range(stable.base.unwrap_or(0)..)
        .map(|(&i, b)| (i, b.as_ref().clone()))
        .collect();
    let scanned = valid_prefix(&tail_map);
    let mut expected: Vec<u64> = stable.ids.to_vec();
    expected.extend_from_slice(&scanned.event_ids);
    let expected_last = expected.last().copied().unwrap_or(0);

    // Recovery.
    let (mut writer, _) = match WalWriter::open(store.clone(), CLOCK, config) {
        Ok(opened) => opened,
        Err(e) => {
            f.refused = true;
            f.failures
                .push(format!("op {op} {kind}: recovery refused: {e}"));
            return (f, None);
        }
    };
    let recovered_last = writer.last_event_id();
    if recovered_last != expected_last {
        f.truncation_mismatch = true;
        f.failures.push(format!(
            "op {op} {kind}: recovery ends at event {recovered_last}, the independent scanner at {expected_last}"
        ));
    }
    // 2. and 3. on the replayed events.
    let replayed = match replay_from(store.clone(), seek) {
        Ok((tail, _)) => {
            let mut all: Vec<RequestEvent> = events[..tail_from.min(events.len())].to_vec();
            all.extend(tail);
            all
        }
        Err(e) => {
            f.refused = true;
            f.failures
                .push(format!("op {op} {kind}: replay after recovery failed: {e}"));
            return (f, None);
        }
    };
    let matching = replayed
        .iter()
        .zip(events)
        .take_while(|(a, b)| a == b)
        .count();
    f.phantom_events = (replayed.len() - matching) as u64;
    if replayed.len() > point.progress.appended {
        f.phantom_events = f
            .phantom_events
            .max((replayed.len() - point.progress.appended) as u64);
    }
    f.acknowledged_lost = point.progress.acknowledged.saturating_sub(matching) as u64;
    if f.phantom_events > 0 {
        f.failures.push(format!(
            "op {op} {kind}: {} replayed events were never appended",
            f.phantom_events
        ));
    }
    if f.acknowledged_lost > 0 {
        f.failures.push(format!(
            "op {op} {kind}: {} acknowledged events lost",
            f.acknowledged_lost
        ));
    }
    // Recovery returned: what it found counts as acknowledged from now on.
    let recovered = matching;
    let new: Vec<RequestEvent> = (1..=EVENTS_AFTER_RECOVERY)
        .map(|k| reference_event(recovered_last + k))
        .collect();
    let mut history2: Vec<RequestEvent> = events[..recovered].to_vec();
    history2.extend_from_slice(&new);
    set_progress(Progress {
        appended: recovered,
        acknowledged: recovered,
    });
    // 6. A power cut right after recovery returned leaves the same log.
    match WalWriter::open(
        FaultStore::from_image(&store.snapshot().durable_image()),
        CLOCK,
        config,
    ) {
        Ok((again, _)) if again.last_event_id() == recovered_last => {}
        Ok((again, _)) => {
            f.continuation_failure = true;
            f.failures.push(format!(
                "op {op} {kind}: after a power cut right after recovery, the log ends at {}, recovery found {recovered_last}",
                again.last_event_id()
            ));
        }
        Err(e) => {
            f.continuation_failure = true;
            f.failures.push(format!(
                "op {op} {kind}: after a power cut right after recovery, recovery refused: {e}"
            ));
        }
    }
    // 5. Appending after recovery (a sync half way, then a close), then reopening,
    //    gives the old events then the new.
    let half = new.len() / 2;
    let mut appended = Ok(());
    for (j, e) in new.iter().enumerate() {
        set_progress(Progress {
            appended: recovered + j + 1,
            acknowledged: recovered + if j >= half { half } else { 0 },
        });
        appended = writer.append(e);
        if appended.is_err() {
            break;
        }
        if j + 1 == half {
            appended = writer.sync().map(drop);
            if appended.is_err() {
                break;
            }
        }
    }
    let appended = appended.and_then(|()| writer.close().map(drop));
    drop(writer);
    if appended.is_ok() {
        set_progress(Progress {
            appended: recovered + new.len(),
            acknowledged: recovered + new.len(),
        });
    }
    let reopened = appended
        .map_err(|e| format!("{e}"))
        .and_then(|()| WalWriter::open(store.clone(), CLOCK, config).map_err(|e| format!("{e}")));
    match reopened.and_then(|_| replay_from(store.clone(), seek)) {
        Ok((tail, summary)) => {
            let mut all: Vec<RequestEvent> = events[..tail_from.min(events.len())].to_vec();
            all.extend(tail);
            let mut want = replayed.clone();
            want.extend_from_slice(&new);
            if all != want || summary.status != fswal_core::Status::Ok {
                f.continuation_failure = true;
                f.failures.push(format!(
                    "op {op} {kind}: after appending and reopening, replay gives {} events ({}), expected {}",
                    all.len(),
                    summary.status,
                    want.len()
                ));
            }
        }
        Err(e) => {
            f.continuation_failure = true;
            f.failures.push(format!(
                "op {op} {kind}: appending after recovery failed: {e}"
            ));
        }
    }
    (f, Some(history2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_simulation_is_clean() {
        let report = simulate(
            SimConfig {
                seed: 1,
                events: 250,
                sector_bytes: 4096,
                blocks_per_segment: 16,
            },
            |_| {},
        );
        assert!(report.is_clean(), "{report:#?}");
        assert!(report.crash_points > 20, "{report:#?}");
        assert!(report.recovery_crash_points > 0, "{report:#?}");
        assert!(report.restarted_crash_points > 0, "{report:#?}");
        assert!(report.process_crash.images > 0, "{report:#?}");
        assert!(
            report.power_cut_after_process_crash.images > 0,
            "{report:#?}"
        );
        for kind in [
            "durable",
            "all-pending",
            "prefix-cut",
            "extended-zeros",
            "process-crash",
            "process-crash-half-done",
        ] {
            assert!(
                report.images_by_kind.get(kind).copied().unwrap_or(0) > 0,
                "{kind}: {report:#?}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let config = SimConfig {
            seed: 3,
            events: 120,
            sector_bytes: 4096,
            blocks_per_segment: 16,
        };
        assert_eq!(simulate(config, |_| {}), simulate(config, |_| {}));
    }
}

//! The `ops` target: random sequences of append / sync / close / reopen / crash /
//! power cut on a fault-injecting store, against a model.
//!
//! The input is a sequence of operations, one byte each (`b % 8`), some followed by
//! their parameters:
//!
//! | `b % 8` | operation |
//! |---|---|
//! | 0, 1, 2 | append `k` events: `k = (b >> 3) + 1` for `b >> 3 < 24`, else `1 + 4 * next byte`; then a gap byte: the first id is `last + 1 + gap`, the next ones follow with gaps of 1 or 1..=3 |
//! | 3 | sync |
//! | 4 | close (seal the active segment) |
//! | 5 | reopen: drop the writer and open the same store again, pending writes still pending (after a power cut: a crash); with `b >> 3` non-zero, a process crash in the middle of the previous operation: the state at its crash point `(b >> 4) % n` (of its `n`), every write pending then visible and none durable, the interrupted creation, removal or checkpoint left half done if bit 3 is set, recovered |
//! | 6 | crash: drop the writer, build a crash image from the store's snapshot (see [`choose_landed`]), recover it on a fresh store |
//! | 7 | power cut: two bytes give the fuel (`64 *` them): once the store has written that many bytes in all, every write, sync, creation and checkpoint fails |
//!
//! The model: the events appended (an append that failed included: its block may have
//! reached the device), and the acknowledged watermark (the durable id a successful
//! sync or close returned, or that a recovery reported). A process crash in the middle
//! of an operation keeps the watermark from before it; the pending writes it leaves
//! stay pending, so a later crash (op 6) can still drop them, and must not lose what was
//! acknowledged since. After every recovery, and at
//! the end, strict replay must give: every acknowledged event, no event that was not
//! appended (field for field), the end the independent scanner finds on the image, and
//! status `Ok` once recovered. Recovering a crash image is never refused: a crash image
//! built from a snapshot is a legal crash state.
//!
//! At most [`OPS_MAX`] operations and [`EVENTS_MAX`] events run per input.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::sync::{Arc, Mutex, PoisonError};

use fswal_core::fault::{FaultStore, Faults, Image, Landed, Snapshot};
use fswal_core::reference::reference_event;
use fswal_core::{Error, Mode, RequestEvent, Status, WalWriter, WriterConfig};
use fswal_scan::valid_prefix;

use crate::input::Input;
use crate::replay::replay_checked;

/// Operations per input, at most.
pub const OPS_MAX: usize = 64;
/// Events appended per input, at most.
pub const EVENTS_MAX: usize = 2000;

/// The writers' clock: fixed, so that runs are reproducible.
type Clock = fn() -> u64;

fn clock() -> u64 {
    1
}

const CONFIG: WriterConfig = WriterConfig::with_blocks(16);

/// Replay steps allowed on a store of this run: far more than its slots.
const STEPS_MAX: u64 = 1 << 20;

type Writer = WalWriter<FaultStore, Clock>;

/// The run: the store, the writer, the model, and a trace for failure messages.
struct Sim {
    store: FaultStore,
    /// `None` once an operation failed (after a power cut), until a reopen or a crash.
    writer: Option<Writer>,
    /// Every event appended since the log began, in order, as recovery last confirmed
    /// them plus those appended since.
    appended: Vec<RequestEvent>,
    /// Events up to this id were acknowledged durable.
    acked: u64,
    /// Events appended in this run, against [`EVENTS_MAX`].
    events_total: usize,
    /// The crash points of the operation running (or last run), for a process crash
    /// in its middle.
    points: Arc<Mutex<Vec<Snapshot>>>,
    /// The watermark before that operation.
    acked_before_op: u64,
    trace: String,
}

/// Records every crash point of `store` into `points`.
fn observe(store: &FaultStore, points: &Arc<Mutex<Vec<Snapshot>>>) {
    let log = Arc::clone(points);
    store.set_observer(Some(Box::new(move |s: &Snapshot| {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(s.clone());
    })));
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let store = FaultStore::new();
    let (writer, _) = WalWriter::open(store.clone(), clock as Clock, CONFIG)
        .unwrap_or_else(|e| panic!("opening a new log failed: {e}"));
    let points = Arc::new(Mutex::new(Vec::new()));
    observe(&store, &points);
    let mut sim = Sim {
        store,
        writer: Some(writer),
        appended: Vec::new(),
        acked: 0,
        events_total: 0,
        points,
        acked_before_op: 0,
        trace: String::new(),
    };
    for _ in 0..OPS_MAX {
        if input.is_empty() {
            break;
        }
        let b = input.u8();
        if b % 8 == 5 && b >> 3 != 0 {
            // About the previous operation: its crash points are kept.
            sim.process_crash(b >> 3);
            continue;
        }
        sim.acked_before_op = sim.acked;
        sim.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        match b % 8 {
            0..=2 => sim.append(b >> 3, &mut input),
            3 => sim.sync(),
            4 => sim.close(),
            5 => sim.reopen(&mut input),
            6 => sim.crash(&mut input, "crash"),
            _ => sim.power_cut(&mut input),
        }
    }
    sim.store.set_observer(None);
    sim.finish();
}

/// How much of each pending write of `snapshot` lands, and at which sector size, as the
/// input says. First byte: bit 7 picks 4096-byte sectors (else 512); `b % 4` picks
/// nothing landed (the durable state), everything landed, a choice per write (a byte
/// each: nothing, all, a prefix of `b >> 2` sectors, or a mask of the next 8 bytes), or
/// the first `n` writes landed (`n` from the next byte) and the next one torn (a prefix
/// or a mask).
pub fn choose_landed(snapshot: &Snapshot, input: &mut Input<'_>) -> (Vec<Landed>, u32, String) {
    let n = snapshot.pending.len();
    let b = input.u8();
    let sector = if b & 0x80 != 0 { 4096 } else { 512 };
    let torn = |input: &mut Input<'_>| {
        let t = input.u8();
        if t & 1 == 0 {
            Landed::Prefix(u64::from(t >> 1))
        } else {
            Landed::Mask(input.u64())
        }
    };
    let landed: Vec<Landed> = match b % 4 {
        0 => vec![Landed::Nothing; n],
        1 => vec![Landed::All; n],
        2 => (0..n)
            .map(|_| {
                let c = input.u8();
                match c % 4 {
                    0 => Landed::Nothing,
                    1 => Landed::All,
                    2 => Landed::Prefix(u64::from(c >> 2)),
                    _ => Landed::Mask(input.u64()),
                }
            })
            .collect(),
        _ => {
            let k = usize::from(input.u8()) % (n + 1);
            let mut landed = vec![Landed::Nothing; n];
            landed[..k].fill(Landed::All);
            if k < n {
                landed[k] = torn(input);
            }
            landed
        }
    };
    let desc = format!("{sector}-byte sectors, pending {n}: {landed:?}");
    (landed, sector, desc)
}

/// The segments of `image` as the scanner takes them.
fn segments_of(image: &Image) -> BTreeMap<u32, Vec<u8>> {
    image
        .segments
        .iter()
        .map(|(&i, bytes)| (i, bytes.as_ref().clone()))
        .collect()
}

impl Sim {
    fn note(&mut self, what: impl std::fmt::Display) {
        if self.trace.len() < 16_384 {
            let _ = writeln!(self.trace, "  {what}");
        }
    }

    /// After an operation failed: only a power cut may make one fail.
    fn failed(&mut self, op: &str, e: &Error<fswal_core::mem::MemError>) {
        self.note(format_args!("{op} failed: {e}"));
        assert!(
            self.store.power_is_cut(),
            "{op} failed without a fault injected: {e}\ntrace:\n{}",
            self.trace
        );
        self.writer = None;
    }

    fn last_appended(&self) -> u64 {
        self.appended.last().map_or(0, RequestEvent::event_id)
    }

    fn append(&mut self, p: u8, input: &mut Input<'_>) {
        let k = if p < 24 {
            usize::from(p) + 1
        } else {
            1 + 4 * usize::from(input.u8())
        };
        let gap = input.u8();
        let k = k.min(EVENTS_MAX - self.events_total);
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let mut id = w.last_event_id();
        let mut failure = None;
        let mut done = 0;
        for j in 0..k {
            id += if j == 0 {
                1 + u64::from(gap)
            } else {
                1 + u64::from(gap & 1) * (j as u64 % 3)
            };
            let event = reference_event(id);
            // Appended before it is written: a failed append may still have reached the
            // device (a full block written, its segment's seal failing).
            self.appended.push(event);
            self.events_total += 1;
            done += 1;
            if let Err(e) = w.append(&event) {
                failure = Some(e);
                break;
            }
        }
        self.note(format_args!("append {done} events up to id {id}"));
        if let Some(e) = failure {
            self.failed("append", &e);
        }
    }

    fn sync(&mut self) {
        self.durable_op("sync", |w| w.sync());
    }

    fn close(&mut self) {
        self.durable_op("close", |w| w.close());
    }

    /// A sync or a close: on success, everything appended is acknowledged.
    fn durable_op(
        &mut self,
        op: &str,
        f: impl FnOnce(&mut Writer) -> Result<u64, Error<fswal_core::mem::MemError>>,
    ) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        match f(w) {
            Ok(durable) => {
                let last = w.last_event_id();
                self.note(format_args!("{op} -> durable {durable}"));
                assert!(
                    durable == last && durable == self.last_appended() && durable >= self.acked,
                    "{op} returned durable id {durable}: the writer's last id is {last}, the last \
                     appended {}, acknowledged before {}\ntrace:\n{}",
                    self.last_appended(),
                    self.acked,
                    self.trace
                );
                self.acked = durable;
            }
            Err(e) => self.failed(op, &e),
        }
    }

    fn power_cut(&mut self, input: &mut Input<'_>) {
        let fuel = 64 * u64::from(input.u16());
        self.note(format_args!("power cut after {fuel} bytes written in all"));
        self.store.set_faults(Faults {
            power_cut_after_bytes: Some(fuel),
            ..Faults::default()
        });
    }

    /// A restart without a crash: the same store, opened again. After a power cut the
    /// machine is down, so it is a crash.
    fn reopen(&mut self, input: &mut Input<'_>) {
        self.writer = None;
        if self.store.power_is_cut() {
            self.crash(input, "reopen after a power cut");
            return;
        }
        let snapshot = self.store.snapshot();
        // What reads see now: the durable state with every pending write applied.
        let current = snapshot.image(&vec![Landed::All; snapshot.pending.len()], 512);
        let store = self.store.clone();
        if !self.recover(store, &current, "reopen") {
            self.crash(input, "reopen cut by a power cut");
        }
    }

    /// The process dies in the middle of the previous operation, at one of its crash
    /// points: everything pending then stays visible and not durable, and the operation
    /// it was in is half done when `p` says so. The restart recovers that store and goes
    /// on with it.
    fn process_crash(&mut self, p: u8) {
        let points =
            std::mem::take(&mut *self.points.lock().unwrap_or_else(PoisonError::into_inner));
        if points.is_empty() {
            return;
        }
        let point = &points[usize::from(p >> 1) % points.len()];
        let half_done = p & 1 == 1;
        self.writer = None;
        // The operation did not return: what it would have acknowledged was not.
        self.acked = self.acked_before_op;
        let store = FaultStore::after_process_crash(point, half_done);
        let image = store.visible_image();
        let what = format!(
            "process crash at op {} ({:?}, {} pending, half done: {half_done})",
            point.op,
            point.next,
            point.pending.len()
        );
        let recovered = self.recover(store, &image, &what);
        assert!(recovered, "unreachable: a restarted store has no fault");
    }

    /// The process dies: a crash image of the store's snapshot, recovered on a fresh
    /// store.
    fn crash(&mut self, input: &mut Input<'_>, what: &str) {
        self.writer = None;
        let snapshot = self.store.snapshot();
        let (landed, sector, desc) = choose_landed(&snapshot, input);
        let image = snapshot.image(&landed, sector);
        let what = format!("{what} ({desc})");
        let store = FaultStore::from_image(&image);
        let recovered = self.recover(store, &image, &what);
        assert!(recovered, "unreachable: a fresh store has no fault");
    }

    /// Recovers `store`, whose segments are those of `image`, and checks it. Returns
    /// `false` only when recovery failed on a store whose power was cut meanwhile.
    fn recover(&mut self, store: FaultStore, image: &Image, what: &str) -> bool {
        self.note(what);
        // The recovery's own crash points are the ones a process crash next picks from.
        observe(&store, &self.points);
        let segments = segments_of(image);
        let prefix = valid_prefix(&segments);
        let scanned_last = prefix.event_ids.last().copied().unwrap_or(0);
        let stop = prefix.stop.as_ref().map(ToString::to_string);

        // Before recovery, strict replay ends where the scanner does.
        let before = replay_checked(store.clone(), Mode::Strict, STEPS_MAX, what);
        assert!(
            before.ids() == prefix.event_ids,
            "{what}: before recovery, strict replay gives {} events (last {:?}, first issue {:?}) \
             and the scanner {} (last {scanned_last}, stop {stop:?})\ntrace:\n{}",
            before.events.len(),
            before.summary.last_event_id,
            before.summary.first_issue,
            prefix.event_ids.len(),
            self.trace
        );

        let writer = match WalWriter::open(store.clone(), clock as Clock, CONFIG) {
            Ok((writer, _)) => writer,
            Err(e) if store.power_is_cut() => {
                self.note(format_args!("recovery failed after a power cut: {e}"));
                return false;
            }
            Err(e) => panic!(
                "{what}: recovery refused a legal crash state: {e}\n(strict replay: first issue \
                 {:?}, status {:?}; scanner: {} events, stop {stop:?}; acknowledged up to {})\n\
                 trace:\n{}",
                before.summary.first_issue,
                before.summary.status,
                prefix.event_ids.len(),
                self.acked,
                self.trace
            ),
        };
        let recovered_last = writer.last_event_id();
        assert!(
            recovered_last == scanned_last,
            "{what}: recovery ends at event {recovered_last}, the independent scanner at \
             {scanned_last} (stop {stop:?})\ntrace:\n{}",
            self.trace
        );

        // After recovery: a clean log, with the acknowledged events and nothing else.
        let after = replay_checked(store.clone(), Mode::Strict, STEPS_MAX, what);
        assert!(
            after.summary.status == Status::Ok && after.ids() == prefix.event_ids,
            "{what}: after recovery, strict replay gives {} events (last {:?}), status {:?}, \
             first issue {:?}; the scanner found {} events before\ntrace:\n{}",
            after.events.len(),
            after.summary.last_event_id,
            after.summary.status,
            after.summary.first_issue,
            prefix.event_ids.len(),
            self.trace
        );
        self.check_model(&after.events, what);

        self.note(format_args!(
            "recovered {} events, up to id {recovered_last}",
            after.events.len()
        ));
        self.appended = after.events;
        self.acked = self.acked.max(writer.durable_event_id());
        assert!(
            self.acked == recovered_last,
            "{what}: after recovery the writer's durable id is {} and its last id {recovered_last}\ntrace:\n{}",
            writer.durable_event_id(),
            self.trace
        );
        self.store = store;
        self.writer = Some(writer);
        true
    }

    /// The replayed events are a prefix of the appended ones, field for field, and hold
    /// every acknowledged one.
    fn check_model(&self, replayed: &[RequestEvent], what: &str) {
        let same = replayed
            .iter()
            .zip(&self.appended)
            .take_while(|(a, b)| a == b)
            .count();
        if same < replayed.len() {
            panic!(
                "{what}: replayed event #{same} {:?} was never appended there (appended: {:?}); \
                 {} replayed, {} appended\ntrace:\n{}",
                replayed[same],
                self.appended.get(same),
                replayed.len(),
                self.appended.len(),
                self.trace
            );
        }
        let acked = self
            .appended
            .partition_point(|e| e.event_id() <= self.acked);
        assert!(
            replayed.len() >= acked,
            "{what}: acknowledged events lost: {acked} acknowledged (up to id {}), {} replayed \
             (up to id {:?})\ntrace:\n{}",
            self.acked,
            replayed.len(),
            replayed.last().map(RequestEvent::event_id),
            self.trace
        );
    }

    /// The end: what a crash now leaves, with every pending write landed and with none.
    fn finish(mut self) {
        self.writer = None;
        let snapshot = self.store.snapshot();
        let (appended, acked) = (self.appended.clone(), self.acked);
        for (landed, what) in [
            (Landed::All, "end, all landed"),
            (Landed::Nothing, "end, durable only"),
        ] {
            self.appended.clone_from(&appended);
            self.acked = acked;
            let image = snapshot.image(&vec![landed; snapshot.pending.len()], 512);
            let store = FaultStore::from_image(&image);
            let recovered = self.recover(store, &image, what);
            assert!(recovered, "unreachable: a fresh store has no fault");
        }
    }
}

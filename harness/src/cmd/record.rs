//! `fswal record (--dir DIR | --device DEV) --events N [--start-id ID | --resume]
//! [--blocks-per-segment B] [--backend file|mmap|direct] [--sync-every N]
//! [--print-durable] ...`: appends events of the reference stream (docs/FORMAT.md,
//! "Known answers") to a WAL, then seals.
//!
//! An existing WAL is recovered first (a torn tail is set aside: its segment is sealed
//! at its last valid block, the slots after it left in place and never replayed; damage
//! before the end, lost durable data or replaced history refuses and touches nothing,
//! naming the file and offset and what can be done), and ids must
//! keep increasing: an id not greater than the last one is refused before anything is
//! written. `--resume` starts after the last recovered event. A blank raw device is
//! formatted on first use.
//!
//! SIGINT or SIGTERM while appending stops it at the next batch: what was appended is
//! sealed and synced, one line on stderr says how many events were appended and the
//! last durable event id, and the exit code is 130 (SIGINT) or 143 (SIGTERM), what a
//! shell reports for a process the signal ended. Until the append loop starts (while
//! recovering), the signals keep their default action: recovery is safe to cut short.
//!
//! On a terminal, a progress bar on stderr counts the events appended (with
//! `--print-durable`, only when stdout goes elsewhere).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;
use fswal_backends::dir::{DirStore, SegmentDir};
use fswal_backends::raw::RawStore;
use fswal_core::limits::{
    BLOCK_EVENTS_MAX, CPP_READER_BLOCKS_MAX, SEGMENT_BLOCKS_DEFAULT, SEGMENT_BLOCKS_MAX,
    SEGMENT_BLOCKS_MIN, segment_size_bytes,
};
use fswal_core::recovery::SealReason;
use fswal_core::reference::reference_event;
use fswal_core::writer::{LARGE_SEGMENTS_REFUSED, OpenScan, Recovery, Retention};
use fswal_core::{WalWriter, WriterConfig};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::clock::wall_clock_ns;
use crate::error::CliError;
use crate::progress::{Output, Progress, show_progress_here};
use crate::store::{AnyStore, Backend};

/// Arguments of `fswal record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The WAL directory (created if missing).
    #[arg(long, required_unless_present = "device", conflicts_with = "device")]
    pub dir: Option<PathBuf>,
    /// A raw block device instead of a directory (formatted on first use if blank).
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// How segment files are written (a raw device is always O_DIRECT).
    #[arg(long, value_enum, default_value_t = Backend::File)]
    pub backend: Backend,
    /// How many events to append.
    #[arg(long, value_name = "N")]
    pub events: u64,
    /// Block slots per new segment (16..=524288; 256 events each). Without it, a log
    /// that has segments keeps the size of its last one, and a new log gets 4096. A
    /// formatted device keeps the size it was formatted with.
    #[arg(
        long,
        value_name = "B",
        value_parser = clap::value_parser!(u32).range(i64::from(SEGMENT_BLOCKS_MIN)..=i64::from(SEGMENT_BLOCKS_MAX))
    )]
    pub blocks_per_segment: Option<u32>,
    /// The first event id to append (default 1).
    #[arg(long, value_name = "ID", conflicts_with = "resume")]
    pub start_id: Option<u64>,
    /// Continue after the last recovered event.
    #[arg(long)]
    pub resume: bool,
    /// Sync after every N events (besides the sync of every sealed segment).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sync_every: Option<u64>,
    /// Print `durable <event_id>` on stdout each time a sync returns.
    #[arg(long)]
    pub print_durable: bool,
    /// With --device: open it O_DSYNC, every write durable when it returns.
    #[arg(long, requires = "device")]
    pub dsync: bool,
    /// Replace each sealed segment by its LZ4 container (FS.%08u.wal.lz4).
    #[arg(long, conflicts_with = "device")]
    pub compress: bool,
    /// Keep at most N segments, deleting the oldest sealed ones.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub retain_segments: Option<u32>,
    /// Keep at most this many bytes of segments, deleting the oldest sealed ones.
    #[arg(long, value_name = "BYTES")]
    pub retain_bytes: Option<u64>,
    /// On reopening, verify only from the checkpoint's segment on.
    #[arg(long)]
    pub open_from_checkpoint: bool,
    /// Do not write the sync mark after every sync (one write and sync less per sync;
    /// recovery then knows the durable watermark only as of the last sealed segment).
    #[arg(long)]
    pub no_sync_marks: bool,
    /// Allow segments of more than 261120 block slots (over 4 GiB): the C++ recorder's
    /// reader misreads them, so only for a log it will never read.
    #[arg(long)]
    pub allow_large_segments: bool,
}

/// The lines recovery prints about what it did: segments the C++ recorder left open
/// behind later ones and recovery sealed, prepared segments it removed, the open last
/// segment it sealed early. None when it changed nothing.
#[must_use]
pub fn recovery_lines(store: &AnyStore, recovery: &Recovery) -> Vec<String> {
    let mut lines = Vec::new();
    if recovery.sealed_late > 0 {
        lines.push(format!(
            "recovered: sealed {} segment(s) from {} on that were left open after the writer rotated past them (sealed late, as the C++ recorder does); every block of them verified",
            recovery.sealed_late,
            recovery
                .summary
                .late_sealed
                .map(|i| store.segment_file(i).display().to_string())
                .unwrap_or_default()
        ));
    }
    if recovery.prepared_removed > 0 {
        let after = recovery.summary.tail.map_or(0, |t| t.segment);
        lines.push(format!(
            "recovered: removed {} empty segment(s) prepared ahead of need after {} (they held nothing); new segments are created as needed",
            recovery.prepared_removed,
            store.segment_file(after).display()
        ));
    }
    lines.extend(sealed_tail_line(store, recovery));
    lines
}

/// The line about the open last segment, when recovery sealed it early.
fn sealed_tail_line(store: &AnyStore, recovery: &Recovery) -> Option<String> {
    let t = recovery.sealed_tail?;
    let file = store.segment_file(t.segment);
    let at = fswal_core::limits::block_offset_bytes(t.block_count);
    let next = store.segment_file(t.segment.saturating_add(1));
    let sealed = format!(
        "sealed {} at block {} (offset {at}), after its last valid block",
        file.display(),
        t.block_count
    );
    let goes_on = format!("appending goes on in {}", next.display());
    let aside = t.set_aside.map(|a| {
        let claimed = a
            .claimed_event_ids
            .map(|(first, last)| format!("; their block headers claim events {first}..={last}"))
            .unwrap_or_default();
        format!(
            "block slots {}..={} ({} non-blank, {} bytes{claimed})",
            a.first_slot, a.last_slot, a.slots, a.bytes
        )
    });
    Some(match (t.reason, aside) {
        (
            SealReason::TornTail {
                past_watermark: true,
            },
            Some(aside),
        ) => format!(
            "recovered: {sealed}; {aside}, never acknowledged (past the durable watermark, event {}), are set aside in place and never replayed (`fswal preserved` lists and exports them); {goes_on}",
            recovery.watermark.durable_event_id
        ),
        (
            SealReason::TornTail {
                past_watermark: false,
            },
            Some(aside),
        ) => format!(
            "WARNING: recovered without a durable watermark ({} are missing: deleted, or never written by fswal), so nothing proves that {aside} of {} were never acknowledged: data a sync may have made durable was DISCARDED from the log ({sealed}; the slots stay in place, never replayed; `fswal preserved --export DIR` copies them out); {goes_on}",
            store.watermark_records(),
            file.display()
        ),
        (SealReason::TooShort, aside) => format!(
            "recovered: {} is shorter than a segment ({} block slots: truncated?); {sealed}{}; {goes_on}",
            file.display(),
            t.slots,
            aside
                .map(|a| format!("; {a} are set aside in place, never replayed"))
                .unwrap_or_default()
        ),
        // A torn tail with nothing set aside, and any reason a later version adds.
        (_, aside) => format!(
            "recovered: {sealed}{}; {goes_on}",
            aside
                .map(|a| format!("; {a} are set aside in place, never replayed"))
                .unwrap_or_default()
        ),
    })
}

/// Above this many bytes of segment files allocated for a new log that the events
/// recorded fill less than one segment of, `record` says how much it allocates: every
/// segment file is preallocated in full, so a large segment size costs its whole size
/// on disk however little is written.
pub const ALLOCATION_WARNING_BYTES: u64 = 256 << 20;

/// Segment files a directory holds once its first segment is created: that segment and
/// the next one, which the store prepares ahead of need.
const SEGMENT_FILES_FIRST: u64 = 2;

/// The warning line for recording `events` events into a new directory log whose
/// segments have `blocks` block slots, when that allocates much more than it fills;
/// `None` otherwise.
#[must_use]
pub fn allocation_warning(events: u64, blocks: u32) -> Option<String> {
    let events_per_segment = u64::from(blocks) * BLOCK_EVENTS_MAX as u64;
    let segment_bytes = segment_size_bytes(blocks);
    let allocated_bytes = segment_bytes.saturating_mul(SEGMENT_FILES_FIRST);
    if events == 0 || events >= events_per_segment || allocated_bytes <= ALLOCATION_WARNING_BYTES {
        return None;
    }
    Some(format!(
        "warning: --blocks-per-segment {blocks} preallocates {} per segment file, and the next segment is prepared ahead: {} on disk for {events} event(s), which fill {} of one segment; a smaller --blocks-per-segment allocates less",
        size_text(segment_bytes),
        size_text(allocated_bytes),
        fraction_text(events, events_per_segment),
    ))
}

/// `bytes` in MiB, or in GiB from 1 GiB on, with one decimal.
fn size_text(bytes: u64) -> String {
    const MIB_BYTES: u64 = 1 << 20;
    const GIB_BYTES: u64 = 1 << 30;
    // Tenths, in integers: no float conversion to lose precision over.
    let (unit_bytes, unit) = if bytes >= GIB_BYTES {
        (GIB_BYTES, "GiB")
    } else {
        (MIB_BYTES, "MiB")
    };
    let tenths = bytes.saturating_mul(10) / unit_bytes;
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

/// `part` of `whole` as a percentage, "less than 0.1%" when it rounds to nothing.
fn fraction_text(part: u64, whole: u64) -> String {
    let tenths = part.saturating_mul(1000) / whole.max(1);
    if tenths == 0 {
        "less than 0.1%".to_owned()
    } else {
        format!("{}.{}%", tenths / 10, tenths % 10)
    }
}

/// Opens the store `args` names for appending, and the block count its new segments
/// get when the log has none (an existing log keeps its own unless
/// `--blocks-per-segment` is given).
fn open_store(args: &RecordArgs) -> Result<(AnyStore, u32), CliError> {
    let blocks = args.blocks_per_segment.unwrap_or(SEGMENT_BLOCKS_DEFAULT);
    // Refused before anything is created or formatted.
    if blocks > CPP_READER_BLOCKS_MAX && !args.allow_large_segments {
        return Err(CliError::new(format!(
            "--blocks-per-segment {blocks}: {LARGE_SEGMENTS_REFUSED}"
        )));
    }
    if let Some(device) = &args.device {
        let (store, formatted) =
            RawStore::open_or_format(device, blocks, wall_clock_ns(), args.dsync)?;
        let layout = *store.layout();
        if formatted {
            eprintln!(
                "fswal: formatted {}: {} slots of {} blocks",
                device.display(),
                layout.slot_count,
                layout.blocks_per_segment
            );
        } else if args
            .blocks_per_segment
            .is_some_and(|b| b != layout.blocks_per_segment)
        {
            eprintln!(
                "fswal: {} was formatted with {} blocks per segment; using that",
                device.display(),
                layout.blocks_per_segment
            );
        }
        return Ok((AnyStore::Raw(store), layout.blocks_per_segment));
    }
    let Some(dir) = args.dir.as_deref() else {
        return Err(CliError::new("give --dir or --device"));
    };
    let store = match args.backend {
        // Files are written from a second thread, so that building blocks and copying
        // them into the page cache overlap.
        Backend::File => AnyStore::File(
            DirStore::open_for_append(dir)?
                .compress_sealed(args.compress)
                .write_thread(true),
        ),
        Backend::Mmap => {
            AnyStore::Mmap(SegmentDir::open_for_append(dir)?.compress_sealed(args.compress))
        }
        Backend::Direct => {
            AnyStore::Direct(SegmentDir::open_for_append(dir)?.compress_sealed(args.compress))
        }
    };
    Ok((store, blocks))
}

/// A read-only view of the same WAL, to describe damage after the writer refused.
fn view(args: &RecordArgs) -> Result<AnyStore, CliError> {
    Ok(match (&args.device, &args.dir) {
        (Some(device), _) => AnyStore::Raw(RawStore::open(device, false, false)?),
        (None, Some(dir)) => AnyStore::File(DirStore::open_read_only(dir)?),
        (None, None) => return Err(CliError::new("give --dir or --device")),
    })
}

/// The number of the signal that asked `record` to stop appending, or 0 while none has.
/// The signal handler only stores to it (an atomic store is async-signal-safe); the
/// append loop reads it once per batch.
static STOP_SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// What a shell reports for a process a signal ended is this plus the signal's number:
/// `record` exits with that code after stopping cleanly, so that a caller sees the same
/// code as if the signal had ended it (130 for SIGINT, 143 for SIGTERM).
pub const EXIT_SIGNALLED_BASE: u8 = 128;

/// The signals that stop `record` cleanly, with their names.
const STOP_SIGNALS: [(i32, &str); 2] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")];

/// A signal that stopped the append loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interruption {
    /// Its name (`SIGINT`, `SIGTERM`).
    pub name: &'static str,
    /// The exit code: [`EXIT_SIGNALLED_BASE`] plus its number.
    pub exit_code: u8,
}

/// The interruption the signal numbered `signal` asks for: `None` for 0 (no signal) and
/// for any signal `record` does not stop on.
#[must_use]
pub fn interruption(signal: usize) -> Option<Interruption> {
    let (number, name) = STOP_SIGNALS
        .into_iter()
        .find(|&(number, _)| usize::try_from(number).is_ok_and(|n| n == signal))?;
    let exit_code = u8::try_from(number)
        .ok()
        .and_then(|n| EXIT_SIGNALLED_BASE.checked_add(n))?;
    Some(Interruption { name, exit_code })
}

/// Installs the handlers of SIGINT and SIGTERM, which record the signal in
/// [`STOP_SIGNAL`] and do nothing else.
fn catch_stop_signals() -> Result<(), CliError> {
    for (number, name) in STOP_SIGNALS {
        let value = usize::try_from(number)
            .map_err(|_| CliError::new(format!("{name} has no valid signal number")))?;
        signal_hook::flag::register_usize(number, &STOP_SIGNAL, value)
            .map_err(|e| CliError::new(format!("cannot install a handler for {name}: {e}")))?;
    }
    Ok(())
}

/// The error of an append, sync or close that failed, with what the user needs to go
/// on: for an id that does not increase, the options that continue the log; for a full
/// file system, the last event that is durable, since the events after it are lost.
fn append_error<C: fswal_core::writer::Clock>(
    writer: &WalWriter<AnyStore, C>,
    args: &RecordArgs,
    e: fswal_core::Error<fswal_backends::file::FileError>,
) -> CliError {
    let place = args
        .dir
        .as_deref()
        .or(args.device.as_deref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match e {
        fswal_core::Error::EventIdNotIncreasing { last_event_id, .. } => CliError::new(format!(
            "{place}: {e} (the WAL already holds events through {last_event_id}; use --start-id {} or --resume)",
            last_event_id.saturating_add(1)
        )),
        fswal_core::Error::Device(ref device)
            if device.source.kind() == std::io::ErrorKind::StorageFull =>
        {
            let (durable, last) = (writer.durable_event_id(), writer.last_event_id());
            let after = if last > durable {
                format!(
                    "; the {} event(s) appended after it, through {last}, are not known durable",
                    last - durable
                )
            } else {
                String::new()
            };
            CliError::from_core(writer.store(), e).context(format!(
                "the file system is full: the last durable event is {durable}{after}; free space, then `fswal record --resume` continues after the last event the log kept"
            ))
        }
        e => CliError::from_core(writer.store(), e),
    }
}

/// Events appended between two updates of the progress bar: a bar moves only in steps
/// a person can see, and the append loop pays for an update rarely even when
/// `--sync-every 1` makes every batch one event.
pub const PROGRESS_STEP_EVENTS: u64 = 1 << 14;

/// Runs `fswal record`.
pub fn run(args: &RecordArgs) -> Result<ExitCode, CliError> {
    if args.start_id == Some(0) {
        return Err(CliError::new(
            "--start-id must be at least 1 (event id 0 is invalid)",
        ));
    }
    let (store, blocks_per_segment) = open_store(args)?;
    let config = WriterConfig::with_blocks(blocks_per_segment)
        // An explicit size applies to the new segments of an existing log too.
        .keep_segment_blocks(args.blocks_per_segment.is_none())
        .retention(
            Retention::KEEP_ALL
                .segments_max(args.retain_segments)
                .bytes_max(args.retain_bytes),
        )
        .open_scan(if args.open_from_checkpoint {
            OpenScan::FromCheckpoint
        } else {
            OpenScan::Full
        })
        .sync_marks(!args.no_sync_marks)
        .allow_large_segments(args.allow_large_segments);
    let (mut writer, recovery) = match WalWriter::open(store, wall_clock_ns, config) {
        Ok(opened) => opened,
        Err(e) => return Err(CliError::from_core(&view(args)?, e)),
    };
    for line in recovery_lines(writer.store(), &recovery) {
        eprintln!("fswal: {line}");
    }
    if let Some(note) = crate::store::cpp_meta_note(writer.store(), writer.last_event_id())? {
        eprintln!("fswal: {note}");
    }
    // Only a new directory log: a formatted device allocated its slots when it was
    // formatted, and an existing log has already allocated its segments.
    if args.device.is_none() && recovery.summary.tail.is_none() {
        if let Some(warning) = allocation_warning(args.events, writer.blocks_per_segment()) {
            eprintln!("fswal: {warning}");
        }
    }
    let start_id = if args.resume {
        writer.last_event_id().saturating_add(1)
    } else {
        args.start_id.unwrap_or(1)
    };
    let last_id = start_id
        .checked_add(args.events)
        .and_then(|end| end.checked_sub(1))
        .ok_or_else(|| CliError::new("the start id + --events overflows a u64 event id"))?;
    let mut out = std::io::stdout().lock();
    let mut reported = writer.durable_event_id();
    let mut report_durable = |id: u64| -> Result<(), CliError> {
        if args.print_durable && id > reported {
            reported = id;
            // Flushed line by line: whoever reads it may kill us the next instant.
            writeln!(out, "durable {id}")
                .and_then(|()| out.flush())
                .map_err(|e| CliError::new(format!("stdout: {e}")))?;
        }
        Ok(())
    };
    // Events go in by the block: generated into a buffer, appended as one batch (the
    // writer copies runs, not single events), cut where `--sync-every` syncs.
    // Filled before each use; event 0 is only a placeholder.
    let mut batch = [reference_event(0); BLOCK_EVENTS_MAX];
    let mut appended = 0u64;
    // Only now: a signal during recovery keeps its default action and ends the process,
    // which recovery is safe against, instead of waiting for a scan of the whole log.
    catch_stop_signals()?;
    let mut stopped_by = None;
    // `durable` lines on stdout are a stream: on the same terminal, a bar would be drawn
    // over them.
    let output = if args.print_durable {
        Output::Stream
    } else {
        Output::Report { json: false }
    };
    let progress = Progress::bar(
        show_progress_here(output),
        "recording",
        args.events,
        "events",
    );
    let mut shown = 0u64;
    // Each pass appends at least one event; `--events 0` makes none.
    while appended < args.events {
        // One load per batch of up to 256 events: nothing beside building the batch.
        stopped_by = interruption(STOP_SIGNAL.load(Ordering::Relaxed));
        if stopped_by.is_some() {
            break;
        }
        if appended - shown >= PROGRESS_STEP_EVENTS {
            shown = appended;
            progress.set_position(appended);
        }
        let mut len = (args.events - appended).min(BLOCK_EVENTS_MAX as u64);
        if let Some(k) = args.sync_every {
            len = len.min(k - appended % k);
        }
        let first = start_id + appended;
        // `len <= BLOCK_EVENTS_MAX`, so it fits the buffer and a usize.
        let run = &mut batch[..usize::try_from(len).unwrap_or(BLOCK_EVENTS_MAX)];
        // Each event is built in its slot: no per-event copy through the stack.
        for (slot, id) in run.iter_mut().zip(first..) {
            *slot = reference_event(id);
        }
        let durable_before = writer.durable_event_id();
        writer
            .append_batch(run)
            .map_err(|e| append_error(&writer, args, e))?;
        appended += len;
        if args.sync_every.is_some_and(|k| appended % k == 0) {
            let durable = writer.sync().map_err(|e| append_error(&writer, args, e))?;
            report_durable(durable)?;
        } else if writer.durable_event_id() != durable_before {
            // A sealed segment is synced: that too makes events durable.
            report_durable(writer.durable_event_id())?;
        }
    }
    progress.set_position(appended);
    let durable = writer.close().map_err(|e| append_error(&writer, args, e))?;
    // Cleared before the last lines are printed.
    drop(progress);
    report_durable(durable)?;
    if let Some(stop) = stopped_by {
        let ids = if appended == 0 {
            String::new()
        } else {
            format!(" (ids {start_id}..={})", start_id + appended - 1)
        };
        eprintln!(
            "fswal: interrupted ({}): appended {appended} of {} events{ids}, sealed and synced; durable through event {durable}",
            stop.name, args.events
        );
        return Ok(ExitCode::from(stop.exit_code));
    }
    let ids = if args.events == 0 {
        String::new()
    } else {
        format!(" (ids {start_id}..={last_id})")
    };
    let place = args
        .dir
        .as_deref()
        .or(args.device.as_deref())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!(
        "recorded {} events{ids} in {place}; durable through event {durable}",
        args.events
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_segments_for_few_events_are_announced_with_their_size() {
        let huge = allocation_warning(10, SEGMENT_BLOCKS_MAX).expect("a warning");
        assert!(
            huge.contains("8.0 GiB per segment file") && huge.contains("16.0 GiB on disk"),
            "{huge}"
        );
        assert!(
            huge.contains("10 event(s)") && !huge.contains('\n'),
            "{huge}"
        );
        assert!(allocation_warning(10, 8192).is_some());
        // The default size, small logs, a log filling its segment, and nothing
        // recorded (no segment is created) say nothing.
        assert_eq!(allocation_warning(10, SEGMENT_BLOCKS_DEFAULT), None);
        assert_eq!(allocation_warning(10, SEGMENT_BLOCKS_MIN), None);
        assert_eq!(allocation_warning(8192 * 256, 8192), None);
        assert_eq!(allocation_warning(0, SEGMENT_BLOCKS_MAX), None);
    }

    #[test]
    fn sigint_and_sigterm_stop_with_the_shell_codes_and_nothing_else_does() {
        let int = interruption(usize::try_from(SIGINT).unwrap_or(0));
        let term = interruption(usize::try_from(SIGTERM).unwrap_or(0));
        assert_eq!(
            int,
            Some(Interruption {
                name: "SIGINT",
                exit_code: 130
            })
        );
        assert_eq!(
            term,
            Some(Interruption {
                name: "SIGTERM",
                exit_code: 143
            })
        );
        assert_eq!(interruption(0), None);
        assert_eq!(interruption(9), None);
    }

    #[test]
    fn sizes_and_fractions_read_in_tenths() {
        assert_eq!(size_text(256 << 20), "256.0 MiB");
        assert_eq!(size_text(3 << 29), "1.5 GiB");
        assert_eq!(fraction_text(1, 2), "50.0%");
        assert_eq!(fraction_text(1, 1 << 20), "less than 0.1%");
    }
}

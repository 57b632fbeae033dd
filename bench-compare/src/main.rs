//! `fswal-bench-compare`: fswal against okaywal 0.3.1 and raft-engine 0.4.2 on the
//! same two workloads, measured side by side in one run.
//!
//! 1. **write**: open a new log, append N 64-byte records (reference events 1..=N,
//!    the same bytes for every library), then make them durable with one call.
//! 2. **replay**: open the log written by the same library's batched (or only)
//!    write variant and read back and verify every record; the records read are
//!    digested and compared with what was written, so a library that skipped or
//!    changed records fails the run instead of winning it.
//!
//! Every trial runs every variant once; odd trials run them in the reverse order, so
//! that a slow start (a cold page cache, a busy disk) is not always charged to the
//! same library. The figures are medians over the trials. Bytes on disk are the
//! lengths and allocated blocks of the files a write left behind; sync counts are
//! counted in separate, untimed runs of this program under `strace -f -c`.
//!
//! The crate is its own workspace, excluded from the root one: `cargo test
//! --workspace` at the root never builds it. Run it with
//! `cargo run --release --manifest-path bench-compare/Cargo.toml -- --help`.

mod common;
mod fswal;
mod okaywal;
#[cfg(feature = "raft-engine")]
mod raft_engine;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use fswal_core::RequestEvent;
use serde::Serialize;

use crate::common::{
    Context, Digest, DiskUsage, RECORD_BYTES, Result, ScratchDir, Written, disk_usage, fail,
    reference_records,
};

/// Records written by default: 1M records, 64 MB of payload.
const RECORDS_DEFAULT: u64 = 1_000_000;
/// Trials by default (the issue asks for at least 5).
const TRIALS_DEFAULT: usize = 5;
/// The most records a run accepts: 64 GiB of payload, far beyond any sensible run,
/// but it keeps `records * 64` from overflowing anything.
const RECORDS_MAX: u64 = 1 << 30;
/// The most trials a run accepts.
const TRIALS_MAX: usize = 1000;

/// One way of writing a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteVariant {
    /// fswal `WalWriter::append` once per record, then `close`.
    FswalEach,
    /// fswal `WalWriter::append_batch` of 256 records, then `close`.
    FswalBatch,
    /// okaywal: one entry, `write_chunk` once per record, one `commit`.
    OkaywalChunks,
    /// raft-engine: `Engine::write` of a `LogBatch` of 256 entries, the last synced.
    #[cfg(feature = "raft-engine")]
    RaftBatch,
    /// raft-engine: `Engine::write` of one entry per record, the last synced.
    #[cfg(feature = "raft-engine")]
    RaftEach,
}

impl WriteVariant {
    /// Every variant this build has, in the forward order.
    const ALL: &[Self] = &[
        Self::FswalEach,
        Self::FswalBatch,
        Self::OkaywalChunks,
        #[cfg(feature = "raft-engine")]
        Self::RaftBatch,
        #[cfg(feature = "raft-engine")]
        Self::RaftEach,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::FswalEach => "fswal append x N, close",
            Self::FswalBatch => "fswal append_batch(256), close",
            Self::OkaywalChunks => "okaywal write_chunk x N, commit",
            #[cfg(feature = "raft-engine")]
            Self::RaftBatch => "raft-engine write(256 entries), last sync",
            #[cfg(feature = "raft-engine")]
            Self::RaftEach => "raft-engine write(1 entry) x N, last sync",
        }
    }

    /// The name the child process is told.
    fn key(self) -> &'static str {
        match self {
            Self::FswalEach => "fswal-each",
            Self::FswalBatch => "fswal-batch",
            Self::OkaywalChunks => "okaywal",
            #[cfg(feature = "raft-engine")]
            Self::RaftBatch => "raft-batch",
            #[cfg(feature = "raft-engine")]
            Self::RaftEach => "raft-each",
        }
    }

    fn library(self) -> Library {
        match self {
            Self::FswalEach | Self::FswalBatch => Library::Fswal,
            Self::OkaywalChunks => Library::Okaywal,
            #[cfg(feature = "raft-engine")]
            Self::RaftBatch | Self::RaftEach => Library::RaftEngine,
        }
    }

    /// Whether the replay variants of its library read what this variant wrote.
    fn feeds_replay(self) -> bool {
        match self {
            Self::FswalBatch | Self::OkaywalChunks => true,
            #[cfg(feature = "raft-engine")]
            Self::RaftBatch => true,
            _ => false,
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.key() == key)
    }

    fn run(self, dir: &Path, records: &[RequestEvent]) -> Result<Written> {
        match self {
            Self::FswalEach => fswal::write(dir, records, None),
            Self::FswalBatch => fswal::write(dir, records, Some(256)),
            Self::OkaywalChunks => okaywal::write(dir, records),
            #[cfg(feature = "raft-engine")]
            Self::RaftBatch => raft_engine::write(dir, records, raft_engine::BATCH_RECORDS),
            #[cfg(feature = "raft-engine")]
            Self::RaftEach => raft_engine::write(dir, records, 1),
        }
    }
}

/// One way of reading a log back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplayVariant {
    /// fswal strict `Replay`, one thread.
    FswalStrict,
    /// fswal `ParallelReplay`, one worker per core.
    FswalParallel,
    /// okaywal reopen, recovery reading every chunk and checking its CRC.
    Okaywal,
    /// raft-engine reopen and `fetch_entries_to` over every index.
    #[cfg(feature = "raft-engine")]
    Raft,
}

impl ReplayVariant {
    const ALL: &[Self] = &[
        Self::FswalStrict,
        Self::FswalParallel,
        Self::Okaywal,
        #[cfg(feature = "raft-engine")]
        Self::Raft,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::FswalStrict => "fswal Replay (strict, 1 thread)",
            Self::FswalParallel => "fswal ParallelReplay (all cores)",
            Self::Okaywal => "okaywal reopen + recover (CRC each chunk)",
            #[cfg(feature = "raft-engine")]
            Self::Raft => "raft-engine reopen + fetch_entries_to",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::FswalStrict => "fswal-strict",
            Self::FswalParallel => "fswal-parallel",
            Self::Okaywal => "okaywal",
            #[cfg(feature = "raft-engine")]
            Self::Raft => "raft",
        }
    }

    fn library(self) -> Library {
        match self {
            Self::FswalStrict | Self::FswalParallel => Library::Fswal,
            Self::Okaywal => Library::Okaywal,
            #[cfg(feature = "raft-engine")]
            Self::Raft => Library::RaftEngine,
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.key() == key)
    }

    fn run(self, dir: &Path) -> Result<(Duration, Digest)> {
        match self {
            Self::FswalStrict => fswal::replay_strict(dir),
            Self::FswalParallel => fswal::replay_parallel(dir).map(|(t, d, _)| (t, d)),
            Self::Okaywal => okaywal::replay(dir),
            #[cfg(feature = "raft-engine")]
            Self::Raft => raft_engine::replay(dir),
        }
    }
}

/// The libraries compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Library {
    Fswal,
    Okaywal,
    #[cfg(feature = "raft-engine")]
    RaftEngine,
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    records: u64,
    trials: usize,
    base_dir: PathBuf,
    json: bool,
    count_syncs: bool,
}

const USAGE: &str = "\
usage: fswal-bench-compare [--records N] [--trials T] [--dir DIR] [--json] [--no-sync-count]

Compares fswal with okaywal 0.3.1 and raft-engine 0.4.2 (when built with the
default `raft-engine` feature) on two workloads over the same records:
  write   append N 64-byte records to a new log, then one durability call
  replay  reopen the log and read back and verify every record
Every trial runs every variant, in alternating order; figures are medians.

  --records N      records per run (default 1000000)
  --trials T       trials, at least 1 (default 5)
  --dir DIR        where the scratch logs go (default: the temp dir); each is
                   removed after its trial
  --json           print one JSON object instead of the table
  --no-sync-count  skip the untimed runs under `strace -f -c` that count
                   fsync/fdatasync/msync/sync_file_range calls";

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        records: RECORDS_DEFAULT,
        trials: TRIALS_DEFAULT,
        base_dir: std::env::temp_dir(),
        json: false,
        count_syncs: true,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| common::BenchError(format!("{name} needs a value\n\n{USAGE}")))
        };
        match arg.as_str() {
            "--records" => {
                let text = value("--records")?;
                options.records = text
                    .replace('_', "")
                    .parse()
                    .context(|| format!("--records {text}"))?;
                if options.records == 0 || options.records > RECORDS_MAX {
                    return fail(format!(
                        "--records must be in 1..={RECORDS_MAX}, not {text}"
                    ));
                }
            }
            "--trials" => {
                let text = value("--trials")?;
                options.trials = text.parse().context(|| format!("--trials {text}"))?;
                if options.trials == 0 || options.trials > TRIALS_MAX {
                    return fail(format!("--trials must be in 1..={TRIALS_MAX}, not {text}"));
                }
            }
            "--dir" => options.base_dir = PathBuf::from(value("--dir")?),
            "--json" => options.json = true,
            "--no-sync-count" => options.count_syncs = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return fail(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if !options.base_dir.is_dir() {
        return fail(format!(
            "--dir {}: not a directory",
            options.base_dir.display()
        ));
    }
    Ok(options)
}

/// The median of `samples` (the mean of the middle two for an even count).
fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The system calls counted as syncs.
const SYNC_CALLS: [&str; 4] = ["fsync", "fdatasync", "msync", "sync_file_range"];

/// Sync calls made by one run, by system call name.
#[derive(Clone, Debug, Default, Serialize)]
struct SyncCounts {
    fsync: u64,
    fdatasync: u64,
    msync: u64,
    sync_file_range: u64,
}

impl SyncCounts {
    /// `fsync + fdatasync + msync`: the calls that wait for the device.
    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)` only starts writeback and is shown
    /// apart.
    fn durability_calls(&self) -> u64 {
        self.fsync + self.fdatasync + self.msync
    }

    /// Reads the summary table `strace -c` writes: one row per system call, the
    /// call count in the fourth column (the fifth, errors, may be empty) and the name
    /// in the last.
    fn parse_strace_summary(text: &str) -> Self {
        let mut counts = Self::default();
        for line in text.lines() {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let (Some(name), Some(calls)) = (columns.last(), columns.get(3)) else {
                continue;
            };
            let Ok(calls) = calls.parse::<u64>() else {
                continue;
            };
            match *name {
                "fsync" => counts.fsync += calls,
                "fdatasync" => counts.fdatasync += calls,
                "msync" => counts.msync += calls,
                "sync_file_range" => counts.sync_file_range += calls,
                _ => {}
            }
        }
        counts
    }
}

/// Runs this program again under `strace -f -c` with `child_args`, and returns the
/// sync calls it made. The child does one run and exits; nothing it does is timed.
fn count_syncs(child_args: &[String]) -> Result<SyncCounts> {
    let exe = std::env::current_exe().context(|| "find this program's path".to_owned())?;
    let summary = tempfile_path("strace")?;
    let status = Command::new("strace")
        .arg("-f")
        .arg("-c")
        .arg("-e")
        .arg(format!("trace={}", SYNC_CALLS.join(",")))
        .arg("-o")
        .arg(&summary)
        .arg(&exe)
        .args(child_args)
        .status()
        .context(|| "run strace (is it installed? --no-sync-count skips this)".to_owned())?;
    let text = std::fs::read_to_string(&summary);
    let _ = std::fs::remove_file(&summary);
    if !status.success() {
        return fail(format!(
            "the child run {child_args:?} under strace failed: {status}"
        ));
    }
    let text = text.context(|| format!("read the strace summary {}", summary.display()))?;
    Ok(SyncCounts::parse_strace_summary(&text))
}

/// A fresh file path in the temp dir.
fn tempfile_path(label: &str) -> Result<PathBuf> {
    let scratch = ScratchDir::new(&std::env::temp_dir(), label)?;
    Ok(scratch.keep())
}

/// The child side of [`count_syncs`]: `child write KEY DIR N` or
/// `child replay KEY DIR`. A write child exits right after its durability call,
/// without closing the log, so its count covers exactly the timed region.
fn run_child(args: &[String]) -> Result<()> {
    match args {
        [kind, key, dir, records] if kind == "write" => {
            let Some(variant) = WriteVariant::from_key(key) else {
                return fail(format!("unknown write variant {key}"));
            };
            let records: u64 = records.parse().context(|| format!("records {records}"))?;
            let records = reference_records(records);
            let _written = variant.run(Path::new(dir), &records)?;
            std::process::exit(0);
        }
        [kind, key, dir] if kind == "replay" => {
            let Some(variant) = ReplayVariant::from_key(key) else {
                return fail(format!("unknown replay variant {key}"));
            };
            variant.run(Path::new(dir))?;
            Ok(())
        }
        _ => fail(format!("bad child arguments {args:?}")),
    }
}

/// The times of one variant over the trials.
#[derive(Debug, Serialize)]
struct Timing {
    median_ns: u128,
    samples_ns: Vec<u128>,
    ns_per_record: f64,
    records_per_s: f64,
    /// The median relative to the fastest fswal variant of the same workload.
    vs_fswal: f64,
}

/// The [`Timing`]s of the variants of one workload, from their samples (one list per
/// variant) and the library each variant belongs to.
fn timings(samples: &[Vec<Duration>], libraries: &[Library], records: u64) -> Vec<Timing> {
    let medians: Vec<Duration> = samples.iter().map(|s| median(s)).collect();
    let fswal_best = medians
        .iter()
        .zip(libraries)
        .filter(|(_, library)| **library == Library::Fswal)
        .map(|(m, _)| *m)
        .min()
        .unwrap_or(Duration::ZERO);
    medians
        .iter()
        .zip(samples)
        .map(|(median, samples)| {
            #[allow(clippy::cast_precision_loss)]
            let (ns, n) = (median.as_nanos() as f64, records as f64);
            Timing {
                median_ns: median.as_nanos(),
                samples_ns: samples.iter().map(Duration::as_nanos).collect(),
                ns_per_record: ns / n,
                records_per_s: if ns > 0.0 { n * 1e9 / ns } else { 0.0 },
                vs_fswal: median.as_secs_f64() / fswal_best.as_secs_f64(),
            }
        })
        .collect()
}

/// The measured figures of one write variant.
#[derive(Debug, Serialize)]
struct WriteRow {
    variant: &'static str,
    key: &'static str,
    #[serde(flatten)]
    timing: Timing,
    disk: DiskRow,
    syncs: Option<SyncCounts>,
}

/// What one write variant left on disk.
#[derive(Debug, Serialize)]
struct DiskRow {
    files: u64,
    bytes: u64,
    allocated_bytes: u64,
    /// Bytes per record (file lengths over records).
    bytes_per_record: f64,
}

/// The measured figures of one replay variant.
#[derive(Debug, Serialize)]
struct ReplayRow {
    variant: &'static str,
    key: &'static str,
    #[serde(flatten)]
    timing: Timing,
    syncs: Option<SyncCounts>,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    records: u64,
    record_bytes: usize,
    trials: usize,
    dir: String,
    cores: usize,
    raft_engine: bool,
    write: Vec<WriteRow>,
    replay: Vec<ReplayRow>,
}

fn run(options: &Options) -> Result<Report> {
    let records = reference_records(options.records);
    let expected = Digest::of(&records);
    let writes = WriteVariant::ALL;
    let replays = ReplayVariant::ALL;
    let mut write_samples = vec![Vec::new(); writes.len()];
    let mut replay_samples = vec![Vec::new(); replays.len()];
    let mut disk = vec![DiskUsage::default(); writes.len()];

    for trial in 0..options.trials {
        let mut order: Vec<usize> = (0..writes.len()).collect();
        if trial % 2 == 1 {
            order.reverse();
        }
        // Each library's replays read the directory its batched write left; the
        // directories live until the end of the trial.
        let mut replay_dirs: Vec<(Library, ScratchDir)> = Vec::new();
        for &i in &order {
            let variant = writes[i];
            eprintln!(
                "trial {}/{}: write  {}",
                trial + 1,
                options.trials,
                variant.name()
            );
            let dir = ScratchDir::new(&options.base_dir, variant.key())?;
            let written = variant.run(dir.path(), &records)?;
            write_samples[i].push(written.elapsed);
            (written.finish)()?;
            disk[i] = disk_usage(dir.path())?;
            if variant.feeds_replay() {
                replay_dirs.push((variant.library(), dir));
            }
        }
        let mut order: Vec<usize> = (0..replays.len()).collect();
        if trial % 2 == 1 {
            order.reverse();
        }
        for &i in &order {
            let variant = replays[i];
            eprintln!(
                "trial {}/{}: replay {}",
                trial + 1,
                options.trials,
                variant.name()
            );
            let Some((_, dir)) = replay_dirs.iter().find(|(l, _)| *l == variant.library()) else {
                return fail(format!("no log written for {}", variant.name()));
            };
            let (elapsed, digest) = variant.run(dir.path())?;
            digest.check(&expected, variant.name())?;
            replay_samples[i].push(elapsed);
        }
    }

    // Sync counts: one untimed child run per variant, under strace.
    let mut write_syncs = vec![None; writes.len()];
    let mut replay_syncs = vec![None; replays.len()];
    if options.count_syncs {
        let mut replay_dirs: Vec<(Library, ScratchDir)> = Vec::new();
        for (i, variant) in writes.iter().enumerate() {
            eprintln!("sync count: write  {}", variant.name());
            let dir = ScratchDir::new(&options.base_dir, variant.key())?;
            let path = dir.path().to_string_lossy().into_owned();
            write_syncs[i] = Some(count_syncs(&[
                "child".into(),
                "write".into(),
                variant.key().into(),
                path,
                options.records.to_string(),
            ])?);
            drop(dir);
            // The child left its log as a crash would (it exits without closing it,
            // so that its count ends with the durability call); the replays read a log
            // written and closed here instead, as in the timed trials.
            if variant.feeds_replay() {
                let dir = ScratchDir::new(&options.base_dir, variant.key())?;
                let written = variant.run(dir.path(), &records)?;
                (written.finish)()?;
                replay_dirs.push((variant.library(), dir));
            }
        }
        for (i, variant) in replays.iter().enumerate() {
            eprintln!("sync count: replay {}", variant.name());
            let Some((_, dir)) = replay_dirs.iter().find(|(l, _)| *l == variant.library()) else {
                return fail(format!("no log written for {}", variant.name()));
            };
            let path = dir.path().to_string_lossy().into_owned();
            replay_syncs[i] = Some(count_syncs(&[
                "child".into(),
                "replay".into(),
                variant.key().into(),
                path,
            ])?);
        }
    }

    let write_libraries: Vec<Library> = writes.iter().map(|v| v.library()).collect();
    let write_timings = timings(&write_samples, &write_libraries, options.records);
    let write = writes
        .iter()
        .zip(write_timings)
        .enumerate()
        .map(|(i, (variant, timing))| {
            #[allow(clippy::cast_precision_loss)]
            WriteRow {
                variant: variant.name(),
                key: variant.key(),
                timing,
                disk: DiskRow {
                    files: disk[i].files,
                    bytes: disk[i].bytes,
                    allocated_bytes: disk[i].allocated_bytes,
                    bytes_per_record: disk[i].bytes as f64 / options.records as f64,
                },
                syncs: write_syncs[i].clone(),
            }
        })
        .collect();
    let replay_libraries: Vec<Library> = replays.iter().map(|v| v.library()).collect();
    let replay_timings = timings(&replay_samples, &replay_libraries, options.records);
    let replay = replays
        .iter()
        .zip(replay_timings)
        .zip(replay_syncs)
        .map(|((variant, timing), syncs)| ReplayRow {
            variant: variant.name(),
            key: variant.key(),
            timing,
            syncs,
        })
        .collect();
    Ok(Report {
        records: options.records,
        record_bytes: RECORD_BYTES,
        trials: options.trials,
        dir: options.base_dir.display().to_string(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        raft_engine: cfg!(feature = "raft-engine"),
        write,
        replay,
    })
}

fn syncs_text(syncs: Option<&SyncCounts>) -> String {
    match syncs {
        None => "-".to_owned(),
        Some(s) => {
            let mut text = s.durability_calls().to_string();
            if s.sync_file_range > 0 {
                let _ = write!(text, " (+{} sfr)", s.sync_file_range);
            }
            text
        }
    }
}

fn print_text(report: &Report) {
    println!(
        "{} records of {} bytes, median of {} trials, logs under {}, {} cores{}",
        report.records,
        report.record_bytes,
        report.trials,
        report.dir,
        report.cores,
        if report.raft_engine {
            ""
        } else {
            " (built without raft-engine)"
        }
    );
    println!();
    println!("write N records, then one durability call");
    println!(
        "  {:<44} {:>10} {:>9} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "variant", "median ms", "ns/rec", "Mrec/s", "x fswal", "file MB", "alloc MB", "syncs"
    );
    for row in &report.write {
        #[allow(clippy::cast_precision_loss)]
        let ms = row.timing.median_ns as f64 / 1e6;
        #[allow(clippy::cast_precision_loss)]
        let (file_mb, allocated_mb) = (
            row.disk.bytes as f64 / 1e6,
            row.disk.allocated_bytes as f64 / 1e6,
        );
        println!(
            "  {:<44} {:>10.1} {:>9.1} {:>8.2} {:>8.2} {:>9.1} {:>9.1} {:>12}",
            row.variant,
            ms,
            row.timing.ns_per_record,
            row.timing.records_per_s / 1e6,
            row.timing.vs_fswal,
            file_mb,
            allocated_mb,
            syncs_text(row.syncs.as_ref()),
        );
    }
    println!();
    println!("replay and verify N records (page cache warm)");
    println!(
        "  {:<44} {:>10} {:>9} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "variant", "median ms", "ns/rec", "Mrec/s", "x fswal", "", "", "syncs"
    );
    for row in &report.replay {
        #[allow(clippy::cast_precision_loss)]
        let ms = row.timing.median_ns as f64 / 1e6;
        println!(
            "  {:<44} {:>10.1} {:>9.1} {:>8.2} {:>8.2} {:>9} {:>9} {:>12}",
            row.variant,
            ms,
            row.timing.ns_per_record,
            row.timing.records_per_s / 1e6,
            row.timing.vs_fswal,
            "",
            "",
            syncs_text(row.syncs.as_ref()),
        );
    }
    println!();
    println!(
        "x fswal: median over the fastest fswal variant of the same workload. \
         file MB / alloc MB: the lengths and allocated blocks of the files a write left \
         (fswal preallocates its segment and the next one). syncs: fsync + fdatasync + \
         msync in one untimed run under strace (sfr: sync_file_range writeback hints)."
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("child") {
        run_child(&args[1..])
    } else {
        parse_options(&args).and_then(|options| {
            let report = run(&options)?;
            if options.json {
                let text =
                    serde_json::to_string_pretty(&report).context(|| "encode JSON".to_owned())?;
                println!("{text}");
            } else {
                print_text(&report);
            }
            Ok(())
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fswal-bench-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
    }

    #[test]
    fn parses_an_strace_summary() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 99.95    0.004000        4000         1           fdatasync
  0.05    0.000002           0        64           sync_file_range
  0.00    0.000000           0         2         1 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.004002          59        67         1 total
";
        let counts = SyncCounts::parse_strace_summary(text);
        assert_eq!(counts.fdatasync, 1);
        assert_eq!(counts.fsync, 2);
        assert_eq!(counts.sync_file_range, 64);
        assert_eq!(counts.durability_calls(), 3);
    }

    #[test]
    fn every_variant_key_round_trips() {
        for v in WriteVariant::ALL {
            assert_eq!(WriteVariant::from_key(v.key()), Some(*v));
        }
        for v in ReplayVariant::ALL {
            assert_eq!(ReplayVariant::from_key(v.key()), Some(*v));
        }
    }
}

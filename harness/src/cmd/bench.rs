//! `fswal bench [--json] [--dir DIR] [--events N] [--trials K] [--rate R]
//! [--latency-events N]`: measures fswal against this machine's floors, in one run, on
//! the same data.
//!
//! 1. **Record** (whole process): `fswal record --events N` into a fresh directory,
//!    sealed and synced, against the *write floor*: one file of the same size written
//!    sequentially and `fdatasync`ed in the same directory, the faster of plain writes
//!    and writes that each start their own writeback. Trials alternate.
//! 2. **Verify** (whole process): `fswal verify` of that WAL (file and mmap backends,
//!    one worker and every core) against the *hash floor*: XXH64 over every block's
//!    events twice (the two hashes verification needs) through fresh mappings of the
//!    same files, on as many cores. Trials alternate.
//! 3. **Replay** (in process): every verified event handed to a consumer in order,
//!    sequentially and on every core, in ns/event, against the same floors.
//! 4. **Hot path**: `Recorder::append` latency percentiles at a paced rate (2M
//!    events/s by default) with group commit behind it, and the sustained durable rate
//!    flat out, on the file, mmap and direct backends.
//!
//! Each figure is a median over the trials and is printed with its ratio to its floor.
//! Progress goes to stderr; the report to stdout (one JSON object with `--json`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use fswal_backends::dir::{DirStore, SegmentDir};
use serde::Serialize;

use crate::bench::floors::{WriteFloorWay, hash_floor, segment_files, total_bytes, write_floor};
use crate::bench::hotpath::{self, HotPathRun};
use crate::bench::replay::{self as bench_replay, ReplayRun};
use crate::bench::{median, remove_dir, time_fswal};
use crate::cmd::verify::all_cores;
use crate::error::CliError;
use crate::store::{AnyStore, Backend};

/// Arguments of `fswal bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where to write the benchmark's WALs (a fresh directory is made inside it and
    /// removed afterwards; default: the system's temporary directory). Floors are
    /// measured in the same place.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Events recorded, verified and replayed.
    #[arg(long, default_value_t = 8_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub events: u64,
    /// Trials of each measurement (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub trials: u32,
    /// The pace of the latency runs, events per second.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub rate: u64,
    /// Events per latency run (default: two seconds at the pace).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_events: Option<u64>,
    /// Backends of the hot-path runs.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Backend::File, Backend::Mmap, Backend::Direct])]
    pub backends: Vec<Backend>,
}

/// A measured figure next to its floor.
#[derive(Clone, Debug, Serialize)]
struct Versus {
    what: String,
    /// Median seconds.
    median_s: f64,
    /// The floor's median seconds.
    floor_s: f64,
    /// `median_s / floor_s`.
    ratio: f64,
    /// The target ratio, where the project set one.
    target_ratio: Option<f64>,
    /// Every trial, seconds.
    trials_s: Vec<f64>,
}

/// A replay figure.
#[derive(Clone, Debug, Serialize)]
struct ReplayFigure {
    what: String,
    backend: &'static str,
    threads: usize,
    ns_per_event: f64,
    events_per_s: f64,
    /// Seconds, median, against the hash floor on as many cores.
    floor_s: f64,
    ratio: f64,
}

/// A hot-path figure.
#[derive(Clone, Debug, Serialize)]
struct HotPathFigure {
    backend: &'static str,
    paced: HotPathRun,
    /// Median durable rate flat out, events per second, and every trial.
    sustained_events_per_s: f64,
    sustained_trials: Vec<HotPathRun>,
}

#[derive(Serialize)]
struct Report {
    cores: usize,
    dir: String,
    events: u64,
    trials: u32,
    wal_bytes: u64,
    floors: Floors,
    record: Versus,
    verify: Vec<Versus>,
    replay: Vec<ReplayFigure>,
    hot_path: Vec<HotPathFigure>,
    elapsed_s: f64,
}

#[derive(Clone, Copy, Serialize)]
struct Floors {
    /// XXH64 double-hash over the WAL's files, every core, median seconds.
    hash_all_cores_s: f64,
    /// The same on one core.
    hash_one_core_s: f64,
    /// Bytes per second of event data hashed (twice) on every core.
    hash_all_cores_bytes_per_s: f64,
    /// Sequential write + fdatasync of the WAL's size, median seconds: the faster of
    /// the two ways below.
    write_s: f64,
    /// Plain `write`s, then `fdatasync`, median seconds.
    write_plain_s: f64,
    /// `write`s each followed by `sync_file_range(WRITE)`, then `fdatasync`, median
    /// seconds.
    write_behind_s: f64,
    /// Bytes per second of the write floor.
    write_bytes_per_s: f64,
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::File => "file",
        Backend::Mmap => "mmap",
        Backend::Direct => "direct",
    }
}

/// Progress on stderr, with the time since the start.
struct Progress {
    start: Instant,
}

impl Progress {
    fn say(&self, line: &str) {
        eprintln!(
            "fswal bench [{:>6.1} s] {line}",
            self.start.elapsed().as_secs_f64()
        );
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One whole-process `fswal record --events EVENTS` into a fresh directory under
/// `root` (removed afterwards); returns its seconds.
fn time_record(root: &std::path::Path, trial: u32, events: &str) -> Result<f64, CliError> {
    let dir = root.join(format!("record-{trial}"));
    let dir_arg = dir.display().to_string();
    let took = time_fswal(&["record", "--dir", &dir_arg, "--events", events])?;
    remove_dir(&dir)?;
    Ok(secs(took))
}

fn versus(what: String, trials: Vec<f64>, floor_s: f64, target_ratio: Option<f64>) -> Versus {
    let median_s = median(&trials);
    Versus {
        what,
        median_s,
        floor_s,
        ratio: median_s / floor_s,
        target_ratio,
        trials_s: trials,
    }
}

/// Runs `fswal bench`.
pub fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let progress = Progress {
        start: Instant::now(),
    };
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("fswal-bench-")
        .tempdir_in(&parent)
        .map_err(|e| CliError::new(format!("{}: {e}", parent.display())))?;
    let root = work.path();
    let cores = all_cores();
    progress.say(&format!(
        "{} events, {} trials, {} cores, in {}",
        args.events,
        args.trials,
        cores,
        root.display()
    ));
    let events = args.events.to_string();

    // 1. Record, against the write floor. The first run also makes the WAL that the
    //    later stages read; it is not counted.
    let wal = root.join("wal");
    let wal_arg = wal.display().to_string();
    time_fswal(&["record", "--dir", &wal_arg, "--events", &events])?;
    let files = segment_files(&wal).map_err(|e| CliError::new(format!("{wal_arg}: {e}")))?;
    let wal_bytes = total_bytes(&files).map_err(|e| CliError::new(format!("{wal_arg}: {e}")))?;
    let mut record_s = Vec::new();
    let mut write_plain_s = Vec::new();
    let mut write_behind_s = Vec::new();
    for trial in 1..=args.trials {
        let floor = |way| {
            write_floor(root, wal_bytes, way)
                .map(secs)
                .map_err(|e| CliError::new(format!("{}: {e}", root.display())))
        };
        // The recording and the two ways of writing alternate their order: plain,
        // write-behind, record on odd trials; the reverse on even ones.
        let mut steps = [
            Some(WriteFloorWay::Plain),
            Some(WriteFloorWay::WriteBehind),
            None,
        ];
        if trial % 2 == 0 {
            steps.reverse();
        }
        let mut took = 0.0;
        for step in steps {
            match step {
                Some(WriteFloorWay::Plain) => write_plain_s.push(floor(WriteFloorWay::Plain)?),
                Some(WriteFloorWay::WriteBehind) => {
                    write_behind_s.push(floor(WriteFloorWay::WriteBehind)?);
                }
                None => took = time_record(root, trial, &events)?,
            }
        }
        record_s.push(took);
        progress.say(&format!(
            "record {trial}/{}: {took:.3} s, write floor {:.3} s plain, {:.3} s write-behind",
            args.trials,
            write_plain_s.last().copied().unwrap_or(0.0),
            write_behind_s.last().copied().unwrap_or(0.0),
        ));
    }
    let write_floor_s = median(&write_plain_s).min(median(&write_behind_s));
    let record = versus(
        format!("fswal record --events {}", args.events),
        record_s,
        write_floor_s,
        Some(1.43),
    );

    // 2. Verify, against the hash floor.
    let configs: [(&str, Option<&str>, Option<&str>); 4] = [
        ("file, every core", None, None),
        ("mmap, every core", Some("mmap"), None),
        ("file, one worker", None, Some("1")),
        ("mmap, one worker", Some("mmap"), Some("1")),
    ];
    let mut verify_s: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut hash_all = Vec::new();
    let mut hash_one = Vec::new();
    let hash_err = |e: std::io::Error| CliError::new(format!("{wal_arg}: {e}"));
    for trial in 1..=args.trials {
        let (all, _) = hash_floor(&files, cores.get()).map_err(hash_err)?;
        hash_all.push(secs(all));
        let (one, _) = hash_floor(&files, 1).map_err(hash_err)?;
        hash_one.push(secs(one));
        for ((_, backend, threads), times) in configs.iter().zip(verify_s.iter_mut()) {
            let mut argv = vec!["verify"];
            if let Some(b) = backend {
                argv.extend(["--backend", b]);
            }
            if let Some(t) = threads {
                argv.extend(["--threads", t]);
            }
            argv.push(&wal_arg);
            times.push(secs(time_fswal(&argv)?));
        }
        progress.say(&format!(
            "verify {trial}/{}: file {:.3} s, mmap {:.3} s, hash floor {:.3} s (one core {:.3} s)",
            args.trials,
            verify_s[0].last().copied().unwrap_or(0.0),
            verify_s[1].last().copied().unwrap_or(0.0),
            secs(all),
            secs(one)
        ));
    }
    let floors = Floors {
        hash_all_cores_s: median(&hash_all),
        hash_one_core_s: median(&hash_one),
        hash_all_cores_bytes_per_s: wal_bytes as f64 / median(&hash_all),
        write_s: write_floor_s,
        write_plain_s: median(&write_plain_s),
        write_behind_s: median(&write_behind_s),
        write_bytes_per_s: wal_bytes as f64 / write_floor_s,
    };
    let verify: Vec<Versus> = configs
        .iter()
        .zip(verify_s)
        .map(|((what, _, threads), trials)| {
            let one = threads.is_some();
            let floor = if one {
                floors.hash_one_core_s
            } else {
                floors.hash_all_cores_s
            };
            versus(
                format!("fswal verify ({what})"),
                trials,
                floor,
                (!one).then_some(1.25),
            )
        })
        .collect();

    // 3. Replay in process, handing every event out.
    let mut replay = Vec::new();
    for backend in [Backend::File, Backend::Mmap] {
        let open = || -> Result<AnyStore, CliError> {
            Ok(match backend {
                Backend::Mmap => AnyStore::Mmap(SegmentDir::open_read_only(&wal)?),
                _ => AnyStore::File(DirStore::open_read_only(&wal)?),
            })
        };
        for threads in [None, Some(cores)] {
            let mut runs: Vec<ReplayRun> = Vec::new();
            for _ in 0..args.trials {
                let mut store = open()?;
                if !bench_replay::has_segments(&mut store) {
                    return Err(CliError::new(format!("{wal_arg}: no segments to replay")));
                }
                runs.push(match threads {
                    None => bench_replay::sequential(&mut store)?,
                    Some(t) => bench_replay::parallel(&mut store, t)?,
                });
            }
            let seconds: Vec<f64> = runs.iter().map(|r| secs(r.elapsed)).collect();
            let median_s = median(&seconds);
            let events_out = runs.first().map_or(0, |r| r.events);
            let (what, threads_n, floor_s) = match threads {
                None => ("sequential Replay", 1, floors.hash_one_core_s),
                Some(t) => ("ParallelReplay", t.get(), floors.hash_all_cores_s),
            };
            let figure = ReplayFigure {
                what: what.to_string(),
                backend: backend_name(backend),
                threads: threads_n,
                ns_per_event: median_s * 1e9 / events_out.max(1) as f64,
                events_per_s: events_out as f64 / median_s,
                floor_s,
                ratio: median_s / floor_s,
            };
            progress.say(&format!(
                "replay {what} ({}): {:.1} ns/event",
                figure.backend, figure.ns_per_event
            ));
            replay.push(figure);
        }
    }
    remove_dir(&wal)?;

    // 4. The hot path.
    let latency_events = args.latency_events.unwrap_or(args.rate.saturating_mul(2));
    let mut hot_path = Vec::new();
    for &backend in &args.backends {
        let name = backend_name(backend);
        let dir = root.join(format!("hot-{name}"));
        let paced = hotpath::run(backend, &dir, latency_events, Some(args.rate))?;
        remove_dir(&dir)?;
        progress.say(&format!(
            "hot path {name} at {}/s: p99.9 {} ns, max {} ns",
            args.rate, paced.append.p99_9_ns, paced.append.max_ns
        ));
        let mut sustained = Vec::new();
        for trial in 1..=args.trials {
            let run = hotpath::run(backend, &dir, args.events, None)?;
            remove_dir(&dir)?;
            progress.say(&format!(
                "hot path {name} flat out {trial}/{}: {:.2} M events/s durable",
                args.trials,
                run.durable_rate_per_s / 1e6
            ));
            sustained.push(run);
        }
        let rates: Vec<f64> = sustained.iter().map(|r| r.durable_rate_per_s).collect();
        hot_path.push(HotPathFigure {
            backend: name,
            paced,
            sustained_events_per_s: median(&rates),
            sustained_trials: sustained,
        });
    }

    let report = Report {
        cores: cores.get(),
        dir: root.display().to_string(),
        events: args.events,
        trials: args.trials,
        wal_bytes,
        floors,
        record,
        verify,
        replay,
        hot_path,
        elapsed_s: progress.start.elapsed().as_secs_f64(),
    };
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        let json = serde_json::to_string(&report).map_err(|e| CliError::new(e.to_string()))?;
        writeln!(out, "{json}")
    } else {
        write_text(&mut out, &report, args)
    };
    printed.map_err(|e| CliError::new(format!("stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1u32 << 20)
}

fn write_text(out: &mut impl Write, r: &Report, args: &BenchArgs) -> std::io::Result<()> {
    let f = &r.floors;
    writeln!(
        out,
        "fswal bench: {} events ({:.1} MiB of segments), medians of {} trials, {} cores",
        r.events,
        mib(r.wal_bytes as f64),
        r.trials,
        r.cores
    )?;
    writeln!(out, "\nfloors")?;
    writeln!(
        out,
        "  XXH64 x2 over the files, every core  {:>9.1} ms  {:>8.0} MiB/s",
        f.hash_all_cores_s * 1e3,
        mib(f.hash_all_cores_bytes_per_s)
    )?;
    writeln!(
        out,
        "  XXH64 x2 over the files, one core    {:>9.1} ms",
        f.hash_one_core_s * 1e3
    )?;
    writeln!(
        out,
        "  write + fdatasync, same directory    {:>9.1} ms  {:>8.0} MiB/s  \
         (plain {:.1} ms, write-behind {:.1} ms)",
        f.write_s * 1e3,
        mib(f.write_bytes_per_s),
        f.write_plain_s * 1e3,
        f.write_behind_s * 1e3
    )?;
    writeln!(out, "\nwhole process (ratio to floor; target)")?;
    for v in std::iter::once(&r.record).chain(&r.verify) {
        let target = v
            .target_ratio
            .map_or(String::new(), |t| format!("  (target <= {t:.2}x)"));
        writeln!(
            out,
            "  {:<40} {:>9.1} ms  {:>5.2}x{target}",
            v.what,
            v.median_s * 1e3,
            v.ratio
        )?;
    }
    writeln!(
        out,
        "\nverified replay, every event handed out in order (ratio to the hash floor on as many cores)"
    )?;
    for p in &r.replay {
        writeln!(
            out,
            "  {:<18} {:<5} {} thread(s)  {:>6.2} ns/event  {:>7.1} M events/s  {:>5.2}x",
            p.what,
            p.backend,
            p.threads,
            p.ns_per_event,
            p.events_per_s / 1e6,
            p.ratio
        )?;
    }
    writeln!(
        out,
        "\nhot path: Recorder::append on the engine thread at {} events/s (target p99.9 <= 1000 ns), group commit every 256 events or 200 us",
        args.rate
    )?;
    writeln!(
        out,
        "  backend   p50    p99  p99.9 p99.99      max ns  ring-full  syncs  | flat out: durable M events/s"
    )?;
    for h in &r.hot_path {
        let a = &h.paced.append;
        writeln!(
            out,
            "  {:<6} {:>6} {:>6} {:>6} {:>6} {:>10}  {:>9} {:>6}  | {:.2}",
            h.backend,
            a.p50_ns,
            a.p99_ns,
            a.p99_9_ns,
            a.p99_99_ns,
            a.max_ns,
            h.paced.ring_full,
            h.paced.syncs,
            h.sustained_events_per_s / 1e6
        )?;
    }
    writeln!(out, "\n({:.0} s in all)", r.elapsed_s)?;
    Ok(())
}

//! An engine thread recording through [`Recorder`]: appends reference events at a
//! steady pace, waits for the last one to be durable, and prints the telemetry, as a
//! human-readable summary and as Prometheus text.
//!
//! ```text
//! cargo run --release -p fswal-recorder --example engine -- [DIR] [--events N] [--rate R]
//! ```
//!
//! `DIR` is a new or existing WAL directory (default: a temporary one, removed at the
//! end); `N` events (default 1 000 000) are appended at `R` events per second (default
//! 1 000 000; 0 for flat out), continuing after the last event already in `DIR`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fswal_backends::dir::DirStore;
use fswal_core::reference::reference_event;
use fswal_core::writer::wall_clock_ns;
use fswal_recorder::{Recorder, RecorderConfig};

/// What the command line asked for.
struct Options {
    dir: Option<PathBuf>,
    events: u64,
    rate_per_s: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        dir: None,
        events: 1_000_000,
        rate_per_s: 1_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let text = args.next().ok_or(format!("{name} needs a value"))?;
            text.replace('_', "")
                .parse()
                .map_err(|e| format!("{name} {text}: {e}"))
        };
        match arg.as_str() {
            "--events" => options.events = number("--events")?,
            "--rate" => options.rate_per_s = number("--rate")?,
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            dir => options.dir = Some(PathBuf::from(dir)),
        }
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), String> {
    let scratch;
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            scratch = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
            scratch.path().join("wal")
        }
    };
    let shown = dir.display().to_string();
    // The preparer keeps the next segment's file allocated, so that a rotation on the
    // I/O thread only writes a header.
    let store = DirStore::open_for_append(&dir)
        .map_err(|e| e.to_string())?
        .write_thread(true)
        .prepare_ahead(false);
    let config = RecorderConfig::default().preparer(Box::new(store.preparer()));
    let (mut recorder, recovery) =
        Recorder::start(store, wall_clock_ns, config).map_err(|e| format!("{shown}: {e}"))?;
    let first = recorder.last_event_id() + 1;
    println!(
        "{shown}: recovered through event {} ({:?}); appending {} events from {first}",
        recorder.last_event_id(),
        recovery.summary.status,
        options.events
    );

    let start = Instant::now();
    for (n, id) in (0u64..).zip(first..first.saturating_add(options.events)) {
        if options.rate_per_s > 0 {
            // Event n arrives n / rate seconds after the start, as requests would.
            let due = start
                + Duration::from_nanos(
                    u64::try_from(u128::from(n) * 1_000_000_000 / u128::from(options.rate_per_s))
                        .unwrap_or(u64::MAX),
                );
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        recorder
            .append(&reference_event(id))
            .map_err(|e| format!("{shown}: {e}"))?;
    }
    let last = recorder.last_event_id();
    // The engine would answer a request only once its event is durable.
    recorder
        .wait_durable(last, Duration::from_secs(10))
        .map_err(|e| format!("{shown}: {e}"))?;
    println!(
        "durable through event {} after {:.3} s",
        recorder.durable_event_id(),
        start.elapsed().as_secs_f64()
    );
    let telemetry = std::sync::Arc::clone(recorder.telemetry());
    recorder.close().map_err(|e| format!("{shown}: {e}"))?;
    println!("\n{}", telemetry.report());
    println!("{}", telemetry.prometheus());
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(|options| run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine: {e}");
            ExitCode::FAILURE
        }
    }
}

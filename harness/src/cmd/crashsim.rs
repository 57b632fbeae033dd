//! `fswal crashsim [--json] [--seed S] [--events N] [--sector 512|4096]`: runs the
//! crash simulator (see [`crate::crashsim`]) and reports what it explored and found.
//!
//! Exit 0 when every check held on every state, 1 otherwise. With `--json`, the last
//! line of stdout is one object: `crash_points`, `images`, one tally per lineage
//! (`power_cut`, `process_crash`, `power_cut_after_process_crash`: `images`,
//! `acknowledged_lost`, `phantom_events`, `truncation_mismatches`, `refusals`,
//! `continuation_failures`, `panics`), their sums at the top level, and more.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use crate::crashsim::{SimConfig, SimReport, Tally, simulate};
use crate::error::CliError;
use crate::progress::{Output, Progress, show_progress_here};

/// Arguments of `fswal crashsim`.
#[derive(Args, Debug)]
pub struct CrashsimArgs {
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub json: bool,
    /// Seeds the workload and the sampled images.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Events the workload appends.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub events: u64,
    /// The sector size writes tear at.
    #[arg(long, default_value_t = 512, value_parser = parse_sector)]
    pub sector: u32,
}

/// Accepts the two sector sizes the fault model is run at.
fn parse_sector(text: &str) -> Result<u32, String> {
    match text {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err("the sector size is 512 or 4096".to_string()),
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    seed: u64,
    events: u64,
    sector_bytes: u32,
    crash_points: u64,
    workload_crash_points: u64,
    recovery_crash_points: u64,
    restarted_crash_points: u64,
    images: u64,
    images_by_kind: &'a std::collections::BTreeMap<&'static str, u64>,
    power_cut: &'a Tally,
    process_crash: &'a Tally,
    power_cut_after_process_crash: &'a Tally,
    acknowledged_lost: u64,
    phantom_events: u64,
    truncation_mismatches: u64,
    refusals: u64,
    continuation_failures: u64,
    panics: u64,
    failures: &'a [String],
    elapsed_s: f64,
}

/// A tally as one line of text.
fn tally_line(name: &str, t: &Tally) -> String {
    format!(
        "{name}: {} states; acknowledged events lost {}, phantom events {}, truncation mismatches {}, refusals {}, continuation failures {}, panics {}\n",
        t.images,
        t.acknowledged_lost,
        t.phantom_events,
        t.truncation_mismatches,
        t.refusals,
        t.continuation_failures,
        t.panics
    )
}

/// Seconds between two progress lines on stderr when no bar is drawn.
const PROGRESS_LINE_S: u64 = 2;

/// Runs `fswal crashsim`.
pub fn run(args: &CrashsimArgs) -> Result<ExitCode, CliError> {
    let config = SimConfig {
        seed: args.seed,
        events: args.events,
        sector_bytes: args.sector,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let mut last_print = Instant::now();
    let spinner = Progress::spinner(
        show_progress_here(Output::Report { json: args.json }),
        "crashsim",
    );
    // Until the first count, after 256 events.
    spinner.set_message(format!(": {} events, seed {}", args.events, args.seed));
    let mut shown = None;
    let report = simulate(config, |r: &SimReport| {
        if spinner.is_shown() {
            // Called every 256 events: the text is rebuilt only when it changes.
            if shown != Some(r.crash_points) {
                shown = Some(r.crash_points);
                spinner.set_message(format!(
                    ": {} crash points, {} states",
                    r.crash_points, r.images
                ));
            }
        } else if last_print.elapsed().as_secs() >= PROGRESS_LINE_S {
            // No terminal to draw on (a log, CI): a line now and then says it is alive.
            last_print = Instant::now();
            eprintln!(
                "fswal crashsim: {} crash points, {} states so far ({:.0} s)",
                r.crash_points,
                r.images,
                started.elapsed().as_secs_f64()
            );
        }
    });
    drop(spinner);
    let elapsed_s = started.elapsed().as_secs_f64();
    let total = report.total();
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        let json = JsonReport {
            seed: args.seed,
            events: args.events,
            sector_bytes: args.sector,
            crash_points: report.crash_points,
            workload_crash_points: report.workload_crash_points,
            recovery_crash_points: report.recovery_crash_points,
            restarted_crash_points: report.restarted_crash_points,
            images: report.images,
            images_by_kind: &report.images_by_kind,
            power_cut: &report.power_cut,
            process_crash: &report.process_crash,
            power_cut_after_process_crash: &report.power_cut_after_process_crash,
            acknowledged_lost: total.acknowledged_lost,
            phantom_events: total.phantom_events,
            truncation_mismatches: total.truncation_mismatches,
            refusals: total.refusals,
            continuation_failures: total.continuation_failures,
            panics: total.panics,
            failures: &report.failures,
            elapsed_s,
        };
        serde_json::to_string(&json)
            .map_err(|e| CliError::new(e.to_string()))
            .and_then(|line| {
                writeln!(out, "{line}").map_err(|e| CliError::new(format!("stdout: {e}")))
            })
    } else {
        let kinds: Vec<String> = report
            .images_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut text = format!(
            "crashsim seed {} ({} events, {}-byte sectors): {} crash points ({} in the workload, {} during recovery, {} in runs restarted after a process crash), {} states ({}) in {elapsed_s:.1} s\n",
            args.seed,
            args.events,
            args.sector,
            report.crash_points,
            report.workload_crash_points,
            report.recovery_crash_points,
            report.restarted_crash_points,
            report.images,
            kinds.join(", "),
        );
        text.push_str(&tally_line("power cuts", &report.power_cut));
        text.push_str(&tally_line("process crashes", &report.process_crash));
        text.push_str(&tally_line(
            "power cuts after a process crash",
            &report.power_cut_after_process_crash,
        ));
        for failure in &report.failures {
            text.push_str(&format!("FAILED: {failure}\n"));
        }
        write!(out, "{text}").map_err(|e| CliError::new(format!("stdout: {e}")))
    };
    printed?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

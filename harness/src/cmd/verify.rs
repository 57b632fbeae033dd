//! `fswal verify [--json] [--mode strict|diagnostic] PATH`: checks a WAL directory or
//! one segment file against every rule of the format.
//!
//! Exit 0 when everything present is valid (an open last segment whose blocks verify
//! is valid), 1 when damage or truncation was found, 2 on usage or I/O errors. On a
//! terminal, and without `--json`, stderr shows how far it is.

use std::io::Write;
use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Args;
use fswal_core::{Issue, Mode, ParallelReplay, Replay, SegmentStore, Status, Step, Summary};
use serde::Serialize;

use crate::cmd::ModeArg;
use crate::error::CliError;
use crate::progress::{Output, Progress, Segments, show_progress_here};
use crate::store::{Source, TargetArgs, open_read_only};

/// The most issues a report lists; `issues_total` counts them all.
pub const ISSUES_LISTED_MAX: usize = 1000;

/// Arguments of `fswal verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stop at the first problem (strict) or skip bad blocks and report every gap
    /// (diagnostic).
    #[arg(long, value_enum, default_value_t = ModeArg::Strict)]
    pub mode: ModeArg,
    /// Workers verifying blocks in parallel, at least 1 (default: one per core).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<NonZeroUsize>,
    /// Where the WAL is.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Accepts a worker count of at least 1, and says so for 0 or anything else: clap's
/// own message for 0 ("number would be zero for non-zero type") names a type, not the
/// rule.
fn parse_threads(text: &str) -> Result<NonZeroUsize, String> {
    text.parse::<usize>()
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| {
            "the number of worker threads must be a whole number of at least 1 (omit --threads for one per core)"
                .to_owned()
        })
}

/// One worker per core, as the system reports them.
#[must_use]
pub fn all_cores() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// What `verify` found.
#[derive(Debug)]
pub struct Verified {
    /// The replay summary.
    pub summary: Summary,
    /// The issues found, at most [`ISSUES_LISTED_MAX`].
    pub issues: Vec<Issue>,
}

/// Verifies `source` in `mode`, keeping the issues: first the parallel fast path on
/// `threads` workers, which settles a plain log; when it gives up, the sequential
/// replay, which explains every problem. With `show_progress`, a spinner on stderr
/// while the fast path runs (it reports nothing before it ends), then a bar over the
/// segments while the sequential replay does.
pub fn verify(
    source: &mut Source,
    mode: Mode,
    threads: NonZeroUsize,
    show_progress: bool,
) -> Result<Verified, CliError> {
    // Only for the bar: a listing that fails is left to replay to report.
    let range = source.store.segment_range().ok().flatten();
    let spinner = Progress::spinner(show_progress, "verifying");
    if spinner.is_shown() {
        let segments = range.map_or(0, |(first, last)| u64::from(last - first) + 1);
        spinner.set_message(format!(" {segments} segment(s) on {threads} thread(s)"));
    }
    let fast = ParallelReplay::new()
        .threads(threads)
        .verify_fast(&mut source.store);
    drop(spinner);
    if let Ok(Ok(summary)) = fast {
        return Ok(Verified {
            summary,
            issues: Vec::new(),
        });
    }
    // Not plain, or a read failed: the sequential replay says exactly what and where.
    let mut segments = Segments::new(show_progress, "verifying, segment by segment", range);
    let mut replay = Replay::new(&mut source.store, mode);
    let mut issues = Vec::new();
    loop {
        match replay.step() {
            Ok(Some(Step::Issue(issue))) if issues.len() < ISSUES_LISTED_MAX => issues.push(issue),
            Ok(Some(Step::Block(view))) => segments.block_of(view.segment),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                drop(replay);
                return Err(CliError::from_core(&source.store, e));
            }
        }
    }
    Ok(Verified {
        summary: *replay.summary(),
        issues,
    })
}

#[derive(Serialize)]
struct JsonIssue {
    segment: u32,
    block: Option<u32>,
    offset: u64,
    reason: String,
    file: String,
}

#[derive(Serialize)]
struct JsonReport {
    status: &'static str,
    mode: &'static str,
    segments: u32,
    blocks: u64,
    events: u64,
    first_event_id: Option<u64>,
    last_event_id: Option<u64>,
    skipped_blocks: u64,
    open_segment: bool,
    issues: Vec<JsonIssue>,
    issues_total: u64,
    /// What the C++ recorder's `wal_meta.dat` says, when there is one: a hint only.
    cpp_meta: Option<JsonCppMeta>,
}

#[derive(Serialize)]
struct JsonCppMeta {
    segment: u32,
    offset: u32,
    last_event_id: u64,
}

/// Runs `fswal verify`.
pub fn run(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let mode = Mode::from(args.mode);
    let mut source = open_read_only(&args.target)?;
    if mode == Mode::Diagnostic {
        source = source.skipping_unreadable_compressed();
    }
    let v = verify(
        &mut source,
        mode,
        args.threads.unwrap_or_else(all_cores),
        show_progress_here(Output::Report { json: args.json }),
    )?;
    source.report_unreadable_compressed();
    let s = &v.summary;
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        let report = JsonReport {
            status: s.status.name(),
            mode: match mode {
                Mode::Strict => "strict",
                Mode::Diagnostic => "diagnostic",
            },
            segments: s.segments,
            blocks: s.blocks,
            events: s.events,
            first_event_id: s.first_event_id,
            last_event_id: s.last_event_id,
            skipped_blocks: s.skipped_blocks,
            open_segment: s.open_segment,
            issues: v
                .issues
                .iter()
                .map(|i| JsonIssue {
                    segment: i.segment,
                    block: i.block,
                    offset: i.offset_bytes,
                    reason: i.reason.to_string(),
                    file: source.store.segment_file(i.segment).display().to_string(),
                })
                .collect(),
            issues_total: s.issues,
            cpp_meta: source.store.cpp_meta()?.map(|m| JsonCppMeta {
                segment: m.segment_index,
                offset: m.offset_bytes,
                last_event_id: m.last_event_id,
            }),
        };
        let json = serde_json::to_string(&report).map_err(|e| CliError::new(e.to_string()))?;
        writeln!(out, "{json}")
    } else {
        let note = crate::store::cpp_meta_note(&source.store, s.last_event_id.unwrap_or(0))?;
        write_text(&mut out, &source, &v).and_then(|()| match note {
            Some(note) => writeln!(out, "{note}"),
            None => Ok(()),
        })
    };
    printed.map_err(|e| CliError::new(format!("stdout: {e}")))?;
    Ok(if s.status == Status::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_text(out: &mut impl Write, source: &Source, v: &Verified) -> std::io::Result<()> {
    let s = &v.summary;
    for issue in &v.issues {
        writeln!(out, "{}", source.store.issue_line(issue))?;
    }
    if s.issues > v.issues.len() as u64 {
        writeln!(
            out,
            "... and {} more issues",
            s.issues - v.issues.len() as u64
        )?;
    }
    let ids = match (s.first_event_id, s.last_event_id) {
        (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
        _ => String::new(),
    };
    let open = if s.open_segment {
        ", last segment open (not sealed)"
    } else {
        ""
    };
    let skipped = if s.skipped_blocks > 0 {
        format!(", {} blocks skipped", s.skipped_blocks)
    } else {
        String::new()
    };
    let counts = format!(
        "{} segments, {} blocks, {} events{ids}{open}{skipped}",
        s.segments, s.blocks, s.events
    );
    match s.status {
        Status::Ok => writeln!(out, "ok: {counts}"),
        Status::Truncated => writeln!(
            out,
            "truncated: {counts} valid; nothing valid follows the problem (a torn tail, as a crash can leave)"
        ),
        Status::Corrupt => writeln!(
            out,
            "corrupt: {counts} valid; valid data follows the problem (damage in the middle of the log)"
        ),
    }
}

//! `fswal dump [--format jsonl|csv] [--from ID [--verify-prefix]] [--limit N] PATH`:
//! prints the verified events in order, one per line.
//!
//! Replay is strict: the events printed are the valid prefix of the log. If it stops
//! at a problem, the problem is reported on stderr in one line naming the file and
//! offset, and the exit code is 1.
//!
//! `--from ID` prints only the events whose id is at least ID, and never one past
//! damage the seek could have seen ([`Replay::seek`]): it checks the header of every
//! segment up to the one holding ID (present, valid, sealed before the last, ids
//! continuing from segment to segment) and verifies every block of that segment from
//! its first one, the blocks before ID included. What it does not read is the blocks of
//! the earlier segments, whose sealed headers vouch only for their totals and ids.
//! `--verify-prefix` reads those too ([`Replay::seek_verifying_prefix`]): it misses
//! nothing a full strict replay catches, at the cost of reading everything before ID.
//!
//! Dumped to a file (stdout not a terminal) from a terminal, stderr shows how far it is.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use fswal_core::{
    Event, EventType, Issue, Mode, OrderType, Replay, RequestEvent, SegmentStore, Side, Status,
    Step,
};

use crate::error::CliError;
use crate::progress::{Output, Segments, show_progress_here};
use crate::store::{AnyStore, TargetArgs, open_read_only};

/// Output format of `fswal dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// Arguments of `fswal dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// Start at the first event whose id is at least ID. The segment holding it is
    /// verified from its first block, and every earlier segment's header is checked.
    #[arg(long, value_name = "ID")]
    pub from: Option<u64>,
    /// With `--from`: verify every block before ID as well, as a full replay does.
    #[arg(long, requires = "from")]
    pub verify_prefix: bool,
    /// Print at most N events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Where the WAL is.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The CSV header line.
pub const CSV_HEADER: &str =
    "event_id,timestamp,price,quantity,user_id,order_id,type,order_type,side";

/// Writes `e` as one line of `format`.
pub fn write_event(out: &mut impl Write, format: Format, e: &Event) -> io::Result<()> {
    let (t, o, s) = (e.event_type.name(), e.order_type.name(), e.side.name());
    match format {
        Format::Jsonl => writeln!(
            out,
            r#"{{"event_id":{},"timestamp":{},"price":{},"quantity":{},"user_id":{},"order_id":{},"type":"{t}","order_type":"{o}","side":"{s}"}}"#,
            e.event_id, e.timestamp, e.price, e.quantity, e.user_id, e.order_id
        ),
        Format::Csv => writeln!(
            out,
            "{},{},{},{},{},{},{t},{o},{s}",
            e.event_id, e.timestamp, e.price, e.quantity, e.user_id, e.order_id
        ),
    }
}

/// The native form of a verified event. Replay checked every event already, so the
/// fallback never shows; it keeps this panic-free.
fn decode(raw: &RequestEvent) -> Event {
    raw.decode().unwrap_or(Event {
        event_id: raw.event_id(),
        timestamp: raw.timestamp(),
        price: raw.price(),
        quantity: raw.quantity(),
        user_id: raw.user_id(),
        order_id: raw.order_id(),
        event_type: EventType::NewOrder,
        order_type: OrderType::Limit,
        side: Side::Bid,
    })
}

/// Runs `fswal dump`.
pub fn run(args: &DumpArgs) -> Result<ExitCode, CliError> {
    let mut source = open_read_only(&args.target)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let written = dump(&mut source.store, args, &mut out);
    let flushed = written.and_then(|done| out.flush().map(|()| done).map_err(Failure::Output));
    let done = match flushed {
        Ok(done) => done,
        // `fswal dump | head`: the reader left; that is not an error of ours.
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS);
        }
        Err(Failure::Output(e)) => return Err(CliError::new(format!("stdout: {e}"))),
        Err(Failure::Replay(e)) => return Err(CliError::from_core(&source.store, e)),
    };
    match done {
        Done::Limit | Done::End(Status::Ok, _) => Ok(ExitCode::SUCCESS),
        Done::End(status, issue) => {
            if let Some(issue) = issue {
                eprintln!(
                    "fswal: stopped at {}; the log is {status} there",
                    source.store.issue_line(&issue)
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Why dumping stopped.
enum Done {
    /// `--limit` events were printed.
    Limit,
    /// Replay ended, with this status and first problem.
    End(Status, Option<Issue>),
}

enum Failure {
    Output(io::Error),
    Replay(fswal_core::Error<fswal_backends::file::FileError>),
}

fn dump(store: &mut AnyStore, args: &DumpArgs, out: &mut impl Write) -> Result<Done, Failure> {
    // Only for the bar: a listing that fails is left to replay to report.
    let range = store.segment_range().ok().flatten();
    let mut segments = Segments::new(show_progress_here(Output::Stream), "dumping", range);
    let mut replay = Replay::new(store, Mode::Strict);
    match (args.from, args.verify_prefix) {
        (Some(id), true) => replay.seek_verifying_prefix(id),
        (Some(id), false) => replay.seek(id),
        // Clap refuses `--verify-prefix` without `--from`; without either, replay
        // starts at the beginning anyway.
        (None, _) => Ok(()),
    }
    .map_err(Failure::Replay)?;
    if args.format == Format::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(Failure::Output)?;
    }
    let mut left = args.limit.unwrap_or(u64::MAX);
    while let Some(step) = replay.step().map_err(Failure::Replay)? {
        let Step::Block(block) = step else { continue };
        segments.block_of(block.segment);
        for raw in block.events {
            if left == 0 {
                return Ok(Done::Limit);
            }
            write_event(out, args.format, &decode(raw)).map_err(Failure::Output)?;
            left -= 1;
        }
    }
    let summary = replay.summary();
    Ok(Done::End(summary.status, summary.first_issue))
}

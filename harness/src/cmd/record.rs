//! `fswal record --dir DIR --events N [--blocks-per-segment B] [--start-id ID]`:
//! appends events `ID..ID+N-1` of the reference stream (FORMAT-v1.md, "Known answers")
//! to the WAL in DIR, creating it if needed, then seals.
//!
//! An existing WAL is recovered first (a torn tail is preserved and cleared; damage
//! before the end refuses, touching nothing), and its ids must stay increasing: an id
//! not greater than the last one is refused before anything is written.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use fswal_backends::dir::DirStore;
use fswal_core::limits::{SEGMENT_BLOCKS_DEFAULT, SEGMENT_BLOCKS_MAX, SEGMENT_BLOCKS_MIN};
use fswal_core::reference::reference_event;
use fswal_core::writer::ClearedTail;
use fswal_core::{WalWriter, WriterConfig};

use crate::clock::wall_clock_ns;
use crate::error::CliError;

/// Arguments of `fswal record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The WAL directory (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// How many events to append.
    #[arg(long, value_name = "N")]
    pub events: u64,
    /// Block slots per new segment (16..=524288; 256 events each).
    #[arg(
        long,
        value_name = "B",
        default_value_t = SEGMENT_BLOCKS_DEFAULT,
        value_parser = clap::value_parser!(u32).range(i64::from(SEGMENT_BLOCKS_MIN)..=i64::from(SEGMENT_BLOCKS_MAX))
    )]
    pub blocks_per_segment: u32,
    /// The first event id to append.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    pub start_id: u64,
}

/// The line recovery prints when it cleared a torn tail.
#[must_use]
pub fn cleared_line(store: &DirStore, c: &ClearedTail) -> String {
    format!(
        "recovered: cleared a torn tail of {} block slots in {} from block {} on ({} bytes preserved as {}.torn-*)",
        c.slots_cleared,
        store.segment_path(c.segment).display(),
        c.from_slot,
        c.bytes_preserved,
        store.segment_path(c.segment).display()
    )
}

/// Runs `fswal record`.
pub fn run(args: &RecordArgs) -> Result<ExitCode, CliError> {
    let last_id = args
        .start_id
        .checked_add(args.events)
        .and_then(|end| end.checked_sub(1))
        .ok_or_else(|| CliError::new("--start-id + --events overflows a u64 event id"))?;
    if args.start_id == 0 {
        return Err(CliError::new(
            "--start-id must be at least 1 (event id 0 is invalid)",
        ));
    }
    let store = DirStore::open_for_append(&args.dir)?;
    let config = WriterConfig::with_blocks(args.blocks_per_segment);
    let (mut writer, recovery) = match WalWriter::open(store, wall_clock_ns, config) {
        Ok(opened) => opened,
        Err(e) => {
            // The store was moved into `open`; describe damage with a fresh read-only view.
            let view = DirStore::open_read_only(&args.dir)?;
            return Err(CliError::from_core(&view, e));
        }
    };
    if let Some(c) = &recovery.cleared {
        eprintln!("fswal: {}", cleared_line(writer.store(), c));
    }
    // Empty when `--events 0`: `last_id` is then `start_id - 1`.
    for id in args.start_id..=last_id {
        writer.append(&reference_event(id)).map_err(|e| match e {
            fswal_core::Error::EventIdNotIncreasing { last_event_id, .. } => CliError::at(
                &args.dir,
                format!(
                    "{e} (the WAL already holds events through {last_event_id}; use --start-id {})",
                    last_event_id.saturating_add(1)
                ),
            ),
            e => CliError::from_core(writer.store(), e),
        })?;
    }
    let durable = writer
        .close()
        .map_err(|e| CliError::from_core(writer.store(), e))?;
    let ids = if args.events == 0 {
        String::new()
    } else {
        format!(" (ids {}..={last_id})", args.start_id)
    };
    println!(
        "recorded {} events{ids} in {}; durable through event {durable}",
        args.events,
        args.dir.display(),
    );
    Ok(ExitCode::SUCCESS)
}

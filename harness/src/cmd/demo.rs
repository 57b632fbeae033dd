//! `fswal demo`: records a million events into a temporary WAL, cuts it as a crash
//! would in the middle of a segment, recovers, replays, and prints what happened and
//! how fast.
//!
//! The crash follows the fault model: the writer stops without sealing (the events it
//! still held in memory are lost), and the last block written after the last sync is
//! torn at a 4 KiB sector boundary (its later sectors never reached the disk). Nothing
//! a sync covered is touched. Every check the demo prints is also enforced: the exit
//! code is 1 if any fails. A check the run gave nothing to look at (no sync before the
//! crash, no unsynced block to tear, as with a few events) is printed as skipped, with
//! the reason, never as held.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use fswal_backends::dir::DirStore;
use fswal_core::limits::{BLOCK_SIZE_BYTES, block_offset_bytes};
use fswal_core::reference::reference_event;
use fswal_core::{Mode, Replay, Status, Step, WalWriter, WriterConfig};

use crate::clock::wall_clock_ns;
use crate::cmd::record::recovery_lines;
use crate::error::CliError;
use crate::store::AnyStore;

/// Events between syncs while recording: the durable watermark moves in these steps.
pub const SYNC_EVERY_EVENTS: u64 = 4096;

/// Block slots per segment in the demo: 262 144 events, so a million events span
/// four segments and the crash lands in the middle of the last one.
pub const DEMO_BLOCKS_PER_SEGMENT: u32 = 1024;

/// The sector size the crash tears at.
pub const TEAR_SECTOR_BYTES: u64 = 4096;

/// Arguments of `fswal demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Events to record.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Write the WAL into this new directory and keep it, instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `n` with thousands separators.
#[must_use]
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(events: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{:.3} s, {:.2} M events/s, {:.0} ns/event",
        secs,
        events as f64 / secs / 1e6,
        secs * 1e9 / (events.max(1) as f64)
    )
}

/// The demo's checks: each one held or failed, or had nothing to check and says so
/// (a check with nothing to look at is never reported as held).
struct Checks {
    failed: Vec<String>,
    skipped: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: String) {
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            self.failed.push(what);
        }
    }

    /// A check that this run gave nothing to look at, and why.
    fn skip(&mut self, what: &str, why: &str) {
        println!("  [skipped] {what}: nothing to check ({why})");
        self.skipped += 1;
    }
}

/// Runs `fswal demo`.
pub fn run(args: &DemoArgs) -> Result<ExitCode, CliError> {
    if args.events == 0 {
        return Err(CliError::new("--events must be at least 1"));
    }
    let temp;
    let dir: &Path = match &args.dir {
        Some(d) => {
            if d.exists() {
                return Err(CliError::at(d, "already exists; the demo writes a new WAL"));
            }
            d
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("fswal-demo-")
                .tempdir()
                .map_err(|e| CliError::new(format!("temporary directory: {e}")))?;
            temp.path()
        }
    };
    let n = args.events;
    let config = WriterConfig::with_blocks(DEMO_BLOCKS_PER_SEGMENT);
    let mut checks = Checks {
        failed: Vec::new(),
        skipped: 0,
    };
    println!(
        "fswal demo: {} events into {} (segments of {} blocks = {} events; sync every {} events)",
        thousands(n),
        dir.display(),
        DEMO_BLOCKS_PER_SEGMENT,
        thousands(u64::from(DEMO_BLOCKS_PER_SEGMENT) * 256),
        SYNC_EVERY_EVENTS
    );

    // 1. Record, syncing in groups, and crash without sealing.
    let store = AnyStore::File(DirStore::open_for_append(dir)?);
    let (mut writer, _) =
        WalWriter::open(store, wall_clock_ns, config).map_err(|e| CliError::at(dir, e))?;
    let started = Instant::now();
    for id in 1..=n {
        let w = &mut writer;
        w.append(&reference_event(id))
            .map_err(|e| CliError::from_core(w.store(), e))?;
        if id % SYNC_EVERY_EVENTS == 0 {
            w.sync().map_err(|e| CliError::from_core(w.store(), e))?;
        }
    }
    let record_time = started.elapsed();
    let durable = writer.durable_event_id();
    println!(
        "record   {} events in {}",
        thousands(n),
        rate(n, record_time)
    );
    drop(writer); // The crash: no seal, no last sync; what the writer held in memory is gone.

    // 2. Tear the last block written after the last sync, as a crash can.
    let before = Replay::new(DirStore::open_read_only(dir)?, Mode::Strict)
        .run(|_| {})
        .map_err(|e| CliError::at(dir, e))?;
    let on_disk = before.last_event_id.unwrap_or(0);
    let view = DirStore::open_read_only(dir)?;
    let torn = match before.tail {
        Some(t) if t.next_slot > 0 && on_disk > durable => {
            let slot = t.next_slot - 1;
            let path = view.segment_path(t.segment);
            let block_start = block_offset_bytes(slot);
            let block_end = block_start + BLOCK_SIZE_BYTES as u64;
            let cut = (block_start / TEAR_SECTOR_BYTES + 2) * TEAR_SECTOR_BYTES;
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| CliError::at(&path, e))?;
            let zeros = vec![0u8; usize::try_from(block_end - cut).unwrap_or(0)];
            file.write_all_at(&zeros, cut)
                .map_err(|e| CliError::at(&path, e))?;
            file.sync_all().map_err(|e| CliError::at(&path, e))?;
            println!(
                "crash    writer stopped after event {}, durable watermark {}; {} events were only in memory;\n         block {slot} of {} torn at offset {cut}: its last {} bytes never reached the disk",
                thousands(n),
                thousands(durable),
                thousands(n - on_disk),
                path.display(),
                block_end - cut
            );
            true
        }
        _ => {
            println!(
                "crash    writer stopped after event {}, durable watermark {}; {} events were only in memory (no unsynced block on disk to tear)",
                thousands(n),
                thousands(durable),
                thousands(n - on_disk)
            );
            false
        }
    };

    // 3. Recover.
    let started = Instant::now();
    let store = AnyStore::File(DirStore::open_for_append(dir)?);
    let (mut writer, recovery) = WalWriter::open(store, wall_clock_ns, config).map_err(|e| {
        DirStore::open_read_only(dir).map_or_else(CliError::from, |v| {
            CliError::from_core(&AnyStore::File(v), e)
        })
    })?;
    let recover_time = started.elapsed();
    let recovered = writer.last_event_id();
    let s = &recovery.summary;
    println!(
        "recover  {:.3} s: replayed {} segments, {} events; status {}",
        recover_time.as_secs_f64(),
        s.segments,
        thousands(s.events),
        s.status
    );
    if let Some(issue) = &s.first_issue {
        println!("         stopped at {}", writer.store().issue_line(issue));
    }
    for line in recovery_lines(writer.store(), &recovery) {
        println!("         {line}");
    }
    println!(
        "         {} events lost: {} in torn or unsynced blocks, {} only in memory",
        thousands(n - recovered),
        thousands(on_disk - recovered),
        thousands(n - on_disk)
    );
    if durable == 0 {
        checks.skip(
            "no acknowledged event lost",
            &format!(
                "no sync returned before the crash, so no event was acknowledged: the demo syncs every {SYNC_EVERY_EVENTS} events"
            ),
        );
    } else {
        checks.check(
            recovered >= durable,
            format!(
                "no acknowledged event lost: recovered through {} >= durable watermark {}",
                thousands(recovered),
                thousands(durable)
            ),
        );
    }
    if torn {
        checks.check(
            s.status == Status::Truncated,
            format!(
                "the torn tail was found as a torn tail (status {})",
                s.status
            ),
        );
    } else {
        checks.skip(
            "the torn tail is found as a torn tail",
            "no block was written after the last sync, so there was none to tear",
        );
        checks.check(
            s.status == Status::Ok,
            format!(
                "with nothing torn, recovery found the log whole (status {})",
                s.status
            ),
        );
    }

    // 4. The engine re-sends what was lost, and closes.
    for id in recovered + 1..=n {
        let w = &mut writer;
        w.append(&reference_event(id))
            .map_err(|e| CliError::from_core(w.store(), e))?;
    }
    writer
        .close()
        .map_err(|e| CliError::from_core(writer.store(), e))?;
    println!(
        "append   events {}..={} again, then sealed",
        thousands(recovered + 1),
        thousands(n)
    );
    drop(writer);

    // 5. Replay and check every event against the reference stream.
    let started = Instant::now();
    let mut replay = Replay::new(DirStore::open_read_only(dir)?, Mode::Strict);
    let mut expected = 1u64;
    let mut mismatches = 0u64;
    while let Some(step) = replay.step().map_err(|e| CliError::at(dir, e))? {
        if let Step::Block(b) = step {
            for e in b.events {
                if *e != reference_event(expected) {
                    mismatches += 1;
                }
                expected += 1;
            }
        }
    }
    let replay_time = started.elapsed();
    let s = *replay.summary();
    println!(
        "replay   {} events verified in {}",
        thousands(s.events),
        rate(s.events, replay_time)
    );
    checks.check(
        s.status == Status::Ok && s.events == n && mismatches == 0,
        format!(
            "replay gives ids 1..={} with no gap, each event equal to the reference stream (status {}, {} mismatches)",
            thousands(n),
            s.status,
            mismatches
        ),
    );
    if checks.failed.is_empty() {
        if checks.skipped == 0 {
            println!("demo passed");
        } else {
            println!(
                "demo passed, but {} check(s) had nothing to check with {} events (the default, 1,000,000, runs them all)",
                checks.skipped,
                thousands(n)
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED: {}", checks.failed.join("; "));
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}

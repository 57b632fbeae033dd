//! Guards the durability promise across real process crashes: `fswal record` is
//! killed with SIGKILL at random moments, and every event it reported durable must be
//! recovered, the recovered log must have no gap, and `--resume` must continue it.
//!
//! The moments are drawn from a seeded generator (set `FSWAL_CRASH_SEED` to replay a
//! run); the seed is printed. A SIGKILL keeps what reached the page cache, so this
//! exercises the process-level crash: writes cut between system calls or inside one,
//! segments half created or half sealed, the checkpoint half replaced. Power cuts
//! (lost page cache) are the crash simulator's job.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

const FSWAL: &str = env!("CARGO_BIN_EXE_fswal");

/// Kills per backend.
const ROUNDS: u32 = 6;

/// The deterministic generator the crash simulator uses.
use fswal_core::rng::XorShift64 as Rng;

fn seed() -> u64 {
    let seed = std::env::var("FSWAL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    let _ = writeln!(std::io::stderr(), "crash_kill: FSWAL_CRASH_SEED={seed}");
    seed
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `fswal verify --json` of `dir` with `backend`, or `None` when there is no WAL yet
/// (a kill that landed before the first segment was created).
fn verify(dir: &Path, backend: &str) -> Option<Value> {
    let out = Command::new(FSWAL)
        .args(["verify", "--json", "--backend", backend, p(dir)])
        .output()
        .expect("run verify");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2) && (err.contains("No such file") || err.contains("not a WAL")) {
        return None;
    }
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {text} {err}")),
    )
}

/// Runs `fswal record --resume` on `dir`, kills it after `delay`, and returns the
/// largest event id it reported durable (0 if none).
fn record_then_kill(dir: &Path, backend: &str, sync_every: u64, delay: Duration) -> u64 {
    let mut child = Command::new(FSWAL)
        .args([
            "record",
            "--dir",
            p(dir),
            "--backend",
            backend,
            "--resume",
            "--events",
            "50000000",
            "--blocks-per-segment",
            "16",
            "--sync-every",
            &sync_every.to_string(),
            "--print-durable",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn record");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut durable_max = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("durable ") {
                let id: u64 = id.trim().parse().expect("durable <id>");
                assert!(id >= durable_max, "durable ids went backwards");
                durable_max = id;
                let _ = tx.send(id);
            }
        }
        durable_max
    });
    // Wait for the first durable report so the kill lands while it records, not while
    // it recovers, except in rounds that ask for an early kill.
    if !delay.is_zero() {
        let _ = rx.recv_timeout(Duration::from_secs(20));
    }
    thread::sleep(delay);
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "record finished before it was killed");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    reader.join().expect("reader")
}

fn crash_rounds(backend: &str, seed: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut rng = Rng::new(seed);
    let mut acknowledged = 0u64;
    for round in 0..ROUNDS {
        let sync_every = [1u64, 7, 256, 1000, 4096][usize::try_from(rng.below(5)).expect("index")];
        // Mostly mid-recording; one round in four dies almost at once (during
        // recovery or the first appends).
        let delay = if rng.below(4) == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(5 + rng.below(250))
        };
        let durable = record_then_kill(&dir, backend, sync_every, delay);
        acknowledged = acknowledged.max(durable);

        let context =
            format!("{backend} round {round} (sync every {sync_every}, kill after {delay:?})");
        let Some(v) = verify(&dir, backend) else {
            assert_eq!(
                acknowledged, 0,
                "no WAL, yet events were acknowledged: {context}"
            );
            continue;
        };
        let context = format!("{context}: {v}");
        let status = v["status"].as_str().expect("status");
        assert!(status == "ok" || status == "truncated", "{context}");
        let last = v["last_event_id"].as_u64().unwrap_or(0);
        let events = v["events"].as_u64().expect("events");
        assert!(
            last >= acknowledged,
            "an acknowledged event was lost: {context}"
        );
        assert_eq!(events, last, "the recovered log has a gap: {context}");
        let _ = writeln!(
            std::io::stderr(),
            "crash_kill {backend} round {round}: sync every {sync_every}, killed after {delay:?}, acknowledged {acknowledged}, recovered {last} ({status})"
        );
        if last > 0 {
            assert_eq!(v["first_event_id"], 1, "{context}");
        }
    }

    // Finally a run that is not killed: it recovers, resumes and seals.
    let out = Command::new(FSWAL)
        .args([
            "record",
            "--dir",
            p(&dir),
            "--backend",
            backend,
            "--resume",
            "--events",
            "1000",
        ])
        .output()
        .expect("resume");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verify(&dir, backend).expect("a WAL after an uninterrupted run");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["open_segment"], false, "{v}");
    let last = v["last_event_id"].as_u64().expect("last");
    assert!(last >= acknowledged + 1000, "{v}");
    assert_eq!(v["events"].as_u64(), Some(last), "{v}");
}

#[test]
fn sigkill_never_loses_an_acknowledged_event_file() {
    crash_rounds("file", seed());
}

#[test]
fn sigkill_never_loses_an_acknowledged_event_mmap() {
    crash_rounds("mmap", seed() ^ 0x9e37_79b9);
}

#[test]
fn sigkill_never_loses_an_acknowledged_event_direct() {
    crash_rounds("direct", seed() ^ 0x7f4a_7c15);
}

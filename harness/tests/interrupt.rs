//! Guards what SIGINT and SIGTERM do to a running `fswal record`: it stops appending,
//! seals and syncs what it appended, says in one line on stderr how far the log is
//! durable, and exits 130 or 143; the log then verifies, sealed, holding exactly the
//! events 1..=N up to the id it reported.

mod common;

use common::*;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for `record` to report its first durable event, and then for
/// it to exit once signalled: far more than either takes, so that only a `record` that
/// ignores the signal or never starts appending fails on it.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Events `record` is asked for: more than it can append before it is signalled.
const EVENTS_UNREACHABLE: &str = "100000000";

/// Starts `fswal record` into `dir` with `extra` options and `--print-durable`, and
/// returns it with a channel of the durable ids it prints.
fn start_record(dir: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<u64>) {
    let mut child = Command::new(FSWAL)
        .args([
            "record",
            "--dir",
            p(dir),
            "--events",
            EVENTS_UNREACHABLE,
            "--blocks-per-segment",
            "16",
            "--print-durable",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn record");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    // Read to the end, so that `record` never blocks on a full pipe.
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let id = line
                .strip_prefix("durable ")
                .and_then(|id| id.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("not a durable line: {line}"));
            if tx.send(id).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Sends signal `signal` to `child`.
fn send(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Waits for `child` to exit within [`WAIT_MAX`], killing it and failing if it does not.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if started.elapsed() > WAIT_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!("record did not stop within {WAIT_MAX:?} of the signal");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Records into a new log with `extra` options until some events are durable, sends
/// `signal`, and checks the exit code, the line and the log.
fn interrupted(signal: i32, name: &str, exit_code: i32, extra: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let (mut child, durable) = start_record(&dir, extra);
    let first = durable.recv_timeout(WAIT_MAX).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("record reported nothing durable: {e}")
    });
    assert!(first > 0);
    send(&child, signal);
    let status = wait_exit(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert_eq!(status.code(), Some(exit_code), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    let prefix = format!("fswal: interrupted ({name}): appended ");
    assert!(line.starts_with(&prefix), "{line}");
    let reported: u64 = line
        .rsplit_once("durable through event ")
        .and_then(|(_, id)| id.parse().ok())
        .unwrap_or_else(|| panic!("no durable id in: {line}"));
    let appended: u64 = line[prefix.len()..]
        .split_once(' ')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {line}"));
    assert_eq!(
        appended, reported,
        "a new log: every appended event is durable"
    );
    assert!(reported >= first, "{line}");
    assert!(line.contains(&format!("(ids 1..={reported})")), "{line}");
    // The last id printed on stdout is the one reported.
    let printed: Vec<u64> = durable.try_iter().collect();
    assert_eq!(printed.last().copied().unwrap_or(first), reported);

    let out = fswal(&["verify", "--json", p(&dir)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let report = last_json(&out);
    assert_eq!(report["status"], "ok");
    assert_eq!(report["open_segment"], false, "{report}");
    assert_eq!(report["first_event_id"], 1, "{report}");
    assert_eq!(report["last_event_id"], reported, "{report}");
    // Ids strictly increase (verify checks it), so as many events as ids means 1..=N.
    assert_eq!(report["events"], reported, "{report}");
}

#[test]
fn sigint_seals_syncs_reports_the_durable_id_and_exits_130() {
    interrupted(libc::SIGINT, "SIGINT", 130, &["--sync-every", "1000"]);
}

#[test]
fn sigterm_seals_syncs_reports_the_durable_id_and_exits_143() {
    // Without --sync-every, events become durable only when a segment is sealed: what
    // the signal stops in the open segment is made durable by closing.
    interrupted(libc::SIGTERM, "SIGTERM", 143, &[]);
}

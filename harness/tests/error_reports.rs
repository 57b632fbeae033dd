//! Guards what an error that exits 2 tells a user: with `--json`, one JSON object on
//! stdout (`error`, `file`, `offset`, null when unknown) besides the line on stderr;
//! `verify --threads 0` refused saying threads must be at least 1; a file system that
//! refuses O_DIRECT named as such, with `--backend file` suggested; and a full file
//! system during `record` saying which event was the last durable one.

mod common;

use common::*;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// The size of the small file system a full disk is made on: room for a few segments
/// of 16 blocks (263 232 bytes each), so that `record` fills it within a second.
const FULL_FS_SIZE: &str = "size=2m";

/// Asserts that `out` exited 2 with one line on stderr and, as the only line of
/// stdout, one JSON object whose `error` is that line's message; returns the object.
fn json_error(out: &Output) -> Value {
    assert_eq!(code(out), 2, "{}{}", stdout(out), stderr(out));
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "stdout: {text}");
    let json: Value =
        serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let fields: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["error", "file", "offset"], "{json}");
    let error = json["error"].as_str().expect("error is text");
    assert!(!error.is_empty() && !error.contains('\n'), "{json}");
    let err = stderr(out);
    assert!(
        err.lines().any(|l| l.contains(error)),
        "stderr does not say it: {err}"
    );
    json
}

#[test]
fn json_commands_print_their_errors_as_one_object_naming_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("missing");

    let json = json_error(&fswal(&["verify", "--json", p(&missing)]));
    assert_eq!(json["file"], p(&missing), "{json}");
    assert_eq!(json["offset"], Value::Null, "{json}");

    // A file that is no segment: refused at offset 0, the offset kept apart too.
    let not_wal = tmp.path().join("FS.00000000.wal");
    fs::write(&not_wal, b"not a segment at all").expect("write");
    let json = json_error(&fswal(&["verify", "--json", p(&not_wal)]));
    assert_eq!(json["file"], p(&not_wal), "{json}");
    assert_eq!(json["offset"], 0, "{json}");

    let json = json_error(&fswal(&[
        "salvage",
        "--json",
        p(&missing),
        p(&tmp.path().join("new")),
    ]));
    assert_eq!(json["file"], p(&missing), "{json}");
    let json = json_error(&fswal(&["preserved", "--json", p(&missing)]));
    assert_eq!(json["file"], p(&missing), "{json}");

    // A command line clap refuses, of a command that takes --json: the same object,
    // about no file.
    let json = json_error(&fswal(&["crashsim", "--json", "--sector", "1000"]));
    assert_eq!(json["file"], Value::Null, "{json}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("--sector")),
        "{json}"
    );

    // Without --json nothing goes to stdout, and commands without --json never print
    // JSON.
    for args in [
        vec!["verify", p(&missing)],
        vec!["dump", p(&missing)],
        vec!["record", "--events", "1", "--json"],
    ] {
        let out = fswal(&args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}

#[test]
fn verify_refuses_zero_threads_saying_at_least_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    record_small(&dir, 1000);
    let out = fswal(&["verify", "--threads", "0", p(&dir)]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("--threads") && err.contains("at least 1"),
        "{err}"
    );
    assert!(!err.contains("non-zero type"), "{err}");
    let json = json_error(&fswal(&["verify", "--json", "--threads", "0", p(&dir)]));
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("at least 1")),
        "{json}"
    );
    assert_eq!(json["file"], Value::Null, "{json}");
    // One thread is fine.
    assert_eq!(code(&fswal(&["verify", "--threads", "1", p(&dir)])), 0);
}

/// A file system mounted for a test, unmounted when dropped.
struct Mounted {
    at: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    /// Mounts a file system of type `fs_type` with `options`, or says why the test
    /// skips (mounting needs root) and returns `None`.
    fn new(fs_type: &str, options: &[&str]) -> Option<Self> {
        let tmp = tempfile::tempdir().expect("tempdir");
        let at = tmp.path().join("mnt");
        fs::create_dir(&at).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", fs_type])
            .args(options)
            .args([fs_type, p(&at)])
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self { at, _tmp: tmp }),
            other => {
                let why = match other {
                    Ok(out) => stderr(&out),
                    Err(e) => e.to_string(),
                };
                skip(&format!("cannot mount a {fs_type} ({})", why.trim()));
                None
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

/// Says on stderr that a test skips, and why: libtest has no runtime skip, and a
/// skipped test must not read as a passed one.
fn skip(why: &str) {
    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("skipping: {why}\n"));
}

#[test]
fn o_direct_refused_by_the_file_system_is_named_and_backend_file_suggested() {
    // ramfs has no direct I/O (tmpfs has it since Linux 6.6).
    let Some(mnt) = Mounted::new("ramfs", &[]) else {
        return;
    };
    let dir = mnt.at.join("wal");
    let out = fswal(&[
        "record",
        "--dir",
        p(&dir),
        "--events",
        "10",
        "--blocks-per-segment",
        "16",
        "--backend",
        "direct",
    ]);
    if code(&out) == 0 {
        skip("this kernel's ramfs takes O_DIRECT: nothing refuses it here");
        return;
    }
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("O_DIRECT") && err.contains("--backend file"),
        "{err}"
    );
    // The same log through the file backend works, and verifying it through the
    // direct backend is refused the same way, as JSON with the segment named.
    let files = mnt.at.join("files");
    record_small(&files, 10);
    let json = json_error(&fswal(&[
        "verify",
        "--json",
        "--backend",
        "direct",
        p(&files),
    ]));
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("O_DIRECT") && error.contains("--backend file"),
        "{json}"
    );
    assert_eq!(json["file"], p(&files.join("FS.00000000.wal")), "{json}");
    assert_eq!(code(&fswal(&["verify", p(&files)])), 0);
}

#[test]
fn a_full_file_system_during_record_names_the_last_durable_event() {
    let Some(mnt) = Mounted::new("tmpfs", &["-o", FULL_FS_SIZE]) else {
        return;
    };
    let dir = mnt.at.join("wal");
    let out = fswal(&[
        "record",
        "--dir",
        p(&dir),
        "--events",
        "10000000",
        "--blocks-per-segment",
        "16",
        "--sync-every",
        "1000",
        "--print-durable",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    let printed: u64 = stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("durable "))
        .filter_map(|id| id.parse().ok())
        .max()
        .expect("some events were durable before the disk filled");
    let named: u64 = err
        .split_once("the last durable event is ")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no durable event named: {err}"));
    assert_eq!(named, printed, "{err}");
    assert!(err.contains("--resume"), "{err}");
    // Everything up to it is there.
    let out = fswal(&["verify", "--json", p(&dir)]);
    let report = last_json(&out);
    assert_eq!(report["first_event_id"], 1, "{report}");
    assert!(
        report["last_event_id"].as_u64().is_some_and(|l| l >= named),
        "{report}"
    );
}

//! Guards when progress bars are drawn on stderr: on a terminal for `record`, `verify`,
//! `dump` to a file, `salvage` and `crashsim`; never with `--json`, never for `dump`
//! onto the terminal or `record --print-durable` there, and never without a terminal
//! (no escape codes in what a pipe or a log receives). The terminal is a pseudo
//! terminal that util-linux's `script` gives the command; without `script`, the tests
//! that need one say so and skip.

mod common;

use common::*;

use std::process::{Command, Stdio};

/// What a bar or spinner redraw leaves in its output: indicatif clears the line
/// before drawing it again.
const CLEAR_LINE: &str = "\x1b[2K";

/// Runs the shell command `command` with stdout and stderr on a pseudo terminal and
/// returns all it printed there, or `None` after saying why the test skips.
fn on_terminal(command: &str) -> Option<String> {
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", command, "/dev/null"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.code().is_some() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(!text.contains("panicked"), "{command}: {text}");
            Some(text)
        }
        Ok(out) => panic!("{command}: {:?}", out.status),
        Err(e) => {
            let _ = std::io::Write::write_fmt(
                &mut std::io::stderr(),
                format_args!("skipping: no pseudo terminal without util-linux's script ({e})\n"),
            );
            None
        }
    }
}

#[test]
fn long_work_shows_a_bar_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let fswal = FSWAL;
    let wal = p(&dir);
    let Some(text) = on_terminal(&format!(
        "{fswal} record --dir {wal} --events 100000 --blocks-per-segment 16"
    )) else {
        return;
    };
    assert!(text.contains("recording ["), "{text:?}");
    assert!(text.contains("events ("), "{text:?}");
    // The bar is cleared before the result is printed.
    assert!(text.contains("recorded 100000 events"), "{text:?}");

    let text = on_terminal(&format!("{fswal} verify {wal}")).expect("script ran before");
    assert!(text.contains("verifying"), "{text:?}");
    assert!(text.contains("ok: "), "{text:?}");

    let file = p(&tmp.path().join("events.jsonl")).to_owned();
    let text = on_terminal(&format!("{fswal} dump {wal} > {file}")).expect("script ran before");
    assert!(text.contains("dumping ["), "{text:?}");

    let new = p(&tmp.path().join("salvaged")).to_owned();
    let text = on_terminal(&format!("{fswal} salvage {wal} {new}")).expect("script ran before");
    assert!(text.contains("salvaging ["), "{text:?}");

    let text = on_terminal(&format!("{fswal} crashsim --events 1")).expect("script ran before");
    assert!(text.contains("crashsim: 1 events"), "{text:?}");
}

#[test]
fn no_bar_with_json_onto_the_terminal_s_own_output_or_without_a_terminal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    record_small(&dir, 100_000);
    let fswal = FSWAL;
    let wal = p(&dir);
    let new = p(&tmp.path().join("salvaged")).to_owned();
    let other = p(&tmp.path().join("other")).to_owned();
    for command in [
        format!("{fswal} verify --json {wal}"),
        format!("{fswal} salvage --json {wal} {new}"),
        format!("{fswal} crashsim --json --events 1"),
        // Events on the terminal: a bar would be drawn over them.
        format!("{fswal} dump --limit 100000 {wal}"),
        format!(
            "{fswal} record --dir {other} --events 100000 --blocks-per-segment 16 --print-durable"
        ),
    ] {
        let Some(text) = on_terminal(&command) else {
            return;
        };
        assert!(!text.contains(CLEAR_LINE), "{command}: {text:?}");
        for title in [
            "recording [",
            "verifying",
            "dumping [",
            "salvaging [",
            "crashsim:",
        ] {
            assert!(!text.contains(title), "{command}: {text:?}");
        }
    }
}

#[test]
fn nothing_but_results_reach_a_pipe() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let out = fswal(&[
        "record",
        "--dir",
        p(&dir),
        "--events",
        "100000",
        "--blocks-per-segment",
        "16",
    ]);
    assert_eq!(code(&out), 0);
    assert_eq!(stderr(&out), "");
    let new = tmp.path().join("salvaged");
    for args in [
        vec!["verify", p(&dir)],
        vec!["dump", p(&dir)],
        vec!["salvage", p(&dir), p(&new)],
    ] {
        let out = fswal(&args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
        assert!(!stdout(&out).contains('\x1b'), "{args:?}");
    }
}

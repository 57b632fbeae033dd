//! Guards the `fswal ship` and `fswal follow` contracts against a real three-node
//! JetStream cluster: a recorded log shipped and followed verifies strictly with every
//! event in the replica, with byte-identical segments; a stream that does not exist is
//! a one-line error.

mod common;

use common::fswal;
use fswal_replicate::testing::{cluster_or_skip, wal_files};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ship_then_follow_builds_a_replica_that_verifies_with_every_event() {
    let Some(cluster) = cluster_or_skip(3) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let primary = tmp.path().join("primary");
    let replica = tmp.path().join("replica");
    let (p, r) = (
        primary.to_str().expect("utf-8"),
        replica.to_str().expect("utf-8"),
    );
    let urls = cluster.urls();
    let out = fswal(&[
        "record",
        "--dir",
        p,
        "--events",
        "200000",
        "--blocks-per-segment",
        "256",
        "--sync-every",
        "30000",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fswal(&["ship", "--dir", p, "--nats", &urls, "--stream", "cli"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("holds events through 200000"),
        "{}",
        text(&out)
    );
    let out = fswal(&[
        "follow", "--nats", &urls, "--stream", "cli", "--dir", r, "--until", "200000", "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned();
    assert!(last.contains("\"durable_event_id\":200000"), "{last}");
    let out = fswal(&["verify", r]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("200000 events"), "{}", text(&out));
    assert_eq!(wal_files(&primary), wal_files(&replica));
    // Shipping again publishes nothing.
    let out = fswal(&["ship", "--dir", p, "--nats", &urls, "--stream", "cli"]);
    assert!(
        text(&out).contains("shipped 0 message(s)"),
        "{}",
        text(&out)
    );
}

#[test]
fn following_a_stream_that_does_not_exist_is_a_one_line_error() {
    let Some(cluster) = cluster_or_skip(1) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path().join("replica");
    let out = fswal(&[
        "follow",
        "--nats",
        &cluster.urls(),
        "--stream",
        "absent",
        "--dir",
        r.to_str().expect("utf-8"),
        "--until",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("absent"), "{err}");
}

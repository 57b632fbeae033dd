//! Guards durability on a real file system: `fswal record` on a loop-mounted ext4 (and
//! XFS) image is killed at chosen system calls, above all between a sealed segment
//! header's write and its sync; restarted on the still-mounted file system; then the
//! power is cut by copying the loop device's backing image. On the copy every event
//! reported durable must be recovered and `--resume` must continue the log.
//!
//! Why a copy of the backing file is a power cut: a loop device writes what it receives
//! into its backing file, so reading that file gives exactly what the device received,
//! while the mounted file system's dirty page cache (written, not yet written back) is
//! not in it. The copy is taken within seconds of the kill, well inside the kernel's
//! 30 s dirty expiry, so what only a sync would have written back is missing from it.
//!
//! Each crash point gets a fresh file system: one point's leftovers cannot mask
//! another's. The test skips, saying so on stderr, without root, loop devices,
//! `losetup`, `mount`, `mkfs.ext4` or a working `strace`; the XFS half also without
//! `mkfs.xfs`. Loop devices and mounts are released by guards, also on failure.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fswal_backends::testing::{LoopDevice, say};
use fswal_core::reference::reference_event;
use serde_json::Value;

const FSWAL: &str = env!("CARGO_BIN_EXE_fswal");

/// The ext4 image: small, sparse, and enough for a few segments of 16 blocks.
const EXT4_IMAGE_BYTES: u64 = 128 << 20;

/// The XFS image: `mkfs.xfs` (5.19 on) refuses a file system below 300 MB. It is sparse,
/// so the copy reads only what was written.
const XFS_IMAGE_BYTES: u64 = 320 << 20;

/// Block slots per segment, for every run (a directory does not keep it: a run
/// without it would create 64 MiB segments): 16 blocks of 256 events, 4096 events a
/// segment.
const BLOCKS_PER_SEGMENT: u32 = 16;

/// Events the crashed run records: segments 0 and 1 are sealed by rotation (at events
/// 4096 and 8192) and segment 2 by the closing seal, so three seals can be interrupted.
const CRASH_EVENTS: u64 = 10_000;

/// Events the restarted run appends, syncing after every `RESTART_SYNC_EVERY`.
const RESTART_EVENTS: u64 = 100;

/// How often the restarted run syncs, each sync reported durable.
const RESTART_SYNC_EVERY: u64 = 10;

/// Events appended to the copy after the power cut, to show that the log continues.
const CONTINUE_EVENTS: u64 = 50;

/// A power cut later than this after the kill may have let the kernel write back what
/// the crash left only in the page cache (dirty pages expire after 30 s); it is said.
const POWER_CUT_PROMPT: Duration = Duration::from_secs(20);

/// Attempts at unmounting a file system that is briefly busy, and the pause between.
const UMOUNT_ATTEMPTS: u32 = 20;
const UMOUNT_PAUSE: Duration = Duration::from_millis(100);

/// The signal strace delivers, and then dies of itself (Linux numbering).
const SIGKILL: i32 = 9;

/// Lines of a dump read, at most: more than any log this test writes holds.
const DUMP_LINES_MAX: usize = 100_000;

/// The file systems under test.
#[derive(Clone, Copy, Debug)]
enum Fs {
    Ext4,
    Xfs,
}

impl Fs {
    fn name(self) -> &'static str {
        match self {
            Fs::Ext4 => "ext4",
            Fs::Xfs => "xfs",
        }
    }

    fn mkfs(self) -> &'static str {
        match self {
            Fs::Ext4 => "mkfs.ext4",
            Fs::Xfs => "mkfs.xfs",
        }
    }

    fn image_bytes(self) -> u64 {
        match self {
            Fs::Ext4 => EXT4_IMAGE_BYTES,
            Fs::Xfs => XFS_IMAGE_BYTES,
        }
    }

    /// mkfs arguments before the image. ext4: 4 KiB blocks as on any production volume
    /// (mke2fs picks 1 KiB for a file system this small), and the inode tables and the
    /// journal written now rather than by a background thread while the test runs.
    fn mkfs_args(self) -> &'static [&'static str] {
        match self {
            Fs::Ext4 => &[
                "-q",
                "-F",
                "-b",
                "4096",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ],
            Fs::Xfs => &["-q", "-f"],
        }
    }

    /// Mount options for the file system under test. ext4 commits its journal every 5 s
    /// by default; a commit while the image is being copied could make the copy mix
    /// writes from both sides of a flush, which no power cut can leave. With a 60 s
    /// interval the device is quiet once the processes have exited (everything they
    /// synced is committed; what they did not sync waits for writeback, 30 s), so the
    /// copy is one moment. XFS forces its log only on demand or every 30 s.
    fn mount_args(self) -> &'static [&'static str] {
        match self {
            Fs::Ext4 => &["-o", "commit=60"],
            Fs::Xfs => &[],
        }
    }

    /// Mount options for the power-cut copy: it has the original's UUID, which XFS
    /// refuses to mount twice without `nouuid`.
    fn copy_mount_args(self) -> &'static [&'static str] {
        match self {
            Fs::Ext4 => &[],
            Fs::Xfs => &["-o", "nouuid"],
        }
    }
}

/// Where the crashed run is killed: at entry to the `when`-th call of `syscall`, counted
/// only over calls on segment `segment`'s file when it is given (`strace -P`).
#[derive(Clone, Copy, Debug)]
struct CrashPoint {
    syscall: &'static str,
    segment: Option<u32>,
    when: u32,
    what: &'static str,
}

impl CrashPoint {
    fn label(&self) -> String {
        match self.segment {
            Some(s) => format!("{}#{} on {}", self.syscall, self.when, segment_name(s)),
            None => format!("{}#{}", self.syscall, self.when),
        }
    }
}

// How the crash points are chosen (checked with `strace -f` on each backend).
//
// The file backend hands each segment's writes to a write thread of its own, which
// does, for a segment filled without intermediate syncs: `pwrite` of the blocks,
// `sync_file_range(WRITE)` of them, `pwrite` of the sealed header,
// `sync_file_range(WRITE)` of it; the main thread meanwhile calls `fdatasync` after the
// blocks and after the header. strace counts `when=` per thread, so every segment's
// write thread would reach its second `sync_file_range` with the same count: `-P`
// restricts the counting (and the injection) to one segment's file, which picks the
// seal. `sync_file_range#2` on a segment is the window of defect 1: the sealed header
// is in the page cache and nothing has started writing it back. `sync_file_range#1` is
// the moment before the seal (blocks written, none synced), and `fdatasync#2` the
// moment after the header's writeback started and before its sync returned. The
// creation of a segment syncs its open header under the temporary name
// `FS.%08u.wal.tmp`, which `-P` does not match, so the counts are the same for every
// segment.
//
// The mmap backend runs on one thread and calls `msync` twice per segment: the blocks
// (copied into the mapping) and then the sealed header. `msync` names no file, so `-P`
// cannot select it; with one thread the plain count does: odd counts are the moments
// before each seal, even counts the sealed header written into the mapping and not
// yet synced, for segments 0, 1 and 2.
//
// The direct backend writes with O_DIRECT on one thread: `pwrite` of the blocks,
// `fdatasync`, `pwrite` of the sealed header, `fdatasync`, per segment (selected by
// `-P` as for the file backend). Its header reaches the device with its `pwrite`, so
// it has no page-cache window; it is run as a control.

const FILE_POINTS: &[CrashPoint] = &[
    CrashPoint {
        syscall: "sync_file_range",
        segment: Some(0),
        when: 1,
        what: "segment 0's blocks written, not yet synced, before its seal",
    },
    CrashPoint {
        syscall: "sync_file_range",
        segment: Some(0),
        when: 2,
        what: "segment 0's sealed header written, neither written back nor synced",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(0),
        when: 2,
        what: "segment 0's sealed header being written back, not yet synced",
    },
    CrashPoint {
        syscall: "sync_file_range",
        segment: Some(1),
        when: 1,
        what: "segment 1's blocks written, not yet synced, before its seal",
    },
    CrashPoint {
        syscall: "sync_file_range",
        segment: Some(1),
        when: 2,
        what: "segment 1's sealed header written, neither written back nor synced",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(1),
        when: 2,
        what: "segment 1's sealed header being written back, not yet synced",
    },
    CrashPoint {
        syscall: "sync_file_range",
        segment: Some(2),
        when: 2,
        what: "segment 2's sealed header (the closing seal) written, neither written back nor synced",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(2),
        when: 2,
        what: "segment 2's sealed header (the closing seal) being written back, not yet synced",
    },
];

const MMAP_POINTS: &[CrashPoint] = &[
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 1,
        what: "segment 0's blocks in the mapping, not yet synced, before its seal",
    },
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 2,
        what: "segment 0's sealed header in the mapping, not yet synced",
    },
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 3,
        what: "segment 1's blocks in the mapping, not yet synced, before its seal",
    },
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 4,
        what: "segment 1's sealed header in the mapping, not yet synced",
    },
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 5,
        what: "segment 2's blocks in the mapping, not yet synced, before the closing seal",
    },
    CrashPoint {
        syscall: "msync",
        segment: None,
        when: 6,
        what: "segment 2's sealed header (the closing seal) in the mapping, not yet synced",
    },
];

const DIRECT_POINTS: &[CrashPoint] = &[
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(0),
        when: 2,
        what: "segment 0's sealed header written with O_DIRECT, not yet synced",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(1),
        when: 1,
        what: "segment 1's blocks written with O_DIRECT, not yet synced, before its seal",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(1),
        when: 2,
        what: "segment 1's sealed header written with O_DIRECT, not yet synced",
    },
    CrashPoint {
        syscall: "fdatasync",
        segment: Some(2),
        when: 2,
        what: "segment 2's sealed header (the closing seal) written with O_DIRECT, not yet synced",
    },
];

fn segment_name(index: u32) -> String {
    format!("FS.{index:08}.wal")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The tools the test runs, found on `PATH` or in the sbin directories (a root shell's
/// `PATH` may lack them).
struct Tools {
    strace: PathBuf,
    mount: PathBuf,
    umount: PathBuf,
    cp: PathBuf,
    mkfs: PathBuf,
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether this process runs as root (effective uid 0), from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The tools for `fs`, or why the test cannot run here.
fn tools(fs: Fs) -> Result<Tools, String> {
    if !is_root() {
        return Err("not root (loop devices and mounts need root)".into());
    }
    let need = |name: &str| {
        find_tool(name).ok_or_else(|| {
            let hint = match name {
                "strace" => " (apt-get install strace)",
                "mkfs.ext4" => " (apt-get install e2fsprogs)",
                "mkfs.xfs" => " (apt-get install xfsprogs)",
                _ => "",
            };
            format!("{name} not found{hint}")
        })
    };
    // `LoopDevice` runs `losetup` itself.
    need("losetup")?;
    let tools = Tools {
        strace: need("strace")?,
        mount: need("mount")?,
        umount: need("umount")?,
        cp: need("cp")?,
        mkfs: need(fs.mkfs())?,
    };
    // strace needs ptrace, which a container may forbid.
    let true_path = find_tool("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
    let probe = Command::new(&tools.strace)
        .args(["-f", "-qq", "-o", "/dev/null"])
        .arg(true_path)
        .output()
        .map_err(|e| format!("strace: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "strace does not run here: {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(tools)
}

/// Runs `cmd`, returning its output, or a one-line error if it could not start.
fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))
}

/// Runs `cmd` and requires success.
fn run_ok(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = run(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what}: {}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// A file system mounted from a loop device: unmounted, then detached, when dropped.
struct Mounted {
    mountpoint: PathBuf,
    umount: PathBuf,
    // Dropped after `drop` below has unmounted: detaches the loop device.
    _device: LoopDevice,
}

impl Mounted {
    /// Attaches `image` and mounts it on `mountpoint` (created) with `args`.
    fn new(tools: &Tools, image: &Path, mountpoint: &Path, args: &[&str]) -> Result<Self, String> {
        let device = LoopDevice::attach(image)?;
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        run_ok(
            Command::new(&tools.mount)
                .args(args)
                .arg(device.path())
                .arg(mountpoint),
            &format!("mount {}", device.path().display()),
        )?;
        Ok(Self {
            mountpoint: mountpoint.to_path_buf(),
            umount: tools.umount.clone(),
            _device: device,
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Bounded retries: a process that just exited may still hold the mount briefly.
        for _ in 0..UMOUNT_ATTEMPTS {
            let done = Command::new(&self.umount).arg(&self.mountpoint).output();
            if done.as_ref().is_ok_and(|out| out.status.success()) {
                return;
            }
            std::thread::sleep(UMOUNT_PAUSE);
        }
        // Last resort, so that the loop device can still go: a lazy unmount detaches the
        // file system now and releases it when it is no longer busy.
        say(format_args!(
            "warning: {} stayed busy; unmounting it lazily\n",
            self.mountpoint.display()
        ));
        let _ = Command::new(&self.umount)
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}

/// Makes a fresh file system of type `fs` in the image file `image`.
fn make_fs(tools: &Tools, fs: Fs, image: &Path) -> Result<(), String> {
    File::create(image)
        .and_then(|f| f.set_len(fs.image_bytes()))
        .map_err(|e| format!("{}: {e}", image.display()))?;
    run_ok(
        Command::new(&tools.mkfs).args(fs.mkfs_args()).arg(image),
        fs.mkfs(),
    )?;
    Ok(())
}

/// Copies the backing image `image` to `copy`: what the device had received, and
/// nothing that was only in the mounted file system's page cache.
fn cut_power(tools: &Tools, image: &Path, copy: &Path) -> Result<(), String> {
    run_ok(
        Command::new(&tools.cp)
            .arg("--sparse=always")
            .arg(image)
            .arg(copy),
        "cp of the device image",
    )?;
    Ok(())
}

/// The `durable N` ids a `--print-durable` run printed, then the `durable through event
/// N` of its summary line (also an acknowledgment). Only complete lines count: a killed
/// process may have left the last one unfinished.
fn acknowledged(stdout: &[u8]) -> Vec<u64> {
    let text = String::from_utf8_lossy(stdout);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|line| {
            line.strip_prefix("durable ")
                .or_else(|| line.rsplit_once("durable through event ").map(|(_, n)| n))
                .and_then(|n| n.trim().parse().ok())
        })
        .collect()
}

/// What a log on the copy holds, as `verify` and `dump` saw it.
struct LogState {
    status: String,
    last_event_id: u64,
    open_segment: bool,
}

/// Checks the log in `dir` (read with `backend`): `verify --json` says `ok`, or
/// `truncated` when the cut lies past every acknowledged event; it holds events
/// 1..=last with no gap, the reference stream's, and `last` is at least every id in
/// `acknowledged`. `dump` must agree with `verify`.
///
/// Why `truncated` is accepted: it is a problem with nothing valid after it, the torn
/// tail a crash may leave of writes no sync covered. Those were never acknowledged, so
/// losing them breaks no promise, as long as every acknowledged event precedes the
/// cut (which the checks on `last` and on the dump assert). `corrupt` (valid data after
/// the problem) never is: it is what defect 1 leaves, an open segment followed by
/// another, and recovery refuses it.
fn check_log(dir: &Path, backend: &str, acknowledged: &[u64]) -> Result<LogState, String> {
    let out = run(Command::new(FSWAL).args(["verify", "--json", "--backend", backend, p(dir)]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "verify printed no JSON ({e}): {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let status = v["status"].as_str().unwrap_or("?").to_string();
    let last = v["last_event_id"].as_u64().unwrap_or(0);
    let events = v["events"].as_u64().unwrap_or(0);
    let acked_max = acknowledged.iter().copied().max().unwrap_or(0);
    if status != "ok" && status != "truncated" {
        return Err(format!("verify says {status}: {v}"));
    }
    if last < acked_max {
        return Err(format!(
            "event {acked_max} was reported durable, but the log ends at {last} ({status}): {v}"
        ));
    }
    if events != last || (events > 0 && v["first_event_id"] != 1) {
        return Err(format!("the log is not events 1..={last}: {v}"));
    }

    let out = run(Command::new(FSWAL).args(["dump", "--backend", backend, p(dir)]))?;
    let dump_ok = out.status.success() || (status == "truncated" && out.status.code() == Some(1));
    if !dump_ok {
        return Err(format!(
            "dump: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut ids = BTreeSet::new();
    let dump = String::from_utf8_lossy(&out.stdout);
    for (n, line) in dump.lines().take(DUMP_LINES_MAX).enumerate() {
        let e: Value =
            serde_json::from_str(line).map_err(|err| format!("dump line {n}: {err}: {line}"))?;
        let id = e["event_id"].as_u64().unwrap_or(0);
        let want = reference_event(id);
        let fields_match = id != 0
            && e["timestamp"].as_u64() == Some(want.timestamp())
            && e["price"].as_i64() == Some(want.price())
            && e["quantity"].as_i64() == Some(want.quantity())
            && e["user_id"].as_u64() == Some(u64::from(want.user_id()))
            && e["order_id"].as_u64() == Some(u64::from(want.order_id()));
        if !fields_match || id != n as u64 + 1 {
            return Err(format!(
                "dump line {n} is not reference event {}: {line}",
                n + 1
            ));
        }
        ids.insert(id);
    }
    if ids.len() as u64 != last {
        return Err(format!(
            "dump printed {} events, verify counted {last}",
            ids.len()
        ));
    }
    if let Some(missing) = acknowledged.iter().find(|id| !ids.contains(id)) {
        return Err(format!(
            "event {missing} was reported durable and is not in the dump"
        ));
    }
    Ok(LogState {
        status,
        last_event_id: last,
        open_segment: v["open_segment"].as_bool().unwrap_or(false),
    })
}

/// The first 64 bytes of every segment file in `dir`, by file name.
fn segment_headers(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("FS.") && name.ends_with(".wal") {
            let mut head = std::fs::read(entry.path()).unwrap_or_default();
            head.truncate(64);
            out.push((name, head));
        }
    }
    out.sort();
    out
}

/// Whether a 64-byte segment header is sealed: an open one has a zero checksum.
fn is_sealed(head: &[u8]) -> bool {
    head.get(48..56).is_some_and(|c| c.iter().any(|&b| b != 0))
}

/// The segment headers that are sealed in the page cache (`cached`) but not on the
/// device (`device`): what the crash left for a power cut to revert.
fn cache_only_seals(cached: &[(String, Vec<u8>)], device: &[(String, Vec<u8>)]) -> Vec<String> {
    cached
        .iter()
        .filter(|(name, head)| {
            is_sealed(head)
                && !device
                    .iter()
                    .any(|(other, on_device)| other == name && is_sealed(on_device))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Why a crash point gave no report.
enum PointError {
    /// The environment could not set it up (no loop device, no mount): not fswal's doing.
    Setup(String),
    /// It failed before the restart: the kill did not land, or the image taken at the
    /// kill already lacks an acknowledged event.
    Failed(String),
}

/// What one crash point saw once its kill had landed.
struct PointReport {
    /// The segments whose header the kill left sealed in the page cache only.
    cache_only: Vec<String>,
    /// One line on what happened, or why the point failed.
    outcome: Result<String, String>,
}

/// Runs one crash point on a fresh file system.
fn run_point(
    tools: &Tools,
    fs: Fs,
    backend: &str,
    point: &CrashPoint,
) -> Result<PointReport, PointError> {
    let setup = PointError::Setup;
    let failed = PointError::Failed;
    let tmp = tempfile::tempdir().map_err(|e| setup(format!("tempdir: {e}")))?;
    let image = tmp.path().join("fs.img");
    make_fs(tools, fs, &image).map_err(setup)?;
    let mounted =
        Mounted::new(tools, &image, &tmp.path().join("m"), fs.mount_args()).map_err(setup)?;
    // strace -P compares the paths it resolves from descriptors, which are canonical.
    let m = mounted
        .mountpoint
        .canonicalize()
        .map_err(|e| setup(format!("{}: {e}", mounted.mountpoint.display())))?;
    let wal = m.join("w");

    // Crash 1: killed at the chosen system call.
    let mut strace = Command::new(&tools.strace);
    strace.args(["-f", "-qq", "-o", "/dev/null"]);
    if let Some(segment) = point.segment {
        strace.arg("-P").arg(wal.join(segment_name(segment)));
    }
    strace
        .arg("-e")
        .arg(format!("trace={}", point.syscall))
        .arg("-e")
        .arg(format!(
            "inject={}:signal=KILL:when={}",
            point.syscall, point.when
        ))
        .arg(FSWAL)
        .args(["record", "--dir", p(&wal), "--backend", backend])
        .args(["--events", &CRASH_EVENTS.to_string()])
        .args(["--blocks-per-segment", &BLOCKS_PER_SEGMENT.to_string()])
        .arg("--print-durable");
    let crashed = run(&mut strace).map_err(failed)?;
    let killed_at = Instant::now();
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    if crashed.status.signal() != Some(SIGKILL) {
        return Err(failed(format!(
            "the kill never fired (the run ended {}): the system call sequence changed; re-derive the crash points with strace -f. {}",
            crashed.status,
            stderr.trim()
        )));
    }
    if stderr.contains("panicked") {
        return Err(failed(format!("the crashed run panicked: {stderr}")));
    }
    let acked_crash = acknowledged(&crashed.stdout);

    // What a power cut at the kill would leave; also shows whether the kill landed in
    // the window (a header sealed in the page cache and open on the device).
    let at_kill = tmp.path().join("at-kill.img");
    cut_power(tools, &image, &at_kill).map_err(failed)?;
    let cache_only = {
        let snap = Mounted::new(
            tools,
            &at_kill,
            &tmp.path().join("at-kill"),
            fs.copy_mount_args(),
        )
        .map_err(|e| failed(format!("mounting the image taken at the kill: {e}")))?;
        let on_device = segment_headers(&snap.mountpoint.join("w"));
        check_log(&snap.mountpoint.join("w"), backend, &acked_crash)
            .map_err(|e| failed(format!("on the image taken at the kill: {e}")))?;
        cache_only_seals(&segment_headers(&wal), &on_device)
    };

    let crash = Crash {
        killed_at,
        acknowledged: acked_crash,
    };
    let kill_note = if cache_only.is_empty() {
        String::new()
    } else {
        format!(
            " [at the kill sealed only in the page cache: {}]",
            cache_only.join(", ")
        )
    };
    let outcome = restart_then_cut_power(tools, fs, backend, tmp.path(), &wal, &crash)
        .map(|line| format!("{line}{kill_note}"))
        .map_err(|e| format!("{e}{kill_note}"));
    drop(mounted);
    Ok(PointReport {
        cache_only,
        outcome,
    })
}

/// What the crashed run left: when it was killed, and what it reported durable.
struct Crash {
    killed_at: Instant,
    acknowledged: Vec<u64>,
}

/// Restarts on the mounted file system in `tmp`, cuts the power (copies `tmp/fs.img`),
/// and checks the copy: every acknowledged event is there and the log continues.
fn restart_then_cut_power(
    tools: &Tools,
    fs: Fs,
    backend: &str,
    tmp: &Path,
    wal: &Path,
    crash: &Crash,
) -> Result<String, String> {
    // Restart on the mounted file system: no unmount, no sync.
    let restart = run(Command::new(FSWAL)
        .args(["record", "--dir", p(wal), "--backend", backend, "--resume"])
        .args(["--events", &RESTART_EVENTS.to_string()])
        .args(["--blocks-per-segment", &BLOCKS_PER_SEGMENT.to_string()])
        .args(["--sync-every", &RESTART_SYNC_EVERY.to_string()])
        .arg("--print-durable"))?;
    if !restart.status.success() {
        return Err(format!(
            "the restart failed ({}): {}",
            restart.status,
            String::from_utf8_lossy(&restart.stderr).trim()
        ));
    }
    let acked_restart = acknowledged(&restart.stdout);

    // The power cut.
    let copy = tmp.join("power-cut.img");
    cut_power(tools, &tmp.join("fs.img"), &copy)?;
    let cut_after = crash.killed_at.elapsed();
    let copy_mount = Mounted::new(tools, &copy, &tmp.join("power-cut"), fs.copy_mount_args())
        .map_err(|e| format!("mounting the power-cut image: {e}"))?;
    let copy_wal = copy_mount.mountpoint.join("w");
    let mut all_acked = crash.acknowledged.clone();
    all_acked.extend_from_slice(&acked_restart);
    let state = check_log(&copy_wal, backend, &all_acked)
        .map_err(|e| format!("after the power cut: {e}"))?;

    // The log continues on the copy.
    run_ok(
        Command::new(FSWAL)
            .args(["record", "--dir", p(&copy_wal), "--backend", backend])
            .args(["--resume", "--events", &CONTINUE_EVENTS.to_string()])
            .args(["--blocks-per-segment", &BLOCKS_PER_SEGMENT.to_string()]),
        "record --resume on the power-cut copy",
    )
    .map_err(|e| format!("after the power cut: {e}"))?;
    let after = check_log(&copy_wal, backend, &all_acked)
        .map_err(|e| format!("after continuing on the power-cut copy: {e}"))?;
    let want = state.last_event_id + CONTINUE_EVENTS;
    if after.status != "ok" || after.open_segment || after.last_event_id != want {
        return Err(format!(
            "after continuing on the power-cut copy: {} ending at {} (open segment: {}), want ok ending at {want}, sealed",
            after.status, after.last_event_id, after.open_segment
        ));
    }

    let late = if cut_after > POWER_CUT_PROMPT {
        " (late: writeback may have saved what the crash left in the page cache)"
    } else {
        ""
    };
    Ok(format!(
        "acknowledged {} in the crash, {} after the restart; recovered {} ({}), continued to {want}; power cut {:.1} s after the kill{late}",
        crash.acknowledged.iter().max().unwrap_or(&0),
        acked_restart.iter().max().unwrap_or(&0),
        state.last_event_id,
        state.status,
        cut_after.as_secs_f64()
    ))
}

/// Runs every crash point of `backend` on `fs`; fails listing every point that failed.
///
/// With `window`, at least one point must have left a sealed header in the page cache
/// only: otherwise the points no longer reach the window defect 1 lives in, and the
/// test would pass without testing it.
fn crash_points(fs: Fs, backend: &str, points: &[CrashPoint], window: bool) {
    let tools = match tools(fs) {
        Ok(tools) => tools,
        Err(reason) => {
            say(format_args!(
                "skipping real_fs {}/{backend}: {reason}\n",
                fs.name()
            ));
            return;
        }
    };
    let mut failures = Vec::new();
    let mut in_window = 0usize;
    for (n, point) in points.iter().enumerate() {
        let name = format!("{}/{backend} {}", fs.name(), point.label());
        match run_point(&tools, fs, backend, point) {
            Ok(report) => {
                in_window += usize::from(!report.cache_only.is_empty());
                match report.outcome {
                    Ok(line) => say(format_args!("real_fs {name} ({}): {line}\n", point.what)),
                    Err(reason) => {
                        say(format_args!("real_fs {name} FAILED: {reason}\n"));
                        failures.push(format!("{name} ({}): {reason}", point.what));
                    }
                }
            }
            Err(PointError::Setup(reason)) if n == 0 => {
                say(format_args!(
                    "skipping real_fs {}/{backend}: cannot set up a loop-mounted {} image ({reason})\n",
                    fs.name(),
                    fs.name()
                ));
                return;
            }
            Err(PointError::Setup(reason)) => {
                failures.push(format!("{name} ({}): setup failed: {reason}", point.what));
            }
            Err(PointError::Failed(reason)) => {
                say(format_args!("real_fs {name} FAILED: {reason}\n"));
                failures.push(format!("{name} ({}): {reason}", point.what));
            }
        }
    }
    if window && in_window == 0 {
        failures.push(format!(
            "no crash point on {}/{backend} left a sealed header in the page cache only: the points no longer reach the window between a sealed header's write and its sync (re-derive them with strace -f)",
            fs.name()
        ));
    }
    let _ = std::io::stderr().flush();
    assert!(
        failures.is_empty(),
        "{} of {} crash points failed on {}/{backend}:\n{}",
        failures.len(),
        points.len(),
        fs.name(),
        failures.join("\n")
    );
}

#[test]
fn ext4_file_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Ext4, "file", FILE_POINTS, true);
}

#[test]
fn ext4_mmap_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Ext4, "mmap", MMAP_POINTS, true);
}

#[test]
fn ext4_direct_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Ext4, "direct", DIRECT_POINTS, false);
}

#[test]
fn xfs_file_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Xfs, "file", FILE_POINTS, true);
}

#[test]
fn xfs_mmap_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Xfs, "mmap", MMAP_POINTS, true);
}

#[test]
fn xfs_direct_backend_keeps_acknowledged_events_across_kill_restart_power_cut() {
    crash_points(Fs::Xfs, "direct", DIRECT_POINTS, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_reads_durable_lines_and_the_summary_but_no_torn_line() {
        let out = b"durable 10\ndurable 20\nrecorded 20 events (ids 1..=20) in w; durable through event 20\ndurable 3";
        assert_eq!(acknowledged(out), [10, 20, 20]);
        assert_eq!(acknowledged(b"durable 4096"), Vec::<u64>::new());
        assert_eq!(acknowledged(b""), Vec::<u64>::new());
    }

    #[test]
    fn a_seal_only_in_the_page_cache_is_found() {
        let open = vec![0u8; 64];
        let mut sealed = vec![0u8; 64];
        sealed[50] = 7;
        let cached = vec![
            ("FS.00000000.wal".to_string(), sealed.clone()),
            ("FS.00000001.wal".to_string(), sealed.clone()),
            ("FS.00000002.wal".to_string(), open.clone()),
        ];
        let device = vec![
            ("FS.00000000.wal".to_string(), sealed),
            ("FS.00000001.wal".to_string(), open),
        ];
        assert_eq!(cache_only_seals(&cached, &device), ["FS.00000001.wal"]);
        assert!(cache_only_seals(&device, &device).is_empty());
    }
}

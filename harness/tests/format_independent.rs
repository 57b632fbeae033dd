//! Guards against a writer bug that fswal's own replay code shares and therefore cannot
//! see: the WAL that `fswal record` writes is parsed here byte by byte with a second,
//! independent implementation of `docs/FORMAT.md` (no `fswal_core` or
//! `fswal_backends`), and every rule of that document is checked, together with its known
//! answers and the C++ recorder's vectors. The format's primitives (field readers,
//! checksums, the event, block and segment header rules) are those of
//! `fswal_scan`, itself written from the document alone; this file adds what a
//! WAL sealed by `fswal record` must also satisfy (file size, timestamps, the reference
//! stream's field values, zero slots after `block_count`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

mod common;

use fswal_scan::{
    self as scan, BLOCK_HEADER_SIZE, BLOCK_SIZE, BlockHeader, EVENT_SIZE, EVENTS_PER_BLOCK, Event,
    Hex, MAX_BLOCKS, MIN_BLOCKS, SEGMENT_HEADER_SIZE, SegmentTotals, Violation, le_u16, le_u32,
    le_u64,
};

// ---------------------------------------------------------------------------------------
// Reporting: `{file}: offset {offset}: {rule}: {what was found}`.
// ---------------------------------------------------------------------------------------

/// `offset` as the `u64` a [`Violation`] holds.
fn wide(offset: usize) -> u64 {
    u64::try_from(offset).expect("a usize fits a u64")
}

/// Panics with the file, the absolute offset, the rule and what was found.
#[track_caller]
fn fail(file: &str, violation: &Violation) -> ! {
    panic!("{file}: {violation}")
}

/// The value of `result`, or a panic naming the file and the violation.
#[track_caller]
fn check<T>(file: &str, result: Result<T, Violation>) -> T {
    match result {
        Ok(value) => value,
        Err(violation) => fail(file, &violation),
    }
}

/// Asserts `found == expected`, naming the file, the absolute offset and the rule.
#[track_caller]
fn expect_eq<T: PartialEq + fmt::Debug>(
    file: &str,
    offset: usize,
    rule: &str,
    expected: T,
    found: T,
) {
    if expected != found {
        fail(
            file,
            &Violation::mismatch(wide(offset), rule, expected, found),
        );
    }
}

/// Asserts `ok`, naming the file, the absolute offset and the rule; `what` describes what
/// was found.
#[track_caller]
fn expect(file: &str, offset: usize, rule: &str, ok: bool, what: impl fmt::Display) {
    if !ok {
        fail(file, &Violation::found(wide(offset), rule, what));
    }
}

/// Asserts that `bytes[range]` is all zero, reporting the first non-zero byte.
#[track_caller]
fn expect_zero(file: &str, bytes: &[u8], start: usize, end: usize, rule: &str) {
    check(file, scan::check_zero(bytes, start, end, rule));
}

// ---------------------------------------------------------------------------------------
// The reference event stream ("Known answers").
// ---------------------------------------------------------------------------------------

/// Event `i` of the reference stream, straight from the formula of docs/FORMAT.md.
fn reference_event(i: u64) -> Event {
    scan::reference_event(i).unwrap_or_else(|| {
        panic!("reference event {i}: 7*i fits an i64 and order_id = i fits a u32 for test ids")
    })
}

/// Checks that the event slot at `bytes[offset..offset + 64]`, whose structural rules
/// (`scan::check_event`) already held, has every field equal to the reference stream's
/// event for its id. Returns the id.
fn check_reference_fields(file: &str, bytes: &[u8], offset: usize) -> u64 {
    let found = Event::decode(&bytes[offset..offset + EVENT_SIZE]);
    let want = reference_event(found.event_id);
    let id = found.event_id;
    let fields: [(&str, usize, i128, i128); 9] = [
        (
            "timestamp",
            8,
            want.timestamp.into(),
            found.timestamp.into(),
        ),
        ("price", 16, want.price.into(), found.price.into()),
        ("quantity", 24, want.quantity.into(), found.quantity.into()),
        ("user_id", 32, want.user_id.into(), found.user_id.into()),
        ("order_id", 36, want.order_id.into(), found.order_id.into()),
        ("type", 40, want.kind.into(), found.kind.into()),
        (
            "order_type",
            41,
            want.order_type.into(),
            found.order_type.into(),
        ),
        ("side", 42, want.side.into(), found.side.into()),
        ("event_id", 0, want.event_id.into(), found.event_id.into()),
    ];
    for (name, at, expected, got) in fields {
        expect_eq(
            file,
            offset + at,
            &format!("{name} of event {id} follows the reference stream formula"),
            expected,
            got,
        );
    }
    id
}

// ---------------------------------------------------------------------------------------
// The independent checker.
// ---------------------------------------------------------------------------------------

/// What the checker saw in one segment file, every rule having held.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SegmentReport {
    /// File name.
    name: String,
    /// `num_blocks` derived from the file size.
    num_blocks: usize,
    /// `event_count` of each written block, in order.
    block_event_counts: Vec<usize>,
    /// The header's `created_ts_ns`.
    created_ts_ns: u64,
    /// The header's `closed_ts_ns`.
    closed_ts_ns: u64,
}

/// What the checker saw in a WAL directory, every rule having held.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WalReport {
    /// The segments, by index.
    segments: Vec<SegmentReport>,
    /// Every event id of the WAL, in order.
    ids: Vec<u64>,
}

/// Parses a segment file name `FS.<8 digits>.wal` into its index.
fn parse_segment_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("FS.")?.strip_suffix(".wal")?;
    if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Checks every rule of docs/FORMAT.md on the sealed WAL in `dir` and returns what it holds.
/// Panics with the file, offset and rule of the first violation.
fn check_wal(dir: &Path) -> WalReport {
    let mut segments: BTreeMap<u32, (String, PathBuf)> = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let entry = entry.unwrap_or_else(|e| panic!("read_dir entry of {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("FS.") && (name.ends_with(".wal") || name.ends_with(".wal.lz4"))) {
            // Not a segment (e.g. a lock file): docs/FORMAT.md says nothing about it.
            continue;
        }
        let index = parse_segment_name(name.strip_suffix(".lz4").unwrap_or(&name)).unwrap_or_else(|| {
            panic!(
                "{}: {name}: segment file name is FS.<index>.wal with the index as 8 zero-padded decimal digits",
                dir.display()
            )
        });
        let previous = segments.insert(index, (name.clone(), entry.path()));
        assert!(
            previous.is_none(),
            "{}: {name}: duplicate segment index {index}",
            dir.display()
        );
    }
    assert!(
        !segments.is_empty(),
        "{}: holds no FS.<index>.wal segment file",
        dir.display()
    );

    let mut report = WalReport {
        segments: Vec::new(),
        ids: Vec::new(),
    };
    let mut files: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut last_id = 0u64;
    for (position, (index, (name, path))) in segments.iter().enumerate() {
        let expected_index = u32::try_from(position).expect("fewer than 2^32 segments");
        assert_eq!(
            *index,
            expected_index,
            "{}: segment indices must be contiguous from 0: expected FS.{expected_index:08}.wal, found {name}",
            dir.display()
        );
        let bytes = if name.ends_with(".lz4") {
            reference_lz4_decompress(path)
        } else {
            fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        };
        report.segments.push(check_segment(
            name,
            *index,
            &bytes,
            &mut last_id,
            &mut report.ids,
        ));
        files.insert(*index, bytes);
    }

    // Every rule held, so the valid-prefix scanner (fswal's strict replay, written from
    // the document) accepts everything, up to the last block of the last segment.
    let prefix = scan::valid_prefix(&files);
    let last = report.segments.last().expect("at least one segment");
    let last_index = u32::try_from(report.segments.len() - 1).expect("fewer than 2^32 segments");
    let last_slot = u32::try_from(last.block_event_counts.len()).expect("at most 524288 blocks");
    assert!(
        prefix.stop.is_none()
            && prefix.event_ids == report.ids
            && prefix.tail == Some((last_index, last_slot))
            && prefix.tail_sealed,
        "{}: the valid-prefix scanner disagrees with the checker: stop {:?}, {} events, tail {:?} (sealed: {}); expected no stop, {} events, tail ({last_index}, {last_slot}) sealed",
        dir.display(),
        prefix.stop.as_ref().map(ToString::to_string),
        prefix.event_ids.len(),
        prefix.tail,
        prefix.tail_sealed,
        report.ids.len()
    );
    report
}

/// Checks one sealed segment file; `last_id` carries the last event id across segments (0
/// before the first event).
fn check_segment(
    name: &str,
    index: u32,
    bytes: &[u8],
    last_id: &mut u64,
    ids: &mut Vec<u64>,
) -> SegmentReport {
    // File size: 64 + num_blocks * 16448, 16 <= num_blocks <= 524288.
    let len = bytes.len();
    expect(
        name,
        0,
        "file size is 64 + num_blocks * 16448",
        len >= SEGMENT_HEADER_SIZE && (len - SEGMENT_HEADER_SIZE) % BLOCK_SIZE == 0,
        format!("size {len}"),
    );
    let num_blocks = (len - SEGMENT_HEADER_SIZE) / BLOCK_SIZE;
    expect(
        name,
        0,
        "16 <= num_blocks <= 524288",
        (MIN_BLOCKS..=MAX_BLOCKS).contains(&num_blocks),
        format!("num_blocks {num_blocks} (size {len})"),
    );

    // Segment header: magic (bytes 53 46), version, header_size, checksum, segment_index
    // and totals that can be true.
    let header = check(name, scan::check_segment_header(bytes, index));
    let h = &bytes[0..SEGMENT_HEADER_SIZE];
    // `fswal record` seals what it writes: an unfinalized header (checksum 0), which the
    // format allows for a crashed writer's last segment, breaks the checksum rule here.
    expect_eq(
        name,
        48,
        "segment header checksum = XXH64(bytes[56..64], seed XXH64(bytes[0..48], 0))",
        Hex(scan::segment_header_checksum(h)),
        Hex(header.checksum),
    );
    let (created_ts_ns, closed_ts_ns) = (header.created_ts_ns, header.closed_ts_ns);
    expect(
        name,
        40,
        "a sealed segment has closed_ts_ns != 0",
        closed_ts_ns != 0,
        "closed_ts_ns 0 (unfinalized header)",
    );
    expect(
        name,
        32,
        "created_ts_ns != 0",
        created_ts_ns != 0,
        "created_ts_ns 0",
    );
    expect(
        name,
        32,
        "created_ts_ns <= closed_ts_ns",
        created_ts_ns <= closed_ts_ns,
        format!("created_ts_ns {created_ts_ns} > closed_ts_ns {closed_ts_ns}"),
    );
    let block_count = usize::try_from(header.block_count).expect("a u32 fits a usize");
    expect(
        name,
        8,
        "block_count <= num_blocks",
        block_count <= num_blocks,
        format!("block_count {block_count}, num_blocks {num_blocks}"),
    );

    // Blocks.
    let mut totals = SegmentTotals::default();
    let mut block_event_counts = Vec::with_capacity(block_count);
    for k in 0..block_count {
        let block = check_block(name, bytes, k, totals.last_chained_checksum, last_id, ids);
        totals.add(&block);
        block_event_counts.push(block.events());
    }

    // Sealed-header totals agree with the blocks.
    check(name, scan::check_sealed_totals(&header, &totals));

    // Unwritten block slots are zero.
    for k in block_count..num_blocks {
        let start = SEGMENT_HEADER_SIZE + k * BLOCK_SIZE;
        expect_zero(
            name,
            bytes,
            start,
            start + BLOCK_SIZE,
            &format!("block slot {k} at or after block_count {block_count} is entirely zero"),
        );
    }

    SegmentReport {
        name: name.to_owned(),
        num_blocks,
        block_event_counts,
        created_ts_ns,
        closed_ts_ns,
    }
}

/// Checks block `k` of a segment: every rule of the format (`scan::check_block`: header
/// checksum, counts, ids, padding, event rules, unused slots zero, block checksum, ids
/// increasing over the whole log from `last_id`, chain link from `prev_chained`), then
/// the reference stream's field values of its events.
fn check_block(
    name: &str,
    bytes: &[u8],
    k: usize,
    prev_chained: u64,
    last_id: &mut u64,
    ids: &mut Vec<u64>,
) -> BlockHeader {
    let block = check(name, scan::check_block(bytes, k, *last_id, prev_chained));
    let events_start = SEGMENT_HEADER_SIZE + k * BLOCK_SIZE + BLOCK_HEADER_SIZE;
    for j in 0..block.events() {
        let id = check_reference_fields(name, bytes, events_start + j * EVENT_SIZE);
        ids.push(id);
    }
    *last_id = block.last_event_id;
    block
}

// ---------------------------------------------------------------------------------------
// Running the binary.
// ---------------------------------------------------------------------------------------

/// Whether the reference `lz4` command is here. Without it the tests that need it say
/// so and skip, unless `FSWAL_REQUIRE_LZ4` is set (CI sets it), when they fail.
fn lz4_available() -> bool {
    let found = Command::new("lz4")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("FSWAL_REQUIRE_LZ4").is_none(),
            "FSWAL_REQUIRE_LZ4 is set and the lz4 command is not on PATH"
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"skipping: lz4 not found\n");
    }
    found
}

/// The segment a `.wal.lz4` file holds, as the reference `lz4` command (not fswal)
/// decompresses it, after `lz4 -t` has accepted the file.
fn reference_lz4_decompress(path: &Path) -> Vec<u8> {
    let test = Command::new("lz4")
        .arg("-t")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run lz4 -t {}: {e}", path.display()));
    assert!(
        test.status.success(),
        "{}: lz4 -t refuses it: {}",
        path.display(),
        String::from_utf8_lossy(&test.stderr)
    );
    let out = Command::new("lz4")
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run lz4 -d {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{}: lz4 -d fails: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `fswal` with `args`.
fn fswal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fswal"))
        .args(args)
        .output()
        .expect("spawn the fswal binary")
}

/// `fswal record --dir DIR --events N [--blocks-per-segment B] [--start-id ID]`, which must
/// exit 0.
fn record(dir: &Path, events: u64, blocks: Option<u32>, start_id: Option<u64>) {
    let dir_s = dir.to_str().expect("tempdir path is UTF-8");
    let events_s = events.to_string();
    let mut args = vec!["record", "--dir", dir_s, "--events", &events_s];
    let blocks_s = blocks.map(|b| b.to_string());
    if let Some(b) = &blocks_s {
        args.extend(["--blocks-per-segment", b]);
    }
    let start_s = start_id.map(|s| s.to_string());
    if let Some(s) = &start_s {
        args.extend(["--start-id", s]);
    }
    let out = fswal(&args);
    assert!(
        out.status.success(),
        "fswal {} failed with {}: stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nanoseconds since the Unix epoch.
fn now_ns() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(d.as_nanos()).expect("the clock is before 2554")
}

/// Asserts that every segment's timestamps fall in the window the test observed.
fn assert_timestamps_within(report: &WalReport, names: &[&str], before: u64, after: u64) {
    for seg in report
        .segments
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
    {
        assert!(
            (before..=after).contains(&seg.created_ts_ns)
                && (before..=after).contains(&seg.closed_ts_ns),
            "{}: offsets 32/40: created_ts_ns {} and closed_ts_ns {} must lie within the recording window {before}..={after}",
            seg.name,
            seg.created_ts_ns,
            seg.closed_ts_ns
        );
    }
}

/// Every regular file of `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("read_dir entry of {}: {e}", dir.display())))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| {
            let bytes = fs::read(entry.path())
                .unwrap_or_else(|e| panic!("read {}: {e}", entry.path().display()));
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// The hex text of the finalized segment 0 header given in docs/FORMAT.md.
const KNOWN_SEGMENT0_HEADER_HEX: &str = concat!(
    "5346014000000000100000000010000001000000000000000010000000000000",
    "ea487b33fb14ea1813138333fb14ea18c08cfe29de72bd132aa5b97eadd2a885"
);

fn decode_hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "hex text has an even length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("valid hex digits"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[test]
fn record_output_obeys_every_format_rule() {
    let tmp = tempfile::tempdir().expect("create a tempdir");
    let dir = tmp.path().join("wal");
    let before = now_ns();
    record(&dir, 10_000, Some(16), None);
    let after = now_ns();

    let report = check_wal(&dir);

    let expected_ids: Vec<u64> = (1..=10_000).collect();
    if report.ids != expected_ids {
        let at = report
            .ids
            .iter()
            .zip(&expected_ids)
            .position(|(a, b)| a != b)
            .unwrap_or(report.ids.len().min(expected_ids.len()));
        panic!(
            "the WAL holds {} events; expected exactly ids 1..=10000 with no gap; first difference at position {at}: expected {:?}, found {:?}",
            report.ids.len(),
            expected_ids.get(at),
            report.ids.get(at)
        );
    }

    let names: Vec<&str> = report.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["FS.00000000.wal", "FS.00000001.wal", "FS.00000002.wal"],
        "10000 events at 16 blocks of 256 per segment take three segments"
    );
    for seg in &report.segments {
        assert_eq!(
            seg.num_blocks,
            16,
            "{}: file size must be 64 + 16 * 16448 = {}",
            seg.name,
            SEGMENT_HEADER_SIZE + 16 * BLOCK_SIZE
        );
    }
    let full = vec![256; 16];
    let mut last = vec![256; 7];
    last.push(16);
    assert_eq!(
        report.segments[0].block_event_counts, full,
        "FS.00000000.wal: blocks"
    );
    assert_eq!(
        report.segments[1].block_event_counts, full,
        "FS.00000001.wal: blocks"
    );
    assert_eq!(
        report.segments[2].block_event_counts, last,
        "FS.00000002.wal: 7 full blocks and one partial block of 16 events"
    );
    assert_timestamps_within(&report, &names, before, after);
}

#[test]
fn known_answers_hold_for_recorded_blocks() {
    // First, this test's own model reproduces the document's known answers: the checker
    // and the document agree before the checker judges fswal.
    let block0: Vec<u8> = (1..=256)
        .flat_map(|i| reference_event(i).encode())
        .collect();
    let block1: Vec<u8> = (257..=512)
        .flat_map(|i| reference_event(i).encode())
        .collect();
    assert_eq!(
        Hex(scan::block_checksum(&block0)),
        Hex(0x4eb8_b670_751f_0aa9),
        "model: block 0 checksum"
    );
    assert_eq!(
        Hex(scan::block_checksum(&block1)),
        Hex(0x4916_5dde_90b2_24e4),
        "model: block 1 checksum"
    );
    assert_eq!(
        Hex(scan::chained_checksum(&block1, 0x4eb8_b670_751f_0aa9)),
        Hex(0x7419_c55e_3bbd_e796),
        "model: block 1 chained checksum"
    );
    let known_header = decode_hex(KNOWN_SEGMENT0_HEADER_HEX);
    assert_eq!(
        known_header.len(),
        SEGMENT_HEADER_SIZE,
        "known header is 64 bytes"
    );
    assert_eq!(
        Hex(scan::segment_header_checksum(&known_header)),
        Hex(0x13bd_72de_29fe_8cc0),
        "model: the known segment header's checksum"
    );
    assert_eq!(
        Hex(le_u64(&known_header, 48)),
        Hex(0x13bd_72de_29fe_8cc0),
        "the known header stores its checksum at bytes 48..56"
    );

    // Then, fswal's recorded blocks.
    let tmp = tempfile::tempdir().expect("create a tempdir");
    let dir = tmp.path().join("wal");
    record(&dir, 10_000, Some(16), None);
    let name = "FS.00000000.wal";
    let bytes = fs::read(dir.join(name)).expect("read FS.00000000.wal");
    assert!(
        bytes.len() >= SEGMENT_HEADER_SIZE + 2 * BLOCK_SIZE,
        "{name}: size {} holds fewer than two blocks",
        bytes.len()
    );

    let answers: [(usize, u64, u64, u64); 2] = [
        (
            0,
            0x4eb8_b670_751f_0aa9,
            0x4eb8_b670_751f_0aa9,
            0x1a7a_8390_456f_7bc3,
        ),
        (
            1,
            0x4916_5dde_90b2_24e4,
            0x7419_c55e_3bbd_e796,
            0xde5c_bb26_86d5_c672,
        ),
    ];
    for (k, block_sum, chained, header_sum) in answers {
        let off = SEGMENT_HEADER_SIZE + k * BLOCK_SIZE;
        expect_eq(
            name,
            off + 16,
            &format!("known answer: block {k} block_checksum"),
            Hex(block_sum),
            Hex(le_u64(&bytes, off + 16)),
        );
        expect_eq(
            name,
            off + 24,
            &format!("known answer: block {k} chained_checksum"),
            Hex(chained),
            Hex(le_u64(&bytes, off + 24)),
        );
        expect_eq(
            name,
            off + 32,
            &format!("known answer: block {k} header checksum"),
            Hex(header_sum),
            Hex(le_u64(&bytes, off + 32)),
        );
    }

    for offset in (0..32).chain(56..64) {
        expect_eq(
            name,
            offset,
            "known answer: finalized segment 0 header byte (all but the clock-dependent bytes 32..56)",
            format!("{:#04x}", known_header[offset]),
            format!("{:#04x}", bytes[offset]),
        );
    }
}

#[test]
fn matches_the_cpp_recorder_vectors() {
    let Some(vectors) = common::vectors_dir("flashstrike-ref-3seg") else {
        return;
    };

    // The checker accepts what the C++ recorder wrote: it is no stricter than the format.
    let vector_report = check_wal(&vectors);
    assert_eq!(
        vector_report.ids,
        (1..=10_000).collect::<Vec<u64>>(),
        "the vectors hold events 1..=10000"
    );

    let tmp = tempfile::tempdir().expect("create a tempdir");
    let dir = tmp.path().join("wal");
    record(&dir, 10_000, Some(16), None);

    let segment_names = |d: &Path| -> Vec<String> {
        let mut names: Vec<String> = snapshot(d)
            .into_keys()
            .filter(|n| parse_segment_name(n).is_some())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        segment_names(&dir),
        segment_names(&vectors),
        "fswal wrote the same segment files as the C++ recorder"
    );
    for name in segment_names(&vectors) {
        let want =
            fs::read(vectors.join(&name)).unwrap_or_else(|e| panic!("read vector {name}: {e}"));
        let got = fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("read recorded {name}: {e}"));
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: size differs from the C++ vector: expected {}, found {}",
            want.len(),
            got.len()
        );
        let diff = (0..want.len()).find(|&i| !(32..56).contains(&i) && want[i] != got[i]);
        if let Some(offset) = diff {
            panic!(
                "{name}: offset {offset}: byte differs from the C++ recorder's vector: expected {:#04x}, found {:#04x}",
                want[offset], got[offset]
            );
        }
    }
}

#[test]
fn record_resume_continues_the_cpp_recorders_directories_by_the_format() {
    // Issue 10: each directory the C++ recorder leaves, continued by `fswal record
    // --resume`, is a WAL every segment of which follows docs/FORMAT.md exactly.
    for (name, events) in [
        ("flashstrike-ref-3seg", 10_000u64),
        ("flashstrike-mgr-crash", 10_496),
        ("flashstrike-unsealed-rotated", 10_256),
        ("flashstrike-lz4", 10_000),
    ] {
        if name.ends_with("lz4") && !lz4_available() {
            continue;
        }
        let Some(vector) = common::vectors_dir(name) else {
            continue;
        };
        let copy = copy_wal(&vector);
        let dir = copy.path();
        let out = fswal(&[
            "record",
            "--dir",
            dir.to_str().expect("utf-8"),
            "--resume",
            "--events",
            "1000",
            "--blocks-per-segment",
            "16",
        ]);
        assert!(
            out.status.success(),
            "{name}: record --resume: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = check_wal(dir);
        assert_eq!(
            report.ids,
            (1..=events + 1000).collect::<Vec<u64>>(),
            "{name}: the old events, then the new ones"
        );
    }
}

#[test]
fn compressed_segments_are_standard_lz4_frames_holding_the_exact_segment() {
    // Issue 10: every `.wal.lz4` that `record --compress` and `convert` write is a
    // standard LZ4 frame: `lz4 -t` accepts it, and what `lz4 -d` gives back follows
    // docs/FORMAT.md byte for byte, with the reference stream's events.
    if !lz4_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("create a tempdir");
    let dir = tmp.path().join("wal");
    let dir_s = dir.to_str().expect("utf-8");
    for args in [
        &[
            "record",
            "--dir",
            dir_s,
            "--events",
            "9000",
            "--blocks-per-segment",
            "16",
            "--compress",
        ][..],
        &[
            "record",
            "--dir",
            dir_s,
            "--resume",
            "--events",
            "1000",
            "--compress",
        ][..],
    ] {
        let out = fswal(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Segments only: the next one's file, prepared ahead of need, is not one yet.
    let names: Vec<String> = snapshot(&dir)
        .into_keys()
        .filter(|n| n.starts_with("FS.") && !n.ends_with(".prep"))
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.ends_with(".wal.lz4")),
        "{names:?}"
    );
    let report = check_wal(&dir);
    assert_eq!(report.ids, (1..=10_000).collect::<Vec<u64>>());

    // The containers of earlier versions, converted in place.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../backends/tests/data/fswalz4-v1");
    let copy = copy_wal(&fixture);
    let out = fswal(&["convert", copy.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = check_wal(copy.path());
    assert_eq!(report.ids, (1..=20_481).collect::<Vec<u64>>());
}

#[test]
fn partial_blocks_and_start_id() {
    let tmp = tempfile::tempdir().expect("create a tempdir");
    let dir = tmp.path().join("wal");
    let dir_text = dir.to_str().expect("tempdir path is UTF-8");

    // First run: 300 events from id 1000 -> one segment, blocks of 256 and 44.
    let before = now_ns();
    record(&dir, 300, Some(16), Some(1000));
    let after = now_ns();
    let first = check_wal(&dir);
    assert_eq!(first.segments.len(), 1, "the first run wrote one segment");
    let seg0 = &first.segments[0];
    assert_eq!(seg0.name, "FS.00000000.wal", "the first run's segment");
    assert_eq!(seg0.num_blocks, 16, "{}: 16 block slots", seg0.name);
    assert_eq!(
        seg0.block_event_counts,
        [256, 44],
        "{}: block 0 full, block 1 partial with 44 events",
        seg0.name
    );
    assert_eq!(
        first.ids,
        (1000..1300).collect::<Vec<u64>>(),
        "ids 1000..=1299"
    );
    assert_timestamps_within(&first, &["FS.00000000.wal"], before, after);

    // Second run: 5 events from id 2000 -> the sealed segment 0 stays, segment 1 starts.
    let before = now_ns();
    record(&dir, 5, None, Some(2000));
    let after = now_ns();
    let second = check_wal(&dir);
    assert_eq!(
        second.segments.len(),
        2,
        "the second run started a new segment"
    );
    assert_eq!(
        second.segments[0], first.segments[0],
        "segment 0 (sealed by the first run) is unchanged by the second"
    );
    let seg1 = &second.segments[1];
    assert_eq!(seg1.name, "FS.00000001.wal", "the second run's segment");
    assert_eq!(
        seg1.block_event_counts,
        [5],
        "{}: one partial block of 5 events",
        seg1.name
    );
    let expected: Vec<u64> = (1000..1300).chain(2000..2005).collect();
    assert_eq!(second.ids, expected, "ids 1000..=1299 then 2000..=2004");
    assert_timestamps_within(&second, &["FS.00000001.wal"], before, after);

    // Refusal: ids must keep increasing.
    let files_before = snapshot(&dir);
    let out = fswal(&[
        "record",
        "--dir",
        dir_text,
        "--events",
        "3",
        "--start-id",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "record --start-id 5 after id 2004 must exit 2; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the refusal is one line on stderr, found {}: {stderr:?}",
        lines.len()
    );
    assert!(
        lines[0].contains(dir_text),
        "the refusal names the directory {dir_text}: {:?}",
        lines[0]
    );
    let files_after = snapshot(&dir);
    assert_eq!(
        files_after.keys().collect::<Vec<_>>(),
        files_before.keys().collect::<Vec<_>>(),
        "the refused record must not add or remove files"
    );
    for (name, want) in &files_before {
        let got = &files_after[name];
        if got != want {
            let offset = want
                .iter()
                .zip(got)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(got.len()));
            panic!(
                "{name}: offset {offset}: the refused record modified the file (size {} -> {})",
                want.len(),
                got.len()
            );
        }
    }
    assert_eq!(
        check_wal(&dir),
        second,
        "the WAL is unchanged after the refusal"
    );
}

// ---------------------------------------------------------------------------------------
// The checker itself is not vacuous.
// ---------------------------------------------------------------------------------------

/// Recomputes every block's checksums (chain restarting at 0) and the segment header's
/// `last_chained_checksum` and checksum, as a writer that got the content wrong but the
/// checksums "right" would: only the structural and content rules can then catch it.
fn reseal(bytes: &mut [u8]) {
    let block_count = usize::try_from(le_u32(bytes, 8)).expect("a u32 fits a usize");
    let mut prev = 0u64;
    for k in 0..block_count {
        let off = SEGMENT_HEADER_SIZE + k * BLOCK_SIZE;
        let count = usize::from(le_u16(bytes, off + 44)).min(EVENTS_PER_BLOCK);
        let used_start = off + BLOCK_HEADER_SIZE;
        let used = &bytes[used_start..used_start + count * EVENT_SIZE];
        let (block_sum, chained) = (
            scan::block_checksum(used),
            scan::chained_checksum(used, prev),
        );
        bytes[off + 16..off + 24].copy_from_slice(&block_sum.to_le_bytes());
        bytes[off + 24..off + 32].copy_from_slice(&chained.to_le_bytes());
        let header_sum = scan::block_header_checksum(&bytes[off..off + BLOCK_HEADER_SIZE]);
        bytes[off + 32..off + 40].copy_from_slice(&header_sum.to_le_bytes());
        prev = chained;
    }
    bytes[56..64].copy_from_slice(&prev.to_le_bytes());
    let sum = scan::segment_header_checksum(&bytes[0..SEGMENT_HEADER_SIZE]);
    bytes[48..56].copy_from_slice(&sum.to_le_bytes());
}

/// Copies the segment files of `from` into a fresh tempdir.
fn copy_wal(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("create a tempdir");
    for (name, bytes) in snapshot(from) {
        if parse_segment_name(name.strip_suffix(".lz4").unwrap_or(&name)).is_some() {
            fs::write(to.path().join(&name), bytes)
                .unwrap_or_else(|e| panic!("write copy of {name}: {e}"));
        }
    }
    to
}

/// The panic message of `check_wal(dir)`, or `None` if every rule held.
fn check_wal_failure(dir: &Path) -> Option<String> {
    let result = std::panic::catch_unwind(|| check_wal(dir));
    result.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "<non-string panic>".to_owned())
    })
}

/// Offset of block `k` in a segment file.
fn block(k: usize) -> usize {
    SEGMENT_HEADER_SIZE + k * BLOCK_SIZE
}

/// Offset of event slot `j` of block `k` in a segment file.
fn event(k: usize, j: usize) -> usize {
    block(k) + BLOCK_HEADER_SIZE + j * EVENT_SIZE
}

#[test]
fn checker_rejects_each_kind_of_damage() {
    let tmp = tempfile::tempdir().expect("create a tempdir");
    let wal = tmp.path().join("wal");
    record(&wal, 10_000, Some(16), None);
    let clean = copy_wal(&wal);
    assert_eq!(
        check_wal_failure(clean.path()),
        None,
        "the unmodified copy passes"
    );

    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    // (what, file, mutation, reseal afterwards, expected text of the failure)
    let cases: Vec<(&str, &str, Mutation, bool, &str)> = vec![
        (
            "event byte flipped",
            "FS.00000000.wal",
            Box::new(|b| b[event(3, 10) + 20] ^= 1),
            false,
            "block_checksum",
        ),
        (
            "chained checksum wrong",
            "FS.00000001.wal",
            Box::new(|b| {
                b[block(1) + 24] ^= 1;
                let s = scan::block_header_checksum(&b[block(1)..block(1) + 64]);
                b[block(1) + 32..block(1) + 40].copy_from_slice(&s.to_le_bytes());
            }),
            false,
            "chained_checksum",
        ),
        (
            "block header checksum wrong",
            "FS.00000000.wal",
            Box::new(|b| b[block(2) + 33] ^= 1),
            false,
            "block 2 header checksum",
        ),
        (
            "segment header checksum wrong",
            "FS.00000002.wal",
            Box::new(|b| b[50] ^= 1),
            false,
            "segment header checksum",
        ),
        (
            "unused slot of the partial block written",
            "FS.00000002.wal",
            Box::new(|b| b[event(7, 100) + 3] = 9),
            true,
            "unused event slots",
        ),
        (
            "slot after block_count written",
            "FS.00000002.wal",
            Box::new(|b| b[block(12) + 5000] = 1),
            true,
            "at or after block_count",
        ),
        (
            "event padding non-zero",
            "FS.00000001.wal",
            Box::new(|b| b[event(4, 7) + 60] = 1),
            true,
            "event padding",
        ),
        (
            "price off by one",
            "FS.00000000.wal",
            Box::new(|b| b[event(0, 0) + 16] ^= 1),
            true,
            "price of event 1",
        ),
        (
            "side out of range",
            "FS.00000000.wal",
            Box::new(|b| b[event(5, 5) + 42] = 2),
            true,
            "side in 0..=1",
        ),
        (
            "event repeated (ids not increasing)",
            "FS.00000000.wal",
            Box::new(|b| {
                let e: Vec<u8> = b[event(1, 3)..event(1, 4)].to_vec();
                b[event(1, 5)..event(1, 6)].copy_from_slice(&e);
            }),
            true,
            "strictly increase",
        ),
        (
            "block_index wrong",
            "FS.00000001.wal",
            Box::new(|b| b[block(6) + 40] = 7),
            true,
            "block_index equals k",
        ),
        (
            "block header padding non-zero",
            "FS.00000000.wal",
            Box::new(|b| b[block(9) + 63] = 1),
            true,
            "header padding",
        ),
        (
            "block last_event_id wrong",
            "FS.00000000.wal",
            Box::new(|b| b[block(4) + 8] ^= 2),
            true,
            "last_event_id = id of events",
        ),
        (
            "header event_count wrong",
            "FS.00000001.wal",
            Box::new(|b| b[12] ^= 1),
            true,
            "header event_count",
        ),
        (
            "header unfinalized",
            "FS.00000002.wal",
            Box::new(|b| b[40..48].fill(0)),
            true,
            "closed_ts_ns != 0",
        ),
        (
            "segment_index wrong",
            "FS.00000001.wal",
            Box::new(|b| b[4] = 5),
            true,
            "segment_index matches",
        ),
        (
            "version wrong",
            "FS.00000000.wal",
            Box::new(|b| b[2] = 2),
            true,
            "version",
        ),
        (
            "file truncated",
            "FS.00000000.wal",
            Box::new(|b| b.truncate(b.len() - 1)),
            false,
            "file size",
        ),
    ];
    for (what, name, mutate, fix, needle) in &cases {
        let copy = copy_wal(&wal);
        let path = copy.path().join(name);
        let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {name}: {e}"));
        mutate(&mut bytes);
        if *fix {
            reseal(&mut bytes);
        }
        fs::write(&path, &bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        let failure = check_wal_failure(copy.path());
        let message =
            failure.unwrap_or_else(|| panic!("{what}: the checker accepted the damaged WAL"));
        assert!(
            message.contains(name) && message.contains(needle),
            "{what}: expected a failure in {name} mentioning {needle:?}, got: {message}"
        );
    }

    // A gap in the segment indices.
    let copy = copy_wal(&wal);
    fs::rename(
        copy.path().join("FS.00000001.wal"),
        copy.path().join("FS.00000003.wal"),
    )
    .expect("rename a segment");
    let message = check_wal_failure(copy.path()).expect("a gap in the segment indices is refused");
    assert!(
        message.contains("contiguous"),
        "gap in indices: got: {message}"
    );
}

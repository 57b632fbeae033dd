//! The `verify` target: replay of arbitrary and of structurally damaged segments,
//! compared with the independent scanner.
//!
//! The first input byte picks the mode:
//!
//! - even: **raw**. Byte 1: the first segment index (`% 4`). Byte 2: the number of
//!   segments (`1 + (b & 0x7f) % 3`; bit 7 leaves a missing index before the last
//!   segment). Then each segment but the last: a 3-byte little-endian length and that
//!   many bytes; the last segment takes the rest.
//! - odd: **structure-aware**. A valid log is written by `WalWriter` over a `MemStore`
//!   (byte 1: segments `1 + (b & 3) % 3`, sync interval `(b >> 2) & 7`, sealed if bit
//!   5, id gaps `b >> 6`; byte 2: event count), then byte 3 gives `1 + b % 8` mutations
//!   (see [`mutate`]; fewer if the input runs out), then a flags byte (bit 0: see
//!   [`recompute_checksums`]); every checksum of a block whose header looks used, and
//!   of a sealed segment header, is recomputed, so that only the structural rules can
//!   catch the damage.
//!
//! Either way the segments go into a `MemStore` and [`check_log`] runs; it also holds
//! the parallel fast path (`ParallelReplay::verify_fast`) to accepting only what strict
//! replay accepts, with the same summary.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use fswal_core::mem::MemStore;
use fswal_core::reference::reference_event;
use fswal_core::{Mode, ParallelReplay, Status, WalWriter, WriterConfig};
use fswal_scan::{
    self as scan, BLOCK_HEADER_SIZE, BLOCK_SIZE, EVENT_SIZE, SEGMENT_HEADER_SIZE, le_u16, le_u32,
    le_u64, valid_prefix, whole_slots,
};

use crate::input::Input;
use crate::replay::replay_checked;

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let log = if input.u8() & 1 == 0 {
        raw(&mut input)
    } else {
        structured(&mut input)
    };
    check_log(&log);
}

/// Raw mode: the segments as the input frames them.
fn raw(input: &mut Input<'_>) -> BTreeMap<u32, Vec<u8>> {
    let first = u32::from(input.u8() % 4);
    let spec = input.u8();
    let count = 1 + u32::from((spec & 0x7f) % 3);
    let gap = spec & 0x80 != 0 && count >= 2;
    let mut log = BTreeMap::new();
    for i in 0..count {
        let last = i + 1 == count;
        let bytes = if last {
            input.rest()
        } else {
            let len = input.le(3) as usize;
            input.take(len)
        };
        let index = first + i + u32::from(last && gap);
        log.insert(index, bytes.to_vec());
    }
    log
}

/// Replays `log` strictly and diagnostically over the memory backend and compares with
/// the independent scanner. Panics on any disagreement.
pub fn check_log(log: &BTreeMap<u32, Vec<u8>>) {
    let mut store = MemStore::new();
    for (&index, bytes) in log {
        store.insert_image(index, bytes.clone());
    }
    // Each step yields a segment, a block or an issue, and moves forward: a generous
    // bound on the steps of a replay that ends.
    let slots: u64 = log.values().map(|b| whole_slots(b.len()) as u64 + 2).sum();
    let span = match (log.keys().next(), log.keys().next_back()) {
        (Some(a), Some(b)) => u64::from(b - a) + 1,
        _ => 0,
    };
    let steps_max = 4 * (slots + span) + 16;

    let prefix = valid_prefix(log);
    let strict = replay_checked(&mut store, Mode::Strict, steps_max, "raw log");
    let diag = replay_checked(&mut store, Mode::Diagnostic, steps_max, "raw log");
    let ids = strict.ids();
    let s = &strict.summary;
    let context = || {
        format!(
            "strict replay: {} events (last {:?}), status {:?}, first issue {:?}, tail {:?}; \
             scanner: {} events (last {:?}), stop {:?}, tail {:?} sealed {}",
            ids.len(),
            ids.last(),
            s.status,
            s.first_issue,
            s.tail.map(|t| (t.segment, t.next_slot, t.sealed)),
            prefix.event_ids.len(),
            prefix.event_ids.last(),
            prefix.stop.as_ref().map(ToString::to_string),
            prefix.tail,
            prefix.tail_sealed,
        )
    };

    // The valid prefix: the same events, and a problem on both sides or neither.
    if ids != prefix.event_ids {
        let at = ids
            .iter()
            .zip(&prefix.event_ids)
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "strict replay and the scanner disagree on the valid prefix from event #{at}: {}",
            context()
        );
    }
    assert!(
        (s.status == Status::Ok) == prefix.stop.is_none(),
        "strict replay's status and the scanner's stop disagree: {}",
        context()
    );
    if let (Some(issue), Some(stop)) = (s.first_issue, prefix.stop.as_ref()) {
        assert!(
            issue.segment == stop.segment,
            "strict replay and the scanner stop in different segments: {}",
            context()
        );
    }
    // Where a writer would go on.
    let tail = s.tail.map(|t| (t.segment, t.next_slot));
    let tail_sealed = s.tail.is_some_and(|t| t.sealed);
    assert!(
        tail == prefix.tail && tail_sealed == prefix.tail_sealed,
        "strict replay and the scanner disagree on the tail: {}",
        context()
    );

    // The parallel fast path, on one worker in pieces of three slots: it may give up on
    // anything, but what it accepts, strict replay accepts with the same summary.
    let fast = ParallelReplay::new()
        .threads(NonZeroUsize::MIN)
        .piece_blocks(3)
        .verify_fast(&mut store)
        .expect("memory store error");
    if let Ok(summary) = fast {
        assert!(
            s.status == Status::Ok && summary == *s,
            "the fast path accepted with {summary:?}, strict replay says {s:?}: {}",
            context()
        );
    }

    // Diagnostic mode reads the same prefix, finds the same first problem, and only
    // then goes its own way.
    let d = &diag.summary;
    assert!(
        diag.events.len() >= strict.events.len()
            && diag.events[..strict.events.len()] == strict.events[..],
        "diagnostic replay does not start with strict replay's {} events ({} events, first \
         issue {:?}): {}",
        strict.events.len(),
        diag.events.len(),
        d.first_issue,
        context()
    );
    assert!(
        d.status == s.status && d.first_issue == s.first_issue,
        "diagnostic replay ({:?}, first issue {:?}) and strict replay disagree: {}",
        d.status,
        d.first_issue,
        context()
    );
}

// ---------------------------------------------------------------------------------------
// Structure-aware mode.
// ---------------------------------------------------------------------------------------

/// Block slots per segment of the logs built here.
const BLOCKS: u32 = 16;

/// Events a built log holds at most.
const EVENTS_MAX: u64 = 4 * 256 + 50;

/// Offsets of the segment header's fields.
const SEGMENT_FIELDS: [usize; 12] = [0, 2, 3, 4, 8, 12, 16, 24, 32, 40, 48, 56];
/// Offsets of the block header's fields (46: the padding).
const BLOCK_FIELDS: [usize; 8] = [0, 8, 16, 24, 32, 40, 44, 46];
/// Offsets of an event's fields (43: the padding).
const EVENT_FIELDS: [usize; 10] = [0, 8, 16, 24, 32, 36, 40, 41, 42, 43];

/// The start of block slot `k`.
fn slot_start(k: usize) -> usize {
    SEGMENT_HEADER_SIZE + k * BLOCK_SIZE
}

/// A valid log written by the writer, as the input describes it, then damaged.
fn structured(input: &mut Input<'_>) -> BTreeMap<u32, Vec<u8>> {
    let mut log = build(input.u8(), input.u8());
    let mutations = 1 + input.u8() % 8;
    for _ in 0..mutations {
        // An input that ran out mutates no more (rather than repeating the all-zero
        // choice: one byte of the first segment's magic).
        if input.is_empty() {
            break;
        }
        mutate(&mut log, input);
    }
    let flags = input.u8();
    recompute_checksums(&mut log, flags & 1 != 0);
    log
}

/// Writes a valid log: `plan` picks the segments wanted (1..=3), the sync interval,
/// whether the log is closed (the last segment sealed) or left open, and the id gaps;
/// `size` the number of events.
fn build(plan: u8, size: u8) -> BTreeMap<u32, Vec<u8>> {
    let segments_max = 1 + u32::from(plan & 3) % 3;
    let sync_every = [0u64, 1, 5, 17, 37, 100, 256, 300][usize::from(plan >> 2 & 7)];
    let close = plan & 0x20 != 0;
    let gaps = plan >> 6;
    let events = 1 + u64::from(size) * EVENTS_MAX / 255;
    let mut writer = WalWriter::open(MemStore::new(), || 1, WriterConfig::with_blocks(BLOCKS))
        .unwrap_or_else(|e| panic!("opening a new log in memory failed: {e}"))
        .0;
    let mut id = match gaps {
        2 => 1u64 << 40,
        3 => u64::MAX - 4 * EVENTS_MAX * 1000,
        _ => 0,
    };
    for i in 1..=events {
        // Stop once the writer created a segment beyond the ones wanted (it is dropped
        // below: the segments before it are sealed).
        if writer.store().indices().len() as u32 > segments_max {
            break;
        }
        id += match gaps {
            1 => 1 + i % 3,
            3 => 1 + (i * 7919) % 1000,
            _ => 1,
        };
        writer
            .append(&reference_event(id))
            .unwrap_or_else(|e| panic!("building a log: append {id} failed: {e}"));
        if sync_every != 0 && i % sync_every == 0 {
            writer
                .sync()
                .unwrap_or_else(|e| panic!("building a log: sync failed: {e}"));
        }
    }
    if close {
        writer
            .close()
            .unwrap_or_else(|e| panic!("building a log: close failed: {e}"));
    }
    let store = writer.into_store();
    store
        .indices()
        .into_iter()
        .take(segments_max as usize)
        .filter_map(|i| Some((i, store.image(i)?)))
        .collect()
}

/// A segment of `log` picked by `b` (`None` for an empty log).
fn pick_segment(log: &BTreeMap<u32, Vec<u8>>, b: u8) -> Option<u32> {
    let keys: Vec<u32> = log.keys().copied().collect();
    (!keys.is_empty()).then(|| keys[usize::from(b) % keys.len()])
}

/// An offset, mostly at the start of a field: of an event, of a block header, or of the
/// segment header (`region % 4` = 0, 1, 2; `region >> 2` picks the block slot); for 3,
/// anywhere in a segment of `len` bytes.
fn pick_offset(input: &mut Input<'_>, len: usize) -> usize {
    let region = input.u8();
    let field = usize::from(input.u8());
    let slot = slot_start(usize::from(region >> 2) % 17);
    match region % 4 {
        0 => {
            let event = usize::from(input.u8());
            slot + BLOCK_HEADER_SIZE + event * EVENT_SIZE + EVENT_FIELDS[field % EVENT_FIELDS.len()]
        }
        1 => slot + BLOCK_FIELDS[field % BLOCK_FIELDS.len()],
        2 => SEGMENT_FIELDS[field % SEGMENT_FIELDS.len()],
        _ => (input.u32() as usize) % len.max(1),
    }
}

/// A new value for a field of `width` bytes holding `current`.
fn pick_value(input: &mut Input<'_>, current: u64, width: usize, seg: &[u8]) -> u64 {
    const SMALL: [u64; 16] = [
        0,
        1,
        2,
        3,
        4,
        15,
        16,
        17,
        255,
        256,
        257,
        0xffff,
        0x4653,
        u32::MAX as u64,
        u64::MAX,
        1 << 63,
    ];
    let how = input.u8();
    let value = match how % 6 {
        0 => input.u64(),
        1 => current.wrapping_add_signed(i64::from(input.u8() as i8)),
        2 => SMALL[usize::from(how >> 3) % SMALL.len()],
        3 => current ^ 1 << (u32::from(input.u8()) % (8 * width as u32)),
        4 => {
            // Another field's value (an id of another event or block), nudged.
            let at = pick_offset(input, seg.len());
            let other = seg
                .get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
            other.wrapping_add_signed(i64::from((how >> 3) as i8 - 16))
        }
        _ => 0,
    };
    if width >= 8 {
        value
    } else {
        value & ((1u64 << (8 * width)) - 1)
    }
}

/// One mutation, described by the input:
///
/// | kind (`b % 12`) | what |
/// |---|---|
/// | 0, 1, 2, 3 | set a u8, u16, u32 or u64 at a picked offset to a picked value |
/// | 4 | swap two events of a block |
/// | 5 | copy a block into another slot (of the same or another segment), optionally with its `block_index` set to the new slot |
/// | 6 | truncate a segment (mostly near a slot boundary) |
/// | 7 | zero a range (1 byte to two blocks) |
/// | 8 | turn a sealed segment header into an open one (as a crash before sealing leaves it) |
/// | 9 | extend a segment (1 byte to two blocks) with zeros or with a repeated byte |
/// | 10 | what the C++ recorder's preparer leaves: the segment's header opened and its first byte zeroed (magic `0x4600`) |
/// | 11 | append 1 to 3 segments the C++ preparer made ahead of need after the last one: as long as the picked segment, an open header (its first byte zeroed if the next byte is odd), zeros after it |
pub fn mutate(log: &mut BTreeMap<u32, Vec<u8>>, input: &mut Input<'_>) {
    const LENS: [usize; 8] = [1, 8, 16, 64, 512, 4096, BLOCK_SIZE, 2 * BLOCK_SIZE];
    let kind = input.u8();
    let Some(index) = pick_segment(log, input.u8()) else {
        return;
    };
    match kind % 12 {
        k @ 0..=3 => {
            let width = 1usize << k;
            let len = log[&index].len();
            let at = pick_offset(input, len);
            let seg = &log[&index];
            let Some(bytes) = seg.get(at..at + width) else {
                return;
            };
            let current = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
            let value = pick_value(input, current, width, seg);
            let seg = log.get_mut(&index).expect("picked from the log");
            seg[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        4 => {
            let k = usize::from(input.u8()) % 17;
            let (i, j) = (usize::from(input.u8()), usize::from(input.u8()));
            let seg = log.get_mut(&index).expect("picked from the log");
            let event = |n: usize| slot_start(k) + BLOCK_HEADER_SIZE + n * EVENT_SIZE;
            // Mostly among the used events.
            let used = seg
                .get(slot_start(k) + 44..slot_start(k) + 46)
                .map_or(256, |b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .clamp(1, 256);
            let (i, j) = if i < 224 {
                (i % used, j % used)
            } else {
                (i % 256, j % 256)
            };
            if i != j && event(i.max(j)) + EVENT_SIZE <= seg.len() {
                let (a, b) = (event(i.min(j)), event(i.max(j)));
                let (left, right) = seg.split_at_mut(b);
                left[a..a + EVENT_SIZE].swap_with_slice(&mut right[..EVENT_SIZE]);
            }
        }
        5 => {
            let from = usize::from(input.u8()) % 17;
            let to_index = pick_segment(log, input.u8()).unwrap_or(index);
            let to_byte = input.u8();
            let to = usize::from(to_byte & 0x7f) % 17;
            let Some(block) = log[&index]
                .get(slot_start(from)..slot_start(from) + BLOCK_SIZE)
                .map(<[u8]>::to_vec)
            else {
                return;
            };
            let seg = log.get_mut(&to_index).expect("picked from the log");
            if let Some(dst) = seg.get_mut(slot_start(to)..slot_start(to) + BLOCK_SIZE) {
                dst.copy_from_slice(&block);
                if to_byte & 0x80 != 0 {
                    dst[40..44].copy_from_slice(&(to as u32).to_le_bytes());
                }
            }
        }
        6 => {
            const DELTAS: [isize; 8] = [0, 1, 63, 64, 512, 4096, 16447, -1];
            let k = usize::from(input.u8()) % 18;
            let delta = DELTAS[usize::from(input.u8()) % DELTAS.len()];
            let seg = log.get_mut(&index).expect("picked from the log");
            let len = slot_start(k).saturating_add_signed(delta);
            seg.truncate(len);
        }
        7 => {
            let len = log[&index].len();
            let at = pick_offset(input, len);
            let n = LENS[usize::from(input.u8()) % LENS.len()];
            let seg = log.get_mut(&index).expect("picked from the log");
            let end = at.saturating_add(n).min(seg.len());
            if at < end {
                seg[at..end].fill(0);
            }
        }
        8 => {
            let seg = log.get_mut(&index).expect("picked from the log");
            if seg.len() >= SEGMENT_HEADER_SIZE {
                seg[8..32].fill(0);
                seg[40..64].fill(0);
            }
        }
        9 => {
            let n = LENS[usize::from(input.u8()) % LENS.len()];
            let fill = input.u8();
            let seg = log.get_mut(&index).expect("picked from the log");
            seg.resize(seg.len() + n, fill);
        }
        10 => {
            let seg = log.get_mut(&index).expect("picked from the log");
            if seg.len() >= SEGMENT_HEADER_SIZE {
                seg[8..32].fill(0);
                seg[40..64].fill(0);
                seg[0] = 0;
            }
        }
        _ => {
            let count = 1 + u32::from(input.u8()) % 3;
            let touched = input.u8() & 1 == 1;
            let len = log[&index].len().max(SEGMENT_HEADER_SIZE);
            let last = log.keys().next_back().copied().unwrap_or(0);
            for k in 1..=count {
                let Some(prepared) = last.checked_add(k) else {
                    break;
                };
                let mut seg = vec![0u8; len];
                seg[..4].copy_from_slice(&[0x53, 0x46, 1, 64]);
                seg[4..8].copy_from_slice(&prepared.to_le_bytes());
                seg[32..40].copy_from_slice(&1_700_000_000u64.to_le_bytes());
                if touched {
                    seg[0] = 0;
                }
                log.insert(prepared, seg);
            }
        }
    }
}

/// Recomputes, in every segment, the checksums of every block whose header looks used
/// (`event_count` in 1..=256): block checksum, chained checksum (the chain restarting
/// at 0 in each segment) and header checksum; then, for a sealed header (checksum not
/// 0), its checksum, after setting its `last_chained_checksum` to the chain after its
/// `block_count` blocks when `fix_chain_total` is set.
pub fn recompute_checksums(log: &mut BTreeMap<u32, Vec<u8>>, fix_chain_total: bool) {
    for seg in log.values_mut() {
        let mut chain = 0u64;
        let mut chains = Vec::new();
        for k in 0..whole_slots(seg.len()) {
            let off = slot_start(k);
            let count = usize::from(le_u16(seg, off + 44));
            if (1..=256).contains(&count) {
                let events = off + BLOCK_HEADER_SIZE;
                let used = &seg[events..events + count * EVENT_SIZE];
                let block = scan::block_checksum(used);
                let chained = scan::chained_checksum(used, chain);
                seg[off + 16..off + 24].copy_from_slice(&block.to_le_bytes());
                seg[off + 24..off + 32].copy_from_slice(&chained.to_le_bytes());
                let header = scan::block_header_checksum(&seg[off..off + BLOCK_HEADER_SIZE]);
                seg[off + 32..off + 40].copy_from_slice(&header.to_le_bytes());
                chain = chained;
            }
            chains.push(chain);
        }
        if seg.len() >= SEGMENT_HEADER_SIZE && le_u64(seg, 48) != 0 {
            if fix_chain_total {
                let blocks = le_u32(seg, 8) as usize;
                let total = if blocks == 0 {
                    Some(0)
                } else {
                    chains.get(blocks - 1).copied()
                };
                if let Some(total) = total {
                    seg[56..64].copy_from_slice(&total.to_le_bytes());
                }
            }
            let sum = scan::segment_header_checksum(&seg[..SEGMENT_HEADER_SIZE]);
            seg[48..56].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

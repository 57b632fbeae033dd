#!/usr/bin/env python3
"""Writes the committed seed corpus of the fuzz targets: fuzz/seeds/{verify,ops}/.

    python3 fuzz/gen_seeds.py [--vectors DIR]

The verify seeds in raw mode are built from the C++ recorder's reference segments
(`../shared/vectors/flashstrike-ref-3seg/` relative to the project root, or --vectors);
without them only the structure-aware and ops seeds are written, and it says so.
The input formats are documented in fuzz/src/verify.rs and fuzz/src/ops.rs.
Deterministic: the same vectors give the same files.
"""

import argparse
import pathlib
import shutil
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
HEADER = 64
BLOCK = 16448


def slot(k):
    return HEADER + k * BLOCK


def unseal(seg):
    """The segment with an open (unfinalized) header, as a crashed writer leaves it."""
    seg = bytearray(seg)
    seg[8:32] = bytes(24)
    seg[40:64] = bytes(24)
    return bytes(seg)


M64 = (1 << 64) - 1
P1, P2, P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
P4, P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _round(acc, lane):
    return (_rotl((acc + lane * P2) & M64, 31) * P1) & M64


def _merge(acc, v):
    return ((acc ^ _round(0, v)) * P1 + P4) & M64


def xxh64(data, seed=0):
    """XXH64, as docs/FORMAT.md's checksums use it."""
    n, i = len(data), 0
    u64 = lambda j: int.from_bytes(data[j:j + 8], "little")
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            v = [_round(v[k], u64(i + 8 * k)) for k in range(4)]
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for x in v:
            h = _merge(h, x)
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, u64(i)), 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * P1) & M64, 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * P5) & M64, 11) * P1) & M64
        i += 1
    h = ((h ^ (h >> 33)) * P2) & M64
    h = ((h ^ (h >> 29)) * P3) & M64
    return h ^ (h >> 32)


def u32(b, at):
    return int.from_bytes(b[at:at + 4], "little")


def u64(b, at):
    return int.from_bytes(b[at:at + 8], "little")


def reseal(seg, blocks):
    """The segment cut after `blocks` blocks, its header sealed with their totals."""
    seg = bytearray(seg[: slot(blocks)])
    counts = [int.from_bytes(seg[slot(k) + 44:slot(k) + 46], "little") for k in range(blocks)]
    seg[8:12] = blocks.to_bytes(4, "little")
    seg[12:16] = sum(counts).to_bytes(4, "little")
    seg[16:24] = seg[slot(0):slot(0) + 8]  # block 0's first_event_id
    seg[24:32] = seg[slot(blocks - 1) + 8:slot(blocks - 1) + 16]  # last block's last id
    seg[56:64] = seg[slot(blocks - 1) + 24:slot(blocks - 1) + 32]  # its chained checksum
    seg[48:56] = xxh64(bytes(seg[56:64]), xxh64(bytes(seg[0:48]))).to_bytes(8, "little")
    return bytes(seg)


def le24(n):
    assert n < 1 << 24
    return n.to_bytes(3, "little")


def raw(first, segments, gap=False):
    """A raw-mode verify input: segments at consecutive indices from `first`."""
    assert 1 <= len(segments) <= 3
    spec = (len(segments) - 1) | (0x80 if gap else 0)
    out = bytearray([0, first, spec])
    for seg in segments[:-1]:
        out += le24(len(seg)) + seg
    out += segments[-1]
    return bytes(out)


def plan(segments, sync_idx, close, gaps):
    """Byte 1 of a structure-aware input (see `build` in verify.rs)."""
    return (segments - 1) | (sync_idx << 2) | (0x20 if close else 0) | (gaps << 6)


def structured(plan_byte, size, mutations, flags=1):
    """A structure-aware verify input with 1..=8 mutations (each a list of bytes)."""
    assert 1 <= len(mutations) <= 8
    out = bytearray([1, plan_byte, size, len(mutations) - 1])
    for m in mutations:
        out += bytes(m)
    out.append(flags)
    return bytes(out)


# Mutation kinds and pickers (verify.rs: mutate, pick_offset, pick_value).
def region_event(k):
    return 0 | (k << 2)


def region_block_header(k):
    return 1 | (k << 2)


def region_segment_header():
    return 2


def verify_seeds(vectors):
    seeds = {}
    if vectors is not None:
        seg = [(vectors / f"FS.{i:08}.wal").read_bytes() for i in range(3)]
    # The checksums this script computes are docs/FORMAT.md's: check them on the vectors.
    for s in seg:
        assert reseal(s, 16)[:64] == s[:64] or s[8:12] != (16).to_bytes(4, "little"), \
            "xxh64 or the header layout is wrong"
        head3 = [s[: slot(3)] for s in seg]
        # A whole sealed segment: events 1..=4096.
        seeds["raw-cpp-seg0-full"] = raw(0, [seg[0]])
        # The three segments cut after 3 blocks: sealed headers promising 16 blocks.
        seeds["raw-cpp-3seg-head3-sealed"] = raw(0, head3)
        # The same with open headers: segment 0 open but not last.
        seeds["raw-cpp-2seg-head3-open"] = raw(0, [unseal(s) for s in head3[:2]])
        # Segment 2 alone, at index 2, cut after 3 blocks and open: a valid crashed log.
        seeds["raw-cpp-seg2-head3-open"] = raw(2, [unseal(head3[2])])
        # Segment 2 alone, sealed, 8 blocks (the last partial): everything it declares.
        seeds["raw-cpp-seg2-8blocks"] = raw(2, [seg[2][: slot(8)]])
        # Segment 0 cut after 3 blocks and sealed so, then segment 2 open (1 missing).
        seeds["raw-cpp-missing-seg1"] = raw(0, [reseal(seg[0], 3), unseal(head3[2])], gap=True)
        # Three complete segments of 3 blocks each (the last open): all valid.
        seeds["raw-cpp-3seg-resealed"] = raw(
            0, [reseal(seg[0], 3), reseal(seg[1], 3), unseal(head3[2])])
    closed3 = plan(3, 3, True, 0)  # 3 segments, sync every 17 events, sealed
    open2 = plan(2, 2, False, 1)  # 2 segments, sync every 5, left open, gaps 1..=3
    seeds["sa-first-id-minus-one"] = structured(
        closed3, 255, [[3, 1, region_block_header(2), 0, 1, 0xFF]])
    seeds["sa-swap-events"] = structured(closed3, 200, [[4, 0, 1, 3, 4]], flags=0)
    seeds["sa-duplicate-block-fixed-index"] = structured(closed3, 255, [[5, 0, 0, 0, 0x80 | 3]])
    seeds["sa-truncate"] = structured(open2, 120, [[6, 1, 5, 2]])
    seeds["sa-zero-event-range"] = structured(closed3, 255, [[7, 0, region_event(1), 0, 10, 3]])
    seeds["sa-unseal-first"] = structured(closed3, 255, [[8, 0]])
    seeds["sa-unseal-last-extend"] = structured(closed3, 255, [[8, 2], [9, 2, 2, 0]])
    seeds["sa-event-count-one"] = structured(
        closed3, 255, [[1, 0, region_block_header(3), 6, (1 << 3) | 2]])
    seeds["sa-bad-event-type"] = structured(
        closed3, 255, [[0, 0, region_event(0), 6, 5, (4 << 3) | 2]])
    seeds["sa-open-header-block-count"] = structured(
        open2, 100, [[2, 0, region_segment_header(), 4, (2 << 3) | 2]])
    # The C++ Manager's crash states: a segment sealed late (open and full, then more),
    # the last segment open and touched by its preparer, prepared segments after it.
    seeds["sa-cpp-late-sealed"] = structured(closed3, 255, [[8, 1]])
    seeds["sa-cpp-touched-last-open"] = structured(closed3, 255, [[10, 2]])
    seeds["sa-cpp-prepared-after-open"] = structured(open2, 120, [[11, 1, 2, 1]])
    seeds["sa-cpp-prepared-after-sealed"] = structured(closed3, 255, [[11, 2, 0, 0]])
    seeds["sa-cpp-gap-before-data"] = structured(closed3, 255, [[10, 0], [11, 1, 1, 1]])
    seeds["sa-huge-ids-two-mutations"] = structured(
        plan(3, 4, True, 3), 255,
        [[3, 2, region_event(0), 0, 0, 4, region_event(0), 0, 1],
         [3, 2, region_block_header(0), 0, 4, region_event(0), 0, 0]])
    return seeds


# ops (ops.rs): one byte per operation, `b % 8`, parameters after it.
def append(k, gap=0):
    """Append k events, k = 1 + 4 * n (n <= 255), the first id `last + 1 + gap`."""
    assert (k - 1) % 4 == 0 and 1 <= k <= 1021
    return [(24 << 3) | 1, (k - 1) // 4, gap]


def append_small(k, gap=0):
    assert 1 <= k <= 24
    return [((k - 1) << 3) | 0, gap]


SYNC, CLOSE = [3], [4]


def reopen(landed=()):
    return [5] + list(landed)


def crash(landed):
    return [6] + list(landed)


def process_crash(point, half_done=False):
    """A process crash at crash point `point` (modulo their number) of the previous
    operation, that operation half done if `half_done`: `b >> 3` = `point << 1 | half`."""
    p = (point << 1) | int(half_done)
    assert 1 <= p <= 31
    return [5 | (p << 3)]


def power_cut(fuel_units):
    return [7] + list(fuel_units.to_bytes(2, "little"))


def ops_seeds():
    seeds = {}
    seeds["ops-append-sync-crash-torn"] = bytes(
        append_small(24) + SYNC + append(401, 5) + crash([0x83, 0, 0x04]))
    seeds["ops-power-cut-reopen"] = bytes(
        append_small(10) + SYNC + power_cut(600) + append(513) + SYNC
        + reopen([0x02, 2 | (3 << 2)]) + append_small(5) + CLOSE)
    seeds["ops-close-reopen-durable-crash"] = bytes(
        append_small(20, 3) + CLOSE + append_small(7) + CLOSE + reopen()
        + append_small(12) + crash([0x00]))
    seeds["ops-many-small-syncs"] = bytes(
        (append_small(9) + SYNC) * 12 + append(513) + crash([0x02, 1, 2 | (1 << 2)])
        + append_small(3) + SYNC)
    seeds["ops-two-segments-power-cut"] = bytes(
        append(1021) + append(977, 1) + SYNC + power_cut(0) + append_small(3) + SYNC
        + crash([0x81]))
    seeds["ops-crash-mask"] = bytes(
        append(257) + SYNC + append(513) + crash([0x03, 0, 0x01] + [0xA5] * 8)
        + append_small(4) + SYNC + reopen())
    # A process crash at each crash point of a close (the sealed header written and not
    # synced among them), a restart that appends and syncs, then a power cut that keeps
    # only what is durable: the restart must have made what it read durable first.
    for point in range(1, 8):
        for half_done in (False, True):
            name = f"ops-process-crash-in-close-{point}{'-half-done' if half_done else ''}"
            seeds[name] = bytes(
                append(301) + CLOSE + process_crash(point, half_done) + append_small(10)
                + SYNC + crash([0x00]))
    # A process crash, then another in the middle of the recovery that followed.
    seeds["ops-process-crash-in-recovery"] = bytes(
        append(257) + append_small(20) + SYNC + append_small(24) + process_crash(1)
        + process_crash(2, True) + append_small(5) + SYNC + crash([0x00]))
    return seeds


def write(dir_, seeds):
    if dir_.exists():
        shutil.rmtree(dir_)
    dir_.mkdir(parents=True)
    for name, data in sorted(seeds.items()):
        (dir_ / name).write_bytes(data)
        print(f"{dir_.relative_to(ROOT)}/{name}: {len(data)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=pathlib.Path,
                    default=ROOT.parent / "shared" / "vectors" / "flashstrike-ref-3seg")
    args = ap.parse_args()
    vectors = args.vectors if args.vectors.is_dir() else None
    if vectors is None:
        print(f"skipping the raw-mode seeds: {args.vectors} absent", file=sys.stderr)
    write(FUZZ / "seeds" / "verify", verify_seeds(vectors))
    write(FUZZ / "seeds" / "ops", ops_seeds())


if __name__ == "__main__":
    main()

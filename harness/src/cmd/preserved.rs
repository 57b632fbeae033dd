//! `fswal preserved [--json] [--export DIR] [--release] (PATH | --device DEV)`: lists
//! everything that was kept aside from a log, so that an operator can look at it, copy
//! it out, and then let it go.
//!
//! Three kinds of item:
//!
//! - **set-aside tails**: when recovery finds a torn or reordered tail in the open last
//!   segment, it seals that segment at its last valid block and leaves the slots after
//!   it as they are ([`fswal_core::recovery`]). For every segment present whose header
//!   is sealed, the non-blank slots after its `block_count` are listed
//!   ([`set_aside_after`]): the slots, the byte range from the first one to the end of
//!   the last (or the file's end), how many are non-blank, their bytes, and the event
//!   ids their block headers claim. Open segments are skipped: their tail is what the
//!   next recovery decides on. A segment whose header does not verify is not examined,
//!   and is named as such (`fswal verify` says what is wrong with it).
//! - **torn-tail copies** (`FS.%08u.wal.torn-<offset>`) that earlier versions of
//!   recovery made in a WAL directory ([`SegmentDir::torn_copies`]).
//! - **quarantine entries** that earlier versions made on a raw device
//!   ([`RawStore::quarantine`]).
//!
//! Without `--release` the log is opened read-only, as `verify` opens it: nothing is
//! created or modified in it. `--export DIR` copies each item's exact bytes into a
//! file of DIR (created if missing, never inside the WAL directory; no file in it is
//! ever overwritten) named after its source, plus `manifest.json` (where each file's
//! bytes came from, their size and XXH64); every file and DIR are synced.
//!
//! `--release` needs `--export DIR`: nothing is released that was not copied out first.
//! It opens the log for writing (taking the writer lock, so it fails while a writer
//! runs), lists and exports under that lock, and only once the export is complete and
//! synced: zeroes each set-aside range of a sealed segment (synced, then checked blank),
//! removes each torn-tail copy, and blanks each quarantine entry. A set-aside range of
//! a compressed segment (`.wal.lz4`) is not released: its bytes live inside the LZ4
//! container, which goes when retention removes the segment; the output says so.
//! Replay never reads past a sealed segment's `block_count`, so what it yields is the
//! same before and after.
//!
//! Output: one line per item and a total, or with `--json` one object as the last line
//! (`items`, each with `kind` `set-aside`, `torn-copy` or `quarantine`; `totals`;
//! `not_examined`; `export`; `released`; `not_released`).
//!
//! Exit codes: 0 (also when nothing is found), 2 on a usage or I/O error (one line
//! naming the file and the offset).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use fswal_backends::dir::{DirSegment, DirStore, SegmentDir, TornCopy};
use fswal_backends::file::{create_dir_durably, sync_dir};
use fswal_backends::raw::{QuarantineEntry, RawStore};
use fswal_core::limits::{
    BLOCK_SIZE_BYTES, SEGMENT_HEADER_SIZE_BYTES, block_offset_bytes, slot_bytes_present,
};
use fswal_core::recovery::{SetAside, set_aside_after};
use fswal_core::segment_header::HeaderState;
use fswal_core::store::segment_file_name;
use fswal_core::{BlockDevice, SegmentHeader, SegmentStore};
use serde::Serialize;
use xxhash_rust::xxh64::Xxh64;

use crate::cmd::salvage::resolve;
use crate::error::CliError;
use crate::store::{AnyDevice, AnyStore, Backend, Kind, TargetArgs, open_read_only};

/// The name of the manifest an export writes beside the files it exports.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// Bytes read and written per step when an item is exported or zeroed.
pub const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The most segments whose header does not verify a report names; the rest are
/// counted.
pub const NOT_EXAMINED_LISTED_MAX: usize = 1000;

/// Arguments of `fswal preserved`.
#[derive(Args, Debug)]
pub struct PreservedArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Copy every item's bytes into this directory (created if missing; no file in it
    /// is overwritten), with a manifest.json.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// After exporting, release every item: zero set-aside slots, remove torn-tail
    /// copies, blank quarantine entries (needs --export; takes the writer lock).
    #[arg(long)]
    pub release: bool,
    /// Where the WAL is.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Non-blank slots after a sealed segment's end, left in place by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAsideTail {
    /// The segment.
    pub segment: u32,
    /// The block count its sealed header gives: slots from here on are never replayed.
    pub block_count: u32,
    /// What the slots after `block_count` hold.
    pub aside: SetAside,
    /// Where the range starts in the segment: the first non-blank slot's offset.
    pub offset_bytes: u64,
    /// Where it ends (exclusive): the end of the last non-blank slot, or of the segment.
    pub end_bytes: u64,
    /// Whether the segment is an LZ4 container (its bytes cannot be zeroed in place).
    pub compressed: bool,
}

/// One thing kept aside from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Slots after a sealed segment's end.
    SetAside(SetAsideTail),
    /// A torn-tail copy an earlier version made in the WAL directory.
    TornCopy(TornCopy),
    /// A quarantine entry an earlier version made on the raw device.
    Quarantine(QuarantineEntry),
}

impl Item {
    /// The bytes the item keeps: a set-aside tail's non-blank slots, a copy's or an
    /// entry's length.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        match self {
            Self::SetAside(t) => t.aside.bytes,
            Self::TornCopy(c) => c.len_bytes,
            Self::Quarantine(q) => q.bytes.len() as u64,
        }
    }

    /// The bytes an export of the item writes: a set-aside tail's whole range (blank
    /// slots between non-blank ones included), a copy's or an entry's length.
    #[must_use]
    pub fn export_bytes(&self) -> u64 {
        match self {
            Self::SetAside(t) => t.end_bytes.saturating_sub(t.offset_bytes),
            Self::TornCopy(_) | Self::Quarantine(_) => self.bytes(),
        }
    }

    /// The segment the bytes came from.
    #[must_use]
    pub fn segment(&self) -> u32 {
        match self {
            Self::SetAside(t) => t.segment,
            Self::TornCopy(c) => c.segment,
            Self::Quarantine(q) => q.segment,
        }
    }

    /// Where in that segment.
    #[must_use]
    pub fn offset_bytes(&self) -> u64 {
        match self {
            Self::SetAside(t) => t.offset_bytes,
            Self::TornCopy(c) => c.offset_bytes,
            Self::Quarantine(q) => q.offset_bytes,
        }
    }

    /// The kind, as the JSON report and the manifest name it.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::SetAside(_) => "set-aside",
            Self::TornCopy(_) => "torn-copy",
            Self::Quarantine(_) => "quarantine",
        }
    }
}

/// The byte range (start, exclusive end) of `aside` inside a segment of `len_bytes`:
/// from its first slot's offset to the end of its last slot, or the segment's end when
/// that slot is cut short.
#[must_use]
pub fn set_aside_range(aside: &SetAside, len_bytes: u64) -> (u64, u64) {
    let start = block_offset_bytes(aside.first_slot);
    let present = slot_bytes_present(len_bytes, aside.last_slot) as u64;
    let end = block_offset_bytes(aside.last_slot).saturating_add(present);
    (start, end.max(start))
}

/// The name segment `index`'s raw file has (`FS.%08u.wal`), or the same pattern with
/// more digits for an index no file name can carry.
fn segment_name(index: u32) -> String {
    segment_file_name(index).map_or_else(|| format!("FS.{index:08}.wal"), |n| n.to_string())
}

/// The file name an export gives `item`, so that its source is obvious:
/// `FS.00000001.wal.slots-000010-000012` for set-aside slots 10..=12 of segment 1, the
/// copy's own name for a torn-tail copy, `quarantine-07.FS.00000003.wal.torn-000000082304`
/// for quarantine entry 7 holding bytes of segment 3 from offset 82304.
#[must_use]
pub fn export_name(item: &Item) -> String {
    match item {
        Item::SetAside(t) => format!(
            "{}.slots-{:06}-{:06}",
            segment_name(t.segment),
            t.aside.first_slot,
            t.aside.last_slot
        ),
        Item::TornCopy(c) => c.path.file_name().map_or_else(
            || format!("{}.torn-{:012}", segment_name(c.segment), c.offset_bytes),
            |n| n.to_string_lossy().into_owned(),
        ),
        Item::Quarantine(q) => format!(
            "quarantine-{:02}.{}.torn-{:012}",
            q.entry,
            segment_name(q.segment),
            q.offset_bytes
        ),
    }
}

/// What `--release` does with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Zero the set-aside range in the segment and sync it.
    Zero,
    /// Remove the torn-tail copy.
    RemoveCopy,
    /// Blank the quarantine entry.
    BlankEntry,
    /// Leave it, for this reason.
    Skip(&'static str),
}

/// What `--release` does with `item`.
#[must_use]
pub fn release_of(item: &Item) -> Release {
    match item {
        Item::SetAside(t) if t.compressed => Release::Skip(
            "the segment is compressed: its bytes are inside the LZ4 container, which goes when retention removes the segment",
        ),
        Item::SetAside(_) => Release::Zero,
        Item::TornCopy(_) => Release::RemoveCopy,
        Item::Quarantine(_) => Release::BlankEntry,
    }
}

/// Why the options are refused before anything is opened, if they are: `--release`
/// needs `--export` and a whole log (a directory or a device), not one segment file
/// (`single_file`).
#[must_use]
pub fn options_refusal(release: bool, export: bool, single_file: bool) -> Option<&'static str> {
    match (release, export, single_file) {
        (true, false, _) => Some(
            "--release needs --export DIR: nothing is released that was not copied out first (nothing was changed)",
        ),
        (true, true, true) => Some(
            "--release needs the WAL directory (or --device), not one segment file (nothing was changed)",
        ),
        _ => None,
    }
}

/// A segment that was not examined: its header does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotExamined {
    /// The segment.
    pub segment: u32,
    /// Why.
    pub reason: String,
}

/// What a store holds aside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Set-aside tails by segment, then torn-tail copies by segment and offset, then
    /// quarantine entries by number.
    pub items: Vec<Item>,
    /// Segments not examined, at most [`NOT_EXAMINED_LISTED_MAX`].
    pub not_examined: Vec<NotExamined>,
    /// Every segment not examined.
    pub not_examined_total: u64,
}

/// Whether `device` is a segment read through its LZ4 container.
fn is_compressed(device: &AnyDevice) -> bool {
    matches!(
        device,
        AnyDevice::File(DirSegment::Compressed(_))
            | AnyDevice::Mmap(DirSegment::Compressed(_))
            | AnyDevice::Direct(DirSegment::Compressed(_))
    )
}

/// Opens segment `index` of `store`, which was listed a moment ago.
fn open_listed(store: &mut AnyStore, index: u32) -> Result<AnyDevice, CliError> {
    store.open_segment(index)?.ok_or_else(|| {
        CliError::new(format!(
            "{}: segment {index} vanished while it was being read",
            store.segment_file(index).display()
        ))
    })
}

/// The header state of segment `index`, open as `device`, or why it does not verify.
fn header_state(
    device: &mut AnyDevice,
    index: u32,
) -> Result<Result<HeaderState, String>, CliError> {
    if device.len_bytes() < SEGMENT_HEADER_SIZE_BYTES as u64 {
        return Ok(Err(format!(
            "{} bytes, shorter than a segment header",
            device.len_bytes()
        )));
    }
    let mut raw = [0u8; SEGMENT_HEADER_SIZE_BYTES];
    device.read_exact_at(0, &mut raw)?;
    Ok(SegmentHeader::read_from(&raw)
        .check(index)
        .map_err(|reason| reason.to_string()))
}

/// Lists what `store` holds aside.
pub fn find(store: &mut AnyStore) -> Result<Found, CliError> {
    let mut found = Found::default();
    if let Some((first, last)) = store.segment_range()? {
        // Bounded by the range, whose ends are segment indices (at most
        // SEGMENT_INDEX_MAX apart); a missing index costs one failed open.
        for index in first..=last {
            let Some(mut device) = store.open_segment(index)? else {
                continue;
            };
            let block_count = match header_state(&mut device, index)? {
                Ok(HeaderState::Sealed(totals)) => totals.block_count,
                Ok(HeaderState::Open) => continue,
                Err(reason) => {
                    found.not_examined_total += 1;
                    if found.not_examined.len() < NOT_EXAMINED_LISTED_MAX {
                        found.not_examined.push(NotExamined {
                            segment: index,
                            reason,
                        });
                    }
                    continue;
                }
            };
            let Some(aside) = set_aside_after(&mut device, block_count)? else {
                continue;
            };
            let (offset_bytes, end_bytes) = set_aside_range(&aside, device.len_bytes());
            found.items.push(Item::SetAside(SetAsideTail {
                segment: index,
                block_count,
                aside,
                offset_bytes,
                end_bytes,
                compressed: is_compressed(&device),
            }));
        }
    }
    let copies = store.torn_copies()?;
    found.items.extend(copies.into_iter().map(Item::TornCopy));
    if let AnyStore::Raw(s) = store {
        found
            .items
            .extend(s.quarantine()?.into_iter().map(Item::Quarantine));
    }
    Ok(found)
}

/// Where an item's bytes are, for a line of the report.
fn where_text(store: &AnyStore, item: &Item) -> String {
    match item {
        Item::SetAside(t) if t.compressed => format!(
            "{}: offset {} of the decompressed segment",
            store.segment_file(t.segment).display(),
            t.offset_bytes
        ),
        Item::SetAside(t) => store.locate(t.segment, t.offset_bytes),
        Item::TornCopy(c) => c.path.display().to_string(),
        Item::Quarantine(q) => format!(
            "{}: offset {}",
            store.segment_file(q.segment).display(),
            q.device_offset_bytes()
        ),
    }
}

/// Where in the file named by [`source_file`] an item's bytes start, when the file
/// holds them as they are (not inside a compressed container).
fn source_offset_bytes(store: &AnyStore, item: &Item) -> Option<u64> {
    match (item, store) {
        (Item::SetAside(t), _) if t.compressed => None,
        (Item::SetAside(t), AnyStore::Raw(s)) => {
            Some(s.device_offset_bytes(t.segment, t.offset_bytes))
        }
        (Item::SetAside(t), _) => Some(t.offset_bytes),
        (Item::TornCopy(_), _) => Some(0),
        (Item::Quarantine(q), _) => Some(q.device_offset_bytes()),
    }
}

/// The file holding an item's bytes: the segment file (or device), the copy.
fn source_file(store: &AnyStore, item: &Item) -> PathBuf {
    match item {
        Item::SetAside(t) => store.segment_file(t.segment),
        Item::TornCopy(c) => c.path.clone(),
        Item::Quarantine(q) => store.segment_file(q.segment),
    }
}

/// One line describing `item`.
fn item_line(store: &AnyStore, item: &Item) -> String {
    let at = where_text(store, item);
    match item {
        Item::SetAside(t) => {
            let a = &t.aside;
            let claimed = a.claimed_event_ids.map_or_else(
                || "no block header among them verifies".to_string(),
                |(first, last)| format!("their block headers claim events {first}..={last}"),
            );
            format!(
                "set-aside tail: {at}: segment {} sealed at {} blocks; slots {}..={} (bytes {}..{}), {} non-blank, {} bytes; {claimed}",
                t.segment,
                t.block_count,
                a.first_slot,
                a.last_slot,
                t.offset_bytes,
                t.end_bytes,
                a.slots,
                a.bytes
            )
        }
        Item::TornCopy(c) => format!(
            "torn-tail copy: {at}: {} bytes of segment {} from offset {}",
            c.len_bytes, c.segment, c.offset_bytes
        ),
        Item::Quarantine(q) => format!(
            "quarantine entry {}: {at}: {} bytes of segment {} from offset {}",
            q.entry,
            q.bytes.len(),
            q.segment,
            q.offset_bytes
        ),
    }
}

/// Refuses `export` unless it is a directory (or nothing yet) outside `wal_dir`, and
/// none of `names` exists in it.
fn check_export_dir(
    export: &Path,
    wal_dir: Option<&Path>,
    names: &[String],
) -> Result<(), CliError> {
    if let Some(wal) = wal_dir {
        let wal = fs::canonicalize(wal).map_err(|e| CliError::at(wal, e))?;
        if resolve(export)?.starts_with(&wal) {
            return Err(CliError::at(
                export,
                format!(
                    "is inside the WAL directory {}; export somewhere else (nothing was written)",
                    wal.display()
                ),
            ));
        }
    }
    match fs::metadata(export) {
        Ok(m) if !m.is_dir() => {
            return Err(CliError::at(
                export,
                "exists and is not a directory (nothing was written)",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CliError::at(export, e)),
    }
    for name in names {
        let path = export.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => {
                return Err(CliError::at(
                    &path,
                    "already exists; an export never overwrites a file (nothing was written)",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::at(&path, e)),
        }
    }
    Ok(())
}

/// A file of an export, as the manifest describes it.
#[derive(Clone, Debug, Serialize)]
pub struct Exported {
    /// Its name in the export directory.
    pub file: String,
    /// The kind of item it holds.
    pub kind: &'static str,
    /// The file its bytes came from (the segment file, the device, the copy).
    pub source: String,
    /// Where in `source` they start, when `source` holds them as they are (not for a
    /// compressed segment).
    pub source_offset: Option<u64>,
    /// The segment they belong to.
    pub segment: u32,
    /// Where in that segment they start.
    pub offset: u64,
    /// How many bytes the file holds.
    pub bytes: u64,
    /// The XXH64 (seed 0) of the file's bytes, `0x` and 16 hex digits.
    pub xxh64: String,
    /// For a set-aside tail: its first slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_slot: Option<u32>,
    /// For a set-aside tail: its last slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_slot: Option<u32>,
    /// For a quarantine entry: its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<u32>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    source: String,
    files: &'a [Exported],
}

/// Writes `len_bytes` from `read` (called with an offset and a buffer to fill) to the
/// new file `path`, synced, and returns the XXH64 of what was written.
fn write_new_file(
    path: &Path,
    len_bytes: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), CliError>,
) -> Result<u64, CliError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CliError::at(path, e))?;
    let mut hash = Xxh64::new(0);
    let mut buf = vec![0u8; COPY_CHUNK_BYTES];
    let mut done = 0u64;
    // Bounded by the length over the chunk size.
    while done < len_bytes {
        let n = usize::try_from(len_bytes - done)
            .map_or(COPY_CHUNK_BYTES, |left| left.min(COPY_CHUNK_BYTES));
        let chunk = &mut buf[..n];
        read(done, chunk)?;
        hash.update(chunk);
        file.write_all(chunk).map_err(|e| CliError::at(path, e))?;
        done += n as u64;
    }
    file.sync_all().map_err(|e| CliError::at(path, e))?;
    Ok(hash.digest())
}

/// Exports `item` of `store` into the new file `path`; returns the XXH64 of its bytes.
fn export_item(store: &mut AnyStore, item: &Item, path: &Path) -> Result<u64, CliError> {
    match item {
        Item::SetAside(t) => {
            let mut device = open_listed(store, t.segment)?;
            write_new_file(path, item.export_bytes(), |at, buf| {
                Ok(device.read_exact_at(t.offset_bytes + at, buf)?)
            })
        }
        Item::TornCopy(c) => {
            let copy = File::open(&c.path).map_err(|e| CliError::at(&c.path, e))?;
            write_new_file(path, c.len_bytes, |at, buf| {
                copy.read_exact_at(buf, at)
                    .map_err(|e| CliError::at_offset(&c.path, at, e))
            })
        }
        Item::Quarantine(q) => write_new_file(path, q.bytes.len() as u64, |at, buf| {
            let from = usize::try_from(at).map_err(|_| CliError::new("offset beyond memory"))?;
            let bytes = q
                .bytes
                .get(from..from + buf.len())
                .ok_or_else(|| CliError::new("quarantine entry shorter than listed"))?;
            buf.copy_from_slice(bytes);
            Ok(())
        }),
    }
}

/// Exports every item of `found` into `export` with a manifest naming `wal` as the
/// source; nothing is written unless every file can be created new.
fn export_all(
    store: &mut AnyStore,
    found: &Found,
    wal: &Path,
    wal_dir: Option<&Path>,
    export: &Path,
) -> Result<Vec<Exported>, CliError> {
    let names: Vec<String> = found.items.iter().map(export_name).collect();
    let distinct: BTreeSet<&String> = names.iter().collect();
    if distinct.len() != names.len() || distinct.contains(&MANIFEST_FILE_NAME.to_string()) {
        return Err(CliError::new(
            "internal error: two preserved items would get the same export file name (nothing was written)",
        ));
    }
    let mut all_names = names.clone();
    all_names.push(MANIFEST_FILE_NAME.to_string());
    check_export_dir(export, wal_dir, &all_names)?;
    create_dir_durably(export)?;
    let mut files = Vec::with_capacity(found.items.len());
    for (item, name) in found.items.iter().zip(names) {
        let path = export.join(&name);
        let hash = export_item(store, item, &path)?;
        let (first_slot, last_slot) = match item {
            Item::SetAside(t) => (Some(t.aside.first_slot), Some(t.aside.last_slot)),
            _ => (None, None),
        };
        files.push(Exported {
            file: name,
            kind: item.kind_name(),
            source: source_file(store, item).display().to_string(),
            source_offset: source_offset_bytes(store, item),
            segment: item.segment(),
            offset: item.offset_bytes(),
            bytes: item.export_bytes(),
            xxh64: format!("{hash:#018x}"),
            first_slot,
            last_slot,
            entry: match item {
                Item::Quarantine(q) => Some(q.entry),
                _ => None,
            },
        });
    }
    let manifest = Manifest {
        format: "fswal preserved export, version 1",
        source: wal.display().to_string(),
        files: &files,
    };
    let mut text =
        serde_json::to_string_pretty(&manifest).map_err(|e| CliError::new(e.to_string()))?;
    text.push('\n');
    let path = export.join(MANIFEST_FILE_NAME);
    write_new_file(&path, text.len() as u64, |at, buf| {
        let from = usize::try_from(at).map_err(|_| CliError::new("offset beyond memory"))?;
        let bytes = text
            .as_bytes()
            .get(from..from + buf.len())
            .ok_or_else(|| CliError::new("internal error: the manifest changed length"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    })?;
    sync_dir(export)?;
    Ok(files)
}

/// Zeroes the set-aside range `t` of its segment, syncs it, and checks that nothing
/// after the segment's sealed end is left non-blank.
fn zero_set_aside(store: &mut AnyStore, t: &SetAsideTail) -> Result<(), CliError> {
    let mut device = open_listed(store, t.segment)?;
    let zeros = vec![0u8; COPY_CHUNK_BYTES];
    let len_bytes = t.end_bytes.saturating_sub(t.offset_bytes);
    let mut done = 0u64;
    // Bounded by the range over the chunk size.
    while done < len_bytes {
        let n = usize::try_from(len_bytes - done)
            .map_or(COPY_CHUNK_BYTES, |left| left.min(COPY_CHUNK_BYTES));
        device.write_all_at(t.offset_bytes + done, &zeros[..n])?;
        done += n as u64;
    }
    device.sync()?;
    drop(device);
    // Read back through a fresh device: what the file holds now, not a cache of it.
    let mut device = open_listed(store, t.segment)?;
    if let Some(left) = set_aside_after(&mut device, t.block_count)? {
        return Err(CliError::new(format!(
            "internal error: {}: slots {}..={} of segment {} are still not blank after zeroing",
            store.segment_file(t.segment).display(),
            left.first_slot,
            left.last_slot,
            t.segment
        )));
    }
    Ok(())
}

/// Releases `item` of `store` as [`release_of`] says.
fn release_item(store: &mut AnyStore, item: &Item) -> Result<(), CliError> {
    match (release_of(item), item, store) {
        (Release::Skip(_), _, _) => Ok(()),
        (Release::Zero, Item::SetAside(t), store) => zero_set_aside(store, t),
        (Release::RemoveCopy, Item::TornCopy(c), AnyStore::File(s)) => Ok(s.release_torn_copy(c)?),
        (Release::RemoveCopy, Item::TornCopy(c), AnyStore::Mmap(s)) => Ok(s.release_torn_copy(c)?),
        (Release::RemoveCopy, Item::TornCopy(c), AnyStore::Direct(s)) => {
            Ok(s.release_torn_copy(c)?)
        }
        (Release::BlankEntry, Item::Quarantine(q), AnyStore::Raw(s)) => {
            Ok(s.release_quarantine_entry(q.entry)?)
        }
        _ => Err(CliError::new(
            "internal error: an item does not belong to the kind of store it was listed in",
        )),
    }
}

/// Opens the WAL `target` names for writing, under its writer lock. The caller has
/// opened it read-only first, so it exists and is a WAL: opening a directory for
/// append would create it otherwise.
fn open_for_release(target: &TargetArgs) -> Result<AnyStore, CliError> {
    if let Some(device) = &target.device {
        return Ok(AnyStore::Raw(RawStore::open(device, true, false)?));
    }
    let path = target
        .path
        .as_deref()
        .ok_or_else(|| CliError::new("give a WAL directory or --device"))?;
    Ok(match target.backend {
        Backend::File => AnyStore::File(DirStore::open_for_append(path)?),
        Backend::Mmap => AnyStore::Mmap(SegmentDir::open_for_append(path)?),
        Backend::Direct => AnyStore::Direct(SegmentDir::open_for_append(path)?),
    })
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum JsonItem {
    SetAside {
        segment: u32,
        file: String,
        block_count: u32,
        first_slot: u32,
        last_slot: u32,
        offset: u64,
        end: u64,
        file_offset: Option<u64>,
        slots: u32,
        bytes: u64,
        claimed_first_event_id: Option<u64>,
        claimed_last_event_id: Option<u64>,
        compressed: bool,
    },
    TornCopy {
        path: String,
        segment: u32,
        offset: u64,
        bytes: u64,
    },
    Quarantine {
        entry: u32,
        file: String,
        file_offset: u64,
        segment: u32,
        offset: u64,
        bytes: u64,
    },
}

fn json_item(store: &AnyStore, item: &Item) -> JsonItem {
    match item {
        Item::SetAside(t) => JsonItem::SetAside {
            segment: t.segment,
            file: store.segment_file(t.segment).display().to_string(),
            block_count: t.block_count,
            first_slot: t.aside.first_slot,
            last_slot: t.aside.last_slot,
            offset: t.offset_bytes,
            end: t.end_bytes,
            file_offset: source_offset_bytes(store, item),
            slots: t.aside.slots,
            bytes: t.aside.bytes,
            claimed_first_event_id: t.aside.claimed_event_ids.map(|(a, _)| a),
            claimed_last_event_id: t.aside.claimed_event_ids.map(|(_, b)| b),
            compressed: t.compressed,
        },
        Item::TornCopy(c) => JsonItem::TornCopy {
            path: c.path.display().to_string(),
            segment: c.segment,
            offset: c.offset_bytes,
            bytes: c.len_bytes,
        },
        Item::Quarantine(q) => JsonItem::Quarantine {
            entry: q.entry,
            file: store.segment_file(q.segment).display().to_string(),
            file_offset: q.device_offset_bytes(),
            segment: q.segment,
            offset: q.offset_bytes,
            bytes: q.bytes.len() as u64,
        },
    }
}

#[derive(Serialize)]
struct JsonTotals {
    items: usize,
    set_aside: usize,
    torn_copies: usize,
    quarantine: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonNotExamined {
    segment: u32,
    file: String,
    reason: String,
}

#[derive(Serialize)]
struct JsonExport {
    dir: String,
    manifest: String,
    files: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonNotReleased {
    item: String,
    reason: &'static str,
}

#[derive(Serialize)]
struct JsonReport {
    source: String,
    items: Vec<JsonItem>,
    totals: JsonTotals,
    not_examined: Vec<JsonNotExamined>,
    not_examined_total: u64,
    export: Option<JsonExport>,
    released: Vec<String>,
    not_released: Vec<JsonNotReleased>,
}

/// The counts of `items` by kind: set-aside tails, torn-tail copies, quarantine entries.
fn counts(items: &[Item]) -> (usize, usize, usize) {
    items.iter().fold((0, 0, 0), |(a, c, q), item| match item {
        Item::SetAside(_) => (a + 1, c, q),
        Item::TornCopy(_) => (a, c + 1, q),
        Item::Quarantine(_) => (a, c, q + 1),
    })
}

/// What a run did after listing.
struct Outcome {
    exported: Option<Vec<Exported>>,
    released: Vec<String>,
    not_released: Vec<(String, &'static str)>,
}

/// Runs `fswal preserved`.
pub fn run(args: &PreservedArgs) -> Result<ExitCode, CliError> {
    let source = open_read_only(&args.target)?;
    if let Some(why) = options_refusal(
        args.release,
        args.export.is_some(),
        source.kind == Kind::SegmentFile,
    ) {
        return Err(CliError::new(why));
    }
    let wal = args
        .target
        .device
        .as_deref()
        .or(args.target.path.as_deref())
        .ok_or_else(|| CliError::new("give a WAL directory, a segment file, or --device"))?
        .to_path_buf();
    // The directory an export must stay out of: the WAL directory, or the directory
    // of a segment file given on its own.
    let wal_dir = match source.kind {
        Kind::Directory => Some(wal.clone()),
        Kind::SegmentFile => Some(match wal.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        }),
        Kind::Device => None,
    };
    let mut store = if args.release {
        // Listed, exported and released under the writer lock, so that no writer
        // changes anything in between.
        drop(source);
        open_for_release(&args.target)?
    } else {
        source.store
    };
    let found = find(&mut store)?;
    let mut outcome = Outcome {
        exported: None,
        released: Vec::new(),
        not_released: Vec::new(),
    };
    if let Some(export) = &args.export {
        outcome.exported = Some(export_all(
            &mut store,
            &found,
            &wal,
            wal_dir.as_deref(),
            export,
        )?);
    }
    if args.release {
        for item in &found.items {
            let line = item_line(&store, item);
            if let Release::Skip(why) = release_of(item) {
                outcome.not_released.push((line, why));
                continue;
            }
            release_item(&mut store, item).map_err(|e| {
                CliError::new(format!(
                    "{e}; released {} of {} items before this one (every item is in the export)",
                    outcome.released.len(),
                    found.items.len()
                ))
            })?;
            outcome.released.push(line);
        }
    }
    let mut out = io::stdout().lock();
    let printed = if args.json {
        write_json(
            &mut out,
            &store,
            &wal,
            &found,
            &outcome,
            args.export.as_deref(),
        )
    } else {
        write_text(&mut out, &store, &found, &outcome, args.export.as_deref())
    };
    printed.map_err(|e| CliError::new(format!("stdout: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn write_json(
    out: &mut impl Write,
    store: &AnyStore,
    wal: &Path,
    found: &Found,
    outcome: &Outcome,
    export: Option<&Path>,
) -> io::Result<()> {
    let (set_aside, torn_copies, quarantine) = counts(&found.items);
    let report = JsonReport {
        source: wal.display().to_string(),
        items: found.items.iter().map(|i| json_item(store, i)).collect(),
        totals: JsonTotals {
            items: found.items.len(),
            set_aside,
            torn_copies,
            quarantine,
            bytes: found.items.iter().map(Item::bytes).sum(),
        },
        not_examined: found
            .not_examined
            .iter()
            .map(|n| JsonNotExamined {
                segment: n.segment,
                file: store.segment_file(n.segment).display().to_string(),
                reason: n.reason.clone(),
            })
            .collect(),
        not_examined_total: found.not_examined_total,
        export: match (export, &outcome.exported) {
            (Some(dir), Some(files)) => Some(JsonExport {
                dir: dir.display().to_string(),
                manifest: dir.join(MANIFEST_FILE_NAME).display().to_string(),
                files: files.len(),
                bytes: files.iter().map(|f| f.bytes).sum(),
            }),
            _ => None,
        },
        released: outcome.released.clone(),
        not_released: outcome
            .not_released
            .iter()
            .map(|(item, reason)| JsonNotReleased {
                item: item.clone(),
                reason,
            })
            .collect(),
    };
    let json = serde_json::to_string(&report).map_err(io::Error::other)?;
    writeln!(out, "{json}")
}

fn write_text(
    out: &mut impl Write,
    store: &AnyStore,
    found: &Found,
    outcome: &Outcome,
    export: Option<&Path>,
) -> io::Result<()> {
    for item in &found.items {
        writeln!(out, "{}", item_line(store, item))?;
    }
    for n in &found.not_examined {
        writeln!(
            out,
            "not examined: {}: segment {}: its header does not verify ({}); `fswal verify` says more",
            store.segment_file(n.segment).display(),
            n.segment,
            n.reason
        )?;
    }
    let unlisted = found.not_examined_total - found.not_examined.len() as u64;
    if unlisted > 0 {
        writeln!(out, "... and {unlisted} more segments not examined")?;
    }
    let (set_aside, torn_copies, quarantine) = counts(&found.items);
    let bytes: u64 = found.items.iter().map(Item::bytes).sum();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if found.items.is_empty() {
        writeln!(
            out,
            "total: nothing preserved (no set-aside tail, torn-tail copy or quarantine entry)"
        )?;
    } else {
        writeln!(
            out,
            "total: {} item{}, {bytes} bytes ({set_aside} set-aside tail{}, {torn_copies} torn-tail cop{}, {quarantine} quarantine entr{})",
            found.items.len(),
            plural(found.items.len()),
            plural(set_aside),
            if torn_copies == 1 { "y" } else { "ies" },
            if quarantine == 1 { "y" } else { "ies" },
        )?;
    }
    if let (Some(dir), Some(files)) = (export, &outcome.exported) {
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        writeln!(
            out,
            "exported {} file{} ({bytes} bytes) to {}, described in {}",
            files.len(),
            plural(files.len()),
            dir.display(),
            dir.join(MANIFEST_FILE_NAME).display()
        )?;
    }
    for line in &outcome.released {
        writeln!(out, "released {line}")?;
    }
    for (line, why) in &outcome.not_released {
        writeln!(out, "not released: {line}: {why}")?;
    }
    Ok(())
}

// Reading a set-aside range one block at a time would cost a read per slot; the copy
// chunk is a whole number of blocks or more, so a chunk never splits fewer slots.
const _: () = assert!(COPY_CHUNK_BYTES >= BLOCK_SIZE_BYTES);

#[cfg(test)]
mod tests {
    use super::*;

    fn aside(first_slot: u32, last_slot: u32) -> SetAside {
        // `SetAside` is non-exhaustive outside the core: take one from a device.
        let mut image = vec![0u8; 64 + 20 * 16_448];
        for slot in [first_slot, last_slot] {
            let at = usize::try_from(block_offset_bytes(slot)).unwrap();
            image[at] = 1;
        }
        let mut dev = fswal_core::mem::MemDevice::from_image(image);
        set_aside_after(&mut dev, first_slot).unwrap().unwrap()
    }

    #[test]
    fn the_range_runs_from_the_first_slot_to_the_end_of_the_last_or_of_the_file() {
        let full = 64 + 20 * 16_448;
        let table = [
            ((4, 6), full, (64 + 4 * 16_448, 64 + 7 * 16_448)),
            ((4, 4), full, (64 + 4 * 16_448, 64 + 5 * 16_448)),
            ((19, 19), full, (64 + 19 * 16_448, full)),
            // A file cut inside its last slot ends the range.
            (
                (4, 6),
                64 + 6 * 16_448 + 100,
                (64 + 4 * 16_448, 64 + 6 * 16_448 + 100),
            ),
        ];
        for ((first, last), len, want) in table {
            let a = aside(first, last);
            assert_eq!((a.first_slot, a.last_slot), (first, last));
            assert_eq!(set_aside_range(&a, len), want, "{first}..={last} in {len}");
        }
    }

    fn tail(segment: u32, first: u32, last: u32, compressed: bool) -> Item {
        let a = aside(first, last);
        let (offset_bytes, end_bytes) = set_aside_range(&a, 64 + 20 * 16_448);
        Item::SetAside(SetAsideTail {
            segment,
            block_count: first,
            aside: a,
            offset_bytes,
            end_bytes,
            compressed,
        })
    }

    fn copy(name: &str, segment: u32, offset_bytes: u64) -> Item {
        Item::TornCopy(TornCopy::new(
            Path::new("/wal").join(name),
            segment,
            offset_bytes,
            10,
        ))
    }

    fn entry(entry: u32, segment: u32, offset_bytes: u64) -> Item {
        Item::Quarantine(QuarantineEntry::new(
            entry,
            segment,
            offset_bytes,
            vec![1; 10],
        ))
    }

    #[test]
    fn export_names_say_where_the_bytes_came_from() {
        let table = [
            (
                tail(1, 10, 12, false),
                "FS.00000001.wal.slots-000010-000012",
            ),
            (tail(0, 4, 4, true), "FS.00000000.wal.slots-000004-000004"),
            (
                copy("FS.00000001.wal.torn-000000016512.1", 1, 16_512),
                "FS.00000001.wal.torn-000000016512.1",
            ),
            (
                entry(7, 3, 82_304),
                "quarantine-07.FS.00000003.wal.torn-000000082304",
            ),
            (
                entry(39, 12, 64),
                "quarantine-39.FS.00000012.wal.torn-000000000064",
            ),
        ];
        for (item, want) in table {
            assert_eq!(export_name(&item), want);
        }
    }

    #[test]
    fn release_zeroes_removes_or_blanks_but_never_a_compressed_segment() {
        let table = [
            (tail(1, 4, 6, false), Some(Release::Zero)),
            (tail(1, 4, 6, true), None),
            (
                copy("FS.00000001.wal.torn-000000016512", 1, 16_512),
                Some(Release::RemoveCopy),
            ),
            (entry(0, 0, 64), Some(Release::BlankEntry)),
        ];
        for (item, want) in table {
            let got = release_of(&item);
            match want {
                Some(want) => assert_eq!(got, want, "{item:?}"),
                None => assert!(
                    matches!(got, Release::Skip(why) if why.contains("compressed")),
                    "{item:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn release_needs_an_export_and_a_whole_log() {
        let table = [
            ((false, false, false), None),
            ((false, true, false), None),
            ((false, true, true), None),
            ((true, true, false), None),
            ((true, false, false), Some("--export")),
            ((true, false, true), Some("--export")),
            ((true, true, true), Some("WAL directory")),
        ];
        for ((release, export, single), want) in table {
            let got = options_refusal(release, export, single);
            match want {
                None => assert_eq!(got, None, "{release} {export} {single}"),
                Some(part) => {
                    assert!(
                        got.is_some_and(
                            |why| why.contains(part) && why.contains("nothing was changed")
                        ),
                        "{release} {export} {single}: {got:?}"
                    )
                }
            }
        }
    }

    #[test]
    fn counts_and_bytes_add_up_by_kind() {
        let items = [
            tail(1, 4, 6, false),
            copy("FS.00000001.wal.torn-000000016512", 1, 16_512),
            entry(0, 0, 64),
            entry(1, 0, 64),
        ];
        assert_eq!(counts(&items), (1, 1, 2));
        // Slots 4 and 6 are non-blank, slot 5 blank: two slots kept, three exported.
        assert_eq!(items[0].bytes(), 2 * 16_448);
        assert_eq!(items[0].export_bytes(), 3 * 16_448);
        assert_eq!(items[1].export_bytes(), 10);
    }
}

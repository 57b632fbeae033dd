//! `fswal salvage [--json] [--blocks-per-segment B] (SRC | --device DEV) DST`: copies
//! everything diagnostic replay salvages from a damaged WAL into a new, valid one.
//!
//! A log with damage in the middle can only be refused by recovery (`record`), and
//! strict replay stops at the damage. Salvage is the way out: it replays SRC in
//! [`Mode::Diagnostic`] (skipping bad blocks, resynchronising on the next block that
//! is valid on its own with larger ids) and appends every event it salvages, in order,
//! to a new WAL at DST, then reports every gap: where it starts (segment, slot, offset,
//! file, reason), how many issues it groups, and the ids that bound what was lost.
//!
//! - SRC (a WAL directory, one segment file, or a raw device) is opened read-only
//!   exactly as `verify` opens it: nothing in it is created or modified.
//! - DST must not exist or must be an empty directory, and must not be SRC or inside
//!   it: salvage never writes into an existing log.
//! - DST appears whole or not at all. The new log is built in a temporary sibling,
//!   `.<DST's name>.salvage-tmp` in DST's parent, through [`WalWriter`] on a
//!   [`DirStore`] (the file backend), in batches, then closed (sealed and synced). Its
//!   segments hold `--blocks-per-segment` slots (default: as many as SRC's first
//!   segment has, when that is a valid segment size, else 4096). Segment headers get
//!   new timestamps, and segments are numbered from 0.
//! - Then the temporary log is replayed strictly, read-only, from scratch: it must be
//!   valid and yield exactly the events salvaged (their count, first and last ids, and
//!   a digest of their bytes). Anything else is an internal error, and success is never
//!   claimed. Only then is it synced and renamed to DST (`rename(2)` replaces an empty
//!   directory), and DST's parent synced. A salvage killed at any point leaves DST as it
//!   was (absent, or empty) and at worst the temporary directory, which the next
//!   salvage to the same DST removes, but only when it is recognisably salvage's own
//!   ([`is_salvage_leftover`]: nothing but segment files, `fswal.meta`, `fswal.mark`,
//!   `.fswal.lock` and the writer's own `.tmp` files) and no salvage holds its lock. A
//!   salvage that fails on its own removes it.
//! - A DST that is a mount point cannot be replaced by a rename (`EBUSY`), nor reached
//!   by one from its parent's file system (`EXDEV`): it is refused before anything is
//!   read or written. The directory DST becomes is the temporary one: an empty DST's
//!   own permissions and owner are not kept.
//! - A gap groups consecutive issues with no salvaged event between them. Its
//!   `lost_after_event_id` is the last event salvaged before it (`None` when none
//!   was), its `lost_before_event_id` the first salvaged after it (`None` when nothing
//!   valid follows: a lost tail). Ids strictly increase, so every lost event had an id
//!   strictly between the two.
//!
//! The report is one summary line and a line per gap, or with `--json` one object as
//! the last line of stdout: `status` (SRC's: `ok`, `truncated`, `corrupt`), `source`,
//! `destination`, `events`, `first_event_id`, `last_event_id`, `segments_written`,
//! `gaps` (at most [`GAPS_LISTED_MAX`], each `segment`, `slot`, `offset`, `file`,
//! `reason`, `issues`, `lost_after_event_id`, `lost_before_event_id`), `gaps_total`,
//! `destination_verified` (always `true`: a report is printed only once it holds).
//!
//! Exit codes:
//!
//! - 0: SRC was entirely valid, and DST holds all of it and verifies.
//! - 1: SRC had damage or truncation; DST holds everything salvaged and verifies; the
//!   gaps (where events may have been lost) are listed.
//! - 2: a usage or I/O error, a refused DST, nothing to salvage (SRC holds no valid
//!   event, so there is no log to write; DST is not created), or the new log failing
//!   its verification. Nothing is claimed, and DST is as it was: the message says so,
//!   and what became of the temporary directory.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use fswal_backends::dir::{CHECKPOINT_FILE_NAME, DirStore, LOCK_FILE_NAME, MARK_FILE_NAME};
use fswal_backends::file::sync_dir;
use fswal_core::checksum::chained_checksum;
use fswal_core::limits::{
    SEGMENT_BLOCKS_DEFAULT, SEGMENT_BLOCKS_MAX, SEGMENT_BLOCKS_MIN, is_valid_segment_blocks,
    slots_in,
};
use fswal_core::store::parse_segment_file_name;
use fswal_core::{
    BlockDevice, Issue, Mode, Replay, RequestEvent, SegmentStore, Status, Step, Summary, WalWriter,
    WriterConfig,
};
use serde::Serialize;

use crate::clock::wall_clock_ns;
use crate::error::CliError;
use crate::progress::{Output, Segments, show_progress_here};
use crate::store::{AnyStore, Backend, Kind, TargetArgs, open_read_only};

/// The most gaps a report lists; `gaps_total` counts them all.
pub const GAPS_LISTED_MAX: usize = 1000;

/// What ends the name of the temporary directory a salvage builds its log in (see
/// [`temporary_name`]).
pub const TEMPORARY_SUFFIX: &str = ".salvage-tmp";

/// The suffix of the temporary files the writer makes before renaming them (segments
/// being created, the checkpoint and the sync mark being replaced).
const WRITER_TEMPORARY_SUFFIX: &str = ".tmp";

/// Where the kernel lists the mounts this process sees.
const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";

/// The most lines of [`MOUNTINFO_PATH`] read when looking for a mount point.
const MOUNTINFO_LINES_MAX: usize = 1 << 20;

/// Arguments of `fswal salvage`.
#[derive(Args, Debug)]
// SRC is optional (`--device` replaces it) but comes before the required DST: a
// single positional is DST. The source's arguments are those of [`TargetArgs`],
// declared here so that the positional is named SRC.
#[command(allow_missing_positional = true)]
pub struct SalvageArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Block slots per segment of DST (16..=524288; default: those of SRC's first
    /// segment when valid, else 4096).
    #[arg(
        long,
        value_name = "B",
        value_parser = clap::value_parser!(u32).range(i64::from(SEGMENT_BLOCKS_MIN)..=i64::from(SEGMENT_BLOCKS_MAX))
    )]
    pub blocks_per_segment: Option<u32>,
    /// The damaged WAL: a directory, or one segment file (`FS.%08u.wal`, or
    /// `.wal.lz4`); opened read-only.
    #[arg(
        value_name = "SRC",
        required_unless_present = "device",
        conflicts_with = "device"
    )]
    pub source: Option<PathBuf>,
    /// A raw block device holding the damaged WAL, instead of SRC; opened read-only.
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// How SRC's segment files are read (a raw device is always read O_DIRECT).
    #[arg(long, value_enum, default_value_t = Backend::File)]
    pub backend: Backend,
    /// The new WAL directory; it must not exist or must be empty.
    #[arg(value_name = "DST")]
    pub destination: PathBuf,
}

impl SalvageArgs {
    /// The source, as every command names a WAL to read.
    #[must_use]
    pub fn target(&self) -> TargetArgs {
        TargetArgs {
            path: self.source.clone(),
            device: self.device.clone(),
            backend: self.backend,
        }
    }
}

/// A digest of a sequence of events: their count, first and last ids, and a hash
/// chained over their bytes one event at a time, so that it does not depend on how
/// the events are cut into blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Events digested.
    pub events: u64,
    /// Id of the first.
    pub first_event_id: Option<u64>,
    /// Id of the last.
    pub last_event_id: Option<u64>,
    /// XXH64 of each event's bytes, seeded with the value after the event before it
    /// (0 before the first).
    pub hash: u64,
}

impl Digest {
    /// Adds `events`, in order.
    pub fn add(&mut self, events: &[RequestEvent]) {
        for event in events {
            self.hash = chained_checksum(core::slice::from_ref(event), self.hash);
        }
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            self.first_event_id.get_or_insert(first.event_id());
            self.last_event_id = Some(last.event_id());
        }
        self.events += events.len() as u64;
    }

    /// The digest in words, for a message.
    #[must_use]
    pub fn describe(&self) -> String {
        let ids = match (self.first_event_id, self.last_event_id) {
            (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
            _ => String::new(),
        };
        format!("{} events{ids}, digest {:#018x}", self.events, self.hash)
    }
}

/// A run of consecutive issues with no salvaged event between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The first issue of the run: where the gap starts and why.
    pub first: Issue,
    /// Issues in the run (at least 1).
    pub issues: u64,
    /// The last event id salvaged before the gap, `None` when none was.
    pub lost_after_event_id: Option<u64>,
    /// The first event id salvaged after the gap, `None` when nothing valid follows.
    pub lost_before_event_id: Option<u64>,
}

/// Groups the issues and salvaged events of a replay, in the order it yields them,
/// into [`Gap`]s.
#[derive(Debug, Default)]
pub struct Gaps {
    /// The gaps closed so far, at most [`GAPS_LISTED_MAX`].
    listed: Vec<Gap>,
    /// Every gap closed so far.
    total: u64,
    /// The gap issues are being added to, until the next salvaged event.
    open: Option<Gap>,
    /// The id of the last salvaged event.
    last_event_id: Option<u64>,
}

impl Gaps {
    /// An issue: it starts a gap, or joins the one no event has closed yet.
    pub fn issue(&mut self, issue: Issue) {
        match &mut self.open {
            Some(gap) => gap.issues = gap.issues.saturating_add(1),
            None => {
                self.open = Some(Gap {
                    first: issue,
                    issues: 1,
                    lost_after_event_id: self.last_event_id,
                    lost_before_event_id: None,
                });
            }
        }
    }

    /// Salvaged events with ids `first_event_id..=last_event_id`: they close the open
    /// gap, if any.
    pub fn events(&mut self, first_event_id: u64, last_event_id: u64) {
        if let Some(mut gap) = self.open.take() {
            gap.lost_before_event_id = Some(first_event_id);
            self.close(gap);
        }
        self.last_event_id = Some(last_event_id);
    }

    /// The end of the replay: a gap still open is a lost tail. Returns the gaps listed
    /// and the count of all of them.
    #[must_use]
    pub fn finish(mut self) -> (Vec<Gap>, u64) {
        if let Some(gap) = self.open.take() {
            self.close(gap);
        }
        (self.listed, self.total)
    }

    fn close(&mut self, gap: Gap) {
        self.total = self.total.saturating_add(1);
        if self.listed.len() < GAPS_LISTED_MAX {
            self.listed.push(gap);
        }
    }
}

/// The block slots per segment of DST when `--blocks-per-segment` is not given: those
/// of SRC's first segment (`first_segment_slots`) when that is a valid segment size,
/// else the default.
#[must_use]
pub fn default_blocks_per_segment(first_segment_slots: Option<u32>) -> u32 {
    first_segment_slots
        .filter(|&slots| is_valid_segment_blocks(slots))
        .unwrap_or(SEGMENT_BLOCKS_DEFAULT)
}

/// What the ids bounding a gap say was lost, for the text report. Ids strictly
/// increase, so a lost event had an id strictly between the two bounds.
#[must_use]
pub fn lost_text(after: Option<u64>, before: Option<u64>) -> String {
    let lowest = after.map_or(Some(1), |a| a.checked_add(1));
    match (lowest, before) {
        (None, _) => "nothing lost (no id follows the last one)".to_string(),
        (Some(lowest), Some(before)) if before <= lowest => {
            format!("no event id lost (the next id salvaged is {before})")
        }
        (Some(lowest), Some(before)) => {
            let highest = before - 1;
            let most = highest - lowest + 1;
            let plural = if most == 1 { "" } else { "s" };
            format!("lost ids {lowest}..={highest} (up to {most} event{plural})")
        }
        (Some(_), None) => match after {
            Some(a) => format!("nothing valid follows id {a}: any event written after it is lost"),
            None => "nothing valid follows: every event written is lost".to_string(),
        },
    }
}

/// What DST is, before salvage writes anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Nothing is there: salvage creates the directory (and missing parents).
    Absent,
    /// An empty directory.
    EmptyDirectory,
    /// A directory holding something.
    NonEmptyDirectory,
    /// Something that is not a directory (a file, a device, a dangling link).
    NotADirectory,
}

/// Why DST is refused, if it is: `inside_source` says whether it is SRC or inside it.
#[must_use]
pub fn destination_refusal(destination: Destination, inside_source: bool) -> Option<&'static str> {
    if inside_source {
        return Some(
            "is the source or inside it; salvage writes the new log somewhere else (nothing was written)",
        );
    }
    match destination {
        Destination::Absent | Destination::EmptyDirectory => None,
        Destination::NonEmptyDirectory => Some(
            "is not empty; salvage writes only into a new or empty directory, never into an existing log (nothing was written)",
        ),
        Destination::NotADirectory => Some(
            "exists and is not a directory; salvage writes only into a new or empty directory (nothing was written)",
        ),
    }
}

/// Looks at what `path` is, following a symbolic link.
fn inspect_destination(path: &Path) -> Result<Destination, CliError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Destination::Absent),
        Err(e) => return Err(CliError::at(path, e)),
        Ok(_) => {}
    }
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        // A link to nothing: not a directory to write into.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Destination::NotADirectory),
        Err(e) => return Err(CliError::at(path, e)),
    };
    if !metadata.is_dir() {
        return Ok(Destination::NotADirectory);
    }
    // One entry is enough to refuse it: only the first is read.
    let first = fs::read_dir(path)
        .map_err(|e| CliError::at(path, e))?
        .next()
        .transpose()
        .map_err(|e| CliError::at(path, e))?;
    Ok(if first.is_none() {
        Destination::EmptyDirectory
    } else {
        Destination::NonEmptyDirectory
    })
}

/// `base` (an existing, resolved directory) joined with `rest` (the part of a path
/// that does not exist yet), or `None` when `rest` climbs with `..` (which the file
/// system would resolve against directories that do not exist).
#[must_use]
pub fn join_missing(base: &Path, rest: &Path) -> Option<PathBuf> {
    let mut joined = base.to_path_buf();
    for component in rest.components() {
        match component {
            Component::Normal(name) => joined.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(joined)
}

/// Where `path` is, with every symbolic link of the part that exists resolved (the
/// part that does not exist yet joined on, refused when it climbs with `..`).
pub fn resolve(path: &Path) -> Result<PathBuf, CliError> {
    // Bounded by the path's components.
    for ancestor in path.ancestors() {
        let existing = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match fs::symlink_metadata(existing) {
            Ok(_) => {
                let base = fs::canonicalize(existing).map_err(|e| CliError::at(existing, e))?;
                let rest = path.strip_prefix(ancestor).unwrap_or(path);
                return join_missing(&base, rest).ok_or_else(|| {
                    CliError::at(
                        path,
                        "has '..' after the part that exists; name the new directory without it (nothing was written)",
                    )
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::at(existing, e)),
        }
    }
    Err(CliError::at(path, "no part of it exists, not even '.'"))
}

/// Refuses `destination` unless it is a new or empty directory outside the source
/// directory `source_dir` (when the source is one); says which of the two it is.
fn check_destination(
    destination: &Path,
    source_dir: Option<&Path>,
) -> Result<Destination, CliError> {
    let inside_source = match source_dir {
        Some(dir) => {
            let dir = fs::canonicalize(dir).map_err(|e| CliError::at(dir, e))?;
            resolve(destination)?.starts_with(dir)
        }
        None => false,
    };
    let found = inspect_destination(destination)?;
    match destination_refusal(found, inside_source) {
        Some(why) => Err(CliError::at(destination, why)),
        None => Ok(found),
    }
}

/// The name of the directory a salvage to a DST named `destination_name` builds its
/// log in, beside DST: `.<destination_name>.salvage-tmp`, hidden and plainly salvage's.
#[must_use]
pub fn temporary_name(destination_name: &OsStr) -> OsString {
    let mut name = OsString::from(".");
    name.push(destination_name);
    name.push(TEMPORARY_SUFFIX);
    name
}

/// Whether a file named `name` is one that salvage's writer makes in the log it
/// builds: a segment file, `fswal.meta`, `fswal.mark`, `.fswal.lock`, or the `.tmp`
/// file a segment, the checkpoint or the sync mark is written under before its rename
/// (a salvage killed in between leaves it). A temporary directory holding anything else
/// is not a leftover of salvage, and is never removed.
#[must_use]
pub fn is_salvage_leftover(name: &str) -> bool {
    if name == LOCK_FILE_NAME {
        return true;
    }
    let base = name.strip_suffix(WRITER_TEMPORARY_SUFFIX).unwrap_or(name);
    base == CHECKPOINT_FILE_NAME
        || base == MARK_FILE_NAME
        || parse_segment_file_name(base).is_some()
}

/// The mount point a line of `/proc/self/mountinfo` names: its fifth field, with the
/// kernel's octal escapes (`\040` for a space, and those of tab, newline and
/// backslash) undone; `None` for a line that is not of that form.
#[must_use]
pub fn mountinfo_mount_point(line: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let field = line.split(' ').nth(4)?;
    let raw = field.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    // Bounded by the field's length: every step consumes one byte or an escape of four.
    while i < raw.len() {
        if raw[i] == b'\\' {
            let digits = raw.get(i + 1..i + 4)?;
            if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                return None;
            }
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).ok()?);
            i += 4;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(OsString::from_vec(out)))
}

/// Whether the existing directory `path` (resolved: no symbolic link in it) is a mount
/// point: on another file system than its parent, or listed as a mount point (a bind
/// mount of the same file system). Without a readable mount list, only the first is
/// seen.
fn is_mount_point(path: &Path) -> Result<bool, CliError> {
    let Some(parent) = path.parent() else {
        // The root directory.
        return Ok(true);
    };
    let dev = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| CliError::at(p, e))
    };
    if dev(path)? != dev(parent)? {
        return Ok(true);
    }
    let Ok(mounts) = fs::read_to_string(MOUNTINFO_PATH) else {
        return Ok(false);
    };
    Ok(mounts
        .lines()
        .take(MOUNTINFO_LINES_MAX)
        .any(|line| mountinfo_mount_point(line).as_deref() == Some(path)))
}

/// Where a salvage builds its log and where it puts it.
#[derive(Debug)]
struct Placement {
    /// DST with every symbolic link of the part that exists resolved: the path the
    /// temporary directory is renamed to.
    target: PathBuf,
    /// The temporary directory beside it, where the log is built.
    building: PathBuf,
    /// Their parent, synced after the rename.
    parent: PathBuf,
}

/// Where a salvage to `destination`, found to be `found`, builds its log; refuses a
/// DST that a rename from beside it could not replace atomically (a mount point).
fn place(destination: &Path, found: Destination) -> Result<Placement, CliError> {
    let target = resolve(destination)?;
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(CliError::at(
            destination,
            "names no directory that salvage can build beside and rename into place (nothing was written)",
        ));
    };
    if found == Destination::EmptyDirectory && is_mount_point(&target)? {
        return Err(CliError::at(
            destination,
            "is a mount point: salvage builds the new log beside DST and renames it into place, which cannot replace a mount point (EBUSY) or cross into another file system (EXDEV); give a new directory inside it (nothing was written)",
        ));
    }
    Ok(Placement {
        building: parent.join(temporary_name(name)),
        parent: parent.to_path_buf(),
        target,
    })
}

/// The first entry of the directory `dir` that salvage's writer does not make (see
/// [`is_salvage_leftover`]), or that is not a regular file, if any.
fn foreign_entry(dir: &Path) -> Result<Option<String>, CliError> {
    let entries = fs::read_dir(dir).map_err(|e| CliError::at(dir, e))?;
    // Bounded by the directory's entries; the first foreign one ends it.
    for entry in entries {
        let entry = entry.map_err(|e| CliError::at(dir, e))?;
        let name = entry.file_name();
        let file = entry
            .file_type()
            .map_err(|e| CliError::at(&entry.path(), e))?
            .is_file();
        match name.to_str() {
            Some(n) if file && is_salvage_leftover(n) => {}
            _ => return Ok(Some(name.to_string_lossy().into_owned())),
        }
    }
    Ok(None)
}

/// Removes the temporary directory `building` that a salvage to `destination` killed
/// before it finished left behind, if there is one; refuses when it is not
/// recognisably salvage's own, or a salvage holds its lock. Returns whether one was
/// removed.
fn remove_leftover(placement: &Placement, destination: &Path) -> Result<bool, CliError> {
    let building = &placement.building;
    let not_ours = |what: String| {
        CliError::at(
            building,
            format!(
                "{what}, so it is not what a salvage to {} that did not finish leaves; remove it yourself or choose another DST (nothing was written)",
                destination.display()
            ),
        )
    };
    match fs::symlink_metadata(building) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(CliError::at(building, e)),
        Ok(m) if !m.is_dir() => return Err(not_ours("exists and is not a directory".into())),
        Ok(_) => {}
    }
    if let Some(name) = foreign_entry(building)? {
        return Err(not_ours(format!(
            "holds {name}, which salvage does not write"
        )));
    }
    // A salvage that is still running holds the writer lock of the log it builds.
    let lock = DirStore::open_for_append(building).map_err(|e| {
        CliError::new(format!(
            "{e}; is another salvage to {} running? (nothing was written)",
            destination.display()
        ))
    })?;
    // Checked again under the lock: nothing can have been added by salvage since.
    if let Some(name) = foreign_entry(building)? {
        return Err(not_ours(format!(
            "holds {name}, which salvage does not write"
        )));
    }
    fs::remove_dir_all(building).map_err(|e| CliError::at(building, e))?;
    drop(lock);
    sync_dir(&placement.parent)?;
    Ok(true)
}

/// The error `e`, which stopped a salvage to `destination`, with what became of the
/// temporary directory: removed if this salvage had created it.
fn abandoned(placement: &Placement, destination: &Path, e: &CliError) -> CliError {
    let building = &placement.building;
    let what = match fs::symlink_metadata(building) {
        // Not created: the error says all there is to say.
        Err(_) => return e.clone(),
        Ok(_) => match fs::remove_dir_all(building) {
            Ok(()) => format!(
                "the partial log built in {} was removed",
                building.display()
            ),
            Err(err) => format!(
                "the partial log built in {} could not be removed ({err}); the next salvage to {} removes it",
                building.display(),
                destination.display()
            ),
        },
    };
    e.clone().context(format!(
        "salvage stopped: {} was not written ({what})",
        destination.display()
    ))
}

/// Renames the verified, synced log in `placement.building` to DST and syncs the
/// parent: DST appears whole, at once.
fn install(placement: &Placement, destination: &Path) -> Result<(), CliError> {
    fs::rename(&placement.building, &placement.target).map_err(|e| {
        CliError::new(format!(
            "cannot rename {} to {}: {e}; {} was not written; the salvaged log, complete and verified, is in {} (the next salvage to {} removes it)",
            placement.building.display(),
            placement.target.display(),
            destination.display(),
            placement.building.display(),
            destination.display()
        ))
    })?;
    sync_dir(&placement.parent).map_err(|e| {
        CliError::new(format!(
            "{e}; {} holds the salvaged log, but its directory entry was not synced: a crash now may lose it",
            destination.display()
        ))
    })
}

/// The whole block slots of the first segment of `store`, `None` without one.
fn first_segment_slots(store: &mut AnyStore) -> Result<Option<u32>, CliError> {
    let Some((first, _)) = store.segment_range()? else {
        return Ok(None);
    };
    Ok(store
        .open_segment(first)?
        .map(|device| slots_in(device.len_bytes())))
}

/// The clock DST's segments are stamped with.
type WallClock = fn() -> u64;

/// Opens the new log at `destination` for append, after checking, under its writer
/// lock, that nothing but the lock is there (the directory was checked empty before
/// replay, but another process could have written into it since).
fn create_log(
    destination: &Path,
    blocks_per_segment: u32,
) -> Result<WalWriter<AnyStore, WallClock>, CliError> {
    // No file prepared ahead: it would be left behind, full size, after `close`.
    let store = DirStore::open_for_append(destination)?.prepare_ahead(false);
    let entries = fs::read_dir(destination).map_err(|e| CliError::at(destination, e))?;
    // Bounded by the directory's entries; the first other than the lock refuses.
    for entry in entries {
        let entry = entry.map_err(|e| CliError::at(destination, e))?;
        if entry.file_name() != LOCK_FILE_NAME {
            return Err(CliError::at(
                destination,
                format!(
                    "{} appeared while salvage was starting; refusing to write into it (nothing was written)",
                    entry.file_name().to_string_lossy()
                ),
            ));
        }
    }
    let store = AnyStore::File(store);
    let clock: WallClock = wall_clock_ns;
    let (writer, _recovery) =
        WalWriter::open(store, clock, WriterConfig::with_blocks(blocks_per_segment)).map_err(
            |e| match DirStore::open_read_only(destination) {
                Ok(view) => CliError::from_core(&AnyStore::File(view), e),
                Err(_) => CliError::new(e.to_string()),
            },
        )?;
    Ok(writer)
}

/// What salvage copied.
#[derive(Debug)]
pub struct Salvaged {
    /// The diagnostic replay's summary of SRC.
    pub summary: Summary,
    /// The events salvaged, as appended to DST.
    pub digest: Digest,
    /// The gaps, at most [`GAPS_LISTED_MAX`].
    pub gaps: Vec<Gap>,
    /// Every gap.
    pub gaps_total: u64,
}

/// Replays `source` in diagnostic mode and appends every event salvaged to a new log
/// at `building`, created on the first one (so that nothing is created when there is
/// nothing to salvage), then closes it. `destination` is DST, for messages. With
/// `show_progress`, a bar on stderr counts the source's segments.
fn copy(
    source: &mut AnyStore,
    building: &Path,
    destination: &Path,
    blocks_per_segment: u32,
    show_progress: bool,
) -> Result<Salvaged, CliError> {
    let mut writer: Option<WalWriter<AnyStore, WallClock>> = None;
    let mut gaps = Gaps::default();
    let mut digest = Digest::default();
    // Only for the bar: a listing that fails is left to replay to report.
    let range = source.segment_range().ok().flatten();
    let mut segments = Segments::new(show_progress, "salvaging", range);
    let mut replay = Replay::new(&mut *source, Mode::Diagnostic);
    // Replay bounds itself: every step moves forward through a finite store.
    loop {
        let step = match replay.step() {
            Ok(Some(step)) => step,
            Ok(None) => break,
            Err(e) => {
                drop(replay);
                return Err(CliError::from_core(source, e));
            }
        };
        match step {
            Step::Issue(issue) => gaps.issue(issue),
            Step::Block(view) => {
                segments.block_of(view.segment);
                let (Some(first), Some(last)) = (view.events.first(), view.events.last()) else {
                    continue;
                };
                gaps.events(first.event_id(), last.event_id());
                digest.add(view.events);
                let log = match &mut writer {
                    Some(log) => log,
                    None => writer.insert(create_log(building, blocks_per_segment)?),
                };
                // Diagnostic replay only accepts valid events with ids above the last
                // accepted one, so a refusal here is a bug, reported as such.
                log.append_batch(view.events)
                    .map_err(|e| CliError::from_core(log.store(), e))?;
            }
            // A segment starting, and any step a later version adds, hold no events.
            _ => {}
        }
    }
    let summary = *replay.summary();
    drop(replay);
    drop(segments);
    let Some(mut log) = writer else {
        let plural = if summary.issues == 1 { "" } else { "s" };
        return Err(CliError::new(format!(
            "nothing to salvage: diagnostic replay found no valid event in the source (it is {}, {} issue{plural}); {} was not created",
            summary.status,
            summary.issues,
            destination.display()
        )));
    };
    log.close()
        .map_err(|e| CliError::from_core(log.store(), e))?;
    drop(log);
    let (gaps, gaps_total) = gaps.finish();
    Ok(Salvaged {
        summary,
        digest,
        gaps,
        gaps_total,
    })
}

/// Replays the new log at `destination` strictly, read-only, from scratch, and checks
/// that it is valid, sealed, and holds exactly the events of `expected`. Returns the
/// number of segments it holds. With `show_progress`, a bar on stderr counts them.
fn verify_destination(
    destination: &Path,
    expected: &Digest,
    show_progress: bool,
) -> Result<u32, CliError> {
    let mut store = AnyStore::File(DirStore::open_read_only(destination)?);
    let mut found = Digest::default();
    let range = store.segment_range().ok().flatten();
    let mut segments = Segments::new(show_progress, "verifying the salvaged log", range);
    let mut replay = Replay::new(&mut store, Mode::Strict);
    // Replay bounds itself: every step moves forward through a finite store.
    loop {
        match replay.step() {
            Ok(Some(Step::Block(view))) => {
                segments.block_of(view.segment);
                found.add(view.events);
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                drop(replay);
                return Err(CliError::from_core(&store, e));
            }
        }
    }
    let summary = *replay.summary();
    drop(replay);
    let problem = if let Some(issue) = &summary.first_issue {
        Some(format!("{} at {}", summary.status, store.issue_line(issue)))
    } else if summary.status != Status::Ok {
        Some(summary.status.to_string())
    } else if summary.open_segment {
        Some("its last segment is not sealed".to_string())
    } else if found != *expected {
        Some(format!(
            "it holds {}, not the {} salvaged",
            found.describe(),
            expected.describe()
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CliError::new(format!(
            "internal error: the new log in {} does not verify as what was salvaged: {problem}",
            destination.display()
        ))),
        None => Ok(summary.segments),
    }
}

#[derive(Serialize)]
struct JsonGap {
    segment: u32,
    slot: Option<u32>,
    offset: u64,
    file: String,
    reason: String,
    issues: u64,
    lost_after_event_id: Option<u64>,
    lost_before_event_id: Option<u64>,
}

#[derive(Serialize)]
struct JsonReport {
    status: &'static str,
    source: String,
    destination: String,
    events: u64,
    first_event_id: Option<u64>,
    last_event_id: Option<u64>,
    segments_written: u32,
    gaps: Vec<JsonGap>,
    gaps_total: u64,
    destination_verified: bool,
}

/// Runs `fswal salvage`.
pub fn run(args: &SalvageArgs) -> Result<ExitCode, CliError> {
    // Salvage is a diagnostic reader: a compressed segment that does not decompress is
    // a gap it reports, not the end of what it can copy.
    let mut source = open_read_only(&args.target())?.skipping_unreadable_compressed();
    let source_path = args
        .source
        .as_deref()
        .or(args.device.as_deref())
        .ok_or_else(|| CliError::new("give a WAL directory, a segment file, or --device"))?;
    let source_dir = (source.kind == Kind::Directory).then_some(source_path);
    let found = check_destination(&args.destination, source_dir)?;
    let placement = place(&args.destination, found)?;
    if remove_leftover(&placement, &args.destination)? {
        eprintln!(
            "fswal: removed {}, left by a salvage to {} that did not finish",
            placement.building.display(),
            args.destination.display()
        );
    }
    let blocks_per_segment = match args.blocks_per_segment {
        Some(blocks) => blocks,
        None => default_blocks_per_segment(first_segment_slots(&mut source.store)?),
    };
    let show_progress = show_progress_here(Output::Report { json: args.json });
    let built = copy(
        &mut source.store,
        &placement.building,
        &args.destination,
        blocks_per_segment,
        show_progress,
    )
    .and_then(|salvaged| {
        let segments = verify_destination(&placement.building, &salvaged.digest, show_progress)?;
        sync_dir(&placement.building)?;
        Ok((salvaged, segments))
    });
    let (salvaged, segments_written) =
        built.map_err(|e| abandoned(&placement, &args.destination, &e))?;
    install(&placement, &args.destination)?;
    source.report_unreadable_compressed();
    let mut out = io::stdout().lock();
    let printed = if args.json {
        let report = JsonReport {
            status: salvaged.summary.status.name(),
            source: source_path.display().to_string(),
            destination: args.destination.display().to_string(),
            events: salvaged.digest.events,
            first_event_id: salvaged.digest.first_event_id,
            last_event_id: salvaged.digest.last_event_id,
            segments_written,
            gaps: salvaged
                .gaps
                .iter()
                .map(|g| JsonGap {
                    segment: g.first.segment,
                    slot: g.first.block,
                    offset: g.first.offset_bytes,
                    file: source
                        .store
                        .segment_file(g.first.segment)
                        .display()
                        .to_string(),
                    reason: g.first.reason.to_string(),
                    issues: g.issues,
                    lost_after_event_id: g.lost_after_event_id,
                    lost_before_event_id: g.lost_before_event_id,
                })
                .collect(),
            gaps_total: salvaged.gaps_total,
            destination_verified: true,
        };
        let json = serde_json::to_string(&report).map_err(|e| CliError::new(e.to_string()))?;
        writeln!(out, "{json}")
    } else {
        write_text(
            &mut out,
            &source.store,
            source_path,
            &args.destination,
            &salvaged,
            segments_written,
        )
    };
    printed.map_err(|e| CliError::new(format!("stdout: {e}")))?;
    Ok(
        if salvaged.summary.status == Status::Ok && salvaged.gaps_total == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

fn write_text(
    out: &mut impl Write,
    store: &AnyStore,
    source: &Path,
    destination: &Path,
    salvaged: &Salvaged,
    segments_written: u32,
) -> io::Result<()> {
    let d = &salvaged.digest;
    let ids = match (d.first_event_id, d.last_event_id) {
        (Some(a), Some(b)) => format!(" (ids {a}..={b})"),
        _ => String::new(),
    };
    let gaps = match salvaged.gaps_total {
        0 => "no gaps (the source is valid)".to_string(),
        1 => "1 gap:".to_string(),
        n => format!("{n} gaps:"),
    };
    let segment_plural = if segments_written == 1 { "" } else { "s" };
    writeln!(
        out,
        "salvaged {} events{ids} from {} into {} in {segments_written} segment{segment_plural}; {gaps}",
        d.events,
        source.display(),
        destination.display()
    )?;
    for gap in &salvaged.gaps {
        let issue_plural = if gap.issues == 1 { "" } else { "s" };
        writeln!(
            out,
            "  {}; {} issue{issue_plural}; {}",
            store.issue_line(&gap.first),
            gap.issues,
            lost_text(gap.lost_after_event_id, gap.lost_before_event_id)
        )?;
    }
    if salvaged.gaps_total > salvaged.gaps.len() as u64 {
        writeln!(
            out,
            "  ... and {} more gaps",
            salvaged.gaps_total - salvaged.gaps.len() as u64
        )?;
    }
    if salvaged.summary.status != Status::Ok {
        writeln!(
            out,
            "{} verifies; the source is {}: any event lost is in a gap listed above",
            destination.display(),
            salvaged.summary.status
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fswal_core::Reason;
    use fswal_core::reference::reference_event;

    use super::*;

    fn issue(segment: u32, block: Option<u32>) -> Issue {
        Issue::new(segment, block, 64, Reason::MissingBlock)
    }

    /// What happened during a replay, in order.
    #[derive(Clone, Copy)]
    enum Seen {
        Issue(u32),
        Events(u64, u64),
    }

    /// A gap as (segment, issues, lost after, lost before).
    type GapRow = (u32, u64, Option<u64>, Option<u64>);

    fn gaps_of(seen: &[Seen]) -> (Vec<GapRow>, u64) {
        let mut gaps = Gaps::default();
        for s in seen {
            match *s {
                Seen::Issue(segment) => gaps.issue(issue(segment, None)),
                Seen::Events(a, b) => gaps.events(a, b),
            }
        }
        let (listed, total) = gaps.finish();
        let listed = listed
            .iter()
            .map(|g| {
                (
                    g.first.segment,
                    g.issues,
                    g.lost_after_event_id,
                    g.lost_before_event_id,
                )
            })
            .collect();
        (listed, total)
    }

    #[test]
    fn issues_with_no_event_between_them_are_one_gap() {
        use Seen::{Events as E, Issue as I};
        type Row = (&'static [Seen], &'static [GapRow]);
        let table: &[Row] = &[
            (&[E(1, 256), E(257, 512)], &[]),
            (&[], &[]),
            (&[I(0)], &[(0, 1, None, None)]),
            (&[I(0), E(257, 512)], &[(0, 1, None, Some(257))]),
            (
                &[E(1, 256), I(0), I(1), I(1), E(1025, 1280)],
                &[(0, 3, Some(256), Some(1025))],
            ),
            (
                &[E(1, 256), I(0), E(513, 768), I(2), E(900, 901), I(3), I(3)],
                &[
                    (0, 1, Some(256), Some(513)),
                    (2, 1, Some(768), Some(900)),
                    (3, 2, Some(901), None),
                ],
            ),
        ];
        for (row, (seen, want)) in table.iter().enumerate() {
            let (listed, total) = gaps_of(seen);
            assert_eq!(listed, *want, "row {row}");
            assert_eq!(total, want.len() as u64, "row {row}");
        }
    }

    #[test]
    fn gaps_beyond_the_cap_are_counted_not_listed() {
        let mut gaps = Gaps::default();
        let extra = 5u64;
        for id in 1..=(GAPS_LISTED_MAX as u64 + extra) {
            gaps.issue(issue(0, Some(1)));
            gaps.events(2 * id, 2 * id);
        }
        let (listed, total) = gaps.finish();
        assert_eq!(listed.len(), GAPS_LISTED_MAX);
        assert_eq!(total, GAPS_LISTED_MAX as u64 + extra);
        assert_eq!(listed[1].lost_after_event_id, Some(2));
        assert_eq!(listed[1].lost_before_event_id, Some(4));
    }

    #[test]
    fn default_segment_size_follows_a_valid_first_segment() {
        let table = [
            (None, 4096),
            (Some(0), 4096),
            (Some(15), 4096),
            (Some(16), 16),
            (Some(1000), 1000),
            (Some(524_288), 524_288),
            (Some(524_289), 4096),
        ];
        for (slots, want) in table {
            assert_eq!(default_blocks_per_segment(slots), want, "{slots:?}");
        }
    }

    #[test]
    fn lost_ids_are_those_strictly_between_the_bounds() {
        let table = [
            (
                Some(5376),
                Some(5633),
                "lost ids 5377..=5632 (up to 256 events)",
            ),
            (Some(4), Some(6), "lost ids 5..=5 (up to 1 event)"),
            (
                Some(4096),
                Some(4097),
                "no event id lost (the next id salvaged is 4097)",
            ),
            (None, Some(257), "lost ids 1..=256 (up to 256 events)"),
            (
                None,
                Some(1),
                "no event id lost (the next id salvaged is 1)",
            ),
            (
                Some(8960),
                None,
                "nothing valid follows id 8960: any event written after it is lost",
            ),
            (
                None,
                None,
                "nothing valid follows: every event written is lost",
            ),
            (
                Some(u64::MAX),
                None,
                "nothing lost (no id follows the last one)",
            ),
        ];
        for (after, before, want) in table {
            assert_eq!(lost_text(after, before), want, "{after:?} {before:?}");
        }
    }

    #[test]
    fn only_a_new_or_empty_directory_outside_the_source_is_written() {
        use Destination::{Absent, EmptyDirectory, NonEmptyDirectory, NotADirectory};
        let table = [
            (Absent, false, None),
            (EmptyDirectory, false, None),
            (NonEmptyDirectory, false, Some("is not empty")),
            (NotADirectory, false, Some("exists and is not a directory")),
            (Absent, true, Some("inside")),
            (EmptyDirectory, true, Some("inside")),
            (NonEmptyDirectory, true, Some("inside")),
        ];
        for (destination, inside, want) in table {
            let got = destination_refusal(destination, inside);
            match want {
                None => assert_eq!(got, None, "{destination:?} {inside}"),
                Some(part) => {
                    assert!(
                        got.is_some_and(
                            |why| why.contains(part) && why.contains("nothing was written")
                        ),
                        "{destination:?} {inside}: {got:?}"
                    )
                }
            }
        }
    }

    #[test]
    fn the_missing_part_of_a_path_may_not_climb() {
        let base = Path::new("/srv/logs");
        let table: [(&str, Option<&str>); 5] = [
            ("", Some("/srv/logs")),
            ("new", Some("/srv/logs/new")),
            ("./a/./b", Some("/srv/logs/a/b")),
            ("a/../b", None),
            ("..", None),
        ];
        for (rest, want) in table {
            assert_eq!(
                join_missing(base, Path::new(rest)),
                want.map(PathBuf::from),
                "{rest}"
            );
        }
    }

    #[test]
    fn the_temporary_directory_is_a_hidden_sibling_named_after_dst() {
        let table = [
            ("b", ".b.salvage-tmp"),
            ("salvaged.wal", ".salvaged.wal.salvage-tmp"),
            (".hidden", "..hidden.salvage-tmp"),
        ];
        for (name, want) in table {
            assert_eq!(temporary_name(OsStr::new(name)), OsStr::new(want), "{name}");
        }
    }

    #[test]
    fn only_what_the_writer_makes_is_a_leftover() {
        let table = [
            ("FS.00000000.wal", true),
            ("FS.99999999.wal", true),
            ("FS.00000003.wal.tmp", true),
            ("fswal.meta", true),
            ("fswal.meta.tmp", true),
            ("fswal.mark", true),
            ("fswal.mark.tmp", true),
            (".fswal.lock", true),
            (".fswal.lock.tmp", false),
            ("FS.00000000.wal.lz4", false),
            ("FS.00000000.wal.prep", false),
            ("FS.0000000.wal", false),
            ("FS.00000000.wal.tmp.tmp", false),
            ("notes.txt", false),
            ("", false),
            (".tmp", false),
        ];
        for (name, want) in table {
            assert_eq!(is_salvage_leftover(name), want, "{name:?}");
        }
    }

    #[test]
    fn mount_points_are_read_from_the_fifth_field_unescaped() {
        let table: [(&str, Option<&str>); 6] = [
            (
                "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw",
                Some("/mnt/parent"),
            ),
            ("22 1 0:21 / / rw,relatime - ext4 /dev/vda rw", Some("/")),
            (
                "45 27 0:40 / /tmp/with\\040space\\011tab rw - tmpfs none rw",
                Some("/tmp/with space\ttab"),
            ),
            (
                "45 27 0:40 / /tmp/back\\134slash rw - tmpfs none rw",
                Some("/tmp/back\\slash"),
            ),
            ("45 27 0:40 / /tmp/bad\\09 rw - tmpfs none rw", None),
            ("too few fields", None),
        ];
        for (line, want) in table {
            assert_eq!(
                mountinfo_mount_point(line),
                want.map(PathBuf::from),
                "{line}"
            );
        }
    }

    #[test]
    fn the_digest_does_not_depend_on_how_events_are_cut() {
        let events: Vec<RequestEvent> = (1..=600).map(reference_event).collect();
        let mut whole = Digest::default();
        whole.add(&events);
        let mut cut = Digest::default();
        for run in events.chunks(7) {
            cut.add(run);
        }
        assert_eq!(whole, cut);
        assert_eq!(
            (whole.events, whole.first_event_id, whole.last_event_id),
            (600, Some(1), Some(600))
        );
        // One event more, less, or changed is seen.
        let mut fewer = Digest::default();
        fewer.add(&events[..599]);
        assert_ne!(fewer, whole);
        let mut changed = events.clone();
        changed[300] = reference_event(1_000_000);
        let mut other = Digest::default();
        other.add(&changed);
        assert_ne!(other.hash, whole.hash);
    }
}

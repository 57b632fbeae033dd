//! What a WAL directory holds, as the messages that ship it: the places strict replay
//! verifies, in log order, and the bytes at each.

use std::path::Path;

use fswal_backends::dir::DirStore;
use fswal_core::segment_header::HeaderState;
use fswal_core::{Mode, Replay, Step};

use bytes::Bytes;

use crate::error::{ReplicateError, log_error, refuse_corrupt};
use crate::message::{Kind, Message, Position};
use crate::replica::read_message_bytes;

/// One place of a verified log, with the last event id the log holds once it is
/// applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// What the message there is.
    pub kind: Kind,
    /// Where.
    pub position: Position,
    /// On a start: the segment's block slots.
    pub slots: u32,
    /// The last event id once applied.
    pub last_event_id: u64,
}

/// The places of the log in `dir` that strict replay verifies, in order: each segment's
/// start, its valid blocks, and its seal when it is sealed. An empty open segment after
/// the last one holding data (a C++ recorder's segment prepared ahead of need) is left
/// out: it holds nothing, and a writer reopening the log removes it. A log damaged
/// before its end is refused; a torn tail ends the places where the valid prefix ends.
pub fn verified_places(dir: &Path) -> Result<Vec<Place>, ReplicateError> {
    let mut store = DirStore::open_read_only(dir)?;
    let mut replay = Replay::new(&mut store, Mode::Strict);
    let mut places: Vec<Place> = Vec::new();
    let mut last_event_id = 0u64;
    let mut sealed: Option<(u32, u32)> = None;
    let pending_seal = |places: &mut Vec<Place>, sealed: &mut Option<(u32, u32)>, last: u64| {
        if let Some((segment, _)) = sealed.take() {
            places.push(Place {
                kind: Kind::Seal,
                position: Position::seal(segment),
                slots: 0,
                last_event_id: last,
            });
        }
    };
    loop {
        let step = replay
            .step()
            .map_err(|e| log_error(dir, format!("replay failed: {e}")))?;
        let Some(step) = step else { break };
        match step {
            Step::Segment(info) => {
                pending_seal(&mut places, &mut sealed, last_event_id);
                places.push(Place {
                    kind: Kind::Start,
                    position: Position::start(info.index),
                    slots: info.slots,
                    last_event_id,
                });
                if let Some(HeaderState::Sealed(totals)) = info.state {
                    sealed = Some((info.index, totals.block_count));
                }
            }
            Step::Block(view) => {
                if let Some(last) = view.events.last() {
                    last_event_id = last.event_id();
                }
                places.push(Place {
                    kind: Kind::Block,
                    position: Position::block(view.segment, view.slot),
                    slots: 0,
                    last_event_id,
                });
            }
            Step::Issue(_) => {}
            _ => {}
        }
    }
    let summary = *replay.summary();
    if let Some(e) = refuse_corrupt(
        dir,
        &summary,
        "only a log that verifies strictly is shipped",
    ) {
        return Err(e);
    }
    // A sealed segment is complete only when replay read all of its blocks: a problem
    // inside it ends the valid prefix before its seal.
    if summary.first_issue.is_none() {
        pending_seal(&mut places, &mut sealed, last_event_id);
    }
    // Empty starts at the end (segments prepared ahead of need) hold nothing.
    while places.last().is_some_and(|p| p.kind == Kind::Start) {
        places.pop();
    }
    Ok(places)
}

/// The message at `place` of the log in `dir`, its bytes read again and checked to be
/// there.
pub fn message_at(store: &mut DirStore, place: &Place) -> Result<Message, ReplicateError> {
    let bytes = read_message_bytes(store, place.position)?.ok_or_else(|| {
        log_error(
            store.path(),
            format!("{} is no longer there", place.position),
        )
    })?;
    let payload = Bytes::from(bytes);
    let p = place.position;
    Ok(match place.kind {
        Kind::Start => Message::start(p.segment, place.slots, payload, place.last_event_id),
        Kind::Block => Message::block(
            p.segment,
            p.slot().unwrap_or(0),
            payload,
            place.last_event_id,
        ),
        Kind::Seal => Message::seal(p.segment, payload, place.last_event_id),
        Kind::Fence => return Err(ReplicateError::LogicBug("a fence among a log's places")),
    })
}

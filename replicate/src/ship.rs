//! Shipping a directory: publishing what a WAL directory holds that its stream lacks.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::path::Path;
use std::time::{Duration, Instant};

use fswal_backends::dir::DirStore;

use crate::error::ReplicateError;
use crate::message::{EPOCH_FIRST, Kind, Position};
use crate::nats::{LogStream, PUBLISH_IN_FLIGHT_MAX, Stored};
use crate::replica::check_held;
use crate::source::{Place, message_at, verified_places};

/// Fences looked past, from the stream's end, to find the last message of the log.
const FENCES_MAX: u64 = 1000;
/// How long a shipment keeps retrying requests that fail (a server down, a stream
/// leader being elected) before it gives up.
pub const SHIP_RETRY_WAIT_MAX: Duration = Duration::from_secs(60);
/// The pause between two attempts.
const SHIP_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What a shipment did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shipped {
    /// Messages published.
    pub messages: u64,
    /// The last event id the stream holds afterwards (0: none).
    pub last_event_id: u64,
    /// The stream's last sequence afterwards.
    pub last_sequence: u64,
}

/// Where a stream ends, as one read of it saw it.
#[derive(Clone, Debug)]
pub struct StreamEnd {
    /// The stream's last message of the log (not a fence); `None` for a stream without
    /// one.
    pub log_end: Option<Stored>,
    /// The stream's writer epoch: the epoch of its last message, fences included.
    pub epoch: u64,
    /// The stream's last sequence when it was read (0: empty).
    pub last_sequence: u64,
}

/// Where `stream` ends: its last log message, its epoch and its last sequence, all
/// from the same read, so that a publish expecting that sequence extends exactly the
/// message checked.
pub async fn stream_end(stream: &LogStream) -> Result<StreamEnd, ReplicateError> {
    let Some(last) = stream.last().await? else {
        return Ok(StreamEnd {
            log_end: None,
            epoch: EPOCH_FIRST,
            last_sequence: 0,
        });
    };
    let (epoch, last_sequence) = (last.message.epoch, last.sequence);
    let end = |log_end| StreamEnd {
        log_end,
        epoch,
        last_sequence,
    };
    let mut at = last;
    for _ in 0..FENCES_MAX {
        if at.message.kind != Kind::Fence {
            return Ok(end(Some(at)));
        }
        if at.sequence <= 1 {
            return Ok(end(None));
        }
        at = stream.message(at.sequence - 1).await?;
    }
    Err(ReplicateError::nats(
        "stream end",
        stream.name(),
        format!("more than {FENCES_MAX} fences in a row"),
    ))
}

/// Publishes, at writer epoch `epoch`, every message of the log in `dir` after the
/// stream's end. The stream's end must be a message `dir` holds identically (the
/// stream is a prefix of the directory's log); a stream at a later epoch is
/// [`ReplicateError::Fenced`]. Publishes are pipelined; each expects the stream's last
/// sequence to be the one before it, so no other writer's message can slip between.
/// A request that fails (a server down, a leader election) is retried, from where the
/// stream then ends, for up to [`SHIP_RETRY_WAIT_MAX`]; publishes that landed before
/// the failure are not published twice (the stream's end moved past them, and their
/// message ids deduplicate any still in flight).
pub async fn ship_dir(
    dir: &Path,
    stream: &LogStream,
    epoch: u64,
) -> Result<Shipped, ReplicateError> {
    // The directory is verified once: a retry goes on from where the stream then ends,
    // over the same places.
    let places = verified_places(dir)?;
    let started = Instant::now();
    let mut confirmed = 0u64;
    loop {
        match ship_once(dir, &places, stream, epoch, &mut confirmed).await {
            Ok(mut shipped) => {
                shipped.messages = confirmed;
                return Ok(shipped);
            }
            Err(ReplicateError::Nats { .. }) if started.elapsed() < SHIP_RETRY_WAIT_MAX => {
                tokio::time::sleep(SHIP_RETRY_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn ship_once(
    dir: &Path,
    places: &[Place],
    stream: &LogStream,
    epoch: u64,
    confirmed: &mut u64,
) -> Result<Shipped, ReplicateError> {
    let mut store = DirStore::open_read_only(dir)?;
    let StreamEnd {
        log_end,
        epoch: stream_epoch,
        last_sequence,
    } = stream_end(stream).await?;
    if stream_epoch > epoch {
        return Err(ReplicateError::Fenced {
            stream: stream.name().to_owned(),
            own_epoch: epoch,
            stream_epoch,
        });
    }
    let mut expected = last_sequence;
    let mut after: Option<Position> = None;
    let mut last_event_id = 0;
    if let Some(end) = &log_end {
        check_held(
            &mut store,
            stream.name(),
            dir,
            end,
            "the stream is ahead of the directory (`fswal follow` fetches what it lacks)",
        )?;
        after = Some(end.message.position);
        last_event_id = end.message.last_event_id;
    }
    let mut in_flight = VecDeque::new();
    let mut shipped = Shipped::default();
    for place in places
        .iter()
        .filter(|p| after.is_none_or(|a| p.position > a))
    {
        let message = message_at(&mut store, place)?.at_epoch(epoch);
        let ack = stream.publish(&message, expected).await?;
        expected += 1;
        in_flight.push_back((expected, ack.into_future()));
        last_event_id = place.last_event_id;
        if in_flight.len() >= PUBLISH_IN_FLIGHT_MAX {
            if let Some((seq, ack)) = in_flight.pop_front() {
                confirm(stream, seq, ack.await)?;
                *confirmed += 1;
            }
        }
    }
    while let Some((seq, ack)) = in_flight.pop_front() {
        confirm(stream, seq, ack.await)?;
        *confirmed += 1;
    }
    shipped.last_event_id = last_event_id;
    shipped.last_sequence = expected;
    Ok(shipped)
}

fn confirm(
    stream: &LogStream,
    sequence: u64,
    ack: Result<
        async_nats::jetstream::publish::PublishAck,
        async_nats::jetstream::context::PublishError,
    >,
) -> Result<(), ReplicateError> {
    let ack = ack.map_err(|e| ReplicateError::nats("publish", stream.name(), e))?;
    if ack.sequence != sequence {
        return Err(ReplicateError::nats(
            "publish",
            stream.name(),
            format!(
                "stored at sequence {} where {sequence} was expected{}",
                ack.sequence,
                if ack.duplicate { " (a duplicate)" } else { "" }
            ),
        ));
    }
    Ok(())
}

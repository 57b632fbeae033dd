//! Following a stream: extending a [`Replica`] with the stream's messages as they come.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::error::ReplicateError;
use crate::message::Message;
use crate::nats::{LogStream, Stored};
use crate::replica::{Applied, Replica};
use crate::ship::{StreamEnd, stream_end};

/// A replica syncs at least after this many written messages (4 MiB of blocks)...
pub const SYNC_EVERY_MESSAGES: u64 = 256;
/// ...and whenever no message came for this long.
pub const IDLE_SYNC_AFTER: Duration = Duration::from_millis(20);
/// How often a follower reports its progress (and looks up the stream's end for lag).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A follower's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The stream sequence of the last message applied.
    pub sequence: u64,
    /// The last event id the replica holds durably.
    pub durable_event_id: u64,
    /// Events the stream holds that the replica does not yet hold durably.
    pub lag_events: u64,
    /// How long ago the stream stored the oldest message not yet applied (0 when
    /// caught up), in ms.
    pub lag_ms: u64,
}

/// Follows `stream` into `replica` until the replica durably holds event `until`
/// (forever without one, until an error), calling `report` with progress every
/// [`REPORT_EVERY`] and once at the end. The first message read is the one at the
/// replica's end, which must match what the replica holds.
pub async fn follow(
    stream: &LogStream,
    replica: &mut Replica,
    until: Option<u64>,
    mut report: impl FnMut(&Progress),
) -> Result<Progress, ReplicateError> {
    let mut progress = Progress {
        durable_event_id: replica.durable_event_id(),
        ..Progress::default()
    };
    if until.is_some_and(|id| replica.durable_event_id() >= id) {
        report(&progress);
        return Ok(progress);
    }
    let start = stream.first_after(replica.end()).await?;
    // Re-read the message at the replica's end, to check the replica holds it.
    let from = if replica.end().is_some() {
        start.saturating_sub(1).max(1)
    } else {
        start
    };
    let mut messages = stream.read_from(from).await?;
    let mut written = 0u64;
    let mut last_report = Instant::now();
    let mut stream_last_event = 0u64;
    loop {
        let next = tokio::time::timeout(IDLE_SYNC_AFTER, messages.next()).await;
        let caught_up = match next {
            Ok(Some(Ok(msg))) => {
                let info = msg
                    .info()
                    .map_err(|e| ReplicateError::nats("consume", stream.name(), e))?;
                let sequence = info.stream_sequence;
                let pending = info.pending;
                let stored_ts_ns =
                    u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
                let headers = msg.message.headers.clone().unwrap_or_default();
                let message = Message::from_parts(&headers, msg.message.payload.clone()).map_err(
                    |source| ReplicateError::Message {
                        stream: stream.name().to_owned(),
                        sequence,
                        source,
                    },
                )?;
                let stored = Stored {
                    sequence,
                    message,
                    stored_ts_ns,
                };
                if replica.apply(&stored)? == Applied::Written {
                    written += 1;
                }
                progress.sequence = sequence;
                progress.lag_ms = if pending == 0 {
                    0
                } else {
                    fswal_core::writer::wall_clock_ns().saturating_sub(stored_ts_ns) / 1_000_000
                };
                if written >= SYNC_EVERY_MESSAGES {
                    written = 0;
                    progress.durable_event_id = replica.sync()?;
                }
                pending == 0
            }
            Ok(Some(Err(e))) => return Err(ReplicateError::nats("consume", stream.name(), e)),
            Ok(None) => {
                return Err(ReplicateError::nats(
                    "consume",
                    stream.name(),
                    "the consumer ended",
                ));
            }
            Err(_idle) => {
                progress.durable_event_id = replica.sync()?;
                written = 0;
                progress.lag_ms = 0;
                true
            }
        };
        // With a target, the replica stops once it holds it and has applied everything
        // the stream held then (a seal right after the target's block included).
        let reached = until.is_some_and(|id| replica.last_event_id() >= id) && caught_up;
        if reached {
            progress.durable_event_id = replica.sync()?;
        }
        if last_report.elapsed() >= REPORT_EVERY || reached {
            last_report = Instant::now();
            // The lag is a report: a stream that cannot be asked now (a leader being
            // elected) leaves the last figure, and following goes on.
            if let Ok(StreamEnd {
                log_end: Some(end), ..
            }) = stream_end(stream).await
            {
                stream_last_event = end.message.last_event_id;
            }
            progress.lag_events = stream_last_event.saturating_sub(progress.durable_event_id);
            report(&progress);
            if reached {
                return Ok(progress);
            }
        }
    }
}

//! [`LogStream`]: one replicated log's JetStream stream, and the few requests fswal
//! makes of it.
//!
//! A log's stream is named by the user (`--stream NAME`) and holds one subject,
//! `fswal.NAME`: one subject keeps every message in publish order, which is the log's
//! order. The stream keeps every message (no limits): archiving moves sealed segments
//! to an object store, and the stream is the replicas' source.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use async_nats::{Client, ConnectOptions, ServerAddr};

use crate::error::ReplicateError;
use crate::message::{Message, Position};

/// How long a request to the servers (a publish acknowledgement included) may take
/// before it counts as failed. A stream leader election on a loopback cluster takes a
/// few seconds; a request that fails is retried by whoever made it, within their own
/// limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes in flight (sent, not yet acknowledged) at most: 1024 blocks are 16 MiB.
pub const PUBLISH_IN_FLIGHT_MAX: usize = 1024;
/// The longest stream name: JetStream's limit is higher, but a name this long is a
/// mistake, and it goes into file names on the servers.
pub const STREAM_NAME_LEN_MAX: usize = 64;
/// How long JetStream remembers a message id to deduplicate a retry by.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Probes of a binary search for a position: enough for any stream sequence.
const SEARCH_PROBES_MAX: u32 = 70;

/// Connects to the servers in `urls`, a comma-separated list (`nats://host:port,...`).
/// The client reconnects by itself, to any of them, for as long as it lives.
pub async fn connect(urls: &str) -> Result<Client, ReplicateError> {
    let addrs = parse_urls(urls)?;
    ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .max_reconnects(None)
        .connect(addrs)
        .await
        .map_err(|e| ReplicateError::nats("connect", urls, e))
}

/// The servers of a `--nats` list.
pub fn parse_urls(urls: &str) -> Result<Vec<ServerAddr>, ReplicateError> {
    let addrs: Result<Vec<ServerAddr>, _> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::parse::<ServerAddr>)
        .collect();
    match addrs {
        Ok(a) if !a.is_empty() => Ok(a),
        Ok(_) => Err(ReplicateError::nats("connect", urls, "no server URL given")),
        Err(e) => Err(ReplicateError::nats("connect", urls, e)),
    }
}

/// Checks a stream (or bucket) name: letters, digits, `-` and `_`, 1 to
/// [`STREAM_NAME_LEN_MAX`] of them. NATS reserves `.`, `*`, `>` and spaces.
pub fn check_name(name: &str) -> Result<(), ReplicateError> {
    let ok = !name.is_empty()
        && name.len() <= STREAM_NAME_LEN_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplicateError::nats(
            "stream",
            name,
            format!(
                "a stream or bucket name is 1 to {STREAM_NAME_LEN_MAX} letters, digits, '-' or '_'"
            ),
        ))
    }
}

/// A message read back from the stream.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Its stream sequence.
    pub sequence: u64,
    /// The message.
    pub message: Message,
    /// When the stream stored it, ns since the Unix epoch.
    pub stored_ts_ns: u64,
}

/// A replicated log's stream.
#[derive(Clone, Debug)]
pub struct LogStream {
    js: jetstream::Context,
    stream: stream::Stream,
    name: String,
    subject: String,
}

impl LogStream {
    fn context(client: Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .max_ack_inflight(PUBLISH_IN_FLIGHT_MAX)
            .build(client)
    }

    /// The stream `name`, which must exist.
    pub async fn open(client: Client, name: &str) -> Result<Self, ReplicateError> {
        check_name(name)?;
        let js = Self::context(client);
        let stream = js
            .get_stream(name)
            .await
            .map_err(|e| ReplicateError::nats("stream info", name, e))?;
        Ok(Self::with(js, stream, name))
    }

    /// The stream `name`, created (file storage, `replicas` replicas, one subject) when
    /// it does not exist. An existing stream is used as it is.
    pub async fn open_or_create(
        client: Client,
        name: &str,
        replicas: usize,
    ) -> Result<Self, ReplicateError> {
        check_name(name)?;
        let js = Self::context(client);
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![subject_of(name)],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| ReplicateError::nats("create stream", name, e))?;
        Ok(Self::with(js, stream, name))
    }

    fn with(js: jetstream::Context, stream: stream::Stream, name: &str) -> Self {
        Self {
            js,
            stream,
            name: name.to_owned(),
            subject: subject_of(name),
        }
    }

    /// The stream's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's first and last sequence (`(0, 0)`, or first = last + 1, when it is
    /// empty).
    pub async fn bounds(&self) -> Result<(u64, u64), ReplicateError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| ReplicateError::nats("stream info", &self.name, e))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The message at `sequence`, decoded.
    pub async fn message(&self, sequence: u64) -> Result<Stored, ReplicateError> {
        let raw = self.stream.get_raw_message(sequence).await.map_err(|e| {
            ReplicateError::nats(
                "get message",
                &self.name,
                format!("sequence {sequence}: {e}"),
            )
        })?;
        let message = Message::from_parts(&raw.headers, raw.payload).map_err(|source| {
            ReplicateError::Message {
                stream: self.name.clone(),
                sequence,
                source,
            }
        })?;
        let stored_ts_ns = u64::try_from(raw.time.unix_timestamp_nanos()).unwrap_or(0);
        Ok(Stored {
            sequence,
            message,
            stored_ts_ns,
        })
    }

    /// The stream's last message, or `None` when it is empty.
    pub async fn last(&self) -> Result<Option<Stored>, ReplicateError> {
        let (first, last) = self.bounds().await?;
        if last == 0 || last < first {
            return Ok(None);
        }
        self.message(last).await.map(Some)
    }

    /// The sequence of the first message whose position is after `after` (after
    /// nothing: the first message), or the last sequence + 1 when there is none.
    /// Positions never decrease along the stream, so a binary search finds it.
    pub async fn first_after(&self, after: Option<Position>) -> Result<u64, ReplicateError> {
        let (first, last) = self.bounds().await?;
        let (mut lo, mut hi) = (first.max(1), last.saturating_add(1));
        let Some(after) = after else {
            return Ok(lo.min(hi));
        };
        for _ in 0..SEARCH_PROBES_MAX {
            if lo >= hi {
                return Ok(lo);
            }
            let mid = lo + (hi - lo) / 2;
            if self.message(mid).await?.message.position > after {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Err(ReplicateError::LogicBug(
            "a binary search over the stream did not end",
        ))
    }

    /// Publishes `message` expecting the stream's last sequence to be `expected_last`,
    /// and returns the acknowledgement to wait for.
    pub async fn publish(
        &self,
        message: &Message,
        expected_last: u64,
    ) -> Result<jetstream::context::PublishAckFuture, ReplicateError> {
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(message.headers())
            .message_id(message.msg_id())
            .expected_last_sequence(expected_last);
        self.js
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(|e| ReplicateError::nats("publish", &self.name, e))
    }

    /// An ordered consumer of the stream from `sequence` on: messages come in stream
    /// order, once each, and the consumer recreates itself after a server failure.
    pub async fn read_from(
        &self,
        sequence: u64,
    ) -> Result<jetstream::consumer::pull::Ordered, ReplicateError> {
        let config = jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence.max(1),
            },
            ..Default::default()
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| ReplicateError::nats("create consumer", &self.name, e))?;
        consumer
            .messages()
            .await
            .map_err(|e| ReplicateError::nats("consume", &self.name, e))
    }
}

/// The one subject of the stream `name`.
#[must_use]
pub fn subject_of(name: &str) -> String {
    format!("fswal.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_request() {
        assert!(check_name("orders-1_a").is_ok());
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_lists_split_on_commas_and_an_empty_one_is_refused() {
        let addrs = parse_urls("nats://127.0.0.1:4222, nats://127.0.0.1:4223").expect("parses");
        assert_eq!(addrs.len(), 2);
        assert!(parse_urls(" , ").is_err());
    }
}

//! The relay: copies every committed event from the log to JetStream, in seq order, once.
//!
//! Why it exists: the log (one redb file) is the record; JetStream is how the other roles hear
//! of events (SPEC §4, §5). The relay only *reads* the log, so a NATS outage can never block or
//! fail a command: the log keeps committing, the relay falls behind, and it catches up when NATS
//! is back.
//!
//! How an event reaches the stream once and in order:
//! - Every message carries `Nats-Expected-Last-Sequence` = seq − 1, so the stream's sequence *is*
//!   the log's seq. Pipelining needs this: if seq 6 is lost in flight when a connection drops but
//!   seq 7 (sent later, from the client's buffer) gets through, an unconditional publish would
//!   store 7 before the retried 6, and a consumer that skips seq ≤ its checkpoint would never see
//!   6. With the header the server refuses 7 until 6 is there.
//! - Every session (the start, and each retry) begins by reconciling with the stream: its last
//!   sequence `L` must be an event of this log (message `L` carries event `L`'s id), and
//!   publishing resumes at `L + 1`. So a re-publish is rare, and when a copy sent before a
//!   failure lands after the reconcile, the server refuses the re-publish ("wrong last
//!   sequence"; it checks that before de-duplication) and the relay reconciles again at once.
//!   This also heals a cursor lost in a crash (nothing is re-published) and a stream that was
//!   deleted (it is recreated and refilled).
//! - The durable cursor ([`Log::relay_cursor`]) is advanced only after the PubAck of that seq
//!   *and of every seq before it* arrived from the right stream at the right sequence; it is where
//!   a restart begins and what lag is measured from.
//! - With a leader lease (SPEC §7, [`RelayStatus::with_lease`]) nothing is published once the
//!   lease may have lapsed, and a stream that holds another primary's event where this log's
//!   was due fences the relay ([`RelayStatus::fenced`]): the expected sequence alone binds a
//!   number, not content.
//! - Every message carries `Nats-Msg-Id` = event id: consumers de-duplicate by it, and so does the
//!   stream for any re-publish that passes the sequence check within `duplicate_window`.
//!
//! Pipelining: up to `in_flight_acks_max` publishes are outstanding; their PubAcks are polled
//! together and taken in order ([`FuturesOrdered`]), so the window refills as soon as the oldest
//! is acknowledged. On a publish or ack failure the session ends: the failure is logged (a
//! `warn` for the first of an outage, `debug` for the repeats, `info` on recovery), the relay
//! waits with a doubling backoff from `retry_wait_ms_min` capped at `retry_wait_ms_max`, and
//! starts a new session. A NATS failure never ends [`run`].
//!
//! Check both ends: the events read from the log must have contiguous seqs, an envelope whose seq
//! is its key, a hash that matches its bytes and a `prevHash` that links to the event before.
//! A log that fails these checks stops the relay with an error: it must not be published.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, Context};
use authkeys_events::{CommandId, Hash, Peek, Seq, TailnetId, chain_hash};
use authkeys_log::{Aggregate, Log, StoredEvent};
use authkeys_protocol::subject::COMMAND_RECORD_HEADER;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where and how the relay publishes. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The JetStream stream (SPEC: `AUTHKEYS_EVENTS`).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<tailnetId>.<Type>` (SPEC: `authkeys.events`); the stream
    /// captures `<subject_prefix>.>` and nothing else.
    pub subject_prefix: String,
    /// Most events read from the log in one read transaction.
    pub read_batch_events_max: usize,
    /// Most publishes sent whose PubAck has not arrived yet. Keep it well below the JetStream
    /// context's `max_ack_inflight` (5 000 by default), which also counts abandoned publishes.
    pub in_flight_acks_max: usize,
    /// Longest a publish or its PubAck may take before the session is retried (the JetStream
    /// context's timeout, also applied to the stream requests of reconciling).
    pub ack_wait_ms_max: u64,
    /// First wait after a failure; doubles per consecutive failure…
    pub retry_wait_ms_min: u64,
    /// …up to this.
    pub retry_wait_ms_max: u64,
    /// Longest shutdown waits for the PubAcks of publishes already sent.
    pub shutdown_wait_ms_max: u64,
    /// The stream's de-duplication window by `Nats-Msg-Id`. Defence in depth: the relay's
    /// expected-sequence header already makes the server refuse a re-publish of a stored event.
    pub duplicate_window: Duration,
    /// How many servers of a NATS cluster store the stream (`--stream-replicas`; SPEC §7: 3).
    /// `None` creates it with one and leaves an existing stream's replicas alone.
    pub replicas: Option<usize>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: authkeys_protocol::subject::EVENTS_STREAM.to_owned(),
            subject_prefix: authkeys_protocol::subject::EVENTS_PREFIX.to_owned(),
            read_batch_events_max: 256,
            in_flight_acks_max: 256,
            ack_wait_ms_max: 2_000,
            retry_wait_ms_min: 50,
            retry_wait_ms_max: 1_000,
            shutdown_wait_ms_max: 5_000,
            duplicate_window: Duration::from_secs(120),
            replicas: None,
        }
    }
}

impl RelayConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.stream.is_empty() {
            bail!("relay config: stream must not be empty");
        }
        let token_ok = |t: &str| {
            !t.is_empty() && !t.contains(|c: char| c == '*' || c == '>' || c.is_whitespace())
        };
        if !self.subject_prefix.split('.').all(token_ok) {
            bail!(
                "relay config: subject_prefix {:?} must be dot-separated tokens without \
                 wildcards or spaces",
                self.subject_prefix
            );
        }
        if self.read_batch_events_max == 0 || self.in_flight_acks_max == 0 {
            bail!("relay config: read_batch_events_max and in_flight_acks_max must be at least 1");
        }
        if self.ack_wait_ms_max == 0 || self.retry_wait_ms_min == 0 {
            bail!("relay config: ack_wait_ms_max and retry_wait_ms_min must be at least 1");
        }
        if self.retry_wait_ms_max < self.retry_wait_ms_min {
            bail!("relay config: retry_wait_ms_max is below retry_wait_ms_min");
        }
        if self.replicas.is_some_and(|n| !(1..=5).contains(&n)) {
            bail!("relay config: replicas must be 1 to 5 (NATS' limit)");
        }
        Ok(())
    }

    fn subjects(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// How far the relay has got, for health checks and metrics (lag = log head − `last_acked_seq`).
/// Cheap to clone; every clone sees the same relay.
#[derive(Debug, Clone)]
pub struct RelayStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    acked: watch::Sender<u64>,
    failures: AtomicU64,
    duplicates: AtomicU64,
    fenced: CancellationToken,
    /// The leader lease the relay publishes under, if any.
    lease: Option<crate::lease::Validity>,
}

impl Default for RelayStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayStatus {
    /// A status for a relay that has published nothing yet.
    pub fn new() -> Self {
        Self::with_lease(None)
    }

    /// A status for a relay that publishes only while `lease` surely holds (SPEC §7): a primary
    /// paused past its lease must not publish its backlog when it resumes, where its successor
    /// may already be appending.
    pub fn with_lease(lease: Option<crate::lease::Validity>) -> Self {
        Self {
            inner: Arc::new(StatusInner {
                acked: watch::Sender::new(0),
                failures: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
                fenced: CancellationToken::new(),
                lease,
            }),
        }
    }

    /// The last seq known to be in the stream (it and every seq before it).
    pub fn last_acked_seq(&self) -> u64 {
        *self.inner.acked.borrow()
    }

    /// Wakes whenever `last_acked_seq` changes: wait on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.acked.subscribe()
    }

    /// Sessions that ended in a NATS failure (publish, ack, stream request) since start.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// PubAcks that said "duplicate": re-publishes the stream already had. Rare, since the
    /// expected-sequence check refuses most of them first; a count that grows is worth a look.
    pub fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(Ordering::Relaxed)
    }

    /// Cancelled when the relay found another primary's events in the stream where this log's
    /// were due (SPEC §7): this log is no longer the record, so nothing more may be appended to
    /// it; the relay has stopped.
    pub fn fenced(&self) -> CancellationToken {
        self.inner.fenced.clone()
    }

    fn set_acked(&self, seq: u64) {
        self.inner.acked.send_if_modified(|v| {
            let changed = *v != seq;
            *v = seq;
            changed
        });
    }
}

/// Creates the events stream, or brings an existing one to what the relay needs: subjects
/// `<prefix>.>` only (so that the stream's sequence stays the log's seq), file storage, limits
/// retention with no maximum age, `discard: new` (a limit an operator adds later makes publishes
/// fail loudly instead of silently dropping history), and the configured duplicate window.
/// Replicas are set when configured (`replicas`); other settings of an existing stream
/// (placement, size limits) are left alone.
pub async fn ensure_stream(js: &Context, cfg: &RelayConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    ensure(js, cfg).await.map(drop)
}

/// [`ensure_stream`], returning the stream handle with fresh info.
async fn ensure(js: &Context, cfg: &RelayConfig) -> anyhow::Result<jetstream::stream::Stream> {
    use jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

    let own = |c: &mut Config| {
        c.subjects = vec![cfg.subjects()];
        c.retention = RetentionPolicy::Limits;
        c.discard = DiscardPolicy::New;
        c.max_age = Duration::ZERO;
        c.duplicate_window = cfg.duplicate_window;
        if let Some(n) = cfg.replicas {
            c.num_replicas = n;
        }
    };
    match js.get_stream(&cfg.stream).await {
        Ok(stream) => {
            let current = &stream.cached_info().config;
            if current.storage != StorageType::File {
                bail!(
                    "stream {} uses {:?} storage; the relay needs file storage, which NATS cannot \
                     change in place (delete the stream or configure another name)",
                    cfg.stream,
                    current.storage
                );
            }
            let mut wanted = current.clone();
            own(&mut wanted);
            if wanted == *current {
                return Ok(stream);
            }
            tracing::info!(stream = %cfg.stream, "updating the events stream's configuration");
            js.update_stream(&wanted)
                .await
                .with_context(|| format!("update stream {}", cfg.stream))?;
            js.get_stream(&cfg.stream)
                .await
                .with_context(|| format!("read stream {} after updating it", cfg.stream))
        }
        Err(e) if is_stream_not_found(&e.kind()) => {
            let mut config = Config {
                name: cfg.stream.clone(),
                storage: StorageType::File,
                ..Default::default()
            };
            own(&mut config);
            let created = js
                .create_stream(config)
                .await
                .with_context(|| format!("create stream {}", cfg.stream))?;
            tracing::info!(stream = %cfg.stream, "created the events stream");
            // A handle whose info is the server's answer, as `get_stream` gives.
            Ok(created)
        }
        Err(e) => Err(e).with_context(|| format!("read stream {}", cfg.stream)),
    }
}

fn is_stream_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Publishes every committed event after the log's relay cursor, in seq order, until `shutdown`.
/// See the module docs for how. Returns `Ok` on shutdown or when the log closes; `Err` only for
/// a bad config or a log that cannot be read or fails its checks. NATS failures never end it:
/// they are retried.
pub async fn run<S: Aggregate>(
    log: Log<S>,
    js: Context,
    cfg: RelayConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_status(log, js, cfg, RelayStatus::new(), shutdown).await
}

/// [`run`], reporting progress to `status`.
pub async fn run_with_status<S: Aggregate>(
    log: Log<S>,
    mut js: Context,
    cfg: RelayConfig,
    status: RelayStatus,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    js.set_timeout(Duration::from_millis(cfg.ack_wait_ms_max));
    let cursor = blocking(&log, |log| log.relay_cursor())
        .await
        .context("read the relay cursor")?;
    status.set_acked(cursor);
    let mut relay = Relay {
        log,
        js,
        cfg,
        status,
        acked: cursor,
        reported: cursor,
    };
    tracing::info!(cursor, stream = %relay.cfg.stream, "relay starting");

    let mut retry_wait_ms = relay.cfg.retry_wait_ms_min;
    // Failed sessions in a row: the first is a warning, the rest are the same outage.
    let mut failures_in_row = 0u64;
    // Sessions in a row that ended because the stream was not at the expected sequence.
    let mut resyncs_in_row = 0u32;
    loop {
        let acked_before = relay.acked;
        let outcome = relay.session(&shutdown, failures_in_row > 0).await;
        relay.report_cursor();
        if relay.acked > acked_before {
            // The session made progress: whatever ended it is new, not the same outage.
            failures_in_row = 0;
            resyncs_in_row = 0;
            retry_wait_ms = relay.cfg.retry_wait_ms_min;
        }
        let error = match outcome {
            Ok(End::Shutdown) => {
                tracing::info!(acked = relay.acked, "relay stopped");
                return Ok(());
            }
            Ok(End::LogClosed) => {
                tracing::info!(acked = relay.acked, "log closed; relay stopped");
                return Ok(());
            }
            Err(Failure::Log(e)) => {
                return Err(e.context(format!(
                    "relay stopped: the log cannot be published after seq {}",
                    relay.acked
                )));
            }
            Err(Failure::Fenced(e)) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    acked = relay.acked,
                    "relay fenced: another primary's events are in the stream; stepping down"
                );
                relay.status.inner.fenced.cancel();
                return Ok(());
            }
            Err(Failure::Resync(e)) if resyncs_in_row < RESYNCS_IN_ROW_MAX => {
                // Expected after a failure or a restart: copies sent earlier landed meanwhile.
                resyncs_in_row += 1;
                tracing::debug!(
                    error = format!("{e:#}"),
                    "relay reconciling with the stream"
                );
                continue;
            }
            Err(Failure::Resync(e) | Failure::Nats(e)) => e,
        };
        relay.status.inner.failures.fetch_add(1, Ordering::Relaxed);
        failures_in_row += 1;
        if failures_in_row == 1 {
            tracing::warn!(
                error = format!("{error:#}"),
                acked = relay.acked,
                "relay cannot publish to NATS; retrying (commands are not affected)"
            );
        } else {
            tracing::debug!(
                error = format!("{error:#}"),
                attempt = failures_in_row,
                "relay still cannot publish"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                tracing::info!(acked = relay.acked, "relay stopped while retrying");
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_millis(retry_wait_ms)) => {}
        }
        retry_wait_ms = retry_wait_ms
            .saturating_mul(2)
            .min(relay.cfg.retry_wait_ms_max);
    }
}

/// Reconciling at once after the stream refused an expected sequence is done this many times in
/// a row without progress; then it counts as a failure and waits like one.
const RESYNCS_IN_ROW_MAX: u32 = 3;

/// Why a session ended normally.
enum End {
    Shutdown,
    LogClosed,
}

/// Why a session ended early.
enum Failure {
    /// NATS refused, failed or timed out: wait, then retry.
    Nats(anyhow::Error),
    /// The stream's last sequence is not the one the publish expected: earlier copies landed (or
    /// were lost) meanwhile. Reconcile at once.
    Resync(anyhow::Error),
    /// The log could not be read or failed a check: stop.
    Log(anyhow::Error),
    /// The stream holds another primary's events of this log where this log's were due: this
    /// process lost the lead (SPEC §7). Stop, and let the role step down.
    Fenced(anyhow::Error),
}

/// An event ready to publish.
struct Prepared {
    seq: u64,
    id: String,
    subject: String,
    payload: Bytes,
    /// The command that appended it, and its [`COMMAND_RECORD_HEADER`] if it is the last event
    /// of that command.
    command: (CommandId, TailnetId),
    record: Option<String>,
}

type AckFuture = Pin<Box<dyn Future<Output = (u64, Result<PublishAck, PublishError>)> + Send>>;

struct Relay<S: Aggregate> {
    log: Log<S>,
    js: Context,
    cfg: RelayConfig,
    status: RelayStatus,
    /// Every seq up to this is in the stream.
    acked: u64,
    /// The last value given to `set_relay_cursor`.
    reported: u64,
}

impl<S: Aggregate> Relay<S> {
    /// Reconciles with the stream, then publishes until shutdown, the log closes, or a failure.
    async fn session(
        &mut self,
        shutdown: &CancellationToken,
        retrying: bool,
    ) -> Result<End, Failure> {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(End::Shutdown),
            r = self.reconcile() => r?,
        }
        if retrying {
            tracing::info!(acked = self.acked, "relay reached NATS again; resuming");
        }

        let mut head_rx = self.log.subscribe();
        let mut in_flight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let mut ready: VecDeque<Prepared> = VecDeque::new();
        // The next seq to read from the log, and the hash of the one before it if read.
        let mut next_read = self.acked + 1;
        let mut prev_hash: Option<Hash> = None;

        loop {
            // Fill the window. Cancelled by shutdown; what is already in flight stays there.
            let fill = async {
                while in_flight.len() < self.cfg.in_flight_acks_max {
                    if ready.is_empty() {
                        let head = head_rx.borrow_and_update().seq;
                        if next_read > head {
                            break;
                        }
                        let batch = self.read_batch(next_read, prev_hash).await?;
                        if let Some(last) = batch.last() {
                            next_read = last.0.seq + 1;
                            prev_hash = Some(last.1);
                        }
                        ready.extend(batch.into_iter().map(|(p, _)| p));
                        if ready.is_empty() {
                            break;
                        }
                    }
                    let Some(ev) = ready.pop_front() else { break };
                    in_flight.push_back(self.publish(ev).await?);
                }
                Ok::<(), Failure>(())
            };
            let filled = tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                r = fill => Some(r),
            };
            match filled {
                None => return self.drain(in_flight).await,
                Some(r) => r?,
            }

            if in_flight.is_empty() {
                // Caught up: wait for the next commit.
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ok(End::Shutdown),
                    r = head_rx.changed() => {
                        if r.is_err() {
                            return Ok(End::LogClosed);
                        }
                    }
                }
                continue;
            }

            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                next = in_flight.next() => next,
            };
            let Some((seq, result)) = next else {
                return self.drain(in_flight).await;
            };
            self.acknowledged(seq, result)?;
            if in_flight.is_empty()
                || self.acked.saturating_sub(self.reported) >= self.cfg.read_batch_events_max as u64
            {
                self.report_cursor();
            }
        }
    }

    /// Makes sure the stream exists and is ours, and resumes after its last message. A stream
    /// whose last message is this log's event id but not this log's event — or which holds more
    /// of this log's events than this log — was written by another primary: fenced.
    async fn reconcile(&mut self) -> Result<(), Failure> {
        let stream = ensure(&self.js, &self.cfg).await.map_err(Failure::Nats)?;
        let last = stream.cached_info().state.last_sequence;
        let head = self.log.head().seq;
        if last > self.acked {
            let message = stream.get_raw_message(last).await.map_err(|e| {
                Failure::Nats(anyhow!(e).context(format!("read stream message {last}")))
            })?;
            let in_stream = message
                .headers
                .get(NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned());
            let seq = Seq::new(last).expect("last > acked >= 0");
            let log_id = self.log.log_id();
            let id = authkeys_log::store::event_id(&log_id, seq);
            if in_stream.as_deref() != Some(id.as_str()) {
                return Err(Failure::Nats(anyhow!(
                    "stream {} message {last} has Nats-Msg-Id {in_stream:?}, not this log's \
                     event {last} ({id}): the stream belongs to another log",
                    self.cfg.stream
                )));
            }
            if last > head {
                return Err(Failure::Fenced(anyhow!(
                    "stream {} holds this log's events up to seq {last} but this copy's head is \
                     {head}: another primary appended them",
                    self.cfg.stream
                )));
            }
            let events = blocking(&self.log, move |log| log.read(seq, 1))
                .await
                .map_err(|e| Failure::Log(e.context(format!("read event {last}"))))?;
            let event = events.first().ok_or_else(|| {
                Failure::Log(anyhow!("event {last} is missing though the head is {head}"))
            })?;
            let stored = authkeys_protocol::log::split_stored(&message.payload).map(|(h, _)| h);
            if stored != Some(event.hash) {
                return Err(Failure::Fenced(anyhow!(
                    "stream {} message {last} is another primary's event {last}, not this \
                     copy's: the two histories differ from there",
                    self.cfg.stream
                )));
            }
            tracing::info!(
                cursor = self.acked,
                stream_last = last,
                "the stream is ahead of the relay cursor; resuming after the stream's last event"
            );
            self.set_acked(last);
        } else if last < self.acked {
            tracing::warn!(
                cursor = self.acked,
                stream_last = last,
                "the stream lacks events the relay published (recreated or lost); republishing"
            );
            self.acked = last;
            self.status.set_acked(last);
        }
        Ok(())
    }

    /// Reads and checks up to `read_batch_events_max` events from `from`; each comes with its
    /// hash, the `prevHash` the next one must carry.
    async fn read_batch(
        &self,
        from: u64,
        prev_hash: Option<Hash>,
    ) -> Result<Vec<(Prepared, Hash)>, Failure> {
        let limit = self.cfg.read_batch_events_max;
        let prefix = self.cfg.subject_prefix.clone();
        let seq = Seq::new(from).expect("from = acked + 1 >= 1");
        blocking(&self.log, move |log| {
            let events = log
                .read(seq, limit)
                .with_context(|| format!("read events from {from}"))?;
            let mut prev = prev_hash;
            let mut batch = events
                .into_iter()
                .zip(from..)
                .map(|(ev, expected)| {
                    let hash = ev.hash;
                    let p = prepare(&prefix, ev, expected, prev)?;
                    prev = Some(hash);
                    Ok((p, hash))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            attach_command_records(log, &mut batch)?;
            Ok::<_, anyhow::Error>(batch)
        })
        .await
        .map_err(Failure::Log)
    }

    /// Sends one event; the returned future yields its seq and PubAck.
    async fn publish(&self, ev: Prepared) -> Result<AckFuture, Failure> {
        if self.status.inner.lease.as_ref().is_some_and(|l| !l.holds()) {
            return Err(Failure::Nats(anyhow!(
                "the leader lease has lapsed: not publishing event {} until it is renewed",
                ev.seq
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, ev.id.as_str());
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, (ev.seq - 1).to_string());
        if let Some(record) = &ev.record {
            headers.insert(COMMAND_RECORD_HEADER, record.as_str());
        }
        let seq = ev.seq;
        let ack = self
            .js
            .publish_with_headers(ev.subject, headers, ev.payload)
            .await
            .map_err(|e| Failure::Nats(anyhow!(e).context(format!("publish event {seq}"))))?;
        Ok(Box::pin(async move { (seq, ack.await) }))
    }

    /// Takes one PubAck, in seq order.
    fn acknowledged(
        &mut self,
        seq: u64,
        result: Result<PublishAck, PublishError>,
    ) -> Result<(), Failure> {
        let ack = result.map_err(|e| {
            let resync = e.kind() == PublishErrorKind::WrongLastSequence;
            let e = anyhow!(e).context(format!("PubAck of event {seq}"));
            if resync {
                Failure::Resync(e)
            } else {
                Failure::Nats(e)
            }
        })?;
        if ack.stream != self.cfg.stream {
            return Err(Failure::Nats(anyhow!(
                "event {seq} was stored by stream {}, not {}",
                ack.stream,
                self.cfg.stream
            )));
        }
        if ack.sequence != seq {
            return Err(Failure::Nats(anyhow!(
                "event {seq} was stored at stream seq {}",
                ack.sequence
            )));
        }
        debug_assert_eq!(seq, self.acked + 1, "PubAcks are taken in seq order");
        if ack.duplicate {
            self.status.inner.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        self.set_acked(seq);
        Ok(())
    }

    /// Shutdown: waits up to `shutdown_wait_ms_max` for the PubAcks already due.
    async fn drain(&mut self, mut in_flight: FuturesOrdered<AckFuture>) -> Result<End, Failure> {
        let pending = in_flight.len();
        let wait = Duration::from_millis(self.cfg.shutdown_wait_ms_max);
        let drained = tokio::time::timeout(wait, async {
            while let Some((seq, result)) = in_flight.next().await {
                self.acknowledged(seq, result)?;
            }
            Ok::<(), Failure>(())
        })
        .await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(
                Failure::Nats(e) | Failure::Resync(e) | Failure::Log(e) | Failure::Fenced(e),
            )) => tracing::warn!(
                error = format!("{e:#}"),
                "relay shutdown: a PubAck failed; the next start reconciles with the stream"
            ),
            Err(_) => tracing::warn!(
                pending,
                wait_ms = self.cfg.shutdown_wait_ms_max,
                "relay shutdown: PubAcks did not all arrive in time; the next start reconciles \
                 with the stream"
            ),
        }
        Ok(End::Shutdown)
    }

    fn set_acked(&mut self, seq: u64) {
        self.acked = seq;
        self.status.set_acked(seq);
    }

    /// Hands the cursor to the log if it moved; the log writes it with its next transaction.
    fn report_cursor(&mut self) {
        if self.acked > self.reported {
            self.log.set_relay_cursor(self.acked);
            self.reported = self.acked;
        }
    }
}

/// Checks one event read from the log and makes its message: subject, id and the exact stored
/// bytes of the envelope. What routing needs is peeked at without decoding `data`
/// ([`Peek`]); an envelope that cannot be peeked at is decoded whole, which names what is wrong
/// with it or gives the same fields.
fn prepare(
    prefix: &str,
    ev: StoredEvent,
    expected: u64,
    prev_hash: Option<Hash>,
) -> anyhow::Result<Prepared> {
    let seq = ev.seq.get();
    if seq != expected {
        bail!("log read returned seq {seq} where {expected} was due");
    }
    let (env_seq, id, event_type, tailnet, command_id, env_prev) = match Peek::body(&ev.body) {
        Some(p) => (
            p.seq,
            p.id.to_owned(),
            p.event_type,
            TailnetId::parse(p.tailnet)?,
            CommandId::parse(p.command_id)?,
            p.prev_hash,
        ),
        None => {
            let env = ev
                .envelope()
                .with_context(|| format!("decode event {seq}"))?;
            let event_type = env.event_type();
            (
                env.seq.get(),
                env.id.as_str().to_owned(),
                event_type,
                env.tailnet,
                env.command_id,
                env.prev_hash,
            )
        }
    };
    if env_seq != seq {
        bail!("event stored at seq {seq} says seq {env_seq}");
    }
    if chain_hash(&env_prev, ev.seq, &ev.body) != ev.hash {
        bail!("event {seq}: stored hash does not match its bytes");
    }
    if let Some(prev) = prev_hash
        && prev != env_prev
    {
        bail!("event {seq}: prevHash does not link to event {}", seq - 1);
    }
    Ok(Prepared {
        seq,
        subject: format!("{prefix}.{tailnet}.{event_type}"),
        id,
        payload: Bytes::from(ev.to_json()),
        command: (command_id, tailnet),
        record: None,
    })
}

/// Gives the last event of each command in `batch` its idempotency record
/// ([`COMMAND_RECORD_HEADER`]: `<first seq> <fingerprint hex> <scope>`), read from the log in one
/// transaction. A command's scope is its tailnet or [`crate::REGISTRAR_SCOPE`] (timer commands
/// record none).
fn attach_command_records<S: Aggregate>(
    log: &Log<S>,
    batch: &mut [(Prepared, Hash)],
) -> anyhow::Result<()> {
    // The batch's events that end a command (or the batch), each with both candidate scopes.
    let ends: Vec<usize> = (0..batch.len())
        .filter(|&i| {
            batch
                .get(i + 1)
                .is_none_or(|(next, _)| next.command.0 != batch[i].0.command.0)
        })
        .collect();
    let wanted = ends.iter().flat_map(|&i| {
        let (command_id, tailnet) = &batch[i].0.command;
        [
            (tailnet.as_str(), command_id),
            (crate::REGISTRAR_SCOPE, command_id),
        ]
    });
    let records = log
        .command_records(wanted)
        .context("read the idempotency records of the relayed commands")?;
    let mut found = Vec::with_capacity(ends.len());
    for (&i, pair) in ends.iter().zip(records.chunks(2)) {
        let p = &batch[i].0;
        let scopes = [p.command.1.as_str(), crate::REGISTRAR_SCOPE];
        let hit = pair
            .iter()
            .zip(scopes)
            .find_map(|(r, scope)| r.filter(|r| r.last == p.seq).map(|r| (r, scope)));
        found.push(
            hit.map(|(r, scope)| format!("{} {} {scope}", r.first, hex::encode(r.fingerprint))),
        );
    }
    for (i, record) in ends.into_iter().zip(found) {
        batch[i].0.record = record;
    }
    Ok(())
}

/// Runs a short blocking read of the log off the async threads.
async fn blocking<S: Aggregate, T: Send + 'static, E>(
    log: &Log<S>,
    f: impl FnOnce(&Log<S>) -> Result<T, E> + Send + 'static,
) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
    E: Send + 'static,
{
    let log = log.clone();
    let out = tokio::task::spawn_blocking(move || f(&log))
        .await
        .context("log read task failed")?;
    Ok(out?)
}

//! The worker of one view (or of the timers' schedule, through the same [`Sink`] trait):
//! JetStream in, rows and checkpoint out, in one transaction.
//!
//! A session (re)creates the durable pull consumer `<consumer_prefix><view>` starting at
//! checkpoint + 1 (the checkpoint, not the consumer, is the record of progress, so a deleted or
//! stale consumer is simply replaced), then takes messages in chunks of what is ready (at most
//! `batch_events_max`):
//! - each message is decoded and its hash checked against its bytes; one that does not decode
//!   is treated as missing;
//! - seq ≤ the chain's end: a redelivery or duplicate, skipped;
//! - seq > end + 1: a gap (JetStream lost or skipped messages): the batch so far is committed and
//!   the gap is backfilled from `authkeys.log.read`, page by page, before going on;
//! - `prevHash` ≠ the end's hash: the message is not this log's next event; the log's own copy
//!   is fetched instead;
//! - the chunk's events are applied to the in-memory view, the touched rows and the new
//!   checkpoint are committed in one redb transaction, the applied seq is published on a
//!   `watch` channel, and only then are the messages acked.
//!
//! When no message arrives for `idle_check_ms`, the worker asks the log for events past its
//! checkpoint: lost messages at the tail are found without waiting for a later one. Any NATS
//! failure (connection, consumer deleted, missed heartbeats) ends the session; the next one
//! starts after a doubling backoff bounded by `retry_wait_ms_max`. A store failure stops the
//! worker: the in-memory view would be ahead of its file.
//!
//! [`rebuild_from_log`] builds a fresh view from seq 1; [`ViewHandle::rebuild`] makes the
//! worker do that, write it over its rows and checkpoint in one transaction, and swap it in.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_nats::Client;
use async_nats::jetstream::{self, consumer};
use authkeys_events::{Envelope, Hash};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::ProjectionConfig;
use authkeys_protocol::log::{LogClient, decode_checked};

use crate::log_client::Chain;
use crate::store::{Position, StoreError, ViewStore};
use crate::views::View;

/// Rebuild requests waiting for the worker.
const REBUILD_REQUESTS_MAX: usize = 4;

/// How a rebuild request is answered: the seq of the rebuilt state.
pub type RebuildReply = oneshot::Sender<anyhow::Result<u64>>;

/// A running view, for queries, tests and metrics. Cheap to clone.
#[derive(Debug)]
pub struct ViewHandle<V> {
    shared: Arc<Shared<V>>,
    rebuild_tx: mpsc::Sender<RebuildReply>,
}

impl<V> Clone for ViewHandle<V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            rebuild_tx: self.rebuild_tx.clone(),
        }
    }
}

#[derive(Debug)]
struct Shared<V> {
    view: RwLock<V>,
    applied: watch::Sender<u64>,
}

impl<V: View> ViewHandle<V> {
    /// The last seq applied *and* committed.
    pub fn applied_seq(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Wakes on every commit, with the applied seq: for read-your-writes waits and lag metrics.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// Waits (at most `wait`) until the view has applied `min_seq`; the applied seq then, or
    /// `None` on timeout.
    pub async fn wait_for(&self, min_seq: u64, wait: Duration) -> Option<u64> {
        let mut rx = self.subscribe();
        match tokio::time::timeout(wait, rx.wait_for(|s| *s >= min_seq)).await {
            Ok(Ok(seq)) => Some(*seq),
            _ => None,
        }
    }

    /// The view, for the worker to change (a panic elsewhere never makes it unusable).
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, V> {
        self.shared
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the view. Keep `f` short: the worker waits for it to apply the next batch.
    pub fn read<R>(&self, f: impl FnOnce(&V) -> R) -> R {
        let guard = self
            .shared
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    /// The view's state hash (see [`View::state_hash`]) with the seq it is at, read together.
    pub fn state(&self) -> (u64, Hash) {
        let guard = self
            .shared
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        (self.applied_seq(), guard.state_hash())
    }

    /// Asks the worker to rebuild the view from seq 1 out of the log and swap it in; answers
    /// the seq of the rebuilt view.
    pub async fn rebuild(&self) -> anyhow::Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.rebuild_tx
            .send(tx)
            .await
            .map_err(|_| anyhow!("the {} worker is not running", V::NAME))?;
        rx.await
            .map_err(|_| anyhow!("the {} worker stopped during the rebuild", V::NAME))?
    }
}

/// Pages of `authkeys.log.read` a rebuild keeps in flight, each read and decoded on its own
/// task while the view applies the oldest: one page at a time spent most of its time waiting for
/// the round trip.
pub const REBUILD_PAGES_IN_FLIGHT: usize = 4;

/// Builds a fresh view from seq 1 out of the log, up to `up_to` (or the head as first seen):
/// what a worker's view must converge to. Checks the chain from the start.
///
/// After the first page (which says how many events a page holds), [`REBUILD_PAGES_IN_FLIGHT`]
/// consecutive pages are asked for at once. A page that comes back shorter (the server caps a
/// reply's bytes) leaves the pages after it misaligned: they are dropped and asked for again from
/// the right seq.
pub async fn rebuild_from_log<V: View>(
    log: &LogClient,
    up_to: Option<u64>,
) -> anyhow::Result<(V, Position)> {
    let mut view = V::default();
    let mut chain = Chain(Position::START);
    let mut target = up_to;
    let read = |from: u64, target: Option<u64>| {
        let log = log.clone();
        let want = target.map_or(u64::MAX, |t| t.saturating_sub(from - 1));
        tokio::spawn(async move { log.read(from, want).await })
    };
    let mut in_flight: std::collections::VecDeque<(u64, tokio::task::JoinHandle<_>)> =
        std::collections::VecDeque::new();
    // Events per full page; 0 until the first page is back.
    let mut page_events = 0u64;
    let mut next_from = 1u64;
    let result = 'pages: loop {
        if target.is_some_and(|t| chain.0.seq >= t) {
            break Ok(());
        }
        if in_flight.is_empty() {
            next_from = chain.next_seq();
        }
        let depth = if page_events == 0 {
            1
        } else {
            REBUILD_PAGES_IN_FLIGHT
        };
        while in_flight.len() < depth && target.is_none_or(|t| next_from <= t) {
            in_flight.push_back((next_from, read(next_from, target)));
            next_from += page_events.max(1);
        }
        let Some((from, task)) = in_flight.pop_front() else {
            break Ok(());
        };
        let page = match task.await.context("log read task") {
            Ok(Ok(page)) => page,
            Ok(Err(e)) | Err(e) => break Err(e),
        };
        let target_now = *target.get_or_insert(page.head);
        if from != chain.next_seq() {
            // Misaligned behind a short page: ask again from where the chain is.
            for (_, task) in in_flight.drain(..) {
                task.abort();
            }
            continue;
        }
        if page.events.is_empty() {
            if chain.0.seq < target_now {
                break Err(anyhow!(
                    "the log ends at {} before seq {target_now}",
                    chain.0.seq
                ));
            }
            break Ok(());
        }
        let got = page.events.len() as u64;
        if got < page_events {
            for (_, task) in in_flight.drain(..) {
                task.abort();
            }
        }
        page_events = page_events.max(got);
        for env in &page.events {
            if env.seq.get() > target_now {
                break;
            }
            if !chain.links(env) {
                break 'pages Err(anyhow!(
                    "event {} does not link to the chain at {}",
                    env.seq,
                    chain.0.seq
                ));
            }
            view.apply(env);
            chain.advance(env);
        }
    };
    for (_, task) in in_flight {
        task.abort();
    }
    result?;
    // A rebuilt view's rows are all new; the caller writes them whole.
    view.take_changes();
    Ok((view, chain.0))
}

/// Why a worker's session ended: its own file failed, which stops the worker (a view that cannot
/// record its progress must not go on as if it could), or something outside it (NATS, a log
/// read, a history that does not link) failed, which a new session retries with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The view's or schedule's file failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
    /// Anything else; retried.
    #[error(transparent)]
    Retryable(#[from] anyhow::Error),
}

/// What a [`Worker`] keeps current from the event stream: a view ([`ViewSink`]) or the expiry
/// timers' schedule ([`crate::timers::ScheduleSink`]).
pub trait Sink: Send + 'static {
    /// Names the durable consumer (`<consumer_prefix><NAME>`) and the logs.
    const NAME: &'static str;

    /// Applies `batch` (linked, in seq order, right after the last checkpoint) and durably
    /// records it with the checkpoint `tip`. A [`StoreError`] stops the worker.
    fn commit(
        &mut self,
        batch: Vec<Envelope>,
        tip: Position,
    ) -> impl std::future::Future<Output = Result<(), WorkerError>> + Send;

    /// Replaces everything with what the log holds from seq 1; answers the new checkpoint.
    fn rebuild(
        &mut self,
        log: &LogClient,
    ) -> impl std::future::Future<Output = Result<Position, WorkerError>> + Send;
}

/// A view in memory, its file, and the handle queries read it through.
#[derive(Debug)]
pub struct ViewSink<V> {
    store: Arc<ViewStore>,
    handle: ViewHandle<V>,
    /// The log file beside this process, if any: rebuilds read it instead of NATS.
    log_file: Option<std::path::PathBuf>,
}

impl<V: View> Sink for ViewSink<V> {
    const NAME: &'static str = V::NAME;

    async fn commit(&mut self, batch: Vec<Envelope>, tip: Position) -> Result<(), WorkerError> {
        let changes = {
            let mut view = self.handle.write();
            for env in &batch {
                view.apply(env);
            }
            view.take_changes()
        };
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.commit(&changes, tip))
            .await
            .context("commit task")??;
        self.handle.shared.applied.send_replace(tip.seq);
        Ok(())
    }

    /// Builds the view in memory from seq 1, writes its rows and checkpoint in one
    /// transaction, and swaps it in: readers see the old view or the new one.
    async fn rebuild(&mut self, log: &LogClient) -> Result<Position, WorkerError> {
        let (view, cp) = match &self.log_file {
            Some(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    // Only what the relay has published: the file's tail may never reach the
                    // stream (a primary that lost the lead before relaying it); the worker
                    // takes the rest from the stream.
                    let published = authkeys_log::LogReader::open(&path)
                        .and_then(|r| r.relay_cursor())
                        .with_context(|| format!("read the relay cursor of {}", path.display()))?;
                    crate::file_log::rebuild_from_file::<V>(&path, Some(published))
                })
                .await
                .context("rebuild task")??
            }
            None => rebuild_from_log::<V>(log, None).await?,
        };
        let store = Arc::clone(&self.store);
        let view =
            tokio::task::spawn_blocking(move || store.replace_with_view(&view, cp).map(|()| view))
                .await
                .context("rebuild commit task")??;
        {
            *self.handle.write() = view;
        }
        self.handle.shared.applied.send_replace(cp.seq);
        Ok(cp)
    }
}

/// The worker of a view.
pub type ViewWorker<V> = Worker<ViewSink<V>>;

/// Consumes the event stream into a [`Sink`]. See the module docs.
#[derive(Debug)]
pub struct Worker<S> {
    cfg: Arc<ProjectionConfig>,
    client: Client,
    log: LogClient,
    sink: S,
    chain: Chain,
    rebuild_rx: mpsc::Receiver<RebuildReply>,
}

/// How a session ended without error.
enum SessionEnd {
    Shutdown,
    Restart,
}

/// Opens `path` with `open` (on a blocking thread), retrying for up to `open_wait_ms_max` while
/// the file is still held (by a crashed predecessor's last commit).
pub async fn open_retrying<T: Send + 'static>(
    cfg: &ProjectionConfig,
    path: &std::path::Path,
    open: impl Fn(&std::path::Path) -> Result<T, StoreError> + Send + Sync + 'static,
) -> anyhow::Result<T> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create {}", cfg.data_dir.display()))?;
    let open = Arc::new(open);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(cfg.open_wait_ms_max);
    loop {
        let p = path.to_owned();
        let o = Arc::clone(&open);
        let opened = tokio::task::spawn_blocking(move || o(&p))
            .await
            .context("open task")?;
        match opened {
            Ok(ok) => return Ok(ok),
            Err(StoreError::Busy) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(cfg.retry_wait_ms_min)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        }
    }
}

impl<V: View> Worker<ViewSink<V>> {
    /// Opens (or creates) `<data_dir>/view-<name>.redb` and loads the view.
    pub async fn open(client: Client, cfg: &ProjectionConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let path = cfg.data_dir.join(format!("view-{}.redb", V::NAME));
        let (store, view, cp) = open_retrying(cfg, &path, |p| {
            let store = ViewStore::open(p, V::NAME)?;
            let (view, cp) = store.load::<V>()?;
            Ok((store, view, cp))
        })
        .await?;
        tracing::info!(view = V::NAME, seq = cp.seq, "view loaded");
        let (rebuild_tx, rebuild_rx) = mpsc::channel(REBUILD_REQUESTS_MAX);
        let handle = ViewHandle {
            shared: Arc::new(Shared {
                view: RwLock::new(view),
                applied: watch::Sender::new(cp.seq),
            }),
            rebuild_tx,
        };
        let sink = ViewSink {
            store: Arc::new(store),
            handle,
            log_file: cfg.log_file.clone(),
        };
        Ok(Self::new(client, cfg, sink, cp, rebuild_rx))
    }

    /// A handle on the view, valid while the worker runs (and after, read-only).
    pub fn handle(&self) -> ViewHandle<V> {
        self.sink.handle.clone()
    }
}

impl<S: Sink> Worker<S> {
    /// A worker feeding `sink`, which has applied everything up to `checkpoint`; rebuild
    /// requests arrive on `rebuild_rx`.
    pub fn new(
        client: Client,
        cfg: &ProjectionConfig,
        sink: S,
        checkpoint: Position,
        rebuild_rx: mpsc::Receiver<RebuildReply>,
    ) -> Self {
        let log = LogClient::new(
            client.clone(),
            cfg.log_read_subject.clone(),
            cfg.log_read_events_max,
            Duration::from_millis(cfg.log_read_wait_ms_max),
        );
        Self {
            cfg: Arc::new(cfg.clone()),
            client,
            log,
            sink,
            chain: Chain(checkpoint),
            rebuild_rx,
        }
    }

    /// Keeps the view current until `shutdown`. Returns `Err` only when its store fails.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match self.session(&shutdown).await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Restart) => failures = 0,
                Err(WorkerError::Store(e)) => {
                    tracing::error!(view = S::NAME, error = %e, "view store failed");
                    return Err(anyhow::Error::new(e).context(format!("the {} store", S::NAME)));
                }
                Err(WorkerError::Retryable(e)) => {
                    if failures == 0 {
                        tracing::warn!(
                            view = S::NAME,
                            error = format!("{e:#}"),
                            "view session failed; retrying"
                        );
                    } else {
                        tracing::debug!(
                            view = S::NAME,
                            error = format!("{e:#}"),
                            failures,
                            "view session failed again"
                        );
                    }
                    failures = failures.saturating_add(1);
                    let wait = backoff(&self.cfg, failures);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> Result<SessionEnd, WorkerError> {
        let cfg = Arc::clone(&self.cfg);
        let js = jetstream::new(self.client.clone());
        let stream = js
            .get_stream(&cfg.stream)
            .await
            .with_context(|| format!("get stream {}", cfg.stream))?;
        let name = format!("{}{}", cfg.consumer_prefix, S::NAME);
        // The checkpoint is the record of progress: replace whatever consumer is there.
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.clone()),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.chain.next_seq(),
                },
                // Acking a message acks every one before it: a chunk is acked once, by its
                // last message, after its commit, instead of once per event per view.
                ack_policy: consumer::AckPolicy::All,
                ack_wait: Duration::from_millis(cfg.ack_wait_ms),
                max_ack_pending: cfg.ack_pending_max,
                filter_subject: format!("{}.>", cfg.subject_prefix),
                ..Default::default()
            })
            .await
            .with_context(|| format!("create consumer {name}"))?;
        let expires = Duration::from_millis(cfg.pull_expires_ms);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(cfg.batch_events_max)
            .expires(expires)
            .heartbeat(expires / 4)
            .messages()
            .await
            .with_context(|| format!("pull from consumer {name}"))?
            .ready_chunks(cfg.batch_events_max);
        tracing::debug!(
            view = S::NAME,
            from = self.chain.next_seq(),
            "view session started"
        );
        let idle = Duration::from_millis(cfg.idle_check_ms);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
                Some(reply) = self.rebuild_rx.recv() => {
                    let result = self.rebuild().await;
                    let failed = result.as_ref().err().map(|e| format!("{e:#}"));
                    let _ = reply.send(result.map_err(anyhow::Error::from));
                    if let Some(e) = failed {
                        tracing::error!(view = S::NAME, error = e, "rebuild failed");
                    }
                    return Ok(SessionEnd::Restart);
                }
                chunk = tokio::time::timeout(idle, messages.next()) => match chunk {
                    Err(_idle) => self.catch_up(None).await?,
                    Ok(None) => return Err(anyhow!("consumer {name}: message stream ended").into()),
                    Ok(Some(items)) => self.take_chunk(items).await?,
                }
            }
        }
    }

    /// Applies a chunk of delivered messages (see the module docs), then acks them (its last).
    async fn take_chunk(
        &mut self,
        items: Vec<Result<jetstream::Message, consumer::pull::MessagesError>>,
    ) -> anyhow::Result<()> {
        let mut batch: Vec<Envelope> = Vec::with_capacity(items.len());
        let mut tip = self.chain;
        // The last message taken: acking it acks the chunk (`AckPolicy::All`).
        let mut last = None;
        let mut failure = None;
        for item in items {
            let msg = match item {
                Ok(m) => m,
                Err(e) => {
                    failure = Some(anyhow!(e).context("pull messages"));
                    break;
                }
            };
            let env = match decode_checked(&msg.payload) {
                Ok(env) => env,
                Err(e) => {
                    tracing::warn!(view = S::NAME, subject = %msg.subject, error = format!("{e:#}"), "undecodable event message; the log will fill its place");
                    last = Some(msg);
                    continue;
                }
            };
            let seq = env.seq.get();
            if seq <= tip.0.seq {
                last = Some(msg);
                continue;
            }
            if !tip.links(&env) {
                // A gap, or a message that is not this log's next event: commit what we have,
                // then take everything up to and including `seq` from the log.
                self.commit_batch(std::mem::take(&mut batch), tip).await?;
                tracing::debug!(
                    view = S::NAME,
                    from = tip.next_seq(),
                    to = seq,
                    "backfilling from the log"
                );
                self.catch_up(Some(seq)).await?;
                tip = self.chain;
                last = Some(msg);
                continue;
            }
            tip.advance(&env);
            batch.push(env);
            last = Some(msg);
        }
        self.commit_batch(batch, tip).await?;
        if let Some(msg) = last
            && let Err(e) = msg.ack().await
        {
            tracing::debug!(view = S::NAME, error = %e, "ack failed; the messages will be redelivered and skipped");
        }
        failure.map_or(Ok(()), Err)
    }

    /// Applies `batch` (already linked from the chain's end to `tip`) and commits it with the
    /// checkpoint `tip`.
    async fn commit_batch(&mut self, batch: Vec<Envelope>, tip: Chain) -> Result<(), WorkerError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.sink.commit(batch, tip.0).await?;
        self.chain = tip;
        Ok(())
    }

    /// Applies events from the log past the checkpoint, up to `until` (or as far as the log
    /// goes), a page per transaction.
    async fn catch_up(&mut self, until: Option<u64>) -> Result<(), WorkerError> {
        loop {
            if until.is_some_and(|u| self.chain.0.seq >= u) {
                return Ok(());
            }
            let want = until.map_or(u64::MAX, |u| u - self.chain.0.seq);
            let page = self.log.read(self.chain.next_seq(), want).await?;
            if page.events.is_empty() {
                if let Some(u) = until
                    && page.head < u
                {
                    return Err(anyhow!(
                        "JetStream delivered seq {u} but the log ends at {}: another log's stream?",
                        page.head
                    )
                    .into());
                }
                return Ok(());
            }
            let mut tip = self.chain;
            for env in &page.events {
                if !tip.links(env) {
                    // The log's own events do not link to our checkpoint: the file belongs to
                    // another log (or history was replaced). The log is the record: rebuild.
                    tracing::error!(view = S::NAME, seq = %env.seq, checkpoint = tip.0.seq, "the log does not link to the view's checkpoint; rebuilding");
                    self.rebuild().await?;
                    return Ok(());
                }
                tip.advance(env);
            }
            self.commit_batch(page.events, tip).await?;
        }
    }

    /// Rebuilds from seq 1 out of the log, writes the new rows and checkpoint in one
    /// transaction, and swaps the view in.
    async fn rebuild(&mut self) -> Result<u64, WorkerError> {
        tracing::info!(view = S::NAME, "rebuilding from the log");
        let cp = self.sink.rebuild(&self.log).await?;
        self.chain = Chain(cp);
        tracing::info!(view = S::NAME, seq = cp.seq, "rebuilt");
        Ok(cp.seq)
    }
}

/// `retry_wait_ms_min · 2^(failures−1)`, capped at `retry_wait_ms_max`.
fn backoff(cfg: &ProjectionConfig, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let ms = cfg
        .retry_wait_ms_min
        .saturating_mul(1u64 << exp)
        .min(cfg.retry_wait_ms_max);
    Duration::from_millis(ms)
}

/// Waits for every task of a role; the first failure cancels `stop` (so the others end too) and
/// is the result.
pub(crate) async fn until_first_error(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: &CancellationToken,
    role: &str,
) -> anyhow::Result<()> {
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done
            .with_context(|| format!("a {role} task panicked"))
            .and_then(|r| r);
        if let Err(e) = outcome {
            if result.is_ok() {
                result = Err(e);
            }
            stop.cancel();
        }
    }
    result
}

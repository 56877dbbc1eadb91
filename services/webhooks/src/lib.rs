//! The webhooks role (R23, `authkeys webhooks`, and part of `authkeys serve`): delivers the
//! lifecycle events to HTTP endpoints in Tailscale's webhook format, signed with each
//! endpoint's secret, at least once and in order per endpoint, across restarts and outages.
//!
//! - [`store`]: its own redb file: what it folded (endpoints, names, the checkpoint), each
//!   endpoint's durable queue, the dropped events and the `nodeKeyExpiringInOneDay` schedule.
//! - [`message`]: events → Tailscale's event objects.
//! - [`deliver`]: one task per endpoint: batches, signing, retries with backoff and jitter for
//!   24 h, then dropped.
//! - [`sign`]: `Tailscale-Webhook-Signature: t=…,v1=…` (HMAC-SHA256).
//! - [`secret`]: endpoint secrets, derived from `webhook.key` (which only this role reads), the
//!   endpoint id and its rotation; never stored, never in an event (ADR 005).
//! - [`ssrf`]: which addresses an endpoint may reach, checked at every delivery.
//!
//! The role consumes `AUTHKEYS_EVENTS` with the projections' [`Worker`] (durable consumer from
//! its checkpoint + 1, backfill from `authkeys.log.read`), folding each batch into the store in
//! one transaction with the checkpoint, and answers the gateway on `authkeys.webhooks.*`
//! (list, get, secret, test, status) with the views' `minSeq` read-your-writes rule.

pub mod deliver;
pub mod message;
pub mod secret;
pub mod sign;
pub mod ssrf;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Client, Message};
use authkeys_events::{Clock, EndpointId, Envelope};
use authkeys_projections::ProjectionConfig;
use authkeys_projections::log_client::Chain;
use authkeys_projections::store::{Position, StoreError};
use authkeys_projections::worker::{Sink, Worker, WorkerError, open_retrying};
use authkeys_protocol::log::LogClient;
use authkeys_protocol::nats::{Responder, ResponderLimits};
use authkeys_protocol::webhook::{
    WebhookAnswer, WebhookGetQuery, WebhookSecretAnswer, WebhookSecretQuery, WebhookTestAnswer,
    WebhookTestQuery, WebhooksAnswer, WebhooksListQuery, WebhooksStatus,
};
use authkeys_protocol::{self as wire, ErrorCode, ErrorReply, subject};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use deliver::DeliveryConfig;
pub use secret::SecretKey;
pub use store::Store;

/// The store's file in the role's data dir.
pub const FILE_NAME: &str = "webhooks.redb";

/// What the role needs. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct WebhooksSettings {
    /// Holds `webhooks.redb` and `webhook.key`.
    pub data_dir: PathBuf,
    /// The event consumer's settings (its consumer is `<consumer_prefix>webhooks`).
    pub projection: ProjectionConfig,
    /// How deliveries are made.
    pub delivery: DeliveryConfig,
    /// Dropped events kept per endpoint.
    pub dropped_per_endpoint_max: usize,
    /// Longest a query with `minSeq` waits for the role to fold it.
    pub read_wait_ms_max: u64,
    /// Most notices fired per turn.
    pub notice_batch_max: usize,
    /// Longest the notice loop sleeps before looking at the schedule again.
    pub notice_check_ms_max: u64,
}

impl WebhooksSettings {
    /// Production values, with the files in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            projection: ProjectionConfig::new(data_dir.clone()),
            data_dir,
            delivery: DeliveryConfig::default(),
            dropped_per_endpoint_max: 1_000,
            read_wait_ms_max: 2_000,
            notice_batch_max: 256,
            notice_check_ms_max: 60_000,
        }
    }
}

/// What the sink, the responders and the notice loop share.
#[derive(Debug)]
struct Shared {
    deliveries: deliver::Deliveries,
    applied: watch::Sender<u64>,
    /// Wakes the notice loop (a commit may bring an earlier deadline).
    wake_notices: Notify,
    read_wait: Duration,
    notices_fired: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn store(&self) -> &Arc<Store> {
        &self.deliveries.ctx().store
    }

    async fn wait_for(&self, min_seq: Option<u64>) -> Result<u64, ErrorReply> {
        let want = min_seq.unwrap_or(0);
        let mut rx = self.applied.subscribe();
        match tokio::time::timeout(self.read_wait, rx.wait_for(|s| *s >= want)).await {
            Ok(Ok(seq)) => Ok(*seq),
            _ => Err(ErrorReply::new(
                ErrorCode::Unavailable,
                format!("the webhooks role has not reached seq {want} yet; retry"),
            )),
        }
    }
}

/// The store as the [`Worker`]'s [`Sink`]: each committed batch wakes the endpoints it queued
/// for.
#[derive(Debug)]
struct WebhookSink {
    shared: Arc<Shared>,
}

fn store_err(e: StoreError) -> WorkerError {
    WorkerError::Store(e)
}

impl Sink for WebhookSink {
    const NAME: &'static str = "webhooks";

    async fn commit(&mut self, batch: Vec<Envelope>, tip: Position) -> Result<(), WorkerError> {
        let store = Arc::clone(self.shared.store());
        let touched = tokio::task::spawn_blocking(move || store.apply(&batch, tip, 0))
            .await
            .context("webhooks commit task")?
            .map_err(store_err)?;
        self.shared.applied.send_replace(tip.seq);
        self.shared.deliveries.sync(&touched);
        self.shared.wake_notices.notify_one();
        Ok(())
    }

    /// Re-folds the log from seq 1 without queueing again what was queued before.
    async fn rebuild(&mut self, log: &LogClient) -> Result<Position, WorkerError> {
        let store = Arc::clone(self.shared.store());
        let before = tokio::task::spawn_blocking(move || store.reset_folded())
            .await
            .context("webhooks reset task")?
            .map_err(store_err)?;
        let mut chain = Chain(Position::START);
        loop {
            let page = log.read(chain.next_seq(), u64::MAX).await?;
            if page.events.is_empty() {
                break;
            }
            for env in &page.events {
                if !chain.links(env) {
                    let why = format!(
                        "event {} does not link to the chain at {}",
                        env.seq, chain.0.seq
                    );
                    return Err(anyhow::anyhow!(why).into());
                }
                chain.advance(env);
            }
            let store = Arc::clone(self.shared.store());
            let tip = chain.0;
            let events = page.events;
            let touched =
                tokio::task::spawn_blocking(move || store.apply(&events, tip, before.seq))
                    .await
                    .context("webhooks rebuild task")?
                    .map_err(store_err)?;
            self.shared.deliveries.sync(&touched);
        }
        self.shared.applied.send_replace(chain.0.seq);
        Ok(chain.0)
    }
}

/// The webhooks role: its store open, its consumer and responders ready to run.
#[derive(Debug)]
pub struct WebhooksRole {
    client: Client,
    shared: Arc<Shared>,
    worker: Worker<WebhookSink>,
    responder: Responder,
    settings: WebhooksSettings,
    stop_deliveries: CancellationToken,
}

impl WebhooksRole {
    /// Opens (or creates) the store and the key in `settings.data_dir`, subscribes to the
    /// webhooks subjects; `clock` stamps signatures and decides what is due.
    pub async fn build(
        client: Client,
        settings: WebhooksSettings,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let key = SecretKey::load(&settings.data_dir)?;
        let path = settings.data_dir.join(FILE_NAME);
        let limits = store::StoreLimits {
            dropped_per_endpoint_max: settings.dropped_per_endpoint_max,
        };
        let mut projection = settings.projection.clone();
        projection.data_dir.clone_from(&settings.data_dir);
        let store =
            Arc::new(open_retrying(&projection, &path, move |p| Store::open(p, limits)).await?);
        let cp = {
            let s = Arc::clone(&store);
            tokio::task::spawn_blocking(move || s.checkpoint())
                .await
                .context("webhooks checkpoint task")??
        };
        tracing::info!(seq = cp.seq, "webhooks loaded");
        let stop_deliveries = CancellationToken::new();
        let ctx = Arc::new(deliver::Ctx {
            store,
            key,
            cfg: settings.delivery.clone(),
            clock,
            stats: deliver::Stats::default(),
        });
        let shared = Arc::new(Shared {
            deliveries: deliver::Deliveries::new(ctx, stop_deliveries.clone()),
            applied: watch::Sender::new(cp.seq),
            wake_notices: Notify::new(),
            read_wait: Duration::from_millis(settings.read_wait_ms_max),
            notices_fired: std::sync::atomic::AtomicU64::new(0),
        });
        let sink = WebhookSink {
            shared: Arc::clone(&shared),
        };
        let (_no_rebuilds, rebuild_rx) = mpsc::channel(1);
        let worker = Worker::new(client.clone(), &projection, sink, cp, rebuild_rx);
        let subjects = [
            subject::WEBHOOKS_LIST,
            subject::WEBHOOKS_GET,
            subject::WEBHOOKS_SECRET,
            subject::WEBHOOKS_TEST,
            subject::WEBHOOKS_STATUS,
        ]
        .map(str::to_owned);
        let responder = Responder::subscribe(
            &client,
            subjects,
            subject::WEBHOOKS_QUEUE_GROUP,
            ResponderLimits::concurrent(settings.projection.requests_in_flight_max),
        )
        .await
        .context("subscribe to the webhooks subjects")?;
        Ok(Self {
            client,
            shared,
            worker,
            responder,
            settings,
            stop_deliveries,
        })
    }

    /// Delivers, folds and answers until `shutdown`; then stops the deliveries (an attempt in
    /// flight is abandoned: its messages stay queued) and drains NATS.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let WebhooksRole {
            client,
            shared,
            worker,
            responder,
            settings,
            stop_deliveries,
        } = self;
        // Endpoints with messages queued before a restart start delivering at once.
        let all = shared.store().endpoint_ids();
        shared.deliveries.sync(&all);
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(worker.run(stop.clone()));
        {
            let shared = Arc::clone(&shared);
            let stop = stop.clone();
            tasks.spawn(async move {
                responder
                    .serve(stop, move |msg| {
                        let shared = Arc::clone(&shared);
                        async move { Some(answer(&shared, &msg).await.into()) }
                    })
                    .await;
                Ok(())
            });
        }
        let log = LogClient::new(
            client.clone(),
            settings.projection.log_read_subject.clone(),
            1,
            Duration::from_millis(settings.projection.log_read_wait_ms_max),
        );
        tasks.spawn(notice_loop(
            Arc::clone(&shared),
            log,
            stop.clone(),
            settings.notice_batch_max,
            Duration::from_millis(settings.notice_check_ms_max),
        ));
        let mut result = Ok(());
        while let Some(r) = tasks.join_next().await {
            let r = r.context("webhooks task").and_then(|r| r);
            if r.is_err() {
                stop.cancel();
            }
            result = result.and(r);
            stop.cancel();
        }
        stop_deliveries.cancel();
        shared.deliveries.shutdown().await;
        client.drain().await.ok();
        result
    }
}

/// How long a due notice waits for the role to fold up to the log's head.
const CATCH_UP_WAIT_MS_MAX: u64 = 5_000;

/// Whether the role has folded everything the log held a moment ago: a notice is fired only
/// then, so that an event already in the log (the node renewed, expired or deleted) can still
/// cancel it.
async fn caught_up(shared: &Shared, log: &LogClient) -> bool {
    // Asked from past the head, the log answers the head alone.
    let Ok(page) = log.read(u64::MAX, 1).await else {
        return false;
    };
    let mut rx = shared.applied.subscribe();
    let wait = Duration::from_millis(CATCH_UP_WAIT_MS_MAX);
    matches!(
        tokio::time::timeout(wait, rx.wait_for(|s| *s >= page.head)).await,
        Ok(Ok(_))
    )
}

/// Fires `nodeKeyExpiringInOneDay` notices as they fall due (also those that fell due while
/// the role was down), once the role has caught up with the log.
async fn notice_loop(
    shared: Arc<Shared>,
    log: LogClient,
    stop: CancellationToken,
    batch_max: usize,
    check_max: Duration,
) -> anyhow::Result<()> {
    let batch_max = batch_max.max(1);
    loop {
        let clock = shared.deliveries.ctx().clock.clone();
        let store = Arc::clone(shared.store());
        let next = tokio::task::spawn_blocking(move || store.next_notice_ms())
            .await
            .context("webhooks notice task")?
            .context("the webhooks schedule")?;
        let mut now = clock.now();
        if next.is_some_and(|due| due <= now.unix_ms()) {
            if !caught_up(&shared, &log).await {
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(CATCH_UP_WAIT_MS_MAX)) => {}
                }
                continue;
            }
            now = clock.now();
            let store = Arc::clone(shared.store());
            let (touched, fired) =
                tokio::task::spawn_blocking(move || store.fire_notices(now, batch_max))
                    .await
                    .context("webhooks notice task")?
                    .context("the webhooks schedule")?;
            shared
                .notices_fired
                .fetch_add(fired as u64, Ordering::Relaxed);
            shared.deliveries.sync(&touched);
            continue;
        }
        let wait = next.map_or(check_max, |due| {
            Duration::from_millis(u64::try_from(due - now.unix_ms()).unwrap_or(0)).min(check_max)
        });
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = shared.wake_notices.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn reply<T: serde::Serialize>(r: Result<T, ErrorReply>) -> Vec<u8> {
    match r {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(e) => wire::reply_bytes(&e),
    }
}

fn not_found(id: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, format!("webhook {id} not found"))
}

fn internal(e: impl std::fmt::Display) -> ErrorReply {
    tracing::error!(error = %e, "webhooks store failed");
    ErrorReply::new(ErrorCode::Internal, "internal error: the webhooks store")
}

async fn on_store<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ErrorReply> {
    let store = Arc::clone(shared.store());
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(internal)?
        .map_err(internal)
}

async fn answer(shared: &Shared, msg: &Message) -> Vec<u8> {
    let payload = &msg.payload;
    match msg.subject.as_str() {
        subject::WEBHOOKS_LIST => reply(list(shared, payload).await),
        subject::WEBHOOKS_GET => reply(get(shared, payload).await),
        subject::WEBHOOKS_SECRET => reply(secret(shared, payload).await),
        subject::WEBHOOKS_TEST => reply(test(shared, payload).await),
        subject::WEBHOOKS_STATUS => reply(status(shared).await),
        other => reply::<()>(Err(ErrorReply::new(
            ErrorCode::BadRequest,
            format!("request: unknown subject {other}"),
        ))),
    }
}

async fn list(shared: &Shared, payload: &[u8]) -> Result<WebhooksAnswer, ErrorReply> {
    let q: WebhooksListQuery = wire::decode(payload)?;
    let seq = shared.wait_for(q.min_seq).await?;
    let webhooks = on_store(shared, move |s| {
        s.endpoints_of(&q.tailnet)
            .into_iter()
            .map(|(id, row)| {
                let dropped = s.dropped(&id)?.len() as u64;
                let last_error = s.last_error(&id)?;
                Ok(row.to_wire(&id, s.queued(&id), dropped, last_error))
            })
            .collect()
    })
    .await?;
    Ok(WebhooksAnswer {
        ok: wire::True,
        webhooks,
        seq,
    })
}

async fn get(shared: &Shared, payload: &[u8]) -> Result<WebhookAnswer, ErrorReply> {
    let q: WebhookGetQuery = wire::decode(payload)?;
    let seq = shared.wait_for(q.min_seq).await?;
    let id = q.endpoint_id.clone();
    let found = on_store(shared, move |s| {
        let Some((_, row)) = s.endpoint_in(&q.tailnet, &q.endpoint_id) else {
            return Ok(None);
        };
        let dropped = s.dropped(&q.endpoint_id)?;
        let last_error = s.last_error(&q.endpoint_id)?;
        let w = row.to_wire(
            &q.endpoint_id,
            s.queued(&q.endpoint_id),
            dropped.len() as u64,
            last_error,
        );
        Ok(Some((w, dropped)))
    })
    .await?;
    let (webhook, dropped) = found.ok_or_else(|| not_found(&id))?;
    Ok(WebhookAnswer {
        ok: wire::True,
        webhook,
        dropped,
        seq,
    })
}

async fn secret(shared: &Shared, payload: &[u8]) -> Result<WebhookSecretAnswer, ErrorReply> {
    let q: WebhookSecretQuery = wire::decode(payload)?;
    let seq = shared.wait_for(q.min_seq).await?;
    let (id, row): (EndpointId, _) = shared
        .store()
        .endpoint_in(&q.tailnet, &q.endpoint_id)
        .ok_or_else(|| not_found(&q.endpoint_id))?;
    let mut webhook = row.to_wire(
        &q.endpoint_id,
        shared.store().queued(&q.endpoint_id),
        0,
        None,
    );
    webhook.secret = Some(shared.deliveries.ctx().key.secret(&id, row.rotation));
    Ok(WebhookSecretAnswer {
        ok: wire::True,
        webhook,
        seq,
    })
}

async fn test(shared: &Shared, payload: &[u8]) -> Result<WebhookTestAnswer, ErrorReply> {
    let q: WebhookTestQuery = wire::decode(payload)?;
    let seq = shared.wait_for(q.min_seq).await?;
    let (id, _) = shared
        .store()
        .endpoint_in(&q.tailnet, &q.endpoint_id)
        .ok_or_else(|| not_found(&q.endpoint_id))?;
    let now = shared.deliveries.ctx().clock.now();
    let tailnet = q.tailnet.clone();
    let actor = q.actor.clone();
    let endpoint = id.to_string();
    on_store(shared, move |s| {
        // The test event names the tailnet as the events do: by its name.
        let name = s.tailnet_name(&tailnet)?;
        s.enqueue(&endpoint, message::test_message(now, &name, &actor))
    })
    .await?;
    shared.deliveries.sync(&[id.to_string()]);
    Ok(WebhookTestAnswer {
        ok: wire::True,
        seq,
    })
}

async fn status(shared: &Shared) -> Result<WebhooksStatus, ErrorReply> {
    let counts = on_store(shared, |s| s.counts()).await?;
    let stats = &shared.deliveries.ctx().stats;
    Ok(WebhooksStatus {
        seq: *shared.applied.borrow(),
        endpoints: counts.endpoints,
        queued: counts.queued,
        delivered: stats.delivered.load(Ordering::Relaxed),
        failed_attempts: stats.failed_attempts.load(Ordering::Relaxed),
        dropped: counts.dropped,
        scheduled: counts.scheduled,
    })
}

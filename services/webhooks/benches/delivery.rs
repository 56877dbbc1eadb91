//! Webhook deliveries (R23): how fast a backlog drains to one and to 100 endpoints, and the lag
//! from a command's commit to its webhook's arrival at a steady 1 000 events/s.
//!
//! Starts the real stack in-process: a nats-server, the command service on a bootstrapped
//! tailnet (log, relay to JetStream, `authkeys.log.read`), the webhooks role (`WebhooksRole`,
//! with `--webhooks-allow-private` and a 100 ms retry cap) and an HTTP receiver on loopback
//! (axum) that counts every event it is sent, per endpoint.
//!
//! - **Drain**: the receiver answers 503 while N `generate-key` commands commit (so every
//!   endpoint's queue fills with N `keyCreated` events), then 200; deliveries/s = the events
//!   delivered (N × endpoints) / the time from the switch to the last one. Batches are the
//!   role's (≤ 100 events per POST).
//! - **Lag**: one endpoint; `generate-key` at a steady rate, open loop (a ticker releases the
//!   commands due, each on its own task). `t0` is the command's reply (the commit is durable
//!   then); delivered is the receiver's arrival of that key's `keyCreated`; the lag includes the
//!   relay to JetStream, the role's fold into its store and the POST.
//!
//! The load generator, the receiver and the stack share the machine's cores.
//! Run: `cargo bench -p authkeys-webhooks --bench delivery` (needs `make tools` for the
//! nats-server binary, or `NATS_SERVER`). `AUTHKEYS_BENCH_SECONDS` sets the lag run (default 5),
//! `AUTHKEYS_BENCH_EVENTS` the drain backlog per endpoint count (default 2000 for one endpoint,
//! a tenth of it per endpoint for 100).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_protocol::webhook::{CreateWebhookRequest, DeleteWebhookRequest, WebhookIdReply};
use authkeys_protocol::{GenerateKeyRequest, KeyReply, Reply, subject};
use authkeys_tests::NatsServer;
use authkeys_webhooks::{WebhooksRole, WebhooksSettings};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Bound on one NATS request of the load generator.
const REQUEST_WAIT_MS_MAX: u64 = 30_000;
/// Commands in flight while filling a backlog.
const FILL_IN_FLIGHT_MAX: usize = 64;
/// Bound on a drain or on the last deliveries of a lag run.
const DELIVERED_WAIT_MS_MAX: u64 = 120_000;
/// The steady rate of the lag run.
const LAG_RATE: u64 = 1_000;

#[derive(Default)]
struct Receiver {
    accepting: AtomicBool,
    delivered: AtomicU64,
    requests: AtomicU64,
    /// Key id → arrival, while a lag run records them.
    arrivals: Mutex<HashMap<String, Instant>>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Path(_endpoint): Path<String>,
    body: Bytes,
) -> StatusCode {
    if !r.accepting.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let now = Instant::now();
    let events: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    r.requests.fetch_add(1, Ordering::Relaxed);
    r.delivered
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    let mut arrivals = r.arrivals.lock().expect("lock");
    for e in &events {
        if let Some(k) = e["data"]["keyID"].as_str() {
            arrivals.entry(k.to_owned()).or_insert(now);
        }
    }
    StatusCode::OK
}

struct Ctx {
    commands: async_nats::Client,
    tailnet: String,
    owner: String,
    receiver: Arc<Receiver>,
    url: String,
    next: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let seconds: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_SECONDS", 5);
    let events: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_EVENTS", 2_000);
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let made =
        tokio::task::spawn_blocking(move || bootstrap(&path, "example.com", "o@example.com"))
            .await??;
    let shutdown = CancellationToken::new();
    let app = CommandRole::build(CommandSettings::new(dir.path(), nats.url())).await?;
    let command_task = tokio::spawn(app.run(shutdown.clone()));
    let mut settings = WebhooksSettings::new(dir.path().join("webhooks"));
    settings.delivery.allow_private = true;
    settings.delivery.retry_base_ms = 20;
    settings.delivery.retry_cap_ms = 100;
    let hooks_client = async_nats::connect(nats.url()).await?;
    let clock = authkeys_events::decision::system_clock();
    let hooks = WebhooksRole::build(hooks_client, settings, clock).await?;
    let hooks_task = tokio::spawn(hooks.run(shutdown.clone()));

    let receiver = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook/{endpoint}", post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let ctx = Arc::new(Ctx {
        commands: authkeys_tests::nats_client(&nats.url(), REQUEST_WAIT_MS_MAX).await?,
        tailnet: made.tailnet_id.to_string(),
        owner: made.owner_id.to_string(),
        receiver,
        url,
        next: AtomicU64::new(0),
    });

    let mut drains = Vec::new();
    for (endpoints, per_endpoint) in [(1u64, events), (100, (events / 10).max(1))] {
        drains.push(drain(&ctx, endpoints, per_endpoint).await?);
    }
    let endpoint = create_endpoints(&ctx, 1).await?;
    let lag = lag_run(&ctx, LAG_RATE, Duration::from_secs(seconds)).await?;
    delete_endpoints(&ctx, &endpoint).await?;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!();
    println!(
        "Webhook deliveries: draining a backlog of keyCreated events (batches of ≤ 100 per POST; \
         nproc {cores}; {date})"
    );
    println!();
    println!("| endpoints | events per endpoint | deliveries | POSTs | drain (s) | deliveries/s |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for d in &drains {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} |",
            d.endpoints,
            d.per_endpoint,
            d.delivered,
            d.requests,
            d.elapsed.as_secs_f64(),
            d.delivered as f64 / d.elapsed.as_secs_f64()
        );
    }
    println!();
    println!(
        "Commit → delivered at a steady rate, one endpoint ({seconds} s; generate-key commands)"
    );
    println!();
    println!(
        "| target events/s | achieved events/s | events | p50 (ms) | p99 (ms) | max (ms) | failed commands | never delivered |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
        lag.rate,
        lag.achieved,
        lag.lags.len(),
        ms(percentile(&lag.lags, 0.50)),
        ms(percentile(&lag.lags, 0.99)),
        ms(lag.lags.last().copied().unwrap_or_default()),
        lag.failed,
        lag.missing,
    );

    shutdown.cancel();
    command_task.await??;
    hooks_task.await??;
    drop(nats);
    Ok(())
}

struct Drain {
    endpoints: u64,
    per_endpoint: u64,
    delivered: u64,
    requests: u64,
    elapsed: Duration,
}

async fn drain(ctx: &Arc<Ctx>, endpoints: u64, per_endpoint: u64) -> anyhow::Result<Drain> {
    let r = &ctx.receiver;
    r.accepting.store(false, Ordering::SeqCst);
    let ids = create_endpoints(ctx, endpoints).await?;
    let started = Instant::now();
    futures::stream::iter(0..per_endpoint)
        .map(|_| generate(ctx))
        .buffer_unordered(FILL_IN_FLIGHT_MAX)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "{endpoints} endpoint(s): {per_endpoint} events committed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Let the role fold the whole backlog before the receiver opens.
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.delivered.store(0, Ordering::SeqCst);
    r.requests.store(0, Ordering::SeqCst);
    let want = endpoints * per_endpoint;
    let opened = Instant::now();
    r.accepting.store(true, Ordering::SeqCst);
    let deadline = opened + Duration::from_millis(DELIVERED_WAIT_MS_MAX);
    while r.delivered.load(Ordering::SeqCst) < want {
        anyhow::ensure!(Instant::now() < deadline, "the backlog did not drain");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = opened.elapsed();
    let out = Drain {
        endpoints,
        per_endpoint,
        delivered: r.delivered.load(Ordering::SeqCst),
        requests: r.requests.load(Ordering::SeqCst),
        elapsed,
    };
    delete_endpoints(ctx, &ids).await?;
    Ok(out)
}

struct Lag {
    rate: u64,
    achieved: f64,
    /// Sorted.
    lags: Vec<Duration>,
    failed: u64,
    missing: u64,
}

async fn lag_run(ctx: &Arc<Ctx>, rate: u64, span: Duration) -> anyhow::Result<Lag> {
    ctx.receiver.accepting.store(true, Ordering::SeqCst);
    ctx.receiver.arrivals.lock().expect("lock").clear();
    let total = rate * span.as_secs();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = started + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let ctx = Arc::clone(ctx);
        tasks.spawn(async move {
            let key = generate(&ctx).await;
            key.map(|k| (k, Instant::now()))
        });
    }
    let mut committed = Vec::new();
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(c)) => committed.push(c),
            _ => failed += 1,
        }
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_millis(DELIVERED_WAIT_MS_MAX);
    loop {
        let got = ctx.receiver.arrivals.lock().expect("lock").len();
        if got >= committed.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrivals = ctx.receiver.arrivals.lock().expect("lock").clone();
    let mut lags = Vec::new();
    let mut missing = 0;
    for (key, t0) in &committed {
        match arrivals.get(key) {
            Some(at) => lags.push(at.saturating_duration_since(*t0)),
            None => missing += 1,
        }
    }
    lags.sort();
    Ok(Lag {
        rate,
        achieved,
        lags,
        failed,
        missing,
    })
}

async fn create_endpoints(ctx: &Ctx, n: u64) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let i = ctx.next.fetch_add(1, Ordering::Relaxed);
        let reply: WebhookIdReply = call(
            &ctx.commands,
            subject::CREATE_WEBHOOK,
            &CreateWebhookRequest {
                command_id: format!("bench-hook-{i}"),
                tailnet: ctx.tailnet.clone(),
                actor: ctx.owner.clone(),
                endpoint_url: format!("{}/{i}", ctx.url),
                provider_type: None,
                subscriptions: vec!["keyCreated".to_owned()],
            },
        )
        .await?;
        ids.push(reply.endpoint_id);
    }
    Ok(ids)
}

async fn delete_endpoints(ctx: &Ctx, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let i = ctx.next.fetch_add(1, Ordering::Relaxed);
        let _: WebhookIdReply = call(
            &ctx.commands,
            subject::DELETE_WEBHOOK,
            &DeleteWebhookRequest {
                command_id: format!("bench-unhook-{i}"),
                tailnet: ctx.tailnet.clone(),
                actor: ctx.owner.clone(),
                endpoint_id: id.clone(),
            },
        )
        .await?;
    }
    Ok(())
}

/// One `generate-key`: the new key's id.
async fn generate(ctx: &Ctx) -> anyhow::Result<String> {
    let i = ctx.next.fetch_add(1, Ordering::Relaxed);
    let reply: KeyReply = call(
        &ctx.commands,
        subject::GENERATE_KEY,
        &GenerateKeyRequest {
            command_id: format!("bench-key-{i}"),
            tailnet: ctx.tailnet.clone(),
            actor: ctx.owner.clone(),
            key_type: None,
            description: None,
            expiry_seconds: None,
            capabilities: serde_json::from_value(json!({"devices": {"create": {}}}))?,
        },
    )
    .await?;
    Ok(reply.key.id)
}

async fn call<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subj: &'static str,
    body: &impl Serialize,
) -> anyhow::Result<T> {
    let msg = client
        .request(subj, serde_json::to_vec(body)?.into())
        .await
        .with_context(|| format!("request on {subj}"))?;
    serde_json::from_slice::<Reply<T>>(&msg.payload)?
        .into_result()
        .map_err(|e| anyhow::anyhow!("{subj} refused: {e:?}"))
}

/// The `p` quantile of sorted `lags` (nearest rank).
fn percentile(lags: &[Duration], p: f64) -> Duration {
    if lags.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * lags.len() as f64).ceil() as usize).clamp(1, lags.len());
    lags[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

//! Fan-out lag: at a steady rate of commands, how long from a command's commit until the
//! machines view shows it, as p50 / p99 / max.
//!
//! Starts the real stack in-process: a nats-server, the command service on a bootstrapped tailnet
//! (log, relay to JetStream, `authkeys.log.read`) and the projection views (`Views`).
//! Registers a pool of nodes with one reusable key, then drives an open-loop rate of
//! `authkeys.cmd.node.connected` / `authkeys.cmd.node.disconnected` (each toggle changes the
//! node's state, so it writes one event): a ticker releases the commands due so far, each on its
//! own task, never waiting for one to finish before sending the next.
//!
//! Only every `AUTHKEYS_BENCH_PROBE_EVERY`-th command (default 20) is probed, so that the
//! benchmark's own queries are not the load it measures; the others only commit.
//!
//! Per probed command: `t0` is when its reply arrives (the commit is durable then); its seq is the
//! log's head read right after the reply — an upper bound on the command's own seq (other
//! commits may land in between), so the lag printed can only be overstated, never understated.
//! Visible is when `authkeys.query.devices.get {tailnet, nodeId, minSeq: seq}` answers (the view
//! waits for `minSeq`, bounded by `read_wait_ms_max`); the lag is that answer's arrival − `t0`,
//! and includes one query round trip. An `unavailable` answer (the view did not reach the seq in
//! time) is counted and the query retried, so a slow command still shows in the percentiles.
//! The load generator shares the machine's cores with the stack it measures.
//!
//! Run: `cargo bench -p authkeys-projections --bench fanout` (needs `make tools` for the
//! nats-server binary, or `NATS_SERVER`). `AUTHKEYS_BENCH_SECONDS` sets the run per rate
//! (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_log::Log;
use authkeys_projections::ProjectionConfig;
use authkeys_protocol::query::{DeviceAnswer, DevicesGetQuery, Query};
use authkeys_protocol::{
    DeviceReply, ErrorCode, GenerateKeyRequest, KeyReply, NodeStatusRequest, RegisterRequest,
    Reply, subject,
};
use authkeys_tests::NatsServer;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The target rates, commands per second.
const RATES: &[u64] = &[1_000, 5_000, 10_000];
/// Nodes registered before the runs; the toggles go round-robin over them.
const NODES: usize = 500;
/// Registrations in flight while building the pool.
const REGISTERS_IN_FLIGHT_MAX: usize = 64;
/// Bound on one command or query answer.
const REQUEST_WAIT_MS_MAX: u64 = 30_000;
/// Bound on a command becoming visible, across `unavailable` retries.
const VISIBLE_WAIT_MS_MAX: u64 = 30_000;
/// Queries the views answer at once: above the default (256) so that queries parked on
/// `minSeq` do not queue behind each other and add to the lag measured.
const QUERIES_IN_FLIGHT_MAX: usize = 16_384;
/// The ticker's period; each tick releases every command due by then.
const TICK: Duration = Duration::from_millis(1);

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

/// One node of the pool.
struct Node {
    key: String,
    id: String,
}

/// What the runs share.
struct Ctx {
    commands: async_nats::Client,
    queries: async_nats::Client,
    log: Log<authkeys_domain::State>,
    tailnet: String,
    nodes: Vec<Node>,
    /// One command in this many is probed.
    probe_every: u64,
}

/// One command's outcome.
enum Outcome {
    /// Visible after this lag; `unavailable` answers on the way.
    Visible { lag: Duration, unavailable: u32 },
    /// Committed, not probed.
    Committed,
    /// The command was refused or not answered.
    CommandFailed,
    /// Never visible within `VISIBLE_WAIT_MS_MAX` (or the query failed otherwise).
    NotVisible { unavailable: u32 },
}

async fn run() -> anyhow::Result<()> {
    let seconds: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_SECONDS", 5);
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let made =
        tokio::task::spawn_blocking(move || bootstrap(&path, "example.com", "o@example.com"))
            .await??;
    let shutdown = CancellationToken::new();
    let app = CommandRole::build(CommandSettings::new(dir.path(), nats.url())).await?;
    let log = app.log().expect("the service opened its log");
    let command_task = tokio::spawn(app.run(shutdown.clone()));
    let views_client = async_nats::connect(nats.url()).await?;
    let mut config = ProjectionConfig::new(dir.path().join("views"));
    config.requests_in_flight_max = QUERIES_IN_FLIGHT_MAX;
    let clock = authkeys_events::decision::system_clock();
    let views = authkeys_projections::Views::build(views_client, config, clock).await?;
    let views_task = tokio::spawn(views.run(shutdown.clone()));

    let url = nats.url();
    let connect = || authkeys_tests::nats_client(&url, REQUEST_WAIT_MS_MAX);
    let commands = connect().await?;
    let queries = connect().await?;
    let tailnet = made.tailnet_id.to_string();

    let generate = GenerateKeyRequest {
        command_id: "bench-key".to_owned(),
        tailnet: tailnet.clone(),
        actor: made.owner_id.to_string(),
        key_type: None,
        description: None,
        expiry_seconds: None,
        capabilities: serde_json::from_value(
            json!({"devices": {"create": {"reusable": true, "preauthorized": true}}}),
        )?,
    };
    let key: KeyReply = call(&commands, subject::GENERATE_KEY, &generate).await?;
    let auth_key = key.key.key.context("a new key carries its secret")?;

    let started = Instant::now();
    let nodes: Vec<Node> = futures::stream::iter(0..NODES)
        .map(|i| {
            let commands = commands.clone();
            let auth_key = auth_key.clone();
            async move {
                let node_key = format!("nodekey:{i:064x}");
                let reply: DeviceReply = call(
                    &commands,
                    subject::REGISTER,
                    &RegisterRequest {
                        request_id: format!("reg-{i}"),
                        auth_key,
                        node_key: node_key.clone(),
                        hostname: format!("bench-{i}"),
                        os: Some("linux".to_owned()),
                    },
                )
                .await?;
                anyhow::Ok(Node {
                    key: node_key,
                    id: reply.device.node_id,
                })
            }
        })
        .buffered(REGISTERS_IN_FLIGHT_MAX)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "registered {NODES} nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let ctx = Arc::new(Ctx {
        commands,
        queries,
        log,
        tailnet,
        nodes,
        probe_every: authkeys_tests::env_or("AUTHKEYS_BENCH_PROBE_EVERY", 20u64).max(1),
    });
    // The views are up and caught up with the registrations.
    let head = ctx.log.head().seq;
    let deadline = Instant::now() + Duration::from_millis(VISIBLE_WAIT_MS_MAX);
    loop {
        if let Ok(Visible::Yes) = visible(&ctx, &ctx.nodes[0].id, head).await {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the views did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rows = Vec::new();
    let mut next = 0u64;
    for &rate in RATES {
        rows.push(measure(&ctx, rate, Duration::from_secs(seconds), &mut next).await?);
    }

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!();
    println!(
        "Fan-out lag, commit → visible in the machines view ({seconds} s per rate; node \
         connected/disconnected toggles over {NODES} nodes; one command in {} probed; nproc \
         {cores}; {date})",
        ctx.probe_every
    );
    println!();
    println!(
        "| target cmd/s | achieved cmd/s | commands | probed | p50 lag (ms) | p99 lag (ms) | max lag (ms) | unavailable answers | failed commands | never visible |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.rate,
            r.achieved,
            r.commands,
            r.lags.len(),
            ms(percentile(&r.lags, 0.50)),
            ms(percentile(&r.lags, 0.99)),
            ms(r.lags.last().copied().unwrap_or_default()),
            r.unavailable,
            r.command_failed,
            r.not_visible,
        );
    }

    shutdown.cancel();
    command_task.await??;
    views_task.await??;
    drop(nats);
    Ok(())
}

struct Row {
    rate: u64,
    achieved: f64,
    commands: usize,
    /// Committed commands (probed or not).
    committed: usize,
    /// Sorted.
    lags: Vec<Duration>,
    unavailable: u64,
    command_failed: u64,
    not_visible: u64,
}

/// Sends `rate` commands a second for `span`, open loop, and collects their lags.
async fn measure(ctx: &Arc<Ctx>, rate: u64, span: Duration, next: &mut u64) -> anyhow::Result<Row> {
    let total = rate * span.as_secs();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due.min(total) {
            let n = *next;
            *next += 1;
            sent += 1;
            let ctx = ctx.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let outcome = one(&ctx, n).await;
                let _ = tx.send((Instant::now(), outcome));
            });
        }
    }
    let send_span = started.elapsed();
    drop(tx);
    let mut row = Row {
        rate,
        achieved: 0.0,
        commands: 0,
        committed: 0,
        lags: Vec::with_capacity(total as usize),
        unavailable: 0,
        command_failed: 0,
        not_visible: 0,
    };
    let mut last_commit = started;
    while let Some((at, outcome)) = rx.recv().await {
        row.commands += 1;
        match outcome {
            Outcome::Committed => {
                row.committed += 1;
                last_commit = last_commit.max(at);
            }
            Outcome::Visible { lag, unavailable } => {
                row.committed += 1;
                row.lags.push(lag);
                row.unavailable += u64::from(unavailable);
                last_commit = last_commit.max(at - lag);
            }
            Outcome::CommandFailed => row.command_failed += 1,
            Outcome::NotVisible { unavailable } => {
                row.committed += 1;
                row.unavailable += u64::from(unavailable);
                row.not_visible += 1;
            }
        }
    }
    row.lags.sort();
    // Commits per second from the first send to the last commit (at least the send window).
    let window = (last_commit - started).max(send_span);
    row.achieved = row.committed as f64 / window.as_secs_f64();
    eprintln!(
        "{rate}/s: sent {sent} in {:.2} s, last commit at {:.2} s",
        send_span.as_secs_f64(),
        (last_commit - started).as_secs_f64()
    );
    Ok(row)
}

/// Command `n`: toggles node `n % NODES` (connected on even rounds, disconnected on odd), then,
/// if it is probed, waits for the machines view to show it.
async fn one(ctx: &Ctx, n: u64) -> Outcome {
    let node = &ctx.nodes[(n % NODES as u64) as usize];
    let subj = if (n / NODES as u64).is_multiple_of(2) {
        subject::NODE_CONNECTED
    } else {
        subject::NODE_DISCONNECTED
    };
    let request = NodeStatusRequest {
        request_id: format!("t-{n}"),
        node_key: node.key.clone(),
    };
    if call::<DeviceReply>(&ctx.commands, subj, &request)
        .await
        .is_err()
    {
        return Outcome::CommandFailed;
    }
    if !n.is_multiple_of(ctx.probe_every) {
        return Outcome::Committed;
    }
    let t0 = Instant::now();
    // An upper bound on this command's seq.
    let seq = ctx.log.head().seq;
    let deadline = t0 + Duration::from_millis(VISIBLE_WAIT_MS_MAX);
    let mut unavailable = 0;
    loop {
        match visible(ctx, &node.id, seq).await {
            Ok(Visible::Yes) => {
                return Outcome::Visible {
                    lag: t0.elapsed(),
                    unavailable,
                };
            }
            Ok(Visible::Unavailable) if Instant::now() < deadline => unavailable += 1,
            _ => return Outcome::NotVisible { unavailable },
        }
    }
}

enum Visible {
    Yes,
    Unavailable,
}

/// Asks the machines view for `node_id` once it has applied `seq`.
async fn visible(ctx: &Ctx, node_id: &str, seq: u64) -> anyhow::Result<Visible> {
    let query = DevicesGetQuery {
        tailnet: ctx.tailnet.clone(),
        node_id: node_id.to_owned(),
        min_seq: Some(seq),
    };
    let msg = ctx
        .queries
        .request(DevicesGetQuery::SUBJECT, serde_json::to_vec(&query)?.into())
        .await?;
    match serde_json::from_slice::<Reply<DeviceAnswer>>(&msg.payload)?.into_result() {
        Ok(_) => Ok(Visible::Yes),
        Err(e) if e.code == ErrorCode::Unavailable => Ok(Visible::Unavailable),
        Err(e) => anyhow::bail!("devices.get refused: {e:?}"),
    }
}

/// A command request, with its `{ok: false}` answer as an error.
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

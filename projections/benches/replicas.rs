//! Read throughput with 1, 2 and 3 projection replicas (SPEC §7): each replica is a `Views`
//! with its own data dir and its own durable consumers (`view-rN-…`, as `authkeys project
//! --replica rN` names them), all answering `authkeys.query.*` in one queue group. A closed loop
//! of 64 requesters asks `authkeys.query.devices.get` for random nodes of a 2,000-node tailnet
//! (with `minSeq` = the log head, as the gateway's reads do): queries/s, p50, p99.
//!
//! Everything shares this machine's cores (the replicas, nats-server and the load), so the
//! figures show how the replicas share one machine; on separate machines each adds its own.
//!
//! Run: `cargo bench -p authkeys-projections --bench replicas` (needs `make tools` for the
//! nats-server binary, or `NATS_SERVER`). `AUTHKEYS_BENCH_SECONDS` sets each run (default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_projections::ProjectionConfig;
use authkeys_protocol::query::{DevicesGetQuery, Query};
use authkeys_protocol::{
    DeviceReply, GenerateKeyRequest, KeyReply, RegisterRequest, Reply, subject,
};
use authkeys_tests::NatsServer;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NODES: usize = 2_000;
const REQUESTERS: usize = 64;
const REPLICAS: [usize; 3] = [1, 2, 3];

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn call<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    request: &impl serde::Serialize,
) -> anyhow::Result<T> {
    let msg = client
        .request(subject, serde_json::to_vec(request)?.into())
        .await?;
    match serde_json::from_slice::<Reply<T>>(&msg.payload)? {
        Reply::Ok(ok) => Ok(ok),
        Reply::Err(e) => anyhow::bail!("{subject}: {}", e.error.message),
    }
}

async fn run() -> anyhow::Result<()> {
    let seconds: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_SECONDS", 3);
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
    let client = authkeys_tests::nats_client(&nats.url(), 30_000).await?;
    let tailnet = made.tailnet_id.to_string();
    let generate = GenerateKeyRequest {
        command_id: "bench-key".to_owned(),
        tailnet: tailnet.clone(),
        actor: made.owner_id.to_string(),
        key_type: None,
        description: None,
        expiry_seconds: None,
        capabilities: serde_json::from_value(json!({"devices": {"create": {"reusable": true}}}))?,
    };
    let key: KeyReply = call(&client, subject::GENERATE_KEY, &generate).await?;
    let auth_key = key.key.key.context("a new key carries its secret")?;
    let nodes: Vec<String> = futures::stream::iter(0..NODES)
        .map(|i| {
            let (client, auth_key) = (client.clone(), auth_key.clone());
            async move {
                let reply: DeviceReply = call(
                    &client,
                    subject::REGISTER,
                    &RegisterRequest {
                        request_id: format!("reg-{i}"),
                        auth_key,
                        node_key: format!("nodekey:{i:064x}"),
                        hostname: format!("bench-{i}"),
                        os: Some("linux".to_owned()),
                    },
                )
                .await?;
                anyhow::Ok(reply.device.node_id)
            }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let head = log.head().seq;
    let nodes = Arc::new(nodes);

    let mut rows = Vec::new();
    for replicas in REPLICAS {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for r in 0..replicas {
            let mut config =
                ProjectionConfig::new(dir.path().join(format!("views-{replicas}-{r}")));
            config.consumer_prefix = format!("view-r{replicas}x{r}-");
            let views_client = async_nats::connect(nats.url()).await?;
            let clock = authkeys_events::decision::system_clock();
            let views = authkeys_projections::Views::build(views_client, config, clock).await?;
            tasks.push(tokio::spawn(views.run(stop.clone())));
        }
        // Every replica has caught up: asked enough times, each has answered at the head.
        for _ in 0..replicas * 20 {
            let q = DevicesGetQuery {
                tailnet: tailnet.clone(),
                node_id: nodes[0].clone(),
                min_seq: Some(head),
            };
            let _: serde_json::Value = call(&client, DevicesGetQuery::SUBJECT, &q).await?;
        }
        rows.push((
            replicas,
            storm(&client, &tailnet, &nodes, head, seconds).await,
        ));
        stop.cancel();
        for t in tasks {
            t.await??;
        }
    }

    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!();
    println!(
        "Reads with projection replicas ({seconds} s each; {REQUESTERS} requesters; \
         devices.get over {NODES} nodes; {date})"
    );
    println!();
    println!("| replicas | queries/s | p50 ms | p99 ms | failed |");
    println!("|---:|---:|---:|---:|---:|");
    for (replicas, (rate, p50, p99, failed)) in rows {
        println!(
            "| {replicas} | {rate:.0} | {:.2} | {:.2} | {failed} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    shutdown.cancel();
    command_task.await??;
    Ok(())
}

/// `REQUESTERS` closed loops of `devices.get` for `seconds`: (queries/s, p50, p99, failures).
async fn storm(
    client: &async_nats::Client,
    tailnet: &str,
    nodes: &Arc<Vec<String>>,
    head: u64,
    seconds: u64,
) -> (f64, Duration, Duration, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..REQUESTERS {
        let (client, nodes, stop) = (client.clone(), Arc::clone(nodes), Arc::clone(&stop));
        let tailnet = tailnet.to_owned();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut failed, mut n) = (Vec::new(), 0usize, r);
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(31).wrapping_add(7) % nodes.len();
                let q = DevicesGetQuery {
                    tailnet: tailnet.clone(),
                    node_id: nodes[n].clone(),
                    min_seq: Some(head),
                };
                let payload = serde_json::to_vec(&q).expect("encodes");
                let t = Instant::now();
                match client
                    .request(DevicesGetQuery::SUBJECT, payload.into())
                    .await
                {
                    Ok(msg) if msg.payload.starts_with(b"{\"ok\":true") => lat.push(t.elapsed()),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (lat, f) = t.await.expect("requester");
        all.extend(lat);
        failed += f;
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (rate, pct(0.50), pct(0.99), failed)
}

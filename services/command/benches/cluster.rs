//! Registrations on a 3-node NATS cluster on loopback (SPEC §7): the command service
//! (`CommandRole`, relay on, events stream at replicas 3) with and without
//! `--ack-after-replication`, for 1, 64 and 256 concurrent requesters sending
//! `authkeys.cmd.register` (reusable keys, a distinct node key per request): registrations/s and
//! p50/p99 latency, beside a NATS request/reply echo through the same cluster. Prints a Markdown
//! table.
//!
//! `cargo bench -p authkeys-command --bench cluster`. `BENCH_SECONDS` sets the time per cell
//! (default 3). Needs nats-server (`make tools` or `NATS_SERVER`).

mod support;

use std::sync::Arc;

use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_command::{CommandConfig, RateLimitConfig};
use authkeys_protocol::subject;
use authkeys_tests::NatsCluster;
use futures::StreamExt;
use support::measure::{fmt_ms, seconds_and_runtime};
use support::{Measured, register_payload, storm};
use tokio_util::sync::CancellationToken;

const KEYS: usize = 8;
const LEVELS: [usize; 3] = [1, 64, 256];

fn main() {
    let (secs, rt) = seconds_and_runtime();
    rt.block_on(run(secs));
}

/// One storm per level against a fresh command service on `urls`.
async fn registrations(urls: &str, secs: f64, ack_after_replication: bool) -> Vec<Measured> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let made = tokio::task::spawn_blocking(move || bootstrap(&path, "bench.example", "o@bench"))
        .await
        .expect("join")
        .expect("bootstrap");
    let mut settings = CommandSettings::new(dir.path(), urls);
    if let Some(relay) = &mut settings.relay {
        relay.replicas = Some(3);
        // Each run has its own stream: the log starts at seq 1 again.
        relay.stream = format!("BENCH_{}", u8::from(ack_after_replication));
        relay.subject_prefix = format!("bench{}.events", u8::from(ack_after_replication));
    }
    settings.command = CommandConfig {
        rate_limits: RateLimitConfig::off(),
        ack_after_replication,
        ..CommandConfig::default()
    };
    let app = CommandRole::build(settings).await.expect("command service");
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(app.run(shutdown.clone()));
    let client = authkeys_protocol::nats::connect(urls, "bench")
        .await
        .expect("connect");
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let (tailnet, owner) = (made.tailnet_id.to_string(), made.owner_id.to_string());
        keys.push(
            support::generate_key(&client, &format!("bench-key-{i}"), &tailnet, &owner, None).await,
        );
    }
    let keys = Arc::new(keys);
    let mut out = Vec::new();
    for level in LEVELS {
        let (client, keys) = (client.clone(), Arc::clone(&keys));
        out.push(
            storm(level, secs, move |r, n| {
                let (client, keys) = (client.clone(), Arc::clone(&keys));
                async move {
                    let payload = register_payload(&keys[r % KEYS], r, n, level, false);
                    match client.request(subject::REGISTER, payload.into()).await {
                        Ok(msg) => msg.payload.starts_with(b"{\"ok\":true"),
                        Err(_) => false,
                    }
                }
            })
            .await,
        );
    }
    shutdown.cancel();
    service.await.expect("join").expect("service");
    out
}

async fn run(secs: f64) {
    let cluster = NatsCluster::start(3).expect("a 3-node nats-server cluster");
    cluster.wait_jetstream().await.expect("JetStream ready");
    let urls = cluster.urls();

    let local = registrations(&urls, secs, false).await;
    let replicated = registrations(&urls, secs, true).await;

    let echo_client = authkeys_protocol::nats::connect(&urls, "echo")
        .await
        .expect("connect");
    let mut echo_sub = echo_client
        .subscribe("bench.echo")
        .await
        .expect("subscribe");
    echo_client.flush().await.expect("flush");
    let echo_task = tokio::spawn({
        let echo_client = echo_client.clone();
        async move {
            while let Some(msg) = echo_sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = echo_client.publish(reply, msg.payload).await;
                }
            }
        }
    });
    let client = authkeys_protocol::nats::connect(&urls, "bench")
        .await
        .expect("connect");
    let mut echo = Vec::new();
    for level in LEVELS {
        let client = client.clone();
        let sample = register_payload("tskey-auth-x", 0, 0, 0, false);
        echo.push(
            storm(level, secs, move |_, _| {
                let (client, payload) = (client.clone(), sample.clone());
                async move { client.request("bench.echo", payload.into()).await.is_ok() }
            })
            .await,
        );
    }
    echo_task.abort();

    println!(
        "## Registrations on a 3-node loopback NATS cluster (events stream at replicas 3; {secs} s \
         per cell)"
    );
    println!();
    println!(
        "| requesters | acked after fsync: regs/s | p50 ms | p99 ms | acked after replication: regs/s | p50 ms | p99 ms | NATS echo req/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, level) in LEVELS.iter().enumerate() {
        let (l, r, e) = (&local[i], &replicated[i], &echo[i]);
        let failed = |m: &Measured| {
            if m.failures > 0 {
                format!(" ({} failed)", m.failures)
            } else {
                String::new()
            }
        };
        println!(
            "| {level} | {:.0}{} | {} | {} | {:.0}{} | {} | {} | {:.0} |",
            l.rate,
            failed(l),
            fmt_ms(l.p50),
            fmt_ms(l.p99),
            r.rate,
            failed(r),
            fmt_ms(r.p50),
            fmt_ms(r.p99),
            e.rate,
        );
    }
}

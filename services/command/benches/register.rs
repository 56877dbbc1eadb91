//! Registration throughput and latency of the command service, against the two limits it sits
//! on: NATS request/reply and durable redb appends.
//!
//! For 1, 64 and 256 concurrent requesters, each sending `authkeys.cmd.register` (reusable keys,
//! a distinct node key per request) through a real nats-server to the command service (`CommandRole`,
//! relay to JetStream on, as `authkeys command` runs) for a fixed time: registrations/s, p50/p99
//! latency and commands per fsync. In the same run, at the same concurrency: a trivial NATS
//! request/reply echo of the same payload (the transport's ceiling), and raw redb appends of the
//! same two events per registration (`NodeRegistered`, `KeyUsed`, their stored bytes), as many
//! registrations per transaction as there are requesters, one fsync each (the storage ceiling: no
//! hashing, no JSON, no decisions). Prints a Markdown table.
//!
//! `cargo bench -p authkeys-command --bench register`. `BENCH_SECONDS` sets the time per
//! measurement (default 3). Every node gets its own host name; `BENCH_SAME_HOSTNAME=1` gives them
//! all one, which shows the cost of finding a free machine name (`name`, `name-1`, …) as the
//! tailnet fills; `BENCH_RELAY=0` runs without the relay. Needs nats-server (`make tools` or `NATS_SERVER`).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_command::{CommandConfig, RateLimitConfig};
use authkeys_events::{EventType, Seq};
use authkeys_protocol::subject;
use authkeys_tests::NatsServer;
use futures::StreamExt;
use support::measure::{bench_raw, fmt_ms, seconds_and_runtime};
use support::{Measured, register_payload, storm};
use tokio_util::sync::CancellationToken;

/// Distinct reusable keys the requesters share, round-robin.
const KEYS: usize = 8;
/// Concurrency levels.
const LEVELS: [usize; 3] = [1, 64, 256];

struct Row {
    requesters: usize,
    register: Measured,
    per_fsync: f64,
    echo: Measured,
    raw: f64,
}

fn main() {
    let (secs, rt) = seconds_and_runtime();
    let same_host = std::env::var("BENCH_SAME_HOSTNAME").is_ok_and(|v| v == "1");
    let relay = !std::env::var("BENCH_RELAY").is_ok_and(|v| v == "0");
    rt.block_on(run(secs, same_host, relay));
}

async fn run(secs: f64, same_host: bool, relay: bool) {
    let nats = NatsServer::start().expect("nats-server (make tools, or set NATS_SERVER)");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let made = tokio::task::spawn_blocking(move || bootstrap(&path, "bench.example", "o@bench"))
        .await
        .expect("join")
        .expect("bootstrap");
    let mut settings = CommandSettings::new(dir.path(), nats.url());
    if !relay {
        settings.relay = None;
    }
    settings.command = CommandConfig {
        rate_limits: RateLimitConfig::off(),
        ..CommandConfig::default()
    };
    let app = CommandRole::build(settings).await.expect("command service");
    let log = app.log().expect("the service opened its log");
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(app.run(shutdown.clone()));
    let client = async_nats::connect(nats.url()).await.expect("connect");

    // Reusable keys.
    let mut keys = Vec::new();
    for i in 0..KEYS {
        let (tailnet, owner) = (made.tailnet_id.to_string(), made.owner_id.to_string());
        keys.push(
            support::generate_key(&client, &format!("bench-key-{i}"), &tailnet, &owner, None).await,
        );
    }
    let keys = Arc::new(keys);

    // The echo responder: the same NATS path with no work behind it.
    let echo_client = async_nats::connect(nats.url()).await.expect("connect");
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

    let mut rows = Vec::new();
    for level in LEVELS {
        let (txns0, cmds0) = {
            let s = log.stats();
            (
                s.transactions.load(Ordering::Relaxed),
                s.commands.load(Ordering::Relaxed),
            )
        };
        let register = {
            let (client, keys) = (client.clone(), Arc::clone(&keys));
            storm(level, secs, move |r, n| {
                let (client, keys) = (client.clone(), Arc::clone(&keys));
                async move {
                    let payload = register_payload(&keys[r % KEYS], r, n, level, same_host);
                    match client.request(subject::REGISTER, payload.into()).await {
                        Ok(msg) => msg.payload.starts_with(b"{\"ok\":true"),
                        Err(_) => false,
                    }
                }
            })
            .await
        };
        let per_fsync = {
            let s = log.stats();
            let txns = s.transactions.load(Ordering::Relaxed) - txns0;
            let cmds = s.commands.load(Ordering::Relaxed) - cmds0;
            cmds as f64 / txns.max(1) as f64
        };
        let echo = {
            let client = client.clone();
            let sample = register_payload(&keys[0], 0, 0, 0, same_host);
            storm(level, secs, move |_, _| {
                let (client, payload) = (client.clone(), sample.clone());
                async move { client.request("bench.echo", payload.into()).await.is_ok() }
            })
            .await
        };
        rows.push(Row {
            requesters: level,
            register,
            per_fsync,
            echo,
            raw: 0.0,
        });
    }

    // The stored bytes of one registration's events, as the log wrote them.
    let mut sample_rows = Vec::new();
    for ty in [EventType::NodeRegistered, EventType::KeyUsed] {
        let stored = log
            .read(Seq::FIRST, 4096)
            .expect("read")
            .into_iter()
            .find(|e| e.envelope().is_ok_and(|env| env.event_type() == ty))
            .expect("an event of each type");
        let mut row = vec![0u8; 32];
        row.extend_from_slice(&stored.to_json());
        sample_rows.push(row);
    }
    shutdown.cancel();
    service.await.expect("join").expect("service");
    echo_task.abort();
    for row in &mut rows {
        // Raw redb: as many registrations (two rows each, the stored bytes of real events) per
        // transaction as there are requesters.
        row.raw = bench_raw(&sample_rows, row.requesters, secs);
    }

    let registered = log.head().seq;
    println!(
        "## Registration storm (authkeys.cmd.register through nats-server; {secs} s per cell; \
         {}; relay {}; {registered} events logged)",
        if same_host {
            "one host name"
        } else {
            "distinct host names"
        },
        if relay { "on" } else { "off" }
    );
    println!();
    println!(
        "| requesters | registrations/s | p50 ms | p99 ms | commands per fsync | NATS echo req/s | echo p50 ms | echo p99 ms | raw redb regs/s (requesters per txn) | % of echo | % of raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0}{} | {} | {} | {:.1} | {:.0} | {} | {} | {:.0} | {:.0}% | {:.0}% |",
            r.requesters,
            r.register.rate,
            if r.register.failures > 0 {
                format!(" ({} failed)", r.register.failures)
            } else {
                String::new()
            },
            fmt_ms(r.register.p50),
            fmt_ms(r.register.p99),
            r.per_fsync,
            r.echo.rate,
            fmt_ms(r.echo.p50),
            fmt_ms(r.echo.p99),
            r.raw,
            100.0 * r.register.rate / r.echo.rate.max(1.0),
            100.0 * r.register.rate / r.raw.max(1.0),
        );
    }
}

//! HTTP API throughput and latency: create-key and list-devices requests/s with p50/p99, against
//! a tailnet of 10k devices, through the whole stack in-process (nats-server, command service
//! with relay and log reads, projection views, gateway on port 0), as `authkeys serve` runs it.
//!
//! Each of `BENCH_CLIENTS` (default 16) clients keeps one HTTP/1.1 connection open and sends
//! requests back to back for `BENCH_SECONDS` (default 3) per measurement; every client has its
//! own admin token (the per-token rate limit is lifted for the run). `BENCH_DEVICES` sets the
//! tailnet's size (default 10000). Prints a Markdown table.
//!
//! `cargo bench -p authkeys-cli --bench http`. Needs nats-server (`make tools` or
//! `NATS_SERVER`).

#[path = "../tests/api_support/mod.rs"]
mod api_support;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use authkeys_tests::env_or;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

/// One client: a kept-alive connection sending the same request until the deadline; returns
/// each request's latency.
async fn client(
    port: u16,
    method: &'static str,
    path: String,
    token: String,
    body: Option<Bytes>,
    until: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut took = Vec::new();
    while Instant::now() < until {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path.as_str())
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.clone().unwrap_or_default()))?;
        let started = Instant::now();
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        ensure!(
            status.is_success(),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
        took.push(started.elapsed());
    }
    Ok(took)
}

async fn measure(
    stack: &api_support::Stack,
    tokens: &[String],
    method: &'static str,
    path: &str,
    body: Option<Bytes>,
    seconds: u64,
) -> anyhow::Result<(f64, Duration, Duration, usize)> {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for t in tokens {
        tasks.spawn(client(
            stack.port,
            method,
            path.to_owned(),
            t.clone(),
            body.clone(),
            until,
        ));
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok((all.len() as f64 / secs, pct(0.5), pct(0.99), all.len()))
}

async fn bench() -> anyhow::Result<()> {
    let clients = env_or::<u64>("BENCH_CLIENTS", 16) as usize;
    let seconds = env_or::<u64>("BENCH_SECONDS", 3);
    let devices = env_or::<u64>("BENCH_DEVICES", 10_000) as usize;
    let stack = api_support::Stack::start_with(|s| {
        s.token_requests_per_second = 0;
        s.address_requests_per_second = 0;
    })
    .await?;
    let owner = stack.owner_token.clone();

    // 10k devices, registered over NATS with one reusable key, 64 at a time.
    let key = stack
        .create_key(&owner, json!({ "reusable": true }))
        .await?;
    let auth_key = key["key"].as_str().context("key")?.to_owned();
    let registered = Instant::now();
    let mut done = 0;
    while done < devices {
        let batch = (devices - done).min(64);
        let mut regs = tokio::task::JoinSet::new();
        for i in done..done + batch {
            let client = stack.client.clone();
            let auth_key = auth_key.clone();
            regs.spawn(async move {
                let request = json!({
                    "requestId": format!("bench-{i}"),
                    "authKey": auth_key,
                    "nodeKey": format!("nodekey:{:064x}", i + 1),
                    "hostname": format!("host-{i}"),
                });
                let reply = client
                    .request(
                        authkeys_protocol::subject::REGISTER,
                        serde_json::to_vec(&request)?.into(),
                    )
                    .await?;
                ensure!(
                    reply.payload.starts_with(br#"{"ok":true"#),
                    "registration refused"
                );
                anyhow::Ok(())
            });
        }
        while let Some(r) = regs.join_next().await {
            r??;
        }
        done += batch;
    }
    eprintln!(
        "registered {devices} devices in {:.1} s",
        registered.elapsed().as_secs_f64()
    );
    // Wait until the machines view shows them all (and warm it up).
    let list = stack
        .expect(200, "GET", "/api/v2/tailnet/-/devices", &owner, None)
        .await?;
    let shown = list["devices"].as_array().map_or(0, Vec::len);
    ensure!(
        shown == devices,
        "the machines view shows {shown} of {devices}"
    );

    let mut tokens = Vec::with_capacity(clients);
    for i in 0..clients {
        tokens.push(
            stack
                .add_user(&format!("bench{i}@example.com"), "admin")
                .await?
                .1,
        );
    }

    println!("| request | clients | requests/s | p50 | p99 | requests |");
    println!("|---|---:|---:|---:|---:|---:|");
    let create = Bytes::from(
        json!({ "capabilities": { "devices": { "create": { "reusable": false } } } }).to_string(),
    );
    for (name, method, path, body, n) in [
        (
            "POST /tailnet/-/keys (create key)".to_owned(),
            "POST",
            "/api/v2/tailnet/-/keys",
            Some(create),
            clients,
        ),
        (
            format!("GET /tailnet/-/devices ({devices} devices)"),
            "GET",
            "/api/v2/tailnet/-/devices",
            None,
            clients.min(4),
        ),
    ] {
        let (rate, p50, p99, count) =
            measure(&stack, &tokens[..n], method, path, body, seconds).await?;
        println!(
            "| {name} | {n} | {rate:.0} | {:.1} ms | {:.1} ms | {count} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    stack.stop().await
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

//! What the command-service benchmarks share (and `services/cli/benches/timers.rs`).

// Each benchmark uses a different part.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authkeys_protocol::{GenerateKeyRequest, KeyReply, Reply, subject};
use serde_json::json;

pub mod measure;

use measure::percentile;

/// Generates a reusable key over `authkeys.cmd.admin.generate-key` as `actor`, expiring in
/// `expiry_seconds` (the default when `None`); panics if refused. The key's secret text.
pub async fn generate_key(
    client: &async_nats::Client,
    command_id: &str,
    tailnet: &str,
    actor: &str,
    expiry_seconds: Option<u64>,
) -> String {
    let mut body = json!({
        "commandId": command_id,
        "tailnet": tailnet,
        "actor": actor,
        "capabilities": {"devices": {"create": {"reusable": true}}},
    });
    if let Some(secs) = expiry_seconds {
        body["expirySeconds"] = json!(secs);
    }
    let req: GenerateKeyRequest = serde_json::from_value(body).expect("request");
    let reply = client
        .request(
            subject::GENERATE_KEY,
            serde_json::to_vec(&req).expect("encodes").into(),
        )
        .await
        .expect("generate-key");
    match serde_json::from_slice::<Reply<KeyReply>>(&reply.payload).expect("reply") {
        Reply::Ok(k) => k.key.key.expect("the secret, in the create reply"),
        Reply::Err(e) => panic!("generate-key refused: {:?}", e.error),
    }
}

/// What a storm measured.
#[derive(Default)]
pub struct Measured {
    /// Successful requests per second.
    pub rate: f64,
    /// Latency percentiles of the successful ones.
    pub p50: Duration,
    /// …
    pub p99: Duration,
    /// Requests that failed.
    pub failures: usize,
}

/// Runs `requesters` loops of `request(requester, n)` for `secs`; each returns whether it
/// succeeded.
pub async fn storm<F, Fut>(requesters: usize, secs: f64, request: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..requesters {
        let (request, stop) = (Arc::clone(&request), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut failures = 0;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if request(r, n).await {
                    lat.push(t.elapsed());
                } else {
                    failures += 1;
                }
                n += 1;
            }
            (lat, failures)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (lat, f) = t.await.expect("requester");
        all.extend(lat);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Measured {
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        failures,
    }
}

/// An `authkeys.cmd.register` request: a distinct request id, node key and (unless `same_host`)
/// host name per `(level, requester, n)`.
pub fn register_payload(
    key: &str,
    requester: usize,
    n: u64,
    level: usize,
    same_host: bool,
) -> Vec<u8> {
    let id = format!("b{level}-{requester}-{n}");
    let hostname = if same_host {
        "bench-node".to_owned()
    } else {
        format!("bench-{level}-{requester}-{n}")
    };
    let node_key = format!("nodekey:{:016x}{:016x}{:032x}", level, requester, n);
    serde_json::to_vec(&json!({
        "requestId": id,
        "authKey": key,
        "nodeKey": node_key,
        "hostname": hostname,
        "os": "linux",
    }))
    .expect("encodes")
}

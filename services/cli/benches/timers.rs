//! The expiry timers under a burst: N keys whose expiries all fall in the same minute.
//!
//! A real nats-server, the command service in-process (`CommandRole`, relay on, as `authkeys command`
//! runs) and `authkeys timers` as its own process (the binary), so its memory is its own. N
//! keys are generated over `authkeys.cmd.admin.generate-key` (64 in flight) with `expirySeconds`
//! chosen so that their deadlines spread evenly over one minute that starts after generation
//! ends. Once every `KeyExpired` is in the log, prints for each N: the firing delay (event time −
//! the key's `expires`, read from the log) p50/p99/max, and the timers process's peak resident
//! memory (`VmHWM`). Run at two sizes: memory should not grow with the schedule.
//!
//! `cargo bench -p authkeys-cli --bench timers`. `BENCH_KEYS` (default `10000,100000`).
//! Needs nats-server (`make tools` or `NATS_SERVER`).

#[path = "../../command/benches/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_events::{Event, Seq};
use authkeys_log::Log;
use authkeys_tests::NatsServer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Generate-key requests in flight.
const IN_FLIGHT: usize = 64;
/// Time between the end of generation and the first deadline.
const LEAD: Duration = Duration::from_secs(5);
/// The window the deadlines spread over.
const WINDOW: Duration = Duration::from_secs(60);

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_KEYS")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_KEYS: comma-separated counts")
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| keys | generated in | fired p50 | fired p99 | fired max | timers peak RSS |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        rt.block_on(run(n));
    }
}

fn now_ms() -> i64 {
    authkeys_events::decision::system_clock().now().unix_ms()
}

/// Peak resident memory of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

async fn run(n: usize) {
    let nats = NatsServer::start().expect("nats-server (make tools, or set NATS_SERVER)");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("command");
    let p = path.clone();
    let made = tokio::task::spawn_blocking(move || bootstrap(&p, "bench.example", "o@bench"))
        .await
        .expect("join")
        .expect("bootstrap");
    let app = CommandRole::build(CommandSettings::new(&path, nats.url()))
        .await
        .expect("command service");
    let log = app.log().expect("the service opened its log");
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(app.run(shutdown.clone()));
    let mut timers = std::process::Command::new(env!("CARGO_BIN_EXE_authkeys"))
        .args(["timers", "--nats", &nats.url()])
        .arg("--data")
        .arg(dir.path().join("timers"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("authkeys timers");
    let client = async_nats::connect(nats.url()).await.expect("connect");

    // Generation at ~8k/s takes n/8k s; the window starts LEAD after a generous estimate.
    let estimate = Duration::from_secs_f64(n as f64 / 2_000.0) + LEAD;
    let window_start = now_ms() + i64::try_from(estimate.as_millis()).expect("fits");
    let started = Instant::now();
    let tailnet = made.tailnet_id.to_string();
    let owner = made.owner_id.to_string();
    let client = Arc::new(client);
    futures::stream::iter(0..n)
        .map(|i| {
            let (client, tailnet, owner) = (Arc::clone(&client), tailnet.clone(), owner.clone());
            async move {
                let offset = i64::try_from(WINDOW.as_millis() as usize * i / n).expect("fits");
                let secs = ((window_start + offset - now_ms()) as f64 / 1000.0)
                    .round()
                    .max(1.0);
                let id = format!("bench-{i}");
                support::generate_key(&client, &id, &tailnet, &owner, Some(secs as u64)).await;
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<()>()
        .await;
    let generated_in = started.elapsed();
    assert!(
        now_ms() < window_start,
        "generation overran the lead time; lower BENCH_KEYS"
    );

    // Wait for every KeyExpired (bounded: the window, plus a minute).
    let deadline = Instant::now() + estimate + WINDOW + Duration::from_secs(60);
    let (mut delays, mut from) = (Vec::with_capacity(n), 1);
    while delays.len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        from = expired_delays(&log, from, &mut delays);
    }
    let rss = peak_rss_mib(timers.id());
    timers.kill().ok();
    timers.wait().ok();
    shutdown.cancel();
    service.await.expect("join").expect("command service");
    let mut sorted = delays;
    sorted.sort_unstable();
    println!(
        "| {n} ({} fired) | {:.1} s | {} ms | {} ms | {} ms | {rss:.1} MiB |",
        sorted.len(),
        generated_in.as_secs_f64(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0),
    );
}

/// Adds event time − `expiredAt` of every `KeyExpired` from seq `from` on to `out`, in ms;
/// answers the seq to read from next time.
fn expired_delays(log: &Log<authkeys_domain::State>, mut from: u64, out: &mut Vec<i64>) -> u64 {
    loop {
        let page = log
            .read(Seq::new(from).expect("nonzero"), 10_000)
            .expect("read the log");
        let Some(last) = page.last() else {
            return from;
        };
        from = last.seq.get() + 1;
        for e in &page {
            let env = e.envelope().expect("decodes");
            if let Event::KeyExpired(x) = &env.event {
                out.push(env.time.unix_ms() - x.expired_at.unix_ms());
            }
        }
    }
}

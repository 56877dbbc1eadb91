//! Durable append throughput and latency of the log, against this design's physical limit.
//!
//! For 1, 16 and 256 concurrent appenders, each appending one `KeyGenerated` per command for a
//! fixed time: appends/s, p50/p99 latency and the mean commands per fsync. In the same run, raw
//! redb writes of the same bytes, 100 per transaction with one fsync each (no hashing, no JSON,
//! no decisions). Prints a Markdown table and the ratio at 256 appenders.
//!
//! `cargo bench -p authkeys-log --bench log` (or `make bench`). `BENCH_SECONDS` sets the time
//! per row (default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authkeys_events::Seq;
use authkeys_log::fixtures::{append_command, key_generated};
use authkeys_log::{Log, LogConfig};
use measure::{bench_raw, fmt_ms, percentile, seconds_and_runtime};

#[path = "../../services/command/benches/support/measure.rs"]
mod measure;

struct Row {
    appenders: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    per_fsync: f64,
}

async fn bench_log(appenders: usize, secs: f64) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Log<()> = Log::open(LogConfig::in_dir(dir.path()), ()).expect("opens");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..appenders {
        let log = log.clone();
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("w{w}-{n}");
                let t = Instant::now();
                log.append(append_command(&id, vec![key_generated(n)]))
                    .await
                    .expect("append");
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let stats = log.stats();
    let txns = stats.transactions.load(Ordering::Relaxed).max(1);
    let cmds = stats.commands.load(Ordering::Relaxed);
    log.close();
    Row {
        appenders,
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        per_fsync: cmds as f64 / txns as f64,
    }
}

/// The stored body of a real `KeyGenerated`, as the log writes it: appended to a log of its own
/// and read back.
fn sample_body() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Log<()> = Log::open(LogConfig::in_dir(dir.path()), ()).expect("opens");
    log.append_blocking(append_command("w0-1", vec![key_generated(1)]))
        .expect("append");
    let body = log.read(Seq::FIRST, 1).expect("read").remove(0).body;
    log.close();
    body
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let (secs, rt) = seconds_and_runtime();
    let body_len = sample_body().len();
    // Raw redb: rows of the same size, 100 per transaction, one fsync each: rows/s.
    let mut row = vec![0u8; 32];
    row.extend_from_slice(&sample_body());
    let raw = bench_raw(&[row], 100, secs);
    let rows: Vec<Row> = [1, 16, 256]
        .into_iter()
        .map(|n| rt.block_on(bench_log(n, secs)))
        .collect();

    println!("## Event log: durable appends (one KeyGenerated per command, body {body_len} B)");
    println!();
    println!("| appenders | appends/s | p50 ms | p99 ms | commands per fsync | % of raw redb |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} | {} | {:.1} | {:.0}% |",
            r.appenders,
            r.rate,
            fmt_ms(r.p50),
            fmt_ms(r.p99),
            r.per_fsync,
            100.0 * r.rate / raw
        );
    }
    println!("| raw redb, 100 rows/txn | {raw:.0} | | | 100 | 100% |");
    println!();
    let at256 = rows.last().map_or(0.0, |r| r.rate / raw);
    println!(
        "ratio at 256 appenders: {:.2} (target >= 0.50); p99 at 1 appender: {} ms (target <= 2 ms)",
        at256,
        rows.first().map_or_else(String::new, |r| fmt_ms(r.p99))
    );
}

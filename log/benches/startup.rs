//! Start-up time of the log against its size: how long `Log::open` takes to verify a log of N
//! events (the whole chain from seq 1, every checkpoint) and fold it, before the command service
//! can answer anything (issue 18's start-up target: ≤ 2 s with 10M events).
//!
//! For each size, a log of that many events (`KeyGenerated` and `KeyUsed` pairs, 64 events per
//! command, checkpoints as the service writes them) is built once, closed, and opened three
//! times; the table shows the best and the events/s. The aggregate is `()`: the figure is the
//! log's own floor, what verification costs before any domain state is folded. Also printed: a
//! plain read of every row (redb's scan, no hashing or JSON), the limit of any open that reads
//! every event.
//!
//! `cargo bench -p authkeys-log --bench startup`. `BENCH_STARTUP_EVENTS` sets the sizes
//! (comma-separated; default 100000,300000,1000000).

use std::time::{Duration, Instant};

use authkeys_events::Seq;
use authkeys_log::fixtures::{append_command, key_generated, key_used};
use authkeys_log::{Log, LogConfig};

/// Events per command (the log's `command_events_max`).
const EVENTS_PER_COMMAND: u64 = 64;

fn build(dir: &std::path::Path, events: u64) {
    let log: Log<()> = Log::open(LogConfig::in_dir(dir), ()).expect("opens");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let commands = events / EVENTS_PER_COMMAND;
        let mut sent = 0;
        while sent < commands {
            let batch = (commands - sent).min(256);
            let mut tasks = Vec::new();
            for c in sent..sent + batch {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    let events = (0..EVENTS_PER_COMMAND / 2)
                        .flat_map(|i| {
                            let n = c * EVENTS_PER_COMMAND + i;
                            [key_generated(n), key_used(n)]
                        })
                        .collect();
                    log.append(append_command(&format!("c{c}"), events))
                        .await
                        .expect("appends");
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
            sent += batch;
        }
    });
    log.close();
}

fn scan(dir: &std::path::Path) -> Duration {
    let reader = authkeys_log::LogReader::open(&dir.join("log.redb")).expect("reader");
    let started = Instant::now();
    let mut from = 1;
    loop {
        let page = reader
            .read(Seq::new(from).expect(">= 1"), 10_000)
            .expect("reads");
        if page.is_empty() {
            return started.elapsed();
        }
        from += page.len() as u64;
    }
}

fn main() {
    let sizes: Vec<u64> = std::env::var("BENCH_STARTUP_EVENTS")
        .unwrap_or_else(|_| "100000,300000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("## Start-up: `Log::open` (verify from seq 1, fold into `()`) against log size\n");
    println!("| events | file MiB | open s (best of 3) | events/s | read every row s |");
    println!("|---:|---:|---:|---:|---:|");
    for events in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        build(dir.path(), events);
        let bytes = std::fs::metadata(dir.path().join("log.redb")).map_or(0, |m| m.len());
        let best = (0..3)
            .map(|_| {
                let started = Instant::now();
                let log: Log<()> = Log::open(LogConfig::in_dir(dir.path()), ()).expect("opens");
                let took = started.elapsed();
                assert_eq!(
                    log.head().seq,
                    events / EVENTS_PER_COMMAND * EVENTS_PER_COMMAND
                );
                drop(log);
                took
            })
            .min()
            .expect("three runs");
        let read = scan(dir.path());
        println!(
            "| {events} | {:.0} | {:.2} | {:.0} | {:.2} |",
            bytes as f64 / (1024.0 * 1024.0),
            best.as_secs_f64(),
            events as f64 / best.as_secs_f64(),
            read.as_secs_f64()
        );
    }
}

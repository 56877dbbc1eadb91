//! `audit verify` speed against its two limits, in one run.
//!
//! Builds a log of `AUTHKEYS_BENCH_EVENTS` events (default 1,000,000; the projections' fixture
//! mix from its second cycle on, which satisfies the domain invariants) with the real log writer, closes it, then times
//! on the same file, each `AUTHKEYS_BENCH_ROUNDS` times (default 3, best kept):
//! 1. raw read: one read transaction iterating the `events` table, touching every byte;
//! 2. blake3 over the same bytes (rows read into memory first; one hasher per row, as the chain
//!    hashes one row at a time);
//! 3. decoding every envelope on one thread (where verify's time goes);
//! 4. `verify_file` with the pinned key: chain, ids, checkpoint signatures, decode of every
//!    envelope and the domain invariants.
//!
//! Prints a Markdown table. Run: `cargo bench -p authkeys-audit --bench verify`.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use authkeys_audit::source::verify_file;
use authkeys_log::{Log, LogConfig, LogReader, fixtures};

const EVENTS_PER_COMMAND: usize = 4_000;

fn best(rounds: u32, mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut out = (Duration::MAX, 0);
    for _ in 0..rounds {
        let started = Instant::now();
        let n = f();
        let took = started.elapsed();
        if took < out.0 {
            out = (took, n);
        }
    }
    out
}

fn main() {
    let target: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_EVENTS", 1_000_000);
    let rounds: u32 = authkeys_tests::env_or("AUTHKEYS_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = LogConfig::in_dir(dir.path());
    config.command_events_max = EVENTS_PER_COMMAND + 64;
    let log = Log::open(config, ()).expect("open the log");
    let key = log.verifying_key();
    let started = Instant::now();
    // Step 0 makes the tailnet; the mix's first cycle (steps 1-7) uses key 0, which no step
    // generates, so it starts at step 8 to keep the domain invariants true.
    let mut step = 0u64;
    let mut n = 0u64;
    while log.head().seq < target {
        let mut events = Vec::new();
        while events.len() < EVENTS_PER_COMMAND {
            events.extend(authkeys_projections::fixtures::step(step));
            step = if step == 0 { 8 } else { step + 1 };
        }
        n += 1;
        log.append_blocking(fixtures::append_command(&format!("b{n}"), events))
            .expect("append");
    }
    let events = log.head().seq;
    let checkpoints = log.checkpoints().expect("checkpoints").len();
    log.close();
    let path = dir.path().join("log.redb");
    let file_mb = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    eprintln!(
        "built {events} events, {checkpoints} checkpoints, file {file_mb:.0} MB in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let reader = LogReader::open(&path).expect("open read-only");
    let (raw, bytes) = best(rounds, || {
        let snap = reader.snapshot().expect("snapshot");
        let mut bytes = 0u64;
        let mut fold = 0u8;
        snap.for_each_event(1, |_, row| {
            bytes += row.len() as u64;
            fold ^= row.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            ControlFlow::Continue(())
        })
        .expect("read");
        std::hint::black_box(fold);
        bytes
    });

    let mut rows: Vec<Vec<u8>> = Vec::with_capacity(events as usize);
    reader
        .snapshot()
        .expect("snapshot")
        .for_each_event(1, |_, row| {
            rows.push(row.to_vec());
            ControlFlow::Continue(())
        })
        .expect("read");
    let (hash, _) = best(rounds, || {
        let mut acc = [0u8; 32];
        for row in &rows {
            let mut h = blake3::Hasher::new();
            h.update(&acc);
            h.update(row);
            acc = *h.finalize().as_bytes();
        }
        std::hint::black_box(acc);
        rows.len() as u64
    });
    // Where verify's time goes: decoding every envelope, on one thread.
    let (decode, _) = best(rounds, || {
        let ok = rows
            .iter()
            .filter(|row| authkeys_audit::verify::decode_row(row).is_ok())
            .count();
        ok as u64
    });
    drop(rows);

    let (verify, verified) = best(rounds, || {
        verify_file(&path, &key, None, &mut |_, _| {})
            .expect("readable")
            .expect("the log verifies")
            .events
    });
    assert_eq!(verified, events);

    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    let mbs = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    // The smaller limit is the slower of the two (in events/s).
    let limit = raw.max(hash);
    println!(
        "\n{events} events, {:.0} MB of rows (avg {} B), best of {rounds}\n",
        bytes as f64 / 1e6,
        bytes / events.max(1)
    );
    println!("| what | seconds | events/s | MB/s | % of the smaller limit |");
    println!("|---|---:|---:|---:|---:|");
    for (what, d) in [
        ("raw read of the events table", raw),
        ("blake3 over the same bytes", hash),
        ("decode every envelope (serde, one thread)", decode),
        ("audit verify (file)", verify),
    ] {
        println!(
            "| {what} | {:.2} | {:.0} | {:.0} | {:.0}% |",
            d.as_secs_f64(),
            rate(d),
            mbs(d),
            100.0 * limit.as_secs_f64() / d.as_secs_f64()
        );
    }
}

//! `audit verify` speed against its two limits, in one run.
//!
//! Builds a log of `AUTHKEYS_BENCH_EVENTS` events (default 1,000,000; the projections' fixture
//! mix from its second cycle on, which satisfies the domain invariants) with the real log writer, closes it, then times
//! on the same file, each `AUTHKEYS_BENCH_ROUNDS` times (default 3, best kept):
//! 1. raw read: one read transaction iterating the `events` table, touching every byte;
//! 2. `verify_file` with the pinned key: chain, ids, checkpoint signatures, decode of every
//!    envelope (on one thread per core) and the domain invariants;
//! 3. blake3 over the same bytes (rows read into memory first; one hasher per row, as the chain
//!    hashes one row at a time, on one thread);
//! 4. decoding every envelope on one thread, the owned way (the reference decode) and as verify
//!    does (the borrowing decode, the owned one where it gives up).
//!
//! Prints a Markdown table. Run: `cargo bench -p authkeys-audit --bench verify`.
//! `AUTHKEYS_BENCH_DIR=DIR` keeps the built log there for the next run;
//! `AUTHKEYS_BENCH_ONLY_VERIFY=1` times `verify_file` alone (for a profile).

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
    // `AUTHKEYS_BENCH_DIR` keeps the built log (and its verifying key) for the next run.
    let kept = std::env::var_os("AUTHKEYS_BENCH_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned());
    let key_file = dir.join("bench-verifying.key");
    let key = match std::fs::read(&key_file) {
        Ok(bytes) if kept.is_some() => {
            let bytes: [u8; 32] = bytes.try_into().expect("a 32-byte key file");
            eprintln!("reusing the log in {}", dir.display());
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("a valid key")
        }
        _ => build(&dir, target),
    };
    let path = dir.join("log.redb");
    let file_mb = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let reader = LogReader::open(&path).expect("open read-only");
    let events = reader.head().expect("head").seq;
    let checkpoints = reader.checkpoints().expect("checkpoints").len();
    eprintln!("{events} events, {checkpoints} checkpoints, file {file_mb:.0} MB");
    if std::env::var_os("AUTHKEYS_BENCH_ONLY_VERIFY").is_some() {
        // For a profile of verify alone.
        let (verify, _) = best(rounds, || {
            verify_file(&path, &key, None, &mut |_, _| {})
                .expect("readable")
                .expect("the log verifies")
                .events
        });
        println!("audit verify (file): {:.2} s", verify.as_secs_f64());
        return;
    }
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

    // Verify before the limits below fill the heap with a million rows: `authkeys audit verify`
    // runs in a fresh process, and freeing those rows left the allocator slower for what came
    // after (3.3 s instead of 2.1 s in one run).
    let (verify, verified) = best(rounds, || {
        verify_file(&path, &key, None, &mut |_, _| {})
            .expect("readable")
            .expect("the log verifies")
            .events
    });
    assert_eq!(verified, events);

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
    let (decode_borrowed, _) = best(rounds, || {
        let ok = rows
            .iter()
            .filter(|row| authkeys_audit::verify::decode_row_for_verify(row))
            .count();
        ok as u64
    });
    drop(rows);

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
        ("decode every envelope (owned, one thread)", decode),
        (
            "decode every envelope as verify does (borrowed, one thread)",
            decode_borrowed,
        ),
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

/// Builds the log in `dir` with the real writer and answers its verifying key (also saved in
/// `dir`, for `AUTHKEYS_BENCH_DIR`).
fn build(dir: &std::path::Path, target: u64) -> ed25519_dalek::VerifyingKey {
    let mut config = LogConfig::in_dir(dir);
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
    log.close();
    std::fs::write(dir.join("bench-verifying.key"), key.to_bytes()).expect("save the key");
    eprintln!("built the log in {:.1} s", started.elapsed().as_secs_f64());
    key
}

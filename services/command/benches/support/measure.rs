//! Measuring and reporting, shared with the log's benchmark (`log/benches/log.rs` includes this
//! file by path): only `std` and `redb`, which both crates have.

use std::time::{Duration, Instant};

/// The environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse (`BENCH_SECONDS=10`).
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_SECONDS`, the time per measurement (default 3), and a multi-thread runtime.
pub fn seconds_and_runtime() -> (f64, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (env_or("BENCH_SECONDS", 3.0), rt)
}

/// The `p` quantile (0 to 1) of `sorted`; zero when it is empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Milliseconds with two decimals.
pub fn fmt_ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Raw redb, the storage ceiling: for `secs`, write transactions of `per_txn` units of `rows`
/// (each unit inserts every row once, under consecutive keys), one fsync each; no hashing, no
/// JSON, no decisions. Returns units/s.
pub fn bench_raw(rows: &[Vec<u8>], per_txn: usize, secs: f64) -> f64 {
    const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(dir.path().join("raw.redb"))
        .expect("create");
    let started = Instant::now();
    let mut seq = 0u64;
    let mut units = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(TABLE).expect("table");
            for _ in 0..per_txn {
                for row in rows {
                    seq += 1;
                    t.insert(seq, row.as_slice()).expect("insert");
                }
            }
        }
        txn.commit().expect("commit");
        units += per_txn as u64;
    }
    units as f64 / started.elapsed().as_secs_f64()
}

//! Appends to a log as fast as `CONCURRENCY` clients can, printing `ACK <commandId> <events>`
//! for every acknowledged command, until it is killed. The crash test SIGKILLs it at random
//! moments and checks that every acknowledged command survived, exactly once. The log folds a
//! [`Tally`] and writes a snapshot of it every 256 events, so kills land in snapshot writes too.
//!
//! Usage: `authkeys-log-torture DIR CONCURRENCY`

use std::io::Write;
use std::sync::{Arc, Mutex};

use authkeys_log::fixtures::{Tally, append_command, key_generated, key_used};
use authkeys_log::{Log, LogConfig};

/// How many events command number `n` appends: 1 to 3, so that multi-event commands are covered.
fn events_of(n: u64) -> u64 {
    n % 3 + 1
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: authkeys-log-torture DIR CONCURRENCY")?;
    let concurrency: u64 = args
        .next()
        .ok_or("usage: authkeys-log-torture DIR CONCURRENCY")?
        .parse()?;
    let mut config = LogConfig::in_dir(std::path::Path::new(&dir));
    config.checkpoint_events_max = 64;
    config.snapshot_events_max = 256;
    let log: Log<Tally> = Log::open(config, Tally::default())?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut o = out.lock().map_err(|_| "stdout lock")?;
        writeln!(o, "READY {}", log.head().seq)?;
        o.flush()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let pid = std::process::id();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let log = log.clone();
            let out = Arc::clone(&out);
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let id = format!("p{pid}-w{w}-{n}");
                    let events = (0..events_of(n))
                        .map(|i| {
                            if i == 0 {
                                key_generated(n)
                            } else {
                                key_used(n + i)
                            }
                        })
                        .collect();
                    if log.append(append_command(&id, events)).await.is_err() {
                        return;
                    }
                    let Ok(mut o) = out.lock() else { return };
                    if writeln!(o, "ACK {id} {}", events_of(n))
                        .and_then(|()| o.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(())
}

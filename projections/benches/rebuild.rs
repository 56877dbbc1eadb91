//! Projection catch-up speed: how fast a view rebuilds from the log, in events per second.
//!
//! Builds a log of `AUTHKEYS_BENCH_EVENTS` events (default 1 000 000) of the fixture mix in a
//! temp dir, serves it with the real `authkeys.log.read` handler on a real nats-server, and
//! times, per view and per source: the rebuild (chain checks, decode, apply) over NATS
//! (`rebuild_from_log`: pages of 1 000, several in flight) and from the log file beside it
//! (`rebuild_from_file`: the rows read in one read transaction while the log stays open, decoded
//! on every core), then the write of the rebuilt rows and checkpoint in one redb transaction
//! (`ViewStore::replace_with_view`, as the worker's rebuild does).
//! Prints a Markdown table.
//!
//! Run: `cargo bench -p authkeys-projections --bench rebuild` (needs `make tools` for the
//! nats-server binary, or `NATS_SERVER`).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use authkeys_log::{Log, LogConfig, fixtures};
use authkeys_projections::store::ViewStore;
use authkeys_projections::{KeysView, MachinesView, View, rebuild_from_file, rebuild_from_log};
use authkeys_protocol::log::LogClient;
use authkeys_tests::NatsServer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Events per appended command, about (a command holds ≤ 64; one step adds ≤ 21).
const EVENTS_PER_COMMAND: usize = 40;
/// Commands appended concurrently while building the log (the log group-commits them).
const APPENDS_IN_FLIGHT_MAX: usize = 256;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let target: u64 = authkeys_tests::env_or("AUTHKEYS_BENCH_EVENTS", 1_000_000);
    let dir = tempfile::tempdir()?;
    let log_dir = dir.path().join("log");
    std::fs::create_dir_all(&log_dir)?;
    let mut config = LogConfig::in_dir(&log_dir);
    config.checkpoint_events_max = 100_000;
    let log = tokio::task::spawn_blocking(move || Log::open(config, ())).await??;

    let started = Instant::now();
    let mut step = 0u64;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    while log.head().seq < target || !in_flight.is_empty() {
        while in_flight.len() < APPENDS_IN_FLIGHT_MAX && step * 6 / 5 < target + 64 {
            let mut events = Vec::new();
            while events.len() < EVENTS_PER_COMMAND {
                events.extend(authkeys_projections::fixtures::step(step));
                step += 1;
            }
            let log = log.clone();
            let id = format!("b{step}");
            in_flight.push(async move { log.append(fixtures::append_command(&id, events)).await });
        }
        match in_flight.next().await {
            Some(r) => {
                r.context("append")?;
            }
            None => break,
        }
    }
    let events = log.head().seq;
    eprintln!(
        "built a log of {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let shutdown = CancellationToken::new();
    let serve = tokio::spawn(authkeys_command::log_read::serve(
        log.clone(),
        client.clone(),
        "bench.log.read".to_owned(),
        shutdown.clone(),
    ));
    let reader = LogClient::new(
        client.clone(),
        "bench.log.read".to_owned(),
        1_000,
        Duration::from_secs(30),
    );
    // Wait for the handler to answer (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.read(1, 1).await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "log read handler did not come up"
        );
        tokio::task::yield_now().await;
    }

    let file = log_dir.join("log.redb");
    let mut rows = Vec::new();
    rows.push(measure::<MachinesView>(Source::Nats(&reader), dir.path(), events).await?);
    rows.push(measure::<MachinesView>(Source::File(&file), dir.path(), events).await?);
    rows.push(measure::<KeysView>(Source::Nats(&reader), dir.path(), events).await?);
    rows.push(measure::<KeysView>(Source::File(&file), dir.path(), events).await?);

    println!();
    println!(
        "Projection rebuild from a log of {events} events (fixture mix; over NATS: `authkeys.log.read` pages of 1 000, {} in flight; file: {} decoding threads)",
        authkeys_projections::worker::REBUILD_PAGES_IN_FLIGHT,
        authkeys_projections::file_log::workers()
    );
    println!();
    println!(
        "| view | source | rows | read + apply (s) | events/s | write rows (s) | total events/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} |",
            r.name,
            r.source,
            r.rows,
            r.apply.as_secs_f64(),
            events as f64 / r.apply.as_secs_f64(),
            r.write.as_secs_f64(),
            events as f64 / (r.apply + r.write).as_secs_f64(),
        );
    }
    shutdown.cancel();
    serve.await??;
    Ok(())
}

struct Row {
    name: &'static str,
    source: &'static str,
    rows: usize,
    apply: Duration,
    write: Duration,
}

/// Where a rebuild reads the log.
#[derive(Clone, Copy)]
enum Source<'a> {
    Nats(&'a LogClient),
    File(&'a std::path::Path),
}

async fn measure<V: View>(
    source: Source<'_>,
    dir: &std::path::Path,
    events: u64,
) -> anyhow::Result<Row> {
    let started = Instant::now();
    let (view, cp) = match source {
        Source::Nats(reader) => rebuild_from_log::<V>(reader, Some(events)).await?,
        Source::File(path) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || rebuild_from_file::<V>(&path, Some(events)))
                .await??
        }
    };
    let apply = started.elapsed();
    anyhow::ensure!(cp.seq == events, "rebuilt to {} of {events}", cp.seq);
    let path = dir.join(format!("view-{}.redb", V::NAME));
    let _ = std::fs::remove_file(&path);
    let started = Instant::now();
    let view = tokio::task::spawn_blocking(move || {
        let store = ViewStore::open(&path, V::NAME)?;
        store.replace_with_view(&view, cp)?;
        anyhow::Ok(view)
    })
    .await??;
    let write = started.elapsed();
    // Counted after the clock stopped.
    let mut n = 0;
    view.for_each_row(&mut |_, _| n += 1);
    Ok(Row {
        name: V::NAME,
        source: match source {
            Source::Nats(_) => "NATS",
            Source::File(_) => "file",
        },
        rows: n,
        apply,
        write,
    })
}

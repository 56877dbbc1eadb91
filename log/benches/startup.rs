//! Start-up time of the log against its size (issue 18's target: ≤ 2 s with 10M events).
//!
//! **The domain state** (the command service's `Log<State>`): for each size N a log is built by
//! the writer with a workload in which the live state stays bounded while the log grows, then
//! closed (which writes the snapshot at the head, ADR 008), and opened:
//! - *restart*: from the snapshot at the head (a clean close), 5 times;
//! - *after a crash*: the close's snapshot removed, so the open restores the periodic one before
//!   it and verifies and folds the events after it (up to `snapshot_events_max` + a checkpoint's
//!   worth: the worst case after a kill), 3 times (– for a log that has none before it);
//! - *full*: every snapshot removed, so every event is verified from seq 1 and folded (what every
//!   open did before snapshots), once, for sizes up to `BENCH_STARTUP_FULL_MAX`;
//! - and, on the largest log, the writer's stall per snapshot: one-command appends that each
//!   write a checkpoint and a snapshot against ones that write only the checkpoint (this appends
//!   14 commands to the kept log).
//!
//! Each command of the workload (25 events) registers a node (`NodeRegistered` + `KeyUsed`, the
//! addresses picked from the state's pool as `decide` does), deletes the node registered
//! `BENCH_STARTUP_LIVE` registrations before (so at most that many nodes live), and reports 22
//! connects and disconnects of live nodes; every 40th command also generates a reusable key and
//! revokes an old one. Time advances 10 s per event, so the 90-day address quarantine turns over
//! (after ~780k events) and the pool stays bounded too. What still grows with the log: keys (the
//! state keeps revoked ones: one per 1,000 events) and the stream versions of every node ever
//! registered (one per 25 events).
//!
//! **The floor** (`BENCH_STARTUP_FLOOR_EVENTS`, default none): the old table, a log of `()`
//! (which keeps no snapshots) opened by full verification, and redb's plain scan of every row.
//!
//! `cargo bench -p authkeys-log --bench startup`. `BENCH_STARTUP_EVENTS` sets the sizes
//! (comma-separated; default 100000,1000000). `BENCH_STARTUP_DATA=DIR` builds each log into
//! `DIR/events-N` and keeps it (a later run reuses it: a 10M-event log is ~9 GB and takes long to
//! build); without it, logs are built in a temp dir and removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use authkeys_domain::State;
use authkeys_domain::state::default_settings;
use authkeys_events::{
    Actor, CommandId, DeleteReason, Description, Event, ExpirySeconds, Hash, Hostname,
    KeyGenerated, KeyId, KeyRevoked, KeyUsed, NodeConnected, NodeDeleted, NodeDisconnected, NodeId,
    NodeKey, NodeRegistered, Seq, Tags, TailnetCreated, TailnetId, TailnetName, Timestamp, UserId,
};
use authkeys_log::fixtures::{append_command, key_generated, key_used};
use authkeys_log::{Append, Clock, Decision, Expected, Log, LogConfig, Proposed};

/// Events per command of the domain workload.
const EVENTS_PER_COMMAND: u64 = 25;
/// Connects and disconnects per command.
const REPORTS_PER_COMMAND: u64 = 22;
/// A key is generated (and an old one revoked) every this many commands.
const KEY_EVERY: u64 = 40;
/// Simulated time per command: 10 s per event.
const SECONDS_PER_COMMAND: i64 = 250;
/// Commands in flight while building: they may be decided in any order within this window.
const IN_FLIGHT: u64 = 256;
/// The workload's start.
const T0_MS: i64 = 1_767_225_600_000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn tailnet() -> TailnetId {
    TailnetId::parse("Tstartup").expect("valid")
}

fn owner() -> UserId {
    UserId::parse("uOwner").expect("valid")
}

fn node_id(n: u64) -> NodeId {
    NodeId::parse(format!("n{n:010}")).expect("valid")
}

fn key_id(k: u64) -> KeyId {
    KeyId::parse(format!("kSt{k:010}")).expect("valid")
}

fn config(dir: &std::path::Path, clock: &Arc<AtomicI64>) -> LogConfig {
    let mut c = LogConfig::in_dir(dir);
    let clock = Arc::clone(clock);
    c.clock = Clock::new(move || {
        Timestamp::from_unix_ms(clock.load(Ordering::Relaxed)).expect("in range")
    });
    c
}

fn command(c: u64, decide: authkeys_log::Decide<State>) -> Append<State> {
    Append {
        scope: tailnet().to_string(),
        command_id: CommandId::parse(format!("c{c}")).expect("valid"),
        actor: Actor::system("startup-bench"),
        fingerprint: *blake3::hash(&c.to_le_bytes()).as_bytes(),
        decide,
        answer: None,
    }
}

fn any(events: Vec<Event>) -> Vec<Proposed> {
    events
        .into_iter()
        .map(|event| Proposed {
            event,
            expected: Expected::Any,
        })
        .collect()
}

/// Command `c` of the workload (see the module docs), decided against the writer's state.
fn workload(c: u64, live: u64) -> Append<State> {
    command(
        c,
        Box::new(move |state: &State, now| {
            let t = tailnet();
            let tn = state.tailnet(&t).expect("the tailnet exists");
            let mut events = Vec::with_capacity(EVENTS_PER_COMMAND as usize + 2);
            if c.is_multiple_of(KEY_EVERY) {
                let k = c / KEY_EVERY;
                events.push(Event::KeyGenerated(KeyGenerated {
                    key_id: key_id(k),
                    user_id: owner(),
                    description: Description::parse("ci runners").expect("valid"),
                    reusable: true,
                    ephemeral: false,
                    preauthorized: true,
                    tags: Tags::parse(&["tag:ci"]).expect("valid"),
                    expiry_seconds: ExpirySeconds::MAX,
                    expires: now.plus_seconds(86_400 * 3650),
                    secret_hash: Hash(*blake3::hash(&k.to_le_bytes()).as_bytes()),
                }));
                if k >= 2 {
                    events.push(Event::KeyRevoked(KeyRevoked {
                        key_id: key_id(k - 2),
                    }));
                }
            }
            // Register node c with the key before the newest (decided before this one).
            let key = key_id((c / KEY_EVERY).saturating_sub(1));
            let uses = tn.keys.get(&key).map_or(0, |k| k.uses) + 1;
            let node_key = NodeKey::parse(format!(
                "nodekey:{}",
                blake3::hash(&c.to_le_bytes()).to_hex()
            ))
            .expect("valid");
            events.push(Event::NodeRegistered(NodeRegistered {
                node_id: node_id(c),
                node_key: node_key.clone(),
                hostname: Hostname::parse("ci-runner").expect("valid"),
                name: format!("ci-runner-{c}"),
                os: "linux".into(),
                user_id: owner(),
                tags: Tags::parse(&["tag:ci"]).expect("valid"),
                auth_key_id: key.clone(),
                ephemeral: false,
                authorized: true,
                key_expiry_disabled: true,
                expires: None,
                tailnet_lock_error: None,
                addresses: tn.addresses.pick(now),
            }));
            events.push(Event::KeyUsed(KeyUsed {
                key_id: key,
                node_id: node_id(c),
                node_key,
                uses,
            }));
            if c >= live && tn.nodes.contains_key(&node_id(c - live)) {
                events.push(Event::NodeDeleted(NodeDeleted {
                    node_id: node_id(c - live),
                    reason: DeleteReason::Admin,
                }));
            }
            // Reports of live nodes, well outside the window of commands in flight.
            let lo = c.saturating_sub(live) + IN_FLIGHT;
            let hi = c.saturating_sub(IN_FLIGHT);
            for i in 0..REPORTS_PER_COMMAND {
                if lo >= hi {
                    break;
                }
                let n = lo + (c.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503)) % (hi - lo);
                let Some(node) = tn.nodes.get(&node_id(n)) else {
                    continue;
                };
                let node_id = node_id(n);
                events.push(if node.connected {
                    Event::NodeDisconnected(NodeDisconnected { node_id })
                } else {
                    Event::NodeConnected(NodeConnected { node_id })
                });
            }
            Ok(Decision {
                tailnet: t,
                events: any(events),
            })
        }),
    )
}

/// Builds a domain log of about `events` events in `dir`; returns the writer's snapshot costs.
fn build_domain(dir: &std::path::Path, events: u64, live: u64) -> String {
    let clock = Arc::new(AtomicI64::new(T0_MS));
    let log: Log<State> = Log::open(config(dir, &clock), State::default()).expect("opens");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let create = command(
            0,
            Box::new(|_, _| {
                Ok(Decision {
                    tailnet: tailnet(),
                    events: any(vec![Event::TailnetCreated(TailnetCreated {
                        name: TailnetName::parse("startup.example").expect("valid"),
                        settings: default_settings(),
                    })]),
                })
            }),
        );
        log.append(create).await.expect("creates the tailnet");
        let mut c = 1;
        while log.head().seq < events {
            let mut tasks = Vec::new();
            for _ in 0..IN_FLIGHT {
                let log = log.clone();
                clock.fetch_add(SECONDS_PER_COMMAND * 1000, Ordering::Relaxed);
                let cmd = workload(c, live);
                tasks.push(tokio::spawn(async move { log.append(cmd).await }));
                c += 1;
            }
            for t in tasks {
                t.await.expect("task").expect("appends");
            }
            if c % 40_000 < IN_FLIGHT {
                eprintln!(
                    "  built {} events in {:.0} s",
                    log.head().seq,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    });
    let stats = log.stats();
    let costs = format!(
        "{} snapshots while building, last {:.1} MiB, writer stall (encode + store) last {:.0} ms, max {:.0} ms",
        stats.snapshots.load(Ordering::Relaxed),
        stats.snapshot_bytes_last.load(Ordering::Relaxed) as f64 / 1_048_576.0,
        stats.snapshot_micros_last.load(Ordering::Relaxed) as f64 / 1000.0,
        stats.snapshot_micros_max.load(Ordering::Relaxed) as f64 / 1000.0,
    );
    let close = Instant::now();
    log.close();
    eprintln!(
        "  built {events} events in {:.0} s; close (final checkpoint and snapshot) {:.2} s",
        started.elapsed().as_secs_f64(),
        close.elapsed().as_secs_f64()
    );
    costs
}

const SNAPSHOTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("snapshots");

/// The snapshot rows of the closed log in `dir`, oldest first.
fn snapshot_rows(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let db = redb::Database::open(dir.join("log.redb")).expect("raw open");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let t = txn.open_table(SNAPSHOTS).expect("table");
    redb::ReadableTable::iter(&t)
        .expect("iter")
        .map(|r| {
            let (k, v) = r.expect("row");
            (k.value(), v.value().to_vec())
        })
        .collect()
}

/// Removes the newest snapshot (`all`: every one) from the closed log in `dir`, as a crash
/// before it was written would have left the file (the index that still names it only makes
/// it a snapshot that cannot be used).
fn drop_snapshots(dir: &std::path::Path, all: bool) {
    let db = redb::Database::open(dir.join("log.redb")).expect("raw open");
    let txn = db.begin_write().expect("write");
    {
        let mut t = txn.open_table(SNAPSHOTS).expect("table");
        let seqs: Vec<u64> = redb::ReadableTable::iter(&t)
            .expect("iter")
            .map(|r| r.expect("row").0.value())
            .collect();
        for seq in seqs.iter().rev().take(if all { usize::MAX } else { 1 }) {
            t.remove(*seq).expect("remove");
        }
    }
    txn.commit().expect("commit");
}

/// Puts `rows` back as the snapshots of the closed log in `dir` (after a full open's close
/// replaced them), so that the next run finds the file as built.
fn put_snapshots(dir: &std::path::Path, rows: &[(u64, Vec<u8>)]) {
    let db = redb::Database::open(dir.join("log.redb")).expect("raw open");
    let txn = db.begin_write().expect("write");
    {
        let mut t = txn.open_table(SNAPSHOTS).expect("table");
        let seqs: Vec<u64> = redb::ReadableTable::iter(&t)
            .expect("iter")
            .map(|r| r.expect("row").0.value())
            .collect();
        for seq in seqs {
            t.remove(seq).expect("remove");
        }
        for (seq, bytes) in rows {
            t.insert(*seq, bytes.as_slice()).expect("insert");
        }
        let index: Vec<u8> = rows.iter().flat_map(|(s, _)| s.to_le_bytes()).collect();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .expect("meta")
            .insert("snapshots", index.as_slice())
            .expect("index");
    }
    txn.commit().expect("commit");
}

/// What one snapshot costs the writer on the log in `dir`: 7 one-command appends that each
/// write a checkpoint and a snapshot, against 7 that write only a checkpoint (medians).
fn stall(dir: &std::path::Path, live: u64) -> String {
    let run = |snapshots: bool| {
        let clock = Arc::new(AtomicI64::new(T0_MS));
        let mut c = config(dir, &clock);
        c.checkpoint_events_max = 1;
        c.snapshot_events_max = if snapshots { 1 } else { u64::MAX };
        let log: Log<State> = Log::open(c, State::default()).expect("opens");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut latency = Vec::new();
        let mut encode = Vec::new();
        for i in 0..7 {
            let n = 1_000_000_000 + u64::from(snapshots) * 100 + i;
            let started = Instant::now();
            rt.block_on(log.append(workload(n, live))).expect("appends");
            latency.push(started.elapsed());
            encode.push(Duration::from_micros(
                log.stats().snapshot_micros_last.load(Ordering::Relaxed),
            ));
        }
        let bytes = log.stats().snapshot_bytes_last.load(Ordering::Relaxed);
        log.close();
        latency.sort();
        encode.sort();
        (latency[3], encode[3], bytes)
    };
    let (with, encode, bytes) = run(true);
    let (without, _, _) = run(false);
    format!(
        "snapshot {:.1} MiB: encode and store {:.0} ms; a one-command append that writes it {:.0} ms, one that does not {:.1} ms (medians of 7)",
        bytes as f64 / 1_048_576.0,
        encode.as_secs_f64() * 1000.0,
        with.as_secs_f64() * 1000.0,
        without.as_secs_f64() * 1000.0,
    )
}

struct Opened {
    took: Duration,
    from: Option<u64>,
    head: u64,
    live_nodes: usize,
    keys: usize,
}

fn open_domain(dir: &std::path::Path) -> Opened {
    let clock = Arc::new(AtomicI64::new(T0_MS));
    let started = Instant::now();
    let log: Log<State> = Log::open(config(dir, &clock), State::default()).expect("opens");
    let took = started.elapsed();
    let (live_nodes, keys) = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(log.query(|s: &State| {
            let t = &s.tailnets[&tailnet()];
            (t.nodes.len(), t.keys.len())
        }))
        .expect("query");
    let opened = Opened {
        took,
        from: log.opened_from_snapshot(),
        head: log.head().seq,
        live_nodes,
        keys,
    };
    log.close();
    opened
}

fn spread(runs: &[Duration]) -> String {
    let mut s: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    if s.len() == 1 {
        return format!("{:.2}", s[0]);
    }
    format!("{:.2} ({:.2}–{:.2})", s[s.len() / 2], s[0], s[s.len() - 1])
}

fn domain(sizes: &[u64]) {
    let live = env_u64("BENCH_STARTUP_LIVE", 20_000);
    let full_max = env_u64("BENCH_STARTUP_FULL_MAX", 1_000_000);
    let keep = std::env::var_os("BENCH_STARTUP_DATA").map(std::path::PathBuf::from);
    println!(
        "## Start-up: `Log::open` of the domain state (`Log<State>`) against log size\n\n\
         live nodes ≤ {live}; median (min–max) s\n"
    );
    println!(
        "| events | file MiB | live nodes | keys | restart s (5) | after a crash s (3) | events folded after a crash | full s (1) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut costs = Vec::new();
    let mut stall_line = None;
    for &events in sizes {
        let temp;
        let dir = match &keep {
            Some(root) => root.join(format!("events-{events}")),
            None => {
                temp = tempfile::tempdir().expect("tempdir");
                temp.path().to_path_buf()
            }
        };
        let done = dir.join("built");
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("data dir");
            eprintln!("building a log of {events} events in {}", dir.display());
            let c = build_domain(&dir, events, live);
            std::fs::write(&done, &c).expect("mark built");
        }
        costs.push((events, std::fs::read_to_string(&done).unwrap_or_default()));
        let bytes = std::fs::metadata(dir.join("log.redb")).map_or(0, |m| m.len());
        let restart: Vec<Opened> = (0..5).map(|_| open_domain(&dir)).collect();
        let head = restart[0].head;
        assert!(
            restart.iter().all(|o| o.from == Some(head)),
            "restored at the head"
        );
        let rows = snapshot_rows(&dir);
        // After a crash: only with a periodic snapshot before the close's (a log shorter than
        // `snapshot_events_max` has none, and folds everything then).
        let (crash, folded) = if rows.len() >= 2 {
            let crash: Vec<Opened> = (0..3)
                .map(|_| {
                    drop_snapshots(&dir, false);
                    // Its close writes the snapshot at the head again.
                    open_domain(&dir)
                })
                .collect();
            let folded = head - crash[0].from.unwrap_or(0);
            (
                spread(&crash.iter().map(|o| o.took).collect::<Vec<_>>()),
                folded.to_string(),
            )
        } else {
            ("–".into(), "–".into())
        };
        let full = if head <= full_max {
            drop_snapshots(&dir, true);
            let o = open_domain(&dir);
            assert_eq!(o.from, None);
            format!("{:.2}", o.took.as_secs_f64())
        } else {
            "–".into()
        };
        // Leave the log as built: the next open restores the head.
        put_snapshots(&dir, &rows);
        assert_eq!(open_domain(&dir).from, Some(head));
        println!(
            "| {head} | {:.0} | {} | {} | {} | {crash} | {folded} | {full} |",
            bytes as f64 / 1_048_576.0,
            restart[0].live_nodes,
            restart[0].keys,
            spread(&restart.iter().map(|o| o.took).collect::<Vec<_>>()),
        );
        if Some(&events) == sizes.last() {
            stall_line = Some(stall(&dir, live));
        }
    }
    if let Some(line) = stall_line {
        println!("\nOn the largest log: {line}");
    }
    println!();
    for (events, c) in costs {
        println!("- {events} events: {c}");
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// The floor: `()` keeps no snapshots.
// ---------------------------------------------------------------------------------------------

/// Events per command of the floor's log (the log's `command_events_max`).
const FLOOR_EVENTS_PER_COMMAND: u64 = 64;

fn build_floor(dir: &std::path::Path, events: u64) {
    let log: Log<()> = Log::open(LogConfig::in_dir(dir), ()).expect("opens");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let commands = events / FLOOR_EVENTS_PER_COMMAND;
        let mut sent = 0;
        while sent < commands {
            let batch = (commands - sent).min(256);
            let mut tasks = Vec::new();
            for c in sent..sent + batch {
                let log = log.clone();
                tasks.push(tokio::spawn(async move {
                    let events = (0..FLOOR_EVENTS_PER_COMMAND / 2)
                        .flat_map(|i| {
                            let n = c * FLOOR_EVENTS_PER_COMMAND + i;
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

fn floor(sizes: &[u64]) {
    println!("## Start-up: `Log::open` (verify from seq 1, fold into `()`) against log size\n");
    println!("| events | file MiB | open s (best of 3) | events/s | read every row s |");
    println!("|---:|---:|---:|---:|---:|");
    for &events in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        build_floor(dir.path(), events);
        let bytes = std::fs::metadata(dir.path().join("log.redb")).map_or(0, |m| m.len());
        let best = (0..3)
            .map(|_| {
                let started = Instant::now();
                let log: Log<()> = Log::open(LogConfig::in_dir(dir.path()), ()).expect("opens");
                let took = started.elapsed();
                assert_eq!(
                    log.head().seq,
                    events / FLOOR_EVENTS_PER_COMMAND * FLOOR_EVENTS_PER_COMMAND
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
    println!();
}

fn sizes(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    domain(&sizes("BENCH_STARTUP_EVENTS", "100000,1000000"));
    let floor_sizes = sizes("BENCH_STARTUP_FLOOR_EVENTS", "");
    if !floor_sizes.is_empty() {
        floor(&floor_sizes);
    }
}

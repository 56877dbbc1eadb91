//! Crash safety with a real process kill.
//!
//! A child process (`authkeys-log-torture`) appends with 16 concurrent clients and prints every
//! acknowledged command id. The parent SIGKILLs it at a random moment, reopens the log (which
//! restores the newest snapshot, ADR 008, and verifies the chain and checkpoints after it), checks
//! that the state it restored and folded equals the fold of every event, verifies the whole file
//! from seq 1, and checks that every acknowledged command is present with all its events exactly
//! once, that no command is present in part, and that seqs are contiguous.
//! `AUTHKEYS_CRASH_KILLS` sets the number of kills (default 50) for longer soaks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use authkeys_events::Seq;
use authkeys_log::fixtures::Tally;
use authkeys_log::{Aggregate as _, Log, LogConfig, LogReader};

/// Kills per fresh directory, so that a long soak does not spend its time re-verifying a huge log.
const KILLS_PER_DIR: u64 = 25;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs the child until the kill, returning every `(commandId, events)` it acknowledged.
fn run_and_kill(dir: &std::path::Path, rng: &mut XorShift, early: bool) -> Vec<(String, u64)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authkeys-log-torture"))
        .arg(dir)
        .arg("16")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn torture child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split(' ');
            match parts.next() {
                Some("READY") => {
                    let _ = ready_tx.send(());
                }
                Some("ACK") => {
                    let id = parts.next().expect("id").to_owned();
                    let n: u64 = parts.next().expect("count").parse().expect("number");
                    acks.push((id, n));
                }
                _ => panic!("unexpected child output {line:?}"),
            }
        }
        acks
    });
    if early {
        // Sometimes kill during start-up (open, verify, replay).
        std::thread::sleep(Duration::from_millis(rng.next() % 20));
    } else {
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child ready within 60 s");
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 200));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    reader.join().expect("reader thread")
}

#[test]
fn acknowledged_commands_survive_sigkill() {
    let kills: u64 = std::env::var("AUTHKEYS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("crash test: {kills} kills, seed {seed}");
    let mut rng = XorShift(seed);
    let started = Instant::now();
    let mut dir = tempfile::tempdir().expect("tempdir");
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut total_acks = 0usize;
    for kill in 0..kills {
        if kill > 0 && kill.is_multiple_of(KILLS_PER_DIR) {
            dir = tempfile::tempdir().expect("tempdir");
            acked.clear();
        }
        let early = rng.next().is_multiple_of(10);
        for (id, n) in run_and_kill(dir.path(), &mut rng, early) {
            assert!(
                acked.insert(id, n).is_none(),
                "a command id was acked twice"
            );
            total_acks += 1;
        }

        // Reopening restores the newest snapshot and verifies what follows it; the whole file
        // still verifies from seq 1.
        let log: Log<Tally> = Log::open(LogConfig::in_dir(dir.path()), Tally::default())
            .unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): log does not reopen: {e}"));
        LogReader::open(&dir.path().join("log.redb"))
            .and_then(|r| r.verify(None))
            .unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): log does not verify: {e}"));
        let restored = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(log.query(|t: &Tally| *t))
            .expect("query");
        let mut folded = Tally::default();
        let mut present: HashMap<String, u64> = HashMap::new();
        let mut next = 1u64;
        loop {
            let batch = log
                .read(Seq::new(next).expect("nonzero"), 10_000)
                .expect("reads");
            if batch.is_empty() {
                break;
            }
            for ev in &batch {
                assert_eq!(ev.seq.get(), next, "seqs are contiguous");
                next += 1;
                let env = ev.envelope().expect("decodes");
                folded.apply(&env);
                *present.entry(env.command_id.to_string()).or_default() += 1;
            }
        }
        assert_eq!(next - 1, log.head().seq);
        assert_eq!(
            restored,
            folded,
            "kill {kill} (seed {seed}): the state opened from snapshot {:?} is not the fold of \
             every event",
            log.opened_from_snapshot()
        );
        for (id, n) in &acked {
            assert_eq!(
                present.get(id),
                Some(n),
                "kill {kill} (seed {seed}): acknowledged command {id} has the wrong number of events"
            );
        }
        for (id, count) in &present {
            let n: u64 = id
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("n");
            assert_eq!(
                *count,
                n % 3 + 1,
                "command {id} is present in part or twice"
            );
        }
        log.close();
    }
    eprintln!(
        "crash test: {kills} kills, {total_acks} acknowledged commands checked, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

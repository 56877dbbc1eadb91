//! Black-box tests of the event log on a real redb file in a temp dir.

use std::sync::Arc;
use std::time::Duration;

use authkeys_events::{Actor, Envelope, Event, EventType, KeyRevoked, Seq, Timestamp};
use authkeys_log::fixtures::{self, append_command, key_generated, key_id, key_used};
use authkeys_log::{
    Aggregate, Append, AppendError, Decision, Expected, Log, LogConfig, LogError, LogReader,
    Proposed,
};
use redb::ReadableTable;

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig::in_dir(dir)
}

fn open(dir: &std::path::Path) -> Log<()> {
    Log::open(config(dir), ()).expect("log opens")
}

fn read_all(log: &Log<()>) -> Vec<Envelope> {
    log.read(Seq::FIRST, usize::MAX)
        .expect("reads")
        .iter()
        .map(|e| e.envelope().expect("decodes"))
        .collect()
}

#[tokio::test]
async fn appends_are_gapless_chained_and_readable() {
    // Proves: seqs start at 1 without gaps, each event links to the previous hash, stream versions
    // count per stream, and the full JSON served equals the typed envelope.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let mut rx = log.subscribe();
    for i in 0..5u64 {
        let c = log
            .append(append_command(
                &format!("c{i}"),
                vec![key_generated(i), key_used(i)],
            ))
            .await
            .expect("commits");
        assert_eq!(c.envelopes.len(), 2);
        assert!(!c.replayed);
    }
    rx.changed().await.expect("head moved");
    let events = read_all(&log);
    assert_eq!(events.len(), 10);
    let mut prev = authkeys_events::Hash::ZERO;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq.get(), i as u64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.compute_hash(), e.hash);
        assert_eq!(e.stream_version, if i % 2 == 0 { 1 } else { 2 });
        prev = e.hash;
    }
    assert_eq!(log.head().seq, 10);
    assert_eq!(log.head().hash, prev);
    let stored = log.read(Seq::new(3).expect("nonzero"), 2).expect("reads");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].to_json(), events[2].to_json());
    log.close();
}

/// Appends `n` commands `c0`, `c1`, … of one KeyGenerated each.
async fn append_n(log: &Log<()>, n: u64) {
    for i in 0..n {
        log.append(append_command(&format!("c{i}"), vec![key_generated(i)]))
            .await
            .expect("commits");
    }
}

/// Appends command `same` of one KeyGenerated(`n`), expecting an answer (`what`).
async fn append_same(log: &Log<()>, n: u64, what: &str) -> authkeys_log::Committed {
    log.append(append_command("same", vec![key_generated(n)]))
        .await
        .expect(what)
}

#[tokio::test]
async fn retried_command_gets_the_first_result_also_after_restart() {
    // Proves: commandId idempotency is durable and a different command under the same id is
    // refused rather than answered with someone else's result.
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let log = open(dir.path());
        let c = append_same(&log, 1, "commits").await;
        let again = append_same(&log, 99, "answered").await;
        assert!(again.replayed);
        assert_eq!(again.envelopes, c.envelopes);
        log.close();
        c
    };
    let log = open(dir.path());
    let again = append_same(&log, 1, "answered").await;
    assert!(again.replayed);
    assert_eq!(again.envelopes, first.envelopes);
    assert_eq!(log.head().seq, 1, "no new event");

    let mut other = append_command::<()>("same", vec![key_generated(1)]);
    other.fingerprint = [7; 32];
    match log.append(other).await {
        Err(AppendError::IdempotencyMismatch(id)) => assert_eq!(id.as_str(), "same"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(log.head().seq, 1);
}

#[tokio::test]
async fn sixty_four_concurrent_appends_with_one_expected_version_one_wins() {
    // Proves optimistic concurrency under group commit: 64 tasks all expect the stream at
    // version 1; exactly one appends, 63 get a typed Conflict, and the stream has 2 events.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.append(append_command("gen", vec![key_generated(5)]))
        .await
        .expect("commits");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let cmd: Append<()> = Append {
                scope: fixtures::tailnet().to_string(),
                command_id: fixtures::command_id(&format!("revoke-{i}")),
                actor: Actor::system("test"),
                fingerprint: [i as u8; 32],
                answer: None,
                decide: Box::new(|_, _| {
                    Ok(Decision {
                        tailnet: fixtures::tailnet(),
                        events: vec![Proposed {
                            event: Event::KeyRevoked(KeyRevoked { key_id: key_id(5) }),
                            expected: Expected::Exactly(1),
                        }],
                    })
                }),
            };
            log.append(cmd).await
        }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(c) => {
                wins += 1;
                assert_eq!(c.envelopes[0].stream_version, 2);
            }
            Err(AppendError::Conflict {
                actual, expected, ..
            }) => {
                conflicts += 1;
                assert_eq!(actual, 2);
                assert_eq!(expected, Expected::Exactly(1));
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 63));
    assert_eq!(log.head().seq, 2);
}

/// A one-off key as an aggregate: `decide` refuses a second use. Shows that decisions inside a
/// batch see the earlier appends of the same batch.
#[derive(Default)]
struct OneOff {
    used: std::collections::HashSet<String>,
}

impl Aggregate for OneOff {
    type Rejection = &'static str;
    fn apply(&mut self, env: &Envelope) {
        if let Event::KeyUsed(u) = &env.event {
            self.used.insert(u.key_id.to_string());
        }
    }
}

#[tokio::test]
async fn r01_decisions_see_earlier_appends_of_the_same_batch() {
    // Proves there is no read-then-write gap: 64 concurrent uses of one key, decided by a rule
    // that refuses a used key, produce exactly one KeyUsed, also across a reopen (state rebuilt).
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..2 {
        let log = Log::open(config(dir.path()), OneOff::default()).expect("opens");
        let mut tasks = Vec::new();
        for i in 0..64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(Append {
                    scope: fixtures::tailnet().to_string(),
                    command_id: fixtures::command_id(&format!("use-{round}-{i}")),
                    actor: Actor::system("test"),
                    fingerprint: [0; 32],
                    answer: None,
                    decide: Box::new(|s: &OneOff, _| {
                        if s.used.contains(key_id(1).as_str()) {
                            return Err("used");
                        }
                        Ok(Decision {
                            tailnet: fixtures::tailnet(),
                            events: vec![Proposed {
                                event: key_used(1),
                                expected: Expected::Any,
                            }],
                        })
                    }),
                })
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(AppendError::Rejected("used")) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, if round == 0 { 1 } else { 0 });
        assert_eq!(log.head().seq, 1);
        log.close();
    }
}

#[tokio::test]
async fn an_answer_reads_the_state_right_after_its_own_command_and_a_retry_has_none() {
    // Proves: each command's answer sees its own events and no later command's, even when 32
    // commands share a batch (so the reply needs no second trip through the writer); a retry
    // answered from the first result carries no answer.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(config(dir.path()), OneOff::default()).expect("opens");
    let use_key = |i: u64, id: String| Append::<OneOff> {
        scope: fixtures::tailnet().to_string(),
        command_id: fixtures::command_id(&id),
        actor: Actor::system("test"),
        fingerprint: [0; 32],
        answer: Some(Box::new(|s: &OneOff| {
            Some(Arc::new(s.used.len()) as Arc<dyn std::any::Any + Send + Sync>)
        })),
        decide: Box::new(move |_, _| {
            Ok(Decision {
                tailnet: fixtures::tailnet(),
                events: vec![Proposed {
                    event: key_used(i),
                    expected: Expected::Any,
                }],
            })
        }),
    };
    let mut tasks = Vec::new();
    for i in 1..=32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(use_key(i, format!("u{i}"))).await
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let c = t.await.expect("task").expect("commits");
        let used = *c
            .answer
            .as_ref()
            .and_then(|a| a.downcast_ref::<usize>())
            .expect("an answer");
        // The state after this command: as many keys used as events up to its own seq.
        assert_eq!(used as u64, c.envelopes[0].seq.get());
        seen.push(used);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=32).collect::<Vec<_>>());
    let retry = log.append(use_key(1, "u1".into())).await.expect("answered");
    assert!(retry.replayed && retry.answer.is_none());
    log.close();
}

#[tokio::test]
async fn rejected_commands_write_nothing() {
    // Proves a refused command leaves the log byte-identical: no event, no idempotency record.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(config(dir.path()), OneOff::default()).expect("opens");
    let refuse = |id: &str| Append::<OneOff> {
        scope: fixtures::tailnet().to_string(),
        command_id: fixtures::command_id(id),
        actor: Actor::system("test"),
        fingerprint: [0; 32],
        answer: None,
        decide: Box::new(|_, _| Err("no")),
    };
    assert!(matches!(
        log.append(refuse("r1")).await,
        Err(AppendError::Rejected("no"))
    ));
    assert_eq!(log.head().seq, 0);
    // The id is still free: a later, different command may use it.
    let mut cmd = append_command::<OneOff>("r1", vec![key_generated(1)]);
    cmd.fingerprint = [1; 32];
    log.append(cmd).await.expect("commits");
    assert_eq!(log.head().seq, 1);
}

#[tokio::test]
async fn checkpoints_every_n_events_and_at_close() {
    // Proves checkpoints are written every N events in the same transaction as the head they
    // cover, verify under the log's key, and a final one covers the head at close.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.checkpoint_events_max = 10;
    let log = Log::open(cfg.clone(), ()).expect("opens");
    append_n(&log, 25u64).await;
    let cps = log.checkpoints().expect("reads");
    assert_eq!(
        cps.iter().map(|c| c.seq.get()).collect::<Vec<_>>(),
        [10, 20]
    );
    for cp in &cps {
        cp.verify(&log.verifying_key()).expect("signed by the log");
        assert_eq!(cp.log_id, log.log_id());
    }
    let key = log.verifying_key();
    log.close();
    let reader = LogReader::open(&cfg.path).expect("opens read-only");
    let report = reader.verify(Some(&key)).expect("verifies");
    assert_eq!(report.events, 25);
    assert_eq!(report.last_checkpoint.map(Seq::get), Some(25));
}

#[tokio::test]
async fn checkpoint_after_interval_when_idle() {
    // Proves the T-seconds rule: a lone event is covered by a checkpoint once the interval has
    // passed, without any further command (the writer wakes on its own deadline).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.checkpoint_interval = Duration::from_millis(50);
    let log = Log::open(cfg, ()).expect("opens");
    log.append(append_command("c", vec![key_generated(1)]))
        .await
        .expect("commits");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if log
            .checkpoints()
            .expect("reads")
            .iter()
            .any(|c| c.seq.get() == 1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reader_follows_a_running_writer() {
    // Proves read-only tools can open the file while the service writes and see new commits.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let log = Log::open(cfg.clone(), ()).expect("opens");
    log.append(append_command("a", vec![key_generated(1)]))
        .await
        .expect("commits");
    let reader = LogReader::open(&cfg.path).expect("opens read-only beside the writer");
    assert_eq!(reader.head().expect("head").seq, 1);
    log.append(append_command("b", vec![key_generated(2)]))
        .await
        .expect("commits");
    assert_eq!(reader.head().expect("head").seq, 2);
    assert_eq!(reader.read(Seq::FIRST, 10).expect("reads").len(), 2);
    reader.verify(Some(&log.verifying_key())).expect("verifies");
}

#[tokio::test]
async fn relay_cursor_is_durable_and_never_passes_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 3u64).await;
    log.set_relay_cursor(2);
    log.set_relay_cursor(1); // never backwards
    log.set_relay_cursor(50); // clamped to the head
    log.close();
    let log = open(dir.path());
    assert_eq!(log.relay_cursor().expect("reads"), 3);
}

#[tokio::test]
async fn wrong_signing_key_refuses_to_open() {
    // Proves the log will not continue a chain with a key that did not sign its checkpoints.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    drop(open(dir.path()));
    std::fs::remove_file(&cfg.signing_key_path).expect("remove key");
    match Log::open(cfg.clone(), ()) {
        Err(LogError::Io { .. }) => {}
        other => panic!("expected a missing-key error, got {other:?}"),
    }
    std::fs::write(&cfg.signing_key_path, format!("{}\n", "11".repeat(32))).expect("write");
    match Log::open(cfg, ()) {
        Err(LogError::Config(msg)) => assert!(msg.contains("does not belong"), "{msg}"),
        other => panic!("expected a key mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn event_time_never_goes_backwards() {
    // Proves the injected clock is used and that event times are monotonic even if it jumps back.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    let now = Arc::new(std::sync::atomic::AtomicI64::new(2_000_000_000_000));
    let c = Arc::clone(&now);
    cfg.clock = authkeys_log::Clock::new(move || {
        Timestamp::from_unix_ms(c.load(std::sync::atomic::Ordering::SeqCst)).expect("in range")
    });
    let log = Log::open(cfg, ()).expect("opens");
    let a = log
        .append(append_command("a", vec![key_generated(1)]))
        .await
        .expect("commits");
    now.store(1_000_000_000_000, std::sync::atomic::Ordering::SeqCst);
    let b = log
        .append(append_command("b", vec![key_generated(2)]))
        .await
        .expect("commits");
    assert_eq!(a.envelopes[0].time.unix_ms(), 2_000_000_000_000);
    assert_eq!(b.envelopes[0].time, a.envelopes[0].time);
}

/// Opens the closed log file for writing with raw redb, to play the attacker.
fn tamper(path: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_write().expect("write");
    f(&txn);
    txn.commit().expect("commit");
}

const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
const CHECKPOINTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("checkpoints");

async fn closed_log(dir: &std::path::Path, n: u64) -> (LogConfig, ed25519_dalek::VerifyingKey) {
    let mut cfg = config(dir);
    cfg.checkpoint_events_max = 8;
    let log = Log::open(cfg.clone(), ()).expect("opens");
    append_n(&log, n).await;
    let key = log.verifying_key();
    log.close();
    (cfg, key)
}

fn first_bad_seq(cfg: &LogConfig, key: &ed25519_dalek::VerifyingKey) -> u64 {
    let reader = LogReader::open(&cfg.path).expect("opens");
    match reader.verify(Some(key)) {
        Err(LogError::Corrupt { seq, .. }) => seq,
        other => panic!("tampering not detected: {other:?}"),
    }
}

/// A closed log of 20 events in `dir`, then `edit`ed behind its back: its config and the seq
/// that verification names.
async fn first_bad_seq_after(
    dir: &std::path::Path,
    edit: impl FnOnce(&redb::WriteTransaction),
) -> (LogConfig, u64) {
    let (cfg, key) = closed_log(dir, 20).await;
    tamper(&cfg.path, edit);
    let seq = first_bad_seq(&cfg, &key);
    (cfg, seq)
}

/// Flips the bits `mask` of the byte at `at(row length)` of row `seq` of `table`.
fn flip_byte(
    table: redb::TableDefinition<'static, u64, &'static [u8]>,
    seq: u64,
    at: impl FnOnce(usize) -> usize,
    mask: u8,
) -> impl FnOnce(&redb::WriteTransaction) {
    move |txn| {
        let mut t = txn.open_table(table).expect("table");
        let mut row = t.get(seq).expect("get").expect("exists").value().to_vec();
        let i = at(row.len());
        row[i] ^= mask;
        t.insert(seq, row.as_slice()).expect("insert");
    }
}

/// Removes event `seq`.
fn remove_event(seq: u64) -> impl FnOnce(&redb::WriteTransaction) {
    move |txn| {
        txn.open_table(EVENTS)
            .expect("table")
            .remove(seq)
            .expect("remove");
    }
}

#[tokio::test]
async fn tamper_one_byte_of_one_event_names_its_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flipped = flip_byte(EVENTS, 13, |len| len - 5, 0x01);
    let (cfg, seq) = first_bad_seq_after(dir.path(), flipped).await;
    assert_eq!(seq, 13);
    // The service refuses to open it too.
    assert!(matches!(
        Log::open(cfg, ()),
        Err(LogError::Corrupt { seq: 13, .. })
    ));
}

#[tokio::test]
async fn tamper_dropped_event_names_its_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(first_bad_seq_after(dir.path(), remove_event(7)).await.1, 7);
}

#[tokio::test]
async fn tamper_dropped_last_event_is_caught_by_its_checkpoint() {
    // Proves truncation is detected when a checkpoint covers the dropped tail (close writes one).
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        first_bad_seq_after(dir.path(), remove_event(20)).await.1,
        20
    );
}

#[tokio::test]
async fn tamper_forged_checkpoint_signature_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let forged = flip_byte(CHECKPOINTS, 16, |_| 100, 0x10);
    assert_eq!(first_bad_seq_after(dir.path(), forged).await.1, 16);
}

#[tokio::test]
async fn tamper_rewritten_and_rehashed_event_is_caught_by_the_checkpoint() {
    // Proves that recomputing the chain after editing an event does not help: the signed
    // checkpoint no longer matches. Only the signing key could forge that.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, key) = closed_log(dir.path(), 16).await;
    let reader = LogReader::open(&cfg.path).expect("opens");
    let mut events: Vec<Envelope> = reader
        .read(Seq::FIRST, 100)
        .expect("reads")
        .iter()
        .map(|e| e.envelope().expect("decodes"))
        .collect();
    drop(reader);
    events[4].event = Event::KeyRevoked(KeyRevoked { key_id: key_id(4) });
    let mut prev = events[3].hash;
    for e in events.iter_mut().skip(4) {
        e.prev_hash = prev;
        e.hash = e.compute_hash();
        prev = e.hash;
    }
    tamper(&cfg.path, |txn| {
        let mut t = txn.open_table(EVENTS).expect("table");
        for e in events.iter().skip(4) {
            let mut row = e.hash.0.to_vec();
            row.extend_from_slice(&e.encode_body());
            t.insert(e.seq.get(), row.as_slice()).expect("insert");
        }
    });
    assert_eq!(first_bad_seq(&cfg, &key), 8);
    assert_eq!(events[4].event_type(), EventType::KeyRevoked);
}

#[tokio::test]
async fn verify_under_a_foreign_key_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, _key) = closed_log(dir.path(), 9).await;
    let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
    assert_eq!(first_bad_seq(&cfg, &other), 8);
}

#[tokio::test]
async fn query_sees_every_earlier_command() {
    // Proves read-your-writes through the writer: a query sent after an append reads state that
    // includes it.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(config(dir.path()), OneOff::default()).expect("opens");
    let pending = {
        let log = log.clone();
        tokio::spawn(async move {
            log.append(append_command("u", vec![key_used(3)]))
                .await
                .expect("commits")
        })
    };
    pending.await.expect("task");
    let used = log
        .query(|s: &OneOff| s.used.contains(key_id(3).as_str()))
        .await
        .expect("answers");
    assert!(used);
}

#[tokio::test]
async fn stream_versions_survive_a_reopen() {
    // Proves optimistic concurrency across restarts: stream versions are rebuilt from the events
    // at open, so an expectation written before the restart is checked against the truth after.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.append(append_command("g", vec![key_generated(7), key_used(7)]))
        .await
        .expect("commits");
    log.close();
    let log = open(dir.path());
    let revoke = |id: &str, expected| Append::<()> {
        scope: fixtures::tailnet().to_string(),
        command_id: fixtures::command_id(id),
        actor: Actor::system("test"),
        fingerprint: [9; 32],
        answer: None,
        decide: Box::new(move |_, _| {
            Ok(Decision {
                tailnet: fixtures::tailnet(),
                events: vec![Proposed {
                    event: Event::KeyRevoked(KeyRevoked { key_id: key_id(7) }),
                    expected,
                }],
            })
        }),
    };
    match log.append(revoke("stale", Expected::Exactly(1))).await {
        Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 2),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let c = log
        .append(revoke("fresh", Expected::Exactly(2)))
        .await
        .expect("commits");
    assert_eq!(c.envelopes[0].stream_version, 3);
}

/// A copy of `primary` in `dir`: the same signing key, created with the primary's log id.
fn copy_config(
    primary: &std::path::Path,
    dir: &std::path::Path,
    log_id: authkeys_events::LogId,
) -> LogConfig {
    std::fs::copy(primary.join("signing.key"), dir.join("signing.key")).expect("copy key");
    LogConfig {
        log_id: Some(log_id),
        ..config(dir)
    }
}

#[tokio::test]
async fn a_copy_imports_the_primary_event_by_event_and_verifies_as_the_same_log() {
    // Proves: a standby's copy made by `import` holds the primary's exact rows (same head, same
    // checkpoints, full verification passes under the primary's key), carries idempotency
    // records over (a retry on the copy answers the first result), and refuses a tampered event,
    // a gap, a forged checkpoint and a record naming other events — writing nothing for them.
    let (pdir, cdir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let primary = Log::<()>::open(
        LogConfig {
            checkpoint_events_max: 4,
            ..config(pdir.path())
        },
        (),
    )
    .expect("opens");
    for i in 0..10u64 {
        primary
            .append(append_command(
                &format!("c{i}"),
                vec![key_generated(i), key_used(i)],
            ))
            .await
            .expect("commits");
    }
    let copy = Log::<()>::open(copy_config(pdir.path(), cdir.path(), primary.log_id()), ())
        .expect("copy opens");
    assert_eq!(copy.log_id(), primary.log_id());
    let events = primary.read(Seq::FIRST, usize::MAX).expect("reads");
    let checkpoints = primary.checkpoints().expect("checkpoints");
    assert!(checkpoints.len() >= 4, "{checkpoints:?}");
    let record = |i: u64| authkeys_log::ImportedCommand {
        scope: fixtures::tailnet().to_string(),
        command_id: fixtures::command_id(&format!("c{i}")),
        seqs: 2 * i + 1..=2 * i + 2,
        fingerprint: *blake3::hash(format!("c{i}").as_bytes()).as_bytes(),
    };

    // A tampered body, a gap and a record over another command's events are refused whole.
    let mut tampered = events[..4].to_vec();
    tampered[2].body[10] ^= 1;
    let gap = vec![events[1].clone()];
    let crossed = authkeys_log::Import {
        events: events[..4].to_vec(),
        commands: vec![authkeys_log::ImportedCommand {
            seqs: 2..=3,
            ..record(0)
        }],
        ..Default::default()
    };
    for bad in [
        authkeys_log::Import {
            events: tampered,
            ..Default::default()
        },
        authkeys_log::Import {
            events: gap,
            ..Default::default()
        },
        crossed,
    ] {
        let e = copy.import(bad).await.expect_err("refused");
        assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
        assert_eq!(copy.head().seq, 0);
    }

    // In pieces, as a standby receives them; each checkpoint once its seq is in.
    for chunk in events.chunks(3) {
        let last = chunk.last().expect("nonempty").seq;
        let first = chunk[0].seq.get();
        let head = copy
            .import(authkeys_log::Import {
                events: chunk.to_vec(),
                checkpoints: checkpoints
                    .iter()
                    .filter(|cp| cp.seq >= chunk[0].seq && cp.seq <= last)
                    .cloned()
                    .collect(),
                commands: (0..10)
                    .map(record)
                    .filter(|r| {
                        (first..=last.get()).contains(r.seqs.end()) && *r.seqs.start() >= first
                    })
                    .collect(),
            })
            .await
            .expect("imports");
        assert_eq!(head.seq, last.get());
    }
    assert_eq!(copy.head(), primary.head());
    assert_eq!(copy.checkpoints().expect("checkpoints"), checkpoints);
    // A range of them is the same range of all of them.
    let from = checkpoints[1].seq;
    assert_eq!(
        copy.checkpoints_from(from, 2).expect("range"),
        checkpoints[1..3].to_vec()
    );
    // A forged checkpoint (signed by another key) is refused.
    let mut forged = checkpoints[0].clone();
    forged.hash = authkeys_events::Hash([9; 32]);
    let e = copy
        .import(authkeys_log::Import {
            checkpoints: vec![forged],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
    // A command split across chunks has no record unless its chunk held both ends; the others
    // answer a retry with the first result.
    let retry = copy
        .append(append_command("c9", vec![key_generated(9), key_used(9)]))
        .await
        .expect("answers");
    assert!(retry.replayed);
    assert_eq!(retry.envelopes.first().expect("events").seq.get(), 19);
    let head = copy.head();
    drop(copy);
    primary.close();

    let reader = LogReader::open(&cdir.path().join("log.redb")).expect("reader");
    let key = ed25519_dalek::SigningKey::from_bytes(
        &authkeys_log::keys::load_or_create_key(&pdir.path().join("signing.key"), false)
            .expect("key"),
    )
    .verifying_key();
    let report = reader.verify(Some(&key)).expect("the copy verifies");
    assert_eq!(report.head, head);
    // Reopening the copy with another log id is refused; a copy never makes a signing key.
    let other = authkeys_events::LogId([1; 16]);
    let e = Log::<()>::open(
        LogConfig {
            log_id: Some(other),
            ..config(cdir.path())
        },
        (),
    )
    .expect_err("another log");
    assert!(e.to_string().contains("follows log"), "{e}");
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(
        Log::<()>::open(
            LogConfig {
                log_id: Some(other),
                ..config(empty.path())
            },
            ()
        )
        .is_err()
    );
}

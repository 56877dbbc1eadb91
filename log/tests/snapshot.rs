//! Snapshots (ADR 008) on real redb files: a log reopened from its snapshot holds exactly the
//! state and stream versions of one folded from every event; a snapshot that is damaged, of
//! another format, of another history or not covered by a checkpoint is never used (the open
//! falls back to full verification and still opens); tampering after the snapshot is still
//! caught at open; a copy filled by `import` writes snapshots too.

use authkeys_events::{Envelope, Event, LogId, Seq};
use authkeys_log::fixtures::{Tally, append_command, key_generated, key_used, tailnet};
use authkeys_log::{
    Aggregate, Append, AppendError, Decision, Expected, Import, Log, LogConfig, LogError,
    LogReader, Proposed,
};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints");
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// Checkpoints every 8 events, a snapshot with the first checkpoint 16 events after the last.
fn config(dir: &std::path::Path) -> LogConfig {
    let mut c = LogConfig::in_dir(dir);
    c.checkpoint_events_max = 8;
    c.snapshot_events_max = 16;
    c
}

fn open(dir: &std::path::Path) -> Result<Log<Tally>, LogError> {
    Log::open(config(dir), Tally::default())
}

/// Appends events `from..from + n`, one command each.
fn append(log: &Log<Tally>, from: u64, n: u64) {
    for i in from..from + n {
        log.append_blocking(append_command(&format!("c{i}"), vec![key_generated(i)]))
            .expect("commits");
    }
}

/// A closed log of `n` events in `dir`: snapshots at 16, 32, … and at close; two kept.
fn closed_log(dir: &std::path::Path, n: u64) {
    let log = open(dir).expect("opens");
    append(&log, 1, n);
    log.close();
}

fn state(log: &Log<Tally>) -> Tally {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(log.query(|t: &Tally| *t))
        .expect("query")
}

/// The fold of every stored event, from seq 1.
fn full_fold(dir: &std::path::Path) -> Tally {
    let reader = LogReader::open(&dir.join("log.redb")).expect("reader");
    let mut t = Tally::default();
    for ev in reader.read(Seq::FIRST, usize::MAX).expect("reads") {
        t.apply(&ev.envelope().expect("decodes"));
    }
    t
}

/// Opens the closed file with raw redb, to play the attacker (or the disk).
fn tamper(dir: &std::path::Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(dir.join("log.redb")).expect("raw open");
    let txn = db.begin_write().expect("write");
    f(&txn);
    txn.commit().expect("commit");
}

fn snapshot_seqs(dir: &std::path::Path) -> Vec<u64> {
    let db = redb::Database::open(dir.join("log.redb")).expect("raw open");
    let txn = db.begin_read().expect("read");
    let t = txn.open_table(SNAPSHOTS).expect("table");
    t.iter()
        .expect("iter")
        .map(|r| r.expect("row").0.value())
        .collect()
}

fn edit_row(
    table: TableDefinition<'static, u64, &'static [u8]>,
    seq: u64,
    f: impl FnOnce(&mut Vec<u8>),
) -> impl FnOnce(&redb::WriteTransaction) {
    move |txn| {
        let mut t = txn.open_table(table).expect("table");
        let mut row = t.get(seq).expect("get").expect("exists").value().to_vec();
        f(&mut row);
        t.insert(seq, row.as_slice()).expect("insert");
    }
}

fn remove_row(
    table: TableDefinition<'static, u64, &'static [u8]>,
    seqs: impl IntoIterator<Item = u64>,
) -> impl FnOnce(&redb::WriteTransaction) {
    move |txn| {
        let mut t = txn.open_table(table).expect("table");
        for seq in seqs {
            t.remove(seq).expect("remove");
        }
    }
}

/// Opens `dir` and checks that the state is the fold of every event.
fn opens_with_the_full_fold(dir: &std::path::Path) -> Option<u64> {
    let log = open(dir).expect("opens");
    assert_eq!(
        state(&log),
        full_fold(dir),
        "the state is the fold of every event"
    );
    assert_eq!(state(&log).events, log.head().seq);
    let from = log.opened_from_snapshot();
    log.close();
    from
}

#[test]
fn close_writes_a_snapshot_and_a_reopen_restores_it_with_the_same_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    // Periodic ones at 16 and 32, the last at close (40); the two newest kept.
    assert_eq!(snapshot_seqs(dir.path()), vec![32, 40]);
    let log = open(dir.path()).expect("opens");
    assert_eq!(log.opened_from_snapshot(), Some(40));
    assert_eq!(state(&log), full_fold(dir.path()));
    append(&log, 41, 1);
    assert_eq!(state(&log).events, 41);
    log.close();
    assert_eq!(opens_with_the_full_fold(dir.path()), Some(41));
}

#[test]
fn a_periodic_snapshot_is_restored_and_the_events_after_it_are_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    // As after a crash between the snapshot at 32 and the close.
    tamper(dir.path(), remove_row(SNAPSHOTS, [40]));
    assert_eq!(opens_with_the_full_fold(dir.path()), Some(32));
}

/// A command whose one event expects `expected` of its stream.
fn expecting(id: &str, event: Event, expected: Expected) -> Append<Tally> {
    Append {
        decide: Box::new(move |_, _| {
            Ok(Decision {
                tailnet: tailnet(),
                events: vec![Proposed { event, expected }],
            })
        }),
        ..append_command(id, Vec::new())
    }
}

fn stream_answers(log: &Log<Tally>) -> Vec<Result<u64, u64>> {
    // Key 1's stream is at version 3; key 99's does not exist.
    [
        ("a", key_used(1), Expected::Exactly(2)),
        ("b", key_used(1), Expected::NoStream),
        ("c", key_used(1), Expected::Exactly(3)),
        ("d", key_used(1), Expected::Exactly(3)),
        ("e", key_generated(99), Expected::NoStream),
        ("f", key_generated(99), Expected::NoStream),
    ]
    .into_iter()
    .map(
        |(id, event, expected)| match log.append_blocking(expecting(id, event, expected)) {
            Ok(c) => Ok(c.envelopes[0].stream_version),
            Err(AppendError::Conflict { actual, .. }) => Err(actual),
            Err(e) => panic!("{e}"),
        },
    )
    .collect()
}

#[test]
fn stream_versions_restored_from_a_snapshot_decide_conflicts_as_the_full_fold_does() {
    let (snap, full) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    for dir in [snap.path(), full.path()] {
        let log = open(dir).expect("opens");
        for i in 0..3 {
            log.append_blocking(append_command(&format!("k{i}"), vec![key_generated(1)]))
                .expect("commits");
        }
        append(&log, 2, 20);
        log.close();
    }
    tamper(
        full.path(),
        remove_row(SNAPSHOTS, snapshot_seqs(full.path())),
    );
    let (a, b) = (
        open(snap.path()).expect("opens"),
        open(full.path()).expect("opens"),
    );
    assert_eq!(a.opened_from_snapshot(), Some(23));
    assert_eq!(b.opened_from_snapshot(), None);
    let answers = stream_answers(&a);
    assert_eq!(answers, stream_answers(&b));
    assert_eq!(
        answers,
        vec![Err(3), Err(3), Ok(4), Err(4), Ok(1), Err(1)],
        "the versions are the events'"
    );
}

#[test]
fn a_damaged_snapshot_is_not_used_and_the_log_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    // One bit of the newest: the one before it is used.
    tamper(
        dir.path(),
        edit_row(SNAPSHOTS, 40, |row| {
            let i = row.len() - 3;
            row[i] ^= 0x04;
        }),
    );
    assert_eq!(opens_with_the_full_fold(dir.path()), Some(32));
    // The open rewrote nothing (it wrote no new snapshot: nothing followed).
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    tamper(
        dir.path(),
        edit_row(SNAPSHOTS, 40, |row| {
            row[50] ^= 0x80;
        }),
    );
    tamper(dir.path(), edit_row(SNAPSHOTS, 32, |row| row.truncate(30)));
    assert_eq!(opens_with_the_full_fold(dir.path()), None);
    // The clean close after the full fold left a good snapshot again.
    assert!(snapshot_seqs(dir.path()).contains(&40));
}

#[test]
fn a_snapshot_of_another_format_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    for seq in [32, 40] {
        tamper(dir.path(), edit_row(SNAPSHOTS, seq, |row| row[..4].fill(0)));
    }
    assert_eq!(opens_with_the_full_fold(dir.path()), None);

    /// Folds like a tally but names another format: a build whose state changed.
    #[derive(Default)]
    struct Renamed(Tally);
    impl Aggregate for Renamed {
        type Rejection = String;
        fn apply(&mut self, env: &Envelope) {
            self.0.apply(env);
        }
        const SNAPSHOT_FORMAT: Option<&'static str> = Some("fixtures/tally/2");
        fn snapshot(&self) -> Vec<u8> {
            self.0.snapshot()
        }
        fn restore(bytes: &[u8]) -> Result<Self, String> {
            Tally::restore(bytes).map(Self)
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 20);
    let log = Log::open(config(dir.path()), Renamed::default()).expect("opens");
    assert_eq!(log.opened_from_snapshot(), None);
    let folded = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(log.query(|r: &Renamed| r.0))
        .expect("query");
    assert_eq!(folded, full_fold(dir.path()));
}

#[test]
fn a_snapshot_of_another_history_is_not_used() {
    // Two copies of one log (same id, same key) that diverged at seq 1: copy B's file gets copy
    // A's snapshot at seq 10, whose checksum is good (same key) but whose hash is not B's event.
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let log = open(a.path()).expect("opens");
    let log_id = log.log_id();
    append(&log, 1, 10);
    log.close();
    std::fs::copy(a.path().join("signing.key"), b.path().join("signing.key")).expect("copy key");
    let log = Log::open(
        LogConfig {
            log_id: Some(log_id),
            ..config(b.path())
        },
        Tally::default(),
    )
    .expect("opens");
    append(&log, 100, 10);
    log.close();
    let theirs = {
        let db = redb::Database::open(a.path().join("log.redb")).expect("raw open");
        let txn = db.begin_read().expect("read");
        let t = txn.open_table(SNAPSHOTS).expect("table");
        t.get(10)
            .expect("get")
            .expect("a snapshot at 10")
            .value()
            .to_vec()
    };
    assert_eq!(snapshot_seqs(b.path()), vec![10]);
    tamper(b.path(), |txn| {
        txn.open_table(SNAPSHOTS)
            .expect("table")
            .insert(10, theirs.as_slice())
            .expect("insert");
    });
    let log = Log::open(
        LogConfig {
            log_id: Some(log_id),
            ..config(b.path())
        },
        Tally::default(),
    )
    .expect("opens");
    assert_eq!(log.opened_from_snapshot(), None);
    assert_eq!(state(&log), full_fold(b.path()));
}

#[test]
fn a_snapshot_no_checkpoint_covers_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    tamper(dir.path(), remove_row(CHECKPOINTS, [32, 40]));
    assert_eq!(opens_with_the_full_fold(dir.path()), None);
}

#[test]
fn tampering_after_the_snapshot_is_caught_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    tamper(dir.path(), remove_row(SNAPSHOTS, [40]));
    tamper(
        dir.path(),
        edit_row(EVENTS, 35, |row| {
            let i = row.len() - 5;
            row[i] ^= 0x01;
        }),
    );
    assert!(matches!(
        open(dir.path()),
        Err(LogError::Corrupt { seq: 35, .. })
    ));

    // A forged checkpoint after it, and a dropped event after it, too.
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    tamper(dir.path(), remove_row(SNAPSHOTS, [40]));
    tamper(
        dir.path(),
        edit_row(CHECKPOINTS, 40, |row| row[100] ^= 0x10),
    );
    assert!(matches!(
        open(dir.path()),
        Err(LogError::Corrupt { seq: 40, .. })
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    tamper(dir.path(), remove_row(SNAPSHOTS, [40]));
    tamper(dir.path(), remove_row(EVENTS, [37]));
    assert!(matches!(
        open(dir.path()),
        Err(LogError::Corrupt { seq: 37, .. })
    ));
}

#[test]
fn tampering_before_the_snapshot_is_left_to_the_full_verification() {
    // The trade-off of ADR 008, shown: an open trusts what its own signed checkpoint and
    // snapshot vouch for; `LogReader::verify` (`authkeys audit verify`) still names the seq.
    let dir = tempfile::tempdir().expect("tempdir");
    closed_log(dir.path(), 40);
    let key = open(dir.path()).expect("opens").verifying_key();
    tamper(dir.path(), edit_row(EVENTS, 13, |row| row[40] ^= 0x01));
    assert_eq!(
        open(dir.path()).expect("opens").opened_from_snapshot(),
        Some(40)
    );
    let reader = LogReader::open(&dir.path().join("log.redb")).expect("reader");
    assert!(matches!(
        reader.verify(Some(&key)),
        Err(LogError::Corrupt { seq: 13, .. })
    ));
}

#[test]
fn a_copy_filled_by_import_writes_snapshots_and_reopens_from_them() {
    let (p, c) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let primary = open(p.path()).expect("opens");
    let log_id: LogId = primary.log_id();
    append(&primary, 1, 40);
    let events = primary.read(Seq::FIRST, 100).expect("reads");
    let checkpoints = primary.checkpoints().expect("checkpoints");
    primary.close();
    std::fs::copy(p.path().join("signing.key"), c.path().join("signing.key")).expect("copy key");
    let copy_config = || LogConfig {
        log_id: Some(log_id),
        ..config(c.path())
    };
    let copy = Log::open(copy_config(), Tally::default()).expect("opens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // As a standby does: events in stream batches, the primary's checkpoints once their events
    // are in.
    for (range, cps) in [(0..20, 0..16), (20..30, 16..24), (30..40, 24..40)] {
        rt.block_on(
            copy.import(Import {
                events: events[range].to_vec(),
                checkpoints: checkpoints
                    .iter()
                    .filter(|cp| cps.contains(&(cp.seq.get() - 1)))
                    .cloned()
                    .collect(),
                commands: Vec::new(),
            }),
        )
        .expect("imports");
    }
    // A snapshot at the head of the imports at 20 and 40 (16 events after the one before).
    drop(copy);
    let mut seqs = snapshot_seqs(c.path());
    seqs.sort_unstable();
    assert_eq!(seqs, vec![20, 40]);
    let reopened = Log::open(copy_config(), Tally::default()).expect("opens");
    assert_eq!(reopened.opened_from_snapshot(), Some(40));
    assert_eq!(state(&reopened), full_fold(c.path()));
    drop(reopened);
    // The one at 20 has no checkpoint at its seq (the primary's are at 16 and 24): the one at
    // 24 covers it through the chain verified after it.
    tamper(c.path(), remove_row(SNAPSHOTS, [40]));
    let reopened = Log::open(copy_config(), Tally::default()).expect("opens");
    assert_eq!(reopened.opened_from_snapshot(), Some(20));
    assert_eq!(state(&reopened), full_fold(c.path()));
}

//! Verification of a whole log, and read-only access for tools that run beside the service.
//!
//! [`verify_txn`] walks every event from seq 1: the seq is contiguous, the stored hash equals
//! `chain_hash(prev, seq, body)`, the body decodes and names the same seq, `prevHash` and event
//! id; and every checkpoint is signed by the trusted key, names this log and matches the chain at
//! its seq. The first failure is reported with its seq.

use std::collections::BTreeMap;
use std::path::Path;

use authkeys_events::{Envelope, Hash, LogId, Seq, Timestamp, chain_hash};
use ed25519_dalek::VerifyingKey;
use redb::ReadableDatabase;

use crate::store::{self, EVENTS, META_VERIFYING_KEY, StoredEvent, event_id};
use crate::{Head, LogError};

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The last event.
    pub head: Head,
    /// The highest checkpoint.
    pub last_checkpoint: Option<Seq>,
    /// The last event's time.
    pub last_time: Option<Timestamp>,
}

fn corrupt(seq: u64, what: impl Into<String>) -> LogError {
    LogError::Corrupt {
        seq,
        what: what.into(),
    }
}

/// Verifies the log seen by `txn` under `key`, calling `on_event` for each event in order.
/// `log_id`: the id the checkpoints must name (read from the file when `None`).
pub fn verify_txn(
    txn: &redb::ReadTransaction,
    key: &VerifyingKey,
    log_id: Option<LogId>,
    on_event: impl FnMut(&Envelope),
) -> Result<VerifyReport, LogError> {
    let start = Head {
        seq: 0,
        hash: Hash::ZERO,
    };
    verify_from(txn, key, log_id, start, on_event)
}

/// [`verify_txn`] of the events after `start` only, taking `start` (an event at `start.seq`
/// with hash `start.hash`, or `(0, ZERO)` for the whole log) as given: the chain from it, every
/// event after it, and every checkpoint at `start.seq` or later (one at `start.seq` must name
/// `start.hash`). Older checkpoints are not read. The report counts what was checked; its
/// `head` is `start` when nothing follows it.
pub(crate) fn verify_from(
    txn: &redb::ReadTransaction,
    key: &VerifyingKey,
    log_id: Option<LogId>,
    start: Head,
    mut on_event: impl FnMut(&Envelope),
) -> Result<VerifyReport, LogError> {
    let log_id = match log_id {
        Some(id) => id,
        None => store::read_log_id(txn)?.ok_or_else(|| corrupt(0, "the file has no log id"))?,
    };
    let mut checkpoints: BTreeMap<u64, authkeys_events::Checkpoint> = BTreeMap::new();
    for cp in store::read_checkpoints_from(txn, start.seq, usize::MAX)? {
        let seq = cp.seq.get();
        if cp.log_id != log_id {
            return Err(corrupt(seq, "checkpoint names another log"));
        }
        cp.verify(key)
            .map_err(|e| corrupt(seq, format!("checkpoint: {e}")))?;
        if seq == start.seq && cp.hash != start.hash {
            return Err(corrupt(seq, "checkpoint disagrees with the chain"));
        }
        checkpoints.insert(seq, cp);
    }

    let mut head = start;
    let mut last_time = None;
    if let Ok(table) = txn.open_table(EVENTS) {
        for row in table
            .range(start.seq + 1..)
            .map_err(|e| LogError::storage("read events", e))?
        {
            let (k, v) = row.map_err(|e| LogError::storage("read events", e))?;
            let seq = k.value();
            let expected = head.seq + 1;
            if seq != expected {
                return Err(corrupt(
                    expected,
                    format!("event {expected} is missing (next stored is {seq})"),
                ));
            }
            let ev = StoredEvent::decode_row(seq, v.value())?;
            let s = ev.seq;
            let computed = chain_hash(&head.hash, s, &ev.body);
            if computed != ev.hash {
                return Err(corrupt(seq, "hash does not match the stored bytes"));
            }
            let env = ev
                .envelope()
                .map_err(|e| corrupt(seq, format!("body: {e}")))?;
            if env.seq != s {
                return Err(corrupt(seq, format!("body names seq {}", env.seq)));
            }
            if env.prev_hash != head.hash {
                return Err(corrupt(seq, "prevHash does not link to the previous event"));
            }
            if env.id != event_id(&log_id, s) {
                return Err(corrupt(seq, "event id is not this log's id for this seq"));
            }
            if checkpoints.get(&seq).is_some_and(|cp| cp.hash != ev.hash) {
                return Err(corrupt(seq, "checkpoint disagrees with the chain"));
            }
            on_event(&env);
            last_time = Some(env.time);
            head = Head { seq, hash: ev.hash };
        }
    }
    if let Some((&seq, _)) = checkpoints.range(head.seq + 1..).next() {
        return Err(corrupt(
            head.seq + 1,
            format!(
                "event {} is missing: a checkpoint covers seq {seq}",
                head.seq + 1
            ),
        ));
    }
    Ok(VerifyReport {
        events: head.seq - start.seq,
        checkpoints: checkpoints.len() as u64,
        head,
        last_checkpoint: checkpoints
            .keys()
            .next_back()
            .and_then(|s| Seq::new(*s).ok()),
        last_time,
    })
}

/// A read-only view of a log file, safe to open while a service writes it.
pub struct LogReader {
    db: redb::ReadOnlyDatabase,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader").finish_non_exhaustive()
    }
}

impl LogReader {
    /// Opens `path` read-only in single-writer mode: it follows the writer's commits and never
    /// blocks it.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .open_read_only(path)
            .map_err(|e| LogError::storage("open log file read-only", e))?;
        Ok(Self { db })
    }

    fn txn(&self) -> Result<redb::ReadTransaction, LogError> {
        self.db
            .begin_read()
            .map_err(|e| LogError::storage("begin read", e))
    }

    /// Verifies the whole log under `key`; with `None`, under the key recorded in the file (which
    /// proves integrity, not authenticity: auditors pin the key).
    pub fn verify(&self, key: Option<&VerifyingKey>) -> Result<VerifyReport, LogError> {
        let txn = self.txn()?;
        let key = match key {
            Some(k) => *k,
            None => self.recorded_key(&txn)?,
        };
        verify_txn(&txn, &key, None, |_| {})
    }

    fn recorded_key(&self, txn: &redb::ReadTransaction) -> Result<VerifyingKey, LogError> {
        let bytes = store::read_meta(txn, META_VERIFYING_KEY)?
            .ok_or_else(|| corrupt(0, "the file records no verifying key"))?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| corrupt(0, "verifying key is not 32 bytes"))?;
        VerifyingKey::from_bytes(&arr).map_err(|_| corrupt(0, "verifying key is invalid"))
    }

    /// Up to `limit` events from `from` on.
    pub fn read(&self, from: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        store::read_events(&self.txn()?, from, limit)
    }

    /// The last event.
    pub fn head(&self) -> Result<Head, LogError> {
        let (seq, hash) = store::read_head(&self.txn()?)?;
        Ok(Head { seq, hash })
    }

    /// The durable relay cursor.
    pub fn relay_cursor(&self) -> Result<u64, LogError> {
        store::read_relay_cursor(&self.txn()?)
    }

    /// Every checkpoint.
    pub fn checkpoints(&self) -> Result<Vec<authkeys_events::Checkpoint>, LogError> {
        store::read_checkpoints(&self.txn()?)
    }

    /// One consistent read of the whole file, rows as stored: what an auditor's own verifier
    /// reads, so that it (not this crate) decides what is wrong and at which seq.
    pub fn snapshot(&self) -> Result<Snapshot, LogError> {
        Ok(Snapshot { txn: self.txn()? })
    }
}

/// A consistent read-only snapshot of a log file: the events and checkpoints of one commit.
/// Nothing is checked here; every row is handed over as stored.
pub struct Snapshot {
    txn: redb::ReadTransaction,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The log id recorded in the file, if any.
    pub fn log_id(&self) -> Result<Option<LogId>, LogError> {
        store::read_log_id(&self.txn)
    }

    /// Every checkpoint row as stored: `(key, value)` in key order.
    pub fn checkpoint_rows(&self) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        store::read_checkpoint_rows(&self.txn)
    }

    /// Calls `f(key, row)` for every event row from key `from` on, in key order, without
    /// copying; `row` is hash (32 bytes) ‖ body as stored. Stops when `f` breaks.
    pub fn for_each_event(
        &self,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> std::ops::ControlFlow<()>,
    ) -> Result<(), LogError> {
        let table = match self.txn.open_table(EVENTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(LogError::storage("open events table", e)),
        };
        for row in table
            .range(from..)
            .map_err(|e| LogError::storage("read events", e))?
        {
            let (k, v) = row.map_err(|e| LogError::storage("read events", e))?;
            if f(k.value(), v.value()).is_break() {
                break;
            }
        }
        Ok(())
    }
}

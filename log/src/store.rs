//! The redb tables of the log and the encoding of their rows.
//!
//! | table | key | value |
//! |---|---|---|
//! | `events` | seq (u64) | hash (32 bytes) ‖ body (the envelope's JSON without `hash`) |
//! | `commands` | `scope/commandId` | first seq ‖ last seq (u64 LE each) ‖ fingerprint (32) |
//! | `checkpoints` | seq | [`Checkpoint::to_bytes`] |
//! | `meta` | name | value (log id, verifying key, relay cursor, format) |
//!
//! Stream versions are not stored apart: they are in every envelope, and the writer rebuilds
//! them when it opens the log.
//!
//! Everything read back from the file is checked before it is trusted: lengths, hashes, seqs.

use authkeys_events::{Checkpoint, DecodeError, Envelope, EventId, Hash, LogId, Seq};
use redb::{ReadableTable, TableDefinition};

use crate::LogError;

pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(crate) const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
pub(crate) const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_LOG_ID: &str = "log_id";
pub(crate) const META_VERIFYING_KEY: &str = "verifying_key";
pub(crate) const META_RELAY_CURSOR: &str = "relay_cursor";

/// The on-disk format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// One event as stored: its position, its chain hash and its exact body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position.
    pub seq: Seq,
    /// Chain hash as stored.
    pub hash: Hash,
    /// The envelope's JSON without `hash`: the bytes the hash covers.
    pub body: Vec<u8>,
}

impl StoredEvent {
    pub(crate) fn encode_row(hash: &Hash, body: &[u8]) -> Vec<u8> {
        let mut row = Vec::with_capacity(32 + body.len());
        row.extend_from_slice(&hash.0);
        row.extend_from_slice(body);
        row
    }

    /// Splits the stored row of key `seq`, refusing seq 0 and a row too short to hold a hash.
    pub(crate) fn decode_row(seq: u64, row: &[u8]) -> Result<Self, LogError> {
        let corrupt = |what: &str| LogError::Corrupt {
            seq,
            what: what.into(),
        };
        let s = Seq::new(seq).map_err(|_| corrupt("seq 0 stored"))?;
        if row.len() < 33 {
            return Err(corrupt("row too short"));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&row[..32]);
        Ok(Self {
            seq: s,
            hash: Hash(hash),
            body: row[32..].to_vec(),
        })
    }

    /// The typed envelope (decodes the body).
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::decode_body(&self.body, self.hash)
    }

    /// The full JSON envelope, `hash` included, without re-serializing.
    pub fn to_json(&self) -> Vec<u8> {
        Envelope::splice_hash(&self.body, &self.hash)
    }
}

/// The idempotency record of a committed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRecord {
    /// First seq it wrote; `last < first` when it wrote nothing.
    pub first: u64,
    /// Last seq it wrote.
    pub last: u64,
    /// What the caller said the command was; a retry must match.
    pub fingerprint: [u8; 32],
}

impl CommandRecord {
    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.first.to_le_bytes());
        out[8..16].copy_from_slice(&self.last.to_le_bytes());
        out[16..].copy_from_slice(&self.fingerprint);
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 48 {
            return None;
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&b[16..]);
        Some(Self {
            first: u64::from_le_bytes(b[..8].try_into().ok()?),
            last: u64::from_le_bytes(b[8..16].try_into().ok()?),
            fingerprint,
        })
    }
}

/// The idempotency key of a command: command ids are the caller's, so they are scoped (by
/// tailnet, or by registrar).
pub(crate) fn command_key(scope: &str, command_id: &str) -> String {
    format!("{scope}/{command_id}")
}

/// The event id of `seq` in log `log_id`: deterministic, so a re-published event keeps its id.
pub fn event_id(log_id: &LogId, seq: Seq) -> EventId {
    EventId::parse(format!("e{}", hex::encode(event_id_digest(log_id, seq))))
        .expect("e + 32 hex digits is a valid event id")
}

/// The 16 bytes an event id spells in hex after its `e`.
fn event_id_digest(log_id: &LogId, seq: Seq) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"authkeys/event-id/v1");
    h.update(&log_id.0);
    h.update(&seq.get().to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// Whether `id` is [`event_id`]`(log_id, seq)`, without allocating (verifiers check every one).
pub fn is_event_id(id: &EventId, log_id: &LogId, seq: Seq) -> bool {
    let Some(hex_part) = id.as_str().strip_prefix('e') else {
        return false;
    };
    let mut got = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut got).is_ok()
        && hex_part.bytes().all(|b| !b.is_ascii_uppercase())
        && got == event_id_digest(log_id, seq)
}

/// Reads up to `limit` events from `from` on, in order, checking that seqs are contiguous.
pub(crate) fn read_events(
    txn: &redb::ReadTransaction,
    from: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>, LogError> {
    let table = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(LogError::storage("open events table", e)),
    };
    let mut out = Vec::with_capacity(limit.min(1024));
    let rows = table
        .range(from.get()..)
        .map_err(|e| LogError::storage("read events", e))?
        .take(limit);
    for (expected, row) in (from.get()..).zip(rows) {
        let (k, v) = row.map_err(|e| LogError::storage("read events", e))?;
        let seq = k.value();
        if seq != expected {
            return Err(LogError::Corrupt {
                seq: expected,
                what: format!("event {expected} is missing (next stored is {seq})"),
            });
        }
        out.push(StoredEvent::decode_row(seq, v.value())?);
    }
    Ok(out)
}

/// The last stored event's `(seq, hash)`, or `(0, ZERO)` for an empty log.
pub(crate) fn read_head(txn: &redb::ReadTransaction) -> Result<(u64, Hash), LogError> {
    let table = match txn.open_table(EVENTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, Hash::ZERO)),
        Err(e) => return Err(LogError::storage("open events table", e)),
    };
    match table
        .last()
        .map_err(|e| LogError::storage("read head", e))?
    {
        None => Ok((0, Hash::ZERO)),
        Some((k, v)) => {
            let seq = k.value();
            Ok((seq, StoredEvent::decode_row(seq, v.value())?.hash))
        }
    }
}

/// Every checkpoint, in seq order.
pub(crate) fn read_checkpoints(txn: &redb::ReadTransaction) -> Result<Vec<Checkpoint>, LogError> {
    read_checkpoints_from(txn, 0, usize::MAX)
}

/// Up to `limit` checkpoints at seq `from` or later, in seq order, each checked to name the
/// seq it is stored under.
pub(crate) fn read_checkpoints_from(
    txn: &redb::ReadTransaction,
    from: u64,
    limit: usize,
) -> Result<Vec<Checkpoint>, LogError> {
    let mut out = Vec::new();
    for (at, bytes) in read_checkpoint_rows_from(txn, from, limit)? {
        out.push(checked_checkpoint(at, &bytes)?);
    }
    Ok(out)
}

/// The checkpoint stored at `at`, which must name that seq.
fn checked_checkpoint(at: u64, bytes: &[u8]) -> Result<Checkpoint, LogError> {
    let cp = Checkpoint::from_bytes(bytes).map_err(|e| LogError::Corrupt {
        seq: at,
        what: format!("checkpoint: {e}"),
    })?;
    if cp.seq.get() != at {
        return Err(LogError::Corrupt {
            seq: at,
            what: format!("checkpoint stored at {at} names seq {}", cp.seq),
        });
    }
    Ok(cp)
}

/// The checkpoint with the highest seq, checked to name the seq it is stored under.
pub(crate) fn read_last_checkpoint(
    txn: &redb::ReadTransaction,
) -> Result<Option<Checkpoint>, LogError> {
    let table = match txn.open_table(CHECKPOINTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(LogError::storage("open checkpoints table", e)),
    };
    let Some((k, v)) = table
        .last()
        .map_err(|e| LogError::storage("read checkpoints", e))?
    else {
        return Ok(None);
    };
    checked_checkpoint(k.value(), v.value()).map(Some)
}

/// Every checkpoint row as stored, `(key, value)` in key order, unchecked.
pub(crate) fn read_checkpoint_rows(
    txn: &redb::ReadTransaction,
) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    read_checkpoint_rows_from(txn, 0, usize::MAX)
}

/// Up to `limit` checkpoint rows from key `from` on, as stored, unchecked.
fn read_checkpoint_rows_from(
    txn: &redb::ReadTransaction,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let table = match txn.open_table(CHECKPOINTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(LogError::storage("open checkpoints table", e)),
    };
    let mut out = Vec::new();
    for row in table
        .range(from..)
        .map_err(|e| LogError::storage("read checkpoints", e))?
        .take(limit)
    {
        let (k, v) = row.map_err(|e| LogError::storage("read checkpoints", e))?;
        out.push((k.value(), v.value().to_vec()));
    }
    Ok(out)
}

/// A `meta` value, if present.
pub(crate) fn read_meta(
    txn: &redb::ReadTransaction,
    name: &str,
) -> Result<Option<Vec<u8>>, LogError> {
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(LogError::storage("open meta table", e)),
    };
    Ok(table
        .get(name)
        .map_err(|e| LogError::storage("read meta", e))?
        .map(|v| v.value().to_vec()))
}

/// The log id from `meta`.
pub(crate) fn read_log_id(txn: &redb::ReadTransaction) -> Result<Option<LogId>, LogError> {
    match read_meta(txn, META_LOG_ID)? {
        None => Ok(None),
        Some(b) => {
            let arr: [u8; 16] = b.as_slice().try_into().map_err(|_| LogError::Corrupt {
                seq: 0,
                what: "log id is not 16 bytes".into(),
            })?;
            Ok(Some(LogId(arr)))
        }
    }
}

/// The durable relay cursor (0 = nothing published yet).
pub(crate) fn read_relay_cursor(txn: &redb::ReadTransaction) -> Result<u64, LogError> {
    match read_meta(txn, META_RELAY_CURSOR)? {
        None => Ok(0),
        Some(b) => {
            let arr: [u8; 8] = b.as_slice().try_into().map_err(|_| LogError::Corrupt {
                seq: 0,
                what: "relay cursor is not 8 bytes".into(),
            })?;
            Ok(u64::from_le_bytes(arr))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_event_id_agrees_with_event_id() {
        let log = LogId([7; 16]);
        for n in [1u64, 2, 1_000_000] {
            let seq = Seq::new(n).expect("nonzero");
            assert!(is_event_id(&event_id(&log, seq), &log, seq));
            let next = Seq::new(n + 1).expect("nonzero");
            assert!(!is_event_id(&event_id(&log, next), &log, seq));
            assert!(!is_event_id(&event_id(&LogId([8; 16]), seq), &log, seq));
        }
    }
}

//! Snapshots of what the writer derives from the events (ADR 008): the aggregate's state, every
//! stream's version and the chain position `(seq, hash)` they describe, so that opening a log
//! folds only the events after the newest one instead of every event from seq 1.
//!
//! A snapshot is a row of the `snapshots` table, keyed by its seq, written in the transaction
//! that brings the head to that seq (a checkpoint's, or an import's), so it is exactly the state
//! the file holds at that seq. At most [`KEPT`] are kept. Its bytes:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | [`SNAPSHOT_FORMAT`] (u32 LE) |
//! | 32 | blake3 keyed hash of everything after it, under a key derived from the log's signing key |
//! | 8 + 32 | seq (u64 LE) and chain hash of the event it describes |
//! | 4 + n | the aggregate's `SNAPSHOT_FORMAT` (length u32 LE, UTF-8) |
//! | 8 + … | stream versions: count (u64 LE), then each: id length (u32 LE), id, version (u64 LE) |
//! | rest | the aggregate's [`Aggregate::snapshot`] bytes |
//!
//! The keyed hash is the checksum: a flipped bit, a truncated row or a snapshot made by anyone
//! without the signing key fails it. Nothing in a snapshot is trusted before it and the checks
//! of [`crate::writer`]'s open pass; any failure there means "fold from seq 1 instead".

use std::collections::HashMap;

use authkeys_events::{Hash, StreamId};
use ed25519_dalek::SigningKey;
use redb::{ReadableTable, TableDefinition};

use crate::store::META;
use crate::{Aggregate, Head, LogError};

/// `seq` → snapshot bytes.
pub(crate) const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

/// The layout above; a snapshot of another is ignored (and the log folded from seq 1).
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;

/// How many snapshots the file keeps: the newest, and one before it in case the newest cannot
/// be used (e.g. a standby's, not yet covered by a checkpoint).
pub(crate) const KEPT: usize = 2;

/// The `meta` row that lists the stored snapshots' seqs (u64 LE each, oldest first), so that an
/// open finds the newest without reading the others' pages.
const META_SNAPSHOTS: &str = "snapshots";

/// Where the payload (what the keyed hash covers) starts.
const PAYLOAD_AT: usize = 4 + 32;

/// The key of the snapshots' keyed hash: derived from the signing key, so only the holder of the
/// log's key makes a snapshot the log restores.
pub(crate) fn mac_key(signing: &SigningKey) -> [u8; 32] {
    blake3::derive_key("authkeys log snapshot v1", &signing.to_bytes())
}

/// What a snapshot holds once decoded.
pub(crate) struct Restored<S> {
    /// The event it describes.
    pub(crate) head: Head,
    /// The aggregate's state at `head`.
    pub(crate) state: S,
    /// Every stream's version at `head`.
    pub(crate) streams: HashMap<StreamId, u64>,
}

/// The bytes of a snapshot of `state` and `streams` at `head`. `S` must keep snapshots.
pub(crate) fn encode<S: Aggregate>(
    key: &[u8; 32],
    head: Head,
    state: &S,
    streams: &HashMap<StreamId, u64>,
) -> Vec<u8> {
    encode_parts(
        key,
        head,
        S::SNAPSHOT_FORMAT.unwrap_or_default(),
        &state.snapshot(),
        streams,
    )
}

/// [`encode`] of an aggregate already encoded (`aggregate`, in the format named `format`).
pub(crate) fn encode_parts(
    key: &[u8; 32],
    head: Head,
    format: &str,
    aggregate: &[u8],
    streams: &HashMap<StreamId, u64>,
) -> Vec<u8> {
    let streams_len: usize = streams.keys().map(|s| 12 + s.as_str().len()).sum();
    let mut out =
        Vec::with_capacity(PAYLOAD_AT + 40 + 4 + format.len() + 8 + streams_len + aggregate.len());
    out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&head.seq.to_le_bytes());
    out.extend_from_slice(&head.hash.0);
    put_bytes(&mut out, format.as_bytes());
    out.extend_from_slice(&(streams.len() as u64).to_le_bytes());
    for (stream, version) in streams {
        put_bytes(&mut out, stream.as_str().as_bytes());
        out.extend_from_slice(&version.to_le_bytes());
    }
    out.extend_from_slice(aggregate);
    let mac = blake3::keyed_hash(key, &out[PAYLOAD_AT..]);
    out[4..PAYLOAD_AT].copy_from_slice(mac.as_bytes());
    out
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a stream id or format name is short");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// The snapshot `bytes` stored under `key_seq`, or why it cannot be used. Checks the format, the
/// keyed hash, the layout and the aggregate's format, and restores the state; whether it agrees
/// with the log is for the caller to check.
pub(crate) fn decode<S: Aggregate>(
    key: &[u8; 32],
    key_seq: u64,
    bytes: &[u8],
) -> Result<Restored<S>, String> {
    let Some(wanted) = S::SNAPSHOT_FORMAT else {
        return Err("this aggregate keeps no snapshots".into());
    };
    if bytes.len() < PAYLOAD_AT {
        return Err(format!("{} bytes is too short for a snapshot", bytes.len()));
    }
    let format = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    if format != SNAPSHOT_FORMAT {
        return Err(format!(
            "snapshot format {format}, this build reads format {SNAPSHOT_FORMAT}"
        ));
    }
    let mac = blake3::keyed_hash(key, &bytes[PAYLOAD_AT..]);
    // Constant time: the comparison says nothing about the key.
    if mac != blake3::Hash::from_bytes(bytes[4..PAYLOAD_AT].try_into().expect("32 bytes")) {
        return Err(
            "the checksum does not match its bytes (damaged, or not made with this log's key)"
                .into(),
        );
    }
    let mut r = Reader(&bytes[PAYLOAD_AT..]);
    let seq = r.u64()?;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(r.take(32)?);
    if seq != key_seq {
        return Err(format!(
            "stored under seq {key_seq} but describes seq {seq}"
        ));
    }
    let aggregate_format = std::str::from_utf8(r.bytes()?)
        .map_err(|_| "the aggregate's format name is not UTF-8".to_owned())?;
    if aggregate_format != wanted {
        return Err(format!(
            "the state is in format {aggregate_format:?}, this build folds {wanted:?}"
        ));
    }
    let count = r.u64()?;
    // Each entry takes at least 12 bytes: never reserve more than the bytes can hold.
    let mut streams = HashMap::with_capacity(
        usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(r.0.len() / 12),
    );
    for _ in 0..count {
        let id =
            std::str::from_utf8(r.bytes()?).map_err(|_| "a stream id is not UTF-8".to_owned())?;
        let stream = StreamId::parse(id).map_err(|e| format!("stream id {id:?}: {e}"))?;
        let version = r.u64()?;
        streams.insert(stream, version);
    }
    let state = S::restore(r.0)?;
    Ok(Restored {
        head: Head {
            seq,
            hash: Hash(hash),
        },
        state,
        streams,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the snapshot ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(len as usize)
    }
}

/// Stores `bytes` as the snapshot at `seq` in `txn` and drops all but the [`KEPT`] newest.
pub(crate) fn store(txn: &redb::WriteTransaction, seq: u64, bytes: &[u8]) -> Result<(), LogError> {
    let mut table = txn
        .open_table(SNAPSHOTS)
        .map_err(|e| LogError::storage("open snapshots", e))?;
    let mut meta = txn
        .open_table(META)
        .map_err(|e| LogError::storage("open meta", e))?;
    table
        .insert(seq, bytes)
        .map_err(|e| LogError::storage("write snapshot", e))?;
    // The index, not the rows: reading a row's key reads its (large) page.
    let index = meta
        .get(META_SNAPSHOTS)
        .map_err(|e| LogError::storage("read the snapshots' index", e))?
        .map(|v| v.value().to_vec());
    let mut seqs: Vec<u64> = match index {
        Some(index) => index_seqs(&index),
        None => table_seqs(&table)?,
    };
    seqs.push(seq);
    seqs.sort_unstable();
    seqs.dedup();
    let keep = seqs.len().saturating_sub(KEPT);
    for old in &seqs[..keep] {
        table
            .remove(*old)
            .map_err(|e| LogError::storage("drop an old snapshot", e))?;
    }
    let index: Vec<u8> = seqs[keep..].iter().flat_map(|s| s.to_le_bytes()).collect();
    meta.insert(META_SNAPSHOTS, index.as_slice())
        .map_err(|e| LogError::storage("write the snapshots' index", e))?;
    Ok(())
}

/// The seqs of the stored snapshots, newest first: from their index in `meta` (a seq it names
/// whose row is gone is only a snapshot that cannot be used), or the table's keys without one.
pub(crate) fn stored_seqs(txn: &redb::ReadTransaction) -> Result<Vec<u64>, LogError> {
    if let Some(index) = crate::store::read_meta(txn, META_SNAPSHOTS)? {
        let mut seqs = index_seqs(&index);
        seqs.reverse();
        return Ok(seqs);
    }
    let table = match txn.open_table(SNAPSHOTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(LogError::storage("open snapshots table", e)),
    };
    let mut seqs = table_seqs(&table)?;
    seqs.reverse();
    Ok(seqs)
}

/// Decodes the snapshot stored at `seq` in place (no copy of its bytes).
pub(crate) fn load<S: Aggregate>(
    txn: &redb::ReadTransaction,
    key: &[u8; 32],
    seq: u64,
) -> Result<Restored<S>, String> {
    let table = txn
        .open_table(SNAPSHOTS)
        .map_err(|e| format!("open snapshots table: {e}"))?;
    let row = table
        .get(seq)
        .map_err(|e| format!("read snapshot: {e}"))?
        .ok_or_else(|| "gone".to_owned())?;
    decode(key, seq, row.value())
}

/// The seqs the snapshots' index in `meta` names, in its order (oldest first).
fn index_seqs(index: &[u8]) -> Vec<u64> {
    index
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// The seqs of the snapshot rows, oldest first (for a file written before the index).
fn table_seqs(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<u64>, LogError> {
    let read = |e| LogError::storage("read snapshots", e);
    let mut seqs = Vec::new();
    for row in table.iter().map_err(read)? {
        seqs.push(row.map_err(read)?.0.value());
    }
    Ok(seqs)
}

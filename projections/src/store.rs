//! One redb file per view: its rows and its checkpoint, always in the same transaction.
//!
//! Tables: `rows` (stored key → row bytes, as the view encodes them) and `meta`: `format`
//! (`FORMAT_VERSION` LE), `view` (the view's name, so a file cannot be opened as another view)
//! and `checkpoint` (last applied seq as u64 LE ‖ its 32-byte hash ‖ blake3 of those 40 bytes,
//! checked when read). A commit writes the changed rows and the new checkpoint together, so
//! after any crash the rows are exactly those of the checkpoint's seq.
//!
//! A rebuild replaces the `rows` table and the checkpoint in one transaction
//! ([`ViewStore::replace_all`]): readers of the file see the old view or the new one, never a mix.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use authkeys_events::Hash;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::views::{RowChange, View};

const ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("rows");
/// Format version, name and checkpoint of a view or schedule file.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// 3: devices carry addresses (R17), users their creation time. 4: tokens their issue and
/// revocation times, users their suspension. 5: keys lose `signedBy`, devices gain it (R04).
const FORMAT_VERSION: u32 = 5;

/// The position a view has reached: the last applied event's seq and hash (0 and zero before
/// the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Last applied seq.
    pub seq: u64,
    /// Its hash: the next event's `prevHash` must equal it.
    pub hash: Hash,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position {
        seq: 0,
        hash: Hash::ZERO,
    };

    pub(crate) fn encode(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..40].copy_from_slice(&self.hash.0);
        let sum = blake3::hash(&out[..40]);
        out[40..].copy_from_slice(sum.as_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        if b.len() != 72 || blake3::hash(&b[..40]).as_bytes() != &b[40..] {
            return Err(StoreError::Corrupt("checkpoint fails its checksum".into()));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[8..40]);
        Ok(Self {
            seq: u64::from_le_bytes(seq),
            hash: Hash(hash),
        })
    }
}

/// Why the view's file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (or a crashed task not yet gone) holds the file.
    #[error("the view file is open elsewhere")]
    Busy,
    /// redb failed (IO, disk full, …).
    #[error("view store: {0}")]
    Redb(String),
    /// The file is not a view file of this version and name, or its rows do not load. A rebuild
    /// (delete the file) fixes it.
    #[error("view store is unusable: {0}")]
    Corrupt(String),
}

/// How long a store derived from the log (a view, the timers' schedule, the webhooks' queue)
/// may hold commits that are not yet on disk. See [`DurablePace`].
pub const DURABLE_INTERVAL: Duration = Duration::from_secs(1);

/// Chooses the durability of a derived store's commits: one `fsync`ed commit at most every
/// [`DURABLE_INTERVAL`], the others written without waiting for the disk.
///
/// A derived store needs no commit of its own to survive a crash: its rows and its checkpoint
/// are always committed together, so after a crash the file is exactly as it was at its last
/// durable commit, and the worker goes on from that checkpoint, re-folding from the log (the
/// record) what the lost commits held. The stream consumer is re-created from the checkpoint at
/// every start, so what was acked meanwhile does not matter. Under load this saves two `fsync`s
/// per chunk per store, which were most of what the views cost beside the command service.
/// redb makes the last commits durable when the file is closed, so a graceful stop loses nothing.
#[derive(Debug, Default)]
pub struct DurablePace(Mutex<Option<Instant>>);

impl DurablePace {
    /// The durability for the next commit.
    pub fn next(&self) -> Durability {
        let mut last_durable = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if last_durable.is_some_and(|t| t.elapsed() < DURABLE_INTERVAL) {
            Durability::None
        } else {
            *last_durable = Some(Instant::now());
            Durability::Immediate
        }
    }
}

pub(crate) fn redb_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(e.to_string())
}

/// Creates the `meta` table of a new file (format version, the name of what it holds, the start
/// checkpoint), or checks that an existing file's format and name are these.
pub(crate) fn init_meta(txn: &redb::WriteTransaction, name: &str) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(redb_err)?;
    let format = meta
        .get("format")
        .map_err(redb_err)?
        .map(|v| v.value().to_vec());
    match format {
        None => {
            meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())
                .map_err(redb_err)?;
            meta.insert("view", name.as_bytes()).map_err(redb_err)?;
            meta.insert("checkpoint", Position::START.encode().as_slice())
                .map_err(redb_err)?;
        }
        Some(f) if f == FORMAT_VERSION.to_le_bytes() => {
            let stored = meta
                .get("view")
                .map_err(redb_err)?
                .map(|v| v.value().to_vec());
            if stored.as_deref() != Some(name.as_bytes()) {
                return Err(StoreError::Corrupt(format!(
                    "the file holds another view than {name:?}"
                )));
            }
        }
        Some(_) => {
            return Err(StoreError::Corrupt(
                "the file has another format version".into(),
            ));
        }
    }
    Ok(())
}

/// The checkpoint in `meta`.
pub(crate) fn read_checkpoint(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Position, StoreError> {
    let cp = meta
        .get("checkpoint")
        .map_err(redb_err)?
        .ok_or_else(|| StoreError::Corrupt("no checkpoint".into()))?;
    Position::decode(cp.value())
}

/// A view's redb file.
#[derive(Debug)]
pub struct ViewStore {
    db: Database,
    pace: DurablePace,
}

impl ViewStore {
    /// Opens or creates `path` for the view `name`.
    pub fn open(path: &Path, name: &str) -> Result<Self, StoreError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Busy),
            Err(e) => return Err(redb_err(e)),
        };
        let store = Self {
            db,
            pace: DurablePace::default(),
        };
        let txn = store.db.begin_write().map_err(redb_err)?;
        {
            init_meta(&txn, name)?;
            txn.open_table(ROWS).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(store)
    }

    /// The view as stored, and its checkpoint.
    pub fn load<V: View>(&self) -> Result<(V, Position), StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let meta = txn.open_table(META).map_err(redb_err)?;
        let cp = read_checkpoint(&meta)?;
        let rows = txn.open_table(ROWS).map_err(redb_err)?;
        let mut view = V::default();
        for row in rows.iter().map_err(redb_err)? {
            let (k, v) = row.map_err(redb_err)?;
            view.load_row(k.value(), v.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        Ok((view, cp))
    }

    /// Writes `changes` and `checkpoint` in one transaction (durable at the [`DurablePace`]).
    pub fn commit(&self, changes: &[RowChange], checkpoint: Position) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(self.pace.next()).map_err(redb_err)?;
        {
            let mut rows = txn.open_table(ROWS).map_err(redb_err)?;
            for c in changes {
                match &c.value {
                    Some(v) => {
                        rows.insert(c.key.as_str(), v.as_slice())
                            .map_err(redb_err)?;
                    }
                    None => {
                        rows.remove(c.key.as_str()).map_err(redb_err)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", checkpoint.encode().as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }

    /// [`ViewStore::replace_all`] with `view`'s rows, each written as it is encoded (no list of
    /// every row first: a third of the time of writing a rebuilt keys view).
    pub fn replace_with_view<V: View>(
        &self,
        view: &V,
        checkpoint: Position,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb_err)?;
        txn.delete_table(ROWS).map_err(redb_err)?;
        {
            let mut table = txn.open_table(ROWS).map_err(redb_err)?;
            let mut failed = None;
            view.for_each_row(&mut |key, value| {
                if failed.is_none()
                    && let Err(e) = table.insert(key, value)
                {
                    failed = Some(redb_err(e));
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", checkpoint.encode().as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }

    /// Replaces every row and the checkpoint in one durable transaction (a rebuild's swap).
    pub fn replace_all(&self, rows: &[RowChange], checkpoint: Position) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb_err)?;
        txn.delete_table(ROWS).map_err(redb_err)?;
        {
            let mut table = txn.open_table(ROWS).map_err(redb_err)?;
            for c in rows {
                if let Some(v) = &c.value {
                    table
                        .insert(c.key.as_str(), v.as_slice())
                        .map_err(redb_err)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", checkpoint.encode().as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::MachinesView;

    #[test]
    fn commits_are_durable_at_most_every_interval_and_all_of_them_at_a_graceful_stop() {
        let pace = DurablePace::default();
        assert!(
            matches!(pace.next(), Durability::Immediate),
            "the first commit"
        );
        assert!(
            matches!(pace.next(), Durability::None),
            "within the interval"
        );
        assert!(matches!(pace.next(), Durability::None));

        // redb makes commits that were not durable durable when the file is closed.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("view-machines.redb");
        let at = |seq| Position {
            seq,
            hash: Hash([u8::try_from(seq).expect("small"); 32]),
        };
        let store = ViewStore::open(&path, "machines").expect("opens");
        for seq in 1..=3 {
            store.commit(&[], at(seq)).expect("commits");
        }
        drop(store);
        let store = ViewStore::open(&path, "machines").expect("reopens");
        let (_, cp): (MachinesView, _) = store.load().expect("loads");
        assert_eq!(cp, at(3), "the last commit survived the stop");
    }

    #[test]
    fn rows_and_checkpoint_round_trip_and_files_keep_their_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("view-machines.redb");
        let store = ViewStore::open(&path, "machines").expect("opens");
        let (v, cp): (MachinesView, _) = store.load().expect("loads");
        assert!(v.is_empty());
        assert_eq!(cp, Position::START);
        let cp = Position {
            seq: 7,
            hash: Hash([3; 32]),
        };
        store.commit(&[], cp).expect("commits");
        assert!(matches!(
            ViewStore::open(&path, "machines"),
            Err(StoreError::Busy)
        ));
        drop(store);
        let store = ViewStore::open(&path, "machines").expect("reopens");
        assert_eq!(store.load::<MachinesView>().expect("loads").1, cp);
        store.replace_all(&[], Position::START).expect("replaces");
        assert_eq!(
            store.load::<MachinesView>().expect("loads").1,
            Position::START
        );
        drop(store);
        assert!(matches!(
            ViewStore::open(&path, "keys"),
            Err(StoreError::Corrupt(_))
        ));
    }
}

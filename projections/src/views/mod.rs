//! Pure views: each folds envelopes into rows with `apply`, tracks which rows it touched, loads
//! itself back from stored rows, and hashes its rows for convergence checks.
//!
//! A view keeps its rows in memory ([`Table`]: a `BTreeMap` per row kind, so iteration is in key
//! order) and answers queries from there; the worker persists the rows a batch touched, with the
//! checkpoint, in one redb transaction. Row values are the row structs as JSON: deterministic
//! (struct field order), readable with `redb` tools, and validated again when loaded (every id
//! is a parsed domain type).
//!
//! Invariant: nothing here does IO or reads a clock. Queries that depend on time (a key's
//! `invalid`, the retention period of R12) take `now` as an argument.

pub mod identity;
pub mod keys;
pub mod machines;

use std::collections::{BTreeMap, BTreeSet};

use authkeys_events::{Envelope, Hash};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use identity::IdentityView;
pub use keys::KeysView;
pub use machines::MachinesView;

/// One row a batch changed: its new value, or `None` if it was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// The stored key, `<kind>/<id>/…`.
    pub key: String,
    /// The row as stored, or `None` for a deleted row.
    pub value: Option<Vec<u8>>,
}

/// Why a stored row could not be loaded: the file was written by another version or damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {key:?}: {reason}")]
pub struct RowError {
    /// The stored key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// A read-optimized projection of the log.
pub trait View: Default + Send + Sync + 'static {
    /// Names the view's file (`view-<NAME>.redb`) and its consumer (`view-<NAME>`).
    const NAME: &'static str;

    /// Folds one event in. Pure and infallible: an event naming something the view does not
    /// know (which a verified log never holds) changes nothing.
    fn apply(&mut self, env: &Envelope);

    /// The rows touched since the last call, each with its current value; clears the tracking.
    fn take_changes(&mut self) -> Vec<RowChange>;

    /// Loads one stored row (as [`View::take_changes`] produced it). Loaded rows are not
    /// tracked as changed.
    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError>;

    /// Calls `f` for every row, as it would be stored, in a fixed order (key order per kind).
    fn for_each_row(&self, f: &mut dyn FnMut(&str, &[u8]));

    /// blake3 over every row (length-prefixed key and value, little-endian `u32` lengths), in
    /// [`View::for_each_row`] order: equal for two views exactly when their rows are equal.
    fn state_hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        self.for_each_row(&mut |k, v| {
            h.update(&len32(k.len()).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&len32(v.len()).to_le_bytes());
            h.update(v);
        });
        Hash(*h.finalize().as_bytes())
    }

    /// Every row as it would be stored, for writing a rebuilt view in one go.
    fn all_rows(&self) -> Vec<RowChange> {
        let mut out = Vec::new();
        self.for_each_row(&mut |k, v| {
            out.push(RowChange {
                key: k.to_owned(),
                value: Some(v.to_vec()),
            });
        });
        out
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One kind of row: `prefix` + key → `T`, with the keys touched since the last
/// [`Table::drain_changes`].
#[derive(Debug, Clone)]
pub struct Table<T> {
    prefix: &'static str,
    rows: BTreeMap<String, T>,
    dirty: BTreeSet<String>,
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// An empty table whose stored keys start with `prefix` (e.g. `device/`).
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// The row at `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.rows.get(key)
    }

    /// The row at `key`, for changing it (marks it changed).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut T> {
        let row = self.rows.get_mut(key)?;
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
        Some(row)
    }

    /// Inserts or replaces the row at `key`.
    pub fn insert(&mut self, key: String, row: T) {
        self.dirty.insert(key.clone());
        self.rows.insert(key, row);
    }

    /// Removes the row at `key`, if any.
    pub fn remove(&mut self, key: &str) -> Option<T> {
        let row = self.rows.remove(key)?;
        self.dirty.insert(key.to_owned());
        Some(row)
    }

    /// The rows whose key starts with `prefix`, in key order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a T)> {
        self.rows
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// Rows under `prefix` whose key is after `prefix + after` (all of them when `after` is
    /// `None`), in key order: pages of a listing.
    pub fn with_prefix_after<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a T)> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(format!("{prefix}{a}")),
            None => std::ops::Bound::Included(prefix.to_owned()),
        };
        self.rows
            .range::<String, _>((start, std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends the changed rows to `out` and forgets them.
    pub fn drain_changes(&mut self, out: &mut Vec<RowChange>) {
        for key in std::mem::take(&mut self.dirty) {
            let value = self.rows.get(&key).map(encode);
            out.push(RowChange {
                key: format!("{}{key}", self.prefix),
                value,
            });
        }
    }

    /// Loads `stored_key` if it belongs to this table: `Ok(None)` if not, `Ok(Some(key))` with
    /// the key without prefix when loaded.
    pub fn load(&mut self, stored_key: &str, value: &[u8]) -> Result<Option<String>, RowError> {
        let Some(key) = stored_key.strip_prefix(self.prefix) else {
            return Ok(None);
        };
        let row: T = serde_json::from_slice(value).map_err(|e| RowError {
            key: stored_key.to_owned(),
            reason: e.to_string(),
        })?;
        self.rows.insert(key.to_owned(), row);
        Ok(Some(key.to_owned()))
    }

    /// Calls `f` with every row as stored, in key order.
    pub fn for_each(&self, f: &mut dyn FnMut(&str, &[u8])) {
        let mut key = String::new();
        for (k, row) in &self.rows {
            key.clear();
            key.push_str(self.prefix);
            key.push_str(k);
            f(&key, &encode(row));
        }
    }
}

fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    serde_json::to_vec(row).expect("view rows hold only JSON-serializable values")
}

/// `a/b`: the row key of something inside a tailnet (ids never contain `/`).
pub(crate) fn key2(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + b.len() + 1);
    s.push_str(a);
    s.push('/');
    s.push_str(b);
    s
}

/// An unknown row kind is an error: the file belongs to another version of the view.
pub(crate) fn unknown_row(key: &str) -> RowError {
    RowError {
        key: key.to_owned(),
        reason: "no row kind of this view has this prefix".to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Envelopes for the views' unit tests (views do not check the chain, so hashes are zero).
    use authkeys_events::{
        Actor, CommandId, Envelope, Event, EventId, Hash, Seq, TailnetId, Timestamp,
    };

    /// Builds envelopes with increasing seqs, one second apart from `T0`.
    #[derive(Debug)]
    pub struct Given {
        pub seq: u64,
        pub tailnet: TailnetId,
    }

    pub const T0_MS: i64 = 1_790_000_000_000;

    pub fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_ms(T0_MS + secs * 1000).expect("in range")
    }

    impl Given {
        pub fn new(tailnet: &str) -> Self {
            Self {
                seq: 0,
                tailnet: TailnetId::parse(tailnet).expect("valid"),
            }
        }

        /// The next envelope, in this tailnet, at `at(secs)`.
        pub fn env(&mut self, secs: i64, event: impl Into<Event>) -> Envelope {
            self.seq += 1;
            let event = event.into();
            Envelope {
                seq: Seq::new(self.seq).expect("nonzero"),
                id: EventId::parse(format!("e{:032x}", self.seq)).expect("valid"),
                stream: event.stream(&self.tailnet),
                event,
                tailnet: self.tailnet.clone(),
                stream_version: 1,
                time: at(secs),
                actor: Actor::system("test"),
                command_id: CommandId::parse("c-1").expect("valid"),
                prev_hash: Hash::ZERO,
                hash: Hash::ZERO,
            }
        }
    }

    /// Persists `view`'s changes into `stored`, as the worker does, and reloads a fresh view from
    /// them: the reloaded view must hash like the original.
    pub fn round_trip<V: super::View>(
        view: &mut V,
        stored: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) -> V {
        for c in view.take_changes() {
            match c.value {
                Some(v) => {
                    stored.insert(c.key, v);
                }
                None => {
                    stored.remove(&c.key);
                }
            }
        }
        let mut fresh = V::default();
        for (k, v) in stored.iter() {
            fresh.load_row(k, v).expect("stored rows load");
        }
        assert!(fresh.take_changes().is_empty(), "loading is not a change");
        assert_eq!(
            fresh.state_hash(),
            view.state_hash(),
            "reloaded view differs"
        );
        fresh
    }
}

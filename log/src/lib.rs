//! The event log: the single source of truth of authkeys, one redb file.
//!
//! - [`Log`]: the handle services use. Appends go to one writer thread that **group-commits**:
//!   every command waiting when a transaction starts is decided, appended and fsynced in that one
//!   transaction, and each caller gets its own result. A command's `decide` runs inside the
//!   writer against state that already includes every earlier command of the same batch, so there
//!   is no read-then-write gap (R01, R16).
//! - [`store`]: the tables and the encoding of their rows.
//! - [`writer`]: the writer thread (decide, expected-version check, idempotency, hash chain,
//!   checkpoints, relay cursor).
//! - [`verify`]: recomputes the chain from seq 1 and checks every checkpoint; [`LogReader`] opens
//!   the file read-only, also while a service writes it.
//! - `snapshot`: the state, stream versions and chain position the writer saves with a
//!   checkpoint every [`LogConfig::snapshot_events_max`] events and at close, so that an open
//!   verifies and folds only the events after the newest one (ADR 008).
//! - [`keys`]: the signing-key file beside the log.
//! - [`fixtures`]: sample events for tests, the benchmark and the torture tool.
//!
//! Invariant: nothing here knows NATS, HTTP or the domain's rules. The domain enters only as the
//! [`Aggregate`] the writer folds events into and the `decide` closure each command carries.

pub mod fixtures;
pub mod keys;
mod snapshot;
pub mod store;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authkeys_events::{Actor, CommandId, Envelope, Hash, LogId, Seq, StreamId, Timestamp};
use ed25519_dalek::VerifyingKey;
use redb::ReadableDatabase;
use tokio::sync::{oneshot, watch};

pub use authkeys_events::decision::{Aggregate, Clock, Decision, Expected, Proposed, system_clock};
pub use store::{CommandRecord, StoredEvent};
pub use verify::{LogReader, Snapshot, VerifyReport};

/// How the log is set up. Every limit is named, unit last.
#[derive(Clone)]
pub struct LogConfig {
    /// The redb file.
    pub path: PathBuf,
    /// The ed25519 signing key of checkpoints; created 0600 with a new log.
    pub signing_key_path: PathBuf,
    /// Most commands decided in one transaction.
    pub batch_commands_max: usize,
    /// Commands waiting for the writer before `append` waits for room.
    pub queue_commands_max: usize,
    /// Most events one command may append.
    pub command_events_max: usize,
    /// A checkpoint is written once this many events are not covered by one…
    pub checkpoint_events_max: u64,
    /// …or once the oldest uncovered event is this old.
    pub checkpoint_interval: Duration,
    /// Longest a relay-cursor update waits to be written when no events are committed.
    pub relay_cursor_flush_interval: Duration,
    /// A snapshot of the state (when the aggregate keeps them, `Aggregate::SNAPSHOT_FORMAT`) is
    /// written with the first checkpoint (or import) once this many events followed the last
    /// one, and at close. An open then verifies and folds only the events after the newest
    /// snapshot: at most about this many after a crash, none after a clean close (ADR 008).
    /// Each costs the writer the time to encode the state (see [`LogStats`]).
    pub snapshot_events_max: u64,
    /// The time source.
    pub clock: Clock,
    /// Secret key files of the log's owner that must stay with this log, as the signing key
    /// does: a digest of each is recorded in the log when it is created (or at the first open
    /// that names it), and a later open with another key under that name is refused.
    pub bound_keys: Vec<BoundKey>,
    /// `Some` for a copy of another log (a standby's, SPEC §7): a new file takes this id, and
    /// the signing key must already be here (the copy's checkpoints verify under the same key);
    /// an existing file with another id is refused. `None`: a new log draws its own id.
    pub log_id: Option<LogId>,
}

/// A key file bound to a log (see [`LogConfig::bound_keys`]). The log stores only `digest`,
/// which must be a one-way derivation of the key (e.g. `blake3::derive_key`), never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct BoundKey {
    /// What the key is, e.g. `hashing`; names its record in the log.
    pub name: String,
    /// Its file, for messages.
    pub path: PathBuf,
    /// A one-way digest of the key.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundKey")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("path", &self.path)
            .field("signing_key_path", &self.signing_key_path)
            .field("batch_commands_max", &self.batch_commands_max)
            .field("queue_commands_max", &self.queue_commands_max)
            .field("checkpoint_events_max", &self.checkpoint_events_max)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("snapshot_events_max", &self.snapshot_events_max)
            .field("bound_keys", &self.bound_keys)
            .field("log_id", &self.log_id)
            .finish_non_exhaustive()
    }
}

impl LogConfig {
    /// The standard layout in a data directory: `log.redb` and `signing.key`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("log.redb"),
            signing_key_path: dir.join("signing.key"),
            batch_commands_max: 1024,
            queue_commands_max: 8192,
            command_events_max: 64,
            checkpoint_events_max: 1024,
            checkpoint_interval: Duration::from_secs(5),
            relay_cursor_flush_interval: Duration::from_millis(200),
            snapshot_events_max: 100_000,
            clock: system_clock(),
            bound_keys: Vec::new(),
            log_id: None,
        }
    }
}

/// The decision a command carries: run in the writer against the current state and time.
pub type Decide<S> =
    Box<dyn FnOnce(&S, Timestamp) -> Result<Decision, <S as Aggregate>::Rejection> + Send>;

/// One command for the log.
pub struct Append<S: Aggregate> {
    /// Whose command ids these are: a tailnet id for admin commands, a registrar's name for
    /// registrations. Idempotency is per `(scope, command_id)`.
    pub scope: String,
    /// Idempotency key, unique within `scope`.
    pub command_id: CommandId,
    /// Who is acting.
    pub actor: Actor,
    /// A digest of what the command says; a retry with the same id but another fingerprint is
    /// refused instead of answered with the first result.
    pub fingerprint: [u8; 32],
    /// The decision.
    pub decide: Decide<S>,
    /// What the caller wants to know of the state right after this command's events (see
    /// [`Answer`]); `None` for nothing.
    pub answer: Option<Answer<S>>,
}

/// Read by the writer from the state right after a command's own events are applied (before any
/// later command's), inside the batch: the reply it feeds needs no second trip through the
/// writer's queue ([`Log::query`]). Its value is [`Committed::answer`]. A retry answered from the
/// first result has none (the state has moved on since); ask [`Log::query`] then.
pub type Answer<S> = Box<dyn FnOnce(&S) -> Option<Arc<dyn std::any::Any + Send + Sync>> + Send>;

impl<S: Aggregate> std::fmt::Debug for Append<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("scope", &self.scope)
            .field("command_id", &self.command_id)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// A durably committed command.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The events it appended, in order (empty if it decided nothing needed to change).
    pub envelopes: Vec<Envelope>,
    /// True when this is a retry answered from the first result.
    pub replayed: bool,
    /// What the command's [`Append::answer`] read, if it had one and this is not a replay.
    pub answer: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// Events, checkpoints and idempotency records of another copy of this log (a standby following
/// its primary through the stream, SPEC §7), appended by [`Log::import`] after the head.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The next events, in seq order from `head + 1`, each exactly as its primary stored it.
    pub events: Vec<StoredEvent>,
    /// Checkpoints of the primary at seqs this log holds once `events` are in (older ones too).
    pub checkpoints: Vec<authkeys_events::Checkpoint>,
    /// Idempotency records of the commands these events end, so that a retry sent to this copy
    /// once it is primary gets the first result.
    pub commands: Vec<ImportedCommand>,
}

/// The idempotency record of a command committed by another copy of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCommand {
    /// Its scope ([`Append::scope`]).
    pub scope: String,
    /// Its id.
    pub command_id: CommandId,
    /// The first and last seq it wrote.
    pub seqs: std::ops::RangeInclusive<u64>,
    /// Its [`Append::fingerprint`].
    pub fingerprint: [u8; 32],
}

/// Why an append did not commit. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError<R: std::fmt::Debug> {
    /// The command's `decide` refused it (a 400/403/404-class answer of the domain).
    #[error("command rejected: {0:?}")]
    Rejected(R),
    /// A stream was not at the expected version (409).
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the command expected.
        expected: Expected,
        /// What it is.
        actual: u64,
    },
    /// The command id was used before for a different command (409).
    #[error("command id {0} was already used for a different command")]
    IdempotencyMismatch(CommandId),
    /// The command is malformed for the log (too many events, a panic in `decide`) (500).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The log cannot take writes: closed, or a storage failure stopped the writer (503).
    #[error("log unavailable: {0}")]
    Unavailable(String),
}

/// Why the log could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// redb failed.
    #[error("{what}: {source}")]
    Storage {
        /// What was being done.
        what: &'static str,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The stored history is not what was written; `seq` is the first bad position.
    #[error("log corrupt at seq {seq}: {what}")]
    Corrupt {
        /// First bad position (0 for file-level metadata).
        seq: u64,
        /// What is wrong.
        what: String,
    },
    /// The setup is wrong (missing or mismatched key file, unknown format).
    #[error("{0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn storage(what: &'static str, e: impl Into<redb::Error>) -> Self {
        Self::Storage {
            what,
            source: e.into(),
        }
    }

    pub(crate) fn io(what: String, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}

/// The last committed event: `(0, ZERO)` for an empty log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Its seq.
    pub seq: u64,
    /// Its chain hash.
    pub hash: Hash,
}

/// Counters for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Write transactions committed (each one fsync).
    pub transactions: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
    /// Events appended.
    pub events: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Snapshots written (ADR 008).
    pub snapshots: AtomicU64,
    /// Size of the last snapshot, bytes.
    pub snapshot_bytes_last: AtomicU64,
    /// What the last snapshot cost the writer (encode and store, before the commit), µs.
    pub snapshot_micros_last: AtomicU64,
    /// The most any snapshot cost the writer, µs.
    pub snapshot_micros_max: AtomicU64,
}

/// Whether a command's `(scope, command_id)` is looked up and recorded for idempotency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// A retry gets the first result; another command under the same id is refused.
    Recorded,
    /// Decided every time; nothing is looked up or recorded. Only for commands whose `decide`
    /// is its own idempotency: it re-checks the state, so a repeat after success decides
    /// nothing, and no earlier command under the same id — the same one or another one — can
    /// answer for it. A command that decides nothing writes nothing.
    Unrecorded,
}

/// A read of the writer's state and the last event it includes ([`Log::query_at`]).
type QueryFn<S> = Box<dyn FnOnce(&S, Head) + Send>;

enum Msg<S: Aggregate> {
    Append(
        Append<S>,
        oneshot::Sender<Result<Committed, AppendError<S::Rejection>>>,
        Idempotency,
    ),
    RelayCursor(u64),
    Import(Import, oneshot::Sender<Result<Head, LogError>>),
    Query(QueryFn<S>),
    Close,
}

struct Inner<S: Aggregate> {
    tx: flume::Sender<Msg<S>>,
    db: Arc<redb::Database>,
    head: watch::Receiver<Head>,
    log_id: LogId,
    verifying_key: VerifyingKey,
    stats: Arc<LogStats>,
    /// The seq of the snapshot the open restored, if it used one.
    opened_from_snapshot: Option<u64>,
    /// Why the writer stopped taking commands, once a commit failed.
    failure: Arc<Mutex<Option<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A handle to an open log. Cheap to clone; every clone talks to the same writer.
pub struct Log<S: Aggregate> {
    inner: Arc<Inner<S>>,
}

impl<S: Aggregate> Clone for Log<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Aggregate> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("log_id", &self.inner.log_id)
            .field("head", &*self.inner.head.borrow())
            .finish_non_exhaustive()
    }
}

impl<S: Aggregate> Log<S> {
    /// Opens (or creates) the log, verifies it, folds it into `state` (the state before seq 1),
    /// and starts the writer. Blocking: call it before serving, or from `spawn_blocking`.
    ///
    /// When the aggregate keeps snapshots and the newest one checks out against the log (ADR
    /// 008: its checksum under this log's key, the stored event at its seq, a checkpoint of this
    /// log that covers it), the state and stream versions are restored from it and only the
    /// events and checkpoints after it are verified and folded, exactly as a full verification
    /// checks them. Otherwise (none, another format, any disagreement) the whole chain and every
    /// checkpoint are verified and every event folded, with a warning that says why. Checking
    /// what comes before the snapshot is `authkeys audit verify`'s.
    pub fn open(config: LogConfig, state: S) -> Result<Self, LogError> {
        writer::open(config, state)
    }

    /// Decides and durably appends one command; returns once its transaction is fsynced.
    pub async fn append(&self, cmd: Append<S>) -> Result<Committed, AppendError<S::Rejection>> {
        self.append_with(cmd, Idempotency::Recorded).await
    }

    /// [`Log::append`] with the idempotency of `idempotency` (the events carry the command id
    /// either way).
    pub async fn append_with(
        &self,
        cmd: Append<S>,
        idempotency: Idempotency,
    ) -> Result<Committed, AppendError<S::Rejection>> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send_async(Msg::Append(cmd, tx, idempotency))
            .await
            .map_err(|_| AppendError::Unavailable("the log is closed".into()))?;
        rx.await
            .map_err(|_| AppendError::Unavailable("the log writer stopped".into()))?
    }

    /// Appends events another copy of this log committed (see [`Import`]), after checking every
    /// one as a full verification does: contiguous seqs from the head, each hash over its exact
    /// bytes, each `prevHash` linking to the event before, each event id this log's; and every
    /// checkpoint signed by this log's key, naming this log and matching the chain at its seq.
    /// All or nothing, in one fsynced transaction; returns the new head. A check that fails is
    /// [`LogError::Corrupt`] naming the seq, and nothing is written.
    ///
    /// Only for a log no command is appended to meanwhile (a standby's).
    pub async fn import(&self, import: Import) -> Result<Head, LogError> {
        let (tx, rx) = oneshot::channel();
        let closed = || LogError::Config("the log is closed".into());
        self.inner
            .tx
            .send_async(Msg::Import(import, tx))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// The idempotency record of `(scope, command_id)`, if that command was committed: the seqs
    /// it wrote (`last < first` when it wrote nothing) and its fingerprint. Read from the file.
    pub fn command_record(
        &self,
        scope: &str,
        command_id: &CommandId,
    ) -> Result<Option<store::CommandRecord>, LogError> {
        Ok(self.command_records([(scope, command_id)])?.pop().flatten())
    }

    /// [`Log::command_record`] of each `(scope, command_id)`, in order, in one read
    /// transaction.
    pub fn command_records<'a>(
        &self,
        commands: impl IntoIterator<Item = (&'a str, &'a CommandId)>,
    ) -> Result<Vec<Option<store::CommandRecord>>, LogError> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(store::COMMANDS) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(LogError::storage("open commands table", e)),
        };
        let mut out = Vec::new();
        for (scope, command_id) in commands {
            let Some(table) = &table else {
                out.push(None);
                continue;
            };
            let key = store::command_key(scope, command_id.as_str());
            let row = table
                .get(key.as_str())
                .map_err(|e| LogError::storage("read commands", e))?;
            let record = row
                .map(|row| {
                    store::CommandRecord::decode(row.value()).ok_or_else(|| LogError::Corrupt {
                        seq: 0,
                        what: format!("idempotency record of {key} is malformed"),
                    })
                })
                .transpose()?;
            out.push(record);
        }
        Ok(out)
    }

    /// [`Log::append`] for code outside an async runtime.
    pub fn append_blocking(&self, cmd: Append<S>) -> Result<Committed, AppendError<S::Rejection>> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Append(cmd, tx, Idempotency::Recorded))
            .map_err(|_| AppendError::Unavailable("the log is closed".into()))?;
        rx.blocking_recv()
            .map_err(|_| AppendError::Unavailable("the log writer stopped".into()))?
    }

    /// Runs `f` on the writer's state after every command queued before it has committed
    /// (read-your-writes), and returns its result. Keep `f` short: the writer waits for it.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> R + Send + 'static,
    ) -> Result<R, AppendError<S::Rejection>> {
        self.query_at(move |s, _| f(s)).await
    }

    /// [`Log::query`], also given the last event the state includes (e.g. to follow the log
    /// from there on without folding what came before).
    pub async fn query_at<R: Send + 'static>(
        &self,
        f: impl FnOnce(&S, Head) -> R + Send + 'static,
    ) -> Result<R, AppendError<S::Rejection>> {
        let (tx, rx) = oneshot::channel();
        let q: QueryFn<S> = Box::new(move |s, head| {
            let _ = tx.send(f(s, head));
        });
        self.inner
            .tx
            .send_async(Msg::Query(q))
            .await
            .map_err(|_| AppendError::Unavailable("the log is closed".into()))?;
        rx.await
            .map_err(|_| AppendError::Unavailable("the log writer stopped".into()))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, LogError> {
        self.inner
            .db
            .begin_read()
            .map_err(|e| LogError::storage("begin read", e))
    }

    /// Up to `limit` events from `from` on, in order.
    pub fn read(&self, from: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        let txn = self.begin_read()?;
        store::read_events(&txn, from, limit)
    }

    /// The last committed event.
    pub fn head(&self) -> Head {
        *self.inner.head.borrow()
    }

    /// Wakes on every commit (no polling): `changed().await`, then read from the last seen seq.
    pub fn subscribe(&self) -> watch::Receiver<Head> {
        self.inner.head.clone()
    }

    /// This log's identity.
    pub fn log_id(&self) -> LogId {
        self.inner.log_id
    }

    /// The public key that verifies this log's checkpoints.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.inner.verifying_key
    }

    /// Counters.
    pub fn stats(&self) -> &LogStats {
        &self.inner.stats
    }

    /// The seq of the snapshot this open restored the state from (then only the events after it
    /// were verified and folded), or `None` when it verified and folded every event (ADR 008).
    pub fn opened_from_snapshot(&self) -> Option<u64> {
        self.inner.opened_from_snapshot
    }

    /// Why the writer refuses every command, if a commit failed (disk full, I/O error, a file
    /// made read-only): `None` while it is healthy.
    ///
    /// After a failed commit the writer's memory may be ahead of the file, so it stops for good:
    /// every later append answers [`AppendError::Unavailable`] with this reason, while reads of
    /// what was committed still work. **Recovery:** fix the cause (free disk space, make the
    /// file writable), then restart the process that owns the log; opening it again rebuilds
    /// the state from the file (from its newest snapshot, ADR 008: no snapshot is ever ahead of
    /// the file, it is written in a committed transaction) and continues from the last committed
    /// event. Nothing acknowledged is lost: a command is acknowledged only after its commit.
    pub fn writer_failure(&self) -> Option<String> {
        self.inner
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every checkpoint written so far.
    pub fn checkpoints(&self) -> Result<Vec<authkeys_events::Checkpoint>, LogError> {
        let txn = self.begin_read()?;
        store::read_checkpoints(&txn)
    }

    /// The newest checkpoint, if any (one read, however many the log holds).
    pub fn last_checkpoint(&self) -> Result<Option<authkeys_events::Checkpoint>, LogError> {
        let txn = self.begin_read()?;
        store::read_last_checkpoint(&txn)
    }

    /// Up to `limit` checkpoints at `from` or later, in seq order (one range read, however many
    /// the log holds).
    pub fn checkpoints_from(
        &self,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<authkeys_events::Checkpoint>, LogError> {
        let txn = self.begin_read()?;
        store::read_checkpoints_from(&txn, from.get(), limit)
    }

    /// Whether a command with this id was committed in `scope` (a retry would be answered from
    /// its first result): read from the file, without the writer.
    pub fn was_committed(&self, scope: &str, command_id: &CommandId) -> Result<bool, LogError> {
        Ok(self.command_record(scope, command_id)?.is_some())
    }

    /// The last seq the relay has durably reported as published (0 = none).
    pub fn relay_cursor(&self) -> Result<u64, LogError> {
        let txn = self.begin_read()?;
        store::read_relay_cursor(&txn)
    }

    /// Records that every event up to `seq` is published. Written with the next transaction or
    /// within `relay_cursor_flush_interval`; never moves backwards. A cursor lost in a crash only
    /// means re-publishing, which subscribers de-duplicate by event id and seq.
    pub fn set_relay_cursor(&self, seq: u64) {
        // A closed log has nothing left to record.
        let _ = self.inner.tx.try_send(Msg::RelayCursor(seq));
    }

    /// Stops taking commands, answers every queued one, writes a final checkpoint and the relay
    /// cursor, and waits for the writer to finish. Other handles' later appends fail with
    /// `Unavailable`; the file is released when the last handle is dropped.
    pub fn close(self) {
        let _ = self.inner.tx.send(Msg::Close);
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl<S: Aggregate> Drop for Inner<S> {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(h) = self
            .writer
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = h.join();
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

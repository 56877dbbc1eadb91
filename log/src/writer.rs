//! The single writer: group commit, decide-in-batch, idempotency, hash chain and checkpoints.
//!
//! The writer thread waits for a message, then takes every message already queued (up to
//! `batch_commands_max`) and handles them in **one** write transaction with one fsync. Because
//! each command is decided and appended before the next is decided, a decision sees every earlier
//! append of the batch: two uses of a one-off key in one batch cannot both pass.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use authkeys_events::{Checkpoint, Envelope, Hash, LogId, Seq, StreamId, Timestamp, chain_hash};
use ed25519_dalek::{SigningKey, VerifyingKey};
use redb::{Durability, ReadableDatabase, ReadableTable};
use tokio::sync::{oneshot, watch};

use crate::snapshot::{self, Restored};
use crate::store::{
    CHECKPOINTS, COMMANDS, CommandRecord, EVENTS, FORMAT_VERSION, META, META_FORMAT, META_LOG_ID,
    META_RELAY_CURSOR, META_VERIFYING_KEY, StoredEvent, command_key, event_id,
};
use crate::{
    Aggregate, Append, AppendError, Committed, Head, Idempotency, Import, Inner, Log, LogConfig,
    LogError, LogStats, Msg, bump,
};

type Reply<R> = oneshot::Sender<Result<Committed, AppendError<R>>>;
type Pending<S> = (Append<S>, Reply<<S as Aggregate>::Rejection>, Idempotency);
type Query<S> = crate::QueryFn<S>;
/// A command's reply channel with the answer it will get once the batch is committed.
type Answer<R> = (Reply<R>, Result<Committed, AppendError<R>>);

/// The messages one turn of the writer takes.
struct Gathered<S: Aggregate> {
    batch: Vec<Pending<S>>,
    imports: Vec<(Import, oneshot::Sender<Result<Head, LogError>>)>,
    queries: Vec<Query<S>>,
}

impl<S: Aggregate> Default for Gathered<S> {
    fn default() -> Self {
        Self {
            batch: Vec::new(),
            imports: Vec::new(),
            queries: Vec::new(),
        }
    }
}

impl<S: Aggregate> Gathered<S> {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.imports.is_empty() && self.queries.is_empty()
    }
}

/// Opens the database in single-writer mode, so read-only tools may open it alongside.
pub(crate) fn open_database(path: &std::path::Path) -> Result<redb::Database, LogError> {
    redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(path)
        .map_err(|e| LogError::storage("open log file", e))
}

pub(crate) fn open<S: Aggregate>(config: LogConfig, mut state: S) -> Result<Log<S>, LogError> {
    if !config.path.exists() {
        create_atomically(&config)?;
    }
    let db = open_database(&config.path)?;
    let (log_id, signing) = init_meta(&db, &config)?;
    let verifying_key = signing.verifying_key();
    let mac_key = snapshot::mac_key(&signing);

    // Verify before accepting a write, folding each event into the state and the stream versions
    // (kept in memory: they are derivable from the events, and a B-tree of them would dirty a
    // random leaf page per event): from the newest snapshot that checks out (ADR 008), else
    // everything from seq 1.
    let started = Instant::now();
    let mut streams = HashMap::new();
    let (report, snapshot_seq) = {
        let txn = db
            .begin_read()
            .map_err(|e| LogError::storage("begin read", e))?;
        match restore::<S>(&txn, &mac_key, log_id, &verifying_key) {
            Some((restored, time)) => {
                let Restored {
                    head: at,
                    state: restored,
                    streams: restored_streams,
                } = restored;
                state = restored;
                streams = restored_streams;
                let mut report =
                    crate::verify::verify_from(&txn, &verifying_key, Some(log_id), at, |env| {
                        streams.insert(env.stream.clone(), env.stream_version);
                        state.apply(env);
                    })?;
                report.last_time = report.last_time.or(Some(time));
                tracing::info!(
                    snapshot = at.seq,
                    events_after = report.events,
                    checkpoints_after = report.checkpoints,
                    head = report.head.seq,
                    ms = started.elapsed().as_millis(),
                    "log loaded from its snapshot; the events after it verified"
                );
                (report, at.seq)
            }
            None => {
                let report =
                    crate::verify::verify_txn(&txn, &verifying_key, Some(log_id), |env| {
                        streams.insert(env.stream.clone(), env.stream_version);
                        state.apply(env);
                    })?;
                tracing::info!(
                    events = report.events,
                    checkpoints = report.checkpoints,
                    head = report.head.seq,
                    ms = started.elapsed().as_millis(),
                    "log verified and loaded"
                );
                (report, 0)
            }
        }
    };

    let db = Arc::new(db);
    let (head_tx, head_rx) = watch::channel(report.head);
    let (tx, rx) = flume::bounded(config.queue_commands_max);
    let stats = Arc::new(LogStats::default());
    let failure = Arc::new(Mutex::new(None));
    let last_time = report
        .last_time
        .unwrap_or_else(|| Timestamp::from_unix_ms(0).expect("0 is in range"));
    let writer = Writer {
        db: Arc::clone(&db),
        state,
        streams,
        signing,
        log_id,
        head: report.head,
        last_time,
        checkpointed_seq: report.last_checkpoint.map_or(snapshot_seq, Seq::get),
        snapshot_seq,
        snapshot_job: None,
        mac_key,
        uncovered_since: None,
        pending_cursor: None,
        cursor_since: None,
        head_tx,
        stats: Arc::clone(&stats),
        poisoned: None,
        failure: Arc::clone(&failure),
        config,
    };
    let handle = std::thread::Builder::new()
        .name("authkeys-log-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| LogError::io("spawn the log writer".into(), e))?;
    Ok(Log {
        inner: Arc::new(Inner {
            tx,
            db,
            head: head_rx,
            log_id,
            verifying_key,
            stats,
            opened_from_snapshot: (snapshot_seq > 0).then_some(snapshot_seq),
            failure,
            writer: Mutex::new(Some(handle)),
        }),
    })
}

/// The newest stored snapshot that checks out against the log, with the time of the event it
/// describes; `None` (with a warning that says why, when there was something to use) to fold
/// every event from seq 1. Never an error: a snapshot that cannot be used is only slower.
fn restore<S: Aggregate>(
    txn: &redb::ReadTransaction,
    mac_key: &[u8; 32],
    log_id: LogId,
    key: &VerifyingKey,
) -> Option<(Restored<S>, Timestamp)> {
    // Only an aggregate that keeps snapshots has any to restore.
    S::SNAPSHOT_FORMAT?;
    let seqs = match snapshot::stored_seqs(txn) {
        Ok(seqs) => seqs,
        Err(e) => {
            tracing::warn!(error = %e, "the snapshots cannot be read: verifying and folding every event from seq 1");
            return None;
        }
    };
    if seqs.is_empty() {
        if crate::store::read_head(txn).is_ok_and(|(seq, _)| seq > 0) {
            tracing::warn!(
                "the log holds no snapshot (written from this version on): verifying and folding \
                 every event from seq 1"
            );
        }
        return None;
    }
    for seq in seqs {
        match check_snapshot::<S>(txn, mac_key, log_id, key, seq) {
            Ok(found) => return Some(found),
            Err(why) => tracing::warn!(snapshot = seq, why, "snapshot not used"),
        }
    }
    tracing::warn!("no snapshot can be used: verifying and folding every event from seq 1");
    None
}

/// The snapshot at `seq`, if it decodes and agrees with the log: the log holds an event at its
/// seq with its hash (and that event checks: its body, seq, chain link and id), and a checkpoint
/// of this log signed by `key` covers it, at its seq or later (the chain from the snapshot to a
/// later one is verified with the events after the snapshot). Else why not.
fn check_snapshot<S: Aggregate>(
    txn: &redb::ReadTransaction,
    mac_key: &[u8; 32],
    log_id: LogId,
    key: &VerifyingKey,
    seq: u64,
) -> Result<(Restored<S>, Timestamp), String> {
    let at = Seq::new(seq).map_err(|_| "stored at seq 0".to_owned())?;
    let restored = snapshot::load::<S>(txn, mac_key, seq)?;
    let ev = crate::store::read_events(txn, at, 1)
        .map_err(|e| format!("the log's event at its seq: {e}"))?
        .pop()
        .filter(|ev| ev.seq == at)
        .ok_or_else(|| "the log holds no event at its seq".to_owned())?;
    if ev.hash != restored.head.hash {
        return Err("its hash disagrees with the log's event at its seq".into());
    }
    let env = ev
        .envelope()
        .map_err(|e| format!("the log's event at its seq does not decode: {e}"))?;
    if env.seq != at
        || chain_hash(&env.prev_hash, at, &ev.body) != ev.hash
        || !crate::store::is_event_id(&env.id, &log_id, at)
    {
        return Err("the log's event at its seq does not check".into());
    }
    let cp = crate::store::read_checkpoints_from(txn, seq, 1)
        .map_err(|e| format!("the checkpoint that covers it: {e}"))?
        .pop()
        .ok_or_else(|| "no checkpoint covers it yet".to_owned())?;
    if cp.log_id != log_id || cp.verify(key).is_err() {
        return Err(format!(
            "the checkpoint at {} does not verify under this log's key",
            cp.seq
        ));
    }
    if cp.seq == at && cp.hash != ev.hash {
        return Err("the checkpoint at its seq disagrees with it".into());
    }
    Ok((restored, env.time))
}

/// Creates a new log file under a temporary name and renames it into place once its tables and
/// identity are durable, so that a crash during creation never leaves a half-written file where
/// the log belongs.
fn create_atomically(config: &LogConfig) -> Result<(), LogError> {
    let mut tmp = config.path.clone().into_os_string();
    tmp.push(".creating");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io(format!("remove {}", tmp.display()), e)),
    }
    let db = open_database(&tmp)?;
    init_meta(&db, config)?;
    drop(db);
    std::fs::rename(&tmp, &config.path)
        .map_err(|e| LogError::io(format!("rename {} into place", tmp.display()), e))?;
    if let Some(dir) = config.path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io(format!("sync directory {}", dir.display()), e))?;
    }
    Ok(())
}

/// Creates the tables and identity of a new log, or checks those of an existing one against the
/// signing key file.
fn init_meta(db: &redb::Database, config: &LogConfig) -> Result<(LogId, SigningKey), LogError> {
    let existing = {
        let txn = db
            .begin_read()
            .map_err(|e| LogError::storage("begin read", e))?;
        crate::store::read_log_id(&txn)?
    };
    let is_new = existing.is_none();
    if let (Some(found), Some(wanted)) = (existing, config.log_id)
        && found != wanted
    {
        return Err(LogError::Config(format!(
            "log file {} is log {} but this copy follows log {}: move it aside to follow that log",
            config.path.display(),
            found,
            wanted
        )));
    }
    // A copy of another log needs that log's signing key; it never makes its own.
    let create_key = is_new && config.log_id.is_none();
    let seed = crate::keys::load_or_create_key(&config.signing_key_path, create_key)?;
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key().to_bytes();

    if let Some(log_id) = existing {
        let txn = db
            .begin_read()
            .map_err(|e| LogError::storage("begin read", e))?;
        let format = crate::store::read_meta(&txn, META_FORMAT)?;
        if format.as_deref() != Some(&FORMAT_VERSION.to_le_bytes()[..]) {
            return Err(LogError::Config(format!(
                "log file {} has an unknown format (this build reads format {FORMAT_VERSION})",
                config.path.display()
            )));
        }
        let stored = crate::store::read_meta(&txn, META_VERIFYING_KEY)?;
        if stored.as_deref() != Some(&public[..]) {
            return Err(LogError::Config(format!(
                "signing key {} does not belong to log {}",
                config.signing_key_path.display(),
                config.path.display()
            )));
        }
        let mut unbound = Vec::new();
        for key in &config.bound_keys {
            match crate::store::read_meta(&txn, &bound_key_meta(&key.name))? {
                Some(digest) if digest == key.digest => {}
                Some(_) => {
                    return Err(LogError::Config(format!(
                        "{} key {} does not belong to log {}: it is not the key this log was \
                         made with (restore that file; a new key would lock out every secret \
                         the log holds a hash of)",
                        key.name,
                        key.path.display(),
                        config.path.display()
                    )));
                }
                None => unbound.push(key),
            }
        }
        drop(txn);
        if !unbound.is_empty() {
            // A log made before this key was bound: bind the key it is opened with now.
            let txn = db
                .begin_write()
                .map_err(|e| LogError::storage("begin write", e))?;
            for key in &unbound {
                tracing::info!(key = key.name, path = %key.path.display(), "binding key to the log");
            }
            bind_keys(&txn, unbound)?;
            txn.commit()
                .map_err(|e| LogError::storage("bind keys", e))?;
        }
        return Ok((log_id, signing));
    }

    let log_id = match config.log_id {
        Some(id) => id,
        None => {
            let mut id = [0u8; 16];
            getrandom::fill(&mut id)
                .map_err(|e| LogError::Config(format!("no randomness for a log id: {e}")))?;
            LogId(id)
        }
    };
    let txn = db
        .begin_write()
        .map_err(|e| LogError::storage("begin write", e))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| LogError::storage("create meta table", e))?;
        for (k, v) in [
            (META_FORMAT, &FORMAT_VERSION.to_le_bytes()[..]),
            (META_LOG_ID, &log_id.0[..]),
            (META_VERIFYING_KEY, &public[..]),
        ] {
            meta.insert(k, v)
                .map_err(|e| LogError::storage("write meta", e))?;
        }
        drop(meta);
        bind_keys(&txn, &config.bound_keys)?;
        txn.open_table(EVENTS)
            .map_err(|e| LogError::storage("create events table", e))?;
        txn.open_table(COMMANDS)
            .map_err(|e| LogError::storage("create commands table", e))?;
        txn.open_table(CHECKPOINTS)
            .map_err(|e| LogError::storage("create checkpoints table", e))?;
    }
    txn.commit()
        .map_err(|e| LogError::storage("commit new log", e))?;
    Ok((log_id, signing))
}

/// Records each key's digest in the meta table of `txn`.
fn bind_keys<'k>(
    txn: &redb::WriteTransaction,
    keys: impl IntoIterator<Item = &'k crate::BoundKey>,
) -> Result<(), LogError> {
    let mut meta = txn
        .open_table(META)
        .map_err(|e| LogError::storage("open meta table", e))?;
    for key in keys {
        meta.insert(bound_key_meta(&key.name).as_str(), &key.digest[..])
            .map_err(|e| LogError::storage("write meta", e))?;
    }
    Ok(())
}

/// The meta row that records a bound key's digest.
fn bound_key_meta(name: &str) -> String {
    format!("bound_key/{name}")
}

struct Writer<S: Aggregate> {
    db: Arc<redb::Database>,
    state: S,
    /// Every stream's version, from the events (optimistic concurrency).
    streams: HashMap<StreamId, u64>,
    signing: SigningKey,
    log_id: LogId,
    head: Head,
    last_time: Timestamp,
    /// Highest seq covered by a checkpoint.
    checkpointed_seq: u64,
    /// Seq of the newest snapshot (0: none), or of the one being encoded.
    snapshot_seq: u64,
    /// A snapshot being encoded on its own thread; the first batch after it is done stores it.
    snapshot_job: Option<std::sync::mpsc::Receiver<(Head, Vec<u8>)>>,
    /// The key of the snapshots' checksum.
    mac_key: [u8; 32],
    /// When the oldest event not covered by a checkpoint was committed.
    uncovered_since: Option<Instant>,
    pending_cursor: Option<u64>,
    cursor_since: Option<Instant>,
    head_tx: watch::Sender<Head>,
    stats: Arc<LogStats>,
    /// Set when a commit failed: the in-memory state may be ahead of the file, so the writer
    /// refuses everything until the log is reopened.
    poisoned: Option<String>,
    /// The same reason, shared with every [`Log`] handle ([`Log::writer_failure`]).
    failure: Arc<Mutex<Option<String>>>,
    config: LogConfig,
}

/// The tables one batch writes, open in its transaction.
struct Tables<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    commands: redb::Table<'t, &'static str, &'static [u8]>,
    checkpoints: redb::Table<'t, u64, &'static [u8]>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<S: Aggregate> Writer<S> {
    fn run(mut self, rx: flume::Receiver<Msg<S>>) {
        let mut closing = false;
        while !closing {
            let first = match self.next_deadline() {
                Some(deadline) => match rx.recv_deadline(deadline) {
                    Ok(m) => m,
                    Err(flume::RecvTimeoutError::Timeout) => {
                        self.commit_batch(Vec::new(), false);
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(flume::RecvError::Disconnected) => break,
                },
            };
            let mut gathered = Gathered::default();
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                if self.take(msg, &mut gathered) {
                    closing = true;
                    break;
                }
                if gathered.batch.len() >= self.config.batch_commands_max {
                    break;
                }
            }
            let due = !gathered.batch.is_empty() || self.housekeeping_due();
            self.finish(gathered, due);
        }
        // Answer what is still queued, then leave a checkpoint at the head.
        loop {
            let mut gathered = Gathered::default();
            for msg in rx.try_iter().take(self.config.batch_commands_max) {
                self.take(msg, &mut gathered);
            }
            if gathered.is_empty() {
                break;
            }
            self.finish(gathered, true);
        }
        if self.head.seq > self.checkpointed_seq
            || self.pending_cursor.is_some()
            || self.snapshot_job.is_some()
            || (S::SNAPSHOT_FORMAT.is_some() && self.head.seq > self.snapshot_seq)
        {
            self.commit_batch(Vec::new(), true);
        }
    }

    /// Commits a gathered batch (when `commit`), then the imports, then answers the queries:
    /// they see every command and import queued before them, committed.
    fn finish(&mut self, gathered: Gathered<S>, commit: bool) {
        if commit {
            self.commit_batch(gathered.batch, false);
        }
        for (import, reply) in gathered.imports {
            let _ = reply.send(self.import(import));
        }
        for q in gathered.queries {
            q(&self.state, self.head);
        }
    }

    /// Sorts one message into what is being gathered; true for `Close`.
    fn take(&mut self, msg: Msg<S>, gathered: &mut Gathered<S>) -> bool {
        match msg {
            Msg::Close => return true,
            Msg::RelayCursor(seq) => {
                self.pending_cursor = Some(self.pending_cursor.unwrap_or(0).max(seq));
                self.cursor_since.get_or_insert_with(Instant::now);
            }
            Msg::Append(cmd, reply, idempotency) => gathered.batch.push((cmd, reply, idempotency)),
            Msg::Import(import, reply) => gathered.imports.push((import, reply)),
            Msg::Query(q) => gathered.queries.push(q),
        }
        false
    }

    /// When the writer must wake up without a message: to checkpoint uncovered events or to
    /// write a waiting relay cursor.
    fn next_deadline(&self) -> Option<Instant> {
        let cp = self
            .uncovered_since
            .map(|t| t + self.config.checkpoint_interval);
        let cursor = self
            .cursor_since
            .map(|t| t + self.config.relay_cursor_flush_interval);
        match (cp, cursor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn housekeeping_due(&self) -> bool {
        self.next_deadline().is_some_and(|d| d <= Instant::now())
    }

    /// Whether the transaction that brings the head where it is writes a snapshot: one that
    /// checkpoints the head (or finds it checkpointed), once `snapshot_events_max` events
    /// followed the last snapshot, or at close (`force`).
    fn snapshot_due(&self, checkpoint: bool, force: bool) -> bool {
        S::SNAPSHOT_FORMAT.is_some()
            && self.head.seq > self.snapshot_seq
            && (checkpoint || self.head.seq == self.checkpointed_seq)
            && (force
                || (self.snapshot_job.is_none()
                    && self.head.seq - self.snapshot_seq >= self.config.snapshot_events_max))
    }

    /// Starts encoding the snapshot of the state at `head` on its own thread: the writer waits
    /// only for [`Aggregate::snapshot_later`] (a copy of the state), not for the encoding, which
    /// took the writer ~1 s at 100k nodes and stalled every command queued behind it. A later
    /// batch stores it ([`Writer::store_finished_snapshot`]); it describes `head`, which a
    /// checkpoint covers (it is taken only with one), so it is restored like any other.
    fn start_snapshot(&mut self, head: Head) {
        let started = Instant::now();
        let later = self.state.snapshot_later();
        let streams = self.streams.clone();
        let (key, format) = (self.mac_key, S::SNAPSHOT_FORMAT.unwrap_or_default());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("authkeys-log-snapshot".into())
            .spawn(move || {
                let bytes = snapshot::encode_parts(&key, head, format, &later(), &streams);
                let _ = tx.send((head, bytes));
            });
        match spawned {
            Ok(_) => self.snapshot_job = Some(rx),
            Err(e) => {
                tracing::warn!(error = %e, "could not start a snapshot; the next one is due later")
            }
        }
        self.record_snapshot_stall(started);
    }

    /// Records how long a snapshot held the writer, since `started`; answers it in µs.
    fn record_snapshot_stall(&self, started: Instant) -> u64 {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats
            .snapshot_micros_last
            .store(micros, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .snapshot_micros_max
            .fetch_max(micros, std::sync::atomic::Ordering::Relaxed);
        micros
    }

    /// Stores the snapshot encoded since the last batch, if one is done (or, with `wait`, once
    /// it is: at close); answers whether it did.
    fn store_finished_snapshot(
        &mut self,
        txn: &redb::WriteTransaction,
        wait: bool,
    ) -> Result<bool, LogError> {
        let Some(job) = &self.snapshot_job else {
            return Ok(false);
        };
        let done = if wait {
            job.recv().ok()
        } else {
            match job.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(false),
                done => done.ok(),
            }
        };
        self.snapshot_job = None;
        let Some((head, bytes)) = done else {
            tracing::warn!("a snapshot's encoding ended without one; the next one is due later");
            return Ok(false);
        };
        snapshot::store(txn, head.seq, &bytes)?;
        bump(&self.stats.snapshots, 1);
        self.stats
            .snapshot_bytes_last
            .store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(seq = head.seq, bytes = bytes.len(), "snapshot stored");
        Ok(true)
    }

    /// Encodes the snapshot of the state at `head` and stores it in `txn`; counts what it cost
    /// the writer.
    fn write_snapshot(&self, txn: &redb::WriteTransaction, head: Head) -> Result<(), LogError> {
        let started = Instant::now();
        let bytes = snapshot::encode(&self.mac_key, head, &self.state, &self.streams);
        snapshot::store(txn, head.seq, &bytes)?;
        let micros = self.record_snapshot_stall(started);
        bump(&self.stats.snapshots, 1);
        self.stats
            .snapshot_bytes_last
            .store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            seq = head.seq,
            bytes = bytes.len(),
            micros,
            "snapshot written"
        );
        Ok(())
    }

    fn checkpoint_due(&self, force: bool) -> bool {
        self.head.seq > self.checkpointed_seq
            && (force
                || self.head.seq - self.checkpointed_seq >= self.config.checkpoint_events_max
                || self
                    .uncovered_since
                    .is_some_and(|t| t.elapsed() >= self.config.checkpoint_interval))
    }

    /// Handles one batch in one transaction. With an empty batch it only writes what
    /// housekeeping needs (a checkpoint, the relay cursor); `force_checkpoint` covers the head
    /// whatever the thresholds say (at close).
    fn commit_batch(&mut self, batch: Vec<Pending<S>>, force_checkpoint: bool) {
        if let Some(why) = &self.poisoned {
            for (_, reply, _) in batch {
                let _ = reply.send(Err(AppendError::Unavailable(why.clone())));
            }
            return;
        }
        let started_head = self.head;
        let mut results = Vec::with_capacity(batch.len());
        let outcome = self.write_batch(batch, force_checkpoint, &mut results);
        match outcome {
            Ok(wrote_events) => {
                bump(&self.stats.transactions, 1);
                bump(&self.stats.commands, results.len() as u64);
                bump(&self.stats.events, self.head.seq - started_head.seq);
                if wrote_events {
                    self.head_tx.send_replace(self.head);
                }
                for (reply, result) in results {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let why = format!("the log writer stopped after a storage failure: {e}");
                tracing::error!(error = %e, "log commit failed; refusing writes until reopened");
                self.head = started_head;
                self.poisoned = Some(why.clone());
                *self
                    .failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why.clone());
                for (reply, _) in results {
                    let _ = reply.send(Err(AppendError::Unavailable(why.clone())));
                }
            }
        }
    }

    /// Writes the batch; on `Err` nothing is committed and every reply must become an error.
    fn write_batch(
        &mut self,
        batch: Vec<Pending<S>>,
        force_checkpoint: bool,
        results: &mut Vec<Answer<S::Rejection>>,
    ) -> Result<bool, LogError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| LogError::storage("begin write", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| LogError::storage("set durability", e))?;
        let now = self.config.clock.now().max(self.last_time);
        let before = self.head.seq;
        let mut recorded = 0usize;
        let checkpoint;
        let snapshot;
        {
            let open = |what: &'static str, e| LogError::storage(what, e);
            let mut t = Tables {
                events: txn.open_table(EVENTS).map_err(|e| open("open events", e))?,
                commands: txn
                    .open_table(COMMANDS)
                    .map_err(|e| open("open commands", e))?,
                checkpoints: txn
                    .open_table(CHECKPOINTS)
                    .map_err(|e| open("open checkpoints", e))?,
                meta: txn.open_table(META).map_err(|e| open("open meta", e))?,
            };
            for (cmd, reply, idempotency) in batch {
                let result = self.append_one(&mut t, cmd, idempotency, now)?;
                // An unrecorded command that decided nothing wrote nothing.
                recorded += usize::from(matches!(&result, Ok(c) if !c.replayed
                    && (idempotency == Idempotency::Recorded || !c.envelopes.is_empty())));
                results.push((reply, result));
            }
            if self.head.seq > before {
                self.uncovered_since.get_or_insert_with(Instant::now);
            }
            checkpoint = self.checkpoint_due(force_checkpoint);
            if checkpoint {
                let seq = Seq::new(self.head.seq).expect("head.seq > checkpointed_seq >= 0");
                let cp = Checkpoint::sign(&self.signing, self.log_id, seq, self.head.hash);
                t.checkpoints
                    .insert(self.head.seq, &cp.to_bytes()[..])
                    .map_err(|e| LogError::storage("write checkpoint", e))?;
            }
            snapshot = self.snapshot_due(checkpoint, force_checkpoint);
            if let Some(cursor) = self.pending_cursor {
                let cursor = cursor.min(self.head.seq);
                t.meta
                    .insert(META_RELAY_CURSOR, &cursor.to_le_bytes()[..])
                    .map_err(|e| LogError::storage("write relay cursor", e))?;
            }
        }
        if snapshot && force_checkpoint {
            // At close: written now, at the head.
            self.write_snapshot(&txn, self.head)?;
        } else if snapshot {
            self.start_snapshot(self.head);
        }
        let stored = self.store_finished_snapshot(&txn, force_checkpoint)?;
        if recorded == 0 && !checkpoint && !snapshot && !stored && self.pending_cursor.is_none() {
            // Only rejections and retries: nothing was written, so nothing to commit or fsync.
            txn.abort().map_err(|e| LogError::storage("abort", e))?;
            return Ok(false);
        }
        txn.commit().map_err(|e| LogError::storage("commit", e))?;
        if self.head.seq > before {
            self.last_time = now;
        }
        if checkpoint {
            self.checkpointed_seq = self.head.seq;
            self.uncovered_since = None;
            bump(&self.stats.checkpoints, 1);
        }
        if snapshot {
            self.snapshot_seq = self.head.seq;
        }
        self.pending_cursor = None;
        self.cursor_since = None;
        Ok(self.head.seq > before)
    }

    /// Decides and appends one command inside the batch transaction. `Ok(Err(_))` is a refusal
    /// of this command alone; `Err(_)` is a storage failure that fails the whole batch.
    fn append_one(
        &mut self,
        t: &mut Tables<'_>,
        cmd: Append<S>,
        idempotency: Idempotency,
        now: Timestamp,
    ) -> Result<Result<Committed, AppendError<S::Rejection>>, LogError> {
        let key = command_key(&cmd.scope, cmd.command_id.as_str());
        let previous = match idempotency {
            Idempotency::Recorded => t
                .commands
                .get(key.as_str())
                .map_err(|e| LogError::storage("read commands", e))?
                .map(|v| CommandRecord::decode(v.value())),
            Idempotency::Unrecorded => None,
        };
        if let Some(record) = previous {
            let record = record.ok_or_else(|| LogError::Corrupt {
                seq: 0,
                what: format!("idempotency record of {key} is malformed"),
            })?;
            if record.fingerprint != cmd.fingerprint {
                return Ok(Err(AppendError::IdempotencyMismatch(cmd.command_id)));
            }
            return Ok(self.replay(t, record));
        }

        let (decide, answer) = (cmd.decide, cmd.answer);
        let state = &self.state;
        let decision = match std::panic::catch_unwind(AssertUnwindSafe(|| decide(state, now))) {
            Ok(Ok(d)) => d,
            Ok(Err(rejection)) => return Ok(Err(AppendError::Rejected(rejection))),
            Err(_) => {
                tracing::error!(command_id = %cmd.command_id, "decide panicked");
                return Ok(Err(AppendError::Invalid("the decision failed".into())));
            }
        };
        let tailnet = decision.tailnet.clone();
        if decision.events.len() > self.config.command_events_max {
            return Ok(Err(AppendError::Invalid(format!(
                "a command may append at most {} events",
                self.config.command_events_max
            ))));
        }

        // Check every expectation before writing anything: a command is all or nothing.
        let streams = &self.streams;
        let planned = match decision.versioned(|s| streams.get(s).copied().unwrap_or(0)) {
            Ok(planned) => planned,
            Err(c) => {
                return Ok(Err(AppendError::Conflict {
                    stream: c.stream,
                    expected: c.expected,
                    actual: c.actual,
                }));
            }
        };

        let first = self.head.seq + 1;
        let mut envelopes = Vec::with_capacity(planned.len());
        for (event, stream, stream_version) in planned {
            let seq = Seq::new(self.head.seq + 1).expect("head + 1 is at least 1");
            let mut env = Envelope {
                seq,
                id: event_id(&self.log_id, seq),
                event,
                tailnet: tailnet.clone(),
                stream,
                stream_version,
                time: now,
                actor: cmd.actor.clone(),
                command_id: cmd.command_id.clone(),
                prev_hash: self.head.hash,
                hash: Hash::ZERO,
            };
            let body = env.encode_body();
            env.hash = chain_hash(&self.head.hash, seq, &body);
            t.events
                .insert(
                    seq.get(),
                    StoredEvent::encode_row(&env.hash, &body).as_slice(),
                )
                .map_err(|e| LogError::storage("write event", e))?;
            self.streams.insert(env.stream.clone(), stream_version);
            self.head = Head {
                seq: seq.get(),
                hash: env.hash,
            };
            self.state.apply(&env);
            envelopes.push(env);
        }
        if idempotency == Idempotency::Recorded {
            let record = CommandRecord {
                first,
                last: self.head.seq,
                fingerprint: cmd.fingerprint,
            };
            t.commands
                .insert(key.as_str(), &record.encode()[..])
                .map_err(|e| LogError::storage("write idempotency record", e))?;
        }
        // Like `decide`, a panicking answer fails this reply only (the events are committed).
        let state = &self.state;
        let answer = answer.and_then(|f| {
            std::panic::catch_unwind(AssertUnwindSafe(|| f(state))).unwrap_or_else(|_| {
                tracing::error!(command_id = %cmd.command_id, "a command's answer panicked");
                None
            })
        });
        Ok(Ok(Committed {
            envelopes,
            replayed: false,
            answer,
        }))
    }

    /// Checks and appends another copy's events, checkpoints and idempotency records in one
    /// transaction (see [`Log::import`]). The state, stream versions and head change only once
    /// the transaction is committed.
    fn import(&mut self, import: Import) -> Result<Head, LogError> {
        if let Some(why) = &self.poisoned {
            return Err(LogError::Config(why.clone()));
        }
        let corrupt = |seq: u64, what: String| LogError::Corrupt { seq, what };
        let mut head = self.head;
        let mut envelopes = Vec::with_capacity(import.events.len());
        for ev in &import.events {
            let seq = ev.seq.get();
            if seq != head.seq + 1 {
                return Err(corrupt(
                    seq,
                    format!("event {seq} does not follow the head {}", head.seq),
                ));
            }
            let env = ev
                .envelope()
                .map_err(|e| corrupt(seq, format!("event does not decode: {e}")))?;
            if env.seq != ev.seq {
                return Err(corrupt(seq, format!("the event says seq {}", env.seq)));
            }
            if env.prev_hash != head.hash {
                return Err(corrupt(
                    seq,
                    format!("prevHash does not link to event {}", head.seq),
                ));
            }
            if chain_hash(&head.hash, ev.seq, &ev.body) != ev.hash {
                return Err(corrupt(
                    seq,
                    "the hash does not match the event's bytes".into(),
                ));
            }
            if !crate::store::is_event_id(&env.id, &self.log_id, ev.seq) {
                return Err(corrupt(seq, "the event id is not this log's".into()));
            }
            head = Head { seq, hash: ev.hash };
            envelopes.push(env);
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| LogError::storage("begin write", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| LogError::storage("set durability", e))?;
        let verifying = self.signing.verifying_key();
        let mut checkpointed = self.checkpointed_seq;
        {
            let open = |what: &'static str, e| LogError::storage(what, e);
            let mut events = txn.open_table(EVENTS).map_err(|e| open("open events", e))?;
            let mut commands = txn
                .open_table(COMMANDS)
                .map_err(|e| open("open commands", e))?;
            let mut checkpoints = txn
                .open_table(CHECKPOINTS)
                .map_err(|e| open("open checkpoints", e))?;
            let mut meta = txn.open_table(META).map_err(|e| open("open meta", e))?;
            for ev in &import.events {
                events
                    .insert(
                        ev.seq.get(),
                        StoredEvent::encode_row(&ev.hash, &ev.body).as_slice(),
                    )
                    .map_err(|e| LogError::storage("write event", e))?;
            }
            for cp in &import.checkpoints {
                let at = cp.seq.get();
                if cp.log_id != self.log_id {
                    return Err(corrupt(at, "a checkpoint names another log".into()));
                }
                cp.verify(&verifying)
                    .map_err(|e| corrupt(at, format!("checkpoint: {e}")))?;
                let hash = match import.events.iter().find(|ev| ev.seq == cp.seq) {
                    Some(ev) => Some(ev.hash),
                    None => events
                        .get(at)
                        .map_err(|e| LogError::storage("read event", e))?
                        .map(|row| StoredEvent::decode_row(at, row.value()).map(|ev| ev.hash))
                        .transpose()?,
                };
                if hash != Some(cp.hash) {
                    return Err(corrupt(at, "a checkpoint does not match the chain".into()));
                }
                checkpoints
                    .insert(at, &cp.to_bytes()[..])
                    .map_err(|e| LogError::storage("write checkpoint", e))?;
                checkpointed = checkpointed.max(at);
            }
            for c in &import.commands {
                let (first, last) = (*c.seqs.start(), *c.seqs.end());
                // Whether event `seq` (imported now, or stored before) is of this command.
                let ours = |seq: u64| -> Result<bool, LogError> {
                    if seq > self.head.seq {
                        let i = usize::try_from(seq - self.head.seq - 1).unwrap_or(usize::MAX);
                        return Ok(envelopes
                            .get(i)
                            .is_some_and(|e| e.command_id == c.command_id));
                    }
                    let Some(row) = events
                        .get(seq)
                        .map_err(|e| LogError::storage("read event", e))?
                    else {
                        return Ok(false);
                    };
                    let env = StoredEvent::decode_row(seq, row.value())?
                        .envelope()
                        .map_err(|e| corrupt(seq, format!("event does not decode: {e}")))?;
                    Ok(env.command_id == c.command_id)
                };
                if first < 1 || first > last || !ours(first)? || !ours(last)? {
                    return Err(corrupt(
                        last,
                        format!("the command record of {} names other events", c.command_id),
                    ));
                }
                let record = CommandRecord {
                    first,
                    last,
                    fingerprint: c.fingerprint,
                };
                commands
                    .insert(
                        command_key(&c.scope, c.command_id.as_str()).as_str(),
                        &record.encode()[..],
                    )
                    .map_err(|e| LogError::storage("write idempotency record", e))?;
            }
            // What was imported is in the stream already: the relay resumes after it.
            meta.insert(META_RELAY_CURSOR, &head.seq.to_le_bytes()[..])
                .map_err(|e| LogError::storage("write relay cursor", e))?;
        }
        // A copy restarts as fast as its primary (ADR 008): every `snapshot_events_max` events,
        // the import's transaction also holds the snapshot of the state at its head. The events
        // are folded before the commit then, as a batch's are (a failed commit poisons).
        let snapshot = S::SNAPSHOT_FORMAT.is_some()
            && head.seq > self.snapshot_seq
            && head.seq - self.snapshot_seq >= self.config.snapshot_events_max;
        let written = if snapshot {
            self.fold_imported(&envelopes);
            self.write_snapshot(&txn, head)
        } else {
            Ok(())
        };
        let committed = written.and_then(|()| {
            txn.commit()
                .map_err(|e| LogError::storage("commit import", e))
        });
        if let Err(e) = committed {
            let why = format!("the log writer stopped after a storage failure: {e}");
            tracing::error!(error = %e, "log import failed; refusing writes until reopened");
            self.poisoned = Some(why.clone());
            *self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
            return Err(e);
        }
        if snapshot {
            self.snapshot_seq = head.seq;
        } else {
            self.fold_imported(&envelopes);
        }
        bump(&self.stats.events, head.seq - self.head.seq);
        bump(&self.stats.transactions, 1);
        self.checkpointed_seq = checkpointed;
        if head != self.head {
            self.head = head;
            self.head_tx.send_replace(head);
        }
        Ok(head)
    }

    /// Folds imported events into the state, the stream versions and the last time.
    fn fold_imported(&mut self, envelopes: &[Envelope]) {
        for env in envelopes {
            self.streams.insert(env.stream.clone(), env.stream_version);
            self.last_time = self.last_time.max(env.time);
            self.state.apply(env);
        }
    }

    /// The first result of a retried command, read back from the log.
    fn replay(
        &self,
        t: &Tables<'_>,
        record: CommandRecord,
    ) -> Result<Committed, AppendError<S::Rejection>> {
        let mut envelopes = Vec::new();
        for seq in record.first..=record.last {
            let env = t
                .events
                .get(seq)
                .ok()
                .flatten()
                .and_then(|v| StoredEvent::decode_row(seq, v.value()).ok())
                .and_then(|ev| ev.envelope().ok())
                .ok_or_else(|| {
                    AppendError::Unavailable(format!(
                        "event {seq} of a retried command is unreadable"
                    ))
                })?;
            envelopes.push(env);
        }
        Ok(Committed {
            envelopes,
            replayed: true,
            answer: None,
        })
    }
}

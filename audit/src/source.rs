//! Where an auditor reads the log from: a data dir opened read-only (also while the service
//! writes it: redb's single-writer mode lets readers follow its commits), or a running system
//! over NATS (`authkeys.log.read` for the events, `authkeys.log.checkpoints` for the signed
//! checkpoints). Both feed the same [`Verifier`] and the same envelope stream.
//!
//! The file source reads one snapshot (events and checkpoints of one commit). The NATS source
//! reads the checkpoints first and then events until a page comes back empty, so every
//! checkpoint it holds is covered by the events it reads.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use authkeys_events::{Envelope, Hash, LogId, Seq, chain_hash};
use authkeys_log::LogReader;
use ed25519_dalek::VerifyingKey;

use authkeys_protocol::log::{CheckpointsPage, LogReadRequest, RawPage, split_stored};
use authkeys_protocol::subject::{
    LOG_CHECKPOINTS as CHECKPOINTS_SUBJECT, LOG_READ as LOG_READ_SUBJECT,
};

use crate::Error;
use authkeys_projections::file_log;

use crate::verify::{AuditState, Prepared, Problem, Summary, Verifier, split_row};

/// Events asked for per `authkeys.log.read` request (the service's maximum).
pub const PAGE_EVENTS_MAX: u32 = authkeys_protocol::log::LOG_READ_EVENTS_MAX;
/// Longest one NATS request may take.
pub const REQUEST_WAIT_MS_MAX: u64 = 10_000;
/// How often progress is reported, in events.
pub const PROGRESS_EVERY_EVENTS: u64 = 16_384;

/// A verification's outcome: verified, or the first bad seq.
pub type Verdict = Result<Summary, Problem>;

/// Reports `(events done, events known)`; called now and then while verifying.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// The log file of a data dir (`DIR/log.redb`), or the path itself if it is a file.
pub fn log_path(data: &Path) -> std::path::PathBuf {
    if data.is_dir() {
        data.join("log.redb")
    } else {
        data.to_path_buf()
    }
}

fn open(path: &Path) -> Result<LogReader, Error> {
    if !path.exists() {
        return Err(Error::BadInput(format!(
            "no log file at {}",
            path.display()
        )));
    }
    LogReader::open(path).map_err(|e| Error::Unavailable(format!("open {}: {e}", path.display())))
}

fn storage(e: authkeys_log::LogError) -> Error {
    Error::Unavailable(format!("read the log file: {e}"))
}

/// Verifies the log file at `path` (see [`crate::verify`]). Blocking.
///
/// The work that needs no earlier event (the chain hash over the previous stored hash, the
/// decode, the event id: [`Prepared::new`]) runs on one thread per core, a batch of rows at a
/// time ([`authkeys_projections::file_log`]); this thread reads the rows and runs the checks that
/// go in order.
pub fn verify_file(
    path: &Path,
    key: &VerifyingKey,
    state: Option<&AuditState>,
    progress: Progress<'_>,
) -> Result<Verdict, Error> {
    verify_file_with(
        path,
        key,
        state,
        progress,
        file_log::workers(),
        file_log::BATCH_ROWS,
    )
}

/// [`verify_file`] with `workers` decoding threads (0: none, all in line) taking `batch_rows`
/// rows at a time; the verdict is the same for any of them (the tests hold it).
pub fn verify_file_with(
    path: &Path,
    key: &VerifyingKey,
    state: Option<&AuditState>,
    progress: Progress<'_>,
    workers: usize,
    batch_rows: usize,
) -> Result<Verdict, Error> {
    let reader = open(path)?;
    let known = reader.head().map(|h| h.seq).unwrap_or(0);
    let snap = reader.snapshot().map_err(storage)?;
    let Some(log_id) = snap.log_id().map_err(storage)? else {
        return Ok(Err(Problem {
            seq: 0,
            what: "the file records no log id".into(),
        }));
    };
    let rows = snap.checkpoint_rows().map_err(storage)?;
    let mut v = Verifier::new(key, log_id, &rows, state);
    let mut done = 0u64;
    let prepare = |prev: &Hash, at: u64, row: &[u8]| Prepared::new(&log_id, prev, at, row);
    let consume = |at: u64, row: &[u8], prepared: &Prepared| {
        done += 1;
        if done.is_multiple_of(PROGRESS_EVERY_EVENTS) {
            progress(done, known.max(done));
        }
        let (hash, body) = split_row(row);
        v.push_prepared(at, &hash, body, prepared)
    };
    file_log::for_each_prepared(&snap, 1, Hash::ZERO, workers, batch_rows, prepare, consume)
        .map_err(storage)?;
    progress(done, known.max(done));
    Ok(v.finish())
}

/// Calls `f` with every event of the log file from seq 1, decoded, chain-linked and checked
/// against its hash, until `f` breaks. Blocking. (Signatures are `verify`'s job.)
pub fn for_each_file_event(
    path: &Path,
    mut f: impl FnMut(&Envelope) -> ControlFlow<()>,
) -> Result<(), Error> {
    let reader = open(path)?;
    let snap = reader.snapshot().map_err(storage)?;
    let mut chain = Linker::default();
    let mut failed = None;
    snap.for_each_event(1, |at, row| {
        let Some((hash, body)) = row.split_first_chunk::<32>() else {
            failed = Some(Error::Corrupt(format!(
                "seq {at}: the stored row is too short"
            )));
            return ControlFlow::Break(());
        };
        match chain.link(at, &Hash(*hash), body) {
            Ok(env) => f(&env),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })
    .map_err(storage)?;
    failed.map_or(Ok(()), Err)
}

/// Checks that events come in seq order, each hash over its bytes and linked to the one before.
#[derive(Debug)]
struct Linker {
    seq: u64,
    hash: Hash,
}

impl Default for Linker {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: Hash::ZERO,
        }
    }
}

impl Linker {
    fn link(&mut self, at: u64, hash: &Hash, body: &[u8]) -> Result<Envelope, Error> {
        let bad =
            |what: &str| Error::Corrupt(format!("seq {at}: {what}; run `authkeys audit verify`"));
        let seq = authkeys_events::Seq::new(self.seq + 1).map_err(|_| bad("seq overflow"))?;
        if at != seq.get() {
            return Err(bad(&format!("event {seq} is missing")));
        }
        if chain_hash(&self.hash, seq, body) != *hash {
            return Err(bad(
                "the hash does not match the bytes and the event before",
            ));
        }
        let env = Envelope::decode_body(body, *hash).map_err(|e| bad(&e.to_string()))?;
        self.seq = seq.get();
        self.hash = *hash;
        Ok(env)
    }
}

/// `{fromSeq, limit}` for a page from `from` on.
fn page_request(from: u64) -> Vec<u8> {
    let from_seq = Seq::new(from).unwrap_or(Seq::FIRST);
    LogReadRequest {
        from_seq,
        limit: PAGE_EVENTS_MAX,
    }
    .to_bytes()
}

async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
) -> Result<bytes::Bytes, Error> {
    let wait = Duration::from_millis(REQUEST_WAIT_MS_MAX);
    let reply = tokio::time::timeout(wait, client.request(subject.to_owned(), body.into()))
        .await
        .map_err(|_| {
            Error::Unavailable(format!("{subject}: no reply in {REQUEST_WAIT_MS_MAX} ms"))
        })?
        .map_err(|e| Error::Unavailable(format!("{subject}: {e}")))?;
    Ok(reply.payload)
}

/// The log id and every checkpoint row of a running system.
async fn nats_checkpoints(
    client: &async_nats::Client,
) -> Result<(LogId, Vec<(u64, Vec<u8>)>), Error> {
    let mut rows = Vec::new();
    let mut from = 1u64;
    let mut log_id = None;
    loop {
        let body = page_request(from);
        let payload = request(client, CHECKPOINTS_SUBJECT, body).await?;
        let reply: CheckpointsPage = serde_json::from_slice(&payload).map_err(|e| {
            Error::Unavailable(format!("{CHECKPOINTS_SUBJECT}: malformed reply: {e}"))
        })?;
        if !reply.ok {
            return Err(Error::Unavailable(format!(
                "{CHECKPOINTS_SUBJECT} refused: {:?}",
                reply.error
            )));
        }
        log_id = log_id.or(reply.log_id);
        let Some(last) = reply.checkpoints.last().map(|c| c.at) else {
            break;
        };
        if last < from {
            return Err(Error::Corrupt(format!(
                "{CHECKPOINTS_SUBJECT} sent seq {last} when asked for {from} on"
            )));
        }
        for row in reply.checkpoints {
            let bytes = hex::decode(&row.bytes)
                .map_err(|e| Error::Corrupt(format!("checkpoint at {}: not hex: {e}", row.at)))?;
            rows.push((row.at, bytes));
        }
        from = last + 1;
    }
    let log_id =
        log_id.ok_or_else(|| Error::Unavailable(format!("{CHECKPOINTS_SUBJECT}: no log id")))?;
    Ok((log_id, rows))
}

/// Calls `f(position, hash, body)` for every event of a running system from seq 1, in order,
/// until `f` breaks or a page comes back empty.
async fn for_each_nats_raw(
    client: &async_nats::Client,
    progress: Progress<'_>,
    mut f: impl FnMut(u64, &Hash, &[u8]) -> Result<ControlFlow<()>, Error>,
) -> Result<(), Error> {
    let mut next = 1u64;
    loop {
        let body = page_request(next);
        let payload = request(client, LOG_READ_SUBJECT, body).await?;
        let reply: RawPage<'_> = serde_json::from_slice(&payload)
            .map_err(|e| Error::Unavailable(format!("{LOG_READ_SUBJECT}: malformed reply: {e}")))?;
        if !reply.ok {
            return Err(Error::Unavailable(format!(
                "{LOG_READ_SUBJECT} refused: {:?}",
                reply.error
            )));
        }
        if reply.events.is_empty() {
            return Ok(());
        }
        for raw in reply.events {
            let (hash, body) = split_stored(raw.get().as_bytes()).ok_or_else(|| {
                Error::Corrupt(format!(
                    "seq {next}: the envelope sent is not one stored body and its hash"
                ))
            })?;
            if f(next, &hash, &body)?.is_break() {
                return Ok(());
            }
            next += 1;
        }
        progress(next - 1, reply.head.max(next - 1));
    }
}

/// Verifies a running system's log over NATS (see [`crate::verify`]).
pub async fn verify_nats(
    client: &async_nats::Client,
    key: &VerifyingKey,
    state: Option<&AuditState>,
    progress: Progress<'_>,
) -> Result<Verdict, Error> {
    let (log_id, rows) = nats_checkpoints(client).await?;
    let mut v = Verifier::new(key, log_id, &rows, state);
    for_each_nats_raw(
        client,
        progress,
        |at, hash, body| Ok(v.push(at, hash, body)),
    )
    .await?;
    Ok(v.finish())
}

/// [`for_each_file_event`] over NATS.
pub async fn for_each_nats_event(
    client: &async_nats::Client,
    mut f: impl FnMut(&Envelope) -> ControlFlow<()>,
) -> Result<(), Error> {
    let mut chain = Linker::default();
    for_each_nats_raw(client, &mut |_, _| {}, |at, hash, body| {
        let env = chain.link(at, hash, body)?;
        Ok(f(&env))
    })
    .await
}

/// Where to read: a data dir (or log file), or a running system.
#[derive(Debug, Clone)]
pub enum Source {
    /// A data dir or a log file, opened read-only.
    File(std::path::PathBuf),
    /// A running system.
    Nats(async_nats::Client),
}

impl Source {
    /// Folds every event from seq 1, decoded and chain-linked, into `acc` with `f` until `f`
    /// breaks; returns `acc`.
    pub async fn fold<T, F>(&self, mut acc: T, mut f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnMut(&mut T, &Envelope) -> ControlFlow<()> + Send + 'static,
    {
        match self {
            Source::File(path) => {
                let path = log_path(path);
                tokio::task::spawn_blocking(move || {
                    for_each_file_event(&path, |env| f(&mut acc, env)).map(|()| acc)
                })
                .await
                .map_err(|e| Error::Unavailable(format!("read task failed: {e}")))?
            }
            Source::Nats(client) => {
                for_each_nats_event(client, |env| f(&mut acc, env)).await?;
                Ok(acc)
            }
        }
    }
}

//! Reading the log file directly, for a reader on the same machine (a rebuild, `audit verify`):
//! no `authkeys.log.read` round trips, and the work per row that needs no earlier row (the chain
//! hash over the previous stored hash, the decode) spread over the cores.
//!
//! [`for_each_prepared`] reads the rows of one snapshot in seq order on the calling thread, copies
//! them into batches of `batch_rows`, and hands each batch to one of `workers` threads, which
//! calls `prepare` on every row; the calling thread then gives each row and what was prepared of
//! it to `consume`, in seq order. A batch always goes back to the same worker, which drops what
//! was prepared in it before reusing it: memory is freed on the thread that allocated it (freeing
//! on another thread cost more than decoding there saved).
//!
//! [`rebuild_from_file`] is a view's rebuild from seq 1 this way, checking every row's hash and
//! link as [`crate::rebuild_from_log`] does over NATS.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc;

use anyhow::Context as _;
use authkeys_events::{Envelope, Hash, Seq, chain_hash};
use authkeys_log::{LogError, LogReader, Snapshot};

use crate::log_client::Chain;
use crate::store::Position;
use crate::views::View;

/// Rows a worker takes at a time.
pub const BATCH_ROWS: usize = 512;
/// Batches queued per worker, so that none waits while the calling thread consumes.
const BATCHES_PER_WORKER: usize = 3;
/// Worker threads at most.
pub const WORKERS_MAX: usize = 8;

/// Worker threads worth starting: one per core (at most [`WORKERS_MAX`]); on one core none (the
/// work is done in line).
pub fn workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores < 2 { 0 } else { cores.min(WORKERS_MAX) }
}

/// A stored row's hash and body (a row too short to hold a hash gets a zero hash, which no chain
/// hash equals).
pub fn split_row(row: &[u8]) -> (Hash, &[u8]) {
    match row.split_first_chunk::<32>() {
        Some((hash, body)) => (Hash(*hash), body),
        None => (Hash::ZERO, row),
    }
}

/// Calls `prepare(stored hash of the row before, stored at, row)` for every event row of `snap`
/// from `from` on (on `workers` threads; with fewer than 1, in line), and `consume(stored at,
/// row, prepared)` for each in seq order on this thread, until `consume` breaks. `prev` is the
/// stored hash of the row before `from` (zero for seq 1). See the module docs.
pub fn for_each_prepared<T, P, C>(
    snap: &Snapshot,
    from: u64,
    prev: Hash,
    workers: usize,
    batch_rows: usize,
    prepare: P,
    mut consume: C,
) -> Result<(), LogError>
where
    T: Send,
    P: Fn(&Hash, u64, &[u8]) -> T + Sync,
    C: FnMut(u64, &[u8], &T) -> ControlFlow<()>,
{
    if workers == 0 {
        let mut prev = prev;
        return snap.for_each_event(from, |at, row| {
            let prepared = prepare(&prev, at, row);
            prev = split_row(row).0;
            consume(at, row, &prepared)
        });
    }
    let batch_rows = batch_rows.max(1);
    let prepare = &prepare;
    std::thread::scope(|scope| {
        let mut lanes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (job_tx, job_rx) = mpsc::sync_channel::<Batch<T>>(BATCHES_PER_WORKER);
            let (done_tx, done_rx) = mpsc::sync_channel::<Batch<T>>(BATCHES_PER_WORKER);
            scope.spawn(move || {
                for mut batch in job_rx {
                    batch.prepare(prepare);
                    if done_tx.send(batch).is_err() {
                        return;
                    }
                }
            });
            lanes.push(Lane {
                jobs: job_tx,
                done: done_rx,
            });
        }
        let mut pipe = Pipeline {
            free: (0..workers * BATCHES_PER_WORKER)
                .map(|i| Batch::new(i % workers, batch_rows))
                .collect(),
            lanes,
            in_flight: VecDeque::new(),
            filling: None,
            batch_rows,
            last_hash: prev,
            stopped: false,
        };
        let read = snap.for_each_event(from, |at, row| pipe.add(at, row, &mut consume));
        pipe.finish(&mut consume);
        read
    })
}

/// Rows copied out of the read transaction, and what a worker prepared of them.
#[derive(Debug)]
struct Batch<T> {
    /// The worker it always goes to.
    lane: usize,
    bytes: Vec<u8>,
    /// `(stored at, end in bytes)` per row; a row starts where the one before ends.
    rows: Vec<(u64, usize)>,
    /// The stored hash of the row before the first.
    prev: Hash,
    prepared: Vec<T>,
}

impl<T> Batch<T> {
    fn new(lane: usize, rows: usize) -> Self {
        Self {
            lane,
            bytes: Vec::new(),
            rows: Vec::with_capacity(rows),
            prev: Hash::ZERO,
            prepared: Vec::with_capacity(rows),
        }
    }

    fn row(&self, i: usize) -> (u64, &[u8]) {
        let start = if i == 0 { 0 } else { self.rows[i - 1].1 };
        let (at, end) = self.rows[i];
        (at, &self.bytes[start..end])
    }

    /// On a worker: drops what was consumed, then prepares every row.
    fn prepare(&mut self, prepare: &impl Fn(&Hash, u64, &[u8]) -> T) {
        self.prepared.clear();
        let mut prev = self.prev;
        let mut start = 0;
        for &(at, end) in &self.rows {
            let row = &self.bytes[start..end];
            self.prepared.push(prepare(&prev, at, row));
            prev = split_row(row).0;
            start = end;
        }
    }
}

/// One worker's queues.
struct Lane<T> {
    jobs: mpsc::SyncSender<Batch<T>>,
    done: mpsc::Receiver<Batch<T>>,
}

/// The calling thread's side: fills batches, hands them out in turn, and consumes what comes
/// back in the same order.
struct Pipeline<T> {
    lanes: Vec<Lane<T>>,
    free: Vec<Batch<T>>,
    /// Lanes of the batches handed out, oldest first.
    in_flight: VecDeque<usize>,
    filling: Option<Batch<T>>,
    batch_rows: usize,
    last_hash: Hash,
    stopped: bool,
}

impl<T> Pipeline<T> {
    fn add(
        &mut self,
        at: u64,
        row: &[u8],
        consume: &mut impl FnMut(u64, &[u8], &T) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if self.filling.is_none() {
            if self.free.is_empty() {
                self.consume_oldest(consume);
            }
            let Some(mut batch) = self.free.pop() else {
                // A worker is gone (it panicked; the scope reports it).
                return ControlFlow::Break(());
            };
            batch.bytes.clear();
            batch.rows.clear();
            batch.prev = self.last_hash;
            self.filling = Some(batch);
        }
        let batch = self.filling.as_mut().expect("filled above");
        batch.bytes.extend_from_slice(row);
        batch.rows.push((at, batch.bytes.len()));
        self.last_hash = split_row(row).0;
        if batch.rows.len() == self.batch_rows {
            self.hand_out();
        }
        if self.stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn hand_out(&mut self) {
        let Some(batch) = self.filling.take() else {
            return;
        };
        let lane = batch.lane;
        match self.lanes[lane].jobs.send(batch) {
            Ok(()) => self.in_flight.push_back(lane),
            Err(mpsc::SendError(batch)) => {
                self.stopped = true;
                self.free.push(batch);
            }
        }
    }

    /// Takes the oldest batch back and consumes its rows in order (unless stopped). What was
    /// prepared stays in the batch, for its worker to drop.
    fn consume_oldest(&mut self, consume: &mut impl FnMut(u64, &[u8], &T) -> ControlFlow<()>) {
        let Some(lane) = self.in_flight.pop_front() else {
            return;
        };
        let Ok(batch) = self.lanes[lane].done.recv() else {
            self.stopped = true;
            return;
        };
        for (i, prepared) in batch.prepared.iter().enumerate() {
            if self.stopped {
                break;
            }
            let (at, row) = batch.row(i);
            if consume(at, row, prepared).is_break() {
                self.stopped = true;
            }
        }
        self.free.push(batch);
    }

    /// Hands out the last batch and consumes every batch still out.
    fn finish(&mut self, consume: &mut impl FnMut(u64, &[u8], &T) -> ControlFlow<()>) {
        self.hand_out();
        while !self.in_flight.is_empty() {
            self.consume_oldest(consume);
        }
    }
}

/// A row's envelope, decoded and its stored hash checked against the previous stored hash.
fn checked_envelope(prev: &Hash, at: u64, row: &[u8]) -> Result<Envelope, String> {
    let (hash, body) = split_row(row);
    let seq = Seq::new(at).map_err(|_| "seq 0 stored".to_owned())?;
    if chain_hash(prev, seq, body) != hash {
        return Err("the stored hash does not match the stored bytes and the event before".into());
    }
    Envelope::decode_body(body, hash).map_err(|e| e.to_string())
}

/// [`crate::rebuild_from_log`] from the log file at `path` (opened read-only, so the service
/// may keep writing it), up to `up_to` (or the head of the snapshot read). Blocking.
pub fn rebuild_from_file<V: View>(
    path: &Path,
    up_to: Option<u64>,
) -> anyhow::Result<(V, Position)> {
    rebuild_from_file_with(path, up_to, workers(), BATCH_ROWS)
}

/// [`rebuild_from_file`] with `workers` decoding threads taking `batch_rows` rows at a time.
pub fn rebuild_from_file_with<V: View>(
    path: &Path,
    up_to: Option<u64>,
    workers: usize,
    batch_rows: usize,
) -> anyhow::Result<(V, Position)> {
    let reader = LogReader::open(path).with_context(|| format!("open {}", path.display()))?;
    let snap = reader.snapshot().context("read the log file")?;
    let mut view = V::default();
    let mut chain = Chain(Position::START);
    let mut failed = None;
    for_each_prepared(
        &snap,
        1,
        Hash::ZERO,
        workers,
        batch_rows,
        checked_envelope,
        |at, _, env| {
            if up_to.is_some_and(|t| at > t) {
                return ControlFlow::Break(());
            }
            if at != chain.next_seq() {
                failed = Some(anyhow::anyhow!(
                    "event {} is missing from the log file (the next stored is {at})",
                    chain.next_seq()
                ));
                return ControlFlow::Break(());
            }
            let env = match env {
                Ok(env) if env.seq.get() == at && chain.links(env) => env,
                Ok(env) => {
                    failed = Some(anyhow::anyhow!(
                        "event {} does not link to the chain at {}",
                        env.seq,
                        chain.0.seq
                    ));
                    return ControlFlow::Break(());
                }
                Err(e) => {
                    failed = Some(anyhow::anyhow!("event {at} of the log file: {e}"));
                    return ControlFlow::Break(());
                }
            };
            view.apply(env);
            chain.advance(env);
            ControlFlow::Continue(())
        },
    )
    .context("read the log file")?;
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(t) = up_to {
        anyhow::ensure!(
            chain.0.seq >= t,
            "the log ends at {} before seq {t}",
            chain.0.seq
        );
    }
    view.take_changes();
    Ok((view, chain.0))
}

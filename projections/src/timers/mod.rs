//! The expiry timers: the projection that turns time into events (R02, R08, R13, R14).
//!
//! Two tasks share one [`Schedule`] file (`timers.redb`):
//! - a [`Worker`] over [`ScheduleSink`] consumes the event stream like every view (durable
//!   consumer from checkpoint + 1, backfill from the log, rebuild from seq 1) and keeps the
//!   schedule: what falls due when (see [`schedule`] for the rules);
//! - the firing loop sleeps until the earliest deadline or until the worker commits (a new event
//!   may bring an earlier one), then sends what is due as `authkeys.cmd.timer.fire` commands —
//!   at most `fire_batch_max` at once, the rest on the next turn. The command service re-checks
//!   each against the log's state and appends `KeyExpired`, `NodeExpired` or
//!   `NodeDeleted{ephemeral-inactive}` only if it is still due as scheduled, so a deadline that
//!   fires twice (a crash between the answer and the schedule's update) appends once. The
//!   command service records no idempotency for timer commands (their request ids are
//!   predictable, so whoever sent an id first would otherwise answer for the real firing): only
//!   a change of the state (a revoke, a renewal, a reconnect) cancels a firing.
//!
//! Entries that fell due while the timers were down are simply due at start. Memory does not
//! grow with the schedule: it lives in redb (with a bounded page cache) and the loop holds one
//! batch. `authkeys.timers.status` reports the schedule's seq and size and what was fired, for
//! the gateway's `/metrics`.

pub mod schedule;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use authkeys_events::Clock;
use authkeys_events::{Envelope, Timestamp};
use authkeys_protocol::nats::{self, NatsError};
use authkeys_protocol::status::TimersStatus;
use authkeys_protocol::subject;
use authkeys_protocol::{self as wire, ErrorCode, Reply, TimerReply};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectionConfig;
use authkeys_protocol::log::LogClient;

use crate::log_client::Chain;
use crate::store::{Position, StoreError};
use crate::worker::{Sink, Worker, WorkerError, open_retrying};
pub use schedule::{DueEntry, Outcome, Schedule};

/// The schedule's file in the data dir.
pub const FILE_NAME: &str = "timers.redb";
/// SPEC §5: `--ephemeral-inactivity-timeout` defaults to 30 minutes.
pub const EPHEMERAL_INACTIVITY_DEFAULT: Duration = Duration::from_secs(30 * 60);

/// Counters of the firing loop.
#[derive(Debug, Default)]
struct FireStats {
    fired: AtomicU64,
    last_late_ms: AtomicU64,
}

/// How the timers run. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct TimersConfig {
    /// The event consumer's settings; the schedule lives in its `data_dir`.
    pub projection: ProjectionConfig,
    /// R02: an ephemeral node disconnected this long is removed.
    pub ephemeral_inactivity: Duration,
    /// Most commands in flight at once (and entries read per turn).
    pub fire_batch_max: usize,
    /// Longest wait for the command service's answer to one command.
    pub command_wait_ms_max: u64,
    /// After a refused early fire, the soonest the entry is tried again.
    pub retry_wait_ms_min: u64,
}

impl TimersConfig {
    /// Production values, with the schedule in `data_dir`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            projection: ProjectionConfig::new(data_dir),
            ephemeral_inactivity: EPHEMERAL_INACTIVITY_DEFAULT,
            fire_batch_max: 256,
            command_wait_ms_max: 5_000,
            retry_wait_ms_min: 100,
        }
    }
}

/// The schedule as a [`Sink`]: each committed batch wakes the firing loop.
#[derive(Debug)]
pub struct ScheduleSink {
    schedule: Arc<Schedule>,
    wake: Arc<Notify>,
}

impl Sink for ScheduleSink {
    const NAME: &'static str = "timers";

    async fn commit(&mut self, batch: Vec<Envelope>, tip: Position) -> Result<(), WorkerError> {
        let schedule = Arc::clone(&self.schedule);
        tokio::task::spawn_blocking(move || schedule.apply(&batch, tip))
            .await
            .context("schedule commit task")??;
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets the schedule and applies the log from seq 1, a page per transaction (memory
    /// stays one page).
    async fn rebuild(&mut self, log: &LogClient) -> Result<Position, WorkerError> {
        let schedule = Arc::clone(&self.schedule);
        tokio::task::spawn_blocking(move || schedule.reset())
            .await
            .context("schedule reset task")??;
        let mut chain = Chain(Position::START);
        loop {
            let page = log.read(chain.next_seq(), u64::MAX).await?;
            if page.events.is_empty() {
                break;
            }
            for env in &page.events {
                if !chain.links(env) {
                    let why = format!(
                        "event {} does not link to the chain at {}",
                        env.seq, chain.0.seq
                    );
                    return Err(anyhow::anyhow!(why).into());
                }
                chain.advance(env);
            }
            self.commit(page.events, chain.0).await?;
        }
        Ok(chain.0)
    }
}

/// The timers role (`authkeys timers`, and part of `authkeys serve`): the schedule opened, its
/// consumer and the firing loop ready to run.
#[derive(Debug)]
pub struct Timers {
    client: Client,
    schedule: Arc<Schedule>,
    worker: Worker<ScheduleSink>,
    wake: Arc<Notify>,
    cfg: TimersConfig,
    clock: Clock,
}

impl Timers {
    /// Opens the schedule in `cfg.projection.data_dir`; `clock` decides what is due.
    pub async fn build(client: Client, cfg: TimersConfig, clock: Clock) -> anyhow::Result<Self> {
        anyhow::ensure!(
            cfg.fire_batch_max > 0,
            "timers config: fire_batch_max must be ≥ 1"
        );
        let path = cfg.projection.data_dir.join(FILE_NAME);
        let inactivity = cfg.ephemeral_inactivity;
        let schedule = Arc::new(
            open_retrying(&cfg.projection, &path, move |p: &Path| {
                Schedule::open(p, inactivity)
            })
            .await?,
        );
        let cp = {
            let s = Arc::clone(&schedule);
            tokio::task::spawn_blocking(move || s.checkpoint())
                .await
                .context("schedule checkpoint task")??
        };
        tracing::info!(
            seq = cp.seq,
            inactivity_ms = inactivity.as_millis(),
            "timers loaded"
        );
        let wake = Arc::new(Notify::new());
        let sink = ScheduleSink {
            schedule: Arc::clone(&schedule),
            wake: Arc::clone(&wake),
        };
        // Nobody asks the timers to rebuild; the worker still rebuilds when the log does not
        // link.
        let (_no_rebuilds, rebuild_rx) = mpsc::channel(1);
        let worker = Worker::new(client.clone(), &cfg.projection, sink, cp, rebuild_rx);
        Ok(Self {
            client,
            schedule,
            worker,
            wake,
            cfg,
            clock,
        })
    }

    /// Runs the consumer, the firing loop and the status subject until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stats = Arc::new(FireStats::default());
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(self.worker.run(stop.clone()));
        let status = serve_status(
            self.client.clone(),
            Arc::clone(&self.schedule),
            Arc::clone(&stats),
            stop.clone(),
        );
        tasks.spawn(async move { status.await.map_err(anyhow::Error::from) });
        let (client, schedule, wake) = (self.client, self.schedule, self.wake);
        let fire = fire_loop(
            client,
            schedule,
            wake,
            self.cfg,
            self.clock,
            stats,
            stop.clone(),
        );
        tasks.spawn(fire);
        crate::worker::until_first_error(tasks, &stop, "timers").await
    }
}

/// Answers `authkeys.timers.status` until `shutdown`.
async fn serve_status(
    client: Client,
    schedule: Arc<Schedule>,
    stats: Arc<FireStats>,
    shutdown: CancellationToken,
) -> Result<(), NatsError> {
    let read = move || {
        Ok::<_, StoreError>(TimersStatus {
            seq: schedule.checkpoint()?.seq,
            scheduled: schedule.counts()?.due,
            fired: stats.fired.load(Ordering::Relaxed),
            last_late_ms: stats.last_late_ms.load(Ordering::Relaxed),
        })
    };
    let (subject, group) = (subject::TIMERS_STATUS, subject::TIMERS_STATUS_QUEUE_GROUP);
    nats::serve_status(&client, subject, group, shutdown, "timers status", read).await
}

/// Sends what is due, sleeping until the next deadline or a commit. See the module docs.
async fn fire_loop(
    client: Client,
    schedule: Arc<Schedule>,
    wake: Arc<Notify>,
    cfg: TimersConfig,
    clock: Clock,
    stats: Arc<FireStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut failures: u32 = 0;
    loop {
        let now = clock.now();
        let s = Arc::clone(&schedule);
        let batch = cfg.fire_batch_max;
        let (entries, next) = tokio::task::spawn_blocking(move || s.due(now, batch))
            .await
            .context("schedule read task")??;
        if entries.is_empty() {
            let sleep = next.map_or(Duration::MAX, |at| until(now, at));
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep.min(Duration::from_secs(86_400))) => {}
            }
            continue;
        }
        let late = entries
            .first()
            .map_or(0, |e| now.unix_ms().saturating_sub(e.deadline.unix_ms()));
        stats
            .last_late_ms
            .store(u64::try_from(late).unwrap_or(0), Ordering::Relaxed);
        let fired = futures::future::join_all(
            entries
                .iter()
                .map(|e| fire(&client, e, Duration::from_millis(cfg.command_wait_ms_max))),
        )
        .await;
        let now = clock.now();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut unanswered = 0usize;
        for (entry, result) in entries.into_iter().zip(fired) {
            match result {
                Ok(Some(outcome)) => {
                    let outcome = match outcome {
                        Outcome::RetryAt(at) => Outcome::RetryAt(
                            at.max(
                                Timestamp::from_unix_ms(now.unix_ms().saturating_add(
                                    i64::try_from(cfg.retry_wait_ms_min).unwrap_or(0),
                                ))
                                .unwrap_or(now),
                            ),
                        ),
                        done => done,
                    };
                    outcomes.push((entry, outcome));
                }
                Ok(None) => unanswered += 1,
                Err(e) => {
                    unanswered += 1;
                    tracing::debug!(
                        request = entry.request.request_id,
                        error = format!("{e:#}"),
                        "timer command not answered"
                    );
                }
            }
        }
        stats
            .fired
            .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
        let s = Arc::clone(&schedule);
        tokio::task::spawn_blocking(move || s.finish(&outcomes))
            .await
            .context("schedule update task")??;
        if unanswered == 0 {
            failures = 0;
            continue;
        }
        if failures == 0 {
            tracing::warn!(unanswered, "timer commands not answered; retrying");
        }
        failures = failures.saturating_add(1);
        let exp = failures.saturating_sub(1).min(10);
        let wait = Duration::from_millis(
            cfg.projection
                .retry_wait_ms_min
                .saturating_mul(1 << exp)
                .min(cfg.projection.retry_wait_ms_max),
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long from `now` until `at` (zero if past).
fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(at.unix_ms().saturating_sub(now.unix_ms())).unwrap_or(0))
}

/// Sends one entry's command. `Ok(Some)`: what to do with the entry; `Ok(None)`: try again
/// later (the service was unavailable); `Err`: no answer.
async fn fire(
    client: &Client,
    entry: &DueEntry,
    wait: Duration,
) -> anyhow::Result<Option<Outcome>> {
    let payload = serde_json::to_vec(&entry.request).context("encode timer request")?;
    let msg = tokio::time::timeout(wait, client.request(wire::subject::TIMER, payload.into()))
        .await
        .context("timed out")?
        .context("request")?;
    let reply: Reply<TimerReply> =
        serde_json::from_slice(&msg.payload).context("decode timer reply")?;
    Ok(match reply {
        Reply::Ok(r) => {
            tracing::debug!(
                request = entry.request.request_id,
                fired = r.fired,
                "timer fired"
            );
            Some(Outcome::Done)
        }
        Reply::Err(e) => match e.error.code {
            ErrorCode::NotDue => {
                let at = e
                    .error
                    .message
                    .rsplit(' ')
                    .next()
                    .and_then(|t| Timestamp::parse(t).ok())
                    .unwrap_or(entry.deadline);
                Some(Outcome::RetryAt(at))
            }
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited => None,
            // The request itself is wrong, or names a tailnet that is gone: retrying cannot
            // help. Logged, and the entry is dropped. (A `conflict` cannot come from another
            // request under the same id: timer commands record no idempotency.)
            code => {
                tracing::error!(request = entry.request.request_id, %code, message = e.error.message, "timer command refused; entry dropped");
                Some(Outcome::Done)
            }
        },
    })
}

//! Where the views live and what they listen to, with every limit named (unit last).

use std::path::PathBuf;

use authkeys_protocol::subject;

use crate::views::keys::RETENTION_DAYS_DEFAULT;

/// The configuration of the projection workers and their query responders.
#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// Holds `view-<name>.redb`, one file per view.
    pub data_dir: PathBuf,
    /// The JetStream stream of events (SPEC: `AUTHKEYS_EVENTS`).
    pub stream: String,
    /// Event subjects are `<subject_prefix>.<tailnetId>.<Type>` (SPEC: `authkeys.events`).
    pub subject_prefix: String,
    /// The log's read subject (SPEC: `authkeys.log.read`): backfill, tail checks and rebuilds.
    pub log_read_subject: String,
    /// The log file, when it is on this machine (as in `authkeys serve`): a rebuild reads it
    /// directly (`file_log::rebuild_from_file`, about twice as fast as paging
    /// `authkeys.log.read`). `None` (the default): rebuilds page the log over NATS.
    pub log_file: Option<PathBuf>,
    /// Query subjects are `<query_prefix>.<view>.<what>` (`authkeys.query`).
    pub query_prefix: String,
    /// Queue group of the query responders, so several processes can serve.
    pub queue_group: String,
    /// Durable consumers are named `<consumer_prefix><view>` (`view-machines`). Each worker
    /// (with its own checkpoint) needs its own name: two processes with separate data dirs must
    /// use different prefixes.
    pub consumer_prefix: String,
    /// R12: how long revoked, used and expired keys stay on the keys page.
    pub retention_days: u32,
    /// Devices' MagicDNS names (`--dns-suffix`); the command service must use the same.
    pub dns: authkeys_protocol::MagicDns,
    /// Longest a query with `minSeq` waits for its view to reach it before `unavailable`.
    pub read_wait_ms_max: u64,
    /// Most messages pulled, applied and committed in one transaction.
    pub batch_events_max: usize,
    /// Most events asked of `authkeys.log.read` per request (the server caps it at 1 000).
    pub log_read_events_max: u32,
    /// Longest one `authkeys.log.read` request may take.
    pub log_read_wait_ms_max: u64,
    /// After this long without a message, the worker asks the log whether it missed the tail
    /// (JetStream may lose the last messages); also bounds how stale a quiet view can be.
    pub idle_check_ms: u64,
    /// Lifetime of one pull request; the server's heartbeats come at a quarter of it.
    pub pull_expires_ms: u64,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait_ms: u64,
    /// Messages the consumer hands out without their ack (≥ `batch_events_max`).
    pub ack_pending_max: i64,
    /// First wait after a NATS failure; doubles per consecutive failure…
    pub retry_wait_ms_min: u64,
    /// …up to this.
    pub retry_wait_ms_max: u64,
    /// Longest opening a view file may keep retrying while a crashed predecessor still holds it.
    pub open_wait_ms_max: u64,
    /// Query requests one process answers at once.
    pub requests_in_flight_max: usize,
    /// Largest query request payload.
    pub request_bytes_max: usize,
    /// Longest shutdown waits for queries already taken to be answered.
    pub shutdown_wait_ms_max: u64,
}

impl ProjectionConfig {
    /// Production values, with the views' files in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            stream: subject::EVENTS_STREAM.to_owned(),
            subject_prefix: subject::EVENTS_PREFIX.to_owned(),
            log_read_subject: subject::LOG_READ.to_owned(),
            log_file: None,
            query_prefix: subject::QUERY_PREFIX.to_owned(),
            queue_group: subject::QUERY_QUEUE_GROUP.to_owned(),
            consumer_prefix: "view-".to_owned(),
            retention_days: RETENTION_DAYS_DEFAULT,
            dns: authkeys_protocol::MagicDns::default(),
            read_wait_ms_max: 2_000,
            batch_events_max: 512,
            log_read_events_max: 1_000,
            log_read_wait_ms_max: 5_000,
            idle_check_ms: 1_000,
            pull_expires_ms: 10_000,
            ack_wait_ms: 30_000,
            ack_pending_max: 4_096,
            retry_wait_ms_min: 50,
            retry_wait_ms_max: 2_000,
            open_wait_ms_max: 10_000,
            requests_in_flight_max: 256,
            request_bytes_max: 64 * 1024,
            shutdown_wait_ms_max: 5_000,
        }
    }

    /// The query subject of `what`, e.g. `keys.list` → `authkeys.query.keys.list`.
    pub fn query_subject(&self, what: &str) -> String {
        format!("{}.{what}", self.query_prefix)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch_events_max > 0 && self.log_read_events_max > 0,
            "projection config: batch_events_max and log_read_events_max must be ≥ 1"
        );
        anyhow::ensure!(
            i64::try_from(self.batch_events_max).is_ok_and(|b| b <= self.ack_pending_max),
            "projection config: ack_pending_max must be ≥ batch_events_max"
        );
        anyhow::ensure!(
            self.retry_wait_ms_min > 0 && self.retry_wait_ms_max >= self.retry_wait_ms_min,
            "projection config: need 0 < retry_wait_ms_min ≤ retry_wait_ms_max"
        );
        anyhow::ensure!(
            self.idle_check_ms > 0 && self.pull_expires_ms >= 1_000,
            "projection config: idle_check_ms ≥ 1 and pull_expires_ms ≥ 1000"
        );
        anyhow::ensure!(
            self.requests_in_flight_max > 0,
            "projection config: requests_in_flight_max must be ≥ 1"
        );
        Ok(())
    }
}

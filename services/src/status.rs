//! `authkeys.status`: the command service's counters and the relay's position, for `/metrics`.
//!
//! The gateway holds no state of the command service, so it asks: request `{}` (any payload),
//! reply [`Status`]. Served in a queue group beside the commands; best effort for the asker.

use async_nats::Client;
use authkeys_log::{Aggregate, Log};
use authkeys_projections::responder::answer_each;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// The subject.
pub const SUBJECT: &str = "authkeys.status";
/// Its queue group.
pub const QUEUE_GROUP: &str = "authkeys-status";

/// What the command service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    /// The last committed seq.
    pub head: u64,
    /// The last seq the relay durably recorded as published (up to a flush interval behind).
    pub relay_cursor: u64,
    /// Commands answered since the service started.
    pub commands: u64,
    /// Events appended since the service started.
    pub events: u64,
    /// Write transactions (fsyncs) since the service started.
    pub transactions: u64,
    /// Checkpoints written since the service started.
    pub checkpoints: u64,
}

/// Reads the status of `log`.
pub fn status<S: Aggregate>(log: &Log<S>) -> anyhow::Result<Status> {
    let s = log.stats();
    Ok(Status {
        head: log.head().seq,
        relay_cursor: log.relay_cursor()?,
        commands: s.commands.load(Ordering::Relaxed),
        events: s.events.load(Ordering::Relaxed),
        transactions: s.transactions.load(Ordering::Relaxed),
        checkpoints: s.checkpoints.load(Ordering::Relaxed),
    })
}

/// Answers `authkeys.status` until `shutdown`.
pub async fn serve<S: Aggregate>(
    log: Log<S>,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sub = client
        .queue_subscribe(SUBJECT, QUEUE_GROUP.to_owned())
        .await?;
    answer_each(&client, sub, &shutdown, |_| {
        let log = log.clone();
        async move {
            match tokio::task::spawn_blocking(move || status(&log)).await {
                Ok(Ok(s)) => serde_json::to_vec(&s).ok().map(Into::into),
                Ok(Err(e)) => {
                    tracing::warn!(error = format!("{e:#}"), "read the status");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "status task");
                    None
                }
            }
        }
    })
    .await;
    Ok(())
}

//! `authkeys.status`: the command service's counters and the relay's position, for `/metrics`.
//!
//! The gateway holds no state of the command service, so it asks: request `{}` (any payload),
//! reply [`CommandStatus`]. Served in a queue group beside the commands; best effort for the
//! asker.

use std::sync::atomic::Ordering;

use async_nats::Client;
use authkeys_events::Aggregate;
use authkeys_log::{Log, LogError};
use authkeys_protocol::nats;
use authkeys_protocol::status::CommandStatus;
use authkeys_protocol::subject;
use tokio_util::sync::CancellationToken;

/// Reads the status of `log`.
pub fn status<S: Aggregate>(log: &Log<S>) -> Result<CommandStatus, LogError> {
    let s = log.stats();
    Ok(CommandStatus {
        head: log.head().seq,
        relay_cursor: log.relay_cursor()?,
        commands: s.commands.load(Ordering::Relaxed),
        events: s.events.load(Ordering::Relaxed),
        transactions: s.transactions.load(Ordering::Relaxed),
        checkpoints: s.checkpoints.load(Ordering::Relaxed),
    })
}

/// Answers `authkeys.status` until `shutdown`. Returns `Err` only if it cannot subscribe.
pub async fn serve<S: Aggregate>(
    log: Log<S>,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (subject, group) = (subject::STATUS, subject::STATUS_QUEUE_GROUP);
    let read = move || status(&log);
    nats::serve_status(&client, subject, group, shutdown, "command status", read).await?;
    Ok(())
}

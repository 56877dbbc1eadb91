//! `authkeys.status`: the command service's counters, the relay's position and the writer's
//! health, for `/metrics` and `/healthz`.
//!
//! The gateway holds no state of the command service, so it asks: request `{}` (any payload),
//! reply [`CommandStatus`]. Served in a queue group beside the commands; best effort for the
//! asker.
//!
//! # A failed writer
//!
//! When a commit fails (disk full, an I/O error, the file made read-only) the log's writer
//! stops for good, because its memory may be ahead of the file: every later command answers
//! `unavailable`. The status then carries `writerFailure` (the reason), so that `/healthz` can
//! answer 503 with it instead of looking healthy. **Recovery:** fix the cause (free space, make
//! the data dir writable), then restart the command role (`authkeys command`, or
//! `authkeys serve`): opening the log verifies the whole chain from the file and continues from
//! the last committed event; every acknowledged command is in it.

use std::sync::atomic::Ordering;

use async_nats::Client;
use authkeys_events::Aggregate;
use authkeys_log::{Log, LogError};
use authkeys_protocol::nats;
use authkeys_protocol::status::CommandStatus;
use authkeys_protocol::subject;
use tokio_util::sync::CancellationToken;

/// Reads the status of `log`. Once the writer has failed, the status is still answered (with
/// the failure) even if the file cannot be read any more; the relay cursor is then 0.
pub fn status<S: Aggregate>(log: &Log<S>) -> Result<CommandStatus, LogError> {
    let s = log.stats();
    let mut writer_failure = log.writer_failure();
    let relay_cursor = match (log.relay_cursor(), &mut writer_failure) {
        (Ok(cursor), _) => cursor,
        (Err(e), Some(why)) => {
            why.push_str(&format!("; reading the relay cursor failed too: {e}"));
            0
        }
        (Err(e), None) => return Err(e),
    };
    Ok(CommandStatus {
        head: log.head().seq,
        relay_cursor,
        commands: s.commands.load(Ordering::Relaxed),
        events: s.events.load(Ordering::Relaxed),
        transactions: s.transactions.load(Ordering::Relaxed),
        checkpoints: s.checkpoints.load(Ordering::Relaxed),
        writer_failure,
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

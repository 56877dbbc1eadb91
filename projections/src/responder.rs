//! The one-request-at-a-time NATS responder of small, cheap subjects (`authkeys.status`,
//! `authkeys.timers.status`, `authkeys.log.checkpoints`): take a request, compute its reply,
//! publish it (bounded), until shutdown. Busy subjects (queries, log reads, commands) answer
//! concurrently with their own bounded loops.

use std::future::Future;
use std::time::Duration;

use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Longest sending one reply may take (the client's buffer is full while NATS is away).
pub const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// Answers the requests of `sub` in turn until `shutdown` (or the subscription ends).
/// `answer(payload)` gives the reply's bytes, or `None` to leave the request unanswered (the
/// asker's wait ends it; the reason is for `answer` to log). A reply not sent within
/// [`PUBLISH_WAIT`] is dropped with a warning.
pub async fn answer_each<F, Fut>(
    client: &Client,
    mut sub: Subscriber,
    shutdown: &CancellationToken,
    mut answer: F,
) where
    F: FnMut(Bytes) -> Fut,
    Fut: Future<Output = Option<Bytes>>,
{
    loop {
        let msg = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            msg = sub.next() => match msg {
                Some(m) => m,
                None => break,
            },
        };
        let Some(reply_to) = msg.reply else { continue };
        let Some(body) = answer(msg.payload).await else {
            continue;
        };
        match tokio::time::timeout(PUBLISH_WAIT, client.publish(reply_to, body)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(subject = %msg.subject, error = %e, "publish a reply"),
            Err(_) => {
                tracing::warn!(subject = %msg.subject, "reply not sent in time (NATS unreachable?)")
            }
        }
    }
    sub.unsubscribe().await.ok();
}

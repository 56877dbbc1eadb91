//! `GET /admin/events`: the console's live updates, as server-sent events.
//!
//! The relay publishes every committed event on `authkeys.events.<tailnetId>.<Type>`; a core NATS
//! subscription to the session's tailnet receives them too. Each becomes one SSE message,
//! `id: <seq>`, `event: change`, `data: {"seq", "type"}` (never the event's data: a Member must
//! not learn more than that something changed). The page refetches the lists it shows (reads
//! wait for that seq: read-your-writes), and refetches everything whenever the stream opens —
//! the first time and after every reconnect (`EventSource` retries by itself) — so a change made
//! while it was disconnected is never lost: the lists are state, not a sum of deltas.
//!
//! Bounds: [`STREAMS_MAX`] streams at once (503 past it); a stream ends when its session signs
//! out or idles out (checked every [`RECHECK_MS`], when the token is re-authenticated too), and
//! when the gateway shuts down.

use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::Deserialize;

use super::session::{Signed, authenticate};
use crate::AppState;
use crate::error::ApiError;

/// Live streams open at once.
pub const STREAMS_MAX: usize = 256;
/// How often a stream checks that its session is still signed in and its token still valid.
pub const RECHECK_MS: u64 = 15_000;
/// How soon a browser reconnects after the stream drops.
const RETRY_MS: u64 = 1_000;
/// Keep-alive comment interval (proxies close silent connections).
const KEEPALIVE_MS: u64 = 20_000;

/// What the stream reads of an envelope.
#[derive(Deserialize)]
struct Head {
    seq: u64,
    #[serde(rename = "type")]
    event_type: String,
}

/// `GET /admin/events`.
pub(crate) async fn events(
    State(shared): State<AppState>,
    signed: Signed,
) -> Result<Response, ApiError> {
    let authed = authenticate(&shared, &signed.token).await?;
    let permit = std::sync::Arc::clone(&shared.console.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many live streams; try again"))?;
    let subject = format!(
        "{}.{}.>",
        authkeys_protocol::subject::EVENTS_PREFIX,
        authed.caller.tailnet
    );
    let subscriber = shared
        .nats
        .client()
        .subscribe(subject)
        .await
        .map_err(|e| ApiError::internal("subscribe to the events", e))?;
    let hello = Event::default()
        .event("open")
        .retry(Duration::from_millis(RETRY_MS))
        .data(authed.head.to_string());
    let state = Stream {
        shared: std::sync::Arc::clone(&shared),
        signed,
        subscriber,
        recheck: tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_millis(RECHECK_MS),
            Duration::from_millis(RECHECK_MS),
        ),
        _permit: permit,
    };
    let changes = futures::stream::unfold(state, |mut s| async move {
        s.next_change().await.map(|event| (event, s))
    });
    let stream = futures::stream::once(async { hello })
        .chain(changes)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(KEEPALIVE_MS)))
        .into_response())
}

/// One open stream.
struct Stream {
    shared: AppState,
    signed: Signed,
    subscriber: async_nats::Subscriber,
    recheck: tokio::time::Interval,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Stream {
    /// The next SSE message; `None` ends the stream.
    async fn next_change(&mut self) -> Option<Event> {
        let closing = self.shared.console.closing.clone();
        loop {
            tokio::select! {
                () = closing.cancelled() => return None,
                _ = self.recheck.tick() => {
                    if !self.shared.console.alive(&self.signed.id)
                        || authenticate(&self.shared, &self.signed.token).await.is_err()
                    {
                        return None;
                    }
                }
                message = self.subscriber.next() => {
                    let message = message?;
                    // Not ours to judge: a payload that is not an envelope is skipped.
                    let Ok(head) = serde_json::from_slice::<Head>(&message.payload) else {
                        continue;
                    };
                    let data = serde_json::json!({ "seq": head.seq, "type": head.event_type });
                    return Some(
                        Event::default()
                            .id(head.seq.to_string())
                            .event("change")
                            .data(data.to_string()),
                    );
                }
            }
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").finish_non_exhaustive()
    }
}

//! The gateway's only way out: NATS request/reply to the command service (writes), the
//! projections' queries (reads) and `authkeys.log.read` (the log head, for read-your-writes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, RequestErrorKind};
use authkeys_protocol::log::LogReadRequest;
use authkeys_protocol::query::{Answer, Query};
use authkeys_protocol::subject;
use authkeys_protocol::{Reply, True};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::metrics::Metrics;

#[derive(Debug, Deserialize)]
struct HeadReply {
    #[allow(dead_code)]
    ok: True,
    head: u64,
}

/// A NATS connection with the gateway's bounds and metrics.
#[derive(Debug, Clone)]
pub struct Nats {
    client: Client,
    metrics: Arc<Metrics>,
    request_wait: Duration,
}

impl Nats {
    /// Wraps `client`; every request waits at most `request_wait` for its answer.
    pub fn new(client: Client, metrics: Arc<Metrics>, request_wait: Duration) -> Self {
        Self {
            client,
            metrics,
            request_wait,
        }
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `request` and reads `{ok:true,…}` as `T` or `{ok:false,error}` as an [`ApiError`].
    pub async fn request<T: DeserializeOwned>(
        &self,
        subject: &'static str,
        request: &impl Serialize,
    ) -> Result<T, ApiError> {
        let payload =
            serde_json::to_vec(request).map_err(|e| ApiError::internal("encode a request", e))?;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            self.request_wait,
            self.client.request(subject, payload.into()),
        )
        .await;
        self.metrics.nats(subject, started.elapsed());
        let msg = match answer {
            Err(_) => {
                return Err(ApiError::unavailable(format!(
                    "{subject} did not answer in time"
                )));
            }
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => {
                        ApiError::unavailable(format!("no service answers {subject}"))
                    }
                    RequestErrorKind::TimedOut => {
                        ApiError::unavailable(format!("{subject} did not answer in time"))
                    }
                    _ => {
                        tracing::warn!(error = %e, subject, "NATS request failed");
                        ApiError::unavailable("the message bus is unavailable")
                    }
                });
            }
            Ok(Ok(msg)) => msg,
        };
        let reply: Reply<T> = serde_json::from_slice(&msg.payload)
            .map_err(|e| ApiError::internal(&format!("read the answer of {subject}"), e))?;
        reply.into_result().map_err(ApiError::from_reply)
    }

    /// Asks a view (waiting for it to reach the query's `minSeq`); returns its answer.
    pub async fn query<Q: Query>(&self, query: &Q) -> Result<Q::Answer, ApiError> {
        let answer: Q::Answer = self.request(Q::SUBJECT, query).await?;
        self.metrics.saw_view_seq(answer.seq());
        Ok(answer)
    }

    /// The log's head: the seq of the last committed event (0 for an empty log).
    pub async fn head(&self) -> Result<u64, ApiError> {
        // Asked from past the head, the log answers the head alone.
        let past_the_head = LogReadRequest {
            from_seq: authkeys_events::Seq::new(u64::MAX).expect("not zero"),
            limit: 1,
        };
        let reply: HeadReply = self.request(subject::LOG_READ, &past_the_head).await?;
        self.metrics.saw_head(reply.head);
        Ok(reply.head)
    }
}

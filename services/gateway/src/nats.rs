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

/// Why a request has no usable answer.
enum NoAnswer {
    /// Nobody answered (no responder, or none in time): worth asking again if it changes nothing.
    Silent(ApiError),
    /// An answer that is an error, or a failure of the bus.
    Failed(ApiError),
}

impl NoAnswer {
    fn into_error(self) -> ApiError {
        match self {
            Self::Silent(e) | Self::Failed(e) => e,
        }
    }
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
        self.send(subject, payload.into(), self.request_wait)
            .await
            .map_err(NoAnswer::into_error)
    }

    /// One request within `wait`: the answer, or why there was none.
    async fn send<T: DeserializeOwned>(
        &self,
        subject: &'static str,
        payload: bytes::Bytes,
        wait: Duration,
    ) -> Result<T, NoAnswer> {
        let bytes = self.send_raw(subject, payload, wait).await?;
        let reply: Reply<T> = serde_json::from_slice(&bytes).map_err(|e| {
            NoAnswer::Failed(ApiError::internal(
                &format!("read the answer of {subject}"),
                e,
            ))
        })?;
        reply
            .into_result()
            .map_err(|e| NoAnswer::Failed(ApiError::from_reply(e)))
    }

    /// One request within `wait`: the answer's bytes as sent, or why there was none.
    async fn send_raw(
        &self,
        subject: &'static str,
        payload: bytes::Bytes,
        wait: Duration,
    ) -> Result<bytes::Bytes, NoAnswer> {
        let started = Instant::now();
        let answer = tokio::time::timeout(wait, self.client.request(subject, payload)).await;
        self.metrics.nats(subject, started.elapsed());
        let msg = match answer {
            Err(_) => {
                return Err(NoAnswer::Silent(ApiError::unavailable(format!(
                    "{subject} did not answer in time"
                ))));
            }
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => NoAnswer::Silent(ApiError::unavailable(
                        format!("no service answers {subject}"),
                    )),
                    RequestErrorKind::TimedOut => NoAnswer::Silent(ApiError::unavailable(format!(
                        "{subject} did not answer in time"
                    ))),
                    _ => {
                        tracing::warn!(error = %e, subject, "NATS request failed");
                        NoAnswer::Failed(ApiError::unavailable("the message bus is unavailable"))
                    }
                });
            }
            Ok(Ok(msg)) => msg,
        };
        Ok(msg.payload)
    }

    /// Asks a view (waiting for it to reach the query's `minSeq`); returns its answer. A query
    /// changes nothing, so one that got no answer (its replica died with it, SPEC §7) is asked
    /// again, once, of whichever replica the queue group picks: each try has half the wait.
    pub async fn query<Q: Query>(&self, query: &Q) -> Result<Q::Answer, ApiError> {
        let payload: bytes::Bytes = serde_json::to_vec(query)
            .map_err(|e| ApiError::internal("encode a query", e))?
            .into();
        let per_try = self.request_wait / 2;
        // A `Bytes` clone shares the buffer: the retry sends the same bytes without a copy.
        let answer: Q::Answer = match self.send(Q::SUBJECT, payload.clone(), per_try).await {
            Err(NoAnswer::Silent(_)) => self.send(Q::SUBJECT, payload, per_try).await,
            other => other,
        }
        .map_err(NoAnswer::into_error)?;
        self.metrics.saw_view_seq(answer.seq());
        Ok(answer)
    }

    /// [`Nats::query`] answering the bytes the view sent, for an answer too large to be worth
    /// decoding into objects only to encode them again (a device list): the caller reads it,
    /// refusals included, and reports its seq with [`Nats::saw_view_seq`].
    pub async fn query_raw<Q: Query>(&self, query: &Q) -> Result<bytes::Bytes, ApiError> {
        let payload: bytes::Bytes = serde_json::to_vec(query)
            .map_err(|e| ApiError::internal("encode a query", e))?
            .into();
        let per_try = self.request_wait / 2;
        match self.send_raw(Q::SUBJECT, payload.clone(), per_try).await {
            Err(NoAnswer::Silent(_)) => self.send_raw(Q::SUBJECT, payload, per_try).await,
            other => other,
        }
        .map_err(NoAnswer::into_error)
    }

    /// Records the seq a view answered at (for `/metrics`), as [`Nats::query`] does.
    pub fn saw_view_seq(&self, seq: u64) {
        self.metrics.saw_view_seq(seq);
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

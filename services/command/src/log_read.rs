//! `authkeys.log.read`: pages of the log, by request/reply, for backfill, rebuilds and auditors.
//!
//! Why beside the relay: JetStream is fan-out and may be trimmed or rebuilt; the log is the
//! record. A projection that starts empty, or an auditor that wants the chain, reads the log
//! itself through this handler (SPEC §5).
//!
//! Request: `{"fromSeq": <integer ≥ 1>, "limit": <integer 1..=limit_max>}`, nothing else.
//! Reply: `{"ok": true, "events": [<envelope>, …], "head": <seq>}` with the envelopes' stored
//! bytes written verbatim (they are what the hash chain covers, so an auditor can check them),
//! or `{"ok": false, "error": {"code": "bad_request", "message": "…"}}` naming the bad field.
//! `events` holds up to `limit` events from `fromSeq` on, fewer when the next one would make
//! the reply larger than `reply_bytes_max` (the server's `max_payload` at most); it is empty
//! when `fromSeq` is past the head. The caller asks again from the last seq + 1.
//!
//! Handlers run in a queue group, so several instances share the subject; each instance
//! answers at most `requests_in_flight_max` requests at a time. Reads of redb are blocking but
//! short, so they run on the blocking pool. Nothing a requester sends can panic or stop the loop.
//!
//! Check both ends: the events of a page must have contiguous seqs from `fromSeq`, and each
//! event's hash must match its bytes and link to the event before (one extra event is read for
//! the first link).

use anyhow::{Context as _, bail};
use async_nats::Client;
use authkeys_events::{Aggregate, Hash, Seq, chain_hash};
use authkeys_log::Log;
use authkeys_protocol::log::{
    CHECKPOINTS_PAGE_MAX, CheckpointsPage, LOG_READ_EVENTS_MAX, LogReadRequest, PAGE_FRAME_BYTES,
    page_bytes,
};
use authkeys_protocol::nats::{Responder, ResponderLimits};
use authkeys_protocol::{ErrorCode, ErrorReply, reply_bytes, subject};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// How the handler is set up. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct LogReadConfig {
    /// The request subject (`authkeys.log.read`).
    pub subject: String,
    /// The queue group every instance joins.
    pub queue_group: String,
    /// Largest `limit` a request may ask for.
    pub limit_max: u32,
    /// Largest reply; the server's `max_payload` lowers it further.
    pub reply_bytes_max: usize,
    /// Requests one instance answers at once.
    pub requests_in_flight_max: usize,
    /// Longest sending one reply may take (the client's buffer is full while NATS is away).
    pub reply_wait_ms_max: u64,
    /// Longest shutdown waits for requests already received to be answered.
    pub shutdown_wait_ms_max: u64,
}

impl Default for LogReadConfig {
    fn default() -> Self {
        Self {
            subject: subject::LOG_READ.to_owned(),
            queue_group: subject::LOG_READ_QUEUE_GROUP.to_owned(),
            limit_max: LOG_READ_EVENTS_MAX,
            reply_bytes_max: 1024 * 1024,
            requests_in_flight_max: 16,
            reply_wait_ms_max: 5_000,
            shutdown_wait_ms_max: 5_000,
        }
    }
}

/// Serves `subject` with the default limits until `shutdown`. See the module docs.
pub async fn serve<S: Aggregate>(
    log: Log<S>,
    client: Client,
    subject: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = LogReadConfig {
        subject,
        ..LogReadConfig::default()
    };
    serve_with(log, client, cfg, shutdown).await
}

/// [`serve`] with explicit limits. Returns `Err` only if it cannot subscribe; on shutdown it
/// stops taking requests and answers those already received (bounded), then returns `Ok`.
pub async fn serve_with<S: Aggregate>(
    log: Log<S>,
    client: Client,
    cfg: LogReadConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if cfg.limit_max == 0 || cfg.requests_in_flight_max == 0 || cfg.reply_bytes_max == 0 {
        bail!("log read config: limit_max, reply_bytes_max and requests_in_flight_max must be ≥ 1");
    }
    let limits = ResponderLimits {
        requests_in_flight_max: cfg.requests_in_flight_max,
        reply_wait_ms_max: cfg.reply_wait_ms_max,
        shutdown_wait_ms_max: cfg.shutdown_wait_ms_max,
    };
    let responder =
        Responder::subscribe(&client, [cfg.subject.clone()], &cfg.queue_group, limits).await?;
    tracing::info!(subject = %cfg.subject, "serving log reads");
    let server_max = client.max_payload();
    let bytes_max = if server_max == 0 {
        cfg.reply_bytes_max
    } else {
        cfg.reply_bytes_max.min(server_max)
    };
    let limit_max = cfg.limit_max;
    responder
        .serve(shutdown, move |msg| {
            let log = log.clone();
            async move { Some(answer(log, limit_max, bytes_max, &msg.payload).await) }
        })
        .await;
    Ok(())
}

/// Serves `authkeys.log.checkpoints` until `shutdown`, one request at a time (auditors are few):
/// request `{"fromSeq", "limit"}` as for log reads; reply a [`CheckpointsPage`]. Returns `Err`
/// only if it cannot subscribe.
pub async fn serve_checkpoints<S: Aggregate>(
    log: Log<S>,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let responder = Responder::subscribe(
        &client,
        [subject::LOG_CHECKPOINTS.to_owned()],
        subject::LOG_READ_QUEUE_GROUP,
        ResponderLimits::ONE_AT_A_TIME,
    )
    .await?;
    responder
        .serve(shutdown, move |msg| {
            let log = log.clone();
            async move {
                let request = match LogReadRequest::parse(&msg.payload, CHECKPOINTS_PAGE_MAX) {
                    Ok(r) => r,
                    Err(m) => return Some(refusal(ErrorCode::BadRequest, m)),
                };
                let reader = log.clone();
                let (from, limit) = (request.from_seq, request.limit as usize);
                let read = move || reader.checkpoints_from(from, limit);
                let page = match tokio::task::spawn_blocking(read).await {
                    Ok(Ok(all)) => CheckpointsPage::of(log.log_id(), &all, request),
                    Ok(Err(e)) => return Some(unreadable("checkpoints read", &e)),
                    Err(e) => return Some(unreadable("checkpoints read task", &e)),
                };
                serde_json::to_vec(&page).ok().map(Bytes::from)
            }
        })
        .await;
    Ok(())
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Bytes {
    Bytes::from(reply_bytes(&ErrorReply::new(code, message)))
}

/// Logs an unexpected read failure here, once, and answers `unavailable`.
fn unreadable(what: &str, e: &dyn std::fmt::Display) -> Bytes {
    tracing::error!(error = %e, "{what} failed");
    refusal(ErrorCode::Unavailable, "the log could not be read")
}

/// The reply to one request payload: a page, or an error naming what is wrong.
async fn answer<S: Aggregate>(
    log: Log<S>,
    limit_max: u32,
    bytes_max: usize,
    payload: &[u8],
) -> Bytes {
    let request = match LogReadRequest::parse(payload, limit_max) {
        Ok(r) => r,
        Err(message) => return refusal(ErrorCode::BadRequest, message),
    };
    match tokio::task::spawn_blocking(move || read_page(&log, request, bytes_max)).await {
        Ok(Ok(Page::Events(bytes))) => Bytes::from(bytes),
        Ok(Ok(Page::TooLarge { seq, bytes })) => refusal(
            ErrorCode::TooLarge,
            format!("event {seq} is {bytes} bytes, more than a reply may carry ({bytes_max})"),
        ),
        Ok(Err(e)) => unreadable("log read", &format!("{e:#}")),
        Err(e) => unreadable("log read task", &e),
    }
}

/// What a read produced.
enum Page {
    /// The whole reply.
    Events(Vec<u8>),
    /// The first event alone does not fit in a reply.
    TooLarge { seq: u64, bytes: usize },
}

/// Reads and checks a page, and writes the reply with the envelopes' bytes verbatim.
fn read_page<S: Aggregate>(
    log: &Log<S>,
    request: LogReadRequest,
    bytes_max: usize,
) -> anyhow::Result<Page> {
    let from = request.from_seq.get();
    // The event before `from`, if any, carries the hash the first one must link to.
    let (read_from, mut prev) = if from == 1 {
        (Seq::FIRST, Some(Hash::ZERO))
    } else {
        (Seq::new(from - 1).expect("from > 1"), None)
    };
    let read_limit = usize::try_from(request.limit)
        .context("limit fits in usize")?
        .saturating_add(usize::from(from > 1));
    let mut events = log
        .read(read_from, read_limit)
        .with_context(|| format!("read events from {from}"))?
        .into_iter();
    let head = log.head().seq;
    if from > 1 {
        // Far past the head the log has no event `from - 1` either: an empty page.
        let Some(before) = events.next() else {
            return Ok(Page::Events(page_bytes(&[], head)));
        };
        if before.seq.get() != from - 1 {
            bail!("log read from {} returned seq {}", from - 1, before.seq);
        }
        prev = Some(before.hash);
    }

    let mut out: Vec<Vec<u8>> = Vec::with_capacity(events.len());
    let mut size = PAGE_FRAME_BYTES;
    let mut last = 0;
    for (ev, expected) in events.zip(from..) {
        let seq = ev.seq.get();
        if seq != expected {
            bail!("log read returned seq {seq} where {expected} was due");
        }
        let prev_hash = prev.expect("set for the first event and after each");
        if chain_hash(&prev_hash, ev.seq, &ev.body) != ev.hash {
            bail!("event {seq}: hash does not match its bytes and the event before");
        }
        prev = Some(ev.hash);
        let json = ev.to_json();
        let added = json.len() + usize::from(!out.is_empty());
        if size + added > bytes_max {
            if out.is_empty() {
                return Ok(Page::TooLarge {
                    seq,
                    bytes: json.len(),
                });
            }
            break;
        }
        size += added;
        last = seq;
        out.push(json);
    }
    // An event read here may be committed a moment before the head moves: never report less.
    Ok(Page::Events(page_bytes(&out, head.max(last))))
}

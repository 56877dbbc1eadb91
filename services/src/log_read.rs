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

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::Client;
use authkeys_events::{Hash, Seq, chain_hash};
use authkeys_log::{Aggregate, Log};
use authkeys_projections::responder::answer_each;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The subject (SPEC §5).
pub const SUBJECT: &str = "authkeys.log.read";

/// The subject of the log's signed checkpoints, for auditors over NATS: request
/// `{"fromSeq", "limit"}` as for [`SUBJECT`]; reply `{"ok": true, "logId": "…", "checkpoints":
/// [{"at": <seq>, "bytes": "<hex of the stored checkpoint>"}, …]}` with up to `limit` checkpoints
/// from `fromSeq` on (empty past the last one).
pub const CHECKPOINTS_SUBJECT: &str = "authkeys.log.checkpoints";

/// Checkpoints in one [`CHECKPOINTS_SUBJECT`] reply at most (~260 bytes each).
pub const CHECKPOINTS_PAGE_MAX: u32 = 1_000;

/// How the handler is set up. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct LogReadConfig {
    /// The request subject (SPEC: `authkeys.log.read`).
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
            subject: "authkeys.log.read".to_owned(),
            queue_group: "authkeys.log.read".to_owned(),
            limit_max: 1_000,
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
    let mut sub = client
        .queue_subscribe(cfg.subject.clone(), cfg.queue_group.clone())
        .await
        .with_context(|| format!("subscribe to {}", cfg.subject))?;
    tracing::info!(subject = %cfg.subject, "serving log reads");
    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(cfg.requests_in_flight_max));
    let mut tasks = JoinSet::new();

    loop {
        // A permit first: with every permit taken, no more requests are taken off the
        // subscription until an answer is sent.
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => p,
        };
        let Ok(permit) = permit else {
            break; // The semaphore is never closed.
        };
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            m = sub.next() => m,
        };
        let Some(message) = message else {
            tracing::warn!(subject = %cfg.subject, "log read subscription closed");
            break;
        };
        spawn_answer(&mut tasks, permit, &log, &client, &cfg, message);
        // Reap finished answers so the set stays as small as the work in flight.
        while tasks.try_join_next().is_some() {}
    }

    // Stop taking requests; answer what the client already holds, within the bound.
    let wait = Duration::from_millis(cfg.shutdown_wait_ms_max);
    let finish = async {
        if sub.drain().await.is_ok() {
            while let Some(message) = sub.next().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                spawn_answer(&mut tasks, permit, &log, &client, &cfg, message);
            }
        }
        while tasks.join_next().await.is_some() {}
    };
    if tokio::time::timeout(wait, finish).await.is_err() {
        tracing::warn!(
            wait_ms = cfg.shutdown_wait_ms_max,
            "log reads still pending at shutdown were dropped"
        );
    }
    Ok(())
}

/// Serves [`CHECKPOINTS_SUBJECT`] until `shutdown`, one request at a time (auditors are few).
/// Returns `Err` only if it cannot subscribe.
pub async fn serve_checkpoints<S: Aggregate>(
    log: Log<S>,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sub = client
        .queue_subscribe(CHECKPOINTS_SUBJECT, CHECKPOINTS_SUBJECT.to_owned())
        .await
        .with_context(|| format!("subscribe to {CHECKPOINTS_SUBJECT}"))?;
    answer_each(&client, sub, &shutdown, |payload| {
        let log = log.clone();
        async move {
            let request = match parse(&payload, CHECKPOINTS_PAGE_MAX) {
                Ok(r) => r,
                Err(m) => return Some(error_reply("bad_request", &m)),
            };
            let reader = log.clone();
            Some(
                match tokio::task::spawn_blocking(move || reader.checkpoints()).await {
                    Ok(Ok(all)) => checkpoints_reply(log.log_id(), &all, request),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "checkpoints read failed");
                        error_reply("unavailable", "the checkpoints could not be read")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "checkpoints read task failed");
                        error_reply("unavailable", "the checkpoints could not be read")
                    }
                },
            )
        }
    })
    .await;
    Ok(())
}

/// Answers one request on its own task, holding `permit` until the reply is sent.
fn spawn_answer<S: Aggregate>(
    tasks: &mut JoinSet<()>,
    permit: OwnedSemaphorePermit,
    log: &Log<S>,
    client: &Client,
    cfg: &Arc<LogReadConfig>,
    message: async_nats::Message,
) {
    let Some(reply_to) = message.reply.clone() else {
        tracing::debug!("log read request without a reply subject ignored");
        return;
    };
    let (log, client, cfg) = (log.clone(), client.clone(), Arc::clone(cfg));
    tasks.spawn(async move {
        let reply = answer(&log, &client, &cfg, message.payload).await;
        let wait = Duration::from_millis(cfg.reply_wait_ms_max);
        match tokio::time::timeout(wait, client.publish(reply_to, reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not send a log read reply"),
            Err(_) => tracing::warn!(
                wait_ms = cfg.reply_wait_ms_max,
                "log read reply not sent in time (NATS unreachable?)"
            ),
        }
        drop(permit);
    });
}

/// The reply to one request payload: a page, or an error naming what is wrong.
async fn answer<S: Aggregate>(
    log: &Log<S>,
    client: &Client,
    cfg: &LogReadConfig,
    payload: Bytes,
) -> Bytes {
    let request = match parse(&payload, cfg.limit_max) {
        Ok(r) => r,
        Err(message) => return error_reply("bad_request", &message),
    };
    let server_max = client.max_payload();
    let bytes_max = if server_max == 0 {
        cfg.reply_bytes_max
    } else {
        cfg.reply_bytes_max.min(server_max)
    };
    let log = log.clone();
    let page = tokio::task::spawn_blocking(move || read_page(&log, request, bytes_max)).await;
    match page {
        Ok(Ok(Page::Events(bytes))) => bytes,
        Ok(Ok(Page::TooLarge { seq, bytes })) => error_reply(
            "too_large",
            &format!("event {seq} is {bytes} bytes, more than a reply may carry ({bytes_max})"),
        ),
        Ok(Err(e)) => {
            tracing::error!(error = format!("{e:#}"), "log read failed");
            error_reply("unavailable", "the log could not be read")
        }
        Err(e) => {
            tracing::error!(error = %e, "log read task failed");
            error_reply("unavailable", "the log could not be read")
        }
    }
}

/// A valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    from_seq: Seq,
    limit: u32,
}

/// Parses a request; the error names the field and what it must be.
fn parse(payload: &[u8], limit_max: u32) -> Result<Request, String> {
    let shape =
        format!("expected {{\"fromSeq\": <integer ≥ 1>, \"limit\": <integer 1..={limit_max}>}}");
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the request is not valid JSON ({e}); {shape}"))?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "the request must be a JSON object with fromSeq and limit; {shape}"
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "fromSeq" && *k != "limit") {
        let name: String = unknown.chars().take(64).collect();
        return Err(format!("unknown field `{name}`; {shape}"));
    }
    let from_seq = field(&fields, "fromSeq", u64::MAX, "an integer ≥ 1")?;
    let limit = field(
        &fields,
        "limit",
        u64::from(limit_max),
        &format!("an integer from 1 to {limit_max}"),
    )?;
    Ok(Request {
        from_seq: Seq::new(from_seq).expect("field() refuses 0"),
        limit: u32::try_from(limit).expect("field() caps it at limit_max, a u32"),
    })
}

/// An integer field in `1..=max`; the error names the field and says what it must be (`what`).
fn field(fields: &Map<String, Value>, name: &str, max: u64, what: &str) -> Result<u64, String> {
    let value = fields
        .get(name)
        .ok_or_else(|| format!("{name} is required: {what}"))?;
    match value.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(format!("{name} is {n}; it must be {what}")),
        None => Err(format!("{name} must be {what}")),
    }
}

/// What a read produced.
enum Page {
    /// The whole reply.
    Events(Bytes),
    /// The first event alone does not fit in a reply.
    TooLarge { seq: u64, bytes: usize },
}

/// `{"ok":true,"events":[`
const PAGE_OPEN: &[u8] = b"{\"ok\":true,\"events\":[";
/// `],"head":` + at most 20 digits + `}`.
const PAGE_CLOSE_BYTES_MAX: usize = 9 + 20 + 1;

/// Reads and checks a page, and writes the reply with the envelopes' bytes verbatim.
fn read_page<S: Aggregate>(
    log: &Log<S>,
    request: Request,
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
            return Ok(Page::Events(page_reply(&[], head)));
        };
        if before.seq.get() != from - 1 {
            bail!("log read from {} returned seq {}", from - 1, before.seq);
        }
        prev = Some(before.hash);
    }

    let mut out: Vec<Vec<u8>> = Vec::with_capacity(events.len());
    let mut size = PAGE_OPEN.len() + PAGE_CLOSE_BYTES_MAX;
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
    Ok(Page::Events(page_reply(&out, head.max(last))))
}

/// `{"ok":true,"logId":…,"checkpoints":[{"at":…,"bytes":…},…]}`: up to `limit` from `fromSeq`.
fn checkpoints_reply(
    log_id: authkeys_events::LogId,
    all: &[authkeys_events::Checkpoint],
    request: Request,
) -> Bytes {
    let page: Vec<Value> = all
        .iter()
        .filter(|cp| cp.seq >= request.from_seq)
        .take(request.limit as usize)
        .map(|cp| json!({"at": cp.seq.get(), "bytes": hex::encode(cp.to_bytes())}))
        .collect();
    let reply = json!({"ok": true, "logId": log_id, "checkpoints": page});
    Bytes::from(reply.to_string())
}

/// `{"ok":true,"events":[e1,e2,…],"head":N}` from the envelopes' bytes.
fn page_reply(events: &[Vec<u8>], head: u64) -> Bytes {
    let body: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = Vec::with_capacity(PAGE_OPEN.len() + body + PAGE_CLOSE_BYTES_MAX);
    out.extend_from_slice(PAGE_OPEN);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"],\"head\":");
    out.extend_from_slice(head.to_string().as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

fn error_reply(code: &str, message: &str) -> Bytes {
    let reply = json!({"ok": false, "error": {"code": code, "message": message}});
    Bytes::from(reply.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Request, String> {
        parse(s.as_bytes(), 1_000)
    }

    #[test]
    fn parse_accepts_a_valid_request() {
        assert_eq!(
            parse_str(r#"{"fromSeq": 3, "limit": 1000}"#),
            Ok(Request {
                from_seq: Seq::new(3).expect("nonzero"),
                limit: 1000
            })
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases = [
            ("{}", "fromSeq"),
            (r#"{"fromSeq": 0, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": -1, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": 1.5, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": "1", "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": 1}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 0}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 1001}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 99999999999999999999}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 1, "x": 1}"#, "`x`"),
            (r#""junk""#, "fromSeq"),
            ("junk", "fromSeq"),
            ("", "fromSeq"),
            ("[1,2]", "fromSeq"),
        ];
        for (input, field) in cases {
            let err = parse_str(input).expect_err(input);
            assert!(err.contains(field), "{input}: {err}");
        }
    }

    #[test]
    fn page_reply_is_valid_json_with_the_bytes_in_place() {
        let events = vec![br#"{"a":1}"#.to_vec(), br#"{"b":[2]}"#.to_vec()];
        let reply = page_reply(&events, 7);
        assert_eq!(
            &reply[..],
            br#"{"ok":true,"events":[{"a":1},{"b":[2]}],"head":7}"#
        );
        let empty = page_reply(&[], u64::MAX);
        let v: Value = serde_json::from_slice(&empty).expect("valid JSON");
        assert_eq!(v["head"], json!(u64::MAX));
        assert!(empty.len() <= PAGE_OPEN.len() + PAGE_CLOSE_BYTES_MAX);
    }
}

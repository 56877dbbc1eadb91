//! `GET /tailnet/{tailnet}/logging/configuration?start=&end=[&actor=…][&target=…][&event=…]`:
//! the configuration audit log in Tailscale's shape, `{"version": "1.1", "tailnet": <name>,
//! "logs": [record, …]}`, records as [`authkeys_audit::records`] derives them from the log, each
//! with its event's `seq` and `hash`. Owners, Admins and Auditors only (403 otherwise); `start`
//! and `end` are required RFC 3339 instants, `start` ≤ `end`, both inclusive (400 otherwise; a
//! repeated one counts once, the first, as Go's `url.Values.Get` reads it). `actor`, `target`
//! and `event` are Tailscale's filters, each repeatable, applied here to the window's records
//! ([`authkeys_audit::records::Filter`] says how they match; no value is refused). Other
//! parameters are ignored.
//!
//! Derived from the log itself, over `authkeys.log.read` (checked page by page), not from a view:
//! every record is then exactly an event an auditor can verify. The cost is kept to the window:
//! the gateway keeps, across requests, the names records need (user logins, machine names, key
//! descriptions: immutable per id, or kept by seq, so names folded up to the head are right for
//! any window) and
//! a sparse index of event times (one entry per page of the log); event times never go
//! backwards, so a request reads from the last indexed page that starts before `start` until the
//! first event after `end`. The first request after a start folds the whole log once (about as
//! fast as a projection rebuild); later ones read only what was appended since, plus the window.
//! Memory: the names (one per user, node, key, token, and one per change of the key duration,
//! whose record shows the value before) and at most `head / page` index entries per tailnet.
//!
//! # Per tailnet, bounded (issue 11, finding 9)
//!
//! The state kept between requests is **per tailnet** ([`AuditCache::acquire`]): each tailnet's
//! names, index and fold position behind a lock of its own, so a slow or large read of one
//! tailnet's audit log (paging the log over NATS) never holds a lock another tailnet's read
//! needs. Two reads of the same tailnet take turns (the second waits at most
//! [`AUDIT_WAIT_MS_MAX`], then 503), and at most [`AUDIT_READS_MAX`] tailnets page the log at
//! once (a tailnet waits for its own turn before it takes one of those slots, so one tailnet's
//! auditors hold at most one). A tailnet's names and index hold only its own events.

use authkeys_audit::records::{Filter, Record, Recorder};
use authkeys_events::Timestamp;
use authkeys_protocol::log::LogClient;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, Semaphore, SemaphorePermit};

use super::error::ApiError;
use super::{AppState, Authed, json, resolved_tailnet};

/// Events per `authkeys.log.read` page (the service's maximum).
const PAGE_EVENTS_MAX: u64 = 1_000;
/// Records one answer may hold (after the filters); a wider window is refused with 400 (narrow
/// it).
pub const RECORDS_MAX: usize = 50_000;
/// Longest wait for one page of the log.
const PAGE_WAIT_MS_MAX: u64 = 10_000;

/// Tailnets whose audit logs are read (the log paged over NATS) at the same time, at most.
pub const AUDIT_READS_MAX: usize = 4;
/// Longest a read waits for its tailnet's turn and then for a slot; 503 after.
pub const AUDIT_WAIT_MS_MAX: u64 = 30_000;

/// What the gateway keeps between requests, per tailnet. See the module docs.
#[derive(Debug)]
pub(crate) struct AuditCache {
    /// Each tailnet's folded state behind its own lock; the map's lock is held only to find or
    /// insert an entry, never across an await.
    tailnets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Folded>>>>,
    /// The slots of [`AUDIT_READS_MAX`].
    reads: Semaphore,
    /// The bound of each wait.
    wait: Duration,
}

impl Default for AuditCache {
    fn default() -> Self {
        Self::new(AUDIT_READS_MAX, Duration::from_millis(AUDIT_WAIT_MS_MAX))
    }
}

/// One tailnet's turn to read the log: its folded state, and one of the slots.
#[derive(Debug)]
pub(crate) struct AuditTurn<'a> {
    folded: OwnedMutexGuard<Folded>,
    _slot: SemaphorePermit<'a>,
}

impl AuditCache {
    fn new(reads_max: usize, wait: Duration) -> Self {
        Self {
            tailnets: Mutex::default(),
            reads: Semaphore::new(reads_max),
            wait,
        }
    }

    /// Waits (bounded) for `tailnet`'s turn, then for a slot; 503 past either bound.
    pub(crate) async fn acquire(&self, tailnet: &str) -> Result<AuditTurn<'_>, ApiError> {
        let entry = {
            let mut map = self.tailnets.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(tailnet.to_owned()).or_default())
        };
        let busy =
            || ApiError::unavailable("the audit log is being read by other requests; try again");
        let folded = tokio::time::timeout(self.wait, entry.lock_owned())
            .await
            .map_err(|_| busy())?;
        let slot = tokio::time::timeout(self.wait, self.reads.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        Ok(AuditTurn {
            folded,
            _slot: slot,
        })
    }
}

/// One tailnet's state (its own events only).
#[derive(Debug, Default)]
struct Folded {
    names: Recorder,
    /// The next seq to fold.
    next: u64,
    /// `(seq, time)` of this tailnet's first event in each page that holds one, in seq order:
    /// every event before `seq` is no later than `time`.
    index: Vec<(u64, Timestamp)>,
}

/// `?start=&end=` and the filters.
#[derive(Debug, Default)]
struct Window {
    start: Option<String>,
    end: Option<String>,
    filter: Filter,
}

impl Window {
    /// From the query's pairs, percent-decoded, in order.
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let mut w = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "start" => {
                    w.start.get_or_insert(value);
                }
                "end" => {
                    w.end.get_or_insert(value);
                }
                _ => {
                    w.filter.add(&name, &value);
                }
            }
        }
        w
    }
}

fn instant(name: &str, value: Option<&str>) -> Result<Timestamp, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} is required: an RFC 3339 time, e.g. 2026-11-28T00:00:00Z"
        ))
    })?;
    Timestamp::parse(value)
        .map_err(|e| ApiError::bad_request(format!("{name} must be an RFC 3339 time: {e}")))
}

/// `GET /tailnet/{tailnet}/logging/configuration`.
pub(crate) async fn configuration(
    State(shared): State<AppState>,
    authed: Authed,
    Path(path): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let window = Window::parse(pairs);
    authed.scope(authkeys_events::Scope::LogsConfigurationRead)?;
    let info = resolved_tailnet(&shared, &authed, &path).await?;
    // Users: Owners, Admins and Auditors. OAuth clients: the scope above.
    if authed.caller.scopes.is_none()
        && !matches!(authed.caller.role.as_str(), "owner" | "admin" | "auditor")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only Owners, Admins and Auditors may read the configuration audit log",
        ));
    }
    let start = instant("start", window.start.as_deref())?;
    let end = instant("end", window.end.as_deref())?;
    if end < start {
        return Err(ApiError::bad_request("end must not be before start"));
    }
    let log = LogClient::new(
        shared.nats.client().clone(),
        authkeys_protocol::subject::LOG_READ.to_owned(),
        PAGE_EVENTS_MAX as u32,
        Duration::from_millis(PAGE_WAIT_MS_MAX),
    );
    let tailnet = authed.caller.tailnet.as_str();
    let mut turn = shared.audit.acquire(tailnet).await?;
    catch_up(&log, &mut turn.folded, tailnet).await?;
    let logs = window_records(
        &log,
        &mut turn.folded,
        tailnet,
        (start, end),
        &window.filter,
    )
    .await?;
    drop(turn);
    Ok(json(&serde_json::json!({
        "version": "1.1",
        "tailnet": info.name,
        "logs": logs,
    })))
}

fn unavailable(e: anyhow::Error) -> ApiError {
    tracing::warn!(
        error = format!("{e:#}"),
        "log read for the audit log failed"
    );
    ApiError::unavailable("the log could not be read; try again")
}

/// Folds the names of every event of `tailnet` not folded yet, up to the head, indexing the
/// pages that hold its events.
async fn catch_up(log: &LogClient, f: &mut Folded, tailnet: &str) -> Result<(), ApiError> {
    f.next = f.next.max(1);
    loop {
        let page = log
            .read(f.next, PAGE_EVENTS_MAX)
            .await
            .map_err(unavailable)?;
        if page.events.is_empty() {
            return Ok(());
        }
        let mut ours = page
            .events
            .iter()
            .filter(|env| env.tailnet.as_str() == tailnet)
            .peekable();
        if let Some(first) = ours.peek() {
            f.index.push((first.seq.get(), first.time));
        }
        for env in ours {
            f.names.fold(env);
        }
        f.next += page.events.len() as u64;
    }
}

/// The records of `tailnet` with `start ≤ eventTime ≤ end` that pass `filter`, in log order.
async fn window_records(
    log: &LogClient,
    f: &mut Folded,
    tailnet: &str,
    (start, end): (Timestamp, Timestamp),
    filter: &Filter,
) -> Result<Vec<Record>, ApiError> {
    // Every event before the last indexed event earlier than `start` is earlier than `start`.
    let from = match f.index.partition_point(|(_, t)| *t < start) {
        0 => 1,
        i => f.index[i - 1].0,
    };
    let mut out = Vec::new();
    let mut next = from;
    while next < f.next {
        let page = log.read(next, PAGE_EVENTS_MAX).await.map_err(unavailable)?;
        if page.events.is_empty() {
            break;
        }
        next += page.events.len() as u64;
        for env in &page.events {
            if env.time > end || env.seq.get() >= f.next {
                return Ok(out);
            }
            if env.time >= start && env.tailnet.as_str() == tailnet {
                let mut records = f.names.records(env);
                records.retain(|r| filter.matches(r));
                push(&mut out, records)?;
            }
        }
    }
    Ok(out)
}

fn push(out: &mut Vec<Record>, records: Vec<Record>) -> Result<(), ApiError> {
    if out.len() + records.len() > RECORDS_MAX {
        return Err(ApiError::bad_request(format!(
            "more than {RECORDS_MAX} records between start and end; ask for a narrower window"
        )));
    }
    out.extend(records);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    /// Bound on a wait that must end at once; generous for a loaded machine.
    const PROMPT_MS_MAX: u64 = 5_000;

    #[test]
    fn the_query_gives_the_window_and_repeatable_filters() {
        let pairs = |q: &[(&str, &str)]| {
            q.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let w = Window::parse(pairs(&[
            ("start", "2026-01-01T00:00:00Z"),
            ("event", "NODE.CREATE"),
            ("start", "2027-01-01T00:00:00Z"),
            ("actor", "u1"),
            ("actor", "~bob"),
            ("unknown", "x"),
        ]));
        // A repeated start counts once, the first (Go's `url.Values.Get`).
        assert_eq!(w.start.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(w.end, None);
        let mut want = Filter::default();
        for (k, v) in [("event", "NODE.CREATE"), ("actor", "u1"), ("actor", "~bob")] {
            assert!(want.add(k, v));
        }
        assert_eq!(w.filter, want);
        assert!(Window::parse(pairs(&[("unknown", "x")])).filter.is_empty());
    }

    #[tokio::test]
    async fn finding_09_a_slow_audit_read_of_one_tailnet_does_not_block_another() {
        let cache = AuditCache::new(2, Duration::from_millis(60_000));
        // Tailnet A's audit read is in progress (paging the log over NATS, however slowly).
        let a = cache.acquire("Ta").await.expect("A's turn");
        // Tailnet B's read gets its turn at once, while A's is still held.
        let b = tokio::time::timeout(Duration::from_millis(PROMPT_MS_MAX), cache.acquire("Tb"))
            .await
            .expect("B is not blocked by A")
            .expect("B's turn");
        // A second read of A takes turns with the first: it waits for A, not for B.
        let mut a2 = Box::pin(cache.acquire("Ta"));
        assert!((&mut a2).now_or_never().is_none(), "two reads of A at once");
        drop(b);
        assert!(
            (&mut a2).now_or_never().is_none(),
            "B's end does not end A's turn"
        );
        drop(a);
        let a2 = tokio::time::timeout(Duration::from_millis(PROMPT_MS_MAX), a2)
            .await
            .expect("A's second read runs once the first is done")
            .expect("A's turn");
        drop(a2);
    }

    #[tokio::test]
    async fn finding_09_audit_reads_are_bounded_and_waits_end_in_503() {
        // Two slots: a third tailnet waits for one, and is refused 503 past the wait bound
        // rather than queueing forever; one tailnet's waiting reads take no slot.
        let cache = AuditCache::new(2, Duration::from_millis(200));
        let a = cache.acquire("Ta").await.expect("A");
        let _b = cache.acquire("Tb").await.expect("B");
        let e = cache.acquire("Tc").await.expect_err("no slot left");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = cache.acquire("Ta").await.expect_err("A's turn is taken");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        drop(a);
        let c = tokio::time::timeout(Duration::from_millis(PROMPT_MS_MAX), cache.acquire("Tc"))
            .await
            .expect("a freed slot is taken at once");
        assert!(c.is_ok());
    }
}

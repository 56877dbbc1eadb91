//! `GET /tailnet/{tailnet}/logging/configuration?start=&end=`: the configuration audit log in
//! Tailscale's shape, `{"version": "1.1", "tailnet": <name>, "logs": [record, …]}`, records as
//! [`authkeys_audit::records`] derives them from the log, each with its event's `seq` and `hash`.
//! Owners, Admins and Auditors only (403 otherwise); `start` and `end` are required RFC 3339
//! instants, `start` ≤ `end`, both inclusive (400 otherwise).
//!
//! Derived from the log itself, over `authkeys.log.read` (checked page by page), not from a view:
//! every record is then exactly an event an auditor can verify. The cost is kept to the window:
//! the gateway keeps, across requests, the names records need (user logins, machine names, key
//! descriptions: immutable per id, so names folded up to the head are right for any window) and
//! a sparse index of event times (one entry per page of the log); event times never go
//! backwards, so a request reads from the last indexed page that starts before `start` until the
//! first event after `end`. The first request after a start folds the whole log once (about as
//! fast as a projection rebuild); later ones read only what was appended since, plus the window.
//! Memory: the names (one per user, node, key, token) and `head / page` index entries.

use authkeys_audit::records::{Record, Recorder};
use authkeys_events::Timestamp;
use authkeys_protocol::log::LogClient;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use std::time::Duration;

use super::error::ApiError;
use super::{AppState, Authed, json, resolved_tailnet};

/// Events per `authkeys.log.read` page (the service's maximum).
const PAGE_EVENTS_MAX: u64 = 1_000;
/// Records one answer may hold; a wider window is refused with 400 (narrow it).
pub const RECORDS_MAX: usize = 50_000;
/// Longest wait for one page of the log.
const PAGE_WAIT_MS_MAX: u64 = 10_000;

/// What the gateway keeps between requests. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct AuditCache {
    inner: tokio::sync::Mutex<Folded>,
}

#[derive(Debug, Default)]
struct Folded {
    names: Recorder,
    /// The next seq to fold.
    next: u64,
    /// `(first seq of a page, its time)`, in seq order.
    index: Vec<(u64, Timestamp)>,
}

/// `?start=&end=`.
#[derive(Debug, Deserialize)]
pub struct Window {
    start: Option<String>,
    end: Option<String>,
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
    Query(window): Query<Window>,
) -> Result<Response, ApiError> {
    let info = resolved_tailnet(&shared, &authed, &path).await?;
    if !matches!(authed.caller.role.as_str(), "owner" | "admin" | "auditor") {
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
    let mut folded = shared.audit.inner.lock().await;
    catch_up(&log, &mut folded).await?;
    let logs = window_records(&log, &mut folded, &authed.caller.tailnet, start, end).await?;
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

/// Folds the names of every event not folded yet, up to the head, indexing page times.
async fn catch_up(log: &LogClient, f: &mut Folded) -> Result<(), ApiError> {
    f.next = f.next.max(1);
    loop {
        let page = log
            .read(f.next, PAGE_EVENTS_MAX)
            .await
            .map_err(unavailable)?;
        let Some(first) = page.events.first() else {
            return Ok(());
        };
        f.index.push((first.seq.get(), first.time));
        for env in &page.events {
            f.names.records(env);
        }
        f.next += page.events.len() as u64;
    }
}

/// The records of `tailnet` with `start ≤ eventTime ≤ end`, in log order.
async fn window_records(
    log: &LogClient,
    f: &mut Folded,
    tailnet: &str,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<Record>, ApiError> {
    // The last page that starts before `start` holds the first event at or after it.
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
                push(&mut out, f.names.records(env))?;
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

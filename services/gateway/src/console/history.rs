//! `GET /admin/api/keys/{id}/history`: every event that touched a key and every node it
//! registered — the key's blast radius — as `authkeys audit history --key` reports it
//! ([`authkeys_audit::history`]), for the console's key page.
//!
//! Who may read it: exactly who may read the key. The handler first asks the API for
//! `GET /api/v2/tailnet/-/keys/{id}` with the session's token and answers that refusal as is
//! (another user's key is 404 like an unknown one, R09; a Billing admin is 403). Then it reads
//! the log itself over `authkeys.log.read` (checked page by page), like the configuration audit
//! log, keeping only the caller's tailnet's events that touch the key.
//!
//! Cost: one pass over the log per request (no state kept between requests); at most
//! [`READS_MAX`] run at once, a request waits at most [`WAIT_MS_MAX`] for its turn (then 503).

use std::time::Duration;

use authkeys_audit::history::{Registered, Subject, Tracker};
use authkeys_events::{Hash, Timestamp};
use authkeys_protocol::log::LogClient;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ApiService;
use super::session::Signed;
use crate::error::ApiError;
use crate::{AppState, BASE_PATH, json};

/// Histories read at once.
pub const READS_MAX: usize = 2;
/// Longest wait for a turn.
pub const WAIT_MS_MAX: u64 = 10_000;
/// Events per `authkeys.log.read` page (the service's maximum).
const PAGE_EVENTS_MAX: u64 = 1_000;
/// Longest wait for one page of the log.
const PAGE_WAIT_MS_MAX: u64 = 10_000;

/// One event of the history, without its data (the console shows the summary).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    seq: u64,
    hash: Hash,
    time: Timestamp,
    #[serde(rename = "type")]
    event_type: String,
    actor: String,
    summary: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    key_id: String,
    events: Vec<Line>,
    registered: Vec<Registered>,
}

/// `GET /admin/api/keys/{id}/history`.
pub(crate) async fn key(
    State(shared): State<AppState>,
    State(api): State<ApiService>,
    signed: Signed,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    // May the caller read this key? Ask the API, with the caller's own token.
    let Ok(path) = format!("{BASE_PATH}/tailnet/-/keys/{id}").parse::<axum::http::Uri>() else {
        return Err(ApiError::not_found(format!("key {id} not found")));
    };
    let bearer = HeaderValue::from_str(&format!("Bearer {}", signed.token))
        .map_err(|_| ApiError::unauthorized())?;
    let (parts, _) = req.into_parts();
    let mut ask = Request::new(axum::body::Body::empty());
    *ask.method_mut() = Method::GET;
    *ask.uri_mut() = path;
    *ask.extensions_mut() = super::forwarded(&parts.extensions);
    ask.headers_mut().insert(header::AUTHORIZATION, bearer);
    let seen = api.call(ask).await;
    if seen.status() != StatusCode::OK {
        return Ok(seen);
    }
    let tailnet = tailnet_of(&shared, &signed).await?;

    let _turn = tokio::time::timeout(
        Duration::from_millis(WAIT_MS_MAX),
        shared.console.history_reads.acquire(),
    )
    .await
    .map_err(|_| ApiError::unavailable("key histories are being read; try again"))?
    .map_err(|_| ApiError::unavailable("key histories are being read; try again"))?;
    let log = LogClient::new(
        shared.nats.client().clone(),
        authkeys_protocol::subject::LOG_READ.to_owned(),
        PAGE_EVENTS_MAX as u32,
        Duration::from_millis(PAGE_WAIT_MS_MAX),
    );
    let mut tracker = Tracker::new(Subject::Key(id.clone()));
    let mut next = 1;
    loop {
        let page = log.read(next, PAGE_EVENTS_MAX).await.map_err(|e| {
            tracing::warn!(
                error = format!("{e:#}"),
                "log read for a key history failed"
            );
            ApiError::unavailable("the log could not be read; try again")
        })?;
        if page.events.is_empty() {
            break;
        }
        next += page.events.len() as u64;
        for env in page.events.iter().filter(|e| e.tailnet.as_str() == tailnet) {
            let _ = tracker.push(env);
        }
    }
    let history = tracker.finish();
    let answer = Answer {
        key_id: id,
        events: history
            .events
            .into_iter()
            .map(|t| Line {
                seq: t.seq,
                hash: t.hash,
                time: t.time,
                event_type: t.event_type,
                actor: t.actor,
                summary: t.summary,
            })
            .collect(),
        registered: history.registered.unwrap_or_default(),
    };
    Ok(json(&answer).into_response())
}

/// The session's tailnet id (its token re-authenticated).
async fn tailnet_of(shared: &AppState, signed: &Signed) -> Result<String, ApiError> {
    Ok(super::session::authenticate(shared, &signed.token)
        .await?
        .caller
        .tailnet)
}

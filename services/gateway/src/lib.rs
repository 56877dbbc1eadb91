//! `authkeys api`: the HTTP gateway that speaks Tailscale's API v2 for keys and devices
//! (SPEC §5) and talks **only NATS**.
//!
//! - Writes become the command service's admin commands (`authkeys.cmd.admin.<op>`), with
//!   `commandId` = the client's `Idempotency-Key` header or a fresh random id, `actor` = the
//!   authenticated user, `tailnet` = the token's tailnet.
//! - Reads are the projections' queries (`authkeys.query.*`, `authkeys_protocol::query`).
//! - [`auth`]: who is calling (Bearer or Basic API token, checked against the identity view).
//! - [`body`]: JSON bodies and query strings, refused as 400 `{"message"}` naming the field.
//! - [`error`]: `{"message"}` errors and the NATS error code → HTTP status table.
//! - [`metrics`]: `GET /metrics`.
//! - `logging`: `GET /tailnet/{tailnet}/logging/configuration`, the configuration audit log,
//!   read from the log itself over `authkeys.log.read` (not from a view).
//!
//! # Read-your-writes
//!
//! Every request first reads the log head (`authkeys.log.read` from past the head answers the
//! head alone). A command's response is sent only after its events are committed, so any write
//! whose response a client has seen is at or below that head. Every query — the token lookup
//! included, so a token issued a moment ago works — carries `minSeq` = that head; a view
//! answers only once it has applied that far, or `unavailable` past its bound, which the
//! gateway answers 503 with `Retry-After`.
//!
//! # Shutdown
//!
//! [`App::run`] stops accepting on cancellation, lets requests in flight finish, then drains
//! the NATS connection.

pub mod auth;
pub mod body;
pub mod error;
pub mod metrics;
pub mod nats;

mod devices;
mod keys;
mod logging;
mod tailnet;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use authkeys_events::{Clock, CommandId};
use authkeys_protocol::access::Role;
use authkeys_protocol::nats::Identity;
use authkeys_protocol::query::{DevicesListQuery, KeysListQuery, TailnetQuery, TokenQuery};
use authkeys_protocol::status::{CommandStatus, TimersStatus};
use authkeys_protocol::subject;
use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use self::auth::Caller;
use self::error::ApiError;
use self::metrics::Metrics;
use self::nats::Nats;

/// The base path of every API route.
pub const BASE_PATH: &str = "/api/v2";
/// The header a client may send to make a write idempotent (its `commandId`).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// What `authkeys api` needs. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where to listen; port 0 picks a free one ([`App::port`]).
    pub http: SocketAddr,
    /// The NATS server.
    pub nats_url: String,
    /// The command service's `hashing.key` (API token hashes are keyed with it).
    pub hashing_key_path: PathBuf,
    /// Largest request body read; larger is 413.
    pub body_bytes_max: usize,
    /// Longest wait for any one NATS answer (a view's own `minSeq` bound is shorter).
    pub nats_request_wait_ms_max: u64,
    /// Requests per second one API token may make after its burst (0: no limit).
    pub token_requests_per_second: u32,
    /// Requests one API token may make at once.
    pub token_requests_burst: u32,
    /// The time source (token expiry).
    pub clock: Clock,
    /// Who the gateway is on NATS.
    pub identity: Identity,
}

impl ApiSettings {
    /// The defaults for an address, a NATS server and a hashing key file.
    pub fn new(http: SocketAddr, nats_url: impl Into<String>, hashing_key_path: PathBuf) -> Self {
        Self {
            http,
            nats_url: nats_url.into(),
            hashing_key_path,
            body_bytes_max: 64 * 1024,
            nats_request_wait_ms_max: 10_000,
            token_requests_per_second: 100,
            token_requests_burst: 200,
            clock: authkeys_events::decision::system_clock(),
            identity: Identity::anonymous(Role::Api),
        }
    }
}

type TokenLimiter = DefaultKeyedRateLimiter<String>;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nats: Nats,
    pub(crate) hashing_key: [u8; 32],
    pub(crate) metrics: Arc<Metrics>,
    limiter: Option<TokenLimiter>,
    pub(crate) audit: logging::AuditCache,
    clock: Clock,
}

pub(crate) type AppState = Arc<Shared>;

/// The running gateway: bound, connected, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: tokio::net::TcpListener,
    router: Router,
    shared: AppState,
    port: u16,
}

impl App {
    /// Loads the hashing key, connects to NATS and binds the listener.
    pub async fn build(settings: ApiSettings) -> anyhow::Result<App> {
        let path = settings.hashing_key_path.clone();
        let hashing_key = tokio::task::spawn_blocking(move || {
            authkeys_log::keys::load_or_create_key(&path, false)
                .with_context(|| format!("load hashing key {}", path.display()))
        })
        .await
        .context("load the hashing key")??;
        let client = settings
            .identity
            .connect(&settings.nats_url, "authkeys-api")
            .await?;
        let metrics = Arc::new(Metrics::default());
        let limiter = std::num::NonZeroU32::new(settings.token_requests_per_second).map(|rate| {
            let burst = std::num::NonZeroU32::new(settings.token_requests_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let shared = Arc::new(Shared {
            nats: Nats::new(
                client,
                Arc::clone(&metrics),
                Duration::from_millis(settings.nats_request_wait_ms_max),
            ),
            hashing_key,
            metrics,
            limiter,
            audit: logging::AuditCache::default(),
            clock: settings.clock.clone(),
        });
        let router = router(Arc::clone(&shared), settings.body_bytes_max);
        let listener = tokio::net::TcpListener::bind(settings.http)
            .await
            .with_context(|| format!("listen on {}", settings.http))?;
        let port = listener.local_addr().context("listener address")?.port();
        tracing::info!(addr = %settings.http, port, "HTTP API listening");
        Ok(App {
            listener,
            router,
            shared,
            port,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`, then stops accepting, finishes requests in flight and drains
    /// NATS.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            listener,
            router,
            shared,
            ..
        } = self;
        let sweeper = {
            let shared = Arc::clone(&shared);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => if let Some(l) = &shared.limiter {
                            l.retain_recent();
                            l.shrink_to_fit();
                        },
                    }
                }
            })
        };
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .context("serve HTTP");
        sweeper.abort();
        tracing::info!("HTTP API stopped accepting; requests in flight answered");
        let client = shared.nats.client().clone();
        drop(shared);
        client.drain().await.context("drain the NATS connection")?;
        served
    }
}

/// Builds and runs the gateway until `shutdown` (`authkeys api`).
pub async fn run(settings: ApiSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    App::build(settings).await?.run(shutdown).await
}

/// Every route of SPEC §5 under [`BASE_PATH`], plus `/healthz` and `/metrics`.
pub(crate) fn router(shared: AppState, body_bytes_max: usize) -> Router {
    let api = Router::new()
        .route(
            "/tailnet/{tailnet}/keys",
            post(keys::create).get(keys::list),
        )
        .route(
            "/tailnet/{tailnet}/keys/{key_id}",
            get(keys::get).delete(keys::delete),
        )
        .route("/tailnet/{tailnet}/devices", get(devices::list))
        .route("/device/{id}", get(devices::get).delete(devices::delete))
        .route("/device/{id}/authorized", post(devices::authorize))
        .route("/device/{id}/tags", post(devices::set_tags))
        .route("/device/{id}/key", post(devices::set_key_expiry))
        .route("/device/{id}/expire", post(devices::expire))
        .route(
            "/tailnet/{tailnet}/settings",
            get(tailnet::get_settings).patch(tailnet::patch_settings),
        )
        .route("/tailnet/{tailnet}/users", post(tailnet::add_user))
        .route(
            "/tailnet/{tailnet}/logging/configuration",
            get(logging::configuration),
        );
    Router::new()
        .nest(BASE_PATH, api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&shared), observe))
        .fallback(unmatched)
        .layer(RequestBodyLimitLayer::new(body_bytes_max))
        .layer(middleware::from_fn(json_errors))
        .with_state(shared)
}

/// A span per request (method, route, tailnet, command id), and the request counter.
async fn observe(
    State(shared): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!(
        "http",
        method = %method,
        route = %route,
        tailnet = tracing::field::Empty,
        command_id = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    span.in_scope(|| tracing::debug!("answered"));
    shared.metrics.http(method.as_str(), &route, status);
    response
}

/// Turns every error that is not already JSON (axum's and tower-http's plain-text rejections:
/// 404, 405, 413, …) into `{"message"}`.
async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("application/json") || v.starts_with("text/plain; version=0.0.4")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed".to_owned(),
        StatusCode::NOT_FOUND => "not found".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut e = ApiError::new(status, message).into_response();
    for (name, value) in response.headers() {
        if name == header::ALLOW || name == header::RETRY_AFTER {
            e.headers_mut().insert(name.clone(), value.clone());
        }
    }
    e
}

async fn unmatched(State(shared): State<AppState>, req: Request) -> ApiError {
    shared.metrics.http(req.method().as_str(), "unmatched", 404);
    ApiError::not_found("not found")
}

/// 200 once NATS is connected and the log and every view answer.
async fn healthz(State(shared): State<AppState>) -> Response {
    let nats = &shared.nats;
    if nats.client().connection_state() != async_nats::connection::State::Connected {
        return ApiError::unavailable("not connected to NATS").into_response();
    }
    // An unknown tailnet: a view that answers at all (found or not) is up.
    let (tailnet, user) = ("T0healthz".to_owned(), "u0healthz".to_owned());
    let answers = |r: Result<(), ApiError>| match r {
        Ok(()) => Ok(()),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::BAD_REQUEST => {
            Ok(())
        }
        Err(e) => Err(e),
    };
    let (head, identity, keys, devices) = tokio::join!(
        nats.head(),
        async {
            let q = TailnetQuery {
                tailnet: tailnet.clone(),
                min_seq: None,
            };
            nats.query(&q).await.map(drop)
        },
        async {
            let q = KeysListQuery {
                tailnet: tailnet.clone(),
                user_id: user.clone(),
                all: None,
                min_seq: None,
            };
            nats.query(&q).await.map(drop)
        },
        async {
            let q = DevicesListQuery {
                tailnet: tailnet.clone(),
                after: None,
                limit: Some(1),
                min_seq: None,
            };
            nats.query(&q).await.map(drop)
        },
    );
    let checks = [
        ("log", head.map(|_| ())),
        ("identity view", answers(identity)),
        ("keys view", answers(keys)),
        ("machines view", answers(devices)),
    ];
    for (what, r) in checks {
        if let Err(e) = r {
            return ApiError::unavailable(format!("{what}: {}", e.message)).into_response();
        }
    }
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Longest `/metrics` waits for the command service's counters; without them it answers the
/// gateway's own.
const STATUS_WAIT_MS_MAX: u64 = 500;

async fn metrics_text(State(shared): State<AppState>) -> Response {
    let client = shared.nats.client().clone();
    // Best effort and bounded: a role that does not answer is left out.
    let ask = async |subject: &'static str| {
        tokio::time::timeout(
            std::time::Duration::from_millis(STATUS_WAIT_MS_MAX),
            client.request(subject, bytes::Bytes::from_static(b"{}")),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|m| m.payload)
    };
    let (status, timers) = tokio::join!(ask(subject::STATUS), ask(subject::TIMERS_STATUS));
    let status = status.and_then(|p| serde_json::from_slice::<CommandStatus>(&p).ok());
    let timers = timers.and_then(|p| serde_json::from_slice::<TimersStatus>(&p).ok());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(status.as_ref(), timers.as_ref()),
    )
        .into_response()
}

/// An authenticated request: the caller, and the log head read when it started, which every
/// query of the request passes as `minSeq` (read-your-writes).
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub(crate) caller: Caller,
    pub(crate) head: u64,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, ApiError> {
        let text = auth::token_text(&parts.headers)?;
        let presented = auth::presented(&text)?;
        if let Some(limiter) = &shared.limiter
            && limiter.check_key(&presented.id).is_err()
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests with this API token",
            ));
        }
        let head = shared.nats.head().await?;
        let query = TokenQuery {
            token_id: presented.id.clone(),
            min_seq: Some(head),
        };
        let record = match shared.nats.query(&query).await {
            Ok(b) => b.token,
            Err(e) if e.status == StatusCode::NOT_FOUND || e.status == StatusCode::BAD_REQUEST => {
                return Err(ApiError::unauthorized());
            }
            Err(e) => return Err(e),
        };
        let now = shared.clock.now();
        let caller = auth::verify(&presented, &shared.hashing_key, &record, now)?;
        tracing::Span::current().record("tailnet", caller.tailnet.as_str());
        Ok(Authed { caller, head })
    }
}

/// The tailnet `{tailnet}` of a path names: `-`, or the caller's tailnet by id or name; any other
/// is 404, like a tailnet that does not exist.
pub(crate) async fn resolve_tailnet(
    shared: &Shared,
    authed: &Authed,
    path: &str,
) -> Result<(), ApiError> {
    if tailnet_matches_id(path, &authed.caller.tailnet) {
        return Ok(());
    }
    resolved_tailnet(shared, authed, path).await.map(drop)
}

/// The caller's tailnet, looked up once, if `path` names it (`-`, its id or its name); 404
/// otherwise. For handlers that need the tailnet's name or settings anyway.
pub(crate) async fn resolved_tailnet(
    shared: &Shared,
    authed: &Authed,
    path: &str,
) -> Result<authkeys_protocol::query::TailnetInfo, ApiError> {
    let t = tailnet::info(shared, authed).await?;
    if tailnet_matches_id(path, &authed.caller.tailnet) || t.name == path || t.id == path {
        Ok(t)
    } else {
        Err(ApiError::not_found(format!("tailnet {path} not found")))
    }
}

/// Whether `path` names the tailnet `id` without a lookup: `-` or the id itself.
pub(crate) fn tailnet_matches_id(path: &str, id: &str) -> bool {
    path == "-" || path == id
}

/// The command id of a write: the client's `Idempotency-Key`, or a fresh random id.
pub(crate) fn command_id(headers: &HeaderMap) -> Result<String, ApiError> {
    let id = match headers.get(IDEMPOTENCY_HEADER) {
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key: must be ASCII"))?;
            CommandId::parse(v)
                .map_err(|e| ApiError::bad_request(format!("Idempotency-Key: {}", e.why)))?
                .to_string()
        }
        None => authkeys_protocol::random_id('c')
            .map_err(|e| ApiError::internal("draw a command id", e))?,
    };
    tracing::Span::current().record("command_id", id.as_str());
    Ok(id)
}

/// `200 {json}`.
pub(crate) fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::internal("encode a response", e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tailnet_dash_or_id_needs_no_lookup() {
        assert!(tailnet_matches_id("-", "Tabc"));
        assert!(tailnet_matches_id("Tabc", "Tabc"));
        assert!(!tailnet_matches_id("example.com", "Tabc"));
        assert!(!tailnet_matches_id("Tabd", "Tabc"));
    }

    #[test]
    fn idempotency_key_becomes_the_command_id() {
        let mut h = HeaderMap::new();
        let fresh = command_id(&h).expect("random");
        assert!(fresh.starts_with('c') && fresh.len() == 17);
        assert_ne!(fresh, command_id(&h).expect("random"));
        h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static("retry-1"));
        assert_eq!(command_id(&h).expect("given"), "retry-1");
        h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static("no spaces"));
        let e = command_id(&h).expect_err("invalid");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("Idempotency-Key: "), "{}", e.message);
    }
}

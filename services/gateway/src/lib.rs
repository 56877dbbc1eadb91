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
//! - [`console`]: the admin console at `/admin/`, through the same routes (ADR 004).
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
//! # Abuse bounds
//!
//! - **Rate limits** ([`ApiSettings`]): every `/api/v2` request is first charged to its client
//!   address (IPv6 per /64), before any authentication work; a request's API token is charged
//!   only after the token verifies, so forged tokens carrying a victim's token id cost the
//!   forger's address, never the victim (issue 11, finding 6).
//! - **Slow clients**: a connection must send a request's headers within
//!   [`ApiSettings::header_read_ms_max`] (else it is closed) and a request must be answered,
//!   body upload included, within [`ApiSettings::request_ms_max`] (else 408 and the connection
//!   closes) (finding 12).
//! - **Caches**: every `/api/v2` response carries `Cache-Control: no-store`: some carry secrets
//!   (a new key's `key`, a new user's `apiKey`) (finding 11).
//!
//! # Shutdown
//!
//! [`Gateway::run`] stops accepting on cancellation, lets requests in flight finish (bounded by
//! [`ApiSettings::request_ms_max`]), then drains the NATS connection.

pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod metrics;
pub mod nats;
pub mod oidc;

mod devices;
pub mod keys;
mod logging;
mod oauth;
pub mod tailnet;
mod users;
mod webhooks;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
    /// Where to listen; port 0 picks a free one ([`Gateway::port`]).
    pub http: SocketAddr,
    /// The NATS server.
    pub nats_url: String,
    /// The command service's `hashing.key` (API token hashes are keyed with it). The only key
    /// file the gateway reads: it verifies presented secrets and cannot re-derive one (the
    /// command role's `derivation.key` derives retry-stable secrets; ADR 003).
    pub hashing_key_path: PathBuf,
    /// Largest request body read; larger is 413.
    pub body_bytes_max: usize,
    /// Longest wait for any one NATS answer (a view's own `minSeq` bound is shorter).
    pub nats_request_wait_ms_max: u64,
    /// Requests per second one API token may make after its burst (0: no limit).
    pub token_requests_per_second: u32,
    /// Requests one API token may make at once.
    pub token_requests_burst: u32,
    /// Requests per second one client address (IPv6: one /64) may make to `/api/v2` after its
    /// burst, charged before authentication (0: no limit). A flood bound, sized for many
    /// clients behind one address; behind a reverse proxy every client has the proxy's address,
    /// so limit there and set 0 here.
    pub address_requests_per_second: u32,
    /// Requests one client address may make at once.
    pub address_requests_burst: u32,
    /// Longest a client may take to send a request's headers; the connection is closed then.
    pub header_read_ms_max: u64,
    /// Longest one request may take, body upload included; it is answered 408 then.
    pub request_ms_max: u64,
    /// The time source (token expiry).
    pub clock: Clock,
    /// Who the gateway is on NATS.
    pub identity: Identity,
    /// How federated identities' OIDC issuers are reached (R20; `--oidc-allow-http`).
    pub oidc: oidc::OidcConfig,
    /// R23: webhook URLs may resolve to loopback, private or link-local addresses
    /// (`--webhooks-allow-private`).
    pub webhooks_allow_private: bool,
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
            address_requests_per_second: 1_000,
            address_requests_burst: 2_000,
            header_read_ms_max: 10_000,
            request_ms_max: 60_000,
            clock: authkeys_events::decision::system_clock(),
            identity: Identity::anonymous(Role::Api),
            oidc: oidc::OidcConfig::default(),
            webhooks_allow_private: false,
        }
    }
}

type TokenLimiter = DefaultKeyedRateLimiter<String>;
type AddressLimiter = DefaultKeyedRateLimiter<IpAddr>;

/// A keyed limiter of `per_second` after `burst`; `None` when `per_second` is 0.
fn keyed_limiter<K>(per_second: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: Clone + Eq + std::hash::Hash,
{
    std::num::NonZeroU32::new(per_second).map(|rate| {
        let burst = std::num::NonZeroU32::new(burst).unwrap_or(rate);
        RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
    })
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nats: Nats,
    pub(crate) hashing_key: [u8; 32],
    pub(crate) metrics: Arc<Metrics>,
    limiter: Option<TokenLimiter>,
    address_limiter: Option<AddressLimiter>,
    pub(crate) audit: logging::AuditCache,
    pub(crate) oidc: oidc::OidcVerifier,
    /// The admin console's sessions and live streams.
    pub(crate) console: console::Console,
    /// R23: `--webhooks-allow-private`.
    pub(crate) webhooks_allow_private: bool,
    clock: Clock,
    request_max: Duration,
}

pub(crate) type AppState = Arc<Shared>;

/// The running gateway: bound, connected, not yet serving.
#[derive(Debug)]
pub struct Gateway {
    listener: tokio::net::TcpListener,
    router: Router,
    shared: AppState,
    port: u16,
    header_read: Duration,
}

impl Gateway {
    /// Loads the hashing key, connects to NATS and binds the listener.
    pub async fn build(settings: ApiSettings) -> anyhow::Result<Gateway> {
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
        let limiter = keyed_limiter(
            settings.token_requests_per_second,
            settings.token_requests_burst,
        );
        let address_limiter = keyed_limiter(
            settings.address_requests_per_second,
            settings.address_requests_burst,
        );
        let shared = Arc::new(Shared {
            nats: Nats::new(
                client,
                Arc::clone(&metrics),
                Duration::from_millis(settings.nats_request_wait_ms_max),
            ),
            hashing_key,
            metrics,
            limiter,
            address_limiter,
            audit: logging::AuditCache::default(),
            oidc: oidc::OidcVerifier::new(settings.oidc.clone())
                .context("set up the OIDC verifier")?,
            console: console::Console::default(),
            webhooks_allow_private: settings.webhooks_allow_private,
            clock: settings.clock.clone(),
            request_max: Duration::from_millis(settings.request_ms_max),
        });
        let router = router(Arc::clone(&shared), settings.body_bytes_max);
        let listener = tokio::net::TcpListener::bind(settings.http)
            .await
            .with_context(|| format!("listen on {}", settings.http))?;
        let port = listener.local_addr().context("listener address")?.port();
        tracing::info!(addr = %settings.http, port, "HTTP API listening");
        Ok(Gateway {
            listener,
            router,
            shared,
            port,
            header_read: Duration::from_millis(settings.header_read_ms_max),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`, then stops accepting, finishes requests in flight and drains
    /// NATS.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Gateway {
            listener,
            router,
            shared,
            header_read,
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
                        _ = tick.tick() => {
                            if let Some(l) = &shared.limiter {
                                l.retain_recent();
                                l.shrink_to_fit();
                            }
                            if let Some(l) = &shared.address_limiter {
                                l.retain_recent();
                                l.shrink_to_fit();
                            }
                        }
                    }
                }
            })
        };
        let console_closing = console::closing(&shared);
        let stop_console = shutdown.clone();
        tokio::spawn(async move {
            stop_console.cancelled().await;
            console_closing.cancel()
        });
        let served = serve(listener, router, &shutdown, header_read, shared.request_max).await;
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
    Gateway::build(settings).await?.run(shutdown).await
}

/// Pause after a failed `accept` (e.g. out of file descriptors) instead of spinning.
const ACCEPT_RETRY_MS: u64 = 100;

/// Accepts connections until `shutdown`, each served as HTTP/1.1 whose request headers must
/// arrive within `header_read` (else hyper closes the connection), with the client's address in
/// every request's extensions (`ConnectInfo`); then waits at most `drain` for connections in
/// flight to finish.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: &CancellationToken,
    header_read: Duration,
    drain: Duration,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            },
        };
        let service =
            router
                .clone()
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(remote));
                    req.map(axum::body::Body::new)
                });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read);
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %remote, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = drain.as_millis(),
            "HTTP connections still open after the drain bound; closing them"
        );
    }
    Ok(())
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
        .route(
            "/tailnet/{tailnet}/users",
            post(tailnet::add_user).get(users::list),
        )
        .route("/users/{id}", get(users::get))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/token-exchange", post(oauth::token_exchange))
        .route("/users/{id}/role", post(users::set_role))
        .route("/users/{id}/delete", post(users::delete))
        .route("/users/{id}/suspend", post(users::suspend))
        .route("/users/{id}/restore", post(users::restore))
        .route(
            "/tailnet/{tailnet}/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/webhooks/{id}/test", post(webhooks::test))
        .route("/webhooks/{id}/rotate", post(webhooks::rotate))
        .route("/webhooks/{id}/dropped", get(webhooks::dropped))
        .route(
            "/tailnet/{tailnet}/logging/configuration",
            get(logging::configuration),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            limit_address,
        ));
    Router::new()
        .nest(BASE_PATH, api.clone())
        .merge(console::router(Arc::clone(&shared), api))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&shared), observe))
        .fallback(unmatched)
        .layer(RequestBodyLimitLayer::new(body_bytes_max))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(no_store))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            request_deadline,
        ))
        .with_state(shared)
}

/// The key of a client address's rate limit: the address, an IPv4-mapped IPv6 address as IPv4,
/// and an IPv6 address by its /64 (one host usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Charges every `/api/v2` request to its client address before any authentication work: 429
/// past the address's bucket (finding 6: the token's own bucket is charged only once the token
/// verifies, in [`Authed`]).
async fn limit_address(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    if let (Some(limiter), Some(ConnectInfo(remote))) = (
        &shared.address_limiter,
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
    ) && limiter.check_key(&address_key(remote.ip())).is_err()
    {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
        )
        .into_response();
    }
    next.run(req).await
}

/// `Cache-Control: no-store` on every `/api/v2` response: a key's create answer holds its
/// secret, a new user's holds their API token, and no cache may keep either (finding 11).
async fn no_store(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with(BASE_PATH);
    let mut response = next.run(req).await;
    if api {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Answers 408 (and closes the connection) when a request, its body upload included, is not
/// answered within [`ApiSettings::request_ms_max`] (finding 12).
async fn request_deadline(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(shared.request_max, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let mut e =
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "request took too long").into_response();
            e.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            e
        }
    }
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
    let (status, head, identity, keys, devices) = tokio::join!(
        ask_status::<CommandStatus>(nats.client(), subject::STATUS),
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
    // The log answers reads while its writer refuses every write: say so (issue 11, finding 8).
    if let Some(why) = status.and_then(|s| s.writer_failure) {
        let message = format!("the log's writer failed and takes no commands: {why}");
        return ApiError::unavailable(message).into_response();
    }
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Longest `/metrics` waits for the command service's counters; without them it answers the
/// gateway's own.
const STATUS_WAIT_MS_MAX: u64 = 500;

/// A role's status subject, best effort and bounded: `None` when it does not answer in time.
async fn ask_status<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
) -> Option<T> {
    let wait = std::time::Duration::from_millis(STATUS_WAIT_MS_MAX);
    let asked = client.request(subject, bytes::Bytes::from_static(b"{}"));
    let reply = tokio::time::timeout(wait, asked).await.ok()?.ok()?;
    serde_json::from_slice(&reply.payload).ok()
}

async fn metrics_text(State(shared): State<AppState>) -> Response {
    let client = shared.nats.client();
    let (status, timers, hooks) = tokio::join!(
        ask_status::<CommandStatus>(client, subject::STATUS),
        ask_status::<TimersStatus>(client, subject::TIMERS_STATUS),
        ask_status::<authkeys_protocol::webhook::WebhooksStatus>(client, subject::WEBHOOKS_STATUS)
    );
    let mut text = shared.metrics.render(status.as_ref(), timers.as_ref());
    if let Some(h) = hooks {
        text.push_str(&webhooks::metrics_text(&h));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// An authenticated request: the caller, and the log head read when it started, which every
/// query of the request passes as `minSeq` (read-your-writes).
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub(crate) caller: Caller,
    pub(crate) head: u64,
}

impl Authed {
    /// An OAuth access token must hold a scope that allows `needed` (R19; 403 otherwise). A
    /// user's API token passes: their role decides, in the handler or in `decide`.
    pub(crate) fn scope(&self, needed: authkeys_events::Scope) -> Result<(), ApiError> {
        match &self.caller.scopes {
            Some(held) if !authkeys_events::Scope::any_grants(held, needed) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this access token's scopes do not include {needed}"),
            )),
            _ => Ok(()),
        }
    }

    /// Routes no OAuth scope covers (users, settings, API tokens): an OAuth client gets 403.
    pub(crate) fn user_only(&self) -> Result<(), ApiError> {
        if self.caller.scopes.is_some() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "an OAuth client may not use this route",
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, ApiError> {
        // The client's address was charged before this (`limit_address`); the token's bucket is
        // charged only once the token verifies, so a forger holding only its id cannot exhaust it.
        let text = auth::token_text(&parts.headers)?;
        let presented = auth::presented(&text)?;
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
        if let Some(limiter) = &shared.limiter
            && limiter.check_key(&caller.token_id).is_err()
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests with this API token",
            ));
        }
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

/// An id of a path (`what` names its kind): one that cannot be such an id is 404, exactly like
/// one that names nothing.
pub(crate) fn path_id<'a, T, E>(
    what: &str,
    text: &'a str,
    parse: impl FnOnce(&'a str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(text).map_err(|_| ApiError::not_found(format!("{what} {text} not found")))
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
    fn finding_06_address_limits_key_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
        let v6 = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(address_key(v6("192.0.2.7")), v6("192.0.2.7"));
        assert_eq!(address_key(v6("::ffff:192.0.2.7")), v6("192.0.2.7"));
        assert_eq!(
            address_key(v6("2001:db8:1:2:aaaa::1")),
            address_key(v6("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(v6("2001:db8:1:2::1")),
            address_key(v6("2001:db8:1:3::1"))
        );
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

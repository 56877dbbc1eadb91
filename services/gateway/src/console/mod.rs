//! The admin console at `/admin/` (SPEC §5, issue 16; ADR 004): a static page and one small
//! dependency-free JavaScript module, embedded in the binary, that speak the **same API** as
//! every other client, through the session of the browser.
//!
//! - [`session`]: sign in with an API token (kept here, in memory; the browser holds an opaque
//!   `HttpOnly; SameSite=Strict` cookie), the CSRF token, sign out.
//! - `proxy`: `/admin/api/v2/…` is `/api/v2/…` with the session's token as `Authorization`, so
//!   every console action takes the exact route, role checks (R07, R09, R21), rate limits and
//!   read-your-writes of the API. A state change needs the session's `X-CSRF-Token`.
//! - [`live`]: `GET /admin/events`, server-sent events carrying the seq and type of each event of
//!   the caller's tailnet (a core NATS subscription to its event subjects); the page refetches
//!   what it shows, and refetches everything when the stream (re)opens, so nothing is lost.
//! - [`history`]: `GET /admin/api/keys/{id}/history`, a key's history and the nodes it
//!   registered (`authkeys_audit::history`), read from the log like the audit log endpoint, for
//!   whoever may read the key.
//!
//! Every `/admin` answer carries a strict Content-Security-Policy (`default-src 'self'`, no
//! inline script or style), `X-Frame-Options: DENY` and `nosniff`.

pub(crate) mod history;
pub(crate) mod live;
pub(crate) mod session;

use std::convert::Infallible;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::{AppState, BASE_PATH};

pub(crate) use session::Console;
use session::Signed;

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/admin";
/// The API as the console calls it (the session's token is added).
const CONSOLE_API: &str = "/admin/api/v2";

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");
const ICON_SVG: &str = include_str!("../../console/icon.svg");

/// The policy of every console answer: only our own script, style, images and connections; no
/// framing, no plugins, no `<base>`, forms only to us.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The console's routes; `api` is the `/api/v2` router the console's calls are sent through.
pub(crate) fn router<S>(shared: AppState, api: Router<AppState>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let api: Router = Router::new()
        .nest(BASE_PATH, api)
        .with_state(std::sync::Arc::clone(&shared));
    Router::new()
        .route(
            CONSOLE_PATH,
            get(|| async { Redirect::permanent("/admin/") }),
        )
        .route("/admin/", get(page))
        .route("/admin/keys", get(page))
        .route("/admin/machines", get(page))
        .route("/admin/assets/app.js", get(asset))
        .route("/admin/assets/app.css", get(asset))
        .route("/admin/assets/icon.svg", get(asset))
        .route(
            "/admin/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out)
                // Sign-in checks a token: charged to the client's address first, like the API.
                .route_layer(middleware::from_fn_with_state(
                    std::sync::Arc::clone(&shared),
                    crate::limit_address,
                )),
        )
        .route("/admin/events", get(live::events))
        .route("/admin/api/keys/{id}/history", get(history::key))
        .route("/admin/api/v2/{*rest}", any(proxy))
        .layer(middleware::from_fn(headers))
        .with_state(ConsoleState {
            shared,
            api: ApiService(api),
        })
}

/// What the console's handlers share: the gateway's state and the API they call through.
#[derive(Clone, Debug)]
pub(crate) struct ConsoleState {
    shared: AppState,
    api: ApiService,
}

impl FromRef<ConsoleState> for AppState {
    fn from_ref(s: &ConsoleState) -> AppState {
        std::sync::Arc::clone(&s.shared)
    }
}

impl FromRef<ConsoleState> for ApiService {
    fn from_ref(s: &ConsoleState) -> ApiService {
        s.api.clone()
    }
}

/// The `/api/v2` router, with its state, as a service the proxy calls.
#[derive(Clone, Debug)]
pub(crate) struct ApiService(Router);

impl ApiService {
    /// Answers `req` exactly as the API answers it.
    pub(crate) async fn call(&self, req: Request) -> Response {
        let r: Result<Response, Infallible> = self.0.clone().oneshot(req).await;
        match r {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// `/admin/api/v2/{rest}` → `/api/v2/{rest}` with `Authorization: Bearer <the session's token>`;
/// the cookie and the CSRF token do not go further.
async fn proxy(State(api): State<ApiService>, signed: Signed, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let Some(rest) = parts.uri.path().strip_prefix(CONSOLE_API) else {
        return ApiError::not_found("not found").into_response();
    };
    let target = match parts.uri.query() {
        Some(q) => format!("{BASE_PATH}{rest}?{q}"),
        None => format!("{BASE_PATH}{rest}"),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return ApiError::not_found("not found").into_response();
    };
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", signed.token)) else {
        return ApiError::unauthorized().into_response();
    };
    parts.uri = uri;
    parts.extensions = forwarded(&parts.extensions);
    parts.headers.remove(header::COOKIE);
    parts.headers.remove(session::CSRF_HEADER);
    parts.headers.insert(header::AUTHORIZATION, bearer);
    api.call(Request::from_parts(parts, body)).await
}

/// What a request sent on to the API keeps of the console request's extensions: only the
/// client's address (its rate limit). The console route's own path parameters must not reach the
/// API's routes, whose `Path` extractors would see them.
pub(crate) fn forwarded(from: &axum::http::Extensions) -> axum::http::Extensions {
    let mut e = axum::http::Extensions::new();
    if let Some(c) = from.get::<ConnectInfo<std::net::SocketAddr>>() {
        e.insert(*c);
    }
    e
}

/// The page shell: the same document for every page; the module renders the page its path
/// names (or the sign-in form).
async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(uri: Uri) -> Response {
    let (kind, body) = match uri.path().rsplit('/').next() {
        Some("app.js") => ("text/javascript; charset=utf-8", APP_JS),
        Some("app.css") => ("text/css; charset=utf-8", APP_CSS),
        Some("icon.svg") => ("image/svg+xml", ICON_SVG),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// The security headers of every console answer; `no-store` on all but the static assets (the
/// API's answers may hold a new key's secret).
async fn headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/admin/assets/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let cache = if asset { "no-cache" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Ends the live streams when the gateway stops.
pub(crate) fn closing(shared: &AppState) -> tokio_util::sync::CancellationToken {
    shared.console.closing.clone()
}

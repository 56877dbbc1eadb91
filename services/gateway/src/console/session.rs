//! Console sessions: sign in with an API token, get an opaque random session id in an
//! `HttpOnly; SameSite=Strict; Path=/admin` cookie (`Secure` when the request came over TLS);
//! the token stays in this process's memory, never in the page, a URL or `localStorage`.
//!
//! - `POST /admin/session` `{"token"}` (JSON only: a cross-site form cannot send it) → the
//!   cookie, and `{csrf, loginName, role, tailnet}`.
//! - `GET /admin/session` → the same body for the cookie's session (401 without one).
//! - `DELETE /admin/session` (CSRF header) → the session is forgotten and the cookie cleared.
//!
//! Every request of a session re-authenticates its token as an API request would (a revoked
//! token, a removed user or a lowered role takes effect on the next click, R18). A session
//! idle for [`SESSION_IDLE_MS_MAX`] is forgotten; at most [`SESSIONS_MAX`] are kept.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::{AppState, Authed};

/// The cookie that names a session.
pub const COOKIE_NAME: &str = "authkeys_session";
/// The header every state change of a session carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session unused this long is forgotten (the user signs in again).
pub const SESSION_IDLE_MS_MAX: u64 = 30 * 60 * 1000;
/// Sessions kept at once; past it, expired ones are swept, then sign-in answers 503.
pub const SESSIONS_MAX: usize = 10_000;
/// Random bytes of a session id and of a CSRF token (hex on the wire).
const SECRET_BYTES: usize = 32;
/// Longest API token text accepted at sign-in.
const TOKEN_BYTES_MAX: usize = 512;

/// The sessions and what ends the live streams; kept in [`Shared`].
#[derive(Debug)]
pub(crate) struct Console {
    sessions: Mutex<HashMap<String, Session>>,
    /// Cancelled when the gateway shuts down, so that live streams end and connections drain.
    pub(crate) closing: CancellationToken,
    /// Bounds the live streams open at once ([`super::live::STREAMS_MAX`]).
    pub(crate) streams: std::sync::Arc<tokio::sync::Semaphore>,
    /// Bounds the key histories read at once ([`super::history::READS_MAX`]).
    pub(crate) history_reads: tokio::sync::Semaphore,
    idle: Duration,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            closing: CancellationToken::new(),
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(super::live::STREAMS_MAX)),
            history_reads: tokio::sync::Semaphore::new(super::history::READS_MAX),
            idle: Duration::from_millis(SESSION_IDLE_MS_MAX),
        }
    }
}

/// One signed-in browser.
#[derive(Clone)]
struct Session {
    token: String,
    csrf: String,
    last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("last_used", &self.last_used)
            .finish_non_exhaustive()
    }
}

impl Console {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session for `token`: `(session id, csrf token)`.
    fn open(&self, token: String) -> Result<(String, String), ApiError> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut sessions = self.lock();
        if sessions.len() >= SESSIONS_MAX {
            sessions.retain(|_, s| now.duration_since(s.last_used) < self.idle);
        }
        if sessions.len() >= SESSIONS_MAX {
            return Err(ApiError::unavailable(
                "too many console sessions; try again later",
            ));
        }
        sessions.insert(
            id.clone(),
            Session {
                token,
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        Ok((id, csrf))
    }

    /// The session `id`, touched; `None` when unknown or idle too long (then forgotten).
    fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let s = sessions.get_mut(id)?;
        if now.duration_since(s.last_used) >= self.idle {
            sessions.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Whether session `id` is still signed in (live streams end when it is not).
    pub(crate) fn alive(&self, id: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .get(id)
            .is_some_and(|s| now.duration_since(s.last_used) < self.idle)
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal("draw a session secret", e))?;
    Ok(hex::encode(bytes))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Whether the request reached us over TLS (directly, or through a proxy that says so).
fn over_tls(uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let mut c = format!("{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/admin");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request of a signed-in session: its id and token. For any method but GET and HEAD the
/// request's `X-CSRF-Token` must be the session's (403 otherwise); no session is 401.
#[derive(Clone)]
pub(crate) struct Signed {
    pub(crate) id: String,
    pub(crate) token: String,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed").finish_non_exhaustive()
    }
}

impl<S> FromRequestParts<S> for Signed
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let shared = AppState::from_ref(state);
        let not_signed_in = || ApiError::new(StatusCode::UNAUTHORIZED, "not signed in");
        let id = cookie(&parts.headers, COOKIE_NAME).ok_or_else(not_signed_in)?;
        let session = shared.console.touch(id).ok_or_else(not_signed_in)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(session.csrf.as_bytes())) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token",
                ));
            }
        }
        Ok(Signed {
            id: id.to_owned(),
            token: session.token,
        })
    }
}

/// Authenticates `token` exactly as an API request carrying it would be (identity view,
/// expiry, suspension, the token's rate limit).
pub(crate) async fn authenticate(shared: &AppState, token: &str) -> Result<Authed, ApiError> {
    let value =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ApiError::unauthorized())?;
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers.insert(header::AUTHORIZATION, value);
    Authed::from_request_parts(&mut parts, shared).await
}

/// The console's view of who is signed in.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Whoami {
    csrf: String,
    login_name: String,
    role: String,
    tailnet: String,
}

fn whoami(authed: &Authed, csrf: String) -> Whoami {
    Whoami {
        csrf,
        login_name: authed.caller.login_name.clone(),
        role: authed.caller.role.clone(),
        tailnet: authed.caller.tailnet.clone(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// `POST /admin/session`.
pub(crate) async fn sign_in(
    State(shared): State<AppState>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with a JSON body {\"token\"}",
        ));
    }
    let bytes = axum::body::to_bytes(body, TOKEN_BYTES_MAX * 2)
        .await
        .map_err(|_| ApiError::bad_request("body too large"))?;
    let SignIn { token } =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    let token = token.trim().to_owned();
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
        return Err(ApiError::unauthorized());
    }
    let authed = authenticate(&shared, &token).await?;
    if authed.caller.scopes.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sign in with a user's API token, not an OAuth access token",
        ));
    }
    let (id, csrf) = shared.console.open(token)?;
    let mut response = crate::json(&whoami(&authed, csrf));
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&id, None, over_tls(&parts.uri, &parts.headers)),
    );
    Ok(response)
}

/// `GET /admin/session`.
pub(crate) async fn current(
    State(shared): State<AppState>,
    signed: Signed,
) -> Result<Response, ApiError> {
    let authed = match authenticate(&shared, &signed.token).await {
        Ok(a) => a,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                shared.console.close(&signed.id);
            }
            return Err(e);
        }
    };
    let csrf = shared
        .console
        .touch(&signed.id)
        .map(|s| s.csrf)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))?;
    Ok(crate::json(&whoami(&authed, csrf)))
}

/// `DELETE /admin/session`: sign out.
pub(crate) async fn sign_out(
    State(shared): State<AppState>,
    signed: Signed,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    shared.console.close(&signed.id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", Some(0), over_tls(&uri, &headers)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; authkeys_session=abc"),
        );
        assert_eq!(cookie(&h, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn sessions_expire_when_idle_and_close() {
        let c = Console {
            idle: Duration::from_millis(0),
            ..Console::default()
        };
        let (id, _) = c.open("tskey-api-x".into()).expect("open");
        assert!(c.touch(&id).is_none(), "idle 0 ms: expired at once");
        let c = Console::default();
        let (id, csrf) = c.open("tskey-api-x".into()).expect("open");
        assert_eq!(id.len(), 2 * SECRET_BYTES);
        assert_ne!(id, csrf);
        assert!(c.alive(&id));
        c.close(&id);
        assert!(!c.alive(&id));
    }

    #[test]
    fn cookie_attributes_are_strict() {
        let v = set_cookie("abc", None, true);
        assert_eq!(
            v.to_str().expect("ascii"),
            "authkeys_session=abc; HttpOnly; SameSite=Strict; Path=/admin; Secure"
        );
    }
}

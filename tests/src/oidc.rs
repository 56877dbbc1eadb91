//! A real OIDC issuer on loopback, for end-to-end tests of workload identity federation: a CI
//! job's OIDC token exchanged for an access token.
//!
//! [`OidcIssuer::start`] serves, over plain HTTP on `127.0.0.1` and a kernel-chosen port:
//!
//! - `GET /.well-known/openid-configuration`: the discovery document, whose `issuer` is exactly
//!   [`OidcIssuer::url`] (no trailing slash) and whose `jwks_uri` is `{url}/jwks`;
//! - `GET /jwks`: a JWKS with the issuer's one public key (ES256, P-256, kid `"k1"`).
//!
//! The keys are generated per issuer, in memory; tokens are signed here with `jsonwebtoken`, as
//! the gateway's own OIDC tests do. Besides the issuer's key there is a second key that the JWKS
//! never names, for forged tokens ([`OidcIssuer::sign_with_other_key`],
//! [`OidcIssuer::sign_with_unknown_kid`]). The server counts what reaches it, so a test can check
//! that a verifier caches keys instead of fetching them for every token.
//!
//! The server runs as a task on the calling tokio runtime: the test must keep awaiting for it to
//! answer (any `#[tokio::test]` does). Dropping the issuer aborts the task, which closes the
//! listener and shuts down open connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The kid of the issuer's signing key (and of the forger's key in
/// [`OidcIssuer::sign_with_other_key`]).
pub const OIDC_KID: &str = "k1";
/// The kid of [`OidcIssuer::sign_with_unknown_kid`] tokens: never in the JWKS.
pub const OIDC_UNKNOWN_KID: &str = "unknown-kid";
/// Lifetime of the tokens [`OidcIssuer::claims`] describes.
const TOKEN_LIFETIME_SECS: i64 = 600;
/// How far in the past [`OidcIssuer::claims`] puts `nbf`.
const NOT_BEFORE_SKEW_SECS: i64 = 5;

/// A running OIDC issuer on 127.0.0.1 (http), stopped on drop.
#[derive(Debug)]
pub struct OidcIssuer {
    url: String,
    /// The issuer's signing key; its public half is the JWKS's only key.
    key: EncodingKey,
    /// A key the issuer never publishes.
    other_key: EncodingKey,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests served, by endpoint.
#[derive(Debug, Default)]
struct Counts {
    discovery: AtomicUsize,
    jwks: AtomicUsize,
}

#[derive(Debug, Clone)]
struct ServerState {
    discovery: Arc<Value>,
    jwks: Arc<Value>,
    counts: Arc<Counts>,
}

impl OidcIssuer {
    /// Starts an issuer with one ES256 signing key (kid "k1") on a free loopback port. It is
    /// serving when this returns.
    pub async fn start() -> anyhow::Result<OidcIssuer> {
        let key = p256_key().context("generate the issuer's P-256 key")?;
        let other_key = p256_key().context("generate the other P-256 key")?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .context("public JWK of the issuer's key")?;
        jwk.common.key_id = Some(OIDC_KID.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);

        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .context("bind 127.0.0.1:0 for the OIDC issuer")?;
        let port = listener
            .local_addr()
            .context("read the OIDC issuer's port")?
            .port();
        let url = format!("http://127.0.0.1:{port}");

        let counts = Arc::new(Counts::default());
        let state = ServerState {
            discovery: Arc::new(json!({
                "issuer": url,
                "jwks_uri": format!("{url}/jwks"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf"],
            })),
            jwks: Arc::new(json!({ "keys": [jwk] })),
            counts: Arc::clone(&counts),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state);
        // The listener is bound already, so requests queue until the task first runs.
        let task = tokio::spawn(async move {
            // `serve` only returns on an accept error it cannot retry; then the issuer is
            // simply gone and the test sees connection errors.
            let _ = axum::serve(listener, app).await;
        });
        Ok(OidcIssuer {
            url,
            key,
            other_key,
            counts,
            task,
        })
    }

    /// The issuer URL, e.g. "http://127.0.0.1:PORT" (no trailing slash); discovery is at
    /// `{url}/.well-known/openid-configuration`, whose `issuer` is exactly this and whose
    /// `jwks_uri` is `{url}/jwks`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JWKS URL, `{url}/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// A JWT (ES256, kid "k1") signed by the issuer's key with these claims (the caller
    /// supplies iss/aud/sub/exp/etc. as serde_json values; see [`claims`](Self::claims)).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        sign(&self.key, OIDC_KID, claims)
    }

    /// A JWT signed by a different key that claims the same kid "k1" (for negative tests: a
    /// verifier must report a bad signature).
    pub fn sign_with_other_key(&self, claims: &Value) -> anyhow::Result<String> {
        sign(&self.other_key, OIDC_KID, claims)
    }

    /// A JWT with an unknown kid ([`OIDC_UNKNOWN_KID`]), signed by another key.
    pub fn sign_with_unknown_kid(&self, claims: &Value) -> anyhow::Result<String> {
        sign(&self.other_key, OIDC_UNKNOWN_KID, claims)
    }

    /// Standard claims: iss = url, aud, sub, iat = now, exp = now + 600, nbf = now - 5.
    /// Adjust them with `claims["exp"] = json!(...)` or `claims.as_object_mut()`.
    pub fn claims(&self, audience: &str, subject: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.url,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now.saturating_add(TOKEN_LIFETIME_SECS),
            "nbf": now.saturating_sub(NOT_BEFORE_SKEW_SECS),
        })
    }

    /// How many HTTP requests the issuer has served (discovery + JWKS).
    pub fn requests(&self) -> usize {
        self.discovery_requests() + self.jwks_requests()
    }

    /// How many discovery documents the issuer has served.
    pub fn discovery_requests(&self) -> usize {
        self.counts.discovery.load(Ordering::SeqCst)
    }

    /// How many JWKS documents the issuer has served.
    pub fn jwks_requests(&self) -> usize {
        self.counts.jwks.load(Ordering::SeqCst)
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        // Aborting `serve` drops the listener and its shutdown signal: open connections finish
        // their request in flight and close, idle keep-alive ones close at once.
        self.task.abort();
    }
}

async fn discovery(State(s): State<ServerState>) -> axum::Json<Value> {
    s.counts.discovery.fetch_add(1, Ordering::SeqCst);
    axum::Json(Value::clone(&s.discovery))
}

async fn jwks(State(s): State<ServerState>) -> axum::Json<Value> {
    s.counts.jwks.fetch_add(1, Ordering::SeqCst);
    axum::Json(Value::clone(&s.jwks))
}

/// A fresh ECDSA P-256 key (PKCS#8 DER from rcgen).
fn p256_key() -> anyhow::Result<EncodingKey> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(EncodingKey::from_ec_der(&pair.serialize_der()))
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).context("sign JWT")
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

//! Workload identity federation (SPEC R20): verifies a CI job's OIDC token (a JWT) against the
//! keys its issuer publishes, so a federated identity holds no secret at all.
//!
//! [`OidcVerifier::verify`] checks, in order (each failure an [`OidcError`]; callers answer one
//! uniform 401 for all of them and log the error, whose `Display` never holds token contents):
//!
//! 1. the identity's issuer is allowed ([`validate_issuer`]: `https`, or `http` under
//!    [`OidcConfig::allow_http`]) and its audience is not empty;
//! 2. the token's form: at most [`TOKEN_BYTES_MAX`] bytes, a JWS compact serialization whose
//!    header `alg` is one of [`ACCEPTED_ALGORITHMS`] (never `none`, never `HS*`: a symmetric
//!    algorithm would let anyone holding the issuer's public key forge tokens). The header's
//!    `jku`, `jwk`, `x5u` and `x5c` are ignored: keys come only from the issuer's discovery;
//! 3. the key: the issuer's JWKS key whose `kid` is the header's `kid` (a header without `kid`
//!    takes the issuer's only key usable with its `alg`), whose type and curve fit the `alg`, and
//!    whose `alg`, `use` and `key_ops`, when present, allow verifying it (see *Keys* below);
//! 4. the signature (`jsonwebtoken`, with the RustCrypto backend: no hand-written crypto);
//! 5. `exp` present and not past, `nbf` (when present) not in the future, both with
//!    [`OidcConfig::leeway_secs`] of clock skew; `aud` (a string or an array) contains the
//!    identity's audience;
//! 6. `iss` is a string equal to the identity's issuer, byte for byte;
//! 7. `sub` is a string matching the identity's subject pattern ([`pattern_matches`]);
//! 8. every custom claim rule: the claim is present and is a string, number or boolean whose
//!    text (a number or boolean as its JSON text) matches the rule's pattern.
//!
//! # Keys
//!
//! The issuer's keys come from OIDC discovery: `GET <issuer>/.well-known/openid-configuration`
//! (any trailing `/` of the issuer removed first, as the discovery spec says), whose `issuer`
//! must equal the configured issuer exactly and whose `jwks_uri` must be `https` (or `http`
//! under `allow_http`), then `GET <jwks_uri>`. Both fetches together are bounded by
//! [`OidcConfig::fetch_timeout`], each body by [`OidcConfig::document_bytes_max`] (read
//! incrementally: a larger body is an error, never buffered), redirects by 3 hops that keep the
//! allowed schemes. Keys that cannot verify (encryption keys, `oct`, unknown types or curves)
//! are skipped; a JWKS without any usable key is a failed fetch.
//!
//! # Cache
//!
//! Per issuer (keyed by the issuer string): the keys and when they were fetched, when a fetch
//! was last attempted, and the last fetch's error.
//!
//! - Keys are *fresh* for [`OidcConfig::cache_ttl`]; a token whose key is among the fresh keys
//!   needs no fetch and waits for no other verification's fetch.
//! - Anything else (an unknown `kid`, keys past their TTL, no keys yet) may refetch, but at most
//!   one fetch per issuer starts per [`OidcConfig::refresh_interval_min`], whatever its result:
//!   a flood of tokens with made-up `kid`s costs the issuer one discovery and one JWKS request
//!   per interval, and an issuer that is down is not hammered.
//! - Fetches are single-flight: one per issuer at a time (an async mutex); verifications that
//!   need it wait for it and then use its result.
//! - A failed fetch keeps the previous keys: stale keys keep verifying until they are
//!   2 × `cache_ttl` old, then the issuer's tokens fail with the fetch's error until a fetch
//!   succeeds. While another verification refreshes, a token whose key is among the stale keys
//!   uses it instead of waiting.
//!
//! The cache holds one entry per issuer ever verified against (the issuers of configured
//! federated identities), never evicted.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations};
use jsonwebtoken::jwk::{PublicKeyUse, RSAKeyType};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest issuer URL accepted, in characters.
pub const ISSUER_CHARS_MAX: usize = 1000;
/// The longest token accepted, in bytes (CI providers' tokens are 1–2 KiB).
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// The signature algorithms a token may use: asymmetric only.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];
/// The path OIDC discovery appends to an issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Most redirects one fetch follows.
const REDIRECTS_MAX: usize = 3;
/// Longest excerpt of a remote value quoted in an error.
const QUOTE_CHARS_MAX: usize = 200;

/// How the verifier fetches and caches issuers' keys. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Accept `http` issuers and `jwks_uri`s (`--oidc-allow-http`, for local issuers in tests).
    pub allow_http: bool,
    /// Longest one key refresh (discovery and JWKS together) may take.
    pub fetch_timeout: Duration,
    /// Largest discovery document or JWKS read.
    pub document_bytes_max: usize,
    /// Least time between two fetches of one issuer's keys (an unknown `kid` refetches at most
    /// this often).
    pub refresh_interval_min: Duration,
    /// How long fetched keys are used without refetching.
    pub cache_ttl: Duration,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            fetch_timeout: Duration::from_secs(5),
            document_bytes_max: 64 * 1024,
            refresh_interval_min: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(3600),
            leeway_secs: 60,
        }
    }
}

/// What a federated identity (`keyType: "federated"`, R20) expects of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentity {
    /// The issuer URL; the token's `iss` must equal it exactly (see [`validate_issuer`]).
    pub issuer: String,
    /// A pattern the token's `sub` must match: `*` matches any run of characters, e.g.
    /// `repo:example/app:ref:refs/heads/*` ([`pattern_matches`]).
    pub subject: String,
    /// A value the token's `aud` (a string or an array) must contain.
    pub audience: String,
    /// Claim name → pattern: the claim must be a string (or a number or boolean, as its JSON
    /// text) matching the pattern.
    #[serde(default)]
    pub custom_claim_rules: BTreeMap<String, String>,
}

/// Why a token was refused. Callers answer one uniform 401 for every variant; `Display` is for
/// server logs and holds no token contents (claim *names* from the configuration at most) and
/// no secret. [`OidcError::kind`] is a short label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The token is not a well-formed signed JWT.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token's `alg` is not one of [`ACCEPTED_ALGORITHMS`] or does not fit its key.
    #[error("token algorithm {0} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The identity's issuer is not an allowed issuer URL.
    #[error("issuer {issuer} is not allowed: {why}")]
    IssuerNotAllowed {
        /// The configured issuer.
        issuer: String,
        /// What is wrong with it.
        why: String,
    },
    /// The identity is unusable (e.g. an empty audience).
    #[error("federated identity is unusable: {0}")]
    Identity(&'static str),
    /// The issuer's discovery document is unusable (not JSON, another `issuer`, a bad
    /// `jwks_uri`).
    #[error("OIDC discovery for issuer {issuer} failed: {why}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        why: String,
    },
    /// The issuer's JWKS is unusable (not JSON, no usable key).
    #[error("JWKS of issuer {issuer} is unusable: {why}")]
    Jwks {
        /// The configured issuer.
        issuer: String,
        /// What is wrong.
        why: String,
    },
    /// A fetch failed: connection, TLS, timeout, HTTP status or size.
    #[error("fetching {url} failed: {why}")]
    Fetch {
        /// The URL fetched (the issuer's, for a timeout of the whole refresh).
        url: String,
        /// What failed.
        why: String,
    },
    /// None of the issuer's keys has the token's `kid` and fits its `alg`.
    #[error("no key of issuer {issuer} matches the token's kid and alg")]
    KeyNotFound {
        /// The configured issuer.
        issuer: String,
    },
    /// The issuer's key could not be used for the token's algorithm.
    #[error("the issuer's key is unusable for the token's algorithm")]
    BadKey,
    /// The signature does not verify with the issuer's key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not the identity's issuer.
    #[error("token issuer (iss) does not match")]
    WrongIssuer,
    /// `aud` does not contain the identity's audience.
    #[error("token audience (aud) does not match")]
    WrongAudience,
    /// `sub` does not match the identity's subject pattern.
    #[error("token subject (sub) does not match")]
    WrongSubject,
    /// A required claim is absent.
    #[error("token lacks the claim `{0}`")]
    MissingClaim(String),
    /// A custom claim rule does not match.
    #[error("token claim `{0}` does not match its rule")]
    ClaimRule(String),
    /// The HTTP client could not be built.
    #[error("OIDC HTTP client setup failed: {0}")]
    Setup(String),
}

impl OidcError {
    /// A short label for metrics and structured logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::IssuerNotAllowed { .. } => "issuer_not_allowed",
            Self::Identity(_) => "identity",
            Self::Discovery { .. } => "discovery",
            Self::Jwks { .. } => "jwks",
            Self::Fetch { .. } => "fetch",
            Self::KeyNotFound { .. } => "key_not_found",
            Self::BadKey => "bad_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongSubject => "wrong_subject",
            Self::MissingClaim(_) => "missing_claim",
            Self::ClaimRule(_) => "claim_rule",
            Self::Setup(_) => "setup",
        }
    }
}

/// Verifies federated identities' OIDC tokens; cheap to clone (one shared cache and HTTP
/// client).
#[derive(Debug, Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: OidcConfig,
    http: reqwest::Client,
    issuers: Mutex<HashMap<String, Arc<IssuerEntry>>>,
}

/// One issuer's cache: its state, and the single-flight lock of its fetches.
#[derive(Debug, Default)]
struct IssuerEntry {
    state: Mutex<IssuerState>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct IssuerState {
    keys: Vec<CachedKey>,
    /// When `keys` were fetched (`None`: never).
    fetched: Option<Instant>,
    /// When a fetch last started, whatever its result.
    last_attempt: Option<Instant>,
    /// The last fetch's error, until a fetch succeeds.
    last_error: Option<OidcError>,
}

/// A key of an issuer's JWKS usable to verify signatures.
#[derive(Debug, Clone)]
struct CachedKey {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<KeyAlgorithm>,
    shape: KeyShape,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyShape {
    Rsa,
    P256,
    P384,
}

impl KeyShape {
    /// The shape of key `alg` needs; `None` for an algorithm not accepted.
    fn for_algorithm(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(Self::Rsa),
            Algorithm::ES256 => Some(Self::P256),
            Algorithm::ES384 => Some(Self::P384),
            _ => None,
        }
    }
}

impl CachedKey {
    /// The key of `jwk`, if it can verify signatures of an accepted algorithm.
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        let common = &jwk.common;
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        if common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
        {
            return None;
        }
        let shape = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) if p.key_type == RSAKeyType::RSA => KeyShape::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => KeyShape::P256,
                EllipticCurve::P384 => KeyShape::P384,
                _ => return None,
            },
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: common.key_id.clone(),
            alg: common.key_algorithm,
            shape,
            key,
        })
    }

    /// Whether this key may verify a token signed with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        KeyShape::for_algorithm(alg) == Some(self.shape)
            && self.alg.is_none_or(|a| a == KeyAlgorithm::from(alg))
    }
}

impl IssuerState {
    /// The key for (`alg`, `kid`) among keys at most `max_age` old: the fitting key with that
    /// `kid`, or without a `kid`, the only fitting key.
    fn find(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        max_age: Duration,
        now: Instant,
    ) -> Option<DecodingKey> {
        let fetched = self.fetched?;
        if now.saturating_duration_since(fetched) >= max_age {
            return None;
        }
        let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
        match kid {
            Some(kid) => fitting
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            None => match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only.key.clone()),
                _ => None,
            },
        }
    }

    /// Whether a fetch may start at `now`.
    fn may_fetch(&self, now: Instant, interval: Duration) -> bool {
        self.last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
    }

    /// Why no key was found: the last fetch's error, else no matching key.
    fn failure(&self, issuer: &str) -> OidcError {
        self.last_error
            .clone()
            .unwrap_or_else(|| OidcError::KeyNotFound {
                issuer: issuer.to_owned(),
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The parts of a discovery document used.
#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

/// A JWKS, each key parsed on its own so one odd key does not spoil the set.
#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

impl OidcVerifier {
    /// A verifier with an empty cache. Fails only if the HTTP client cannot be built.
    pub fn new(cfg: OidcConfig) -> Result<Self, OidcError> {
        let allow_http = cfg.allow_http;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > REDIRECTS_MAX {
                attempt.error("too many redirects")
            } else if !scheme_allowed(attempt.url().scheme(), allow_http) {
                attempt.error("redirect to a URL whose scheme is not allowed")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .https_only(!allow_http)
            .redirect(redirects)
            .connect_timeout(cfg.fetch_timeout)
            .timeout(cfg.fetch_timeout)
            .user_agent(concat!("authkeys/", env!("CARGO_PKG_VERSION"), " (OIDC)"))
            .build()
            .map_err(|e| OidcError::Setup(error_chain(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                http,
                issuers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.inner.cfg
    }

    /// Verifies `jwt` for `identity` (the steps are in the module's documentation) and returns
    /// its verified claims.
    pub async fn verify(
        &self,
        jwt: &str,
        identity: &FederatedIdentity,
    ) -> Result<Map<String, Value>, OidcError> {
        let cfg = &self.inner.cfg;
        let issuer = validate_issuer(&identity.issuer, cfg.allow_http).map_err(|why| {
            OidcError::IssuerNotAllowed {
                issuer: quote(&identity.issuer).into_owned(),
                why,
            }
        })?;
        if identity.audience.is_empty() {
            return Err(OidcError::Identity("empty audience"));
        }
        if jwt.len() > TOKEN_BYTES_MAX {
            return Err(OidcError::Malformed("token too long"));
        }
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|_| OidcError::Malformed("not a JWS with a known alg"))?;
        let alg = header.alg;
        if !ACCEPTED_ALGORITHMS.contains(&alg) {
            return Err(OidcError::UnsupportedAlgorithm(format!("{alg:?}")));
        }
        let key = self.key_for(&issuer, alg, header.kid.as_deref()).await?;

        let mut validation = Validation::new(alg);
        validation.leeway = cfg.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.set_audience(&[identity.audience.as_str()]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
            .map_err(from_jwt_error)?
            .claims;

        match claims.get("iss") {
            None => return Err(OidcError::MissingClaim("iss".to_owned())),
            Some(Value::String(iss)) if *iss == issuer => {}
            Some(_) => return Err(OidcError::WrongIssuer),
        }
        match claims.get("sub") {
            None => return Err(OidcError::MissingClaim("sub".to_owned())),
            Some(Value::String(sub)) if pattern_matches(&identity.subject, sub) => {}
            Some(_) => return Err(OidcError::WrongSubject),
        }
        for (name, pattern) in &identity.custom_claim_rules {
            let value = claims
                .get(name)
                .ok_or_else(|| OidcError::MissingClaim(name.clone()))?;
            let text = claim_text(value).ok_or_else(|| OidcError::ClaimRule(name.clone()))?;
            if !pattern_matches(pattern, &text) {
                return Err(OidcError::ClaimRule(name.clone()));
            }
        }
        Ok(claims)
    }

    fn entry(&self, issuer: &str) -> Arc<IssuerEntry> {
        let mut issuers = lock(&self.inner.issuers);
        Arc::clone(issuers.entry(issuer.to_owned()).or_default())
    }

    /// The issuer's key for (`alg`, `kid`), fetching the issuer's keys when the cache has no
    /// fresh match and the rate limit allows (see *Cache* in the module's documentation).
    async fn key_for(
        &self,
        issuer: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<DecodingKey, OidcError> {
        let cfg = &self.inner.cfg;
        let ttl = cfg.cache_ttl;
        let stale_max = ttl.saturating_mul(2);
        let entry = self.entry(issuer);

        let stale = {
            let state = lock(&entry.state);
            let now = Instant::now();
            if let Some(key) = state.find(alg, kid, ttl, now) {
                return Ok(key);
            }
            state.find(alg, kid, stale_max, now)
        };
        // One fetch per issuer at a time. While one runs, a stale key serves.
        let _refresh = match entry.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => match stale {
                Some(key) => return Ok(key),
                None => entry.refresh.lock().await,
            },
        };
        {
            let mut state = lock(&entry.state);
            let now = Instant::now();
            // A fetch that ran while this waited may have brought the key.
            if let Some(key) = state.find(alg, kid, ttl, now) {
                return Ok(key);
            }
            if !state.may_fetch(now, cfg.refresh_interval_min) {
                return state
                    .find(alg, kid, stale_max, now)
                    .ok_or_else(|| state.failure(issuer));
            }
            state.last_attempt = Some(now);
        }
        let fetched = self.fetch_keys(issuer).await;
        let mut state = lock(&entry.state);
        match fetched {
            Ok(keys) => {
                tracing::debug!(issuer, keys = keys.len(), "OIDC issuer keys fetched");
                state.keys = keys;
                state.fetched = Some(Instant::now());
                state.last_error = None;
            }
            Err(e) => {
                tracing::warn!(issuer, error = %e, "OIDC issuer keys not fetched");
                state.last_error = Some(e);
            }
        }
        state
            .find(alg, kid, stale_max, Instant::now())
            .ok_or_else(|| state.failure(issuer))
    }

    /// Discovery, then the JWKS, within the fetch timeout.
    async fn fetch_keys(&self, issuer: &str) -> Result<Vec<CachedKey>, OidcError> {
        let cfg = &self.inner.cfg;
        let work = async {
            let discovery_url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
            let body = self.get(&discovery_url).await?;
            let discovery_failed = |why: String| OidcError::Discovery {
                issuer: issuer.to_owned(),
                why,
            };
            let doc: DiscoveryDocument = serde_json::from_slice(&body)
                .map_err(|e| discovery_failed(format!("not a discovery document: {e}")))?;
            if doc.issuer != issuer {
                return Err(discovery_failed(format!(
                    "the document names issuer {:?}",
                    quote(&doc.issuer)
                )));
            }
            let jwks_uri = check_fetch_url(&doc.jwks_uri, cfg.allow_http).map_err(|why| {
                discovery_failed(format!("jwks_uri {:?}: {why}", quote(&doc.jwks_uri)))
            })?;
            let body = self.get(jwks_uri.as_str()).await?;
            parse_jwks(&body).map_err(|why| OidcError::Jwks {
                issuer: issuer.to_owned(),
                why,
            })
        };
        match tokio::time::timeout(cfg.fetch_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(OidcError::Fetch {
                url: issuer.to_owned(),
                why: format!("timed out after {:?}", cfg.fetch_timeout),
            }),
        }
    }

    /// `GET url`: a 2xx answer's body, at most `document_bytes_max` bytes.
    async fn get(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        let max = self.inner.cfg.document_bytes_max;
        let failed = |why: String| OidcError::Fetch {
            url: quote(url).into_owned(),
            why,
        };
        let mut response = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("HTTP status {status}")));
        }
        let too_large = || failed(format!("document larger than {max} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(error_chain(&e)))?
        {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The usable keys of a JWKS document; an error when it is not a JWKS or has none.
fn parse_jwks(body: &[u8]) -> Result<Vec<CachedKey>, String> {
    let raw: RawJwks = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<CachedKey> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| CachedKey::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("no key usable to verify signatures".to_owned());
    }
    Ok(keys)
}

/// The text a custom claim rule matches: a string as is, a number or boolean as its JSON text.
fn claim_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

fn from_jwt_error(e: jsonwebtoken::errors::Error) -> OidcError {
    match e.kind() {
        ErrorKind::InvalidSignature => OidcError::BadSignature,
        ErrorKind::ExpiredSignature => OidcError::Expired,
        ErrorKind::ImmatureSignature => OidcError::NotYetValid,
        ErrorKind::InvalidAudience => OidcError::WrongAudience,
        ErrorKind::InvalidIssuer => OidcError::WrongIssuer,
        ErrorKind::InvalidSubject => OidcError::WrongSubject,
        ErrorKind::MissingRequiredClaim(claim) => OidcError::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "aud" => OidcError::WrongAudience,
            "iss" => OidcError::WrongIssuer,
            "sub" => OidcError::WrongSubject,
            _ => OidcError::Malformed("exp or nbf is not a number"),
        },
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => OidcError::UnsupportedAlgorithm("for its key".to_owned()),
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => OidcError::BadKey,
        _ => OidcError::Malformed("undecodable token"),
    }
}

fn scheme_allowed(scheme: &str, allow_http: bool) -> bool {
    scheme == "https" || (allow_http && scheme == "http")
}

/// A URL the verifier may fetch: `https` (or `http` under `allow_http`), with a host and no
/// user name or password.
fn check_fetch_url(url: &str, allow_http: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !scheme_allowed(parsed.scheme(), allow_http) {
        return Err(scheme_message(allow_http).to_owned());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold a user name or password".to_owned());
    }
    Ok(parsed)
}

fn scheme_message(allow_http: bool) -> &'static str {
    if allow_http {
        "must be an https or http URL"
    } else {
        "must be an https URL (http only with --oidc-allow-http)"
    }
}

/// At most [`QUOTE_CHARS_MAX`] characters of a remote or configured value, for an error.
fn quote(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(QUOTE_CHARS_MAX) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}…", &s[..end])),
    }
}

/// An error and its sources, `: `-joined (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut seen = HashSet::from([text.clone()]);
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if seen.insert(part.clone()) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Checks an issuer URL when a federated identity is created, and returns the string to store,
/// which a token's `iss` must then equal byte for byte.
///
/// Accepted: at most [`ISSUER_CHARS_MAX`] characters, no whitespace or control character, an
/// `https` URL (or `http` when `allow_http`) with a host, without user name, password, query or
/// fragment (not even an empty `?` or `#`), **already in canonical form**: lowercase scheme and
/// host, no default port, no `.`/`..` segments, percent-encoding as a URL parser writes it. A
/// URL not in canonical form is refused with the canonical form as a hint, never rewritten:
/// rewriting could turn it into something the issuer does not put in `iss`.
///
/// A trailing `/` is kept as given, neither added nor removed: `https://accounts.google.com`
/// and `https://example.auth0.com/` are different issuers, each equal to its own `iss`; both
/// are discovered at `<issuer without trailing />/.well-known/openid-configuration`. So the
/// returned string is the input itself.
///
/// The error is a phrase without the field's name (e.g. `must not have a query`).
pub fn validate_issuer(url: &str, allow_http: bool) -> Result<String, String> {
    if url.chars().count() > ISSUER_CHARS_MAX {
        return Err(format!("must be at most {ISSUER_CHARS_MAX} characters"));
    }
    if url.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !scheme_allowed(parsed.scheme(), allow_http) {
        return Err(scheme_message(allow_http).to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold a user name or password".to_owned());
    }
    if parsed.query().is_some() {
        return Err("must not have a query".to_owned());
    }
    if parsed.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    let canonical = parsed.as_str();
    // A parser writes an empty path as `/`; the issuer may omit it.
    let bare = (parsed.path() == "/")
        .then(|| canonical.strip_suffix('/'))
        .flatten();
    if url == canonical || Some(url) == bare {
        return Ok(url.to_owned());
    }
    let hint = match bare {
        Some(bare) if !url.ends_with('/') => bare,
        _ => canonical,
    };
    Err(format!("must be in canonical form: {hint}"))
}

/// Whether `value` matches `pattern` as a whole: `*` matches any run of characters (the empty
/// one too); every other character, `?` and `\` included, matches only itself. Linear in
/// practice, O(len(pattern) × len(value)) at worst.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    // Bytes suffice: `*` is ASCII, and a match of UTF-8 literals can only start at a character
    // boundary.
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    // After the latest `*`: where the pattern resumes, and where in `value` it would resume.
    let mut backtrack: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                backtrack = Some((pi, vi));
            }
            Some(&c) if v.get(vi) == Some(&c) => {
                pi += 1;
                vi += 1;
            }
            _ => match backtrack {
                // Let the latest `*` swallow one more byte and retry.
                Some((resume, start)) => {
                    pi = resume;
                    vi = start + 1;
                    backtrack = Some((resume, start + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_whole_strings_with_star() {
        let yes = [
            ("", ""),
            ("*", ""),
            ("*", "anything at all"),
            ("abc", "abc"),
            ("a*c", "ac"),
            ("a*c", "abbbc"),
            ("a*c", "acc"),
            ("*c", "abc"),
            ("a*", "abc"),
            ("**", "x"),
            ("a**b", "ab"),
            ("*a*b*", "xxaxxbxx"),
            (
                "repo:example/app:ref:refs/heads/*",
                "repo:example/app:ref:refs/heads/main",
            ),
            (
                "repo:example/app:ref:refs/heads/*",
                "repo:example/app:ref:refs/heads/feature/x",
            ),
            ("repo:*/app:*", "repo:org/app:environment:prod"),
            ("é*ü", "éaü"),
            ("*ü", "üü"),
            ("a*b*c*d", "aXbYbcZcd"),
        ];
        for (p, v) in yes {
            assert!(pattern_matches(p, v), "{p:?} should match {v:?}");
        }
        let no = [
            ("", "a"),
            ("a", ""),
            ("abc", "abd"),
            ("abc", "abcd"),
            ("abc", "xabc"),
            ("a*c", "ab"),
            ("a*c", "abcd"),
            ("a?c", "abc"),
            ("a.c", "abc"),
            ("a\\*c", "abc"),
            (
                "repo:example/app:ref:refs/heads/*",
                "repo:example/app2:ref:refs/heads/main",
            ),
            (
                "repo:example/app:ref:refs/heads/*",
                "repo:example/app:ref:refs/tags/v1",
            ),
            ("repo:example/app:*", "repo:example/application:ref"),
            ("*a*b*", "xxbxxaxx"),
            ("é*ü", "éa"),
        ];
        for (p, v) in no {
            assert!(!pattern_matches(p, v), "{p:?} should not match {v:?}");
        }
    }

    #[test]
    fn pattern_matches_is_fast_on_adversarial_input() {
        let value = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        let start = Instant::now();
        assert!(!pattern_matches(&pattern, &value));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn validate_issuer_accepts_canonical_https_urls_as_given() {
        for ok in [
            "https://token.actions.githubusercontent.com",
            "https://gitlab.com",
            "https://example.auth0.com/",
            "https://login.example.com/tenant/v2.0",
            "https://login.example.com/tenant/v2.0/",
            "https://issuer.example:8443/path",
            "https://192.0.2.1",
        ] {
            assert_eq!(validate_issuer(ok, false).as_deref(), Ok(ok), "{ok}");
        }
        assert_eq!(
            validate_issuer("http://127.0.0.1:8080", true).as_deref(),
            Ok("http://127.0.0.1:8080")
        );
    }

    #[test]
    fn validate_issuer_refuses_what_is_not_an_allowed_issuer() {
        let refused = |url: &str, allow_http: bool, why: &str| {
            let e = validate_issuer(url, allow_http).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
        };
        refused("http://issuer.example", false, "https");
        refused("ftp://issuer.example", true, "https or http");
        refused("https://issuer.example/?", false, "query");
        refused("https://issuer.example/?a=b", false, "query");
        refused("https://issuer.example/#", false, "fragment");
        refused("https://issuer.example/#x", false, "fragment");
        refused("https://user@issuer.example", false, "user name");
        refused("https://user:pw@issuer.example", false, "user name");
        refused("", false, "empty");
        refused(" https://issuer.example", false, "whitespace");
        refused("https://issuer.example/a b", false, "whitespace");
        refused("https://issuer.example/\u{7f}", false, "control");
        refused("issuer.example", false, "not a URL");
        refused("https://", false, "");
        let long = format!("https://issuer.example/{}", "a".repeat(1000));
        refused(&long, false, "at most 1000");
        // Not canonical: refused with the canonical form, never rewritten.
        refused(
            "HTTPS://Issuer.Example",
            false,
            "canonical form: https://issuer.example",
        );
        refused(
            "https://issuer.example:443/x",
            false,
            "canonical form: https://issuer.example/x",
        );
        refused(
            "https://issuer.example/a/../b",
            false,
            "canonical form: https://issuer.example/b",
        );
        refused("https:issuer.example", false, "canonical form");
        refused("https://issuer.example/é", false, "canonical form");
        let exactly = format!("https://issuer.example/{}", "a".repeat(1000 - 23));
        assert_eq!(exactly.len(), 1000);
        assert!(validate_issuer(&exactly, false).is_ok());
    }

    #[test]
    fn check_fetch_url_keeps_the_scheme_rule() {
        assert!(check_fetch_url("https://issuer.example/jwks", false).is_ok());
        assert!(check_fetch_url("http://issuer.example/jwks", false).is_err());
        assert!(check_fetch_url("http://issuer.example/jwks", true).is_ok());
        assert!(check_fetch_url("file:///etc/passwd", true).is_err());
        assert!(check_fetch_url("https://u:p@issuer.example/jwks", false).is_err());
        assert!(check_fetch_url("/jwks", false).is_err());
    }

    #[test]
    fn jwks_keeps_only_keys_that_verify_signatures() {
        let rsa = serde_json::json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"});
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AQAB"},
            {"kty": "weird", "kid": "w"},
            {"kid": "no-kty"},
            rsa,
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).expect("one usable key");
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("r")]);
        assert!(keys[0].fits(Algorithm::RS256) && keys[0].fits(Algorithm::PS256));
        assert!(!keys[0].fits(Algorithm::ES256) && !keys[0].fits(Algorithm::HS256));

        let none = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(parse_jwks(none.to_string().as_bytes()).is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"not json").is_err());
    }

    #[test]
    fn a_jwk_alg_restricts_the_token_alg() {
        let jwk: Jwk = serde_json::from_value(
            serde_json::json!({"kty": "RSA", "alg": "RS256", "n": "AQAB", "e": "AQAB"}),
        )
        .expect("jwk");
        let key = CachedKey::from_jwk(&jwk).expect("usable");
        assert!(key.fits(Algorithm::RS256));
        assert!(!key.fits(Algorithm::RS512) && !key.fits(Algorithm::PS256));
    }

    #[test]
    fn errors_display_for_logs_and_name_their_kind() {
        let e = OidcError::ClaimRule("repository".to_owned());
        assert_eq!(
            e.to_string(),
            "token claim `repository` does not match its rule"
        );
        assert_eq!(e.kind(), "claim_rule");
        assert_eq!(OidcError::BadSignature.kind(), "bad_signature");
        assert_eq!(quote(&"x".repeat(500)).chars().count(), QUOTE_CHARS_MAX + 1);
    }

    #[test]
    fn federated_identity_is_camel_case_json() {
        let id: FederatedIdentity = serde_json::from_value(serde_json::json!({
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:example/app:*",
            "audience": "authkeys",
            "customClaimRules": {"repository_owner": "example"},
        }))
        .expect("identity");
        assert_eq!(id.custom_claim_rules["repository_owner"], "example");
    }
}

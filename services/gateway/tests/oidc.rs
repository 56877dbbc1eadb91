//! The OIDC verifier (R20) against a real issuer on loopback: an axum server serving discovery
//! and a JWKS, with RSA and ECDSA keys generated here and tokens signed here. The server counts
//! its requests, so the cache and its rate limit are checked by what reaches the issuer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authkeys_gateway::oidc::{FederatedIdentity, OidcConfig, OidcError, OidcVerifier};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "authkeys";
const SUBJECT: &str = "repo:example/app:ref:refs/heads/main";
const SUBJECT_PATTERN: &str = "repo:example/app:ref:refs/heads/*";

// ---------------------------------------------------------------------------------------------
// Keys

/// A signing key and its public JWK.
#[derive(Clone)]
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK");
        jwk.common.key_id = Some(kid.to_owned());
        let jwk = serde_json::to_value(&jwk).expect("JWK as JSON");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }
}

/// RSA generation is slow: each test binary makes three keys, once.
fn rsa_encoding(slot: usize) -> EncodingKey {
    static KEYS: [OnceLock<Vec<u8>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let der = KEYS[slot].get_or_init(|| {
        use rsa::Generate;
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::PrivateKey::generate();
        key.to_pkcs1_der().expect("PKCS#1 DER").as_bytes().to_vec()
    });
    EncodingKey::from_rsa_der(der)
}

fn rsa_key(slot: usize, kid: &str) -> TestKey {
    TestKey::new(kid, Algorithm::RS256, rsa_encoding(slot))
}

fn ec_key(kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    TestKey::new(
        kid,
        Algorithm::ES256,
        EncodingKey::from_ec_der(&pair.serialize_der()),
    )
}

// ---------------------------------------------------------------------------------------------
// The issuer

#[derive(Clone)]
enum JwksMode {
    Keys,
    /// A body of this many bytes, with `Content-Length` or streamed without it.
    Huge {
        bytes: usize,
        streamed: bool,
    },
    Status(StatusCode),
}

struct Behavior {
    keys: Vec<Value>,
    /// The `issuer` the discovery document names (default: the real one).
    discovery_issuer: Option<String>,
    delay: Duration,
    jwks: JwksMode,
}

#[derive(Clone)]
struct ServerState {
    issuer: String,
    behavior: Arc<Mutex<Behavior>>,
    discovery_hits: Arc<AtomicUsize>,
    jwks_hits: Arc<AtomicUsize>,
}

struct TestIssuer {
    url: String,
    state: ServerState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let url = format!("http://127.0.0.1:{port}");
        let state = ServerState {
            issuer: url.clone(),
            behavior: Arc::new(Mutex::new(Behavior {
                keys: keys.iter().map(|k| k.jwk.clone()).collect(),
                discovery_issuer: None,
                delay: Duration::ZERO,
                jwks: JwksMode::Keys,
            })),
            discovery_hits: Arc::default(),
            jwks_hits: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { url, state, task }
    }

    fn set(&self, change: impl FnOnce(&mut Behavior)) {
        change(&mut self.state.behavior.lock().expect("behavior"));
    }

    fn set_keys(&self, keys: &[&TestKey]) {
        self.set(|b| b.keys = keys.iter().map(|k| k.jwk.clone()).collect());
    }

    /// (discovery requests, JWKS requests) so far.
    fn hits(&self) -> (usize, usize) {
        (
            self.state.discovery_hits.load(Ordering::SeqCst),
            self.state.jwks_hits.load(Ordering::SeqCst),
        )
    }

    fn identity(&self) -> FederatedIdentity {
        FederatedIdentity {
            issuer: self.url.clone(),
            subject: SUBJECT_PATTERN.to_owned(),
            audience: AUDIENCE.to_owned(),
            custom_claim_rules: BTreeMap::new(),
        }
    }

    /// Claims that `identity()` accepts.
    fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.url,
            "sub": SUBJECT,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "repository": "example/app",
            "repository_owner": "example",
            "run_number": 42,
            "ref_protected": true,
        })
    }
}

async fn discovery(State(s): State<ServerState>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let (delay, issuer) = {
        let b = s.behavior.lock().expect("behavior");
        (b.delay, b.discovery_issuer.clone())
    };
    tokio::time::sleep(delay).await;
    axum::Json(json!({
        "issuer": issuer.unwrap_or_else(|| s.issuer.clone()),
        "jwks_uri": format!("{}/jwks", s.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(s): State<ServerState>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let (keys, mode) = {
        let b = s.behavior.lock().expect("behavior");
        (b.keys.clone(), b.jwks.clone())
    };
    match mode {
        JwksMode::Keys => axum::Json(json!({ "keys": keys })).into_response(),
        JwksMode::Status(status) => status.into_response(),
        JwksMode::Huge {
            bytes,
            streamed: false,
        } => huge_jwks(bytes).into_response(),
        JwksMode::Huge {
            bytes,
            streamed: true,
        } => {
            let body = huge_jwks(bytes);
            let chunks: Vec<Result<bytes::Bytes, Infallible>> = body
                .into_bytes()
                .chunks(16 * 1024)
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let stream = futures::stream::iter(chunks);
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .expect("streamed response")
        }
    }
}

/// A syntactically valid JWKS of about `bytes` bytes.
fn huge_jwks(bytes: usize) -> String {
    format!(r#"{{"keys":[],"padding":"{}"}}"#, "x".repeat(bytes))
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit")
}

fn config() -> OidcConfig {
    OidcConfig {
        allow_http: true,
        fetch_timeout: Duration::from_secs(5),
        ..OidcConfig::default()
    }
}

fn verifier(cfg: OidcConfig) -> OidcVerifier {
    OidcVerifier::new(cfg).expect("verifier")
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

/// `claims` with `changes` merged in (a `null` removes the claim).
fn with(mut claims: Value, changes: Value) -> Value {
    let map = claims.as_object_mut().expect("claims object");
    for (k, v) in changes.as_object().expect("changes object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    claims
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

// ---------------------------------------------------------------------------------------------
// The right token

#[tokio::test]
async fn rs256_token_verifies_and_returns_its_claims() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let token = sign(&key, &issuer.claims());
    let claims = v.verify(&token, &issuer.identity()).await.expect("valid");
    assert_eq!(claims["sub"], SUBJECT);
    assert_eq!(claims["repository"], "example/app");
    assert_eq!(issuer.hits(), (1, 1));
    // Cached: a second verification does not reach the issuer.
    v.verify(&token, &issuer.identity()).await.expect("valid");
    assert_eq!(issuer.hits(), (1, 1));
}

#[tokio::test]
async fn es256_token_verifies() {
    let rsa = rsa_key(0, "rsa-1");
    let ec = ec_key("ec-1");
    let issuer = TestIssuer::start(&[&rsa, &ec]).await;
    let v = verifier(config());
    let claims = v
        .verify(&sign(&ec, &issuer.claims()), &issuer.identity())
        .await
        .expect("valid ES256");
    assert_eq!(claims["aud"], AUDIENCE);
    // Both keys from one fetch.
    v.verify(&sign(&rsa, &issuer.claims()), &issuer.identity())
        .await
        .expect("valid RS256");
    assert_eq!(issuer.hits(), (1, 1));
}

#[tokio::test]
async fn a_token_without_kid_uses_the_issuers_only_fitting_key() {
    let key = rsa_key(0, "rsa-1");
    let ec = ec_key("ec-1");
    let issuer = TestIssuer::start(&[&key, &ec]).await;
    let v = verifier(config());
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &issuer.claims(),
        &key.encoding,
    )
    .expect("sign");
    v.verify(&token, &issuer.identity()).await.expect("valid");
    // Two RSA keys: no kid is ambiguous.
    issuer.set_keys(&[&key, &rsa_key(1, "rsa-2")]);
    let v = verifier(config());
    let e = v
        .verify(&token, &issuer.identity())
        .await
        .expect_err("ambiguous");
    assert!(matches!(e, OidcError::KeyNotFound { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Claims

#[tokio::test]
async fn wrong_subject_is_refused() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let token = sign(
        &key,
        &with(
            issuer.claims(),
            json!({"sub": "repo:evil/app:ref:refs/heads/main"}),
        ),
    );
    let e = v
        .verify(&token, &issuer.identity())
        .await
        .expect_err("wrong sub");
    assert_eq!(e, OidcError::WrongSubject);
    let token = sign(&key, &with(issuer.claims(), json!({"sub": 7})));
    let e = v
        .verify(&token, &issuer.identity())
        .await
        .expect_err("sub not a string");
    assert_eq!(e, OidcError::WrongSubject);
    let token = sign(&key, &with(issuer.claims(), json!({"sub": null})));
    let e = v
        .verify(&token, &issuer.identity())
        .await
        .expect_err("no sub");
    assert_eq!(e, OidcError::MissingClaim("sub".to_owned()));
}

#[tokio::test]
async fn subject_pattern_star_matches_and_a_near_miss_fails() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    for sub in [
        "repo:example/app:ref:refs/heads/main",
        "repo:example/app:ref:refs/heads/feature/x",
        "repo:example/app:ref:refs/heads/",
    ] {
        let token = sign(&key, &with(issuer.claims(), json!({ "sub": sub })));
        v.verify(&token, &id).await.expect(sub);
    }
    for sub in [
        "repo:example/app:ref:refs/tags/v1",
        "repo:example/app2:ref:refs/heads/main",
        "repo:example/app:ref:refs/heads",
        "xrepo:example/app:ref:refs/heads/main",
    ] {
        let token = sign(&key, &with(issuer.claims(), json!({ "sub": sub })));
        let e = v.verify(&token, &id).await.expect_err(sub);
        assert_eq!(e, OidcError::WrongSubject, "{sub}");
    }
    // No `*`: exact.
    let exact = FederatedIdentity {
        subject: SUBJECT.to_owned(),
        ..issuer.identity()
    };
    v.verify(&sign(&key, &issuer.claims()), &exact)
        .await
        .expect("exact subject");
}

#[tokio::test]
async fn wrong_audience_is_refused_and_an_array_containing_ours_verifies() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    let token = sign(&key, &with(issuer.claims(), json!({"aud": "someone-else"})));
    assert_eq!(v.verify(&token, &id).await, Err(OidcError::WrongAudience));
    let token = sign(&key, &with(issuer.claims(), json!({"aud": ["a", "b"]})));
    assert_eq!(v.verify(&token, &id).await, Err(OidcError::WrongAudience));
    let token = sign(&key, &with(issuer.claims(), json!({"aud": 5})));
    let e = v.verify(&token, &id).await.expect_err("aud not a string");
    assert!(
        matches!(e, OidcError::WrongAudience | OidcError::MissingClaim(_)),
        "{e:?}"
    );
    let token = sign(&key, &with(issuer.claims(), json!({"aud": null})));
    assert_eq!(
        v.verify(&token, &id).await,
        Err(OidcError::MissingClaim("aud".to_owned()))
    );
    let token = sign(
        &key,
        &with(issuer.claims(), json!({"aud": ["sts.example", AUDIENCE]})),
    );
    v.verify(&token, &id).await.expect("array containing ours");
}

#[tokio::test]
async fn wrong_issuer_claim_is_refused() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    for iss in [
        json!("https://other.example"),
        json!(format!("{}/", issuer.url)),
        json!([issuer.url]),
    ] {
        let token = sign(&key, &with(issuer.claims(), json!({ "iss": iss })));
        assert_eq!(
            v.verify(&token, &id).await,
            Err(OidcError::WrongIssuer),
            "{iss}"
        );
    }
    let token = sign(&key, &with(issuer.claims(), json!({"iss": null})));
    assert_eq!(
        v.verify(&token, &id).await,
        Err(OidcError::MissingClaim("iss".to_owned()))
    );
}

#[tokio::test]
async fn custom_claim_rules_match_strings_numbers_and_booleans() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let rules = |pairs: &[(&str, &str)]| FederatedIdentity {
        custom_claim_rules: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..issuer.identity()
    };
    let token = sign(&key, &issuer.claims());
    let ok = rules(&[
        ("repository_owner", "example"),
        ("repository", "example/*"),
        ("run_number", "4*"),
        ("ref_protected", "true"),
    ]);
    v.verify(&token, &ok).await.expect("all rules match");

    let mismatch = rules(&[("repository_owner", "example"), ("repository", "other/*")]);
    assert_eq!(
        v.verify(&token, &mismatch).await,
        Err(OidcError::ClaimRule("repository".to_owned()))
    );
    let boolean = rules(&[("ref_protected", "false")]);
    assert_eq!(
        v.verify(&token, &boolean).await,
        Err(OidcError::ClaimRule("ref_protected".to_owned()))
    );
    let missing = rules(&[("environment", "*")]);
    assert_eq!(
        v.verify(&token, &missing).await,
        Err(OidcError::MissingClaim("environment".to_owned()))
    );
    // An object or array claim matches no rule, not even `*`.
    let token = sign(
        &key,
        &with(issuer.claims(), json!({"environment": ["prod"]})),
    );
    assert_eq!(
        v.verify(&token, &missing).await,
        Err(OidcError::ClaimRule("environment".to_owned()))
    );
}

#[tokio::test]
async fn expired_token_is_refused_beyond_the_leeway() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    let token = sign(&key, &with(issuer.claims(), json!({"exp": now() - 120})));
    assert_eq!(v.verify(&token, &id).await, Err(OidcError::Expired));
    // Within the 60 s leeway.
    let token = sign(&key, &with(issuer.claims(), json!({"exp": now() - 20})));
    v.verify(&token, &id).await.expect("within leeway");
    let token = sign(&key, &with(issuer.claims(), json!({"exp": null})));
    assert_eq!(
        v.verify(&token, &id).await,
        Err(OidcError::MissingClaim("exp".to_owned()))
    );
    let token = sign(&key, &with(issuer.claims(), json!({"exp": "soon"})));
    let e = v.verify(&token, &id).await.expect_err("exp not a number");
    assert!(
        matches!(e, OidcError::Malformed(_) | OidcError::MissingClaim(_)),
        "{e:?}"
    );
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    let token = sign(&key, &with(issuer.claims(), json!({"nbf": now() + 600})));
    assert_eq!(v.verify(&token, &id).await, Err(OidcError::NotYetValid));
    let token = sign(&key, &with(issuer.claims(), json!({"nbf": now() + 20})));
    v.verify(&token, &id).await.expect("within leeway");
    let token = sign(&key, &with(issuer.claims(), json!({"nbf": null})));
    v.verify(&token, &id).await.expect("nbf is optional");
}

// ---------------------------------------------------------------------------------------------
// Signatures and algorithms

#[tokio::test]
async fn a_token_signed_by_another_key_with_the_same_kid_is_a_bad_signature() {
    let key = rsa_key(0, "rsa-1");
    let forger = rsa_key(1, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let token = sign(&forger, &issuer.claims());
    assert_eq!(
        v.verify(&token, &issuer.identity()).await,
        Err(OidcError::BadSignature)
    );
    // Tampered claims under the right key's signature.
    let good = sign(&key, &issuer.claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil = b64(&with(
        issuer.claims(),
        json!({"sub": "repo:example/app:ref:refs/heads/x"}),
    ));
    parts[1] = &evil;
    assert_eq!(
        v.verify(&parts.join("."), &issuer.identity()).await,
        Err(OidcError::BadSignature)
    );
}

#[tokio::test]
async fn alg_none_and_hs256_tokens_are_refused_without_a_fetch() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(config());
    let id = issuer.identity();
    let claims = issuer.claims();

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&claims)
    );
    let e = v.verify(&none, &id).await.expect_err("alg none");
    assert!(
        matches!(
            e,
            OidcError::Malformed(_) | OidcError::UnsupportedAlgorithm(_)
        ),
        "{e:?}"
    );

    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".to_owned());
    let secret = EncodingKey::from_secret(b"anyone can know this").expect("hmac key");
    let hs = jsonwebtoken::encode(&header, &claims, &secret).expect("sign");
    let e = v.verify(&hs, &id).await.expect_err("HS256");
    assert!(matches!(e, OidcError::UnsupportedAlgorithm(_)), "{e:?}");

    for junk in ["", "a.b", "a.b.c", "not a token", &"x.".repeat(20_000)] {
        let e = v.verify(junk, &id).await.expect_err("junk");
        assert!(matches!(e, OidcError::Malformed(_)), "{e:?}");
    }
    assert_eq!(issuer.hits(), (0, 0), "refused before any fetch");
}

#[tokio::test]
async fn a_key_of_the_wrong_type_for_the_alg_is_not_used() {
    let rsa = rsa_key(0, "shared");
    let issuer = TestIssuer::start(&[&rsa]).await;
    let v = verifier(config());
    // An ES256 token naming the RSA key's kid.
    let ec = ec_key("shared");
    let e = v
        .verify(&sign(&ec, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("EC token, RSA key");
    assert!(matches!(e, OidcError::KeyNotFound { .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Cache and refresh

#[tokio::test]
async fn an_unknown_kid_refetches_and_finds_a_rotated_key() {
    let old = rsa_key(0, "old");
    let new = rsa_key(1, "new");
    let issuer = TestIssuer::start(&[&old]).await;
    let v = verifier(OidcConfig {
        refresh_interval_min: Duration::from_millis(300),
        ..config()
    });
    let id = issuer.identity();
    v.verify(&sign(&old, &issuer.claims()), &id)
        .await
        .expect("old key");
    assert_eq!(issuer.hits(), (1, 1));

    issuer.set_keys(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    v.verify(&sign(&new, &issuer.claims()), &id)
        .await
        .expect("rotated-in key after one refetch");
    assert_eq!(issuer.hits(), (2, 2));
    // Both keys now cached.
    v.verify(&sign(&new, &issuer.claims()), &id)
        .await
        .expect("new");
    v.verify(&sign(&old, &issuer.claims()), &id)
        .await
        .expect("old");
    assert_eq!(issuer.hits(), (2, 2));
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let key = rsa_key(0, "rsa-1");
    let stranger = rsa_key(1, "not-on-the-issuer");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(OidcConfig {
        refresh_interval_min: Duration::from_millis(500),
        ..config()
    });
    let id = issuer.identity();
    v.verify(&sign(&key, &issuer.claims()), &id)
        .await
        .expect("known key");
    assert_eq!(issuer.hits(), (1, 1));
    tokio::time::sleep(Duration::from_millis(600)).await;

    let token = sign(&stranger, &issuer.claims());
    let e = v.verify(&token, &id).await.expect_err("unknown kid");
    assert!(matches!(e, OidcError::KeyNotFound { .. }), "{e:?}");
    assert_eq!(issuer.hits(), (2, 2), "one refetch");
    for _ in 0..5 {
        let e = v.verify(&token, &id).await.expect_err("still unknown");
        assert!(matches!(e, OidcError::KeyNotFound { .. }), "{e:?}");
    }
    assert_eq!(issuer.hits(), (2, 2), "no refetch within the interval");
    // Known keys keep verifying meanwhile.
    v.verify(&sign(&key, &issuer.claims()), &id)
        .await
        .expect("known key");

    tokio::time::sleep(Duration::from_millis(600)).await;
    v.verify(&token, &id).await.expect_err("unknown kid");
    assert_eq!(issuer.hits(), (3, 3), "one more refetch after the interval");
}

#[tokio::test]
async fn concurrent_verifications_fetch_the_issuer_once() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    issuer.set(|b| b.delay = Duration::from_millis(200));
    let v = verifier(config());
    let id = issuer.identity();
    let token = sign(&key, &issuer.claims());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (v, id, token) = (v.clone(), id.clone(), token.clone());
        tasks.push(tokio::spawn(async move { v.verify(&token, &id).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("valid");
    }
    assert_eq!(issuer.hits(), (1, 1));
}

#[tokio::test]
async fn keys_past_their_ttl_are_refetched_and_serve_stale_while_the_issuer_fails() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(OidcConfig {
        cache_ttl: Duration::from_millis(1500),
        refresh_interval_min: Duration::ZERO,
        ..config()
    });
    let id = issuer.identity();
    let token = sign(&key, &issuer.claims());
    v.verify(&token, &id).await.expect("fresh");
    assert_eq!(issuer.hits(), (1, 1));
    tokio::time::sleep(Duration::from_millis(1700)).await;
    // Past the TTL: refetched.
    v.verify(&token, &id).await.expect("refetched");
    assert_eq!(issuer.hits(), (2, 2));

    tokio::time::sleep(Duration::from_millis(1700)).await;
    issuer.set(|b| b.jwks = JwksMode::Status(StatusCode::INTERNAL_SERVER_ERROR));
    // Past the TTL, the refetch fails: the stale key (under 2 × TTL old) still serves.
    v.verify(&token, &id).await.expect("stale key serves");
    assert_eq!(issuer.hits(), (3, 3));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Past 2 × TTL: the fetch's error.
    let e = v.verify(&token, &id).await.expect_err("too stale");
    assert!(
        matches!(&e, OidcError::Fetch { why, .. } if why.contains("500")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The issuer's documents

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    issuer.set(|b| b.discovery_issuer = Some("https://impostor.example".to_owned()));
    let v = verifier(config());
    let e = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("issuer mismatch");
    assert!(
        matches!(&e, OidcError::Discovery { why, .. } if why.contains("impostor")),
        "{e:?}"
    );
    assert_eq!(issuer.hits(), (1, 0), "the JWKS is never fetched");

    // A trailing slash is another issuer too.
    issuer.set(|b| b.discovery_issuer = Some(format!("{}/", issuer.url)));
    let v = verifier(config());
    let e = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("issuer mismatch");
    assert!(matches!(e, OidcError::Discovery { .. }), "{e:?}");
}

#[tokio::test]
async fn an_http_issuer_is_refused_unless_allowed() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    let v = verifier(OidcConfig {
        allow_http: false,
        ..config()
    });
    let e = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("http issuer");
    assert!(
        matches!(&e, OidcError::IssuerNotAllowed { why, .. } if why.contains("https")),
        "{e:?}"
    );
    assert_eq!(issuer.hits(), (0, 0));
}

#[tokio::test]
async fn an_oversized_jwks_is_refused() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    for streamed in [false, true] {
        issuer.set(|b| {
            b.jwks = JwksMode::Huge {
                bytes: 1024 * 1024,
                streamed,
            }
        });
        let v = verifier(config());
        let e = v
            .verify(&sign(&key, &issuer.claims()), &issuer.identity())
            .await
            .expect_err("1 MiB JWKS");
        assert!(
            matches!(&e, OidcError::Fetch { why, .. } if why.contains("larger than 65536 bytes")),
            "streamed={streamed}: {e:?}"
        );
    }
    // Under the limit, a JWKS with no usable key is refused as such.
    issuer.set(|b| {
        b.jwks = JwksMode::Huge {
            bytes: 1000,
            streamed: true,
        }
    });
    let v = verifier(config());
    let e = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("empty JWKS");
    assert!(matches!(e, OidcError::Jwks { .. }), "{e:?}");
}

#[tokio::test]
async fn a_slow_issuer_fails_within_the_timeout() {
    let key = rsa_key(0, "rsa-1");
    let issuer = TestIssuer::start(&[&key]).await;
    issuer.set(|b| b.delay = Duration::from_secs(5));
    let v = verifier(OidcConfig {
        fetch_timeout: Duration::from_millis(500),
        ..config()
    });
    let started = Instant::now();
    let e = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("slow issuer");
    let took = started.elapsed();
    assert!(matches!(e, OidcError::Fetch { .. }), "{e:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // Within the interval, the failure answers at once, without another request.
    let started = Instant::now();
    let again = v
        .verify(&sign(&key, &issuer.claims()), &issuer.identity())
        .await
        .expect_err("still failing");
    assert!(matches!(again, OidcError::Fetch { .. }), "{again:?}");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(issuer.hits(), (1, 0));
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_fetch_error() {
    // A port that was free a moment ago.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let key = rsa_key(0, "rsa-1");
    let id = FederatedIdentity {
        issuer: format!("http://127.0.0.1:{port}"),
        subject: "*".to_owned(),
        audience: AUDIENCE.to_owned(),
        custom_claim_rules: BTreeMap::new(),
    };
    let v = verifier(config());
    let claims = json!({"iss": id.issuer, "sub": "x", "aud": AUDIENCE, "exp": now() + 60});
    let e = v.verify(&sign(&key, &claims), &id).await.expect_err("down");
    assert!(matches!(e, OidcError::Fetch { .. }), "{e:?}");
    assert!(!e.to_string().contains(&sign(&key, &claims)));
}

//! Tests of the test support itself: the loopback OIDC issuer serves discovery and a JWKS over
//! real HTTP, and the tokens it signs verify against that JWKS (and its forgeries do not), as a
//! relying party would check them.

use std::time::Duration;

use authkeys_tests::oidc::{OIDC_KID, OIDC_UNKNOWN_KID};
use authkeys_tests::{OidcIssuer, wait_until_async};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const AUDIENCE: &str = "authkeys";
const SUBJECT: &str = "repo:example/app:ref:refs/heads/main";

/// A client that never goes through a proxy from the environment.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client")
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body = response.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("JSON body")
}

/// Discovery, then the JWKS it names, as a verifier fetches them.
async fn fetch_jwks(issuer: &OidcIssuer) -> JwkSet {
    let client = client();
    let discovery = get_json(
        &client,
        &format!("{}/.well-known/openid-configuration", issuer.url()),
    )
    .await;
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    serde_json::from_value(get_json(&client, jwks_uri).await).expect("a JWKS")
}

/// What a relying party checks: signature by the JWKS key the kid names, ES256, iss, aud,
/// exp and nbf.
fn verify(issuer: &OidcIssuer, jwks: &JwkSet, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header
        .kid
        .ok_or(ErrorKind::MissingRequiredClaim("kid".to_owned()))?;
    let jwk = jwks.find(&kid).ok_or(ErrorKind::InvalidKeyFormat)?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[issuer.url()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

#[tokio::test]
async fn discovery_and_jwks_are_served_over_http() {
    let issuer = OidcIssuer::start().await.expect("start issuer");
    let url = issuer.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with('/'), "{url}");
    assert_eq!(issuer.requests(), 0);

    let client = client();
    let discovery = get_json(&client, &format!("{url}/.well-known/openid-configuration")).await;
    assert_eq!(discovery["issuer"], json!(url));
    assert_eq!(discovery["jwks_uri"], json!(format!("{url}/jwks")));
    assert_eq!(issuer.jwks_url(), format!("{url}/jwks"));
    assert_eq!(issuer.requests(), 1);

    let jwks = get_json(&client, &issuer.jwks_url()).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kid"], OIDC_KID);
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private part: {key}");
    assert_eq!(issuer.requests(), 2);
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1)
    );

    // Anything else is a 404, and not counted.
    let response = client
        .get(format!("{url}/token"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(issuer.requests(), 2);
}

#[tokio::test]
async fn a_signed_token_verifies_against_the_served_jwks() {
    let issuer = OidcIssuer::start().await.expect("start issuer");
    let jwks = fetch_jwks(&issuer).await;
    let mut claims = issuer.claims(AUDIENCE, SUBJECT);
    claims["repository"] = json!("example/app");
    let token = issuer.sign(&claims).expect("sign");

    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(OIDC_KID));
    let verified = verify(&issuer, &jwks, &token).expect("valid token");
    assert_eq!(verified, claims);
    assert_eq!(issuer.requests(), 2);
}

#[tokio::test]
async fn standard_claims_are_current() {
    let issuer = OidcIssuer::start().await.expect("start issuer");
    let claims = issuer.claims(AUDIENCE, SUBJECT);
    assert_eq!(claims["iss"], json!(issuer.url()));
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], SUBJECT);
    let at = |name: &str| claims[name].as_i64().expect(name);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("seconds fit");
    assert!((at("iat") - now).abs() <= 5, "{claims}");
    assert_eq!(at("exp"), at("iat") + 600);
    assert_eq!(at("nbf"), at("iat") - 5);
}

#[tokio::test]
async fn forged_tokens_do_not_verify() {
    let issuer = OidcIssuer::start().await.expect("start issuer");
    let jwks = fetch_jwks(&issuer).await;
    let claims = issuer.claims(AUDIENCE, SUBJECT);

    // Same kid, another key: a bad signature.
    let forged = issuer.sign_with_other_key(&claims).expect("sign");
    let header = jsonwebtoken::decode_header(&forged).expect("header");
    assert_eq!(header.kid.as_deref(), Some(OIDC_KID));
    let e = verify(&issuer, &jwks, &forged).expect_err("other key");
    assert_eq!(e.kind(), &ErrorKind::InvalidSignature);

    // A kid the JWKS does not have.
    let unknown = issuer.sign_with_unknown_kid(&claims).expect("sign");
    let header = jsonwebtoken::decode_header(&unknown).expect("header");
    assert_eq!(header.kid.as_deref(), Some(OIDC_UNKNOWN_KID));
    assert!(jwks.find(OIDC_UNKNOWN_KID).is_none());
    // Even under the issuer's kid, its signature is not the issuer's.
    let key = DecodingKey::from_jwk(jwks.find(OIDC_KID).expect("k1")).expect("key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUDIENCE]);
    let e = jsonwebtoken::decode::<Value>(&unknown, &key, &validation).expect_err("unknown kid");
    assert_eq!(e.kind(), &ErrorKind::InvalidSignature);

    // The verifier's own checks still apply to the issuer's key: wrong audience, expired.
    let token = issuer
        .sign(&issuer.claims("someone-else", SUBJECT))
        .expect("sign");
    let e = verify(&issuer, &jwks, &token).expect_err("wrong aud");
    assert_eq!(e.kind(), &ErrorKind::InvalidAudience);
    let mut expired = claims.clone();
    expired["exp"] = json!(claims["iat"].as_i64().expect("iat") - 3600);
    let e = verify(&issuer, &jwks, &issuer.sign(&expired).expect("sign")).expect_err("expired");
    assert_eq!(e.kind(), &ErrorKind::ExpiredSignature);
}

#[tokio::test]
async fn two_issuers_have_their_own_keys() {
    let a = OidcIssuer::start().await.expect("start issuer");
    let b = OidcIssuer::start().await.expect("start issuer");
    assert_ne!(a.url(), b.url());
    let jwks_a = fetch_jwks(&a).await;
    let claims = a.claims(AUDIENCE, SUBJECT);
    let from_b = b.sign(&claims).expect("sign");
    let e = verify(&a, &jwks_a, &from_b).expect_err("b's key is not a's");
    assert_eq!(e.kind(), &ErrorKind::InvalidSignature);
    assert_eq!(b.requests(), 0);
}

#[tokio::test]
async fn the_issuer_stops_on_drop() {
    let issuer = OidcIssuer::start().await.expect("start issuer");
    let url = issuer.url().to_owned();
    let client = client();
    // A keep-alive connection open at drop time must not keep it answering either.
    get_json(&client, &format!("{url}/jwks")).await;
    drop(issuer);
    let discovery = format!("{url}/.well-known/openid-configuration");
    wait_until_async(Duration::from_secs(5), async || {
        client.get(&discovery).send().await.is_err()
    })
    .await
    .expect("the issuer no longer answers");
}

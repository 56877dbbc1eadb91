//! `POST /api/v2/oauth/token` (R19) and `POST /api/v2/oauth/token-exchange` (R20): an OAuth client exchanges its id and secret for an access
//! token valid one hour, as Tailscale's API does. Form fields `client_id`, `client_secret`,
//! `grant_type` (only `client_credentials`, optional) and `scope` (space-separated, optional:
//! narrower than the client's); or HTTP Basic `client_id:client_secret`. The answer is
//! `{access_token, token_type: "Bearer", expires_in, scope}`.
//!
//! The gateway checks the secret against the client's keyed hash (the identity view), in
//! constant time; the command service mints the token (the gateway cannot derive secrets) and
//! `decide` checks the client still exists and the scopes are its own. Every failure to
//! authenticate is one uniform 401.

use authkeys_domain::secret::{self, SecretKind};
use authkeys_events::{Scope, Timestamp};
use authkeys_protocol::query::{ClientInfo, ClientsQuery};
use authkeys_protocol::{AccessTokenReply, IssueAccessTokenRequest, subject};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::oidc::FederatedIdentity;
use super::{AppState, json};

/// Tailscale's answer.
#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

/// The one refusal of credentials that do not authenticate.
fn invalid_client() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid client credentials")
}

/// The client's id and secret, and the scopes asked, from the form body or HTTP Basic.
#[derive(Debug, Default)]
struct Credentials {
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

impl Credentials {
    fn read(headers: &HeaderMap, body: &[u8]) -> Result<Self, ApiError> {
        let form = match headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            None => true,
            Some(v) => v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
        };
        if !form {
            return Err(ApiError::bad_request(
                "request body: Content-Type must be application/x-www-form-urlencoded",
            ));
        }
        let mut c = Credentials::default();
        for (name, value) in form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "client_id" => &mut c.client_id,
                "client_secret" => &mut c.client_secret,
                "scope" => &mut c.scope,
                "grant_type" if value == "client_credentials" => continue,
                "grant_type" => {
                    return Err(ApiError::bad_request(
                        "grant_type: must be client_credentials",
                    ));
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "{other}: is not a known field"
                    )));
                }
            };
            *slot = Some(value.into_owned());
        }
        if let Some((id, secret)) = basic(headers) {
            c.client_id.get_or_insert(id);
            c.client_secret.get_or_insert(secret);
        }
        Ok(c)
    }
}

/// The body is a form: `application/x-www-form-urlencoded`, or no content type.
fn check_form(headers: &HeaderMap) -> Result<(), ApiError> {
    let form = match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(v) => v.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        }),
    };
    if form {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "request body: Content-Type must be application/x-www-form-urlencoded",
        ))
    }
}

/// `Authorization: Basic base64(id:secret)`, if present and well-formed.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = super::auth::base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `scope=a b`: each one of Tailscale's names.
fn scopes(asked: Option<&str>) -> Result<Option<Vec<Scope>>, ApiError> {
    let Some(asked) = asked.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    asked
        .split_whitespace()
        .map(|s| {
            Scope::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("scope: {s:?} is not a scope")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(super) async fn token(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let creds = Credentials::read(&headers, &body)?;
    let asked = scopes(creds.scope.as_deref())?;
    let secret_text = creds
        .client_secret
        .ok_or_else(|| ApiError::bad_request("client_secret: is required"))?;
    let presented =
        secret::parse(SecretKind::Client, &secret_text).map_err(|_| invalid_client())?;
    if creds
        .client_id
        .as_deref()
        .is_some_and(|id| id != presented.id)
    {
        return Err(invalid_client());
    }
    let client = live_client(&shared, &presented.id).await?;
    // A federated identity has no secret: it exchanges OIDC tokens instead.
    let stored = client.secret_hash.ok_or_else(invalid_client)?;
    let hash = presented.hash(&shared.hashing_key);
    if !bool::from(hash.0.ct_eq(&stored.0)) {
        return Err(invalid_client());
    }
    issue(&shared, client, asked).await
}

/// One client of any tailnet by id, if it exists and is not deleted; else the uniform 401.
async fn live_client(shared: &AppState, client_id: &str) -> Result<ClientInfo, ApiError> {
    let head = shared.nats.head().await?;
    shared
        .nats
        .query(&ClientsQuery {
            tailnet: None,
            client_id: Some(client_id.to_owned()),
            created_by: None,
            min_seq: Some(head),
        })
        .await
        .map_err(|e| match e.status {
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => invalid_client(),
            _ => e,
        })?
        .clients
        .into_iter()
        .find(|c| !c.deleted)
        .ok_or_else(invalid_client)
}

/// `POST /api/v2/oauth/token-exchange` (R20): form fields `client_id` (a federated identity)
/// and `jwt` (an OIDC token, e.g. a CI job's) → an access token as `/oauth/token` answers. The
/// JWT must verify against the identity's issuer ([`crate::oidc`]); every failure is the same
/// 401 (its cause goes to the log).
pub(super) async fn token_exchange(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = form_fields(&headers, &body, &["client_id", "jwt", "scope"])?;
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let client_id =
        field("client_id").ok_or_else(|| ApiError::bad_request("client_id: is required"))?;
    let jwt = field("jwt").ok_or_else(|| ApiError::bad_request("jwt: is required"))?;
    let asked = scopes(field("scope").as_deref())?;
    let client = live_client(&shared, &client_id).await?;
    let spec = client.federated.clone().ok_or_else(invalid_client)?;
    let identity = FederatedIdentity {
        issuer: spec.issuer,
        subject: spec.subject,
        audience: spec.audience,
        custom_claim_rules: spec.custom_claim_rules,
    };
    if let Err(e) = shared.oidc.verify(&jwt, &identity).await {
        tracing::info!(client = %client.client_id, kind = e.kind(), error = %e, "token exchange refused");
        return Err(invalid_client());
    }
    issue(&shared, client, asked).await
}

/// The form's fields (`application/x-www-form-urlencoded`, or no content type), each of `known`.
fn form_fields(
    headers: &HeaderMap,
    body: &[u8],
    known: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    check_form(headers)?;
    form_urlencoded::parse(body)
        .map(|(n, v)| {
            if known.contains(&n.as_ref()) {
                Ok((n.into_owned(), v.into_owned()))
            } else {
                Err(ApiError::bad_request(format!("{n}: is not a known field")))
            }
        })
        .collect()
}

/// The command service mints `client`'s access token (narrowed to `asked`); Tailscale's answer.
async fn issue(
    shared: &AppState,
    client: ClientInfo,
    asked: Option<Vec<Scope>>,
) -> Result<Response, ApiError> {
    let request = IssueAccessTokenRequest {
        command_id: authkeys_protocol::random_id('c')
            .map_err(|e| ApiError::internal("make a command id", e))?,
        tailnet: client.tailnet,
        client_id: client.client_id,
        scopes: asked.map(|s| s.iter().map(ToString::to_string).collect()),
    };
    let reply: AccessTokenReply = shared
        .nats
        .request(subject::ISSUE_ACCESS_TOKEN, &request)
        .await?;
    let access_token = reply
        .access_token
        .ok_or_else(|| ApiError::internal("issue an access token", "no secret in the reply"))?;
    Ok(json(&TokenAnswer {
        access_token,
        token_type: "Bearer",
        expires_in: expires_in(reply.expires, shared.clock.now()),
        scope: reply.scopes.join(" "),
    }))
}

/// Whole seconds until `expires`.
fn expires_in(expires: Timestamp, now: Timestamp) -> i64 {
    (expires.unix_ms() - now.unix_ms()).max(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_from_the_form_or_basic_and_scopes_checked() {
        let mut h = HeaderMap::new();
        let c = Credentials::read(
            &h,
            b"client_id=kA&client_secret=tskey-client-x&grant_type=client_credentials&scope=auth_keys",
        )
        .expect("a form");
        assert_eq!(c.client_id.as_deref(), Some("kA"));
        assert_eq!(c.scope.as_deref(), Some("auth_keys"));
        assert!(Credentials::read(&h, b"grant_type=password").is_err());
        assert!(Credentials::read(&h, b"colour=red").is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic a0E6dHNrZXktY2xpZW50LXk="),
        );
        let c = Credentials::read(&h, b"").expect("basic");
        assert_eq!(
            (c.client_id.as_deref(), c.client_secret.as_deref()),
            (Some("kA"), Some("tskey-client-y"))
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(Credentials::read(&h, b"{}").is_err());
        assert_eq!(
            scopes(Some("auth_keys devices:core:read")).expect("valid"),
            Some(vec![Scope::AuthKeys, Scope::DevicesCoreRead])
        );
        assert_eq!(scopes(Some(" ")).expect("none"), None);
        assert!(scopes(Some("auth_keys everything")).is_err());
        assert_eq!(
            expires_in(
                Timestamp::from_unix_ms(3_600_000).expect("t"),
                Timestamp::from_unix_ms(500).expect("t")
            ),
            3599
        );
    }
}

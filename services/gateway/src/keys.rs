//! `/tailnet/{tailnet}/keys[/{keyId}]`: generate, list, get and revoke the caller's auth keys
//! (R07–R09, R12), and list, get and revoke the caller's own API tokens (`keyType: "api"`, R18).

use authkeys_events::{KeyId, TokenId};
use authkeys_protocol::subject;
use authkeys_protocol::{
    self, Capabilities, ClientIdReply, ClientKey, ClientReply, CreateClientRequest,
    DeleteClientRequest, GenerateKeyRequest, IssueTokenRequest, Key, KeyReply, RevokeKeyRequest,
    RevokeTokenRequest, RevokedTokenReply, TokenKey, TokenReply,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, query_bool};
use super::error::ApiError;
use authkeys_protocol::query::{
    ClientInfo, ClientsQuery, KeysGetQuery, KeysListQuery, TokensListQuery,
};

use super::{AppState, Authed, command_id, json, resolve_tailnet};

/// `POST /tailnet/{tailnet}/keys` body (Tailscale's shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyBody {
    /// `auth` if absent; `api` for an API token of the caller's own (R18).
    #[serde(default)]
    pub key_type: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Auth keys: 1 to 7,776,000, 7,776,000 if absent or 0 (R08). API tokens: 86,400 to
    /// 7,776,000 (1–90 days), 90 days if absent or 0 (R18).
    #[serde(default)]
    pub expiry_seconds: Option<i64>,
    /// What an auth key does (required for one; not for an API token or a client).
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// An OAuth client's scopes (R19).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// An OAuth client's tags (R19).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// A federated identity's OIDC issuer (R20).
    #[serde(default)]
    pub issuer: Option<String>,
    /// A federated identity's `sub` pattern.
    #[serde(default)]
    pub subject: Option<String>,
    /// A federated identity's audience (generated when absent).
    #[serde(default)]
    pub audience: Option<String>,
    /// A federated identity's other claims and their patterns.
    #[serde(default)]
    pub custom_claim_rules: Option<std::collections::BTreeMap<String, String>>,
}

impl CreateKeyBody {
    /// The admin command of this body, for an auth key (`keyType` absent or `auth`).
    pub fn command(
        self,
        command_id: String,
        tailnet: String,
        actor: String,
    ) -> Result<GenerateKeyRequest, ApiError> {
        if self.scopes.is_some() || self.tags.is_some() {
            return Err(ApiError::bad_request(
                "scopes: an auth key has none (its tags are capabilities.devices.create.tags)",
            ));
        }
        let capabilities = self
            .capabilities
            .ok_or_else(|| ApiError::bad_request("capabilities: is required"))?;
        Ok(GenerateKeyRequest {
            command_id,
            tailnet,
            actor,
            key_type: self.key_type,
            description: self.description,
            expiry_seconds: self.expiry_seconds,
            capabilities,
        })
    }
}

/// An auth key, an API token or an OAuth client, as the keys API lists them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum AnyKey {
    Auth(Key),
    Api(TokenKey),
    Client(ClientKey),
}

#[derive(Debug, Serialize)]
struct Keys {
    keys: Vec<AnyKey>,
}

/// What a key id of a path names: an auth key (`k…`) or an API token (`t…`); anything else is
/// unknown (404), like any key that is not the caller's.
#[derive(Debug)]
enum KeyRef {
    Auth(KeyId),
    Api(TokenId),
}

fn key_ref(text: &str) -> Result<KeyRef, ApiError> {
    if let Ok(id) = KeyId::parse(text) {
        return Ok(KeyRef::Auth(id));
    }
    super::path_id("key", text, TokenId::parse).map(KeyRef::Api)
}

/// A key as its caller sees it: an OAuth client's keys belong to their tags, not a user, so
/// their `userId` is empty (R19), as Tailscale shows them.
fn as_caller_sees(authed: &Authed, mut key: Key) -> Key {
    if authed.caller.scopes.is_some() {
        key.user_id = String::new();
    }
    key
}

/// The OAuth client `key_id`, if it is one the caller (a user) created and it is not deleted.
async fn own_client(
    shared: &AppState,
    authed: &Authed,
    key_id: &KeyId,
) -> Result<Option<ClientInfo>, ApiError> {
    if authed.caller.scopes.is_some() {
        return Ok(None);
    }
    Ok(clients(shared, authed, Some(key_id.as_str()))
        .await?
        .into_iter()
        .find(|c| c.created_by == authed.caller.user_id && !c.deleted))
}

/// The caller's API tokens (R18): their own only, whatever their role.
async fn own_tokens(shared: &AppState, authed: &Authed) -> Result<Vec<TokenKey>, ApiError> {
    let answer = shared
        .nats
        .query(&TokensListQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: authed.caller.user_id.clone(),
            min_seq: Some(authed.head),
        })
        .await?;
    let now = shared.clock.now();
    Ok(answer
        .tokens
        .iter()
        .map(|t| TokenKey::build(t, now))
        .collect())
}

pub(super) async fn create(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateKeyBody>,
) -> Result<Response, ApiError> {
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    match body.key_type.as_deref() {
        None | Some("auth") => authed.scope(authkeys_events::Scope::AuthKeys)?,
        Some("api") => {
            authed.user_only()?;
            return create_token(&shared, &authed, &headers, body).await;
        }
        Some("client") => {
            authed.scope(authkeys_events::Scope::OauthKeys)?;
            if body.issuer.is_some()
                || body.subject.is_some()
                || body.audience.is_some()
                || body.custom_claim_rules.is_some()
            {
                return Err(ApiError::bad_request(
                    "issuer: a client has a secret; for a federated identity use keyType federated",
                ));
            }
            return create_client(&shared, &authed, &headers, body).await;
        }
        Some("federated") => {
            authed.scope(authkeys_events::Scope::OauthKeys)?;
            let mut body = body;
            let issuer = body
                .issuer
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("issuer: is required"))?;
            let allow_http = shared.oidc.config().allow_http;
            crate::oidc::validate_issuer(issuer, allow_http)
                .map_err(|why| ApiError::bad_request(format!("issuer: {why}")))?;
            if body.audience.is_none() {
                // Generated, as Tailscale does when none is given: unique to this identity.
                let id = authkeys_protocol::random_id('a')
                    .map_err(|e| ApiError::internal("make an audience", e))?;
                body.audience = Some(format!("authkeys:{}:{id}", authed.caller.tailnet));
            }
            return create_client(&shared, &authed, &headers, body).await;
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "keyType: must be auth, api, client or federated, not {other:?}"
            )));
        }
    }
    let request = body.command(
        command_id(&headers)?,
        authed.caller.tailnet.clone(),
        authed.caller.user_id.clone(),
    )?;
    let reply: KeyReply = shared.nats.request(subject::GENERATE_KEY, &request).await?;
    Ok(json(&as_caller_sees(&authed, reply.key)))
}

/// `POST /tailnet/{tailnet}/keys {"keyType": "client", "scopes", "tags", "description"?}`: an
/// OAuth client (R19); its secret `tskey-client-…` is in this answer only. With `keyType:
/// "federated"` and `issuer`, `subject`, `audience`, `customClaimRules`: a federated identity
/// (R20), which holds no secret.
async fn create_client(
    shared: &AppState,
    authed: &Authed,
    headers: &HeaderMap,
    body: CreateKeyBody,
) -> Result<Response, ApiError> {
    if body.capabilities.is_some() || body.expiry_seconds.is_some() {
        return Err(ApiError::bad_request(
            "capabilities: an OAuth client has scopes and tags instead (and no expiry)",
        ));
    }
    let request = CreateClientRequest {
        command_id: command_id(headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        scopes: body
            .scopes
            .ok_or_else(|| ApiError::bad_request("scopes: is required"))?,
        tags: body.tags.unwrap_or_default(),
        description: body.description,
        issuer: body.issuer,
        subject: body.subject,
        audience: body.audience,
        custom_claim_rules: body.custom_claim_rules,
    };
    let reply: ClientReply = shared
        .nats
        .request(subject::CREATE_CLIENT, &request)
        .await?;
    Ok(json(&reply.client))
}

/// The OAuth clients of the caller's tailnet: those the caller created, or the one `client_id`.
async fn clients(
    shared: &AppState,
    authed: &Authed,
    client_id: Option<&str>,
) -> Result<Vec<ClientInfo>, ApiError> {
    let answer = shared
        .nats
        .query(&ClientsQuery {
            tailnet: Some(authed.caller.tailnet.clone()),
            client_id: client_id.map(ToOwned::to_owned),
            created_by: client_id.is_none().then(|| authed.caller.user_id.clone()),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(answer.clients)
}

/// `POST /tailnet/{tailnet}/keys {"keyType": "api", "expirySeconds"?}`: an API token for the
/// caller, 1–90 days (R18); the secret is in this answer only.
async fn create_token(
    shared: &AppState,
    authed: &Authed,
    headers: &HeaderMap,
    body: CreateKeyBody,
) -> Result<Response, ApiError> {
    if body.capabilities.is_some() {
        return Err(ApiError::bad_request(
            "capabilities: an API token has none (they are for auth keys)",
        ));
    }
    if body.description.as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "description: API tokens have none in authkeys",
        ));
    }
    let request = IssueTokenRequest {
        command_id: command_id(headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        expiry_seconds: body.expiry_seconds,
    };
    let reply: TokenReply = shared.nats.request(subject::ISSUE_TOKEN, &request).await?;
    // Read back at the head the token's answer comes from (read-your-writes).
    let head = shared.nats.head().await?;
    let answer = shared
        .nats
        .query(&TokensListQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: authed.caller.user_id.clone(),
            min_seq: Some(head),
        })
        .await?;
    let info = answer
        .tokens
        .iter()
        .find(|t| t.token_id == reply.token_id)
        .ok_or_else(|| ApiError::internal("read a new API token", "not in the identity view"))?;
    let mut token = TokenKey::build(info, shared.clock.now());
    token.key = reply.api_key;
    Ok(json(&token))
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::AuthKeysRead)?;
    let all = query_bool(q.as_deref(), "all")?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let answer = shared
        .nats
        .query(&KeysListQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: authed.caller.user_id.clone(),
            all: Some(all),
            min_seq: Some(authed.head),
        })
        .await?;
    let mut keys: Vec<AnyKey> = answer
        .keys
        .into_iter()
        .map(|k| AnyKey::Auth(as_caller_sees(&authed, k)))
        .collect();
    // A user also sees their own API tokens and OAuth clients; a client, its keys only.
    if authed.caller.scopes.is_none() {
        keys.extend(
            own_tokens(&shared, &authed)
                .await?
                .into_iter()
                .map(AnyKey::Api),
        );
        let own = clients(&shared, &authed, None).await?;
        keys.extend(
            own.iter()
                .filter(|c| !c.deleted)
                .map(|c| AnyKey::Client(ClientKey::build(c))),
        );
    }
    Ok(json(&Keys { keys }))
}

pub(super) async fn get(
    State(shared): State<AppState>,
    authed: Authed,
    Path((tailnet, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::AuthKeysRead)?;
    let key_ref = key_ref(&key)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let key_id = match key_ref {
        KeyRef::Auth(id) => id,
        KeyRef::Api(token_id) => {
            let token = own_tokens(&shared, &authed)
                .await?
                .into_iter()
                .find(|t| t.id == token_id.as_str())
                .ok_or_else(|| ApiError::not_found(format!("key {key} not found")))?;
            return Ok(json(&token));
        }
    };
    if let Some(client) = own_client(&shared, &authed, &key_id).await? {
        return Ok(json(&ClientKey::build(&client)));
    }
    let one = shared
        .nats
        .query(&KeysGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: authed.caller.user_id.clone(),
            key_id: key_id.to_string(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(json(&as_caller_sees(&authed, one.key)))
}

pub(super) async fn delete(
    State(shared): State<AppState>,
    authed: Authed,
    Path((tailnet, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::AuthKeys)?;
    let key_ref = key_ref(&key)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let key_id = match key_ref {
        KeyRef::Auth(id) => id,
        KeyRef::Api(token_id) => {
            // The keys API revokes the caller's own tokens only (a user manager may revoke any
            // of the tailnet's over NATS; over HTTP, another user's token is not found).
            if !own_tokens(&shared, &authed)
                .await?
                .iter()
                .any(|t| t.id == token_id.as_str() && !t.invalid)
            {
                return Err(ApiError::not_found(format!("key {key} not found")));
            }
            let request = RevokeTokenRequest {
                command_id: command_id(&headers)?,
                tailnet: authed.caller.tailnet.clone(),
                actor: authed.caller.user_id.clone(),
                token_id: token_id.to_string(),
            };
            let _: RevokedTokenReply = shared.nats.request(subject::REVOKE_TOKEN, &request).await?;
            return Ok(StatusCode::OK.into_response());
        }
    };
    if own_client(&shared, &authed, &key_id).await?.is_some() {
        let request = DeleteClientRequest {
            command_id: command_id(&headers)?,
            tailnet: authed.caller.tailnet.clone(),
            actor: authed.caller.user_id.clone(),
            client_id: key_id.to_string(),
        };
        let _: ClientIdReply = shared
            .nats
            .request(subject::DELETE_CLIENT, &request)
            .await?;
        return Ok(StatusCode::OK.into_response());
    }
    let request = RevokeKeyRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        key_id: key_id.to_string(),
    };
    let _: KeyReply = shared.nats.request(subject::REVOKE_KEY, &request).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::decode_json;

    #[test]
    fn create_body_accepts_tailscale_shape_and_null_tags() {
        let b: CreateKeyBody = decode_json(
            true,
            br#"{"capabilities":{"devices":{"create":{"reusable":true,"ephemeral":false,"preauthorized":true,"tags":null}}},"expirySeconds":86400,"description":"ci runner"}"#,
        )
        .expect("valid");
        let cmd = b
            .command("c1".into(), "Tabc".into(), "u1".into())
            .expect("an auth key");
        let parsed = cmd.parse().expect("parses");
        assert!(parsed.op.tags.is_empty() && parsed.op.reusable && parsed.op.preauthorized);
        assert_eq!(parsed.op.expiry_seconds.get(), 86_400);
        let v = serde_json::to_value(&cmd).expect("encodes");
        assert_eq!(v["commandId"], "c1");
        assert_eq!(v["actor"], "u1");
        assert_eq!(v["tailnet"], "Tabc");
    }

    #[test]
    fn create_body_refusals_name_the_field() {
        let b = decode_json::<CreateKeyBody>(true, br#"{"expirySeconds":5}"#).expect("decodes");
        let e = b
            .command("c1".into(), "Tabc".into(), "u1".into())
            .expect_err("an auth key needs capabilities");
        assert_eq!(e.message, "capabilities: is required");
        let e = decode_json::<CreateKeyBody>(
            true,
            br#"{"capabilities":{"devices":{"create":{"tags":"tag:a"}}}}"#,
        )
        .expect_err("bad");
        assert!(
            e.message.starts_with("capabilities.devices.create.tags"),
            "{}",
            e.message
        );
    }

    #[test]
    fn key_ids_name_auth_keys_or_tokens_and_malformed_ones_are_not_found() {
        assert_eq!(
            key_ref("../etc").expect_err("bad").status,
            StatusCode::NOT_FOUND
        );
        assert!(matches!(key_ref("kAbc"), Ok(KeyRef::Auth(_))));
        assert!(matches!(key_ref("tAbc"), Ok(KeyRef::Api(_))));
    }
}

//! `/tailnet/{tailnet}/keys[/{keyId}]`: generate, list, get and revoke the caller's auth keys
//! (R07–R09, R12).

use authkeys_events::KeyId;
use authkeys_protocol::subject;
use authkeys_protocol::{self, Capabilities, GenerateKeyRequest, Key, KeyReply, RevokeKeyRequest};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, query_bool};
use super::error::ApiError;
use authkeys_protocol::query::{KeysGetQuery, KeysListQuery};

use super::{AppState, Authed, command_id, json, resolve_tailnet};

/// `POST /tailnet/{tailnet}/keys` body (Tailscale's shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyBody {
    /// `auth` if given.
    #[serde(default)]
    pub key_type: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// 1 to 7,776,000; 7,776,000 if absent (R08).
    #[serde(default)]
    pub expiry_seconds: Option<i64>,
    /// What the key does.
    pub capabilities: Capabilities,
}

impl CreateKeyBody {
    /// The admin command of this body.
    pub fn command(self, command_id: String, tailnet: String, actor: String) -> GenerateKeyRequest {
        GenerateKeyRequest {
            command_id,
            tailnet,
            actor,
            key_type: self.key_type,
            description: self.description,
            expiry_seconds: self.expiry_seconds,
            capabilities: self.capabilities,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Keys {
    keys: Vec<Key>,
}

pub(super) async fn create(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateKeyBody>,
) -> Result<Response, ApiError> {
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let request = body.command(
        command_id(&headers)?,
        authed.caller.tailnet.clone(),
        authed.caller.user_id.clone(),
    );
    let reply: KeyReply = shared.nats.request(subject::GENERATE_KEY, &request).await?;
    Ok(json(&reply.key))
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
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
    Ok(json(&Keys { keys: answer.keys }))
}

/// A key id of a path; a malformed one is unknown (404), like any key that is not the caller's.
fn key_id(text: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(text).map_err(|_| ApiError::not_found(format!("key {text} not found")))
}

pub(super) async fn get(
    State(shared): State<AppState>,
    authed: Authed,
    Path((tailnet, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key_id = key_id(&key)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let one = shared
        .nats
        .query(&KeysGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: authed.caller.user_id.clone(),
            key_id: key_id.to_string(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(json(&one.key))
}

pub(super) async fn delete(
    State(shared): State<AppState>,
    authed: Authed,
    Path((tailnet, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key_id = key_id(&key)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
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
        let cmd = b.command("c1".into(), "Tabc".into(), "u1".into());
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
        let e = decode_json::<CreateKeyBody>(true, br#"{"expirySeconds":5}"#).expect_err("bad");
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
    fn malformed_key_id_is_not_found() {
        assert_eq!(
            key_id("../etc").expect_err("bad").status,
            StatusCode::NOT_FOUND
        );
    }
}

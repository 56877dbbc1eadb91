//! `/tailnet/{tailnet}/devices` and `/device/{id}[/authorized|/tags|/key|/expire]`: the machines
//! view and the admin ops on a device (R03, R05, R11, R14, R15).

use authkeys_events::NodeId;
use authkeys_protocol::subject;
use authkeys_protocol::{
    self, AuthorizeNodeRequest, DeleteNodeRequest, DeletedReply, Device, DeviceReply,
    ExpireNodeRequest, SetKeyExpiryRequest, SetTagsRequest,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, OptionalJsonBody, query_param};
use super::error::ApiError;
use authkeys_protocol::query::{DevicesGetQuery, DevicesListQuery};

use super::{AppState, Authed, command_id, json, resolve_tailnet};

/// A page from the view (with `next`), or the whole list the API answers (without).
#[derive(Debug, Serialize, Deserialize)]
struct Devices {
    devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `POST /device/{id}/authorized`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizedBody {
    /// Authorized after this.
    pub authorized: bool,
}

/// `POST /device/{id}/tags`; `null` is no tags.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagsBody {
    /// The new tags.
    pub tags: Option<Vec<String>>,
}

/// `POST /device/{id}/key`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyExpiryBody {
    /// Disabled after this.
    pub key_expiry_disabled: bool,
}

/// `POST /device/{id}/expire`: no fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `?fields=default|all`: every field of this API's device is in both.
fn check_fields(q: Option<&str>) -> Result<(), ApiError> {
    match query_param(q, "fields") {
        None | Some("default" | "all" | "") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "fields: must be default or all, not {other:?}"
        ))),
    }
}

/// A device id of a path; a malformed one is unknown (404).
fn node_id(text: &str) -> Result<NodeId, ApiError> {
    NodeId::parse(text).map_err(|_| ApiError::not_found(format!("device {text} not found")))
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    check_fields(q.as_deref())?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    // The view answers in pages (NATS replies stay under 1 MiB); the API answers one list.
    let mut devices = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = shared
            .nats
            .query(&DevicesListQuery {
                tailnet: authed.caller.tailnet.clone(),
                after: after.take(),
                limit: None,
                min_seq: Some(authed.head),
            })
            .await?;
        devices.extend(page.devices);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(json(&Devices {
        devices,
        next: None,
    }))
}

pub(super) async fn get(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    check_fields(q.as_deref())?;
    let node_id = node_id(&id)?;
    let one = shared
        .nats
        .query(&DevicesGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            node_id: node_id.to_string(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(json(&one.device))
}

pub(super) async fn delete(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = DeleteNodeRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
    };
    let _: DeletedReply = shared.nats.request(subject::DELETE_NODE, &request).await?;
    Ok(StatusCode::OK.into_response())
}

/// Sends a device op and answers the device after it.
async fn device_op(
    shared: &AppState,
    subject: &'static str,
    request: &impl Serialize,
) -> Result<Response, ApiError> {
    let reply: DeviceReply = shared.nats.request(subject, request).await?;
    Ok(json(&reply.device))
}

pub(super) async fn authorize(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthorizedBody>,
) -> Result<Response, ApiError> {
    let request = AuthorizeNodeRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
        authorized: body.authorized,
    };
    device_op(&shared, subject::AUTHORIZE_NODE, &request).await
}

pub(super) async fn set_tags(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TagsBody>,
) -> Result<Response, ApiError> {
    let request = SetTagsRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
        tags: body.tags.unwrap_or_default(),
    };
    device_op(&shared, subject::SET_TAGS, &request).await
}

pub(super) async fn set_key_expiry(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<KeyExpiryBody>,
) -> Result<Response, ApiError> {
    let request = SetKeyExpiryRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
        key_expiry_disabled: body.key_expiry_disabled,
    };
    device_op(&shared, subject::SET_KEY_EXPIRY, &request).await
}

pub(super) async fn expire(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJsonBody(Empty {}): OptionalJsonBody<Empty>,
) -> Result<Response, ApiError> {
    let request = ExpireNodeRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
    };
    device_op(&shared, subject::EXPIRE_NODE, &request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::decode_json;

    #[test]
    fn tags_null_is_no_tags_and_fields_are_checked() {
        let b: TagsBody = decode_json(true, br#"{"tags":null}"#).expect("null");
        assert!(b.tags.is_none());
        let b: TagsBody = decode_json(true, br#"{"tags":["tag:a"]}"#).expect("list");
        assert_eq!(b.tags.as_deref(), Some(&["tag:a".to_owned()][..]));
        let e =
            decode_json::<KeyExpiryBody>(true, br#"{"keyExpiryDisabled":1}"#).expect_err("type");
        assert!(e.message.starts_with("keyExpiryDisabled"), "{}", e.message);
        assert!(check_fields(Some("fields=all")).is_ok());
        assert!(check_fields(None).is_ok());
        assert_eq!(
            check_fields(Some("fields=some")).expect_err("bad").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            node_id("x y").expect_err("bad").status,
            StatusCode::NOT_FOUND
        );
    }
}

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

/// `?fields=default|all`: whether to add the fields of `all` (routes, connectivity).
fn all_fields(q: Option<&str>) -> Result<bool, ApiError> {
    match query_param(q, "fields") {
        None | Some("default" | "") => Ok(false),
        Some("all") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "fields: must be default or all, not {other:?}"
        ))),
    }
}

/// The device fields a list may be filtered by (`?tags=tag:a&isEphemeral=true`): every
/// top-level field that is a string, a boolean or a list of strings, as Tailscale filters its
/// device list by its fields (the Terraform provider's `tailscale_devices` `filter` blocks).
const FILTERABLE: &[&str] = &[
    "addresses",
    "id",
    "nodeId",
    "user",
    "name",
    "hostname",
    "clientVersion",
    "updateAvailable",
    "os",
    "keyExpiryDisabled",
    "authorized",
    "isExternal",
    "machineKey",
    "nodeKey",
    "blocksIncomingConnections",
    "tags",
    "tailnetLockError",
    "tailnetLockKey",
    "isEphemeral",
    "connectedToControl",
    "multipleConnections",
    "authKeyId",
];

/// `?<field>=<value>…` of a device list: a device matches when, for every field named, one of
/// its values equals the field (a list field: contains it). An unknown field is a 400.
#[derive(Debug, Default)]
struct Filters(Vec<(String, Vec<String>)>);

impl Filters {
    fn parse(q: Option<&str>) -> Result<Self, ApiError> {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
            if name == "fields" {
                continue;
            }
            if !FILTERABLE.contains(&name.as_ref()) {
                return Err(ApiError::bad_request(format!(
                    "{name}: not a device field to filter by (one of {})",
                    FILTERABLE.join(", ")
                )));
            }
            match filters.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value.into_owned()),
                None => filters.push((name.into_owned(), vec![value.into_owned()])),
            }
        }
        Ok(Self(filters))
    }

    fn matches(&self, device: &serde_json::Value) -> bool {
        self.0.iter().all(|(name, values)| {
            let field = &device[name.as_str()];
            values.iter().any(|want| match field {
                serde_json::Value::Array(items) => items.iter().any(|i| i.as_str() == Some(want)),
                serde_json::Value::Bool(b) => want.parse::<bool>().is_ok_and(|w| w == *b),
                serde_json::Value::String(s) => s == want,
                _ => false,
            })
        })
    }
}

/// Which devices a role reads (R21): every role but Member and Billing admin reads every device
/// of the tailnet; a Member only the untagged devices they own; a Billing admin none (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sight {
    All,
    Own,
}

fn sight(authed: &Authed) -> Result<Sight, ApiError> {
    match authed.caller.role.as_str() {
        "member" => Ok(Sight::Own),
        "billing-admin" => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "billing admins do not see devices",
        )),
        _ => Ok(Sight::All),
    }
}

/// Whether `device` is one the caller may read.
fn visible(sight: Sight, authed: &Authed, device: &Device) -> bool {
    sight == Sight::All || (device.tags.is_empty() && device.user == authed.caller.login_name)
}

/// A device id of a path; a malformed one is unknown (404).
fn node_id(text: &str) -> Result<NodeId, ApiError> {
    super::path_id("device", text, NodeId::parse)
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::DevicesCoreRead)?;
    let all = all_fields(q.as_deref())?;
    let filters = Filters::parse(q.as_deref())?;
    let sight = sight(&authed)?;
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
        for device in page.devices {
            if !visible(sight, &authed, &device) {
                continue;
            }
            let device = if all {
                device.with_all_fields()
            } else {
                device
            };
            if filters.0.is_empty()
                || filters.matches(
                    &serde_json::to_value(&device)
                        .map_err(|e| ApiError::internal("filter devices", e))?,
                )
            {
                devices.push(device);
            }
        }
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
    authed.scope(authkeys_events::Scope::DevicesCoreRead)?;
    let all = all_fields(q.as_deref())?;
    let sight = sight(&authed)?;
    let node_id = node_id(&id)?;
    let one = shared
        .nats
        .query(&DevicesGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            node_id: node_id.to_string(),
            min_seq: Some(authed.head),
        })
        .await?;
    if !visible(sight, &authed, &one.device) {
        return Err(ApiError::not_found(format!("device {id} not found")));
    }
    Ok(json(&if all {
        one.device.with_all_fields()
    } else {
        one.device
    }))
}

pub(super) async fn delete(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::DevicesCore)?;
    let request = DeleteNodeRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
    };
    let _: DeletedReply = shared.nats.request(subject::DELETE_NODE, &request).await?;
    Ok(StatusCode::OK.into_response())
}

/// Sends a device op and answers as Tailscale does: 200 with an empty JSON object
/// (`publicapi/device.md`: "The response body is currently an empty JSON object").
async fn device_op(
    shared: &AppState,
    subject: &'static str,
    request: &impl Serialize,
) -> Result<Response, ApiError> {
    let _: DeviceReply = shared.nats.request(subject, request).await?;
    Ok(json(&serde_json::Map::new()))
}

pub(super) async fn authorize(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AuthorizedBody>,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::DevicesCore)?;
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
    authed.scope(authkeys_events::Scope::DevicesCore)?;
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
    authed.scope(authkeys_events::Scope::DevicesCore)?;
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
    authed.scope(authkeys_events::Scope::DevicesCore)?;
    let request = ExpireNodeRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        node_id: node_id(&id)?.to_string(),
    };
    // Tailscale answers an expiry with an empty body, as a delete.
    let _: DeviceReply = shared.nats.request(subject::EXPIRE_NODE, &request).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::decode_json;
    use serde_json::json;

    #[test]
    fn filters_match_fields_lists_and_booleans() {
        let d = json!({"hostname": "web", "tags": ["tag:a", "tag:b"], "isEphemeral": true});
        let f = |q: &str| Filters::parse(Some(q)).expect("valid");
        assert!(f("fields=all").matches(&d));
        assert!(f("hostname=web").matches(&d));
        assert!(!f("hostname=db").matches(&d));
        assert!(
            f("hostname=db&hostname=web").matches(&d),
            "values of one field: any"
        );
        assert!(
            f("tags=tag%3Ab&isEphemeral=true").matches(&d),
            "fields: all"
        );
        assert!(!f("tags=tag:b&isEphemeral=false").matches(&d));
        assert!(!f("isEphemeral=yes").matches(&d));
        let e = Filters::parse(Some("colour=red")).expect_err("unknown field");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("colour"), "{}", e.message);
    }

    #[test]
    fn tags_null_is_no_tags_and_fields_are_checked() {
        let b: TagsBody = decode_json(true, br#"{"tags":null}"#).expect("null");
        assert!(b.tags.is_none());
        let b: TagsBody = decode_json(true, br#"{"tags":["tag:a"]}"#).expect("list");
        assert_eq!(b.tags.as_deref(), Some(&["tag:a".to_owned()][..]));
        let e =
            decode_json::<KeyExpiryBody>(true, br#"{"keyExpiryDisabled":1}"#).expect_err("type");
        assert!(e.message.starts_with("keyExpiryDisabled"), "{}", e.message);
        assert!(all_fields(Some("fields=all")).expect("all"));
        assert!(!all_fields(None).expect("default"));
        assert_eq!(
            all_fields(Some("fields=some")).expect_err("bad").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            node_id("x y").expect_err("bad").status,
            StatusCode::NOT_FOUND
        );
    }
}

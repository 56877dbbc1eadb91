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
use authkeys_protocol::query::{DevicesGetQuery, DevicesListQuery, Query};

use super::{AppState, Authed, command_id, json, resolve_tailnet};

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
    // Devices every caller sees as the view sent them are copied through as bytes: decoding
    // 10,000 devices into objects only to encode them again was most of a large list's time.
    let as_sent = sight == Sight::All && !all && filters.0.is_empty();
    // The view answers in pages (NATS replies stay under 1 MiB); the API answers one list.
    let mut out: Vec<u8> = Vec::new();
    out.extend_from_slice(b"{\"devices\":[");
    let mut first = true;
    let mut after: Option<String> = None;
    loop {
        let bytes = shared
            .nats
            .query_raw(&DevicesListQuery {
                tailnet: authed.caller.tailnet.clone(),
                after: after.take(),
                limit: None,
                min_seq: Some(authed.head),
            })
            .await?;
        let page = RawPage::read(&bytes)?;
        shared.nats.saw_view_seq(page.seq);
        out.reserve(bytes.len());
        let array = page.devices.map_or("[]", serde_json::value::RawValue::get);
        if as_sent {
            // The array's elements, copied in one piece.
            let inner = array
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .ok_or_else(|| {
                    ApiError::internal(
                        &format!(
                            "read the answer of {}",
                            <DevicesListQuery as Query>::SUBJECT
                        ),
                        "devices is not an array",
                    )
                })?
                .trim();
            if !inner.is_empty() {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(inner.as_bytes());
                first = false;
            }
        } else {
            list_page(&mut out, &mut first, array, sight, &authed, all, &filters)?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

/// Appends to `out` the devices of a page's `array` that the caller sees and `filters` pass,
/// decoded (for their fields) and encoded again.
fn list_page(
    out: &mut Vec<u8>,
    first: &mut bool,
    array: &str,
    sight: Sight,
    authed: &Authed,
    all: bool,
    filters: &Filters,
) -> Result<(), ApiError> {
    let unreadable = |e: serde_json::Error| {
        ApiError::internal(
            &format!(
                "read the answer of {}",
                <DevicesListQuery as Query>::SUBJECT
            ),
            e,
        )
    };
    let devices: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(array).map_err(unreadable)?;
    for raw in devices {
        let device: Device = serde_json::from_str(raw.get()).map_err(unreadable)?;
        if !visible(sight, authed, &device) {
            continue;
        }
        let device = if all {
            device.with_all_fields()
        } else {
            device
        };
        if !filters.0.is_empty()
            && !filters.matches(
                &serde_json::to_value(&device)
                    .map_err(|e| ApiError::internal("filter devices", e))?,
            )
        {
            continue;
        }
        if !*first {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &device)
            .map_err(|e| ApiError::internal("encode a response", e))?;
        *first = false;
    }
    Ok(())
}

/// A page of `authkeys.query.devices.list` as the view sent it, its devices still as bytes.
#[derive(Debug, Deserialize)]
struct RawPage<'a> {
    ok: bool,
    #[serde(borrow, default)]
    devices: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    error: Option<authkeys_protocol::ErrorBody>,
}

impl<'a> RawPage<'a> {
    /// The page, or the view's refusal as [`super::nats::Nats::query`] would report it.
    fn read(bytes: &'a [u8]) -> Result<Self, ApiError> {
        let page: Self = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::internal(
                &format!(
                    "read the answer of {}",
                    <DevicesListQuery as Query>::SUBJECT
                ),
                e,
            )
        })?;
        if page.ok && page.error.is_none() {
            return Ok(page);
        }
        match page.error {
            Some(error) if !page.ok => Err(ApiError::from_reply(error)),
            _ => Err(ApiError::internal(
                &format!(
                    "read the answer of {}",
                    <DevicesListQuery as Query>::SUBJECT
                ),
                "neither a page nor a refusal",
            )),
        }
    }
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
    fn devices_passed_through_as_sent_are_what_decoding_and_encoding_would_answer() {
        // Proves that copying a view's device JSON through unchanged (the list for callers who
        // see every device, with default fields and no filter) answers the same bytes as the
        // decode-and-encode path did, for a device with every optional field the view sets.
        use authkeys_events::{
            Hostname, KeyId, NodeAddresses, NodeKey, NodeRegistered, Tags, Timestamp, UserId,
        };
        let now = Timestamp::from_unix_ms(1_795_819_541_123).expect("in range");
        let e = NodeRegistered {
            node_id: NodeId::parse("nAbc").expect("valid"),
            node_key: NodeKey::parse(format!("nodekey:{}", "ab".repeat(32))).expect("valid"),
            hostname: Hostname::parse("web-1").expect("valid"),
            name: "web-1".into(),
            os: "linux \"quoted\" \u{e9}".into(),
            user_id: UserId::parse("uAlice").expect("valid"),
            tags: Tags::parse(&["tag:ci", "tag:web"]).expect("valid"),
            auth_key_id: KeyId::parse("kA").expect("valid"),
            ephemeral: true,
            authorized: false,
            key_expiry_disabled: false,
            expires: Some(now.plus_seconds(86_400)),
            tailnet_lock_error: Some("locked out".into()),
            addresses: Some(NodeAddresses {
                ipv4: "100.64.0.7".parse().expect("ipv4"),
                ipv6: "fd7a:115c:a1e0::7".parse().expect("ipv6"),
            }),
        };
        let node = authkeys_domain::state::Node::registered(&e, now);
        let device = Device::build(
            "T1",
            "nAbc",
            &node,
            "alice@example.com",
            &authkeys_protocol::MagicDns::default(),
        );
        let as_sent = serde_json::to_string(&device).expect("encodes");
        let decoded: Device = serde_json::from_str(&as_sent).expect("decodes");
        assert_eq!(serde_json::to_string(&decoded).expect("encodes"), as_sent);
    }

    #[test]
    fn a_decoded_page_skips_hidden_and_filtered_devices_cleanly() {
        // Proves that the decode-and-encode path (a member's list, filters) appends exactly the
        // devices the caller sees and the filters pass, comma-separated, across pages: no stray
        // comma where a device was left out.
        let device = |id: &str, user: &str, tags: &[&str]| {
            json!({
                "addresses": [], "id": id, "nodeId": id, "user": user, "name": id,
                "hostname": id, "clientVersion": "", "updateAvailable": false, "os": "linux",
                "created": "2026-11-27T22:45:41.123Z", "lastSeen": "2026-11-27T22:45:41.123Z",
                "keyExpiryDisabled": false, "expires": "2027-05-26T22:45:41.123Z",
                "authorized": true, "isExternal": false, "machineKey": "", "nodeKey": "",
                "blocksIncomingConnections": false, "tags": tags, "tailnetLockError": "",
                "tailnetLockKey": "", "isEphemeral": false, "connectedToControl": false,
                "multipleConnections": false, "authKeyId": "kA",
            })
        };
        serde_json::from_value::<Device>(device("n1", "a@x", &[]))
            .expect("the sample is a whole Device");
        let member = Authed {
            caller: crate::auth::Caller {
                token_id: "t".into(),
                tailnet: "T1".into(),
                user_id: "u".into(),
                login_name: "a@x".into(),
                role: "member".into(),
                scopes: None,
            },
            head: 0,
        };
        let page1 = serde_json::to_string(&[
            device("n1", "b@x", &[]),
            device("n2", "a@x", &[]),
            device("n3", "a@x", &["tag:ci"]),
        ])
        .expect("encodes");
        let page2 = serde_json::to_string(&[device("n4", "b@x", &[]), device("n5", "a@x", &[])])
            .expect("encodes");
        // The node ids both pages list for `sight` under `filters`, as one JSON array.
        let listed = |sight: Sight, filters: &Filters| -> Vec<String> {
            let mut out = b"[".to_vec();
            let mut first = true;
            for page in [&page1, &page2] {
                list_page(&mut out, &mut first, page, sight, &member, false, filters)
                    .expect("reads");
            }
            out.push(b']');
            serde_json::from_slice::<Vec<Device>>(&out)
                .expect("valid JSON")
                .into_iter()
                .map(|d| d.node_id)
                .collect()
        };
        assert_eq!(listed(Sight::Own, &Filters::default()), ["n2", "n5"]);
        let only_n4 = Filters::parse(Some("hostname=n4")).expect("valid");
        assert_eq!(listed(Sight::All, &only_n4), ["n4"]);
    }

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

//! `/tailnet/{tailnet}/settings` and `/tailnet/{tailnet}/users`: tailnet settings (R03, R14) and
//! adding users with their first API token (Owner and Admin only).

use authkeys_protocol::query::{TailnetInfo, TailnetQuery};
use authkeys_protocol::subject;
use authkeys_protocol::{self, AddUserRequest, ChangeSettingsRequest, SettingsReply, UserReply};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::body::JsonBody;
use super::error::ApiError;
use super::{AppState, Authed, Shared, command_id, json, resolve_tailnet};

/// The caller's tailnet, as of the request's start.
pub(crate) async fn info(shared: &Shared, authed: &Authed) -> Result<TailnetInfo, ApiError> {
    let body = shared
        .nats
        .query(&TailnetQuery {
            tailnet: authed.caller.tailnet.clone(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(body.tailnet)
}

/// `PATCH /tailnet/{tailnet}/settings`: every field of Tailscale's settings object; absent and
/// `null` fields stay as they are (the Go client always sends `aclsExternallyManagedOn` and
/// `aclsExternalLink`, `null` when unset: tailscale-client-go-v2 `tailnet_settings.go`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsBody {
    /// R03.
    #[serde(default)]
    pub devices_approval_on: Option<bool>,
    /// R14: 1 to 180.
    #[serde(default)]
    pub devices_key_duration_days: Option<i64>,
    /// Kept (as every field below).
    #[serde(default)]
    pub devices_auto_updates_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub users_approval_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub users_role_allowed_to_join_external_tailnets: Option<String>,
    /// Kept.
    #[serde(default)]
    pub network_flow_logging_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub regional_routing_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub posture_identity_collection_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub https_enabled: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub route_selection: Option<String>,
    /// Kept.
    #[serde(default)]
    pub acls_externally_managed_on: Option<bool>,
    /// Kept.
    #[serde(default)]
    pub acls_external_link: Option<String>,
}

impl SettingsBody {
    /// The settings command of this body, for `actor` of `tailnet`.
    pub fn request(
        self,
        command_id: String,
        tailnet: String,
        actor: String,
    ) -> ChangeSettingsRequest {
        ChangeSettingsRequest {
            command_id,
            tailnet,
            actor,
            devices_approval_on: self.devices_approval_on,
            devices_key_duration_days: self.devices_key_duration_days,
            devices_auto_updates_on: self.devices_auto_updates_on,
            users_approval_on: self.users_approval_on,
            users_role_allowed_to_join_external_tailnets: self
                .users_role_allowed_to_join_external_tailnets,
            network_flow_logging_on: self.network_flow_logging_on,
            regional_routing_on: self.regional_routing_on,
            posture_identity_collection_on: self.posture_identity_collection_on,
            https_enabled: self.https_enabled,
            route_selection: self.route_selection,
            acls_externally_managed_on: self.acls_externally_managed_on,
            acls_external_link: self.acls_external_link,
        }
    }
}

/// `POST /tailnet/{tailnet}/users`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddUserBody {
    /// The new user's login name.
    pub login_name: String,
    /// Their role, as the API spells it.
    pub role: String,
}

/// The answer of `POST /tailnet/{tailnet}/users`: the user and their API token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    id: String,
    login_name: String,
    role: String,
    /// Absent when a retry of the command comes after the secret's replay window.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
}

pub(super) async fn get_settings(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
) -> Result<Response, ApiError> {
    authed.user_only()?;
    let t = super::resolved_tailnet(&shared, &authed, &tailnet).await?;
    Ok(json(&t.settings))
}

pub(super) async fn patch_settings(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Response, ApiError> {
    authed.user_only()?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let request = body.request(
        command_id(&headers)?,
        authed.caller.tailnet.clone(),
        authed.caller.user_id.clone(),
    );
    let reply: SettingsReply = shared
        .nats
        .request(subject::CHANGE_SETTINGS, &request)
        .await?;
    Ok(json(&reply.settings))
}

pub(super) async fn add_user(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AddUserBody>,
) -> Result<Response, ApiError> {
    authed.user_only()?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let request = AddUserRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        login_name: body.login_name,
        role: body.role,
    };
    let reply: UserReply = shared.nats.request(subject::ADD_USER, &request).await?;
    Ok(json(&NewUser {
        id: reply.user.id,
        login_name: reply.user.login_name,
        role: reply.user.role,
        api_key: reply.api_key,
    }))
}

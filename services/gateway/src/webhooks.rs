//! Webhooks (R23) in Tailscale's shapes: `GET|POST /tailnet/{tailnet}/webhooks`,
//! `GET|PATCH|DELETE /webhooks/{id}`, `POST /webhooks/{id}/test`, `POST /webhooks/{id}/rotate`,
//! and authkeys' `GET /webhooks/{id}/dropped` (the events given up after the retry window).
//!
//! Writes are the command service's `*-webhook` commands (`decide` checks the role: Owner,
//! Admin, IT admin, Network admin; an OAuth client needs `webhooks`). Reads are the webhooks
//! role's answers on `authkeys.webhooks.*` with `minSeq` = the log head (read-your-writes),
//! for those managers and Auditors (`webhooks:read`). The gateway holds no secret: the create
//! and rotate answers carry the secret the webhooks role derives, asked right after the write.
//!
//! A URL is validated here (http(s), a host, no user info) and its host resolved: a loopback,
//! private, link-local or reserved address is refused 400 unless `--webhooks-allow-private`;
//! the webhooks role checks again at every delivery (DNS rebinding).

use authkeys_events::{EndpointId, EndpointUrl, Role, Scope};
use authkeys_protocol::webhook::{
    CreateWebhookRequest, DeleteWebhookRequest, DroppedEvent, RotateWebhookRequest,
    UpdateWebhookRequest, Webhook, WebhookGetQuery, WebhookIdReply, WebhookSecretQuery,
    WebhookTestQuery, WebhooksListQuery,
};
use authkeys_protocol::{parse_role, subject};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, OptionalJsonBody};
use super::devices::Empty;
use super::error::ApiError;
use super::{AppState, Authed, command_id, json, resolve_tailnet};

/// A user's role must allow `allowed` (an OAuth client's scope was checked already).
fn role_allows(authed: &Authed, allowed: fn(Role) -> bool, what: &str) -> Result<(), ApiError> {
    if authed.caller.scopes.is_some() {
        return Ok(());
    }
    match parse_role(&authed.caller.role) {
        Some(r) if allowed(r) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("your role may not {what} webhooks"),
        )),
    }
}

fn may_read(authed: &Authed) -> Result<(), ApiError> {
    authed.scope(Scope::WebhooksRead)?;
    role_allows(authed, authkeys_domain::webhook::may_read_webhooks, "read")
}

fn may_manage(authed: &Authed) -> Result<(), ApiError> {
    authed.scope(Scope::Webhooks)?;
    role_allows(
        authed,
        authkeys_domain::webhook::may_manage_webhooks,
        "manage",
    )
}

/// The endpoint id of a path: one that cannot be an endpoint id is 404, like an unknown one.
fn endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    super::path_id("webhook", id, EndpointId::parse)
}

#[derive(Serialize)]
struct Webhooks {
    webhooks: Vec<Webhook>,
}

#[derive(Serialize)]
struct Dropped {
    dropped: Vec<DroppedEvent>,
}

/// `POST /tailnet/{tailnet}/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    /// Where events go.
    pub endpoint_url: String,
    /// Tailscale's provider type.
    #[serde(default)]
    pub provider_type: Option<String>,
    /// The event types.
    #[serde(default)]
    pub subscriptions: Vec<String>,
}

/// `PATCH /webhooks/{id}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBody {
    /// The event types from now on.
    pub subscriptions: Vec<String>,
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
) -> Result<Response, ApiError> {
    may_read(&authed)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let answer = shared
        .nats
        .query(&WebhooksListQuery {
            tailnet: authed.caller.tailnet.clone(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(json(&Webhooks {
        webhooks: answer.webhooks,
    }))
}

/// The endpoint with its current secret, once the webhooks role has folded the write.
async fn with_secret(shared: &AppState, authed: &Authed, id: String) -> Result<Response, ApiError> {
    let head = shared.nats.head().await?;
    let answer = shared
        .nats
        .query(&WebhookSecretQuery {
            tailnet: authed.caller.tailnet.clone(),
            endpoint_id: id,
            min_seq: Some(head),
        })
        .await?;
    Ok(json(&answer.webhook))
}

pub(super) async fn create(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    may_manage(&authed)?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let url = EndpointUrl::parse(body.endpoint_url.as_str())
        .map_err(|e| ApiError::bad_request(format!("endpointUrl: {}", e.why)))?;
    authkeys_webhooks::ssrf::resolve(&url, shared.webhooks_allow_private)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let request = CreateWebhookRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        endpoint_url: body.endpoint_url,
        provider_type: body.provider_type,
        subscriptions: body.subscriptions,
    };
    let reply: WebhookIdReply = shared
        .nats
        .request(subject::CREATE_WEBHOOK, &request)
        .await?;
    with_secret(&shared, &authed, reply.endpoint_id).await
}

async fn get_one(
    shared: &AppState,
    authed: &Authed,
    id: &EndpointId,
    head: u64,
) -> Result<(Webhook, Vec<DroppedEvent>), ApiError> {
    let answer = shared
        .nats
        .query(&WebhookGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            endpoint_id: id.to_string(),
            min_seq: Some(head),
        })
        .await?;
    Ok((answer.webhook, answer.dropped))
}

pub(super) async fn get(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_read(&authed)?;
    let id = endpoint_id(&id)?;
    let (webhook, _) = get_one(&shared, &authed, &id, authed.head).await?;
    Ok(json(&webhook))
}

pub(super) async fn dropped(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    may_read(&authed)?;
    let id = endpoint_id(&id)?;
    let (_, dropped) = get_one(&shared, &authed, &id, authed.head).await?;
    Ok(json(&Dropped { dropped }))
}

pub(super) async fn update(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Response, ApiError> {
    may_manage(&authed)?;
    let id = endpoint_id(&id)?;
    let request = UpdateWebhookRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        endpoint_id: id.to_string(),
        subscriptions: body.subscriptions,
    };
    let _: WebhookIdReply = shared
        .nats
        .request(subject::UPDATE_WEBHOOK, &request)
        .await?;
    let head = shared.nats.head().await?;
    let (webhook, _) = get_one(&shared, &authed, &id, head).await?;
    Ok(json(&webhook))
}

pub(super) async fn delete(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    may_manage(&authed)?;
    let id = endpoint_id(&id)?;
    let request = DeleteWebhookRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        endpoint_id: id.to_string(),
    };
    let _: WebhookIdReply = shared
        .nats
        .request(subject::DELETE_WEBHOOK, &request)
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn rotate(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJsonBody(Empty {}): OptionalJsonBody<Empty>,
) -> Result<Response, ApiError> {
    may_manage(&authed)?;
    let id = endpoint_id(&id)?;
    let request = RotateWebhookRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        endpoint_id: id.to_string(),
    };
    let reply: WebhookIdReply = shared
        .nats
        .request(subject::ROTATE_WEBHOOK, &request)
        .await?;
    with_secret(&shared, &authed, reply.endpoint_id).await
}

/// `POST /webhooks/{id}/test`: a `test` event is queued for the endpoint and sent shortly
/// (202, as Tailscale answers).
pub(super) async fn test(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    OptionalJsonBody(Empty {}): OptionalJsonBody<Empty>,
) -> Result<Response, ApiError> {
    may_manage(&authed)?;
    let id = endpoint_id(&id)?;
    let _ = shared
        .nats
        .query(&WebhookTestQuery {
            tailnet: authed.caller.tailnet.clone(),
            endpoint_id: id.to_string(),
            actor: authed.caller.login_name.clone(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The webhooks role's counters in the Prometheus text format, for `/metrics`.
pub(super) fn metrics_text(s: &authkeys_protocol::webhook::WebhooksStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "authkeys_webhooks_seq",
            "gauge",
            "The last event the webhooks role folded.",
            s.seq,
        ),
        (
            "authkeys_webhooks_endpoints",
            "gauge",
            "Live webhook endpoints.",
            s.endpoints,
        ),
        (
            "authkeys_webhooks_queued",
            "gauge",
            "Webhook events waiting for delivery, all endpoints.",
            s.queued,
        ),
        (
            "authkeys_webhooks_delivered_total",
            "counter",
            "Webhook events delivered since the role started.",
            s.delivered,
        ),
        (
            "authkeys_webhooks_failed_attempts_total",
            "counter",
            "Failed webhook delivery attempts since the role started.",
            s.failed_attempts,
        ),
        (
            "authkeys_webhooks_dropped",
            "gauge",
            "Webhook events dropped after the retry window, as recorded.",
            s.dropped,
        ),
        (
            "authkeys_webhooks_scheduled",
            "gauge",
            "nodeKeyExpiringInOneDay notices scheduled.",
            s.scheduled,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

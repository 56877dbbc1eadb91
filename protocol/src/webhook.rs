//! Webhooks (R23) on the wire: the admin commands that change endpoints (served by the command
//! service) and the webhooks role's subjects (`authkeys.webhooks.*`), which only the gateway
//! may publish: list, get (with dropped events), the signing secret, a test delivery, status.
//!
//! The `Webhook` object is Tailscale's (`endpointId, endpointUrl, providerType,
//! creatorLoginName, created, lastModified, subscriptions, secret`), plus `queuedEvents` and
//! `droppedEvents`, authkeys' delivery status.

use authkeys_domain::AdminOp;
use authkeys_domain::webhook::WebhookOp;
use authkeys_events::{
    CommandId, EndpointId, EndpointUrl, ProviderType, TailnetId, Timestamp, UserId, WebhookType,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::command::{Parsed, common};
use crate::error::{WireError, id};
use crate::query::{Answer, Query};
use crate::{True, subject};

/// Subscription names, each one of [`WebhookType`]'s; at most every type once.
pub fn parse_subscriptions(subs: &[String]) -> Result<Vec<WebhookType>, WireError> {
    if subs.len() > authkeys_events::webhook::SUBSCRIPTIONS_MAX {
        return Err(WireError::new(
            "subscriptions",
            format!(
                "at most {} entries",
                authkeys_events::webhook::SUBSCRIPTIONS_MAX
            ),
        ));
    }
    subs.iter()
        .enumerate()
        .map(|(i, s)| {
            WebhookType::parse(s).ok_or_else(|| {
                let all: Vec<&str> = WebhookType::ALL.iter().map(|t| t.as_str()).collect();
                WireError::new(
                    format!("subscriptions[{i}]"),
                    format!("must be one of {}", all.join(", ")),
                )
            })
        })
        .collect()
}

admin_request!(
    /// `authkeys.cmd.admin.create-webhook`: `POST /tailnet/{tailnet}/webhooks`. The endpoint's
    /// id is derived from `commandId`, so a retry names the same one.
    CreateWebhookRequest {
        /// Where events are POSTed: http(s), no user info.
        #[schemars(with = "EndpointUrl")]
        endpoint_url: String,
        /// Tailscale's provider type (`""`, `slack`, `mattermost`, `googlechat`, `discord`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<ProviderType>")]
        provider_type: Option<String>,
        /// The event types to send.
        #[schemars(with = "Vec<WebhookType>")]
        subscriptions: Vec<String>,
    }
);

impl CreateWebhookRequest {
    /// Validates every field; `endpoint_id` is the id the service drew.
    pub fn parse(&self, endpoint_id: EndpointId) -> Result<Parsed<AdminOp>, WireError> {
        let endpoint_url = id(
            "endpointUrl",
            EndpointUrl::parse(self.endpoint_url.as_str()),
        )?;
        let provider_type = match self.provider_type.as_deref() {
            None => ProviderType::Generic,
            Some(p) => ProviderType::parse(p).ok_or_else(|| {
                WireError::new(
                    "providerType",
                    "must be \"\", slack, mattermost, googlechat or discord",
                )
            })?,
        };
        let subscriptions = parse_subscriptions(&self.subscriptions)?;
        common(
            &self.command_id,
            &self.tailnet,
            &self.actor,
            AdminOp::Webhook(WebhookOp::Create {
                endpoint_id,
                endpoint_url,
                provider_type,
                subscriptions,
            }),
        )
    }
}

admin_request!(
    /// `authkeys.cmd.admin.update-webhook`: `PATCH /webhooks/{id} {subscriptions}`.
    UpdateWebhookRequest {
        /// Which endpoint.
        #[schemars(with = "EndpointId")]
        endpoint_id: String,
        /// The event types to send from now on.
        #[schemars(with = "Vec<WebhookType>")]
        subscriptions: Vec<String>,
    }
);

impl UpdateWebhookRequest {
    /// Validates every field.
    pub fn parse(&self) -> Result<Parsed<AdminOp>, WireError> {
        let endpoint_id = id("endpointId", EndpointId::parse(self.endpoint_id.as_str()))?;
        let subscriptions = parse_subscriptions(&self.subscriptions)?;
        common(
            &self.command_id,
            &self.tailnet,
            &self.actor,
            AdminOp::Webhook(WebhookOp::Update {
                endpoint_id,
                subscriptions,
            }),
        )
    }
}

/// Declares a webhook request naming only the endpoint.
macro_rules! endpoint_request {
    ($(#[doc = $doc:literal])* $name:ident => $op:ident) => {
        admin_request!(
            $(#[doc = $doc])*
            $name {
                /// Which endpoint.
                #[schemars(with = "EndpointId")]
                endpoint_id: String,
            }
        );

        impl $name {
            /// Validates every field.
            pub fn parse(&self) -> Result<Parsed<AdminOp>, WireError> {
                let endpoint_id = id("endpointId", EndpointId::parse(self.endpoint_id.as_str()))?;
                common(
                    &self.command_id,
                    &self.tailnet,
                    &self.actor,
                    AdminOp::Webhook(WebhookOp::$op { endpoint_id }),
                )
            }
        }
    };
}

endpoint_request!(
    /// `authkeys.cmd.admin.rotate-webhook`: `POST /webhooks/{id}/rotate`.
    RotateWebhookRequest => Rotate
);
endpoint_request!(
    /// `authkeys.cmd.admin.delete-webhook`: `DELETE /webhooks/{id}`.
    DeleteWebhookRequest => Delete
);

/// `{ok: true, endpointId}`: every webhook command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookIdReply {
    /// Always `true`.
    pub ok: True,
    /// The endpoint.
    #[schemars(with = "EndpointId")]
    pub endpoint_id: String,
}

// ---------------------------------------------------------------------------------------------
// The webhooks role's subjects

/// A webhook endpoint in Tailscale's shape, with authkeys' delivery status.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// Its id.
    pub endpoint_id: String,
    /// Where events go.
    pub endpoint_url: String,
    /// Tailscale's provider type (`""`: generic).
    pub provider_type: String,
    /// Who created it.
    pub creator_login_name: String,
    /// When.
    pub created: Timestamp,
    /// When it last changed (subscriptions or secret).
    pub last_modified: Timestamp,
    /// The event types it receives.
    pub subscriptions: Vec<String>,
    /// The signing secret: in the create and rotate answers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Events waiting for delivery (authkeys' extension).
    #[serde(default)]
    pub queued_events: u64,
    /// Events given up after the retry window (authkeys' extension).
    #[serde(default)]
    pub dropped_events: u64,
    /// The last delivery failure, while one is being retried (authkeys' extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

debug_redacting!(Webhook { endpoint_id, endpoint_url, subscriptions } secrets { secret });

/// An event given up for an endpoint after its retry window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DroppedEvent {
    /// The log seq it came from (0 for a test event).
    pub seq: u64,
    /// Its webhook type (`test` for a test event).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was given up.
    pub dropped_at: Timestamp,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
}

/// `authkeys.webhooks.list`: the tailnet's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhooksListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Wait until the role has folded this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok, webhooks, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksAnswer {
    /// Always `true`.
    pub ok: True,
    /// The endpoints, by id.
    pub webhooks: Vec<Webhook>,
    /// The role's folded seq.
    pub seq: u64,
}

/// `authkeys.webhooks.get`: one endpoint, with its dropped events (the latest, bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Wait until the role has folded this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok, webhook, dropped, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAnswer {
    /// Always `true`.
    pub ok: True,
    /// The endpoint.
    pub webhook: Webhook,
    /// Its dropped events, oldest first.
    pub dropped: Vec<DroppedEvent>,
    /// The role's folded seq.
    pub seq: u64,
}

/// `authkeys.webhooks.secret`: the endpoint with its current secret (create and rotate
/// answers). Only the gateway may ask (NATS permissions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSecretQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Wait until the role has folded this seq (the create or rotate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok, webhook (with secret), seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretAnswer {
    /// Always `true`.
    pub ok: True,
    /// The endpoint, `secret` set.
    pub webhook: Webhook,
    /// The role's folded seq.
    pub seq: u64,
}

/// `authkeys.webhooks.test`: queue a `test` event for the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTestQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The caller's login name (the test event's actor).
    pub actor: String,
    /// Wait until the role has folded this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok, seq}`: queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTestAnswer {
    /// Always `true`.
    pub ok: True,
    /// The role's folded seq.
    pub seq: u64,
}

/// `authkeys.webhooks.status`: the delivery counters `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhooksStatus {
    /// The role's folded seq.
    pub seq: u64,
    /// Live endpoints.
    pub endpoints: u64,
    /// Events waiting, all endpoints.
    pub queued: u64,
    /// Events delivered since the role started.
    pub delivered: u64,
    /// Failed delivery attempts since the role started.
    pub failed_attempts: u64,
    /// Events dropped after the retry window, as recorded (all time, bounded per endpoint).
    pub dropped: u64,
    /// `nodeKeyExpiringInOneDay` notices scheduled.
    pub scheduled: u64,
}

macro_rules! webhook_queries {
    ($($query:ident => $subject:ident, $answer:ident;)*) => {
        $(
            impl Query for $query {
                const SUBJECT: &'static str = subject::$subject;
                type Answer = $answer;
            }
            impl Answer for $answer {
                fn seq(&self) -> u64 {
                    self.seq
                }
            }
        )*
    };
}

webhook_queries! {
    WebhooksListQuery => WEBHOOKS_LIST, WebhooksAnswer;
    WebhookGetQuery => WEBHOOKS_GET, WebhookAnswer;
    WebhookSecretQuery => WEBHOOKS_SECRET, WebhookSecretAnswer;
    WebhookTestQuery => WEBHOOKS_TEST, WebhookTestAnswer;
}

//! Webhook endpoints (R23): who manages them, and their state folded from the events.
//!
//! Roles follow Tailscale's: Owner, Admin, IT admin and Network admin manage webhooks; Auditors
//! read them too (the gateway's check, reads not being commands). An OAuth client needs the
//! `webhooks` scope. The signing secret is not here: the webhooks role derives it (ADR 005).

use std::collections::HashMap;

use authkeys_events::{
    EndpointId, EndpointUrl, Envelope, Event, Expected, Proposed, ProviderType, Role, TailnetId,
    UserId, WebhookCreated, WebhookDeleted, WebhookSecretRotated, WebhookType, WebhookUpdated,
};

use crate::command::Rejection;

/// The most live endpoints one tailnet holds.
pub const ENDPOINTS_PER_TAILNET_MAX: usize = 256;

/// R21, R23: who creates, changes, rotates and deletes webhooks.
pub fn may_manage_webhooks(role: Role) -> bool {
    matches!(
        role,
        Role::Owner | Role::Admin | Role::ItAdmin | Role::NetworkAdmin
    )
}

/// Who reads webhooks (and their dropped events): the managers and Auditors.
pub fn may_read_webhooks(role: Role) -> bool {
    may_manage_webhooks(role) || role == Role::Auditor
}

/// A live endpoint, as the command side needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Webhook {
    /// Its tailnet.
    pub tailnet: TailnetId,
    /// Its subscriptions.
    pub subscriptions: Vec<WebhookType>,
    /// Rotations so far.
    pub rotation: u32,
}

/// Every live endpoint, by id (ids are unique across tailnets).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Webhooks {
    /// Live endpoints.
    pub live: HashMap<EndpointId, Webhook>,
    /// Ids ever used (deleted ones too): an id is never reused.
    pub used: std::collections::HashSet<EndpointId>,
}

impl Webhooks {
    /// The live endpoint `id` of tailnet `t`.
    pub fn get(&self, t: &TailnetId, id: &EndpointId) -> Option<&Webhook> {
        self.live.get(id).filter(|w| w.tailnet == *t)
    }

    /// Folds a webhook event in; others are ignored.
    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::WebhookCreated(e) => {
                self.used.insert(e.endpoint_id.clone());
                self.live.insert(
                    e.endpoint_id.clone(),
                    Webhook {
                        tailnet: env.tailnet.clone(),
                        subscriptions: e.subscriptions.clone(),
                        rotation: 0,
                    },
                );
            }
            Event::WebhookUpdated(e) => {
                if let Some(w) = self.live.get_mut(&e.endpoint_id) {
                    w.subscriptions.clone_from(&e.subscriptions);
                }
            }
            Event::WebhookSecretRotated(e) => {
                if let Some(w) = self.live.get_mut(&e.endpoint_id) {
                    w.rotation = e.rotation;
                }
            }
            Event::WebhookDeleted(e) => {
                self.live.remove(&e.endpoint_id);
            }
            _ => {}
        }
    }
}

/// What an admin asks of webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOp {
    /// Create an endpoint.
    Create {
        /// Its id, drawn by the service.
        endpoint_id: EndpointId,
        /// Its URL (validated; reachability is the webhooks role's check).
        endpoint_url: EndpointUrl,
        /// Tailscale's provider type.
        provider_type: ProviderType,
        /// Its subscriptions.
        subscriptions: Vec<WebhookType>,
    },
    /// Replace an endpoint's subscriptions.
    Update {
        /// Which.
        endpoint_id: EndpointId,
        /// The new subscriptions.
        subscriptions: Vec<WebhookType>,
    },
    /// Rotate an endpoint's secret.
    Rotate {
        /// Which.
        endpoint_id: EndpointId,
    },
    /// Delete an endpoint.
    Delete {
        /// Which.
        endpoint_id: EndpointId,
    },
}

fn normalized(subscriptions: &[WebhookType]) -> Vec<WebhookType> {
    let mut s = subscriptions.to_vec();
    s.sort();
    s.dedup();
    s
}

/// Decides a webhook op of `actor` (of `role`) in tailnet `tailnet`.
pub(crate) fn decide(
    webhooks: &Webhooks,
    tailnet: &TailnetId,
    actor: &UserId,
    role: Role,
    op: &WebhookOp,
) -> Result<Vec<Proposed>, Rejection> {
    if !may_manage_webhooks(role) {
        return Err(Rejection::Forbidden(
            "your role may not manage webhooks".into(),
        ));
    }
    let live = |id: &EndpointId| {
        webhooks
            .get(tailnet, id)
            .ok_or_else(|| Rejection::NotFound(format!("webhook {id} not found")))
    };
    let event: Event = match op {
        WebhookOp::Create {
            endpoint_id,
            endpoint_url,
            provider_type,
            subscriptions,
        } => {
            if webhooks.used.contains(endpoint_id) {
                return Err(Rejection::Conflict(format!(
                    "endpoint id {endpoint_id} is taken"
                )));
            }
            let count = webhooks
                .live
                .values()
                .filter(|w| w.tailnet == *tailnet)
                .count();
            if count >= ENDPOINTS_PER_TAILNET_MAX {
                return Err(Rejection::Conflict(format!(
                    "a tailnet holds at most {ENDPOINTS_PER_TAILNET_MAX} webhooks"
                )));
            }
            WebhookCreated {
                endpoint_id: endpoint_id.clone(),
                endpoint_url: endpoint_url.clone(),
                provider_type: *provider_type,
                subscriptions: normalized(subscriptions),
                creator: actor.clone(),
            }
            .into()
        }
        WebhookOp::Update {
            endpoint_id,
            subscriptions,
        } => {
            let w = live(endpoint_id)?;
            let subscriptions = normalized(subscriptions);
            if w.subscriptions == subscriptions {
                return Ok(Vec::new());
            }
            WebhookUpdated {
                endpoint_id: endpoint_id.clone(),
                subscriptions,
            }
            .into()
        }
        WebhookOp::Rotate { endpoint_id } => {
            let w = live(endpoint_id)?;
            let rotation = w
                .rotation
                .checked_add(1)
                .ok_or_else(|| Rejection::Conflict("too many rotations".into()))?;
            WebhookSecretRotated {
                endpoint_id: endpoint_id.clone(),
                rotation,
            }
            .into()
        }
        WebhookOp::Delete { endpoint_id } => {
            live(endpoint_id)?;
            WebhookDeleted {
                endpoint_id: endpoint_id.clone(),
            }
            .into()
        }
    };
    let expected = if matches!(op, WebhookOp::Create { .. }) {
        Expected::NoStream
    } else {
        Expected::Any
    };
    Ok(vec![Proposed { event, expected }])
}

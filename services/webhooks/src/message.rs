//! What an event says to a webhook: Tailscale's event object `{timestamp, version, type,
//! tailnet, message, data}` (`data` as Tailscale fills it: `nodeID`, `deviceName`, `managedBy`,
//! `user`, `actor`, …; the key events are authkeys' extension).
//!
//! | event | webhook types |
//! |---|---|
//! | `NodeRegistered` | `nodeCreated`; `nodeNeedsApproval` if unauthorized; `nodeNeedsSignature` if `tailnetLockError` |
//! | `NodeAuthorized{authorized: true}` | `nodeApproved` |
//! | `NodeExpired` | `nodeKeyExpired` |
//! | `NodeDeleted` | `nodeDeleted` |
//! | `NodeSigned` | `nodeSigned` |
//! | (the role's schedule, one day before a node's `expires`) | `nodeKeyExpiringInOneDay` |
//! | `UserAdded`, `UserRoleChanged`, `UserRemoved`, `UserSuspended`, `UserRestored` | `userCreated`, `userRoleUpdated`, `userDeleted`, `userSuspended`, `userRestored` |
//! | `KeyGenerated`, `KeyUsed`, `KeyRevoked`, `KeyExpired` | `keyCreated`, `keyUsed`, `keyRevoked`, `keyExpired` |

use authkeys_events::{ActorType, Envelope, Event, NodeId, Timestamp, UserId, WebhookType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The version of the event object (Tailscale's is 1).
pub const MESSAGE_VERSION: u32 = 1;
/// The type of a test delivery (`POST /webhooks/{id}/test`), sent whatever the subscriptions.
pub const TEST_TYPE: &str = "test";

/// One event object of a delivery's JSON array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    /// When it happened (the event's time).
    pub timestamp: Timestamp,
    /// [`MESSAGE_VERSION`].
    pub version: u32,
    /// The webhook type (`nodeCreated`, …, or `test`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The tailnet's name.
    pub tailnet: String,
    /// A sentence for people.
    pub message: String,
    /// The details.
    pub data: Value,
}

/// The names a message shows, as folded so far.
pub trait Names {
    /// A user's login name.
    fn login(&self, user: &UserId) -> Option<String>;
    /// A node's machine name.
    fn device(&self, node: &NodeId) -> Option<String>;
}

fn msg(
    env: &Envelope,
    tailnet: &str,
    t: WebhookType,
    message: String,
    data: Value,
) -> (WebhookType, WebhookMessage) {
    (
        t,
        WebhookMessage {
            timestamp: env.time,
            version: MESSAGE_VERSION,
            event_type: t.as_str().to_owned(),
            tailnet: tailnet.to_owned(),
            message,
            data,
        },
    )
}

/// Who acted, as a message names them: a user's login, else the actor's id.
fn actor(env: &Envelope, names: &dyn Names) -> String {
    if let Some(l) = &env.actor.login_name {
        return l.to_string();
    }
    if env.actor.actor_type == ActorType::User
        && let Ok(u) = UserId::parse(env.actor.id.as_str())
        && let Some(l) = names.login(&u)
    {
        return l;
    }
    env.actor.id.clone()
}

/// The messages `env` makes, with their types (before any endpoint's filter). `names` is the
/// state *before* `env` (a deleted node still has its name).
pub fn messages(
    env: &Envelope,
    tailnet: &str,
    names: &dyn Names,
) -> Vec<(WebhookType, WebhookMessage)> {
    use WebhookType as W;
    let who = actor(env, names);
    let login = |u: &UserId| names.login(u).unwrap_or_else(|| u.to_string());
    let device = |n: &NodeId| names.device(n).unwrap_or_else(|| n.to_string());
    let node_data = |n: &NodeId, name: &str| json!({"nodeID": n, "deviceName": name, "actor": who});
    match &env.event {
        Event::NodeRegistered(e) => {
            let managed_by = if e.tags.is_empty() {
                login(&e.user_id)
            } else {
                e.tags
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let data = json!({
                "nodeID": e.node_id,
                "deviceName": e.name,
                "managedBy": managed_by,
                "actor": who,
                "authKeyID": e.auth_key_id,
            });
            let mut out = vec![msg(
                env,
                tailnet,
                W::NodeCreated,
                format!("Node {} created", e.name),
                data.clone(),
            )];
            if !e.authorized {
                out.push(msg(
                    env,
                    tailnet,
                    W::NodeNeedsApproval,
                    format!("Node {} needs approval", e.name),
                    data.clone(),
                ));
            }
            if e.tailnet_lock_error.is_some() {
                out.push(msg(
                    env,
                    tailnet,
                    W::NodeNeedsSignature,
                    format!("Node {} needs a signature", e.name),
                    data,
                ));
            }
            out
        }
        Event::NodeAuthorized(e) if e.authorized => {
            let name = device(&e.node_id);
            vec![msg(
                env,
                tailnet,
                W::NodeApproved,
                format!("Node {name} approved"),
                node_data(&e.node_id, &name),
            )]
        }
        Event::NodeExpired(e) => {
            let name = device(&e.node_id);
            vec![msg(
                env,
                tailnet,
                W::NodeKeyExpired,
                format!("Node {name} key expired"),
                node_data(&e.node_id, &name),
            )]
        }
        Event::NodeDeleted(e) => {
            let name = device(&e.node_id);
            vec![msg(
                env,
                tailnet,
                W::NodeDeleted,
                format!("Node {name} deleted"),
                node_data(&e.node_id, &name),
            )]
        }
        Event::NodeSigned(e) => {
            let name = device(&e.node_id);
            vec![msg(
                env,
                tailnet,
                W::NodeSigned,
                format!("Node {name} signed"),
                node_data(&e.node_id, &name),
            )]
        }
        Event::UserAdded(e) => vec![msg(
            env,
            tailnet,
            W::UserCreated,
            format!("User {} created", e.login_name),
            json!({"user": e.login_name, "userID": e.user_id, "actor": who}),
        )],
        Event::UserRoleChanged(e) => {
            let user = login(&e.user_id);
            vec![msg(
                env,
                tailnet,
                W::UserRoleUpdated,
                format!("User {user} role updated"),
                json!({
                    "user": user,
                    "userID": e.user_id,
                    "oldRoles": [authkeys_protocol::role_str(e.previous_role)],
                    "newRoles": [authkeys_protocol::role_str(e.role)],
                    "actor": who,
                }),
            )]
        }
        Event::UserRemoved(e) => user_msg(
            env,
            tailnet,
            W::UserDeleted,
            "deleted",
            &e.user_id,
            &login,
            &who,
        ),
        Event::UserSuspended(e) => user_msg(
            env,
            tailnet,
            W::UserSuspended,
            "suspended",
            &e.user_id,
            &login,
            &who,
        ),
        Event::UserRestored(e) => user_msg(
            env,
            tailnet,
            W::UserRestored,
            "restored",
            &e.user_id,
            &login,
            &who,
        ),
        Event::KeyGenerated(e) => vec![msg(
            env,
            tailnet,
            W::KeyCreated,
            format!("Auth key {} created", e.key_id),
            json!({
                "keyID": e.key_id,
                "description": e.description,
                "reusable": e.reusable,
                "ephemeral": e.ephemeral,
                "preauthorized": e.preauthorized,
                "tags": e.tags,
                "expires": e.expires,
                "user": login(&e.user_id),
                "actor": who,
            }),
        )],
        Event::KeyUsed(e) => vec![msg(
            env,
            tailnet,
            W::KeyUsed,
            format!("Auth key {} used", e.key_id),
            json!({"keyID": e.key_id, "nodeID": e.node_id, "uses": e.uses, "actor": who}),
        )],
        Event::KeyRevoked(e) => vec![msg(
            env,
            tailnet,
            W::KeyRevoked,
            format!("Auth key {} revoked", e.key_id),
            json!({"keyID": e.key_id, "actor": who}),
        )],
        Event::KeyExpired(e) => vec![msg(
            env,
            tailnet,
            W::KeyExpired,
            format!("Auth key {} expired", e.key_id),
            json!({"keyID": e.key_id, "expiredAt": e.expired_at, "actor": who}),
        )],
        _ => Vec::new(),
    }
}

fn user_msg(
    env: &Envelope,
    tailnet: &str,
    t: WebhookType,
    what: &str,
    user_id: &UserId,
    login: &dyn Fn(&UserId) -> String,
    who: &str,
) -> Vec<(WebhookType, WebhookMessage)> {
    let user = login(user_id);
    vec![msg(
        env,
        tailnet,
        t,
        format!("User {user} {what}"),
        json!({"user": user, "userID": user_id, "actor": who}),
    )]
}

/// The notice one day before a node's key expires.
pub fn expiring_in_one_day(
    now: Timestamp,
    tailnet: &str,
    node: &NodeId,
    name: &str,
    expires: Timestamp,
) -> WebhookMessage {
    WebhookMessage {
        timestamp: now,
        version: MESSAGE_VERSION,
        event_type: WebhookType::NodeKeyExpiringInOneDay.as_str().to_owned(),
        tailnet: tailnet.to_owned(),
        message: format!("Node {name} key expiring in one day"),
        data: json!({"nodeID": node, "deviceName": name, "expires": expires, "actor": "authkeys"}),
    }
}

/// A test delivery's event.
pub fn test_message(now: Timestamp, tailnet: &str, actor: &str) -> WebhookMessage {
    WebhookMessage {
        timestamp: now,
        version: MESSAGE_VERSION,
        event_type: TEST_TYPE.to_owned(),
        tailnet: tailnet.to_owned(),
        message: "This is a test event".to_owned(),
        data: json!({"actor": actor}),
    }
}

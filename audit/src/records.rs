//! Tailscale's configuration audit log records, derived from the event log.
//!
//! One record per configuration change (`GET /api/v2/tailnet/{tailnet}/logging/configuration`):
//! `eventTime, type: "CONFIG", eventGroupID, origin, actor{id, type, loginName, displayName,
//! tags}, target{id, name, type, property}, action, old, new`, plus the event's `seq` and chain
//! `hash`, so that every record can be checked against `authkeys audit verify`.
//!
//! | event | action | target |
//! |---|---|---|
//! | `KeyGenerated` / `ApiTokenIssued` | `API_KEY.CREATE` | `API_KEY` |
//! | `KeyRevoked` / `ApiTokenRevoked` | `API_KEY.REVOKE` | `API_KEY` |
//! | `KeyExpired` | `API_KEY.EXPIRED` | `API_KEY` |
//! | `NodeRegistered` | `NODE.CREATE` | `NODE` |
//! | `NodeReauthenticated` | `NODE.REAUTHENTICATE` | `NODE` |
//! | `NodeAuthorized` | `NODE.APPROVE` / `NODE.UNAPPROVE` | `NODE` |
//! | `NodeDeleted` | `NODE.DELETE` | `NODE` |
//! | `TagsChanged` | `NODE.UPDATE.ACL_TAGS` | `NODE`, property `ACL_TAGS` |
//! | `NodeKeyExpirySet` | `NODE.DISABLE.KEY_EXPIRY` / `NODE.ENABLE.KEY_EXPIRY` | `NODE`, `KEY_EXPIRY` |
//! | `NodeExpired` | `NODE.EXPIRED.KEY_EXPIRY_TIME` | `NODE`, `KEY_EXPIRY_TIME` |
//! | `NodeSigned` | `NODE.SIGN` | `NODE` |
//! | `KeySigned` | `API_KEY.SIGN` | `API_KEY` |
//! | `UserAdded` | `USER.CREATE` | `USER` |
//! | `UserRoleChanged` | `USER.UPDATE.ROLE` | `USER`, `ROLE` |
//! | `TailnetCreated` | `TAILNET.CREATE` | `TAILNET` |
//! | `TailnetSettingsChanged` | `TAILNET.UPDATE.<PROPERTY>`, one per changed setting | `TAILNET` |
//!
//! `KeyUsed`, `NodeConnected` and `NodeDisconnected` are not configuration changes and make no
//! record (a registration's record is its `NODE.CREATE`, which names the key).
//!
//! Actors: a user is `USER` with its login name (as of the event); a registrar is `NODE` (it acts
//! for the registering node, named by the registrar's id); authkeys itself (bootstrap, timers)
//! is `SERVICE`. `origin` is `API`, `NODE` or `CONTROL` accordingly. `eventGroupID` is the
//! command id: the records of one command share it. Names come from the events before: a
//! user's login name, a node's machine name, a key's description.

use std::collections::HashMap;

use authkeys_events::{ActorType, Envelope, Event, Hash, Tags, TailnetId, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordActor {
    /// A user id, a registrar's id, or a service name.
    pub id: String,
    /// `USER`, `NODE` or `SERVICE`.
    #[serde(rename = "type")]
    pub actor_type: &'static str,
    /// A user's login name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_name: Option<String>,
    /// A user's display name (authkeys knows only the login name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A tagged actor's tags (none of authkeys' actors are tagged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordTarget {
    /// Its id.
    pub id: String,
    /// Its name (login, machine name, key description, tailnet name), if known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `API_KEY`, `NODE`, `USER` or `TAILNET`.
    #[serde(rename = "type")]
    pub target_type: &'static str,
    /// Which property changed, for updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<&'static str>,
}

/// One configuration audit log record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When.
    pub event_time: Timestamp,
    /// Always `CONFIG`.
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// The command id: records of one command share it.
    #[serde(rename = "eventGroupID")]
    pub event_group_id: String,
    /// `API`, `NODE` or `CONTROL`.
    pub origin: &'static str,
    /// Who.
    pub actor: RecordActor,
    /// What.
    pub target: RecordTarget,
    /// The action, e.g. `NODE.UPDATE.ACL_TAGS`.
    pub action: String,
    /// The value before, for changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// The event's seq in the log.
    pub seq: u64,
    /// The event's chain hash.
    pub hash: Hash,
}

#[derive(Debug, Default)]
struct Names {
    tailnet: String,
    users: HashMap<String, String>,
    nodes: HashMap<String, String>,
    keys: HashMap<String, String>,
}

/// Folds events into records, keeping the names the records need.
#[derive(Debug, Default)]
pub struct Recorder {
    tailnets: HashMap<TailnetId, Names>,
}

fn tag_list(t: &Tags) -> Value {
    Value::from(t.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
}

impl Recorder {
    /// The records of `env` (none for events that change no configuration), in order; folds
    /// the names it carries.
    pub fn records(&mut self, env: &Envelope) -> Vec<Record> {
        let names = self.tailnets.entry(env.tailnet.clone()).or_default();
        let actor = match env.actor.actor_type {
            ActorType::User => {
                let login = env
                    .actor
                    .login_name
                    .as_ref()
                    .map(|l| l.to_string())
                    .or_else(|| names.users.get(&env.actor.id).cloned());
                RecordActor {
                    id: env.actor.id.clone(),
                    actor_type: "USER",
                    display_name: login.clone(),
                    login_name: login,
                    tags: Vec::new(),
                }
            }
            ActorType::Registrar => RecordActor {
                id: env.actor.id.clone(),
                actor_type: "NODE",
                login_name: None,
                display_name: None,
                tags: Vec::new(),
            },
            ActorType::System | ActorType::Oauth => RecordActor {
                id: env.actor.id.clone(),
                actor_type: "SERVICE",
                login_name: None,
                display_name: None,
                tags: Vec::new(),
            },
        };
        let origin = match env.actor.actor_type {
            ActorType::User | ActorType::Oauth => "API",
            ActorType::Registrar => "NODE",
            ActorType::System => "CONTROL",
        };
        let target =
            |id: &str, name: &str, ty: &'static str, property: Option<&'static str>| RecordTarget {
                id: id.to_owned(),
                name: name.to_owned(),
                target_type: ty,
                property,
            };
        let node_name = |names: &Names, id: &str| names.nodes.get(id).cloned().unwrap_or_default();
        let key_name = |names: &Names, id: &str| names.keys.get(id).cloned().unwrap_or_default();
        // (target, action, old, new)
        let mut out: Vec<(RecordTarget, String, Option<Value>, Option<Value>)> = Vec::new();
        match &env.event {
            Event::TailnetCreated(e) => {
                names.tailnet = e.name.to_string();
                out.push((
                    target(env.tailnet.as_str(), e.name.as_str(), "TAILNET", None),
                    "TAILNET.CREATE".into(),
                    None,
                    Some(json!({
                        "devicesApprovalOn": e.settings.devices_approval_on,
                        "devicesKeyDurationDays": e.settings.devices_key_duration_days.get(),
                        "tailnetLockOn": e.settings.tailnet_lock_on,
                    })),
                ));
            }
            Event::TailnetSettingsChanged(e) => {
                let t = |p| target(env.tailnet.as_str(), &names.tailnet, "TAILNET", Some(p));
                if let Some(v) = e.devices_approval_on {
                    out.push((
                        t("DEVICES_APPROVAL"),
                        "TAILNET.UPDATE.DEVICES_APPROVAL".into(),
                        Some(Value::from(!v)),
                        Some(Value::from(v)),
                    ));
                }
                if let Some(v) = e.devices_key_duration_days {
                    out.push((
                        t("DEVICES_KEY_DURATION_DAYS"),
                        "TAILNET.UPDATE.DEVICES_KEY_DURATION_DAYS".into(),
                        None,
                        Some(Value::from(v.get())),
                    ));
                }
                if let Some(v) = e.tailnet_lock_on {
                    out.push((
                        t("TAILNET_LOCK"),
                        "TAILNET.UPDATE.TAILNET_LOCK".into(),
                        Some(Value::from(!v)),
                        Some(Value::from(v)),
                    ));
                }
            }
            Event::UserAdded(e) => {
                names
                    .users
                    .insert(e.user_id.to_string(), e.login_name.to_string());
                out.push((
                    target(e.user_id.as_str(), e.login_name.as_str(), "USER", None),
                    "USER.CREATE".into(),
                    None,
                    Some(json!({ "role": e.role })),
                ));
            }
            Event::UserRoleChanged(e) => {
                let login = names
                    .users
                    .get(e.user_id.as_str())
                    .cloned()
                    .unwrap_or_default();
                out.push((
                    target(e.user_id.as_str(), &login, "USER", Some("ROLE")),
                    "USER.UPDATE.ROLE".into(),
                    Some(json!(e.previous_role)),
                    Some(json!(e.role)),
                ));
            }
            Event::ApiTokenIssued(e) => {
                let login = names
                    .users
                    .get(e.user_id.as_str())
                    .cloned()
                    .unwrap_or_default();
                names.keys.insert(
                    e.token_id.to_string(),
                    format!("API access token of {login}"),
                );
                out.push((
                    target(
                        e.token_id.as_str(),
                        &key_name(names, e.token_id.as_str()),
                        "API_KEY",
                        None,
                    ),
                    "API_KEY.CREATE".into(),
                    None,
                    Some(json!({ "keyType": "api", "userId": e.user_id, "expires": e.expires })),
                ));
            }
            Event::ApiTokenRevoked(e) => out.push((
                target(
                    e.token_id.as_str(),
                    &key_name(names, e.token_id.as_str()),
                    "API_KEY",
                    None,
                ),
                "API_KEY.REVOKE".into(),
                None,
                None,
            )),
            Event::KeyGenerated(e) => {
                names
                    .keys
                    .insert(e.key_id.to_string(), e.description.to_string());
                out.push((
                    target(e.key_id.as_str(), e.description.as_str(), "API_KEY", None),
                    "API_KEY.CREATE".into(),
                    None,
                    Some(json!({
                        "keyType": "auth",
                        "userId": e.user_id,
                        "reusable": e.reusable,
                        "ephemeral": e.ephemeral,
                        "preauthorized": e.preauthorized,
                        "tags": tag_list(&e.tags),
                        "expirySeconds": e.expiry_seconds.get(),
                        "expires": e.expires,
                    })),
                ));
            }
            Event::KeyRevoked(e) => out.push((
                target(
                    e.key_id.as_str(),
                    &key_name(names, e.key_id.as_str()),
                    "API_KEY",
                    None,
                ),
                "API_KEY.REVOKE".into(),
                None,
                None,
            )),
            Event::KeyExpired(e) => out.push((
                target(
                    e.key_id.as_str(),
                    &key_name(names, e.key_id.as_str()),
                    "API_KEY",
                    None,
                ),
                "API_KEY.EXPIRED".into(),
                None,
                Some(json!({ "expiredAt": e.expired_at })),
            )),
            Event::KeySigned(e) => out.push((
                target(
                    e.key_id.as_str(),
                    &key_name(names, e.key_id.as_str()),
                    "API_KEY",
                    None,
                ),
                "API_KEY.SIGN".into(),
                None,
                Some(json!({ "lockKey": e.lock_key })),
            )),
            Event::NodeRegistered(e) => {
                names.nodes.insert(e.node_id.to_string(), e.name.clone());
                out.push((
                    target(e.node_id.as_str(), &e.name, "NODE", None),
                    "NODE.CREATE".into(),
                    None,
                    Some(json!({
                        "hostname": e.hostname,
                        "authKeyId": e.auth_key_id,
                        "userId": e.user_id,
                        "tags": tag_list(&e.tags),
                        "ephemeral": e.ephemeral,
                        "authorized": e.authorized,
                        "keyExpiryDisabled": e.key_expiry_disabled,
                        "expires": e.expires,
                    })),
                ));
            }
            Event::NodeReauthenticated(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    None,
                ),
                "NODE.REAUTHENTICATE".into(),
                None,
                Some(json!({
                    "hostname": e.hostname,
                    "authKeyId": e.auth_key_id,
                    "tags": tag_list(&e.tags),
                    "keyExpiryDisabled": e.key_expiry_disabled,
                    "expires": e.expires,
                })),
            )),
            Event::NodeAuthorized(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    None,
                ),
                if e.authorized {
                    "NODE.APPROVE"
                } else {
                    "NODE.UNAPPROVE"
                }
                .into(),
                Some(Value::from(!e.authorized)),
                Some(Value::from(e.authorized)),
            )),
            Event::NodeDeleted(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    None,
                ),
                "NODE.DELETE".into(),
                None,
                Some(json!({ "reason": e.reason })),
            )),
            Event::TagsChanged(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    Some("ACL_TAGS"),
                ),
                "NODE.UPDATE.ACL_TAGS".into(),
                Some(tag_list(&e.previous_tags)),
                Some(tag_list(&e.tags)),
            )),
            Event::NodeKeyExpirySet(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    Some("KEY_EXPIRY"),
                ),
                if e.key_expiry_disabled {
                    "NODE.DISABLE.KEY_EXPIRY"
                } else {
                    "NODE.ENABLE.KEY_EXPIRY"
                }
                .into(),
                None,
                Some(json!({ "keyExpiryDisabled": e.key_expiry_disabled, "expires": e.expires })),
            )),
            Event::NodeExpired(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    Some("KEY_EXPIRY_TIME"),
                ),
                "NODE.EXPIRED.KEY_EXPIRY_TIME".into(),
                None,
                Some(json!({ "expiredAt": e.expired_at })),
            )),
            Event::NodeSigned(e) => out.push((
                target(
                    e.node_id.as_str(),
                    &node_name(names, e.node_id.as_str()),
                    "NODE",
                    None,
                ),
                "NODE.SIGN".into(),
                None,
                Some(json!({ "lockKey": e.lock_key })),
            )),
            _ => {}
        }
        out.into_iter()
            .map(|(target, action, old, new)| Record {
                event_time: env.time,
                record_type: "CONFIG",
                event_group_id: env.command_id.to_string(),
                origin,
                actor: actor.clone(),
                target,
                action,
                old,
                new,
                seq: env.seq.get(),
                hash: env.hash,
            })
            .collect()
    }
}

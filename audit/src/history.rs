//! `authkeys audit history`: every event that touched a key, a node or a user, in log order,
//! and for a key the nodes it registered (the blast radius of a leaked reusable key).
//!
//! What touches what:
//! - a key: the events of its stream (`KeyGenerated`, `KeyUsed`, `KeyRevoked`, `KeyExpired`)
//!   and every `NodeRegistered` / `NodeReauthenticated` / `NodeSigned` made with it;
//! - a node: the events of its stream and the `KeyUsed` that registered it;
//! - a user (by login name, in every tailnet that has one): its `UserAdded`,
//!   `UserRoleChanged`, `UserSuspended`, `UserRestored` and `UserRemoved`, the API tokens issued to it and their revocation, the keys generated
//!   for it, and every event it caused as actor.
//!
//! Only the matching events are kept, never the whole log.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use authkeys_events::{ActorType, Envelope, Event, Hash, Timestamp};
use serde::Serialize;

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An auth key id (`k…`).
    Key(String),
    /// A node id (`n…`).
    Node(String),
    /// A user's login name.
    User(String),
}

/// One event that touched the subject.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Touch {
    /// Its seq.
    pub seq: u64,
    /// Its chain hash.
    pub hash: Hash,
    /// When.
    pub time: Timestamp,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who caused it, as `type:id`.
    pub actor: String,
    /// One line for people.
    pub summary: String,
    /// The whole envelope, as stored.
    pub envelope: Envelope,
}

/// A node a key registered (or re-authenticated).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    /// The node.
    pub node_id: String,
    /// Its machine name when it registered (re-authentications keep the earlier name).
    pub name: String,
    /// Its host name then.
    pub hostname: String,
    /// The seq of the registration with this key.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// `true` for a re-authentication of an existing node.
    pub reauthentication: bool,
    /// When it was deleted since, if it was.
    pub deleted: Option<Timestamp>,
}

/// The answer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Every event that touched the subject, in order.
    pub events: Vec<Touch>,
    /// For a key: every node it registered, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<Vec<Registered>>,
}

/// Folds events into a [`History`] of `subject`.
#[derive(Debug)]
pub struct Tracker {
    subject: Subject,
    history: History,
    /// For a user: `(tailnet, userId)` of the login, and their token ids.
    user_ids: HashSet<(String, String)>,
    tokens: HashSet<(String, String)>,
    /// For a key: index into `registered` by node id.
    nodes: HashMap<String, usize>,
}

impl Tracker {
    /// Follows `subject`.
    pub fn new(subject: Subject) -> Self {
        let registered = matches!(subject, Subject::Key(_)).then(Vec::new);
        Self {
            subject,
            history: History {
                events: Vec::new(),
                registered,
            },
            user_ids: HashSet::new(),
            tokens: HashSet::new(),
            nodes: HashMap::new(),
        }
    }

    /// Folds one event in.
    pub fn push(&mut self, env: &Envelope) -> ControlFlow<()> {
        if self.touches(env) {
            self.history.events.push(Touch {
                seq: env.seq.get(),
                hash: env.hash,
                time: env.time,
                event_type: env.event_type().to_string(),
                actor: format!("{}:{}", actor_type(env.actor.actor_type), env.actor.id),
                summary: describe(env),
                envelope: env.clone(),
            });
        }
        ControlFlow::Continue(())
    }

    /// The history so far.
    pub fn finish(self) -> History {
        self.history
    }

    fn touches(&mut self, env: &Envelope) -> bool {
        let tailnet = env.tailnet.to_string();
        match &self.subject {
            Subject::Key(key) => {
                let (registered, reauth) = match &env.event {
                    Event::NodeRegistered(e) if e.auth_key_id.as_str() == key => {
                        (Some((&e.node_id, e.name.clone(), &e.hostname)), false)
                    }
                    Event::NodeReauthenticated(e) if e.auth_key_id.as_str() == key => {
                        (Some((&e.node_id, String::new(), &e.hostname)), true)
                    }
                    Event::NodeDeleted(e) => {
                        if let (Some(&i), Some(list)) = (
                            self.nodes.get(e.node_id.as_str()),
                            self.history.registered.as_mut(),
                        ) {
                            list[i].deleted = Some(env.time);
                        }
                        (None, false)
                    }
                    _ => (None, false),
                };
                if let (Some((node, name, host)), Some(list)) =
                    (registered, self.history.registered.as_mut())
                {
                    self.nodes.insert(node.to_string(), list.len());
                    list.push(Registered {
                        node_id: node.to_string(),
                        name,
                        hostname: host.to_string(),
                        seq: env.seq.get(),
                        time: env.time,
                        reauthentication: reauth,
                        deleted: None,
                    });
                    return true;
                }
                env.stream.as_str() == format!("key/{key}")
                    || matches!(&env.event, Event::NodeSigned(e)
                        if e.key_id.as_ref().is_some_and(|k| k.as_str() == key))
            }
            Subject::Node(node) => {
                env.stream.as_str() == format!("node/{node}")
                    || matches!(&env.event, Event::KeyUsed(e) if e.node_id.as_str() == node)
            }
            Subject::User(login) => {
                if let Event::UserAdded(e) = &env.event
                    && e.login_name.as_str() == login
                {
                    self.user_ids
                        .insert((tailnet.clone(), e.user_id.to_string()));
                }
                let is_user = |ids: &HashSet<(String, String)>, id: &str| {
                    ids.contains(&(tailnet.clone(), id.to_owned()))
                };
                let by_user = env.actor.actor_type == ActorType::User
                    && is_user(&self.user_ids, &env.actor.id);
                let about_user = match &env.event {
                    Event::UserAdded(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::UserRoleChanged(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::UserRemoved(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::UserSuspended(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::UserRestored(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::KeyGenerated(e) => is_user(&self.user_ids, e.user_id.as_str()),
                    Event::ApiTokenIssued(e) if is_user(&self.user_ids, e.user_id.as_str()) => {
                        self.tokens
                            .insert((tailnet.clone(), e.token_id.to_string()));
                        true
                    }
                    Event::ApiTokenRevoked(e) => self
                        .tokens
                        .contains(&(tailnet.clone(), e.token_id.to_string())),
                    _ => false,
                };
                by_user || about_user
            }
        }
    }
}

fn actor_type(t: ActorType) -> &'static str {
    match t {
        ActorType::User => "user",
        ActorType::Registrar => "registrar",
        ActorType::System => "system",
        ActorType::Oauth => "oauth",
    }
}

fn tags(t: &authkeys_events::Tags) -> String {
    if t.is_empty() {
        "no tags".into()
    } else {
        t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
    }
}

fn lock_keys(keys: &[authkeys_events::LockKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line saying what an event did, for people.
pub fn describe(env: &Envelope) -> String {
    match &env.event {
        Event::TailnetCreated(e) => format!("tailnet {} created", e.name),
        Event::TailnetSettingsChanged(e) => format!(
            "settings changed: approval {:?}, key duration {:?} days, lock {:?}",
            e.devices_approval_on,
            e.devices_key_duration_days.map(|d| d.get()),
            e.tailnet_lock_on
        ),
        Event::UserAdded(e) => format!(
            "user {} ({}) added as {:?}",
            e.login_name, e.user_id, e.role
        ),
        Event::UserRoleChanged(e) => format!(
            "user {} role {:?} -> {:?}",
            e.user_id, e.previous_role, e.role
        ),
        Event::UserRemoved(e) => format!("user {} removed", e.user_id),
        Event::UserSuspended(e) => format!("user {} suspended", e.user_id),
        Event::UserRestored(e) => format!("user {} restored", e.user_id),
        Event::ApiTokenIssued(e) => format!("API token {} issued to {}", e.token_id, e.user_id),
        Event::ApiTokenRevoked(e) => format!("API token {} revoked", e.token_id),
        Event::KeyGenerated(e) => format!(
            "key {} generated for {}: {}{}{}, {}, expires {}",
            e.key_id,
            e.user_id,
            if e.reusable { "reusable" } else { "one-off" },
            if e.ephemeral { ", ephemeral" } else { "" },
            if e.preauthorized {
                ", pre-approved"
            } else {
                ""
            },
            tags(&e.tags),
            e.expires
        ),
        Event::KeyUsed(e) => format!(
            "key {} used (use {}) for node {}",
            e.key_id, e.uses, e.node_id
        ),
        Event::KeyRevoked(e) => format!("key {} revoked", e.key_id),
        Event::KeyExpired(e) => format!("key {} expired at {}", e.key_id, e.expired_at),
        Event::TailnetLockEnabled(e) => format!(
            "tailnet lock turned on, trusting {}",
            lock_keys(&e.trusted_keys)
        ),
        Event::TrustedLockKeysChanged(e) => format!(
            "trusted lock keys changed to {}, signed by {}",
            lock_keys(&e.trusted_keys),
            e.signer
        ),
        Event::TailnetLockDisabled(_) => "tailnet lock turned off".to_owned(),
        Event::NodeRegistered(e) => format!(
            "node {} ({}, host {}) registered with key {}: {}, {}",
            e.node_id,
            e.name,
            e.hostname,
            e.auth_key_id,
            if e.authorized {
                "authorized"
            } else {
                "awaiting approval"
            },
            tags(&e.tags)
        ),
        Event::NodeReauthenticated(e) => format!(
            "node {} re-authenticated with key {} (host {}, {})",
            e.node_id,
            e.auth_key_id,
            e.hostname,
            tags(&e.tags)
        ),
        Event::NodeAuthorized(e) => format!(
            "node {} {}",
            e.node_id,
            if e.authorized {
                "approved"
            } else {
                "unapproved"
            }
        ),
        Event::NodeKeyExpirySet(e) => format!(
            "node {} key expiry {}",
            e.node_id,
            match e.expires {
                Some(t) if !e.key_expiry_disabled => format!("enabled, expires {t}"),
                _ => "disabled".into(),
            }
        ),
        Event::NodeExpired(e) => format!("node {} key expired at {}", e.node_id, e.expired_at),
        Event::TagsChanged(e) => format!(
            "node {} tags {} -> {}",
            e.node_id,
            tags(&e.previous_tags),
            tags(&e.tags)
        ),
        Event::NodeConnected(e) => format!("node {} connected", e.node_id),
        Event::NodeDisconnected(e) => format!("node {} disconnected", e.node_id),
        Event::NodeSigned(e) => match &e.key_id {
            Some(k) => format!(
                "node {} signed by {} (pre-signed key {k})",
                e.node_id, e.lock_key
            ),
            None => format!("node {} signed by {}", e.node_id, e.lock_key),
        },
        Event::NodeDeleted(e) => format!("node {} deleted ({:?})", e.node_id, e.reason),
        _ => env.event_type().to_string(),
    }
}

/// The history of `subject` in the log at `source`.
pub async fn history(source: &crate::Source, subject: Subject) -> Result<History, crate::Error> {
    let tracker = source
        .fold(Tracker::new(subject), |t, env| t.push(env))
        .await?;
    Ok(tracker.finish())
}

//! The domain invariants an auditor checks on every event, against the state folded from the
//! events before it (the command side's own [`State`], so both read history the same way).
//!
//! - R01: a one-off key is used at most once (`KeyUsed` counts up by one; a one-off key's second
//!   `KeyUsed` or `NodeRegistered` is refused).
//! - R08, R12: no registration (`NodeRegistered`, `NodeReauthenticated`, `KeyUsed`) with a key
//!   that is unknown, revoked, or expired (a `KeyExpired` recorded, or the event's time at or
//!   after the key's `expires`).
//! - R07 and the roles of `decide`: a user actor exists in the tailnet and held, when it acted,
//!   the role the event needs: key events a key-managing role; node administration the same
//!   roles; users, roles and tailnet settings Owner or Admin (making or unmaking an Owner: Owner
//!   only); revoking another user's API token Owner or Admin. A registrar may only register,
//!   re-authenticate, authorize at re-authentication and report connections.
//!
//! `system` actors (bootstrap, timers) are not role-checked; their events are still held to the
//! key rules.

use authkeys_domain::State;
use authkeys_domain::state::Tailnet;
use std::collections::HashMap;

use authkeys_events::{ActorType, Envelope, Event, KeyId, NodeId, Role, Timestamp, UserId};

/// The state the checks read. See the module docs.
#[derive(Debug, Default)]
pub struct Invariants {
    state: State,
    /// The node each spent one-off key registered: its `NodeRegistered` may come before or
    /// after its `KeyUsed`, but no other node may follow.
    /// Key ids are unique across tailnets (the command side indexes them globally).
    one_off_used_by: HashMap<KeyId, NodeId>,
}

fn manages_tailnet(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

impl Invariants {
    /// Folds a checked event in.
    pub fn apply(&mut self, env: &Envelope) {
        if let Event::KeyUsed(e) = &env.event
            && self
                .state
                .tailnet(&env.tailnet)
                .and_then(|t| t.keys.get(&e.key_id))
                .is_some_and(|k| !k.reusable)
        {
            self.one_off_used_by
                .insert(e.key_id.clone(), e.node_id.clone());
        }
        self.state.apply(env);
    }

    /// The state folded so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether `env` may follow the events folded so far; the error says why not.
    pub fn check(&self, env: &Envelope) -> Result<(), String> {
        let tailnet = self.state.tailnet(&env.tailnet);
        match env.actor.actor_type {
            ActorType::User => self.check_user(env, tailnet)?,
            ActorType::Registrar => check_registrar(&env.event)?,
            ActorType::System | ActorType::Oauth => {}
        }
        let Some(t) = tailnet else {
            return match env.event {
                Event::TailnetCreated(_) => Ok(()),
                _ => Err(format!(
                    "names tailnet {}, which was never created",
                    env.tailnet
                )),
            };
        };
        match &env.event {
            Event::KeyUsed(e) => {
                let key = usable_key(t, &e.key_id, env.time)?;
                if !key.reusable && key.uses > 0 {
                    return Err(format!("one-off key {} used a second time (R01)", e.key_id));
                }
                if e.uses != key.uses + 1 {
                    return Err(format!(
                        "key {} use count {} after {} uses",
                        e.key_id, e.uses, key.uses
                    ));
                }
            }
            Event::NodeRegistered(e) => {
                let key = usable_key(t, &e.auth_key_id, env.time)?;
                let used_by = self.one_off_used_by.get(&e.auth_key_id);
                if !key.reusable && key.uses > 0 && used_by != Some(&e.node_id) {
                    return Err(format!(
                        "one-off key {} registered a second node (R01)",
                        e.auth_key_id
                    ));
                }
            }
            Event::NodeReauthenticated(e) => {
                usable_key(t, &e.auth_key_id, env.time)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn check_user(&self, env: &Envelope, tailnet: Option<&Tailnet>) -> Result<(), String> {
        let actor = &env.actor.id;
        let t = tailnet.ok_or_else(|| {
            format!(
                "by user {actor} in tailnet {}, which was never created",
                env.tailnet
            )
        })?;
        let user = UserId::parse(actor.clone())
            .ok()
            .and_then(|id| t.users.get(&id))
            .ok_or_else(|| format!("by {actor}, who is not a user of this tailnet"))?;
        let role = user.role;
        let denied = |what: &str| {
            Err(format!(
                "by {actor}, whose role {role:?} may not {what} (R07)"
            ))
        };
        match &env.event {
            Event::KeyGenerated(_) | Event::KeyRevoked(_) if !role.may_manage_keys() => {
                denied("manage auth keys")
            }
            Event::NodeAuthorized(_)
            | Event::NodeKeyExpirySet(_)
            | Event::NodeExpired(_)
            | Event::TagsChanged(_)
            | Event::NodeDeleted(_)
                if !role.may_manage_keys() =>
            {
                denied("manage devices")
            }
            Event::UserAdded(_) | Event::UserRoleChanged(_) | Event::TailnetSettingsChanged(_)
                if !manages_tailnet(role) =>
            {
                denied("manage users or tailnet settings")
            }
            Event::UserAdded(e) if e.role == Role::Owner && role != Role::Owner => {
                denied("add an Owner")
            }
            Event::UserRoleChanged(e)
                if (e.role == Role::Owner || e.previous_role == Role::Owner)
                    && role != Role::Owner =>
            {
                denied("make or unmake an Owner")
            }
            Event::ApiTokenRevoked(e)
                if !manages_tailnet(role)
                    && t.tokens
                        .get(&e.token_id)
                        .is_some_and(|tok| tok.user_id.as_str() != actor) =>
            {
                denied("revoke another user's API token")
            }
            _ => Ok(()),
        }
    }
}

fn check_registrar(event: &Event) -> Result<(), String> {
    match event {
        Event::NodeRegistered(_)
        | Event::NodeReauthenticated(_)
        | Event::KeyUsed(_)
        | Event::NodeAuthorized(_)
        | Event::NodeConnected(_)
        | Event::NodeDisconnected(_) => Ok(()),
        _ => Err("by a registrar, which may only register nodes and report them".into()),
    }
}

/// The key, if it exists and could register a node at `time` (revocation and expiry; the
/// one-off rule is the caller's).
fn usable_key<'t>(
    t: &'t Tailnet,
    key_id: &KeyId,
    time: Timestamp,
) -> Result<&'t authkeys_domain::state::Key, String> {
    let key = t
        .keys
        .get(key_id)
        .ok_or_else(|| format!("with key {key_id}, which was never generated"))?;
    if let Some(at) = key.revoked {
        return Err(format!("with key {key_id}, revoked at {at}"));
    }
    if key.expired || time >= key.expires {
        return Err(format!("with key {key_id}, expired at {}", key.expires));
    }
    Ok(key)
}

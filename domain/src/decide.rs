//! `decide`: the only place a command is refused. Every rule R01–R17 that concerns a command
//! lives here; `State::apply` only records.

use authkeys_events::{
    AccessTokenIssued, ApiTokenIssued, ApiTokenRevoked, DeleteReason, Event, KeyExpired,
    KeyGenerated, KeyId, KeyRevoked, KeyUsed, NodeAuthorized, NodeConnected, NodeDeleted,
    NodeDisconnected, NodeExpired, NodeId, NodeKeyExpirySet, NodeReauthenticated, NodeRegistered,
    NodeSigned, OAuthClientCreated, OAuthClientDeleted, Role, Scope, TagsChanged, TailnetCreated,
    TailnetId, TailnetSettingsChanged, Timestamp, UserAdded, UserId, UserRemoved, UserRestored,
    UserRoleChanged, UserSuspended,
};
use authkeys_events::{Decision, Expected, Proposed};
use subtle::ConstantTimeEq;

use crate::command::{AdminOp, Command, Due, KeyRequest, NewToken, Rejection};
use crate::state::{Node, State, Tailnet, User, default_settings, machine_base};

/// The lock-out reason of a node registered with an unsigned key under tailnet lock (R04).
pub const LOCKED_OUT: &str =
    "this node is locked out: its key is not signed by a trusted tailnet lock key";

fn any(event: impl Into<Event>) -> Proposed {
    Proposed {
        event: event.into(),
        expected: Expected::Any,
    }
}

fn new_stream(event: impl Into<Event>) -> Proposed {
    Proposed {
        event: event.into(),
        expected: Expected::NoStream,
    }
}

/// Decides `cmd` against `state` at `now`: the events to append, or why not.
pub fn decide(state: &State, cmd: &Command, now: Timestamp) -> Result<Decision, Rejection> {
    match cmd {
        Command::CreateTailnet {
            tailnet_id,
            name,
            owner_id,
            owner_login,
            token,
        } => {
            if state.tailnets.contains_key(tailnet_id) {
                return Err(Rejection::Conflict(format!(
                    "tailnet {tailnet_id} already exists"
                )));
            }
            if state.tailnet_names.contains_key(name) {
                return Err(Rejection::Conflict(format!(
                    "a tailnet named {name} already exists"
                )));
            }
            Ok(Decision {
                tailnet: tailnet_id.clone(),
                events: vec![
                    new_stream(TailnetCreated {
                        name: name.clone(),
                        settings: default_settings(),
                    }),
                    new_stream(UserAdded {
                        user_id: owner_id.clone(),
                        login_name: owner_login.clone(),
                        role: Role::Owner,
                    }),
                    issue_token(owner_id, token),
                ],
            })
        }
        Command::RecoverOwner { name, token } => {
            let tailnet = state
                .tailnet_names
                .get(name)
                .ok_or_else(|| Rejection::NotFound(format!("no tailnet is named {name}")))?;
            let t = state
                .tailnet(tailnet)
                .ok_or_else(|| Rejection::NotFound(format!("no tailnet is named {name}")))?;
            let (owner_id, _) = t
                .users
                .iter()
                .find(|(_, u)| u.role == Role::Owner)
                .ok_or_else(|| Rejection::Conflict(format!("tailnet {name} has no Owner")))?;
            if state.token_index.contains_key(&token.token_id) {
                return Err(Rejection::Conflict("token id is taken".into()));
            }
            Ok(Decision {
                tailnet: tailnet.clone(),
                events: vec![issue_token(owner_id, token)],
            })
        }
        Command::IssueAccessToken {
            tailnet,
            client_id,
            token,
            scopes,
        } => {
            // The gateway verified the client's secret; a client deleted since is unknown.
            let client = state
                .tailnet(tailnet)
                .and_then(|t| t.clients.get(client_id))
                .filter(|c| !c.deleted)
                .ok_or_else(|| Rejection::Forbidden("unknown client".into()))?;
            let scopes = match scopes {
                None => client.scopes.clone(),
                Some(asked) => {
                    if let Some(s) = asked.iter().find(|s| !client.grants(**s)) {
                        return Err(Rejection::Forbidden(format!(
                            "scope {s} is not one of the client's"
                        )));
                    }
                    asked.clone()
                }
            };
            if state.token_index.contains_key(&token.token_id) {
                return Err(Rejection::Conflict("token id is taken".into()));
            }
            Ok(Decision {
                tailnet: tailnet.clone(),
                events: vec![new_stream(AccessTokenIssued {
                    token_id: token.token_id.clone(),
                    client_id: client_id.clone(),
                    secret_hash: token.secret_hash,
                    expires: token.expires,
                    scopes,
                })],
            })
        }
        Command::Admin { tailnet, actor, op } => {
            let t = state
                .tailnet(tailnet)
                .ok_or_else(|| Rejection::NotFound(format!("tailnet {tailnet} not found")))?;
            if let Some(client_id) = t.principals.get(actor) {
                let events = decide_client(state, t, actor, client_id, op, now)?;
                return Ok(Decision {
                    tailnet: tailnet.clone(),
                    events,
                });
            }
            // A suspended user is refused exactly like one who does not exist (removed users
            // have left `users`): their identity is not good for anything until restored.
            let user = t
                .users
                .get(actor)
                .filter(|u| !u.suspended)
                .ok_or_else(|| Rejection::Forbidden("unknown user".into()))?;
            let events = decide_admin(state, t, actor, user.role, op, now)?;
            Ok(Decision {
                tailnet: tailnet.clone(),
                events,
            })
        }
        Command::Register {
            key_id,
            presented_hash,
            node_key,
            hostname,
            os,
            new_node_id,
            presigned,
        } => {
            let (tid, t, key) = authenticate_key(state, key_id, presented_hash, now)?;
            // R04: a pre-signature is checked against the keys trusted now.
            let signed = crate::lock::check_presigned(t, key_id, presigned.as_ref())?;
            let node_signed = |node_id: &NodeId| {
                signed.map(|p| {
                    any(NodeSigned {
                        node_id: node_id.clone(),
                        node_key: node_key.clone(),
                        key_id: Some(key_id.clone()),
                        lock_key: p.lock_key,
                        signature: p.signature,
                    })
                })
            };
            let uses = key.uses + 1;
            let key_used = |node_id: &NodeId| {
                any(KeyUsed {
                    key_id: key_id.clone(),
                    node_id: node_id.clone(),
                    node_key: node_key.clone(),
                    uses,
                })
            };
            let tagged = !key.tags.is_empty();
            let duration_secs = i64::from(t.settings.devices_key_duration_days.get()) * 86_400;

            if let Some((node_tid, node_id)) = state.node_keys.get(node_key) {
                // R16: the same node key is the same node: a re-authentication.
                if node_tid != tid {
                    return Err(Rejection::InvalidKey);
                }
                let node = t.nodes.get(node_id).ok_or(Rejection::InvalidKey)?;
                // R15: a tagged key disables key expiry; an untagged one keeps the node's choice.
                let key_expiry_disabled =
                    tagged || (node.key_expiry_disabled && node.tags.is_empty());
                let expires = (!key_expiry_disabled).then(|| now.plus_seconds(duration_secs));
                let mut events = vec![
                    any(NodeReauthenticated {
                        node_id: node_id.clone(),
                        auth_key_id: key_id.clone(),
                        hostname: hostname.clone(),
                        user_id: key.user_id.clone(),
                        tags: key.tags.clone(),
                        key_expiry_disabled,
                        expires,
                    }),
                    key_used(node_id),
                ];
                if !node.authorized && key.preauthorized {
                    events.push(any(NodeAuthorized {
                        node_id: node_id.clone(),
                        authorized: true,
                    }));
                }
                // A locked-out node that comes back with a pre-signed key is signed by it.
                if node.tailnet_lock_error.is_some() {
                    events.extend(node_signed(node_id));
                }
                return Ok(Decision {
                    tailnet: tid.clone(),
                    events,
                });
            }

            if t.nodes.contains_key(new_node_id) {
                return Err(Rejection::Conflict(format!(
                    "node id {new_node_id} is taken"
                )));
            }
            let authorized = !t.settings.devices_approval_on || key.preauthorized;
            let tailnet_lock_error =
                (t.settings.tailnet_lock_on && signed.is_none()).then(|| LOCKED_OUT.to_owned());
            // R17: free addresses, unique in the tailnet because the writer folds every
            // registration before deciding the next.
            let addresses = t.addresses.pick(now).ok_or(Rejection::AddressesExhausted)?;
            Ok(Decision {
                tailnet: tid.clone(),
                events: vec![
                    new_stream(NodeRegistered {
                        node_id: new_node_id.clone(),
                        node_key: node_key.clone(),
                        hostname: hostname.clone(),
                        name: machine_name(t, hostname.as_str()),
                        os: os.clone(),
                        user_id: key.user_id.clone(),
                        tags: key.tags.clone(),
                        auth_key_id: key_id.clone(),
                        ephemeral: key.ephemeral,
                        authorized,
                        key_expiry_disabled: tagged,
                        expires: (!tagged).then(|| now.plus_seconds(duration_secs)),
                        tailnet_lock_error,
                        addresses: Some(addresses),
                    }),
                    key_used(new_node_id),
                ]
                .into_iter()
                .chain(node_signed(new_node_id))
                .collect(),
            })
        }
        Command::Lock {
            token_id,
            presented_hash,
            op,
        } => {
            let (tid, t, _, role) =
                crate::lock::authenticate_token(state, token_id, presented_hash, now)?;
            Ok(Decision {
                tailnet: tid.clone(),
                events: crate::lock::decide_lock(tid, t, role, op)?
                    .into_iter()
                    .map(any)
                    .collect(),
            })
        }
        Command::NodeConnected { node_key } | Command::NodeDisconnected { node_key } => {
            let connected = matches!(cmd, Command::NodeConnected { .. });
            let (tid, node_id) = state
                .node_keys
                .get(node_key)
                .ok_or_else(|| Rejection::NotFound("no node has this node key".into()))?;
            let node = state
                .tailnet(tid)
                .and_then(|t| t.nodes.get(node_id))
                .ok_or_else(|| Rejection::NotFound("no node has this node key".into()))?;
            let event: Event = if connected {
                NodeConnected {
                    node_id: node_id.clone(),
                }
                .into()
            } else {
                NodeDisconnected {
                    node_id: node_id.clone(),
                }
                .into()
            };
            // A repeated report changes nothing and writes nothing.
            let events = if node.connected == connected && node.last_seen.is_some() {
                Vec::new()
            } else {
                vec![any(event)]
            };
            Ok(Decision {
                tailnet: tid.clone(),
                events,
            })
        }
        Command::Timer {
            tailnet,
            due,
            ephemeral_inactivity,
        } => {
            let t = state
                .tailnet(tailnet)
                .ok_or_else(|| Rejection::NotFound(format!("tailnet {tailnet} not found")))?;
            Ok(Decision {
                tailnet: tailnet.clone(),
                events: decide_timer(t, due, *ephemeral_inactivity, now)?,
            })
        }
    }
}

/// A timer's command: the event if the thing is still due exactly as scheduled, nothing if it
/// changed since (revoked, spent, renewed, disabled, reconnected, deleted: a later event says
/// so, and the timers reschedule from it), `NotDue` if it fired early.
///
/// The deadline is the state's, never only the request's: a key's or a node's `expires` must
/// equal the one named, and an ephemeral node is removed no sooner than its `lastSeen` +
/// `ephemeral_inactivity` (R02), whatever `due` the request names — so a forged firing with an
/// early `due` is refused `not_due` like any early one.
fn decide_timer(
    t: &Tailnet,
    due: &Due,
    ephemeral_inactivity: std::time::Duration,
    now: Timestamp,
) -> Result<Vec<Proposed>, Rejection> {
    let still_due =
        match due {
            Due::KeyExpiry { key_id, expires } => t.keys.get(key_id).is_some_and(|k| {
                // R12: a revoked or spent key is already invalid; it does not also expire.
                k.expires == *expires
                    && !k.expired
                    && k.revoked.is_none()
                    && (k.reusable || k.uses == 0)
            }),
            Due::NodeKeyExpiry { node_id, expires } => t.nodes.get(node_id).is_some_and(|n| {
                !n.expired && !n.key_expiry_disabled && n.expires == Some(*expires)
            }),
            Due::EphemeralInactivity {
                node_id,
                disconnected_at,
                ..
            } => t.nodes.get(node_id).is_some_and(|n| {
                n.ephemeral && !n.connected && n.last_seen == Some(*disconnected_at)
            }),
        };
    if !still_due {
        return Ok(Vec::new());
    }
    let deadline = match due {
        Due::EphemeralInactivity {
            disconnected_at,
            due,
            ..
        } => {
            // `disconnected_at` is the node's `lastSeen` (checked above).
            let ms = i64::try_from(ephemeral_inactivity.as_millis()).unwrap_or(i64::MAX);
            let inactive_at = Timestamp::from_unix_ms(disconnected_at.unix_ms().saturating_add(ms))
                .unwrap_or_else(|_| disconnected_at.plus_seconds(i64::MAX));
            inactive_at.max(*due)
        }
        Due::KeyExpiry { .. } | Due::NodeKeyExpiry { .. } => due.at(),
    };
    if now < deadline {
        return Err(Rejection::NotDue(deadline));
    }
    Ok(vec![match due {
        // R13: the key's nodes are untouched.
        Due::KeyExpiry { key_id, expires } => any(KeyExpired {
            key_id: key_id.clone(),
            expired_at: *expires,
        }),
        Due::NodeKeyExpiry { node_id, expires } => any(NodeExpired {
            node_id: node_id.clone(),
            expired_at: *expires,
        }),
        Due::EphemeralInactivity { node_id, .. } => any(NodeDeleted {
            node_id: node_id.clone(),
            reason: DeleteReason::EphemeralInactive,
        }),
    }])
}

/// Finds the key and checks its secret in constant time, then its usability. Every failure is
/// the same `InvalidKey` (R10); an unknown id still costs one comparison.
fn authenticate_key<'s>(
    state: &'s State,
    key_id: &KeyId,
    presented: &authkeys_events::Hash,
    now: Timestamp,
) -> Result<(&'s TailnetId, &'s Tailnet, &'s crate::state::Key), Rejection> {
    const DUMMY: [u8; 32] = [0x5a; 32];
    let found = state
        .key_index
        .get(key_id)
        .and_then(|tid| Some((tid, state.tailnet(tid)?)))
        .and_then(|(tid, t)| Some((tid, t, t.keys.get(key_id)?)));
    let stored = found.map_or(&DUMMY, |(_, _, k)| &k.secret_hash.0);
    let secret_ok: bool = stored.ct_eq(&presented.0).into();
    match found {
        Some((tid, t, key)) if secret_ok && key.usable(now) => Ok((tid, t, key)),
        _ => Err(Rejection::InvalidKey),
    }
}

/// A unique machine name from a host name: [`machine_base`], with `-N` added when taken. The
/// search starts after the suffixes already handed out for that base, so registering many nodes
/// with one host name (CI runners) stays constant-time per node.
fn machine_name(t: &Tailnet, hostname: &str) -> String {
    let base = machine_base(hostname);
    if !t.names.contains_key(&base) {
        return base;
    }
    let first = t.name_next.get(&base).copied().unwrap_or(1).max(1);
    (first..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !t.names.contains_key(name))
        .expect("some suffix is free")
}

fn issue_token(user_id: &UserId, token: &NewToken) -> Proposed {
    new_stream(ApiTokenIssued {
        token_id: token.token_id.clone(),
        user_id: user_id.clone(),
        secret_hash: token.secret_hash,
        expires: token.expires,
    })
}

fn require(ok: bool, what: &str) -> Result<(), Rejection> {
    if ok {
        Ok(())
    } else {
        Err(Rejection::Forbidden(format!("your role may not {what}")))
    }
}

/// Why a tailnet never gets a second Owner (R18).
const ONE_OWNER: &str =
    "a tailnet has one Owner; transfer ownership with POST /users/{id}/role {\"role\": \"owner\"}";

/// How ownership moves (R18).
const TRANSFER: &str = "POST /users/{id}/role {\"role\": \"owner\"} for the new Owner";

/// The user of the tailnet an actor of `role` acts on (suspended or not; removed users are
/// gone). Nobody manages more than they hold: an IT admin does not act on an Admin (or they
/// could make themselves one, and so gain the settings).
fn managed_user<'t>(t: &'t Tailnet, role: Role, user_id: &UserId) -> Result<&'t User, Rejection> {
    let target = t
        .users
        .get(user_id)
        .ok_or_else(|| Rejection::NotFound(format!("user {user_id} not found")))?;
    if role == Role::ItAdmin && target.role == Role::Admin {
        return Err(Rejection::Forbidden(
            "an IT admin may not change an Admin".into(),
        ));
    }
    Ok(target)
}

/// R18, R21: nobody removes or suspends themselves, and nobody the Owner (who never loses
/// access: ownership is transferred first).
fn may_remove_or_suspend(
    actor: &UserId,
    user_id: &UserId,
    target: &User,
    what: &str,
) -> Result<(), Rejection> {
    if user_id == actor {
        return Err(Rejection::Conflict(format!("you cannot {what} yourself")));
    }
    if target.role == Role::Owner {
        return Err(Rejection::Conflict(format!(
            "the Owner cannot be removed or suspended: transfer ownership first ({TRANSFER})"
        )));
    }
    Ok(())
}

fn node<'t>(t: &'t Tailnet, node_id: &NodeId) -> Result<&'t Node, Rejection> {
    t.nodes
        .get(node_id)
        .ok_or_else(|| Rejection::NotFound(format!("device {node_id} not found")))
}

/// An OAuth client acting through an access token (R19). It may generate auth keys that carry
/// tags, each one of its own (`auth_keys`), revoke its own keys, and manage devices
/// (`devices:core`); nothing else. Its keys and their nodes belong to its principal, not a
/// user. The gateway also checks the token's (possibly narrower) scopes per route.
fn decide_client(
    state: &State,
    t: &Tailnet,
    principal: &UserId,
    client_id: &KeyId,
    op: &AdminOp,
    now: Timestamp,
) -> Result<Vec<Proposed>, Rejection> {
    let client = t
        .clients
        .get(client_id)
        .filter(|c| !c.deleted)
        .ok_or_else(|| Rejection::Forbidden("unknown user".into()))?;
    let needed = match op {
        AdminOp::GenerateKey { request, .. } => {
            let allowed = |tag| client.tags.iter().any(|c| c == tag);
            if request.tags.is_empty() || !request.tags.iter().all(allowed) {
                let tags: Vec<String> = client.tags.iter().map(ToString::to_string).collect();
                return Err(Rejection::Forbidden(format!(
                    "a key generated by an OAuth client must carry tags, each one of the \
                     client's ({})",
                    tags.join(", ")
                )));
            }
            Scope::AuthKeys
        }
        AdminOp::RevokeKey { .. } => Scope::AuthKeys,
        AdminOp::Webhook(_) => Scope::Webhooks,
        AdminOp::SetTags { .. }
        | AdminOp::SetKeyExpiry { .. }
        | AdminOp::ExpireNode { .. }
        | AdminOp::AuthorizeNode { .. }
        | AdminOp::DeleteNode { .. } => Scope::DevicesCore,
        _ => {
            return Err(Rejection::Forbidden(
                "an OAuth client may not do this".into(),
            ));
        }
    };
    if !client.grants(needed) {
        return Err(Rejection::Forbidden(format!(
            "the client's scopes do not include {needed}"
        )));
    }
    // Within what the scope allows, the client acts as a key and device manager would.
    decide_admin(state, t, principal, Role::ItAdmin, op, now)
}

fn decide_admin(
    state: &State,
    t: &Tailnet,
    actor: &UserId,
    role: Role,
    op: &AdminOp,
    now: Timestamp,
) -> Result<Vec<Proposed>, Rejection> {
    match op {
        AdminOp::AddUser {
            user_id,
            login_name,
            role: new_role,
            token,
        } => {
            require(role.may_manage_users(), "add users")?;
            if *new_role == Role::Owner {
                // R18: one Owner per tailnet.
                if role != Role::Owner {
                    return Err(Rejection::Forbidden(
                        "only the Owner may make an Owner".into(),
                    ));
                }
                return Err(Rejection::Conflict(ONE_OWNER.into()));
            }
            if t.logins.contains_key(login_name) {
                return Err(Rejection::Conflict(format!(
                    "user {login_name} already exists"
                )));
            }
            if t.users.contains_key(user_id) {
                return Err(Rejection::Conflict(format!("user id {user_id} is taken")));
            }
            Ok(vec![
                new_stream(UserAdded {
                    user_id: user_id.clone(),
                    login_name: login_name.clone(),
                    role: *new_role,
                }),
                issue_token(user_id, token),
            ])
        }
        AdminOp::ChangeRole {
            user_id,
            role: new_role,
        } => {
            require(role.may_manage_users(), "change roles")?;
            let target = managed_user(t, role, user_id)?;
            if (target.role == Role::Owner || *new_role == Role::Owner) && role != Role::Owner {
                return Err(Rejection::Forbidden(
                    "only the Owner may make an Owner or change the Owner's role".into(),
                ));
            }
            // Nobody grants more than they hold (see `managed_user`).
            if role == Role::ItAdmin && *new_role == Role::Admin {
                return Err(Rejection::Forbidden(
                    "an IT admin may not make an Admin".into(),
                ));
            }
            if target.role == *new_role {
                return Ok(Vec::new());
            }
            let change = any(UserRoleChanged {
                user_id: user_id.clone(),
                previous_role: target.role,
                role: *new_role,
            });
            if *new_role == Role::Owner {
                // R18: a transfer. The new Owner first, then the acting Owner becomes an Admin,
                // in one decision: the tailnet never has no Owner, and has one after it.
                if target.suspended {
                    return Err(Rejection::Conflict(format!(
                        "user {user_id} is suspended: restore them before making them the Owner"
                    )));
                }
                return Ok(vec![
                    change,
                    any(UserRoleChanged {
                        user_id: actor.clone(),
                        previous_role: Role::Owner,
                        role: Role::Admin,
                    }),
                ]);
            }
            // The Owner lowers their own role only by transferring ownership. (A log from
            // before the one-Owner rule may hold two Owners: then one may step down.)
            if target.role == Role::Owner
                && t.users.values().filter(|u| u.role == Role::Owner).count() == 1
            {
                return Err(Rejection::Conflict(format!(
                    "the Owner keeps their role until they transfer ownership: {TRANSFER}"
                )));
            }
            Ok(vec![change])
        }
        AdminOp::RemoveUser { user_id } => {
            require(role.may_manage_users(), "remove users")?;
            let target = managed_user(t, role, user_id)?;
            may_remove_or_suspend(actor, user_id, target, "remove")?;
            // R18: their very next request is refused: every token that could still
            // authenticate is revoked, and every key that could still register a node. Their
            // nodes stay (R11). In id order, so the same state always decides the same events.
            let mut tokens: Vec<_> = t
                .tokens
                .iter()
                .filter(|(_, tok)| tok.user_id == *user_id && !tok.revoked && now < tok.expires)
                .map(|(id, _)| id)
                .collect();
            tokens.sort();
            let mut keys: Vec<_> = t
                .keys
                .iter()
                .filter(|(_, k)| k.user_id == *user_id && k.usable(now))
                .map(|(id, _)| id)
                .collect();
            keys.sort();
            let mut events: Vec<Proposed> = tokens
                .into_iter()
                .map(|token_id| {
                    any(ApiTokenRevoked {
                        token_id: token_id.clone(),
                    })
                })
                .collect();
            events.extend(keys.into_iter().map(|key_id| {
                any(KeyRevoked {
                    key_id: key_id.clone(),
                })
            }));
            events.push(any(UserRemoved {
                user_id: user_id.clone(),
            }));
            Ok(events)
        }
        AdminOp::SuspendUser { user_id } => {
            require(role.may_manage_users(), "suspend users")?;
            let target = managed_user(t, role, user_id)?;
            may_remove_or_suspend(actor, user_id, target, "suspend")?;
            if target.suspended {
                return Ok(Vec::new());
            }
            Ok(vec![any(UserSuspended {
                user_id: user_id.clone(),
            })])
        }
        AdminOp::RestoreUser { user_id } => {
            require(role.may_manage_users(), "restore users")?;
            let target = managed_user(t, role, user_id)?;
            if target.role == Role::Owner && role != Role::Owner {
                return Err(Rejection::Forbidden(
                    "only the Owner may change the Owner".into(),
                ));
            }
            if !target.suspended {
                return Ok(Vec::new());
            }
            Ok(vec![any(UserRestored {
                user_id: user_id.clone(),
            })])
        }
        AdminOp::IssueToken { token } => {
            if state.token_index.contains_key(&token.token_id) {
                return Err(Rejection::Conflict("token id is taken".into()));
            }
            Ok(vec![issue_token(actor, token)])
        }
        AdminOp::RevokeToken { token_id } => {
            let tok = t
                .tokens
                .get(token_id)
                .filter(|tok| !tok.revoked && (tok.user_id == *actor || role.may_manage_users()))
                .ok_or_else(|| Rejection::NotFound(format!("token {token_id} not found")))?;
            // The Owner's tokens are the Owner's only, as the rest of the Owner is.
            if tok.user_id != *actor
                && role != Role::Owner
                && t.users
                    .get(&tok.user_id)
                    .is_some_and(|u| u.role == Role::Owner)
            {
                return Err(Rejection::Forbidden(
                    "only the Owner may revoke the Owner's API tokens".into(),
                ));
            }
            Ok(vec![any(ApiTokenRevoked {
                token_id: token_id.clone(),
            })])
        }
        AdminOp::GenerateKey {
            key_id,
            secret_hash,
            request,
        } => {
            require(role.may_manage_keys(), "generate auth keys")?;
            if state.key_index.contains_key(key_id) {
                return Err(Rejection::Conflict(format!("key id {key_id} is taken")));
            }
            let KeyRequest {
                description,
                expiry_seconds,
                reusable,
                ephemeral,
                preauthorized,
                tags,
            } = request;
            Ok(vec![new_stream(KeyGenerated {
                key_id: key_id.clone(),
                user_id: actor.clone(),
                description: description.clone(),
                reusable: *reusable,
                ephemeral: *ephemeral,
                preauthorized: *preauthorized,
                tags: tags.clone(),
                expiry_seconds: *expiry_seconds,
                expires: now.plus_seconds(i64::from(expiry_seconds.get())),
                secret_hash: *secret_hash,
            })])
        }
        AdminOp::RevokeKey { key_id } => {
            require(role.may_manage_keys(), "revoke auth keys")?;
            // R09: another user's key is exactly as unknown as a missing one. R12: so is a key
            // already revoked.
            // R01: a used one-off key already counts as revoked.
            t.keys
                .get(key_id)
                .filter(|k| k.user_id == *actor && k.revoked.is_none())
                .filter(|k| k.reusable || k.uses == 0)
                .ok_or_else(|| Rejection::NotFound(format!("key {key_id} not found")))?;
            Ok(vec![any(KeyRevoked {
                key_id: key_id.clone(),
            })])
        }
        AdminOp::SetTags { node_id, tags } => {
            require(role.may_manage_devices(), "manage devices")?;
            let n = node(t, node_id)?;
            if n.tags == *tags {
                return Ok(Vec::new());
            }
            // R15: tags change, key expiry does not.
            Ok(vec![any(TagsChanged {
                node_id: node_id.clone(),
                previous_tags: n.tags.clone(),
                tags: tags.clone(),
            })])
        }
        AdminOp::SetKeyExpiry { node_id, disabled } => {
            require(role.may_manage_devices(), "manage devices")?;
            let n = node(t, node_id)?;
            if n.key_expiry_disabled == *disabled {
                return Ok(Vec::new());
            }
            // R14: re-enabling restores the expiry the node's last authentication set, whatever
            // the tailnet's duration is now; a node that authenticated with expiry disabled (a
            // tagged one) gets its authentication time plus the current duration.
            let expires = (!disabled).then(|| {
                n.authenticated_expires.unwrap_or_else(|| {
                    n.authenticated_at.plus_seconds(
                        i64::from(t.settings.devices_key_duration_days.get()) * 86_400,
                    )
                })
            });
            Ok(vec![any(NodeKeyExpirySet {
                node_id: node_id.clone(),
                key_expiry_disabled: *disabled,
                expires,
            })])
        }
        AdminOp::ExpireNode { node_id } => {
            require(role.may_manage_devices(), "manage devices")?;
            let n = node(t, node_id)?;
            if n.expired {
                return Ok(Vec::new());
            }
            Ok(vec![any(NodeExpired {
                node_id: node_id.clone(),
                expired_at: now,
            })])
        }
        AdminOp::AuthorizeNode {
            node_id,
            authorized,
        } => {
            require(role.may_manage_devices(), "manage devices")?;
            let n = node(t, node_id)?;
            if n.authorized == *authorized {
                return Ok(Vec::new());
            }
            Ok(vec![any(NodeAuthorized {
                node_id: node_id.clone(),
                authorized: *authorized,
            })])
        }
        AdminOp::DeleteNode { node_id } => {
            require(role.may_manage_devices(), "manage devices")?;
            node(t, node_id)?;
            Ok(vec![any(NodeDeleted {
                node_id: node_id.clone(),
                reason: DeleteReason::Admin,
            })])
        }
        AdminOp::CreateClient {
            client_id,
            principal,
            secret_hash,
            federated,
            scopes,
            tags,
            description,
        } => {
            require(role.may_manage_keys(), "create OAuth clients")?;
            // R19 or R20: a secret, or a federated trust with no secret; never both.
            if secret_hash.is_some() == federated.is_some() {
                return Err(Rejection::BadRequest(
                    "a client holds a secret or a federated trust, one of them".into(),
                ));
            }
            if scopes.is_empty() {
                return Err(Rejection::BadRequest(
                    "scopes: at least one is needed".into(),
                ));
            }
            if Scope::any_grants(scopes, Scope::AuthKeys) && tags.is_empty() {
                return Err(Rejection::BadRequest(
                    "tags: a client with the auth_keys scope needs tags, which its keys carry"
                        .into(),
                ));
            }
            if state.key_index.contains_key(client_id) {
                return Err(Rejection::Conflict(format!("key id {client_id} is taken")));
            }
            if t.users.contains_key(principal) || t.principals.contains_key(principal) {
                return Err(Rejection::Conflict(format!("user id {principal} is taken")));
            }
            let mut scopes = scopes.clone();
            scopes.sort();
            scopes.dedup();
            Ok(vec![new_stream(OAuthClientCreated {
                client_id: client_id.clone(),
                principal: principal.clone(),
                secret_hash: *secret_hash,
                federated: federated.clone(),
                scopes,
                tags: tags.clone(),
                description: description.clone(),
            })])
        }
        AdminOp::DeleteClient { client_id } => {
            require(role.may_manage_keys(), "delete OAuth clients")?;
            t.clients
                .get(client_id)
                .filter(|c| !c.deleted)
                .ok_or_else(|| Rejection::NotFound(format!("key {client_id} not found")))?;
            Ok(vec![any(OAuthClientDeleted {
                client_id: client_id.clone(),
            })])
        }
        AdminOp::Webhook(w) => {
            // Tailnet names are unique: the name finds the id this tailnet is stored under.
            let tailnet = state
                .tailnet_names
                .get(&t.name)
                .ok_or_else(|| Rejection::NotFound("tailnet not found".into()))?;
            crate::webhook::decide(&state.webhooks, tailnet, actor, role, w)
        }
        AdminOp::ChangeSettings {
            devices_approval_on,
            devices_key_duration_days,
            kept,
        } => {
            require(role.may_manage_settings(), "change tailnet settings")?;
            let s = &t.settings;
            let approval = devices_approval_on.filter(|v| *v != s.devices_approval_on);
            let days = devices_key_duration_days.filter(|v| *v != s.devices_key_duration_days);
            let kept = s.kept.changes(kept);
            if approval.is_none() && days.is_none() && kept.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![any(TailnetSettingsChanged {
                devices_approval_on: approval,
                devices_key_duration_days: days,
                tailnet_lock_on: None,
                kept,
            })])
        }
    }
}

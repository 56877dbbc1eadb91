//! The domain invariants an auditor checks on every event, against a lean state folded from the
//! events before it: the tailnets, each user's role, each API token's owner and each key's
//! lifecycle: what the rules below need and nothing more (the command side's full `State` also
//! keeps nodes, names and indexes, which cost verification about 15% more time).
//!
//! - R01: a one-off key is used at most once (`KeyUsed` counts up by one; a one-off key's second
//!   `KeyUsed` or `NodeRegistered` is refused).
//! - R08, R12: no registration (`NodeRegistered`, `NodeReauthenticated`, `KeyUsed`) with a key
//!   that is unknown, revoked, or expired (a `KeyExpired` recorded, or the event's time at or
//!   after the key's `expires`).
//! - R07 and the roles of `decide`: a user actor exists in the tailnet (was added and not
//!   removed), is not suspended (R21), and held, when it acted,
//!   the role the event needs, by the one table of `Role::may_manage_*` that `decide` enforces
//!   (R21): key events a key-managing role; node administration Owner, Admin or IT admin; users
//!   and roles the same (making or unmaking an Owner: Owner only), removing, suspending and
//!   restoring users (never oneself, never an Owner, R18), and revoking another user's
//!   API token; tailnet settings Owner or Admin. A registrar may only register,
//!   re-authenticate, authorize at re-authentication and report connections.
//!
//! - R17: a new node's addresses are in the tailnet's ranges, held by no live node of the
//!   tailnet, and not released by a deleted node less than 90 days before.
//!
//! - R04: a `NodeSigned` carries a signature that verifies, by a key the tailnet trusted at
//!   that seq, over what it claims to sign (the pre-signed key it registered with, or the
//!   tailnet and node key); a change of the trusted keys is signed by a key trusted before it,
//!   for the lock's generation then; a node registered under the lock without a lock error is
//!   signed in the same command; only the Owner or an Admin turns the lock on or off or changes
//!   its keys.
//!
//! `system` actors (bootstrap, timers) are not role-checked; their events are still held to the
//! key rules.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use authkeys_domain::addresses;
use authkeys_events::lock::{node_statement, presign_statement, trusted_keys_statement};
use authkeys_events::{
    ActorType, Envelope, EventType, LockKey, NodeAddresses, Role, TailnetId, Timestamp,
};

use crate::borrowed::{DataRef, EnvelopeRef};

/// The maps' hasher: SipHash was a tenth of the checker thread's time (the maps are probed
/// several times per event), this multiply-rotate hash a word at a time is a fraction of that;
/// a per-process random seed still spreads keys crafted against it.
#[derive(Debug, Clone, Copy)]
struct FastHash(u64);

impl Default for FastHash {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Self(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8)))
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

#[derive(Debug)]
struct FastHasher(u64);

impl FastHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes the top 7 bits as a tag: fold the high bits down and the low bits up.
        self.0.rotate_left(26)
    }
}

type HashMap<K, V> = std::collections::HashMap<K, V, FastHash>;
type HashSet<K> = std::collections::HashSet<K, FastHash>;

/// What the rules need of one key.
#[derive(Debug, Clone)]
struct KeyState {
    reusable: bool,
    uses: u64,
    revoked: Option<Timestamp>,
    expired: bool,
    expires: Timestamp,
    /// For a spent one-off key, the node it registered: that node's `NodeRegistered` may come
    /// before or after the `KeyUsed`, but no other node may follow.
    used_by: Option<String>,
}

/// What the rules need of one tailnet. Maps are keyed by the ids' text so that lookups by an
/// envelope's `&str` allocate nothing.
#[derive(Debug, Default)]
struct TailnetState {
    roles: HashMap<String, Role>,
    suspended: HashSet<String>,
    token_owners: HashMap<String, String>,
    keys: HashMap<String, KeyState>,
    /// R17: each live node's addresses, and each address's holder.
    node_addresses: HashMap<String, NodeAddresses>,
    address_holders: HashMap<IpAddr, String>,
    /// R17: when a deleted node's addresses were released.
    released: HashMap<IpAddr, Timestamp>,
    /// R04: whether the lock is on, the keys it trusts, and its generation.
    lock_on: bool,
    lock_trusted: Vec<LockKey>,
    lock_generation: u64,
}

/// The state the checks read. See the module docs.
#[derive(Debug, Default)]
pub struct Invariants {
    tailnets: HashMap<String, TailnetState>,
    /// R04: a node registered under the lock without a lock error, and its command, whose
    /// `NodeSigned` must follow within that command.
    unsigned: Option<(String, String)>,
}

impl Invariants {
    /// Folds a checked event in.
    pub fn apply(&mut self, env: &Envelope) {
        self.apply_ref(&EnvelopeRef::from_owned(env));
    }

    /// Whether `env` may follow the events folded so far; the error says why not.
    pub fn check(&self, env: &Envelope) -> Result<(), String> {
        self.check_ref(&EnvelopeRef::from_owned(env))
    }

    /// [`Invariants::apply`] on what the checks read of an event (either decode's).
    pub fn apply_ref(&mut self, env: &EnvelopeRef<'_>) {
        match (env.ty, &env.data) {
            (_, DataRef::NodeSigned(e))
                if self
                    .unsigned
                    .as_ref()
                    .is_some_and(|(n, _)| n == e.node_id.as_str()) =>
            {
                self.unsigned = None;
            }
            (
                _,
                DataRef::NodeRegistered {
                    node_id,
                    lock_error: false,
                    ..
                },
            ) if self.tailnets.get(env.tailnet).is_some_and(|t| t.lock_on) => {
                self.unsigned = Some(((*node_id).to_owned(), env.command_id.to_owned()));
            }
            _ => {}
        }
        if env.ty == EventType::TailnetCreated {
            self.tailnets.entry(env.tailnet.to_owned()).or_default();
            return;
        }
        let Some(t) = self.tailnets.get_mut(env.tailnet) else {
            return;
        };
        match (env.ty, env.data) {
            (_, DataRef::UserAdded { user_id, role })
            | (_, DataRef::UserRoleChanged { user_id, role, .. }) => {
                t.roles.insert(user_id.to_owned(), role);
            }
            (EventType::UserSuspended, DataRef::User { user_id }) => {
                t.suspended.insert(user_id.to_owned());
            }
            (EventType::UserRestored, DataRef::User { user_id }) => {
                t.suspended.remove(user_id);
            }
            (EventType::UserRemoved, DataRef::User { user_id }) => {
                t.roles.remove(user_id);
                t.suspended.remove(user_id);
            }
            (_, DataRef::ApiTokenIssued { token_id, user_id }) => {
                t.token_owners
                    .insert(token_id.to_owned(), user_id.to_owned());
            }
            (
                _,
                DataRef::KeyGenerated {
                    key_id,
                    reusable,
                    expires,
                },
            ) => {
                t.keys.insert(
                    key_id.to_owned(),
                    KeyState {
                        reusable,
                        uses: 0,
                        revoked: None,
                        expired: false,
                        expires,
                        used_by: None,
                    },
                );
            }
            (
                _,
                DataRef::KeyUsed {
                    key_id,
                    node_id,
                    uses,
                },
            ) => {
                if let Some(k) = t.keys.get_mut(key_id) {
                    k.uses = uses;
                    if !k.reusable {
                        k.used_by = Some(node_id.to_owned());
                    }
                }
            }
            (EventType::KeyRevoked, DataRef::Key { key_id }) => {
                if let Some(k) = t.keys.get_mut(key_id) {
                    k.revoked = Some(env.time);
                }
            }
            (EventType::KeyExpired, DataRef::Key { key_id }) => {
                if let Some(k) = t.keys.get_mut(key_id) {
                    k.expired = true;
                }
            }
            (
                _,
                DataRef::NodeRegistered {
                    node_id,
                    addresses: Some(a),
                    ..
                },
            ) => {
                for ip in ips(&a) {
                    t.address_holders.insert(ip, node_id.to_owned());
                    t.released.remove(&ip);
                }
                t.node_addresses.insert(node_id.to_owned(), a);
            }
            (_, DataRef::NodeDeleted { node_id }) => {
                if let Some(a) = t.node_addresses.remove(node_id) {
                    for ip in ips(&a) {
                        t.address_holders.remove(&ip);
                        t.released.insert(ip, env.time);
                    }
                }
            }
            (_, DataRef::TailnetLockEnabled(e)) => {
                t.lock_on = true;
                t.lock_trusted = e.trusted_keys.clone();
                t.lock_generation += 1;
            }
            (_, DataRef::TrustedLockKeysChanged(e)) => {
                t.lock_trusted = e.trusted_keys.clone();
                t.lock_generation += 1;
            }
            (EventType::TailnetLockDisabled, _) => {
                t.lock_on = false;
                t.lock_trusted.clear();
                t.lock_generation += 1;
            }
            _ => {}
        }
    }

    /// [`Invariants::check`] on what the checks read of an event (either decode's).
    pub fn check_ref(&self, env: &EnvelopeRef<'_>) -> Result<(), String> {
        if let Some((node, command)) = &self.unsigned
            && command != env.command_id
        {
            return Err(format!(
                "node {node} was registered under tailnet lock without a lock error and \
                 without a signature in its command (R04)"
            ));
        }
        let tailnet = self.tailnets.get(env.tailnet);
        match env.actor_type {
            ActorType::User => check_user(env, tailnet)?,
            ActorType::Registrar => check_registrar(env)?,
            ActorType::System | ActorType::Oauth => {}
        }
        let Some(t) = tailnet else {
            return match env.ty {
                EventType::TailnetCreated => Ok(()),
                _ => Err(format!(
                    "names tailnet {}, which was never created",
                    env.tailnet
                )),
            };
        };
        match (env.ty, env.data) {
            (_, DataRef::KeyUsed { key_id, uses, .. }) => {
                let key = usable_key(t, key_id, env.time)?;
                if !key.reusable && key.uses > 0 {
                    return Err(format!("one-off key {key_id} used a second time (R01)"));
                }
                if uses != key.uses + 1 {
                    return Err(format!(
                        "key {key_id} use count {uses} after {} uses",
                        key.uses
                    ));
                }
            }
            (
                _,
                DataRef::NodeRegistered {
                    node_id,
                    auth_key_id,
                    addresses,
                    ..
                },
            ) => {
                if let Some(a) = &addresses {
                    check_addresses(t, a, env.time)?;
                }
                let key = usable_key(t, auth_key_id, env.time)?;
                if !key.reusable && key.uses > 0 && key.used_by.as_deref() != Some(node_id) {
                    return Err(format!(
                        "one-off key {auth_key_id} registered a second node (R01)"
                    ));
                }
            }
            (_, DataRef::NodeReauthenticated { auth_key_id }) => {
                usable_key(t, auth_key_id, env.time)?;
            }
            (_, DataRef::NodeSigned(e)) => {
                let statement = match &e.key_id {
                    Some(k) => presign_statement(k),
                    None => node_statement(&tailnet_id(env.tailnet)?, &e.node_key),
                };
                if !t.lock_on || !t.lock_trusted.contains(&e.lock_key) {
                    return Err(format!(
                        "node {} signed by {}, a key the tailnet did not trust then (R04)",
                        e.node_id, e.lock_key
                    ));
                }
                if !e.lock_key.verifies(&statement, &e.signature) {
                    return Err(format!(
                        "node {}: its signature by {} does not verify (R04)",
                        e.node_id, e.lock_key
                    ));
                }
            }
            (EventType::TailnetLockEnabled, _) if t.lock_on => {
                return Err("tailnet lock turned on while it was on (R04)".into());
            }
            (_, DataRef::TrustedLockKeysChanged(e)) => {
                let statement = trusted_keys_statement(
                    &tailnet_id(env.tailnet)?,
                    e.generation,
                    &e.trusted_keys,
                );
                if !t.lock_on || !t.lock_trusted.contains(&e.signer) {
                    return Err(format!(
                        "trusted lock keys changed by {}, a key the tailnet did not trust then \
                         (R04)",
                        e.signer
                    ));
                }
                if e.generation != t.lock_generation || !e.signer.verifies(&statement, &e.signature)
                {
                    return Err(format!(
                        "trusted lock keys changed without a valid signature by {} for lock \
                         generation {} (R04)",
                        e.signer, t.lock_generation
                    ));
                }
            }
            (EventType::TailnetLockDisabled, _) if !t.lock_on => {
                return Err("tailnet lock turned off while it was off (R04)".into());
            }
            _ => {}
        }
        Ok(())
    }
}

/// The tailnet id of an envelope (valid: both decodes checked it), for the lock's statements.
fn tailnet_id(s: &str) -> Result<TailnetId, String> {
    TailnetId::parse(s).map_err(|e| format!("tailnet: {e}"))
}

/// A node's two addresses.
fn ips(a: &NodeAddresses) -> [IpAddr; 2] {
    [IpAddr::V4(a.ipv4), IpAddr::V6(a.ipv6)]
}

/// R17: a new node's addresses are in the tailnet's ranges, held by no live node, and not
/// released by a deleted one less than 90 days ago.
fn check_addresses(t: &TailnetState, a: &NodeAddresses, time: Timestamp) -> Result<(), String> {
    if !addresses::in_ipv4_range(a.ipv4) || !addresses::in_ipv6_range(a.ipv6) {
        return Err(format!(
            "addresses {} and {} are outside 100.64.0.0/10 and fd7a:115c:a1e0::/48 (R17)",
            a.ipv4, a.ipv6
        ));
    }
    for ip in ips(a) {
        if let Some(holder) = t.address_holders.get(&ip) {
            return Err(format!("address {ip} is already node {holder}'s (R17)"));
        }
        if let Some(at) = t.released.get(&ip)
            && time < at.plus_seconds(addresses::QUARANTINE_SECS)
        {
            return Err(format!(
                "address {ip} was released at {at}, less than 90 days before (R17)"
            ));
        }
    }
    Ok(())
}

fn check_user(env: &EnvelopeRef<'_>, tailnet: Option<&TailnetState>) -> Result<(), String> {
    let actor = env.actor_id;
    let t = tailnet.ok_or_else(|| {
        format!(
            "by user {actor} in tailnet {}, which was never created",
            env.tailnet
        )
    })?;
    let role = *t
        .roles
        .get(actor)
        .ok_or_else(|| format!("by {actor}, who is not a user of this tailnet"))?;
    if t.suspended.contains(actor) {
        return Err(format!("by {actor}, who is suspended (R21)"));
    }
    let denied = |what: &str| {
        Err(format!(
            "by {actor}, whose role {role:?} may not {what} (R07)"
        ))
    };
    use EventType as T;
    // The user an event acts on, for the events that act on one.
    let subject = match env.data {
        DataRef::User { user_id } => Some(user_id),
        _ => None,
    };
    match (env.ty, env.data) {
        (T::KeyGenerated | T::KeyRevoked, _) if !role.may_manage_keys() => {
            denied("manage auth keys")
        }
        (T::OAuthClientCreated | T::OAuthClientDeleted, _) if !role.may_manage_keys() => {
            denied("manage OAuth clients")
        }
        (
            T::WebhookCreated | T::WebhookUpdated | T::WebhookSecretRotated | T::WebhookDeleted,
            _,
        ) if !authkeys_domain::webhook::may_manage_webhooks(role) => {
            denied("manage webhooks (R23)")
        }
        (
            T::NodeAuthorized
            | T::NodeKeyExpirySet
            | T::NodeExpired
            | T::TagsChanged
            | T::NodeDeleted,
            _,
        ) if !role.may_manage_devices() => denied("manage devices"),
        (
            T::UserAdded | T::UserRoleChanged | T::UserRemoved | T::UserSuspended | T::UserRestored,
            _,
        ) if !role.may_manage_users() => denied("manage users"),
        (T::UserRemoved | T::UserSuspended, _) if subject == Some(actor) => {
            denied("remove or suspend themselves")
        }
        (T::UserRemoved | T::UserSuspended, _)
            if subject.and_then(|u| t.roles.get(u)) == Some(&Role::Owner) =>
        {
            denied("remove or suspend an Owner")
        }
        (T::TailnetLockEnabled | T::TrustedLockKeysChanged | T::TailnetLockDisabled, _)
            if !matches!(role, Role::Owner | Role::Admin) =>
        {
            denied("turn tailnet lock on or off or change its keys")
        }
        (T::NodeSigned, _) if !role.may_manage_devices() => denied("sign nodes"),
        (T::TailnetSettingsChanged, _) if !role.may_manage_settings() => {
            denied("change tailnet settings")
        }
        (_, DataRef::UserAdded { role: added, .. })
            if added == Role::Owner && role != Role::Owner =>
        {
            denied("add an Owner")
        }
        (
            _,
            DataRef::UserRoleChanged {
                previous_role,
                role: new,
                ..
            },
        ) if (new == Role::Owner || previous_role == Role::Owner) && role != Role::Owner => {
            denied("make or unmake an Owner")
        }
        (
            _,
            DataRef::UserRoleChanged {
                previous_role,
                role: new,
                ..
            },
        ) if role == Role::ItAdmin && (new == Role::Admin || previous_role == Role::Admin) => {
            denied("make or unmake an Admin")
        }
        (T::UserRemoved | T::UserSuspended | T::UserRestored, _)
            if role == Role::ItAdmin
                && subject.and_then(|u| t.roles.get(u)) == Some(&Role::Admin) =>
        {
            denied("act on an Admin")
        }
        (_, DataRef::ApiTokenRevoked { token_id })
            if !role.may_manage_users()
                && t.token_owners
                    .get(token_id)
                    .is_some_and(|owner| owner != actor) =>
        {
            denied("revoke another user's API token")
        }
        _ => Ok(()),
    }
}

fn check_registrar(env: &EnvelopeRef<'_>) -> Result<(), String> {
    use EventType as T;
    match (env.ty, env.data) {
        (
            T::NodeRegistered
            | T::NodeReauthenticated
            | T::KeyUsed
            | T::NodeAuthorized
            | T::NodeConnected
            | T::NodeDisconnected,
            _,
        ) => Ok(()),
        // R04: a registration with a pre-signed key signs its node.
        (_, DataRef::NodeSigned(e)) if e.key_id.is_some() => Ok(()),
        _ => Err("by a registrar, which may only register nodes and report them".into()),
    }
}

/// The key, if it exists and could register a node at `time` (revocation and expiry; the
/// one-off rule is the caller's).
fn usable_key<'t>(
    t: &'t TailnetState,
    key_id: &str,
    time: Timestamp,
) -> Result<&'t KeyState, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// An envelope of `ty` by user `actor` (or the bootstrap, if `None`) from its JSON.
    fn env(seq: u64, actor: Option<&str>, ty: &str, data: Value) -> Envelope {
        let actor = match actor {
            Some(id) => json!({"type": "user", "id": id}),
            None => json!({"type": "system", "id": "bootstrap"}),
        };
        let text = json!({
            "seq": seq, "id": format!("e{seq:032x}"), "type": ty, "version": 1,
            "tailnet": "T1", "stream": "tailnet/T1", "streamVersion": 1,
            "time": "2026-11-27T10:00:00.000Z", "actor": actor, "commandId": "c1",
            "data": data, "prevHash": "00".repeat(32), "hash": format!("{seq:064x}"),
        });
        Envelope::from_json(&serde_json::to_vec(&text).expect("json")).expect("an envelope")
    }

    fn added(seq: u64, user: &str, role: &str) -> Envelope {
        let login = format!("{user}@example.com");
        env(
            seq,
            None,
            "UserAdded",
            json!({"userId": user, "loginName": login, "role": role}),
        )
    }

    fn user_op(seq: u64, actor: &str, ty: &str, user: &str) -> Envelope {
        env(seq, Some(actor), ty, json!({"userId": user}))
    }

    #[test]
    fn r18_r21_removing_suspending_and_restoring_users() {
        // Only user managers remove, suspend or restore; never themselves, never an Owner; a
        // suspended or removed user acts no more.
        let mut inv = Invariants::default();
        let created = env(
            1,
            None,
            "TailnetCreated",
            json!({"name": "example.com", "settings": {"devicesApprovalOn": false,
                "devicesKeyDurationDays": 180, "tailnetLockOn": false}}),
        );
        inv.apply(&created);
        for e in [
            added(2, "uOwner", "owner"),
            added(3, "uAdmin", "admin"),
            added(4, "uMember", "member"),
            added(5, "uBob", "it-admin"),
        ] {
            inv.apply(&e);
        }
        let refused = |inv: &Invariants, e: &Envelope, why: &str| {
            let err = inv.check(e).expect_err(why);
            assert!(err.contains(why), "{err}");
        };
        refused(
            &inv,
            &user_op(6, "uMember", "UserSuspended", "uBob"),
            "manage users",
        );
        refused(
            &inv,
            &user_op(6, "uAdmin", "UserRemoved", "uAdmin"),
            "themselves",
        );
        refused(
            &inv,
            &user_op(6, "uAdmin", "UserSuspended", "uOwner"),
            "an Owner",
        );
        let suspend = user_op(6, "uAdmin", "UserSuspended", "uBob");
        inv.check(&suspend).expect("an Admin suspends an IT admin");
        inv.apply(&suspend);
        let by_bob = user_op(7, "uBob", "UserSuspended", "uMember");
        refused(&inv, &by_bob, "suspended");
        let restore = user_op(7, "uAdmin", "UserRestored", "uBob");
        inv.check(&restore).expect("restored");
        inv.apply(&restore);
        inv.check(&by_bob).expect("acts again once restored");
        let remove = user_op(8, "uOwner", "UserRemoved", "uBob");
        inv.check(&remove).expect("the Owner removes");
        inv.apply(&remove);
        refused(
            &inv,
            &user_op(9, "uBob", "UserSuspended", "uMember"),
            "not a user",
        );
    }

    /// `NodeRegistered` of `node` with addresses `v4`/`v6` (by registrar `r`) at day `day`.
    fn registered(seq: u64, node: &str, v4: &str, v6: &str, day: i64) -> Envelope {
        let mut e = env(
            seq,
            None,
            "NodeRegistered",
            json!({"nodeId": node, "nodeKey": format!("nodekey:{}", format!("{seq:02x}").repeat(32)),
                "hostname": node, "name": node, "os": "", "userId": "uA", "tags": [],
                "authKeyId": "kA", "ephemeral": false, "authorized": true,
                "keyExpiryDisabled": true, "expires": null, "tailnetLockError": null,
                "addresses": {"ipv4": v4, "ipv6": v6}}),
        );
        e.time = e.time.plus_seconds(day * 86_400);
        e
    }

    #[test]
    fn r17_addresses_in_range_unique_and_quarantined_90_days() {
        let mut inv = Invariants::default();
        let expires = "2027-11-27T10:00:00.000Z";
        for e in [
            env(
                1,
                None,
                "TailnetCreated",
                json!({"name": "example.com",
                "settings": {"devicesApprovalOn": false, "devicesKeyDurationDays": 180, "tailnetLockOn": false}}),
            ),
            added(2, "uA", "owner"),
            env(
                3,
                Some("uA"),
                "KeyGenerated",
                json!({"keyId": "kA", "userId": "uA",
                "description": "", "reusable": true, "ephemeral": false, "preauthorized": true,
                "tags": [], "expirySeconds": 7_776_000, "expires": expires, "secretHash": "00".repeat(32)}),
            ),
        ] {
            inv.check(&e).expect("valid");
            inv.apply(&e);
        }
        let first = registered(4, "n1", "100.64.0.1", "fd7a:115c:a1e0::6440:1", 0);
        inv.check(&first).expect("free addresses");
        inv.apply(&first);
        let taken = registered(5, "n2", "100.64.0.1", "fd7a:115c:a1e0::6440:9", 0);
        assert!(inv.check(&taken).expect_err("held").contains("R17"));
        let v6_taken = registered(5, "n2", "100.64.0.9", "fd7a:115c:a1e0::6440:1", 0);
        assert!(
            inv.check(&v6_taken).is_err(),
            "the IPv6 address is held too"
        );
        let outside = registered(5, "n2", "10.0.0.1", "fd7a:115c:a1e0::a00:1", 0);
        assert!(inv.check(&outside).expect_err("range").contains("outside"));
        let deleted = env(
            6,
            Some("uA"),
            "NodeDeleted",
            json!({"nodeId": "n1", "reason": "admin"}),
        );
        inv.check(&deleted).expect("an Owner deletes");
        inv.apply(&deleted);
        let soon = registered(7, "n3", "100.64.0.1", "fd7a:115c:a1e0::6440:1", 89);
        assert!(
            inv.check(&soon)
                .expect_err("quarantined")
                .contains("90 days")
        );
        let later = registered(7, "n3", "100.64.0.1", "fd7a:115c:a1e0::6440:1", 91);
        inv.check(&later)
            .expect("released more than 90 days before");
    }

    #[test]
    fn r04_every_signature_verifies_against_the_keys_trusted_at_its_seq() {
        // A NodeSigned by an untrusted key, or whose signature covers something else, and a
        // change of the trusted keys signed by an untrusted key or for another generation, are
        // each refused naming R04; the genuine ones pass. A node registered under the lock
        // without an error must be signed within its command.
        use authkeys_events::lock::{LockPrivateKey, node_statement, trusted_keys_statement};
        let (k1, k2) = (
            LockPrivateKey::from_seed([1; 32]),
            LockPrivateKey::from_seed([2; 32]),
        );
        let t1 = TailnetId::parse("T1").expect("valid");
        let nk = format!("nodekey:{}", "ab".repeat(32));
        let node_key = authkeys_events::NodeKey::parse(nk.as_str()).expect("valid");
        let mut inv = Invariants::default();
        for e in [
            env(
                1,
                None,
                "TailnetCreated",
                json!({"name": "example.com", "settings": {"devicesApprovalOn": false,
                    "devicesKeyDurationDays": 180, "tailnetLockOn": false}}),
            ),
            added(2, "uOwner", "owner"),
            env(
                3,
                Some("uOwner"),
                "TailnetLockEnabled",
                json!({"trustedKeys": [k1.public()], "disablementHash": "00".repeat(32)}),
            ),
        ] {
            inv.check(&e).expect("genuine");
            inv.apply(&e);
        }
        let signed = |seq: u64, key: &LockPrivateKey, statement: &[u8]| {
            env(
                seq,
                Some("uOwner"),
                "NodeSigned",
                json!({"nodeId": "n1", "nodeKey": nk, "lockKey": key.public(),
                    "signature": key.sign(statement)}),
            )
        };
        let refused = |inv: &Invariants, e: &Envelope, why: &str| {
            let err = inv.check(e).expect_err(why);
            assert!(err.contains(why) && err.contains("R04"), "{err}");
        };
        let good = node_statement(&t1, &node_key);
        let other = node_statement(&TailnetId::parse("T2").expect("valid"), &node_key);
        refused(&inv, &signed(4, &k2, &good), "did not trust");
        refused(&inv, &signed(4, &k1, &other), "does not verify");
        inv.check(&signed(4, &k1, &good)).expect("genuine");

        let change = |seq: u64, signer: &LockPrivateKey, generation: u64| {
            let keys = [k2.public()];
            env(
                seq,
                Some("uOwner"),
                "TrustedLockKeysChanged",
                json!({"trustedKeys": keys, "generation": generation, "signer": signer.public(),
                    "signature": signer.sign(&trusted_keys_statement(&t1, generation, &keys))}),
            )
        };
        refused(&inv, &change(4, &k2, 1), "did not trust");
        refused(&inv, &change(4, &k1, 0), "without a valid signature");
        let genuine = change(4, &k1, 1);
        inv.check(&genuine).expect("genuine");
        inv.apply(&genuine);
        // Key 1 is trusted no more.
        refused(&inv, &signed(5, &k1, &good), "did not trust");

        // A node registered unlocked under the lock, then another command: refused there.
        let registered = env(
            5,
            None,
            "NodeRegistered",
            json!({"nodeId": "n2", "nodeKey": nk, "hostname": "h", "name": "h", "os": "",
                "userId": "uOwner", "tags": [], "authKeyId": "kA", "ephemeral": false,
                "authorized": true, "keyExpiryDisabled": false, "expires": null,
                "tailnetLockError": null}),
        );
        inv.apply(&registered);
        let mut next = added(6, "uOther", "member");
        next.command_id = authkeys_events::CommandId::parse("c2").expect("valid");
        refused(&inv, &next, "without a signature");
    }
}

//! The command side's state: what `decide` needs to know, folded from events by `apply`.
//!
//! `apply` is infallible and holds no rules: it records what an event says. An event that names
//! something unknown (which a verified log never contains) is ignored rather than panicking.

use std::collections::HashMap;

use authkeys_events::{
    Description, Envelope, Event, ExpirySeconds, Hash, Hostname, KeptSettings, KeyDurationDays,
    KeyExpired, KeyGenerated, KeyId, KeyRevoked, KeyUsed, LockKey, LoginName, NodeAddresses,
    NodeId, NodeKey, NodeRegistered, Role, Scope, Tags, TailnetId, TailnetName, TailnetSettings,
    Timestamp, TokenId, UserId, UserRestored, UserSuspended,
};
use serde::{Deserialize, Serialize};

use crate::addresses::AddressPool;

/// Everything the rules need, for every tailnet.
///
/// Serde is for the log's snapshot of it (its `Aggregate::SNAPSHOT_FORMAT`, ADR 008), not a wire
/// format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Tailnets by id.
    pub tailnets: HashMap<TailnetId, Tailnet>,
    /// Which tailnet a tailnet name belongs to (names are unique).
    pub tailnet_names: HashMap<TailnetName, TailnetId>,
    /// Which tailnet a key id belongs to: a registration names only its key.
    pub key_index: HashMap<KeyId, TailnetId>,
    /// Which tailnet a token id belongs to.
    pub token_index: HashMap<TokenId, TailnetId>,
    /// Which live node a node key belongs to (R16).
    pub node_keys: HashMap<NodeKey, (TailnetId, NodeId)>,
    /// R23: the webhook endpoints of every tailnet.
    pub webhooks: crate::webhook::Webhooks,
}

/// One tailnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tailnet {
    /// Display name.
    pub name: TailnetName,
    /// Current settings.
    pub settings: TailnetSettings,
    /// Users by id.
    pub users: HashMap<UserId, User>,
    /// User ids by login name.
    pub logins: HashMap<LoginName, UserId>,
    /// The login names of removed users, whose nodes stay (R11) and still show who they were.
    pub removed_logins: HashMap<UserId, LoginName>,
    /// API tokens.
    pub tokens: HashMap<TokenId, Token>,
    /// Auth keys, including revoked, used and expired ones.
    pub keys: HashMap<KeyId, Key>,
    /// Live nodes (deleted ones are removed).
    pub nodes: HashMap<NodeId, Node>,
    /// Machine names in use, for uniqueness.
    pub names: HashMap<String, NodeId>,
    /// Per machine-name base, how many nodes registered with it: where the search for a free
    /// `-N` suffix starts.
    pub name_next: HashMap<String, u64>,
    /// R17: the addresses of its nodes, in use and in quarantine.
    pub addresses: AddressPool,
    /// OAuth clients (R19), deleted ones included, by client id.
    pub clients: HashMap<KeyId, Client>,
    /// Client ids by principal: who a command's actor is when it is a client.
    pub principals: HashMap<UserId, KeyId>,
    /// R04: tailnet lock (on when `settings.tailnet_lock_on`).
    pub lock: TailnetLock,
}

/// A tailnet's lock (R04).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailnetLock {
    /// The keys trusted now (empty while the lock is off).
    pub trusted: Vec<LockKey>,
    /// How many lock events the tailnet has seen: what a change of the trusted keys is signed
    /// for, so an old signed change cannot be replayed.
    pub generation: u64,
    /// The hash of the disablement secret, while the lock is on.
    pub disablement_hash: Option<Hash>,
}

impl TailnetLock {
    /// Whether `key` is trusted now.
    pub fn trusts(&self, key: &LockKey) -> bool {
        self.trusted.contains(key)
    }
}

/// An OAuth client (R19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The user id its keys and nodes are recorded under.
    pub principal: UserId,
    /// Keyed hash of its secret (`None`: a federated identity, R20).
    pub secret_hash: Option<Hash>,
    /// What its access tokens may do.
    pub scopes: Vec<Scope>,
    /// The tags its keys must carry.
    pub tags: Tags,
    /// Deleted: its access tokens work no more, and it mints none.
    pub deleted: bool,
}

impl Client {
    /// Whether one of its scopes allows `needed`.
    pub fn grants(&self, needed: Scope) -> bool {
        Scope::any_grants(&self.scopes, needed)
    }
}

/// A user and their role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub login_name: LoginName,
    /// Role (R07).
    pub role: Role,
    /// Suspended (R21): their commands are refused until they are restored.
    pub suspended: bool,
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Whom it acts as.
    pub user_id: UserId,
    /// Keyed hash of its secret.
    pub secret_hash: Hash,
    /// When it stops working.
    pub expires: Timestamp,
    /// Revoked.
    pub revoked: bool,
}

/// An auth key. The keys page view keeps the same rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Key {
    // What it does.
    /// R01.
    pub reusable: bool,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub preauthorized: bool,
    /// R05.
    pub tags: Tags,
    // Whose it is.
    /// Who generated it (R06, R09).
    pub user_id: UserId,
    /// Description.
    pub description: Description,
    /// Keyed hash of its secret (R10).
    pub secret_hash: Hash,
    // Its life.
    /// Generation time.
    pub created: Timestamp,
    /// Requested lifetime.
    pub expiry_seconds: ExpirySeconds,
    /// R08.
    pub expires: Timestamp,
    /// Registrations made with it.
    pub uses: u64,
    /// Last registration.
    pub last_used: Option<Timestamp>,
    /// When revoked (R11, R12).
    pub revoked: Option<Timestamp>,
    /// A `KeyExpired` was recorded.
    pub expired: bool,
}

impl Key {
    /// Can it register a node at `now`? Expiry is checked by time, never by waiting for a timer
    /// (R08); a one-off key is spent by its first use (R01).
    pub fn usable(&self, now: Timestamp) -> bool {
        self.revoked.is_none()
            && !self.expired
            && now < self.expires
            && (self.reusable || self.uses == 0)
    }
}

/// A live node. The machines view keeps the same rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    // What it is.
    /// Its key (R16).
    pub node_key: NodeKey,
    /// Unique machine name.
    pub name: String,
    /// Host name as reported.
    pub hostname: Hostname,
    /// OS as reported.
    pub os: String,
    /// R02.
    pub ephemeral: bool,
    // Whose it is.
    /// Owner (R06).
    pub user_id: UserId,
    /// R05.
    pub tags: Tags,
    /// The key of the last (re-)authentication.
    pub auth_key_id: KeyId,
    // How it stands.
    /// First registration.
    pub created: Timestamp,
    /// R03.
    pub authorized: bool,
    /// R04: why it is locked out, while it is.
    pub tailnet_lock_error: Option<String>,
    /// R04: the lock key that signed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<LockKey>,
    /// R17 (`None` only for nodes registered before addresses existed).
    pub addresses: Option<NodeAddresses>,
    /// Connected to the control plane, per its registrar.
    pub connected: bool,
    /// Last connect or disconnect report.
    pub last_seen: Option<Timestamp>,
    // Its key's expiry (R14).
    /// Expiry disabled.
    pub key_expiry_disabled: bool,
    /// Node-key expiry in force (`None` when disabled).
    pub expires: Option<Timestamp>,
    /// Its key was expired (by time or by an admin) and it has not re-authenticated since.
    pub expired: bool,
    /// When the node last (re-)authenticated: the base of its key expiry (R14).
    pub authenticated_at: Timestamp,
    /// The expiry its last (re-)authentication set, which re-enabling expiry restores (R14);
    /// `None` when it (re-)authenticated with expiry disabled.
    pub authenticated_expires: Option<Timestamp>,
}

impl Key {
    /// A key as its generation records it.
    pub fn generated(e: &KeyGenerated, now: Timestamp) -> Self {
        Self {
            reusable: e.reusable,
            ephemeral: e.ephemeral,
            preauthorized: e.preauthorized,
            tags: e.tags.clone(),
            user_id: e.user_id.clone(),
            description: e.description.clone(),
            secret_hash: e.secret_hash,
            created: now,
            expiry_seconds: e.expiry_seconds,
            expires: e.expires,
            uses: 0,
            last_used: None,
            revoked: None,
            expired: false,
        }
    }

    /// Folds in an event about this key (committed at `now`); any other event changes nothing.
    /// The keys page view folds its rows with the same function, so the two agree.
    pub fn apply(&mut self, event: &Event, now: Timestamp) {
        match event {
            Event::KeyUsed(e) => {
                self.uses = e.uses;
                self.last_used = Some(now);
            }
            Event::KeyRevoked(_) => self.revoked = Some(now),
            Event::KeyExpired(_) => self.expired = true,
            _ => {}
        }
    }

    /// When it stopped working, if it has by `now`: revoked, spent (one-off, R01) or expired
    /// (R12).
    pub fn invalid_since(&self, now: Timestamp) -> Option<Timestamp> {
        let spent = !self.reusable && self.uses > 0;
        let expired = self.expired || now >= self.expires;
        self.revoked
            .or(if spent { self.last_used } else { None })
            .or(if expired { Some(self.expires) } else { None })
    }
}

impl Node {
    /// A node as its registration records it.
    pub fn registered(e: &NodeRegistered, now: Timestamp) -> Self {
        Self {
            node_key: e.node_key.clone(),
            name: e.name.clone(),
            hostname: e.hostname.clone(),
            os: e.os.clone(),
            ephemeral: e.ephemeral,
            user_id: e.user_id.clone(),
            tags: e.tags.clone(),
            auth_key_id: e.auth_key_id.clone(),
            created: now,
            authorized: e.authorized,
            tailnet_lock_error: e.tailnet_lock_error.clone(),
            signed_by: None,
            addresses: e.addresses,
            connected: false,
            last_seen: None,
            key_expiry_disabled: e.key_expiry_disabled,
            expires: e.expires,
            expired: false,
            authenticated_at: now,
            authenticated_expires: e.expires,
        }
    }

    /// Folds in an event about this node (committed at `now`); any other event, and its
    /// registration and deletion (which the holder of the node handles), change nothing. The
    /// machines view folds its rows with the same function, so the two agree.
    pub fn apply(&mut self, event: &Event, now: Timestamp) {
        match event {
            Event::NodeReauthenticated(e) => {
                self.auth_key_id = e.auth_key_id.clone();
                self.hostname = e.hostname.clone();
                self.user_id = e.user_id.clone();
                self.tags = e.tags.clone();
                self.key_expiry_disabled = e.key_expiry_disabled;
                self.expires = e.expires;
                self.authenticated_at = now;
                self.authenticated_expires = e.expires;
                self.expired = false;
            }
            Event::NodeAuthorized(e) => self.authorized = e.authorized,
            Event::NodeKeyExpirySet(e) => {
                self.key_expiry_disabled = e.key_expiry_disabled;
                self.expires = e.expires;
                self.expired = e.expires.is_some_and(|t| t <= now);
            }
            Event::NodeExpired(e) => {
                self.expires = Some(e.expired_at);
                self.expired = true;
            }
            Event::TagsChanged(e) => self.tags = e.tags.clone(),
            Event::NodeConnected(_) => {
                self.connected = true;
                self.last_seen = Some(now);
            }
            Event::NodeDisconnected(_) => {
                self.connected = false;
                self.last_seen = Some(now);
            }
            Event::NodeSigned(e) => {
                self.tailnet_lock_error = None;
                self.signed_by = Some(e.lock_key);
            }
            _ => {}
        }
    }
}

impl Node {
    /// Tailnet lock was turned off: a locked-out node is locked out no more (R04).
    pub fn release_lock(&mut self) {
        self.tailnet_lock_error = None;
    }
}

/// The node an event changes in place (not its registration or deletion), if any.
pub fn node_of(event: &Event) -> Option<&NodeId> {
    match event {
        Event::NodeReauthenticated(e) => Some(&e.node_id),
        Event::NodeAuthorized(e) => Some(&e.node_id),
        Event::NodeKeyExpirySet(e) => Some(&e.node_id),
        Event::NodeExpired(e) => Some(&e.node_id),
        Event::TagsChanged(e) => Some(&e.node_id),
        Event::NodeConnected(e) => Some(&e.node_id),
        Event::NodeDisconnected(e) => Some(&e.node_id),
        Event::NodeSigned(e) => Some(&e.node_id),
        _ => None,
    }
}

impl State {
    /// The tailnet, if it exists.
    pub fn tailnet(&self, id: &TailnetId) -> Option<&Tailnet> {
        self.tailnets.get(id)
    }

    fn tailnet_mut(&mut self, id: &TailnetId) -> Option<&mut Tailnet> {
        self.tailnets.get_mut(id)
    }

    /// Folds one committed event in.
    pub fn apply(&mut self, env: &Envelope) {
        let tid = &env.tailnet;
        let now = env.time;
        match &env.event {
            Event::TailnetCreated(e) => {
                self.tailnet_names.insert(e.name.clone(), tid.clone());
                self.tailnets.insert(
                    tid.clone(),
                    Tailnet {
                        name: e.name.clone(),
                        settings: e.settings.clone(),
                        users: HashMap::new(),
                        logins: HashMap::new(),
                        removed_logins: HashMap::new(),
                        clients: HashMap::new(),
                        principals: HashMap::new(),
                        tokens: HashMap::new(),
                        keys: HashMap::new(),
                        nodes: HashMap::new(),
                        names: HashMap::new(),
                        name_next: HashMap::new(),
                        addresses: AddressPool::default(),
                        lock: TailnetLock::default(),
                    },
                );
            }
            Event::TailnetSettingsChanged(e) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    t.settings.apply(e);
                }
            }
            Event::TailnetLockEnabled(e) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    t.settings.tailnet_lock_on = true;
                    t.lock.trusted = e.trusted_keys.clone();
                    t.lock.disablement_hash = Some(e.disablement_hash);
                    t.lock.generation += 1;
                }
            }
            Event::TrustedLockKeysChanged(e) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    t.lock.trusted = e.trusted_keys.clone();
                    t.lock.generation += 1;
                }
            }
            Event::TailnetLockDisabled(_) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    t.settings.tailnet_lock_on = false;
                    t.lock.trusted.clear();
                    t.lock.disablement_hash = None;
                    t.lock.generation += 1;
                    for n in t.nodes.values_mut() {
                        n.release_lock();
                    }
                }
            }
            Event::UserAdded(e) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    t.logins.insert(e.login_name.clone(), e.user_id.clone());
                    t.users.insert(
                        e.user_id.clone(),
                        User {
                            login_name: e.login_name.clone(),
                            role: e.role,
                            suspended: false,
                        },
                    );
                }
            }
            Event::UserRoleChanged(e) => {
                if let Some(u) = self
                    .tailnet_mut(tid)
                    .and_then(|t| t.users.get_mut(&e.user_id))
                {
                    u.role = e.role;
                }
            }
            Event::UserSuspended(UserSuspended { user_id })
            | Event::UserRestored(UserRestored { user_id }) => {
                let suspended = matches!(env.event, Event::UserSuspended(_));
                if let Some(u) = self.tailnet_mut(tid).and_then(|t| t.users.get_mut(user_id)) {
                    u.suspended = suspended;
                }
            }
            Event::UserRemoved(e) => {
                if let Some(t) = self.tailnet_mut(tid)
                    && let Some(u) = t.users.remove(&e.user_id)
                {
                    if t.logins.get(&u.login_name) == Some(&e.user_id) {
                        t.logins.remove(&u.login_name);
                    }
                    t.removed_logins.insert(e.user_id.clone(), u.login_name);
                }
            }
            Event::ApiTokenIssued(e) => {
                self.token_index.insert(e.token_id.clone(), tid.clone());
                if let Some(t) = self.tailnet_mut(tid) {
                    t.tokens.insert(
                        e.token_id.clone(),
                        Token {
                            user_id: e.user_id.clone(),
                            secret_hash: e.secret_hash,
                            expires: e.expires,
                            revoked: false,
                        },
                    );
                }
            }
            Event::OAuthClientCreated(e) => {
                self.key_index.insert(e.client_id.clone(), tid.clone());
                if let Some(t) = self.tailnet_mut(tid) {
                    t.principals
                        .insert(e.principal.clone(), e.client_id.clone());
                    t.clients.insert(
                        e.client_id.clone(),
                        Client {
                            principal: e.principal.clone(),
                            secret_hash: e.secret_hash,
                            scopes: e.scopes.clone(),
                            tags: e.tags.clone(),
                            deleted: false,
                        },
                    );
                }
            }
            Event::OAuthClientDeleted(e) => {
                if let Some(t) = self.tailnet_mut(tid)
                    && let Some(c) = t.clients.get_mut(&e.client_id)
                {
                    c.deleted = true;
                    let principal = c.principal.clone();
                    // Its access tokens stop at once (R19).
                    for tok in t.tokens.values_mut().filter(|tok| tok.user_id == principal) {
                        tok.revoked = true;
                    }
                }
            }
            Event::AccessTokenIssued(e) => {
                self.token_index.insert(e.token_id.clone(), tid.clone());
                if let Some(t) = self.tailnet_mut(tid)
                    && let Some(c) = t.clients.get(&e.client_id)
                {
                    let principal = c.principal.clone();
                    t.tokens.insert(
                        e.token_id.clone(),
                        Token {
                            user_id: principal,
                            secret_hash: e.secret_hash,
                            expires: e.expires,
                            revoked: false,
                        },
                    );
                }
            }
            Event::ApiTokenRevoked(e) => {
                if let Some(tok) = self
                    .tailnet_mut(tid)
                    .and_then(|t| t.tokens.get_mut(&e.token_id))
                {
                    tok.revoked = true;
                }
            }
            Event::KeyGenerated(e) => {
                self.key_index.insert(e.key_id.clone(), tid.clone());
                if let Some(t) = self.tailnet_mut(tid) {
                    t.keys.insert(e.key_id.clone(), Key::generated(e, now));
                }
            }
            Event::KeyUsed(KeyUsed { key_id, .. })
            | Event::KeyRevoked(KeyRevoked { key_id })
            | Event::KeyExpired(KeyExpired { key_id, .. }) => {
                if let Some(k) = self.key_mut(tid, key_id) {
                    k.apply(&env.event, now);
                }
            }
            Event::NodeRegistered(e) => {
                self.node_keys
                    .insert(e.node_key.clone(), (tid.clone(), e.node_id.clone()));
                if let Some(t) = self.tailnet_mut(tid) {
                    t.names.insert(e.name.clone(), e.node_id.clone());
                    *t.name_next
                        .entry(machine_base(e.hostname.as_str()))
                        .or_default() += 1;
                    if let Some(a) = e.addresses {
                        t.addresses.take(a);
                    }
                    t.nodes.insert(e.node_id.clone(), Node::registered(e, now));
                }
            }
            Event::NodeDeleted(e) => {
                if let Some(t) = self.tailnets.get_mut(tid)
                    && let Some(n) = t.nodes.remove(&e.node_id)
                {
                    t.names.remove(&n.name);
                    // R17: quarantined from the deletion's time.
                    if let Some(a) = n.addresses {
                        t.addresses.release(a, now);
                    }
                    self.node_keys.remove(&n.node_key);
                }
            }
            Event::WebhookCreated(_)
            | Event::WebhookUpdated(_)
            | Event::WebhookSecretRotated(_)
            | Event::WebhookDeleted(_) => self.webhooks.apply(env),
            event => {
                if let Some(node_id) = node_of(event)
                    && let Some(n) = self.node_mut(tid, node_id)
                {
                    n.apply(event, now);
                }
            }
        }
    }

    fn key_mut(&mut self, tid: &TailnetId, key: &KeyId) -> Option<&mut Key> {
        self.tailnets.get_mut(tid)?.keys.get_mut(key)
    }

    fn node_mut(&mut self, tid: &TailnetId, node: &NodeId) -> Option<&mut Node> {
        self.tailnets.get_mut(tid)?.nodes.get_mut(node)
    }
}

impl authkeys_events::Aggregate for State {
    type Rejection = crate::Rejection;

    fn apply(&mut self, env: &Envelope) {
        State::apply(self, env);
    }

    /// Change it with any change to the state's fields or to what `apply` folds (ADR 008): a
    /// snapshot of another format is ignored and the log folds every event again. The crate's
    /// version is part of it, so that at least every release folds afresh once.
    const SNAPSHOT_FORMAT: Option<&'static str> = Some(concat!(
        "authkeys-domain/state/json/1/",
        env!("CARGO_PKG_VERSION")
    ));

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the state serializes: every map key is a string")
    }

    /// A copy now (tens of ms for 100k nodes), the JSON later on the snapshot's own thread
    /// (about ten times as long): the writer waits only for the copy.
    fn snapshot_later(&self) -> authkeys_events::decision::SnapshotLater {
        let copy = self.clone();
        Box::new(move || copy.snapshot())
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("the state does not decode: {e}"))
    }
}

/// The machine-name base of a host name: lowercase letters, digits and `-`, at most 63
/// characters, `node` if nothing is left.
pub fn machine_base(hostname: &str) -> String {
    let base: String = hostname
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    if base.is_empty() { "node".into() } else { base }
}

/// The default settings of a new tailnet.
pub fn default_settings() -> TailnetSettings {
    TailnetSettings {
        devices_approval_on: false,
        devices_key_duration_days: KeyDurationDays::DEFAULT,
        tailnet_lock_on: false,
        kept: KeptSettings::default(),
    }
}

//! The command side's state: what `decide` needs to know, folded from events by `apply`.
//!
//! `apply` is infallible and holds no rules: it records what an event says. An event that names
//! something unknown (which a verified log never contains) is ignored rather than panicking.

use std::collections::HashMap;

use authkeys_events::{
    Description, Envelope, Event, ExpirySeconds, Hash, Hostname, KeyDurationDays, KeyId, LoginName,
    NodeId, NodeKey, Role, Tags, TailnetId, TailnetName, TailnetSettings, Timestamp, TokenId,
    UserId,
};

/// Everything the rules need, for every tailnet.
#[derive(Debug, Clone, Default)]
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
}

/// One tailnet.
#[derive(Debug, Clone)]
pub struct Tailnet {
    /// Display name.
    pub name: TailnetName,
    /// Current settings.
    pub settings: TailnetSettings,
    /// Users by id.
    pub users: HashMap<UserId, User>,
    /// User ids by login name.
    pub logins: HashMap<LoginName, UserId>,
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
}

/// A user and their role.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub login_name: LoginName,
    /// Role (R07).
    pub role: Role,
}

/// An API token.
#[derive(Debug, Clone)]
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

/// An auth key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Who generated it (R06, R09).
    pub user_id: UserId,
    /// Description.
    pub description: Description,
    /// R01.
    pub reusable: bool,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub preauthorized: bool,
    /// R05.
    pub tags: Tags,
    /// Requested lifetime.
    pub expiry_seconds: ExpirySeconds,
    /// Generation time.
    pub created: Timestamp,
    /// R08.
    pub expires: Timestamp,
    /// Keyed hash of its secret (R10).
    pub secret_hash: Hash,
    /// When revoked (R11, R12).
    pub revoked: Option<Timestamp>,
    /// A `KeyExpired` was recorded.
    pub expired: bool,
    /// Registrations made with it.
    pub uses: u64,
    /// Last registration.
    pub last_used: Option<Timestamp>,
    /// The lock key that pre-signed it (R04).
    pub signed_by: Option<String>,
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

/// A live node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its key (R16).
    pub node_key: NodeKey,
    /// Host name as reported.
    pub hostname: Hostname,
    /// Unique machine name.
    pub name: String,
    /// OS as reported.
    pub os: String,
    /// Owner (R06).
    pub user_id: UserId,
    /// R05.
    pub tags: Tags,
    /// The key of the last (re-)authentication.
    pub auth_key_id: KeyId,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub authorized: bool,
    /// R14.
    pub key_expiry_disabled: bool,
    /// Node-key expiry in force (`None` when disabled).
    pub expires: Option<Timestamp>,
    /// When the node last (re-)authenticated: the base of its key expiry (R14).
    pub authenticated_at: Timestamp,
    /// The expiry its last (re-)authentication set, which re-enabling expiry restores (R14);
    /// `None` when it (re-)authenticated with expiry disabled.
    pub authenticated_expires: Option<Timestamp>,
    /// First registration.
    pub created: Timestamp,
    /// Connected to the control plane, per its registrar.
    pub connected: bool,
    /// Last connect or disconnect report.
    pub last_seen: Option<Timestamp>,
    /// R04.
    pub tailnet_lock_error: Option<String>,
    /// Its key was expired (by time or by an admin) and it has not re-authenticated since.
    pub expired: bool,
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
                        tokens: HashMap::new(),
                        keys: HashMap::new(),
                        nodes: HashMap::new(),
                        names: HashMap::new(),
                        name_next: HashMap::new(),
                    },
                );
            }
            Event::TailnetSettingsChanged(e) => {
                if let Some(t) = self.tailnet_mut(tid) {
                    if let Some(v) = e.devices_approval_on {
                        t.settings.devices_approval_on = v;
                    }
                    if let Some(v) = e.devices_key_duration_days {
                        t.settings.devices_key_duration_days = v;
                    }
                    if let Some(v) = e.tailnet_lock_on {
                        t.settings.tailnet_lock_on = v;
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
                    t.keys.insert(
                        e.key_id.clone(),
                        Key {
                            user_id: e.user_id.clone(),
                            description: e.description.clone(),
                            reusable: e.reusable,
                            ephemeral: e.ephemeral,
                            preauthorized: e.preauthorized,
                            tags: e.tags.clone(),
                            expiry_seconds: e.expiry_seconds,
                            created: now,
                            expires: e.expires,
                            secret_hash: e.secret_hash,
                            revoked: None,
                            expired: false,
                            uses: 0,
                            last_used: None,
                            signed_by: None,
                        },
                    );
                }
            }
            Event::KeyUsed(e) => {
                if let Some(k) = self.key_mut(tid, &e.key_id) {
                    k.uses = e.uses;
                    k.last_used = Some(now);
                }
            }
            Event::KeyRevoked(e) => {
                if let Some(k) = self.key_mut(tid, &e.key_id) {
                    k.revoked = Some(now);
                }
            }
            Event::KeyExpired(e) => {
                if let Some(k) = self.key_mut(tid, &e.key_id) {
                    k.expired = true;
                }
            }
            Event::KeySigned(e) => {
                if let Some(k) = self.key_mut(tid, &e.key_id) {
                    k.signed_by = Some(e.lock_key.clone());
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
                    t.nodes.insert(
                        e.node_id.clone(),
                        Node {
                            node_key: e.node_key.clone(),
                            hostname: e.hostname.clone(),
                            name: e.name.clone(),
                            os: e.os.clone(),
                            user_id: e.user_id.clone(),
                            tags: e.tags.clone(),
                            auth_key_id: e.auth_key_id.clone(),
                            ephemeral: e.ephemeral,
                            authorized: e.authorized,
                            key_expiry_disabled: e.key_expiry_disabled,
                            expires: e.expires,
                            authenticated_at: now,
                            authenticated_expires: e.expires,
                            created: now,
                            connected: false,
                            last_seen: None,
                            tailnet_lock_error: e.tailnet_lock_error.clone(),
                            expired: false,
                        },
                    );
                }
            }
            Event::NodeReauthenticated(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.auth_key_id = e.auth_key_id.clone();
                    n.hostname = e.hostname.clone();
                    n.user_id = e.user_id.clone();
                    n.tags = e.tags.clone();
                    n.key_expiry_disabled = e.key_expiry_disabled;
                    n.expires = e.expires;
                    n.authenticated_at = now;
                    n.authenticated_expires = e.expires;
                    n.expired = false;
                }
            }
            Event::NodeAuthorized(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.authorized = e.authorized;
                }
            }
            Event::NodeKeyExpirySet(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.key_expiry_disabled = e.key_expiry_disabled;
                    n.expires = e.expires;
                    n.expired = e.expires.is_some_and(|t| t <= now);
                }
            }
            Event::NodeExpired(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.expires = Some(e.expired_at);
                    n.expired = true;
                }
            }
            Event::TagsChanged(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.tags = e.tags.clone();
                }
            }
            Event::NodeConnected(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.connected = true;
                    n.last_seen = Some(now);
                }
            }
            Event::NodeDisconnected(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.connected = false;
                    n.last_seen = Some(now);
                }
            }
            Event::NodeSigned(e) => {
                if let Some(n) = self.node_mut(tid, &e.node_id) {
                    n.tailnet_lock_error = None;
                }
            }
            Event::NodeDeleted(e) => {
                if let Some(t) = self.tailnets.get_mut(tid)
                    && let Some(n) = t.nodes.remove(&e.node_id)
                {
                    t.names.remove(&n.name);
                    self.node_keys.remove(&n.node_key);
                }
            }
            _ => {}
        }
    }

    fn key_mut(&mut self, tid: &TailnetId, key: &KeyId) -> Option<&mut Key> {
        self.tailnets.get_mut(tid)?.keys.get_mut(key)
    }

    fn node_mut(&mut self, tid: &TailnetId, node: &NodeId) -> Option<&mut Node> {
        self.tailnets.get_mut(tid)?.nodes.get_mut(node)
    }
}

impl authkeys_log::Aggregate for State {
    type Rejection = crate::Rejection;

    fn apply(&mut self, env: &Envelope) {
        State::apply(self, env);
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
    }
}

//! The objects the API shows — [`Device`], [`Key`], [`UserView`], [`SettingsView`] — each with
//! its one builder. The command side builds them from its [`State`]; the views build them from
//! their rows; both go through the same builder ([`Device::build`], [`Key::build`]), so the two
//! cannot disagree on a field.

use authkeys_domain::State;
use authkeys_domain::state::{Key as StateKey, Node};
use authkeys_events::{KeyId, NodeId, NodeKey, TailnetId, Timestamp, UserId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::NEVER_EXPIRES;
use crate::command::{Capabilities, CreateCapabilities, DeviceCapabilities, role_str};

/// A device as the HTTP API and the registrar replies show it (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    /// The device's id (the node id).
    pub id: String,
    /// The node id, stable for the node's life.
    pub node_id: String,
    /// Unique machine name in the tailnet.
    pub name: String,
    /// Host name as reported.
    pub hostname: String,
    /// OS as reported, may be empty.
    pub os: String,
    /// The login name of the owner: the user who generated the key (R06).
    pub user: String,
    /// ACL tags (R05).
    pub tags: Vec<String>,
    /// R03.
    pub authorized: bool,
    /// R02.
    pub is_ephemeral: bool,
    /// R14.
    pub key_expiry_disabled: bool,
    /// When the node key expires, RFC 3339; `0001-01-01T00:00:00Z` when expiry is disabled.
    pub expires: String,
    /// First registration.
    pub created: Timestamp,
    /// Last connect or disconnect report; `null` before the first.
    pub last_seen: Option<Timestamp>,
    /// Connected to the control plane, per its registrar.
    pub connected_to_control: bool,
    /// The node's key.
    pub node_key: String,
    /// Why the node is locked out under tailnet lock; empty when it is not (R04).
    pub tailnet_lock_error: String,
    /// The key of its last (re-)authentication.
    pub auth_key_id: String,
}

impl Device {
    /// The one builder of a device: from a node as the command state and the machines view both
    /// keep it ([`authkeys_domain::state::Node`]), with its owner's login name (empty if the user
    /// is unknown).
    pub fn build(node_id: &str, n: &Node, user_login: &str) -> Self {
        Self {
            id: node_id.to_owned(),
            node_id: node_id.to_owned(),
            name: n.name.clone(),
            hostname: n.hostname.to_string(),
            os: n.os.clone(),
            user: user_login.to_owned(),
            tags: n.tags.iter().map(ToString::to_string).collect(),
            authorized: n.authorized,
            is_ephemeral: n.ephemeral,
            key_expiry_disabled: n.key_expiry_disabled,
            expires: n
                .expires
                .map_or_else(|| NEVER_EXPIRES.to_owned(), |e| e.to_string()),
            created: n.created,
            last_seen: n.last_seen,
            connected_to_control: n.connected,
            node_key: n.node_key.to_string(),
            tailnet_lock_error: n.tailnet_lock_error.clone().unwrap_or_default(),
            auth_key_id: n.auth_key_id.to_string(),
        }
    }
}

/// The device `node_id` of `tailnet`, if it exists.
pub fn device_view(state: &State, tailnet: &TailnetId, node_id: &NodeId) -> Option<Device> {
    let t = state.tailnet(tailnet)?;
    let n = t.nodes.get(node_id)?;
    let login = t.users.get(&n.user_id).map(|u| u.login_name.as_str());
    Some(Device::build(
        node_id.as_str(),
        n,
        login.unwrap_or_default(),
    ))
}

/// The device of the node that holds `node_key`, with its tailnet.
pub fn device_by_node_key(state: &State, node_key: &NodeKey) -> Option<Device> {
    let (tid, nid) = state.node_keys.get(node_key)?;
    device_view(state, tid, nid)
}

/// An auth key as the HTTP API shows it (SPEC §5).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Key {
    /// The key id.
    pub id: String,
    /// The secret, `tskey-auth-…`: in the create response only, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Always `auth`.
    pub key_type: String,
    /// Free text.
    pub description: String,
    /// Generation time.
    pub created: Timestamp,
    /// Last change: generation, last use or revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Timestamp>,
    /// When it stops working (R08).
    pub expires: Timestamp,
    /// The requested lifetime.
    pub expiry_seconds: u32,
    /// When it stopped working: revoked, spent (one-off, R01) or expired (R12); absent while
    /// usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Timestamp>,
    /// True once it cannot register nodes: revoked, used (one-off) or expired.
    pub invalid: bool,
    /// What it does.
    pub capabilities: Capabilities,
    /// Its tags (also under `capabilities`).
    pub tags: Vec<String>,
    /// The user who generated it (R09).
    pub user_id: String,
    /// Registrations made with it.
    pub uses: u64,
    /// Last registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
}

debug_redacting!(Key { id, invalid, uses } secrets { key });

impl Key {
    /// The one builder of a key, without its secret: from a key as the command state and the
    /// keys page view both keep it ([`authkeys_domain::state::Key`]), as of `now` (which decides
    /// `invalid` and `revoked`).
    pub fn build(key_id: &str, k: &StateKey, now: Timestamp) -> Self {
        let tags: Vec<String> = k.tags.iter().map(ToString::to_string).collect();
        let revoked = k.invalid_since(now);
        let updated = [Some(k.created), k.last_used, k.revoked]
            .into_iter()
            .flatten()
            .max();
        Self {
            id: key_id.to_owned(),
            key: None,
            key_type: "auth".to_owned(),
            description: k.description.to_string(),
            created: k.created,
            updated,
            expires: k.expires,
            expiry_seconds: k.expiry_seconds.get(),
            revoked,
            invalid: revoked.is_some(),
            capabilities: Capabilities {
                devices: DeviceCapabilities {
                    create: CreateCapabilities {
                        reusable: k.reusable,
                        ephemeral: k.ephemeral,
                        preauthorized: k.preauthorized,
                        tags: Some(tags.clone()),
                    },
                },
            },
            tags,
            user_id: k.user_id.to_string(),
            uses: k.uses,
            last_used: k.last_used,
        }
    }
}

/// The key `key_id` of `tailnet` as of `now` (which decides `invalid`), without its secret.
pub fn key_view(state: &State, tailnet: &TailnetId, key_id: &KeyId, now: Timestamp) -> Option<Key> {
    let k = state.tailnet(tailnet)?.keys.get(key_id)?;
    Some(Key::build(key_id.as_str(), k, now))
}

/// A user as `add-user` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserView {
    /// The user's id.
    pub id: String,
    /// Login name.
    pub login_name: String,
    /// Role, as the API spells it.
    pub role: String,
}

/// A user of `tailnet`, if it exists.
pub fn user_view(state: &State, tailnet: &TailnetId, user_id: &UserId) -> Option<UserView> {
    let u = state.tailnet(tailnet)?.users.get(user_id)?;
    Some(UserView {
        id: user_id.to_string(),
        login_name: u.login_name.to_string(),
        role: role_str(u.role).to_owned(),
    })
}

/// A tailnet's settings as the HTTP API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsView {
    /// R03.
    pub devices_approval_on: bool,
    /// R14.
    pub devices_key_duration_days: u16,
}

/// The settings of `tailnet`, if it exists.
pub fn settings_view(state: &State, tailnet: &TailnetId) -> Option<SettingsView> {
    let s = &state.tailnet(tailnet)?.settings;
    Some(SettingsView {
        devices_approval_on: s.devices_approval_on,
        devices_key_duration_days: s.devices_key_duration_days.get(),
    })
}

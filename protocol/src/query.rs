//! The view queries' payloads (`authkeys.query.*`, served by the projections): each request
//! with its `minSeq` (read-your-writes), and its `{ok: true, …, seq}` answer. Refusals are
//! [`ErrorReply`](crate::ErrorReply)s: `bad_request` naming the field, `not_found`,
//! `unavailable` when the view has not reached `minSeq` in time.

use authkeys_events::{Hash, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::True;
use crate::object::{Device, Key, SettingsView, User};

/// `authkeys.query.identity.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenQuery {
    /// The token's public id.
    pub token_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.identity.tailnet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.keys.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The requesting user: only their keys are listed (R09).
    pub user_id: String,
    /// Accepted; changes nothing (see `views::keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.keys.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The requesting user: another user's key is not found (R09).
    pub user_id: String,
    /// The key id.
    pub key_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// Most devices in one `authkeys.query.devices.list` reply (about 450 bytes each).
pub const DEVICES_PAGE_MAX: usize = 1000;

/// `authkeys.query.devices.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicesListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Continue after this node id (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most devices in this page: 1 to [`DEVICES_PAGE_MAX`], that if absent. Pages keep replies
    /// under NATS's payload limit (1 MiB) whatever the tailnet's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.devices.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicesGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The node id.
    pub node_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// Most users in one `authkeys.query.users.list` reply.
pub const USERS_PAGE_MAX: usize = 1000;

/// `authkeys.query.users.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsersListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Continue after this user id (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most users in this page: 1 to [`USERS_PAGE_MAX`], that if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Wait until the views have applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.users.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsersGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The user id.
    pub user_id: String,
    /// Wait until the views have applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok: true, users, next?, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersAnswer {
    /// Always `true`.
    pub ok: True,
    /// A page of the tailnet's users, in user-id order.
    pub users: Vec<User>,
    /// Ask again with `after` = this for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The views' applied seq.
    pub seq: u64,
}

/// `{ok: true, user, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAnswer {
    /// Always `true`.
    pub ok: True,
    /// The user.
    pub user: User,
    /// The views' applied seq.
    pub seq: u64,
}

/// `{ok: true, token, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAnswer {
    /// Always `true`.
    pub ok: True,
    /// The token.
    pub token: TokenInfo,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, tailnet, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailnetAnswer {
    /// Always `true`.
    pub ok: True,
    /// The tailnet.
    pub tailnet: TailnetInfo,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, keys, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysAnswer {
    /// Always `true`.
    pub ok: True,
    /// The user's keys.
    pub keys: Vec<Key>,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, key, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnswer {
    /// Always `true`.
    pub ok: True,
    /// The key.
    pub key: Key,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, devices, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesAnswer {
    /// Always `true`.
    pub ok: True,
    /// A page of the tailnet's devices, in node-id order.
    pub devices: Vec<Device>,
    /// Ask again with `after` = this for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, device, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAnswer {
    /// Always `true`.
    pub ok: True,
    /// The device.
    pub device: Device,
    /// The view's applied seq.
    pub seq: u64,
}

/// A token as `authkeys.query.identity.token` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenInfo {
    /// Public id.
    pub token_id: String,
    /// Its tailnet.
    pub tailnet: String,
    /// Whom it acts as.
    pub user_id: String,
    /// That user's login name (empty if the user is unknown, e.g. removed).
    pub login_name: String,
    /// That user's current role, as the API spells it (empty if the user is unknown, e.g.
    /// removed: the gateway refuses such a token).
    pub role: String,
    /// Keyed blake3 of the secret, hex: the gateway compares the presented secret's hash.
    pub secret_hash: Hash,
    /// When it stops working.
    pub expires: Timestamp,
    /// When it was issued.
    pub created: Timestamp,
    /// When it was revoked; `None` while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// An access token's OAuth client (R19): the caller is that client, acting as the
    /// principal `userId`, within `scopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// An access token's scopes (Tailscale's names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Its user is suspended (R21): the token authenticates nothing until they are restored.
    #[serde(default)]
    pub suspended: bool,
}

/// `authkeys.query.identity.clients`: OAuth clients of a tailnet, by id or by creator (R19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientsQuery {
    /// The tailnet id; any tailnet if absent (client ids are global: `POST /oauth/token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
    /// Only this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Only the clients this user created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// An OAuth client as `authkeys.query.identity.clients` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientInfo {
    /// Its id.
    pub client_id: String,
    /// Its tailnet.
    pub tailnet: String,
    /// The user id it acts as.
    pub principal: String,
    /// Keyed blake3 of its secret: the gateway compares the presented secret's hash. `None`
    /// for a federated identity (R20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<Hash>,
    /// A federated identity's trust (R20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<authkeys_events::FederatedSpec>,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Free text.
    pub description: String,
    /// Created.
    pub created: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// Deleted.
    pub deleted: bool,
}

/// `{ok: true, clients, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsAnswer {
    /// Always `true`.
    pub ok: True,
    /// The clients, by id.
    pub clients: Vec<ClientInfo>,
    /// The view's applied seq.
    pub seq: u64,
}

/// `authkeys.query.identity.tokens`: a user's API tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokensListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Whose tokens.
    pub user_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok: true, tokens, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensAnswer {
    /// Always `true`.
    pub ok: True,
    /// The user's tokens, by token id.
    pub tokens: Vec<TokenInfo>,
    /// The view's applied seq.
    pub seq: u64,
}

/// A tailnet as `authkeys.query.identity.tailnet` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetInfo {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Settings as the API shows them.
    pub settings: SettingsView,
}

/// A view query: its subject (in full) and its answer's type, so a client cannot ask one
/// subject and read another's answer.
pub trait Query: Serialize {
    /// The subject, under `authkeys.query`.
    const SUBJECT: &'static str;
    /// `{ok: true, …, seq}`.
    type Answer: serde::de::DeserializeOwned + Answer;
}

/// What every query answer carries.
pub trait Answer {
    /// The view's applied seq when it answered.
    fn seq(&self) -> u64;
}

macro_rules! queries {
    ($($query:ident => $subject:ident, $answer:ident;)*) => {
        $(
            impl Query for $query {
                const SUBJECT: &'static str = crate::subject::query_full::$subject;
                type Answer = $answer;
            }
            impl Answer for $answer {
                fn seq(&self) -> u64 {
                    self.seq
                }
            }
        )*
    };
}

queries! {
    TokenQuery => IDENTITY_TOKEN, TokenAnswer;
    TailnetQuery => IDENTITY_TAILNET, TailnetAnswer;
    TokensListQuery => IDENTITY_TOKENS, TokensAnswer;
    ClientsQuery => IDENTITY_CLIENTS, ClientsAnswer;
    KeysListQuery => KEYS_LIST, KeysAnswer;
    KeysGetQuery => KEYS_GET, KeyAnswer;
    DevicesListQuery => DEVICES_LIST, DevicesAnswer;
    DevicesGetQuery => DEVICES_GET, DeviceAnswer;
    UsersListQuery => USERS_LIST, UsersAnswer;
    UsersGetQuery => USERS_GET, UserAnswer;
}

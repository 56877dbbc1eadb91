//! The identity view: what the HTTP gateway needs to authenticate and authorize a request —
//! API tokens, users and their current roles, tailnets with their name and settings.
//!
//! Rows: `tailnet/<tailnet>` → [`TailnetRow`], `user/<tailnet>/<userId>` → [`UserRow`],
//! `token/<tokenId>` → [`TokenRow`] (token ids are global: a token names no tailnet). A token's
//! login name, role and suspension are joined from its user at query time, so a role change
//! (R07) or a suspension (R21) applies to every token of the user at once; a removed user's row
//! is gone (R18), and their tokens were revoked by the same decision.

use authkeys_events::{
    Description, Envelope, Event, Hash, KeyId, LoginName, Role, Scope, Tags, TailnetId,
    TailnetName, TailnetSettings, Timestamp, UserId,
};
use authkeys_protocol::query::{ClientInfo, TailnetInfo, TokenInfo};
use std::collections::HashMap;

use authkeys_protocol::{SettingsView, User, UserDevices, role_str};
use serde::{Deserialize, Serialize};

use super::{RowChange, RowError, Table, View, key2, unknown_row};

/// A tailnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetRow {
    /// Display name.
    pub name: TailnetName,
    /// Current settings.
    pub settings: TailnetSettings,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRow {
    /// Login name.
    pub login_name: LoginName,
    /// Current role.
    pub role: Role,
    /// When the user was added.
    pub created: Timestamp,
    /// Suspended (R21). Absent while active, so rows of active users read and write as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRow {
    /// Its tailnet.
    pub tailnet: TailnetId,
    /// Whom it acts as.
    pub user_id: UserId,
    /// Keyed blake3 of its secret.
    pub secret_hash: Hash,
    /// When it stops working.
    pub expires: Timestamp,
    /// When it was issued.
    pub created: Timestamp,
    /// When it was revoked; `None` while it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// An access token's OAuth client (R19); absent for a user's API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<KeyId>,
    /// An access token's scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// An OAuth client (R19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientRow {
    /// Its tailnet.
    pub tailnet: TailnetId,
    /// The user id it acts as.
    pub principal: UserId,
    /// Keyed blake3 of its secret (`None`: a federated identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<Hash>,
    /// A federated identity's trust (R20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<authkeys_events::FederatedSpec>,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its tags.
    pub tags: Tags,
    /// Free text.
    pub description: Description,
    /// Created.
    pub created: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// Deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The identity view. See the module docs.
#[derive(Debug, Clone)]
pub struct IdentityView {
    tailnets: Table<TailnetRow>,
    users: Table<UserRow>,
    tokens: Table<TokenRow>,
    clients: Table<ClientRow>,
}

impl Default for IdentityView {
    fn default() -> Self {
        Self {
            tailnets: Table::new("tailnet/"),
            users: Table::new("user/"),
            tokens: Table::new("token/"),
            clients: Table::new("client/"),
        }
    }
}

impl IdentityView {
    /// The token `token_id`, with its user's login name and current role.
    pub fn token(&self, token_id: &str) -> Option<TokenInfo> {
        let t = self.tokens.get(token_id)?;
        Some(self.token_info(token_id, t))
    }

    /// Every API token of `user_id` in `tailnet` (revoked and expired ones too), by token id.
    pub fn tokens_of(&self, tailnet: &str, user_id: &str) -> Vec<TokenInfo> {
        self.tokens
            .with_prefix("")
            .filter(|(_, t)| t.tailnet.as_str() == tailnet && t.user_id.as_str() == user_id)
            .map(|(id, t)| self.token_info(id, t))
            .collect()
    }

    fn token_info(&self, token_id: &str, t: &TokenRow) -> TokenInfo {
        let user = self
            .users
            .get(&key2(t.tailnet.as_str(), t.user_id.as_str()));
        TokenInfo {
            token_id: token_id.to_owned(),
            tailnet: t.tailnet.to_string(),
            user_id: t.user_id.to_string(),
            login_name: user.map(|u| u.login_name.to_string()).unwrap_or_default(),
            role: user
                .map(|u| role_str(u.role).to_owned())
                .unwrap_or_default(),
            secret_hash: t.secret_hash,
            expires: t.expires,
            created: t.created,
            revoked_at: t.revoked_at,
            client_id: t.client_id.as_ref().map(ToString::to_string),
            scopes: t
                .scopes
                .as_ref()
                .map(|s| s.iter().map(ToString::to_string).collect()),
            suspended: user.is_some_and(|u| u.suspended),
        }
    }

    /// The OAuth clients (of `tailnet`, if given) that `created_by` created, or the one client
    /// `client_id` (R19), deleted ones included.
    pub fn clients(
        &self,
        tailnet: Option<&str>,
        client_id: Option<&str>,
        created_by: Option<&str>,
    ) -> Vec<ClientInfo> {
        self.clients
            .with_prefix("")
            .filter(|(id, c)| {
                tailnet.is_none_or(|t| c.tailnet.as_str() == t)
                    && client_id.is_none_or(|want| *id == want)
                    && created_by.is_none_or(|by| c.created_by == by)
            })
            .map(|(id, c)| ClientInfo {
                client_id: id.to_owned(),
                tailnet: c.tailnet.to_string(),
                principal: c.principal.to_string(),
                secret_hash: c.secret_hash,
                federated: c.federated.clone(),
                scopes: c.scopes.iter().map(ToString::to_string).collect(),
                tags: c.tags.iter().map(ToString::to_string).collect(),
                description: c.description.to_string(),
                created: c.created,
                created_by: c.created_by.clone(),
                deleted: c.deleted,
            })
            .collect()
    }

    /// The tailnet `tailnet`.
    pub fn tailnet(&self, tailnet: &str) -> Option<TailnetInfo> {
        let t = self.tailnets.get(tailnet)?;
        Some(TailnetInfo {
            id: tailnet.to_owned(),
            name: t.name.to_string(),
            settings: SettingsView::build(&t.settings),
        })
    }

    /// Up to `limit` users of `tailnet` after user id `after`, in user-id order, as the API shows
    /// them (with what `devices` says of their devices), and the user id to continue after.
    pub fn users_page(
        &self,
        tailnet: &str,
        after: Option<&str>,
        limit: usize,
        devices: &HashMap<String, UserDevices>,
    ) -> (Vec<User>, Option<String>) {
        let prefix = format!("{tailnet}/");
        let mut rows = self.users.with_prefix_after(&prefix, after);
        let users: Vec<User> = rows
            .by_ref()
            .take(limit)
            .map(|(k, u)| to_user(tailnet, &k[prefix.len()..], u, devices))
            .collect();
        let next = rows.next().and_then(|_| users.last().map(|u| u.id.clone()));
        (users, next)
    }

    /// The user `user_id` of `tailnet` as the API shows it.
    pub fn user_object(
        &self,
        tailnet: &str,
        user_id: &str,
        devices: &HashMap<String, UserDevices>,
    ) -> Option<User> {
        let u = self.users.get(&key2(tailnet, user_id))?;
        Some(to_user(tailnet, user_id, u, devices))
    }

    /// The user `user_id` of `tailnet`: login name and current role.
    pub fn user(&self, tailnet: &str, user_id: &str) -> Option<&UserRow> {
        self.users.get(&key2(tailnet, user_id))
    }
}

fn to_user(
    tailnet: &str,
    user_id: &str,
    u: &UserRow,
    devices: &HashMap<String, UserDevices>,
) -> User {
    User::build(
        tailnet,
        user_id,
        u.login_name.as_str(),
        u.role,
        u.suspended,
        u.created,
        devices.get(user_id).copied().unwrap_or_default(),
    )
}

impl View for IdentityView {
    const NAME: &'static str = "identity";

    fn apply(&mut self, env: &Envelope) {
        let t = env.tailnet.as_str();
        match &env.event {
            Event::TailnetCreated(e) => {
                self.tailnets.insert(
                    t.to_owned(),
                    TailnetRow {
                        name: e.name.clone(),
                        settings: e.settings.clone(),
                    },
                );
            }
            Event::TailnetSettingsChanged(e) => {
                if let Some(row) = self.tailnets.get_mut(t) {
                    row.settings.apply(e);
                }
            }
            Event::UserAdded(e) => {
                self.users.insert(
                    key2(t, e.user_id.as_str()),
                    UserRow {
                        login_name: e.login_name.clone(),
                        role: e.role,
                        created: env.time,
                        suspended: false,
                    },
                );
            }
            Event::UserRoleChanged(e) => {
                if let Some(u) = self.users.get_mut(&key2(t, e.user_id.as_str())) {
                    u.role = e.role;
                }
            }
            Event::UserSuspended(e) => {
                if let Some(u) = self.users.get_mut(&key2(t, e.user_id.as_str())) {
                    u.suspended = true;
                }
            }
            Event::UserRestored(e) => {
                if let Some(u) = self.users.get_mut(&key2(t, e.user_id.as_str())) {
                    u.suspended = false;
                }
            }
            // R18: a removed user leaves the users; their tokens were revoked by the events
            // before this one, and a token of an unknown user authenticates nothing.
            Event::UserRemoved(e) => {
                self.users.remove(&key2(t, e.user_id.as_str()));
            }
            Event::ApiTokenIssued(e) => {
                self.tokens.insert(
                    e.token_id.to_string(),
                    TokenRow {
                        tailnet: env.tailnet.clone(),
                        user_id: e.user_id.clone(),
                        secret_hash: e.secret_hash,
                        expires: e.expires,
                        created: env.time,
                        revoked_at: None,
                        client_id: None,
                        scopes: None,
                    },
                );
            }
            Event::OAuthClientCreated(e) => {
                self.clients.insert(
                    e.client_id.to_string(),
                    ClientRow {
                        tailnet: env.tailnet.clone(),
                        principal: e.principal.clone(),
                        secret_hash: e.secret_hash,
                        federated: e.federated.clone(),
                        scopes: e.scopes.clone(),
                        tags: e.tags.clone(),
                        description: e.description.clone(),
                        created: env.time,
                        created_by: env.actor.id.clone(),
                        deleted: false,
                    },
                );
            }
            Event::OAuthClientDeleted(e) => {
                if let Some(c) = self.clients.get_mut(e.client_id.as_str())
                    && c.tailnet == env.tailnet
                {
                    c.deleted = true;
                    // Its access tokens stop at once (R19).
                    let ids: Vec<String> = self
                        .tokens
                        .with_prefix("")
                        .filter(|(_, t)| t.client_id.as_ref() == Some(&e.client_id))
                        .map(|(id, _)| id.to_owned())
                        .collect();
                    for id in ids {
                        if let Some(tok) = self.tokens.get_mut(&id) {
                            tok.revoked_at.get_or_insert(env.time);
                        }
                    }
                }
            }
            Event::AccessTokenIssued(e) => {
                let principal = self
                    .clients
                    .get(e.client_id.as_str())
                    .map(|c| c.principal.clone());
                if let Some(principal) = principal {
                    self.tokens.insert(
                        e.token_id.to_string(),
                        TokenRow {
                            tailnet: env.tailnet.clone(),
                            user_id: principal,
                            secret_hash: e.secret_hash,
                            expires: e.expires,
                            created: env.time,
                            revoked_at: None,
                            client_id: Some(e.client_id.clone()),
                            scopes: Some(e.scopes.clone()),
                        },
                    );
                }
            }
            Event::ApiTokenRevoked(e) => {
                if let Some(tok) = self.tokens.get_mut(e.token_id.as_str())
                    && tok.tailnet == env.tailnet
                {
                    tok.revoked_at.get_or_insert(env.time);
                }
            }
            _ => {}
        }
    }

    fn take_changes(&mut self) -> Vec<RowChange> {
        let mut out = Vec::new();
        self.tailnets.drain_changes(&mut out);
        self.users.drain_changes(&mut out);
        self.tokens.drain_changes(&mut out);
        self.clients.drain_changes(&mut out);
        out
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        if self.tailnets.load(key, value)?.is_some()
            || self.users.load(key, value)?.is_some()
            || self.tokens.load(key, value)?.is_some()
            || self.clients.load(key, value)?.is_some()
        {
            return Ok(());
        }
        Err(unknown_row(key))
    }

    fn for_each_row(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self.tailnets.for_each(f);
        self.tokens.for_each(f);
        self.users.for_each(f);
        self.clients.for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use authkeys_events::{
        ApiTokenIssued, ApiTokenRevoked, KeptSettings, KeyDurationDays, RouteSelection,
        TailnetCreated, TailnetSettingsChanged, TokenId, UserAdded, UserRemoved, UserRestored,
        UserRoleChanged, UserSuspended,
    };

    use super::*;
    use crate::views::test_support::{Given, at, round_trip};

    #[test]
    fn tokens_follow_their_users_role_and_revocation() {
        let mut g = Given::new("T1");
        let mut v = IdentityView::default();
        let mut stored = BTreeMap::new();
        let alice = UserId::parse("uAlice").expect("valid");
        v.apply(&g.env(
            0,
            TailnetCreated {
                name: TailnetName::parse("example.com").expect("valid"),
                settings: TailnetSettings {
                    devices_approval_on: false,
                    devices_key_duration_days: KeyDurationDays::DEFAULT,
                    tailnet_lock_on: false,
                    kept: Default::default(),
                },
            },
        ));
        v.apply(&g.env(
            1,
            UserAdded {
                user_id: alice.clone(),
                login_name: LoginName::parse("alice@example.com").expect("valid"),
                role: Role::Owner,
            },
        ));
        v.apply(&g.env(
            2,
            ApiTokenIssued {
                token_id: TokenId::parse("tA").expect("valid"),
                user_id: alice.clone(),
                secret_hash: Hash([9; 32]),
                expires: at(86_400),
            },
        ));
        let mut v = round_trip(&mut v, &mut stored);
        let t = v.token("tA").expect("issued");
        assert_eq!(
            (
                t.tailnet.as_str(),
                t.user_id.as_str(),
                t.login_name.as_str(),
                t.role.as_str()
            ),
            ("T1", "uAlice", "alice@example.com", "owner")
        );
        assert_eq!(
            (t.secret_hash, t.expires, t.revoked_at.is_some()),
            (Hash([9; 32]), at(86_400), false)
        );

        v.apply(&g.env(
            3,
            UserRoleChanged {
                user_id: alice,
                previous_role: Role::Owner,
                role: Role::ItAdmin,
            },
        ));
        v.apply(&g.env(
            4,
            ApiTokenRevoked {
                token_id: TokenId::parse("tA").expect("valid"),
            },
        ));
        v.apply(&g.env(
            5,
            TailnetSettingsChanged {
                devices_approval_on: Some(true),
                devices_key_duration_days: Some(KeyDurationDays::new(30).expect("valid")),
                tailnet_lock_on: None,
                kept: KeptSettings {
                    https_enabled: Some(true),
                    route_selection: Some(RouteSelection::RegionalRouting),
                    ..Default::default()
                },
            },
        ));
        let v = round_trip(&mut v, &mut stored);
        let t = v.token("tA").expect("still known");
        assert_eq!(
            (t.role.as_str(), t.revoked_at.is_some()),
            ("it-admin", true)
        );
        let tn = v.tailnet("T1").expect("created");
        assert_eq!(tn.name, "example.com");
        let s = &tn.settings;
        assert!(s.devices_approval_on && s.https_enabled && s.regional_routing_on);
        assert_eq!(s.devices_key_duration_days, 30);
        assert_eq!(s.route_selection, RouteSelection::RegionalRouting);
        assert!(
            !s.users_approval_on && s.acls_external_link.is_empty(),
            "defaults"
        );
        assert_eq!(v.token("tZ"), None);
        assert_eq!(v.tailnet("T2"), None);
        let json = serde_json::to_string(&t).expect("serializes");
        assert!(
            json.contains(r#""secretHash":"0909"#) && json.contains(r#""loginName""#),
            "{json}"
        );
    }

    #[test]
    fn suspended_users_tokens_say_so_and_removed_users_leave() {
        // R21: a suspension shows on the user (`status: suspended`) and on each of their tokens
        // until restored; R18: a removed user leaves the users, so their token names no user.
        // An active user's row is written as before suspension existed (no `suspended` field).
        let mut g = Given::new("T1");
        let mut v = IdentityView::default();
        let mut stored = BTreeMap::new();
        let bob = UserId::parse("uBob").expect("valid");
        v.apply(&g.env(
            0,
            UserAdded {
                user_id: bob.clone(),
                login_name: LoginName::parse("bob@example.com").expect("valid"),
                role: Role::Admin,
            },
        ));
        v.apply(&g.env(
            1,
            ApiTokenIssued {
                token_id: TokenId::parse("tB").expect("valid"),
                user_id: bob.clone(),
                secret_hash: Hash([1; 32]),
                expires: at(86_400),
            },
        ));
        let mut v = round_trip(&mut v, &mut stored);
        let row = stored.get("user/T1/uBob").expect("stored");
        assert!(!String::from_utf8_lossy(row).contains("suspended"));
        let no_devices = HashMap::new();
        let status = |v: &IdentityView| {
            v.user_object("T1", "uBob", &no_devices)
                .map(|u| u.status)
                .unwrap_or_default()
        };
        assert_eq!(status(&v), "active");
        v.apply(&g.env(
            2,
            UserSuspended {
                user_id: bob.clone(),
            },
        ));
        let mut v = round_trip(&mut v, &mut stored);
        assert!(v.token("tB").expect("known").suspended);
        assert_eq!(status(&v), "suspended");
        v.apply(&g.env(
            3,
            UserRestored {
                user_id: bob.clone(),
            },
        ));
        let mut v = round_trip(&mut v, &mut stored);
        assert!(!v.token("tB").expect("known").suspended);
        assert_eq!(status(&v), "active");
        v.apply(&g.env(
            4,
            ApiTokenRevoked {
                token_id: TokenId::parse("tB").expect("valid"),
            },
        ));
        v.apply(&g.env(5, UserRemoved { user_id: bob }));
        let v = round_trip(&mut v, &mut stored);
        assert!(v.user("T1", "uBob").is_none() && !stored.contains_key("user/T1/uBob"));
        let t = v.token("tB").expect("tokens stay, revoked");
        assert!(t.revoked_at.is_some() && t.role.is_empty() && t.login_name.is_empty());
        assert_eq!(v.users_page("T1", None, 10, &no_devices).0, []);
    }
}

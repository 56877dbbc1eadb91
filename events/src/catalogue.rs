//! Every event type, its data and its schema version.
//!
//! Event data never carries a secret: keys and tokens appear only as a keyed blake3 hash
//! (`secretHash`), which is useless without the hashing key kept outside the log.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::chain::Hash;
use crate::ids::{
    Description, ExpirySeconds, Hostname, KeyDurationDays, KeyId, LoginName, NodeId, NodeKey, Role,
    StreamId, StreamKind, Tags, TailnetName, TokenId, UserId,
};
use crate::lock::{LockKey, LockSignature};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::webhook::{WebhookCreated, WebhookDeleted, WebhookSecretRotated, WebhookUpdated};

/// A tailnet's settings as of creation; later changes come as [`TailnetSettingsChanged`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetSettings {
    /// R03: new nodes wait for approval unless their key is pre-approved.
    pub devices_approval_on: bool,
    /// R14: node-key lifetime of untagged nodes.
    pub devices_key_duration_days: KeyDurationDays,
    /// R04: nodes must be signed by a trusted lock key.
    pub tailnet_lock_on: bool,
    /// The settings of Tailscale's settings object that authkeys keeps and shows without
    /// acting on them; absent ones are at their defaults.
    #[serde(default, skip_serializing_if = "KeptSettings::is_empty")]
    pub kept: KeptSettings,
}

impl TailnetSettings {
    /// Folds in a change: every field it carries replaces the current one.
    pub fn apply(&mut self, e: &TailnetSettingsChanged) {
        if let Some(v) = e.devices_approval_on {
            self.devices_approval_on = v;
        }
        if let Some(v) = e.devices_key_duration_days {
            self.devices_key_duration_days = v;
        }
        if let Some(v) = e.tailnet_lock_on {
            self.tailnet_lock_on = v;
        }
        self.kept.apply(&e.kept);
    }
}

/// Who may join other tailnets (Tailscale's `usersRoleAllowedToJoinExternalTailnets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExternalJoinRole {
    /// Nobody.
    None,
    /// Admins only.
    Admin,
    /// Members and admins (Tailscale's default).
    Member,
}

/// How a tailnet picks among routers of the same route (Tailscale's `routeSelection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RouteSelection {
    /// One router at a time (Tailscale's default).
    ActivePassiveFailover,
    /// The nearest router (what `regionalRoutingOn: true` means).
    RegionalRouting,
    /// The nearest router, failing over within its region.
    RegionalRoutingFailover,
    /// Tailscale's `magicroute`.
    Magicroute,
}

/// Settings of Tailscale's settings object that authkeys stores and returns but does not act
/// on (it has no auto-updates, user approval, flow logs, posture, HTTPS certificates, routes
/// or policy file). Each `None` is "unchanged" in a change and "the default" in a state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeptSettings {
    /// `devicesAutoUpdatesOn` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_auto_updates_on: Option<bool>,
    /// `usersApprovalOn` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_approval_on: Option<bool>,
    /// `usersRoleAllowedToJoinExternalTailnets` (default `member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_role_allowed_to_join_external_tailnets: Option<ExternalJoinRole>,
    /// `networkFlowLoggingOn` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_flow_logging_on: Option<bool>,
    /// `postureIdentityCollectionOn` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture_identity_collection_on: Option<bool>,
    /// `httpsEnabled` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_enabled: Option<bool>,
    /// `routeSelection` (default `active-passive-failover`); `regionalRoutingOn` is derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_selection: Option<RouteSelection>,
    /// `aclsExternallyManagedOn` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls_externally_managed_on: Option<bool>,
    /// `aclsExternalLink` (default empty): where the policy file is managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls_external_link: Option<String>,
}

impl KeptSettings {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Every field `change` sets replaces this one's.
    pub fn apply(&mut self, change: &KeptSettings) {
        fn set<T: Clone>(field: &mut Option<T>, new: &Option<T>) {
            if new.is_some() {
                field.clone_from(new);
            }
        }
        set(
            &mut self.devices_auto_updates_on,
            &change.devices_auto_updates_on,
        );
        set(&mut self.users_approval_on, &change.users_approval_on);
        set(
            &mut self.users_role_allowed_to_join_external_tailnets,
            &change.users_role_allowed_to_join_external_tailnets,
        );
        set(
            &mut self.network_flow_logging_on,
            &change.network_flow_logging_on,
        );
        set(
            &mut self.posture_identity_collection_on,
            &change.posture_identity_collection_on,
        );
        set(&mut self.https_enabled, &change.https_enabled);
        set(&mut self.route_selection, &change.route_selection);
        set(
            &mut self.acls_externally_managed_on,
            &change.acls_externally_managed_on,
        );
        set(&mut self.acls_external_link, &change.acls_external_link);
    }

    /// The fields of `change` whose value differs from this state's (defaults included), so a
    /// change to the current value records nothing.
    pub fn changes(&self, change: &KeptSettings) -> KeptSettings {
        fn diff<T: Clone + PartialEq>(cur: &Option<T>, new: &Option<T>, default: T) -> Option<T> {
            let cur = cur.clone().unwrap_or(default);
            new.clone().filter(|n| *n != cur)
        }
        KeptSettings {
            devices_auto_updates_on: diff(
                &self.devices_auto_updates_on,
                &change.devices_auto_updates_on,
                false,
            ),
            users_approval_on: diff(&self.users_approval_on, &change.users_approval_on, false),
            users_role_allowed_to_join_external_tailnets: diff(
                &self.users_role_allowed_to_join_external_tailnets,
                &change.users_role_allowed_to_join_external_tailnets,
                ExternalJoinRole::Member,
            ),
            network_flow_logging_on: diff(
                &self.network_flow_logging_on,
                &change.network_flow_logging_on,
                false,
            ),
            posture_identity_collection_on: diff(
                &self.posture_identity_collection_on,
                &change.posture_identity_collection_on,
                false,
            ),
            https_enabled: diff(&self.https_enabled, &change.https_enabled, false),
            route_selection: diff(
                &self.route_selection,
                &change.route_selection,
                RouteSelection::ActivePassiveFailover,
            ),
            acls_externally_managed_on: diff(
                &self.acls_externally_managed_on,
                &change.acls_externally_managed_on,
                false,
            ),
            acls_external_link: diff(
                &self.acls_external_link,
                &change.acls_external_link,
                String::new(),
            ),
        }
    }
}

/// A tailnet was created (by `authkeys admin bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetCreated {
    /// Display name, e.g. `example.com`.
    pub name: TailnetName,
    /// Initial settings.
    pub settings: TailnetSettings,
}

/// Some tailnet settings changed; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetSettingsChanged {
    /// New device-approval setting, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_approval_on: Option<bool>,
    /// New node-key lifetime, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_key_duration_days: Option<KeyDurationDays>,
    /// New tailnet-lock setting, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet_lock_on: Option<bool>,
    /// Kept settings that changed.
    #[serde(default, skip_serializing_if = "KeptSettings::is_empty")]
    pub kept: KeptSettings,
}

/// A user joined the tailnet with a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserAdded {
    /// Stable id.
    pub user_id: UserId,
    /// Login name (unique within the tailnet).
    pub login_name: LoginName,
    /// Initial role.
    pub role: Role,
}

/// A user's role changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRoleChanged {
    /// Whose role.
    pub user_id: UserId,
    /// The role before, so that auditors need not replay to know it.
    pub previous_role: Role,
    /// The role now.
    pub role: Role,
}

/// A user was removed from the tailnet (R18, R21). In the same decision, before this event,
/// every live API token of theirs was revoked (`ApiTokenRevoked`) and every auth key of theirs
/// that could still register a node (`KeyRevoked`); their nodes stay (R11). Their login name
/// may be added again later, as a new user with a new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRemoved {
    /// Who.
    pub user_id: UserId,
}

/// A user was suspended (R21): they stay in the tailnet, but their API tokens authenticate
/// nothing and every command they send is refused until they are restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSuspended {
    /// Who.
    pub user_id: UserId,
}

/// A suspended user was restored: their tokens that are neither revoked nor expired work again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRestored {
    /// Who.
    pub user_id: UserId,
}

/// An API token (`tskey-api-…`) was issued to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTokenIssued {
    /// Public id, the middle part of the token.
    pub token_id: TokenId,
    /// The user the token acts as.
    pub user_id: UserId,
    /// Keyed blake3 of the token's secret.
    pub secret_hash: Hash,
    /// When the token stops working.
    pub expires: Timestamp,
}

/// An OAuth client (R19), or a federated identity (R20), was created: its access tokens act with its scopes, and the auth keys
/// it generates carry its tags. What it does is recorded under its `principal`, a user id of
/// its own that no user holds (its keys' and nodes' owner), so a client outlives its creator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthClientCreated {
    /// The client id (`tskey-client-<id>-…`), a key id.
    pub client_id: KeyId,
    /// Whom its keys and nodes belong to: the client itself.
    pub principal: UserId,
    /// Keyed blake3 of the client secret; absent for a federated identity (R20), which holds
    /// no secret at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<Hash>,
    /// A federated identity's trust (R20): whose OIDC tokens it exchanges for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedSpec>,
    /// What its access tokens may do.
    pub scopes: Vec<Scope>,
    /// The tags the keys it generates must carry (each one of these).
    pub tags: Tags,
    /// Free text.
    pub description: Description,
}

/// A federated identity's trust (R20): a JWT verifies when the issuer's keys sign it and its
/// `iss`, `aud`, `sub` and the custom claims match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedSpec {
    /// The OIDC issuer (https, or http when the service allows it).
    pub issuer: String,
    /// The `sub` pattern (`*` matches any run of characters).
    pub subject: String,
    /// The `aud` the tokens must name.
    pub audience: String,
    /// Other claims and the patterns they must match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub custom_claim_rules: std::collections::BTreeMap<String, String>,
}

/// An OAuth client was deleted: its access tokens stop working at once (R19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthClientDeleted {
    /// Which client.
    pub client_id: KeyId,
}

/// An OAuth client exchanged its secret for an access token, valid one hour (R19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessTokenIssued {
    /// Public id of the token.
    pub token_id: TokenId,
    /// The client it acts for.
    pub client_id: KeyId,
    /// Keyed blake3 of the token's secret.
    pub secret_hash: Hash,
    /// When it stops working.
    pub expires: Timestamp,
    /// Its scopes: the client's, or fewer when narrowed.
    pub scopes: Vec<Scope>,
}

/// An API token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTokenRevoked {
    /// Which token.
    pub token_id: TokenId,
}

/// An admin generated an auth key (R01–R08, R10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyGenerated {
    /// Public id.
    pub key_id: KeyId,
    /// The admin who generated it; owns untagged nodes it registers (R06) and alone sees it (R09).
    pub user_id: UserId,
    /// Free text shown on the keys page.
    pub description: Description,
    /// R01: may register more than one node.
    pub reusable: bool,
    /// R02: registers ephemeral nodes.
    pub ephemeral: bool,
    /// R03: nodes are authorized at once under device approval.
    pub preauthorized: bool,
    /// R05: tags given to nodes it registers.
    pub tags: Tags,
    /// The requested lifetime.
    pub expiry_seconds: ExpirySeconds,
    /// `created + expirySeconds`; unusable from then on (R08).
    pub expires: Timestamp,
    /// Keyed blake3 of the key's secret (R10).
    pub secret_hash: Hash,
}

/// A key registered a node (a new one or a re-authentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyUsed {
    /// Which key.
    pub key_id: KeyId,
    /// The node it registered.
    pub node_id: NodeId,
    /// That node's key.
    pub node_key: NodeKey,
    /// Number of uses including this one; a one-off key is spent at 1 (R01).
    pub uses: u64,
}

/// An admin revoked a key; nodes it registered stay authorized (R11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRevoked {
    /// Which key.
    pub key_id: KeyId,
}

/// A key reached its expiry (R08, R13); nodes it registered stay authorized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyExpired {
    /// Which key.
    pub key_id: KeyId,
    /// The key's `expires`.
    pub expired_at: Timestamp,
}

/// Why a node left the machines view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    /// An admin deleted it (R11: how a node is de-authorized).
    Admin,
    /// An ephemeral node stayed disconnected past the inactivity timeout (R02).
    EphemeralInactive,
}

/// A node's addresses in its tailnet (R17): one IPv4 in 100.64.0.0/10, one IPv6 in
/// fd7a:115c:a1e0::/48, decided by the writer and kept for the node's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddresses {
    /// In 100.64.0.0/10.
    pub ipv4: std::net::Ipv4Addr,
    /// In fd7a:115c:a1e0::/48.
    pub ipv6: std::net::Ipv6Addr,
}

/// A new node joined with an auth key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeRegistered {
    /// Stable id.
    pub node_id: NodeId,
    /// The node's WireGuard key (R16: the identity of a registration).
    pub node_key: NodeKey,
    /// As reported by the node.
    pub hostname: Hostname,
    /// Unique machine name in the tailnet.
    pub name: String,
    /// Operating system, as reported (may be empty).
    pub os: String,
    /// Owner for untagged nodes: the key's user (R06); for tagged nodes the key's user too, but
    /// the node's identity is its tags (R05).
    pub user_id: UserId,
    /// R05: the key's tags.
    pub tags: Tags,
    /// The key that registered it.
    pub auth_key_id: KeyId,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub authorized: bool,
    /// R05/R14: true for tagged nodes.
    pub key_expiry_disabled: bool,
    /// R14: node-key expiry; `None` when disabled.
    pub expires: Option<Timestamp>,
    /// R04: set when tailnet lock is on and the node is not signed.
    pub tailnet_lock_error: Option<String>,
    /// R17: absent only in logs written before addresses existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<NodeAddresses>,
}

/// An existing node registered again with the same node key (R15, R16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeReauthenticated {
    /// Which node.
    pub node_id: NodeId,
    /// The key used this time.
    pub auth_key_id: KeyId,
    /// Possibly new host name.
    pub hostname: Hostname,
    /// Owner after re-authentication.
    pub user_id: UserId,
    /// Tags after re-authentication (the key's tags).
    pub tags: Tags,
    /// R15: a tagged key disables key expiry.
    pub key_expiry_disabled: bool,
    /// New node-key expiry; `None` when disabled.
    pub expires: Option<Timestamp>,
}

/// An admin approved (or un-approved) a node (R03).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAuthorized {
    /// Which node.
    pub node_id: NodeId,
    /// Authorized now.
    pub authorized: bool,
}

/// An admin disabled or re-enabled a node's key expiry (R14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeKeyExpirySet {
    /// Which node.
    pub node_id: NodeId,
    /// Disabled now.
    pub key_expiry_disabled: bool,
    /// The expiry in force after this event; `None` when disabled.
    pub expires: Option<Timestamp>,
}

/// A node's key expired (by time or by `POST /device/{id}/expire`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeExpired {
    /// Which node.
    pub node_id: NodeId,
    /// When it expired.
    pub expired_at: Timestamp,
}

/// A node's tags changed; key expiry is untouched (R15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagsChanged {
    /// Which node.
    pub node_id: NodeId,
    /// Tags before.
    pub previous_tags: Tags,
    /// Tags now.
    pub tags: Tags,
}

/// A registrar reported the node connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConnected {
    /// Which node.
    pub node_id: NodeId,
}

/// A registrar reported the node disconnected; starts the ephemeral inactivity clock (R02).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDisconnected {
    /// Which node.
    pub node_id: NodeId,
}

/// A trusted lock key signed a node (R04): at its registration with a pre-signed key
/// (`keyId` set: the signature covers [`crate::lock::presign_statement`] of that key), or later
/// by `authkeys lock sign nodekey:…` (the signature covers
/// [`crate::lock::node_statement`] of the tailnet and `nodeKey`). Auditors re-check it against
/// the keys trusted at its seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSigned {
    /// Which node.
    pub node_id: NodeId,
    /// Its node key when signed.
    pub node_key: NodeKey,
    /// The pre-signed key it registered with, when that is what was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    /// The lock key that signed.
    pub lock_key: LockKey,
    /// The signature.
    pub signature: LockSignature,
}

/// Tailnet lock was turned on (R04, `authkeys lock init`) with these trusted keys. Only the
/// hash of the disablement secret is recorded; the secret was shown once to whoever turned it
/// on. Nodes registered from now on must be signed; nodes already there are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetLockEnabled {
    /// The trusted lock keys, sorted, at most [`crate::lock::TRUSTED_KEYS_MAX`].
    pub trusted_keys: Vec<LockKey>,
    /// [`crate::lock::disablement_hash`] of the disablement secret.
    pub disablement_hash: Hash,
}

/// The trusted lock keys were replaced, signed by a key trusted before the change over
/// [`crate::lock::trusted_keys_statement`] of the tailnet, `generation` and the new set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedLockKeysChanged {
    /// The new trusted set, sorted.
    pub trusted_keys: Vec<LockKey>,
    /// The lock generation the change was signed for (the tailnet's count of lock events
    /// before it).
    pub generation: u64,
    /// A key trusted before the change.
    pub signer: LockKey,
    /// Its signature.
    pub signature: LockSignature,
}

/// Tailnet lock was turned off with its disablement secret; locked-out nodes are released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetLockDisabled {}

/// A node left the machines view (R02, R11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeDeleted {
    /// Which node.
    pub node_id: NodeId,
    /// Why.
    pub reason: DeleteReason,
}

/// Declares [`Event`] and [`EventType`] over the catalogue, with each type's schema version and
/// the stream kind its events belong to.
macro_rules! catalogue {
    ($($name:ident => $version:literal, $kind:ident, $field:ident;)*) => {
        /// Every event the log can hold. The envelope carries its name in `type` and its data in
        /// `data`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Event {
            $(
                #[doc = concat!("See [`", stringify!($name), "`].")]
                $name($name),
            )*
        }

        /// The names of the event types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum EventType {
            $(
                #[doc = concat!("See [`", stringify!($name), "`].")]
                $name,
            )*
        }

        impl EventType {
            /// Every event type, in catalogue order.
            pub const ALL: &'static [EventType] = &[$(EventType::$name),*];

            /// The name used in the envelope's `type` and in NATS subjects.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$name => stringify!($name),)*
                }
            }

            /// The current schema version of this type's `data`.
            pub fn version(self) -> u16 {
                match self {
                    $(EventType::$name => $version,)*
                }
            }

            /// Looks a name up.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $(stringify!($name) => Some(EventType::$name),)*
                    _ => None,
                }
            }

            /// The kind of stream events of this type belong to.
            pub fn stream_kind(self) -> StreamKind {
                match self {
                    $(EventType::$name => StreamKind::$kind,)*
                }
            }

            /// The JSON Schema of this type's `data`, as `generator` makes it (a `$ref` into its
            /// definitions). Generated with the catalogue, so no event type can lack one.
            pub fn data_schema(self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                match self {
                    $(EventType::$name => generator.subschema_for::<$name>(),)*
                }
            }
        }

        impl Event {
            /// This event's type.
            pub fn event_type(&self) -> EventType {
                match self {
                    $(Event::$name(_) => EventType::$name,)*
                }
            }

            /// The id of the aggregate this event belongs to, e.g. the key id of a `KeyUsed`.
            /// `None` for tailnet events, whose stream is the envelope's tailnet.
            fn aggregate_id(&self) -> Option<&str> {
                match self {
                    $(Event::$name(e) => catalogue!(@id e $field),)*
                }
            }

            /// Decodes `data` of the named type at the given version.
            pub(crate) fn decode(ty: &str, version: u16, data: &str) -> Result<Self, crate::DecodeError> {
                let et = EventType::parse(ty)
                    .ok_or_else(|| crate::DecodeError::UnknownType(ty.to_owned()))?;
                if version != et.version() {
                    return Err(crate::DecodeError::UnsupportedVersion { ty: et.as_str(), version });
                }
                match et {
                    $(EventType::$name => serde_json::from_str(data)
                        .map(Event::$name)
                        .map_err(|e| crate::DecodeError::Data { ty: et.as_str(), reason: e.to_string() }),)*
                }
            }

            /// Deserializes `data` of type `et` in place: the envelope's one-pass decode, where
            /// `type` and `version` came before `data`.
            pub(crate) fn deserialize_data<'de, D: serde::Deserializer<'de>>(
                et: EventType,
                d: D,
            ) -> Result<Self, D::Error> {
                match et {
                    $(EventType::$name => <$name as serde::Deserialize>::deserialize(d).map(Event::$name),)*
                }
            }

            /// Serializes the event's `data` (without type or version).
            pub(crate) fn serialize_data<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Event::$name(e) => e.serialize(s),)*
                }
            }
        }

        $(
            impl From<$name> for Event {
                fn from(e: $name) -> Event {
                    Event::$name(e)
                }
            }
        )*
    };
    (@id $e:ident none) => {{ let _ = $e; None }};
    (@id $e:ident $field:ident) => { Some($e.$field.as_str()) };
}

catalogue! {
    TailnetCreated => 1, Tailnet, none;
    TailnetSettingsChanged => 1, Tailnet, none;
    TailnetLockEnabled => 1, Tailnet, none;
    TrustedLockKeysChanged => 1, Tailnet, none;
    TailnetLockDisabled => 1, Tailnet, none;
    UserAdded => 1, User, user_id;
    UserRoleChanged => 1, User, user_id;
    UserRemoved => 1, User, user_id;
    UserSuspended => 1, User, user_id;
    UserRestored => 1, User, user_id;
    ApiTokenIssued => 1, Token, token_id;
    ApiTokenRevoked => 1, Token, token_id;
    OAuthClientCreated => 1, Key, client_id;
    OAuthClientDeleted => 1, Key, client_id;
    AccessTokenIssued => 1, Token, token_id;
    KeyGenerated => 1, Key, key_id;
    KeyUsed => 1, Key, key_id;
    KeyRevoked => 1, Key, key_id;
    KeyExpired => 1, Key, key_id;
    NodeRegistered => 1, Node, node_id;
    NodeReauthenticated => 1, Node, node_id;
    NodeAuthorized => 1, Node, node_id;
    NodeKeyExpirySet => 1, Node, node_id;
    NodeExpired => 1, Node, node_id;
    TagsChanged => 1, Node, node_id;
    NodeConnected => 1, Node, node_id;
    NodeDisconnected => 1, Node, node_id;
    NodeSigned => 1, Node, node_id;
    NodeDeleted => 1, Node, node_id;
    WebhookCreated => 1, Webhook, endpoint_id;
    WebhookUpdated => 1, Webhook, endpoint_id;
    WebhookSecretRotated => 1, Webhook, endpoint_id;
    WebhookDeleted => 1, Webhook, endpoint_id;
}

impl Event {
    /// The stream this event belongs to in tailnet `tailnet`: `key/<keyId>` for key events,
    /// `node/<nodeId>` for node events, `tailnet/<tailnetId>` for tailnet events, and so on.
    pub fn stream(&self, tailnet: &crate::ids::TailnetId) -> StreamId {
        let id = self.aggregate_id().unwrap_or(tailnet.as_str());
        StreamId::of(self.event_type().stream_kind(), id)
            .expect("validated ids are valid stream ids")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

//! The objects the API shows — [`Device`], [`Key`], [`UserView`], [`SettingsView`] — each with
//! its one builder. The command side builds them from its [`State`]; the views build them from
//! their rows; both go through the same builder ([`Device::build`], [`Key::build`]), so the two
//! cannot disagree on a field.

use authkeys_domain::State;
use authkeys_domain::state::{Key as StateKey, Node};
use authkeys_events::{
    ExternalJoinRole, KeyId, LoginName, NodeId, NodeKey, RouteSelection, TailnetId,
    TailnetSettings, Timestamp, UserId,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::NEVER_EXPIRES;
use crate::command::{Capabilities, CreateCapabilities, DeviceCapabilities, role_str};

/// The MagicDNS names of devices (SPEC §5, issue 13): a device's `name` is its machine name
/// under its tailnet's domain, `<machine>.tail<8 hex>.<suffix>`, as Tailscale's
/// `pangolin.tailfe8c.ts.net`. The tailnet label is derived from the tailnet id (stable, and
/// DNS-safe where the id's mixed case is not); the suffix is the service's `--dns-suffix`, the
/// same for every role that builds a device (command service and projections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicDns {
    suffix: String,
}

/// The default `--dns-suffix`: `.internal` is reserved for private use (ICANN, 2024), so it
/// never collides with a public name.
pub const DNS_SUFFIX_DEFAULT: &str = "authkeys.internal";

impl Default for MagicDns {
    fn default() -> Self {
        Self {
            suffix: DNS_SUFFIX_DEFAULT.to_owned(),
        }
    }
}

impl MagicDns {
    /// A suffix of DNS labels (letters, digits, hyphens; 1–63 characters each, not starting or
    /// ending with a hyphen), at most 200 characters; a leading or trailing dot is ignored.
    pub fn new(suffix: &str) -> Result<Self, String> {
        let suffix = suffix.trim_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if suffix.is_empty() || suffix.len() > 200 || !suffix.split('.').all(label_ok) {
            return Err(format!(
                "{suffix:?} is not a DNS suffix: dot-separated labels of letters, digits and \
                 hyphens, at most 200 characters"
            ));
        }
        Ok(Self { suffix })
    }

    /// The suffix, e.g. `authkeys.internal`.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The tailnet's domain, `tail<8 hex of blake3(tailnet id)>.<suffix>`.
    pub fn tailnet_domain(&self, tailnet: &str) -> String {
        let h = blake3::hash(tailnet.as_bytes());
        format!("tail{}.{}", hex::encode(&h.as_bytes()[..4]), self.suffix)
    }

    /// A device's full name: its machine name under the tailnet's domain.
    pub fn device_name(&self, tailnet: &str, machine: &str) -> String {
        format!("{machine}.{}", self.tailnet_domain(tailnet))
    }
}

/// A device as the HTTP API and the registrar replies show it (SPEC §5), with the fields of
/// Tailscale's device object (`publicapi/device.md` in tailscale/tailscale; the Go client's
/// `Device` in tailscale-client-go-v2 `devices.go`). Values authkeys cannot know (it is a
/// control plane for keys, not a coordination server: no client version, machine key, routes or
/// connectivity reports) are Tailscale's empty values, never invented ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    /// Tailscale IPs (R17): the IPv4 then the IPv6; empty only for nodes registered before
    /// addresses existed.
    pub addresses: Vec<String>,
    /// The device's id (the node id).
    pub id: String,
    /// The node id, stable for the node's life.
    pub node_id: String,
    /// The login name of the owner: the user who generated the key (R06).
    pub user: String,
    /// The MagicDNS name, `<machine name>.<tailnet domain>` ([`MagicDns`]).
    pub name: String,
    /// Host name as reported.
    pub hostname: String,
    /// The Tailscale client's version: not reported to authkeys, so empty.
    pub client_version: String,
    /// Whether a client update is available: unknown, so false.
    pub update_available: bool,
    /// OS as reported, may be empty.
    pub os: String,
    /// First registration.
    pub created: Timestamp,
    /// Last connect or disconnect report; omitted while connected and before the first report,
    /// as Tailscale omits it for connected devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// R14.
    pub key_expiry_disabled: bool,
    /// When the node key expires, RFC 3339; `0001-01-01T00:00:00Z` when expiry is disabled.
    pub expires: String,
    /// R03.
    pub authorized: bool,
    /// Shared in from another tailnet: authkeys has no sharing, so false.
    pub is_external: bool,
    /// The machine key: not known to authkeys, so empty.
    pub machine_key: String,
    /// The node's key.
    pub node_key: String,
    /// Blocks incoming connections: not reported, so false.
    pub blocks_incoming_connections: bool,
    /// ACL tags (R05).
    pub tags: Vec<String>,
    /// Why the node is locked out under tailnet lock; empty when it is not (R04).
    pub tailnet_lock_error: String,
    /// The lock key that signed the node (`tlpub:…`), empty when none did (R04). Tailscale shows
    /// the node's own lock key here; authkeys nodes have none, and the signer is what an admin
    /// needs to see.
    pub tailnet_lock_key: String,
    /// R02.
    pub is_ephemeral: bool,
    /// Connected to the control plane, per its registrar.
    pub connected_to_control: bool,
    /// More than one connection with this node key: not tracked, so false.
    pub multiple_connections: bool,
    /// The key of its last (re-)authentication (an authkeys extension).
    pub auth_key_id: String,
    /// `?fields=all` only: subnet routes enabled by an admin (none: authkeys has no routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_routes: Option<Vec<String>>,
    /// `?fields=all` only: subnet routes the device advertises (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_routes: Option<Vec<String>>,
    /// `?fields=all` only: the connectivity report (none is known: Tailscale's empty report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_connectivity: Option<ClientConnectivity>,
}

/// Tailscale's `clientConnectivity`, as empty as the Go client decodes it when nothing is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnectivity {
    /// UDP endpoints.
    pub endpoints: Vec<String>,
    /// Preferred DERP region.
    pub derp: String,
    /// NAT mapping varies by destination.
    #[serde(rename = "mappingVariesByDestIP")]
    pub mapping_varies_by_dest_ip: bool,
    /// DERP latencies by region name.
    pub latency: std::collections::BTreeMap<String, serde_json::Value>,
    /// Features the client supports.
    pub client_supports: ClientSupports,
}

/// Tailscale's `clientConnectivity.clientSupports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSupports {
    /// Hair-pinning.
    pub hair_pinning: bool,
    /// IPv6.
    pub ipv6: bool,
    /// PCP.
    pub pcp: bool,
    /// NAT-PMP.
    pub pmp: bool,
    /// UDP.
    pub udp: bool,
    /// UPnP.
    pub upnp: bool,
}

impl Device {
    /// The one builder of a device: from a node as the command state and the machines view both
    /// keep it ([`authkeys_domain::state::Node`]), with its tailnet, its owner's login name
    /// (empty if the user is unknown) and the service's [`MagicDns`].
    pub fn build(tailnet: &str, node_id: &str, n: &Node, user_login: &str, dns: &MagicDns) -> Self {
        Self {
            addresses: n
                .addresses
                .map(|a| vec![a.ipv4.to_string(), a.ipv6.to_string()])
                .unwrap_or_default(),
            id: node_id.to_owned(),
            node_id: node_id.to_owned(),
            user: user_login.to_owned(),
            name: dns.device_name(tailnet, &n.name),
            hostname: n.hostname.to_string(),
            client_version: String::new(),
            update_available: false,
            os: n.os.clone(),
            created: n.created,
            last_seen: n.last_seen.filter(|_| !n.connected),
            key_expiry_disabled: n.key_expiry_disabled,
            expires: n
                .expires
                .map_or_else(|| NEVER_EXPIRES.to_owned(), |e| e.to_string()),
            authorized: n.authorized,
            is_external: false,
            machine_key: String::new(),
            node_key: n.node_key.to_string(),
            blocks_incoming_connections: false,
            tags: n.tags.iter().map(ToString::to_string).collect(),
            tailnet_lock_error: n.tailnet_lock_error.clone().unwrap_or_default(),
            tailnet_lock_key: n.signed_by.map(|k| k.to_string()).unwrap_or_default(),
            is_ephemeral: n.ephemeral,
            connected_to_control: n.connected,
            multiple_connections: false,
            auth_key_id: n.auth_key_id.to_string(),
            enabled_routes: None,
            advertised_routes: None,
            client_connectivity: None,
        }
    }

    /// The device with the fields of `?fields=all` (what authkeys knows of them: nothing).
    #[must_use]
    pub fn with_all_fields(mut self) -> Self {
        self.enabled_routes = Some(Vec::new());
        self.advertised_routes = Some(Vec::new());
        self.client_connectivity = Some(ClientConnectivity::default());
        self
    }
}

/// The device `node_id` of `tailnet`, if it exists.
pub fn device_view(
    state: &State,
    tailnet: &TailnetId,
    node_id: &NodeId,
    dns: &MagicDns,
) -> Option<Device> {
    let t = state.tailnet(tailnet)?;
    let n = t.nodes.get(node_id)?;
    // A removed user's nodes stay (R11) and still show whose they were.
    let login = t
        .users
        .get(&n.user_id)
        .map(|u| &u.login_name)
        .or_else(|| t.removed_logins.get(&n.user_id))
        .map(LoginName::as_str);
    Some(Device::build(
        tailnet.as_str(),
        node_id.as_str(),
        n,
        login.unwrap_or_default(),
        dns,
    ))
}

/// The device of the node that holds `node_key`, with its tailnet.
pub fn device_by_node_key(state: &State, node_key: &NodeKey, dns: &MagicDns) -> Option<Device> {
    let (tid, nid) = state.node_keys.get(node_key)?;
    device_view(state, tid, nid, dns)
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

/// An API access token as the keys API shows it (`keyType: "api"`, R18): listed, read and
/// revoked like a key, by its own user. Never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenKey {
    /// The token id.
    pub id: String,
    /// The secret, `tskey-api-…`: in the create response only, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Always `api`.
    pub key_type: String,
    /// Free text (authkeys' tokens have none).
    pub description: String,
    /// Issued.
    pub created: Timestamp,
    /// When it stops working.
    pub expires: Timestamp,
    /// Its lifetime, from its issue to its expiry.
    pub expiry_seconds: u64,
    /// When it stopped working: revoked or expired; absent while usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Timestamp>,
    /// True once it cannot be used.
    pub invalid: bool,
    /// Whose it is.
    pub user_id: String,
}

impl TokenKey {
    /// The one builder of a token as a key, as of `now`.
    pub fn build(t: &crate::query::TokenInfo, now: Timestamp) -> Self {
        let expired = (now >= t.expires).then_some(t.expires);
        let revoked = match (t.revoked_at, expired) {
            (Some(r), Some(e)) => Some(r.min(e)),
            (r, e) => r.or(e),
        };
        Self {
            id: t.token_id.clone(),
            key: None,
            key_type: "api".to_owned(),
            description: String::new(),
            created: t.created,
            expires: t.expires,
            // To the nearest second: a token's expiry is set when it is minted, a few ms before
            // the event that records it.
            expiry_seconds: u64::try_from(
                (t.expires.unix_ms().saturating_sub(t.created.unix_ms()) + 500) / 1000,
            )
            .unwrap_or_default(),
            revoked,
            invalid: revoked.is_some(),
            user_id: t.user_id.clone(),
        }
    }
}

/// An OAuth client as the keys API shows it (`keyType: "client"`, R19).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientKey {
    /// The client id.
    pub id: String,
    /// The secret, `tskey-client-…`: in the create response only, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `client`, or `federated` for a federated identity (R20).
    pub key_type: String,
    /// Free text.
    pub description: String,
    /// Created.
    pub created: Timestamp,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Deleted (its access tokens stopped).
    pub invalid: bool,
    /// Empty: a client is no user's.
    pub user_id: String,
    /// A federated identity's issuer (R20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// A federated identity's subject pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A federated identity's audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// A federated identity's claim rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_claim_rules: Option<std::collections::BTreeMap<String, String>>,
}

debug_redacting!(ClientKey { id, invalid } secrets { key });

impl ClientKey {
    /// The one builder of a client as a key, without its secret.
    pub fn build(c: &crate::query::ClientInfo) -> Self {
        Self::of(
            &c.client_id,
            &c.description,
            c.created,
            c.scopes.clone(),
            c.tags.clone(),
            c.deleted,
            c.federated.as_ref(),
        )
    }

    /// A client from its parts.
    pub fn of(
        id: &str,
        description: &str,
        created: Timestamp,
        scopes: Vec<String>,
        tags: Vec<String>,
        invalid: bool,
        federated: Option<&authkeys_events::FederatedSpec>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            key: None,
            key_type: if federated.is_some() {
                "federated"
            } else {
                "client"
            }
            .to_owned(),
            description: description.to_owned(),
            created,
            scopes,
            tags,
            invalid,
            user_id: String::new(),
            issuer: federated.map(|f| f.issuer.clone()),
            subject: federated.map(|f| f.subject.clone()),
            audience: federated.map(|f| f.audience.clone()),
            custom_claim_rules: federated.map(|f| f.custom_claim_rules.clone()),
        }
    }
}

/// The key `key_id` of `tailnet` as of `now` (which decides `invalid`), without its secret.
pub fn key_view(state: &State, tailnet: &TailnetId, key_id: &KeyId, now: Timestamp) -> Option<Key> {
    let k = state.tailnet(tailnet)?.keys.get(key_id)?;
    Some(Key::build(key_id.as_str(), k, now))
}

/// A user as Tailscale's API shows it (`GET /tailnet/{tailnet}/users`, `GET /users/{id}`;
/// the PyPI client's `TailscaleUser`, the Go client's `users.go`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// The user's id.
    pub id: String,
    /// Display name: authkeys knows only the login name, so that.
    pub display_name: String,
    /// Login name.
    pub login_name: String,
    /// Profile picture: none.
    pub profile_pic_url: String,
    /// The tailnet's id.
    pub tailnet_id: String,
    /// When the user was added.
    pub created: Timestamp,
    /// `member` (authkeys has no users shared in from other tailnets).
    #[serde(rename = "type")]
    pub user_type: String,
    /// Role, as the API spells it.
    pub role: String,
    /// `active`, or `suspended` (R21).
    pub status: String,
    /// Devices the user owns (untagged; tagged devices belong to their tags).
    pub device_count: u64,
    /// The latest `lastSeen` of those devices; omitted when none has been seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// One of those devices is connected.
    pub currently_connected: bool,
}

/// What the machines view knows of a user's devices, for [`User`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserDevices {
    /// How many.
    pub count: u64,
    /// The latest seen.
    pub last_seen: Option<Timestamp>,
    /// Any connected.
    pub connected: bool,
}

impl UserDevices {
    /// Counts one more device.
    pub fn add(&mut self, n: &Node) {
        self.count += 1;
        self.last_seen = self.last_seen.max(n.last_seen);
        self.connected |= n.connected;
    }
}

impl User {
    /// The one builder of a user.
    pub fn build(
        tailnet: &str,
        user_id: &str,
        login_name: &str,
        role: authkeys_events::Role,
        suspended: bool,
        created: Timestamp,
        devices: UserDevices,
    ) -> Self {
        Self {
            id: user_id.to_owned(),
            display_name: login_name.to_owned(),
            login_name: login_name.to_owned(),
            profile_pic_url: String::new(),
            tailnet_id: tailnet.to_owned(),
            created,
            user_type: "member".to_owned(),
            role: role_str(role).to_owned(),
            status: if suspended { "suspended" } else { "active" }.to_owned(),
            device_count: devices.count,
            last_seen: devices.last_seen,
            currently_connected: devices.connected,
        }
    }
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

/// A tailnet's settings as the HTTP API shows them: every field of Tailscale's settings object
/// (tailscale-client-go-v2 `tailnet_settings.go`), those authkeys does not act on as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsView {
    /// Kept.
    pub acls_externally_managed_on: bool,
    /// Kept.
    pub acls_external_link: String,
    /// R03.
    pub devices_approval_on: bool,
    /// Kept.
    pub devices_auto_updates_on: bool,
    /// R14.
    pub devices_key_duration_days: u16,
    /// Kept.
    pub users_approval_on: bool,
    /// Kept.
    pub users_role_allowed_to_join_external_tailnets: ExternalJoinRole,
    /// Kept.
    pub network_flow_logging_on: bool,
    /// Whether `routeSelection` is `regional-routing` (Tailscale's deprecated field).
    pub regional_routing_on: bool,
    /// Kept.
    pub posture_identity_collection_on: bool,
    /// Kept.
    pub https_enabled: bool,
    /// Kept.
    pub route_selection: RouteSelection,
}

impl SettingsView {
    /// The one builder of the settings: from a tailnet's settings as the command state and the
    /// identity view both keep them.
    pub fn build(s: &TailnetSettings) -> Self {
        let k = &s.kept;
        let route_selection = k
            .route_selection
            .unwrap_or(RouteSelection::ActivePassiveFailover);
        Self {
            acls_externally_managed_on: k.acls_externally_managed_on.unwrap_or_default(),
            acls_external_link: k.acls_external_link.clone().unwrap_or_default(),
            devices_approval_on: s.devices_approval_on,
            devices_auto_updates_on: k.devices_auto_updates_on.unwrap_or_default(),
            devices_key_duration_days: s.devices_key_duration_days.get(),
            users_approval_on: k.users_approval_on.unwrap_or_default(),
            users_role_allowed_to_join_external_tailnets: k
                .users_role_allowed_to_join_external_tailnets
                .unwrap_or(ExternalJoinRole::Member),
            network_flow_logging_on: k.network_flow_logging_on.unwrap_or_default(),
            regional_routing_on: route_selection == RouteSelection::RegionalRouting,
            posture_identity_collection_on: k.posture_identity_collection_on.unwrap_or_default(),
            https_enabled: k.https_enabled.unwrap_or_default(),
            route_selection,
        }
    }
}

/// The settings of `tailnet`, if it exists.
pub fn settings_view(state: &State, tailnet: &TailnetId) -> Option<SettingsView> {
    Some(SettingsView::build(&state.tailnet(tailnet)?.settings))
}

//! Tailscale's configuration audit log records, derived from the event log.
//!
//! One record per configuration change (`GET /api/v2/tailnet/{tailnet}/logging/configuration`),
//! in Tailscale's `ConfigurationAuditLog` shape: `eventTime`, `type: "CONFIG"`, `deferredAt`,
//! `eventGroupID`, `origin`, `actor{id, type, loginName, displayName, tags}`,
//! `target{id, name, type, isEphemeral, property}`, `action`, `old`, `new`, `actionDetails`,
//! plus the event's `seq` and chain `hash`, so that every record can be checked against
//! `authkeys audit verify`.
//!
//! # Sources
//!
//! - Tailscale's OpenAPI description of API v2, as vendored by Tailscale's Go client:
//!   `tailscale/tailscale-client-go-v2`, `tools/openapi/spec/tailscale-v2-openapi.yaml`
//!   (the `ConfigurationAuditLog` schema: the `origin`, `actor.type`, `target.type`,
//!   `target.property` and `action` enums; the `listConfigurationAuditLogs` operation and its
//!   `start`, `end`, `actor`, `target` and `event` parameters; the `event` enum is
//!   [`TAILSCALE_EVENTS`]). Served at <https://tailscale.com/api#tag/logging>.
//! - <https://tailscale.com/kb/1203/audit-logging> (now
//!   <https://tailscale.com/docs/features/logging/audit-logging>): actions made by the control
//!   plane have the Tailscale service as actor ("Service events"); the target of a tailnet-wide
//!   setting is the tailnet; `old`/`new` carry the values before and after ("for
//!   re-authenticating a node, you'll see the old node key expiry" and the new one).
//! - Records Tailscale sent, as kept in Panther's detection tests
//!   (`panther-labs/pypanther`, `pypanther/rules/tailscale/*.py`; the same in
//!   `panther-labs/panther-analysis`, `rules/tailscale_rules/`): a tailnet toggle is
//!   `{action: "DISABLE", target: {type: "TAILNET", property: "MACHINE_APPROVAL_NEEDED"}}` with
//!   no `old`/`new` (also `MAGIC_DNS`, `HTTPS`); an auth key's creation is
//!   `{action: "CREATE", target: {type: "API_KEY"}, new: {}}`: auth keys and API access tokens
//!   are both `API_KEY` targets (the target enum has no other key type).
//!
//! An **event name**, what the `event` filter takes, is `TARGET_TYPE.ACTION[.PROPERTY]`
//! ([`Record::event`]), e.g. `NODE.UPDATE.ACL_TAGS`; the record itself carries the verb
//! (`action: "UPDATE"`) and `target.type`/`target.property` separately.
//!
//! # The mapping
//!
//! | authkeys event | event name | `old` → `new` |
//! |---|---|---|
//! | `TailnetCreated` | `TAILNET.CREATE` | → the settings as the event has them (`{devicesApprovalOn, devicesKeyDurationDays, tailnetLockOn, kept?}`) |
//! | `TailnetSettingsChanged`, one record per setting it changes, in this order: | | |
//! | — `devicesApprovalOn` | `TAILNET.ENABLE.MACHINE_APPROVAL_NEEDED` / `TAILNET.DISABLE.MACHINE_APPROVAL_NEEDED` | none: the verb is the value (as in Tailscale's records of toggles) |
//! | — `devicesKeyDurationDays` | `TAILNET.UPDATE.MAX_KEY_DURATION` | days before → days after (numbers) |
//! | — `tailnetLockOn` | `TAILNET.ENABLE.TKA` / `TAILNET.DISABLE.TKA` | none |
//! | — `usersApprovalOn` | `TAILNET.ENABLE.USER_APPROVAL_REQUIRED` / `….DISABLE.…` | none |
//! | — `networkFlowLoggingOn` | `TAILNET.ENABLE.NETWORK_FLOW_LOGGING` / `….DISABLE.…` | none |
//! | — `postureIdentityCollectionOn` | `TAILNET.ENABLE.COLLECT_POSTURE_IDENTITY` / `….DISABLE.…` | none |
//! | — `httpsEnabled` | `TAILNET.ENABLE.HTTPS` / `TAILNET.DISABLE.HTTPS` | none |
//! | — `devicesAutoUpdatesOn`, `usersRoleAllowedToJoinExternalTailnets`, `routeSelection`, `aclsExternallyManagedOn`, `aclsExternalLink` | `TAILNET.UPDATE` ⁴ | → `{<field>: value}` |
//! | `UserAdded` | `USER.CREATE` | → `{role}` |
//! | `UserRoleChanged` | `USER.UPDATE.USER_ROLE` | role → role (`"admin"`, `"it-admin"`, …) |
//! | `UserRemoved` | `USER.DELETE` | none (the tokens and keys it revoked have their own `API_KEY.REVOKE` records, in the same `eventGroupID`) |
//! | `UserSuspended` | `USER.SUSPEND` | none |
//! | `UserRestored` | `USER.RESTORE` | none |
//! | `ApiTokenIssued` | `API_KEY.CREATE` | → `{keyType: "api", userId, expires}` |
//! | `ApiTokenRevoked` | `API_KEY.REVOKE` | none |
//! | `OAuthClientCreated` | `API_KEY.CREATE` | → `{keyType: "client", description, scopes, tags}` |
//! | `OAuthClientDeleted` | `API_KEY.REVOKE` | none |
//! | `AccessTokenIssued` | no record (the client's use of its secret, as `KeyUsed`) | |
//! | `KeyGenerated` | `API_KEY.CREATE` | → the API's key object: `{keyType: "auth", description, userId, expirySeconds, expires, capabilities.devices.create{reusable, ephemeral, preauthorized, tags}}` |
//! | `KeyRevoked` | `API_KEY.REVOKE` | none |
//! | `KeyExpired` | `API_KEY.EXPIRED` | → `{expires}` |
//! | `NodeRegistered` | `NODE.CREATE` | → device fields `{hostname, os, userId, tags, authKeyId, isEphemeral, authorized, keyExpiryDisabled, expires, addresses?, tailnetLockError?}` |
//! | `NodeReauthenticated` | `NODE.UPDATE.KEY_EXPIRY_TIME` ² | → the new node-key expiry (`null`: expiry disabled) |
//! | `NodeAuthorized`, `true` | `NODE.APPROVE` | none |
//! | `NodeAuthorized`, `false` | `NODE.REVOKE` ³ | none |
//! | `NodeKeyExpirySet` | `NODE.DISABLE.KEY_EXPIRY` / `NODE.ENABLE.KEY_EXPIRY` | none |
//! | `NodeExpired` | `NODE.EXPIRED.KEY_EXPIRY_TIME` | → the expiry time |
//! | `TagsChanged` | `NODE.UPDATE.ACL_TAGS` | tags → tags (arrays) |
//! | `NodeSigned` | `NODE.UPDATE.TKA` | → `{lockKey, keyId?}` (`keyId`: signed by the pre-signed key it registered with) |
//! | `TailnetLockEnabled` | `TAILNET.ENABLE.TKA` | → `{trustedKeys}` |
//! | `TrustedLockKeysChanged` | `TAILNET.UPDATE.TKA` ¹ | → `{trustedKeys, signer}` |
//! | `TailnetLockDisabled` | `TAILNET.DISABLE.TKA` | none |
//! | `NodeDeleted` | `NODE.DELETE` | none; `actionDetails`: `reason: admin` or `reason: ephemeral-inactive` |
//! | `WebhookCreated` | `WEBHOOK_ENDPOINT.CREATE` (target name: the URL) | → `{endpointUrl, providerType, subscriptions}` |
//! | `WebhookUpdated` | `WEBHOOK_ENDPOINT.UPDATE.SUBSCRIBED_EVENTS` | → the subscriptions |
//! | `WebhookSecretRotated` | `WEBHOOK_ENDPOINT.UPDATE.SECRET` | none (no event holds a secret) |
//! | `WebhookDeleted` | `WEBHOOK_ENDPOINT.DELETE` | none |
//! | `KeyUsed`, `NodeConnected`, `NodeDisconnected` | — | not configuration changes: no record (a registration's record is its `NODE.CREATE`, which names the key) |
//!
//! Where Tailscale has no exact equivalent:
//! 1. Tailscale's TKA names (`TAILNET.CREATE`/`UPDATE`/`DELETE`/`ENABLE`/`DISABLE.TKA`,
//!    `NODE.UPDATE.TKA`) record its own key authority; authkeys records turning the lock on
//!    and off as `ENABLE`/`DISABLE` and a new trusted set, with the key that signed it, as
//!    `TAILNET.UPDATE.TKA`.
//! 2. Re-authenticating a node is, to Tailscale's audit log, a change of the node key's expiry
//!    (kb 1203: "for re-authenticating a node, you'll see the old node key expiry"). The event
//!    does not carry the expiry before, so `old` is absent; `actionDetails` names the auth key
//!    and the tags the node has now.
//! 3. `POST /device/{id}/authorized {"authorized": false}` "revokes its authorization" (the API
//!    description): `NODE.REVOKE` is Tailscale's only verb for it.
//! 4. Tailscale's audit log names no property for these settings (its property enum has no
//!    auto-update, external-join, route-selection or external-policy entry; whether its
//!    `GEOSTEERING` is `routeSelection` is not documented). The record says what changed with the
//!    settings object's own field name in `new`, under no property: `TAILNET.UPDATE` is the
//!    one event name outside Tailscale's enum ([`AUTHKEYS_EVENTS`]).
//!
//! Value shapes follow Tailscale's: tags as arrays, roles as the API spells them, times as
//! RFC 3339, numbers as numbers. Toggles (`ENABLE`/`DISABLE`, `APPROVE`/`REVOKE`) carry no
//! `old`/`new`, as Tailscale's records of them do not. `isEphemeral` is set (`true`) only on
//! ephemeral nodes' targets. `deferredAt` is Go's zero time, as in Tailscale's own example,
//! since no record is ever deferred here.
//!
//! # Actors and origins
//!
//! [`actor_kind`] is the whole table (one line per kind of actor):
//!
//! | envelope actor | `actor.type` | `actor.id` | `origin` |
//! |---|---|---|---|
//! | `user` (an API token) | `USER`, with `loginName` and `displayName` (the login name: authkeys knows no other) | the user id | `CONFIG_API` (the admin console, when it has its own origin, is `ADMIN_CONSOLE`; today every user change comes through the API) |
//! | `registrar` | `NODE`: the registrar acts for the node, which Tailscale names as actor | the node's id; `actionDetails` names the registrar (`registrar <name>`), which NATS authenticated | `NODE` |
//! | `system` (bootstrap, timers) | `AUTOMATED_WORKER`, Tailscale's actor type for its control plane's own actions | `bootstrap`, `timers` | `CONTROL` |
//! | `oauth` | `OAUTH_CLIENT` | the client id | `CONFIG_API` |
//!
//! A node actor's `tags` (to Tailscale, the tags owning the node) are not recorded: a node's tags
//! change, and the gateway keeps between requests only what never does (below).
//!
//! `eventGroupID` is the command id: the records of one command share it. Names come from the
//! events before (a user's login name, a node's machine name, a key's description); all of them
//! are immutable per id, so folding them up to the head is right for any window.
//!
//! # Filters
//!
//! [`Filter`]: the endpoint's `actor`, `target` and `event` query parameters, each repeatable
//! (an OpenAPI array parameter, form style, exploded: `actor=a&actor=b`). A record is kept when
//! it matches every parameter given, and a parameter when the record matches any of its values:
//! - `actor`: "either exact actor IDs or a wildcard search on login name or display name
//!   indicated as `~search`": `~bob` keeps records whose actor's login or display name contains
//!   `bob` (ignoring case); anything else is an actor id, matched exactly.
//! - `target`: "attempts to match any part of any of the targets to any of the given strings":
//!   kept when the target's id or name contains the string (ignoring case).
//! - `event`: event names, matched exactly (`NODE.CREATE`, `USER.UPDATE.USER_ROLE`, …).
//!
//! No value is refused: an unknown event name or actor id matches nothing, so the answer is an
//! empty `logs`. (Tailscale's `event` enum changes as its features do: 116 names in the vendored
//! description, more in later ones; refusing names this build does not know would refuse valid
//! requests, and nothing documents that Tailscale refuses any.) Empty values are ignored.

use std::collections::{BTreeMap, HashMap};

use authkeys_events::{
    ActorType, Envelope, Event, EventType, Hash, KeptSettings, Tags, TailnetId, Timestamp,
};
use serde::Serialize;
use serde_json::{Value, json};

/// `type` of every record.
pub const RECORD_TYPE: &str = "CONFIG";

/// `deferredAt` of every record: Go's zero time, which Tailscale sends for a record that was
/// not deferred by its rate limiter.
pub const NOT_DEFERRED: &str = "0001-01-01T00:00:00Z";

/// Tailscale's `actor.type` and `origin` for each kind of authkeys actor (see the module docs).
pub fn actor_kind(t: ActorType) -> (&'static str, &'static str) {
    match t {
        ActorType::User => ("USER", "CONFIG_API"),
        ActorType::Registrar => ("NODE", "NODE"),
        ActorType::System => ("AUTOMATED_WORKER", "CONTROL"),
        ActorType::Oauth => ("OAUTH_CLIENT", "CONFIG_API"),
    }
}

/// The event names each event type's records may have; `None` for a type this module does not
/// know yet (a unit test fails until it is added here and to the table above).
pub fn event_names(t: EventType) -> Option<&'static [&'static str]> {
    Some(match t {
        EventType::TailnetCreated => &["TAILNET.CREATE"],
        EventType::TailnetSettingsChanged => &[
            "TAILNET.ENABLE.MACHINE_APPROVAL_NEEDED",
            "TAILNET.DISABLE.MACHINE_APPROVAL_NEEDED",
            "TAILNET.UPDATE.MAX_KEY_DURATION",
            "TAILNET.ENABLE.TKA",
            "TAILNET.DISABLE.TKA",
            "TAILNET.ENABLE.USER_APPROVAL_REQUIRED",
            "TAILNET.DISABLE.USER_APPROVAL_REQUIRED",
            "TAILNET.ENABLE.NETWORK_FLOW_LOGGING",
            "TAILNET.DISABLE.NETWORK_FLOW_LOGGING",
            "TAILNET.ENABLE.COLLECT_POSTURE_IDENTITY",
            "TAILNET.DISABLE.COLLECT_POSTURE_IDENTITY",
            "TAILNET.ENABLE.HTTPS",
            "TAILNET.DISABLE.HTTPS",
            "TAILNET.UPDATE",
        ],
        EventType::UserAdded => &["USER.CREATE"],
        EventType::UserRoleChanged => &["USER.UPDATE.USER_ROLE"],
        EventType::UserRemoved => &["USER.DELETE"],
        EventType::UserSuspended => &["USER.SUSPEND"],
        EventType::UserRestored => &["USER.RESTORE"],
        EventType::ApiTokenIssued | EventType::KeyGenerated | EventType::OAuthClientCreated => {
            &["API_KEY.CREATE"]
        }
        EventType::ApiTokenRevoked | EventType::KeyRevoked | EventType::OAuthClientDeleted => {
            &["API_KEY.REVOKE"]
        }
        // An access token is the client's to use, not a configuration change (as a key's use).
        EventType::AccessTokenIssued => &[],
        EventType::KeyExpired => &["API_KEY.EXPIRED"],
        EventType::TailnetLockEnabled => &["TAILNET.ENABLE.TKA"],
        EventType::TrustedLockKeysChanged => &["TAILNET.UPDATE.TKA"],
        EventType::TailnetLockDisabled => &["TAILNET.DISABLE.TKA"],
        EventType::NodeRegistered => &["NODE.CREATE"],
        EventType::NodeReauthenticated => &["NODE.UPDATE.KEY_EXPIRY_TIME"],
        EventType::NodeAuthorized => &["NODE.APPROVE", "NODE.REVOKE"],
        EventType::NodeKeyExpirySet => &["NODE.DISABLE.KEY_EXPIRY", "NODE.ENABLE.KEY_EXPIRY"],
        EventType::NodeExpired => &["NODE.EXPIRED.KEY_EXPIRY_TIME"],
        EventType::TagsChanged => &["NODE.UPDATE.ACL_TAGS"],
        EventType::NodeSigned => &["NODE.UPDATE.TKA"],
        EventType::NodeDeleted => &["NODE.DELETE"],
        EventType::KeyUsed | EventType::NodeConnected | EventType::NodeDisconnected => &[],
        EventType::WebhookCreated => &["WEBHOOK_ENDPOINT.CREATE"],
        EventType::WebhookUpdated => &["WEBHOOK_ENDPOINT.UPDATE.SUBSCRIBED_EVENTS"],
        EventType::WebhookSecretRotated => &["WEBHOOK_ENDPOINT.UPDATE.SECRET"],
        EventType::WebhookDeleted => &["WEBHOOK_ENDPOINT.DELETE"],
        _ => return None,
    })
}

/// Event names authkeys records that Tailscale's `event` enum does not list (see the table).
pub const AUTHKEYS_EVENTS: &[&str] = &["TAILNET.UPDATE"];

/// Tailscale's `event` enum of `GET /tailnet/{tailnet}/logging/configuration`, as the vendored
/// OpenAPI description lists it (see the module docs): what a Tailscale client may filter by.
pub const TAILSCALE_EVENTS: &[&str] = &[
    "ADMIN_CONSOLE.LOGIN",
    "ADMIN_CONSOLE.LOGOUT",
    "API_KEY.CREATE",
    "API_KEY.EXPIRED",
    "API_KEY.REVOKE",
    "BILLING.CANCEL.SUBSCRIPTION",
    "BILLING.CREATE.SUBSCRIPTION",
    "BILLING.UPDATE.ADDRESS",
    "BILLING.UPDATE.BILLING_OWNER",
    "BILLING.UPDATE.EMAIL",
    "BILLING.UPDATE.PAYMENT_INFO",
    "BILLING.UPDATE.STRIPE_CUSTOMER_ID",
    "BILLING.UPDATE.SUBSCRIPTION",
    "FAILED_REQUEST.UPDATE",
    "GROUP.PUSH_GROUP.ATTRIBUTES",
    "INVITE.ACCEPT.FEATURE",
    "INVITE.ACCEPT.NODE_SHARE",
    "INVITE.ACCEPT.TAILNET_INVITE",
    "INVITE.CREATE.FEATURE",
    "INVITE.CREATE.NODE_SHARE",
    "INVITE.CREATE.TAILNET_INVITE",
    "INVITE.DELETE.NODE_SHARE",
    "INVITE.DELETE.TAILNET_INVITE",
    "INVITE.RESEND.NODE_SHARE",
    "INVITE.RESEND.TAILNET_INVITE",
    "NODE.APPROVE",
    "NODE.CREATE",
    "NODE.CREATE.ATTRIBUTES",
    "NODE.DELETE",
    "NODE.DELETE.ATTRIBUTES",
    "NODE.DISABLE.KEY_EXPIRY",
    "NODE.DISCONNECT_NODE.CLIENT_LOG",
    "NODE.ENABLE.KEY_EXPIRY",
    "NODE.EXPIRED.KEY_EXPIRY_TIME",
    "NODE.LOGIN",
    "NODE.LOGOUT",
    "NODE.REVOKE",
    "NODE.UPDATE.ACL_TAGS",
    "NODE.UPDATE.ALLOWED_IPS",
    "NODE.UPDATE.ATTRIBUTES",
    "NODE.UPDATE.AUTO_APPROVED_ROUTES",
    "NODE.UPDATE.EXIT_NODE",
    "NODE.UPDATE.KEY_EXPIRY_TIME",
    "NODE.UPDATE.MACHINE_NAME",
    "NODE.UPDATE.POSTURE_IDENTITY",
    "NODE.UPDATE.TKA",
    "SHARE.CREATE",
    "SHARE.DELETE",
    "SHARE.UPDATE",
    "TAILNET.ACCEPT.FEATURE",
    "TAILNET.CREATE",
    "TAILNET.CREATE.LOGSTREAM_ENDPOINT",
    "TAILNET.CREATE.POSTURE_INTEGRATION",
    "TAILNET.CREATE.TKA",
    "TAILNET.DELETE.LOGSTREAM_ENDPOINT",
    "TAILNET.DELETE.POSTURE_INTEGRATION",
    "TAILNET.DELETE.TKA",
    "TAILNET.DISABLE.COLLECT_POSTURE_IDENTITY",
    "TAILNET.DISABLE.COLLECT_SERVICES",
    "TAILNET.DISABLE.FILE_SHARING",
    "TAILNET.DISABLE.GEOSTEERING",
    "TAILNET.DISABLE.HTTPS",
    "TAILNET.DISABLE.LOG_EXIT_FLOWS",
    "TAILNET.DISABLE.MACHINE_APPROVAL_NEEDED",
    "TAILNET.DISABLE.MAGIC_DNS",
    "TAILNET.DISABLE.MULLVAD_VPN",
    "TAILNET.DISABLE.NETWORK_FLOW_LOGGING",
    "TAILNET.DISABLE.SCIM",
    "TAILNET.DISABLE.TKA",
    "TAILNET.DISABLE.USER_APPROVAL_REQUIRED",
    "TAILNET.ENABLE.COLLECT_POSTURE_IDENTITY",
    "TAILNET.ENABLE.COLLECT_SERVICES",
    "TAILNET.ENABLE.FILE_SHARING",
    "TAILNET.ENABLE.GEOSTEERING",
    "TAILNET.ENABLE.HTTPS",
    "TAILNET.ENABLE.LOG_EXIT_FLOWS",
    "TAILNET.ENABLE.MACHINE_APPROVAL_NEEDED",
    "TAILNET.ENABLE.MAGIC_DNS",
    "TAILNET.ENABLE.MULLVAD_VPN",
    "TAILNET.ENABLE.NETWORK_FLOW_LOGGING",
    "TAILNET.ENABLE.SCIM",
    "TAILNET.ENABLE.TKA",
    "TAILNET.ENABLE.USER_APPROVAL_REQUIRED",
    "TAILNET.JOIN",
    "TAILNET.JOIN_WAITLIST.FEATURE",
    "TAILNET.LEAVE",
    "TAILNET.UPDATE.ACCOUNT_EMAIL",
    "TAILNET.UPDATE.ACL",
    "TAILNET.UPDATE.DNS_CONFIG",
    "TAILNET.UPDATE.LOGSTREAM_ENDPOINT",
    "TAILNET.UPDATE.MAX_KEY_DURATION",
    "TAILNET.UPDATE.POSTURE_INTEGRATION",
    "TAILNET.UPDATE.SECURITY_EMAIL",
    "TAILNET.UPDATE.SUPPORT_EMAIL",
    "TAILNET.UPDATE.TCD",
    "TAILNET.UPDATE.TKA",
    "TAILNET.VERIFY.ACCOUNT_EMAIL",
    "TAILNET.VERIFY.SECURITY_EMAIL",
    "TAILNET.VERIFY.SUPPORT_EMAIL",
    "USER.APPROVE",
    "USER.CREATE",
    "USER.DELETE",
    "USER.INVITE",
    "USER.PUSH_USER.ATTRIBUTES",
    "USER.RESEND.TAILNET_INVITE",
    "USER.RESTORE",
    "USER.RESTORE_GLOBAL",
    "USER.SUSPEND",
    "USER.SUSPEND_GLOBAL",
    "USER.UPDATE.USER_ROLE",
    "WEBHOOK_ENDPOINT.CREATE",
    "WEBHOOK_ENDPOINT.DELETE",
    "WEBHOOK_ENDPOINT.UPDATE.SECRET",
    "WEBHOOK_ENDPOINT.UPDATE.SUBSCRIBED_EVENTS",
    "WEB_INTERFACE.LOGIN",
    "WEB_INTERFACE.LOGOUT",
];

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordActor {
    /// A user id, a node id (for a registrar), a service name or an OAuth client id.
    pub id: String,
    /// [`actor_kind`]: `USER`, `NODE`, `AUTOMATED_WORKER` or `OAUTH_CLIENT`.
    #[serde(rename = "type")]
    pub actor_type: &'static str,
    /// A user's login name (as of the event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_name: Option<String>,
    /// A user's display name (authkeys knows only the login name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The tags owning a node actor (not recorded here: see the module docs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// What a change was made to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordTarget {
    /// Its id (tailnet, user, node, key or token id).
    pub id: String,
    /// Its name (tailnet name, login name, machine name, key description), if known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `TAILNET`, `USER`, `NODE` or `API_KEY`.
    #[serde(rename = "type")]
    pub target_type: &'static str,
    /// `true` for an ephemeral node; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_ephemeral: Option<bool>,
    /// Which property changed, e.g. `ACL_TAGS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property: Option<&'static str>,
}

/// One configuration audit log record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// When.
    pub event_time: Timestamp,
    /// Always [`RECORD_TYPE`].
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// Always [`NOT_DEFERRED`].
    pub deferred_at: &'static str,
    /// The command id: records of one command share it.
    #[serde(rename = "eventGroupID")]
    pub event_group_id: String,
    /// `CONFIG_API`, `NODE` or `CONTROL` ([`actor_kind`]).
    pub origin: &'static str,
    /// Who.
    pub actor: RecordActor,
    /// What.
    pub target: RecordTarget,
    /// The verb, e.g. `UPDATE`.
    pub action: &'static str,
    /// The value of `target.property` before, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// More about the change: a deletion's reason, the registrar a node acted through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_details: Option<String>,
    /// The event's seq in the log.
    pub seq: u64,
    /// The event's chain hash.
    pub hash: Hash,
}

impl Record {
    /// Its event name, `TARGET_TYPE.ACTION[.PROPERTY]`, e.g. `NODE.UPDATE.ACL_TAGS`: what the
    /// `event` filter matches.
    pub fn event(&self) -> String {
        match self.target.property {
            Some(p) => format!("{}.{}.{p}", self.target.target_type, self.action),
            None => format!("{}.{}", self.target.target_type, self.action),
        }
    }
}

/// A node's immutable facts, kept for its later records.
#[derive(Debug, Clone)]
struct NodeFacts {
    name: String,
    ephemeral: bool,
}

/// What one tailnet's records need from the events before them. Everything is either immutable
/// per id or keyed by seq, so that folding an event twice (the gateway folds up to the head,
/// then again for a window) changes nothing and a record never depends on a later event.
#[derive(Debug, Default)]
struct Names {
    tailnet: String,
    users: HashMap<String, String>,
    nodes: HashMap<String, NodeFacts>,
    keys: HashMap<String, String>,
    /// Webhook endpoints' URLs (R23), by endpoint id.
    webhooks: HashMap<String, String>,
    /// `devicesKeyDurationDays` as set at each seq that set it.
    key_durations: BTreeMap<u64, u16>,
}

impl Names {
    fn fold(&mut self, env: &Envelope) {
        match &env.event {
            Event::TailnetCreated(e) => {
                self.tailnet = e.name.to_string();
                self.key_durations
                    .insert(env.seq.get(), e.settings.devices_key_duration_days.get());
            }
            Event::TailnetSettingsChanged(e) => {
                if let Some(d) = e.devices_key_duration_days {
                    self.key_durations.insert(env.seq.get(), d.get());
                }
            }
            Event::UserAdded(e) => {
                self.users
                    .insert(e.user_id.to_string(), e.login_name.to_string());
            }
            Event::ApiTokenIssued(e) => {
                let login = self.users.get(e.user_id.as_str()).cloned();
                self.keys.insert(
                    e.token_id.to_string(),
                    format!("API access token of {}", login.unwrap_or_default()),
                );
            }
            Event::KeyGenerated(e) => {
                self.keys
                    .insert(e.key_id.to_string(), e.description.to_string());
            }
            Event::OAuthClientCreated(e) => {
                self.keys
                    .insert(e.client_id.to_string(), e.description.to_string());
            }
            Event::NodeRegistered(e) => {
                self.nodes.insert(
                    e.node_id.to_string(),
                    NodeFacts {
                        name: e.name.clone(),
                        ephemeral: e.ephemeral,
                    },
                );
            }
            Event::WebhookCreated(e) => {
                self.webhooks
                    .insert(e.endpoint_id.to_string(), e.endpoint_url.to_string());
            }
            _ => {}
        }
    }

    fn webhook(&self, id: &str, property: Option<&'static str>) -> RecordTarget {
        let url = self
            .webhooks
            .get(id)
            .map(String::as_str)
            .unwrap_or_default();
        target(id, url, "WEBHOOK_ENDPOINT", property)
    }

    fn login(&self, user_id: &str) -> String {
        self.users.get(user_id).cloned().unwrap_or_default()
    }

    /// A user as a target: their id and login name (kept after a removal: ids are never
    /// reused).
    fn user(&self, user_id: &str) -> RecordTarget {
        target(user_id, &self.login(user_id), "USER", None)
    }

    /// The key duration in force just before `seq`.
    fn key_duration_before(&self, seq: u64) -> Option<u16> {
        self.key_durations.range(..seq).next_back().map(|(_, d)| *d)
    }

    fn tailnet(&self, env: &Envelope, property: Option<&'static str>) -> RecordTarget {
        target(env.tailnet.as_str(), &self.tailnet, "TAILNET", property)
    }

    fn node(&self, id: &str, property: Option<&'static str>) -> RecordTarget {
        let facts = self.nodes.get(id);
        RecordTarget {
            is_ephemeral: facts.is_some_and(|n| n.ephemeral).then_some(true),
            ..target(
                id,
                facts.map(|n| n.name.as_str()).unwrap_or_default(),
                "NODE",
                property,
            )
        }
    }

    fn key(&self, id: &str, property: Option<&'static str>) -> RecordTarget {
        let name = self.keys.get(id).map(String::as_str).unwrap_or_default();
        target(id, name, "API_KEY", property)
    }
}

fn target(id: &str, name: &str, ty: &'static str, property: Option<&'static str>) -> RecordTarget {
    RecordTarget {
        id: id.to_owned(),
        name: name.to_owned(),
        target_type: ty,
        is_ephemeral: None,
        property,
    }
}

fn tag_list(t: &Tags) -> Value {
    Value::from(t.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>())
}

fn tag_text(t: &Tags) -> String {
    if t.is_empty() {
        "none".to_owned()
    } else {
        t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// One record's own part: what changed, how, and the values.
struct Change {
    target: RecordTarget,
    action: &'static str,
    old: Option<Value>,
    new: Option<Value>,
    details: Option<String>,
}

impl Change {
    fn new(target: RecordTarget, action: &'static str) -> Self {
        Self {
            target,
            action,
            old: None,
            new: None,
            details: None,
        }
    }

    fn values(mut self, old: Option<Value>, new: Option<Value>) -> Self {
        self.old = old;
        self.new = new;
        self
    }

    fn details(mut self, details: String) -> Self {
        self.details = Some(details);
        self
    }
}

fn toggle(on: bool) -> &'static str {
    if on { "ENABLE" } else { "DISABLE" }
}

/// The changes an event records (see the table in the module docs).
fn changes(names: &Names, env: &Envelope) -> Vec<Change> {
    match &env.event {
        Event::TailnetCreated(e) => vec![Change::new(names.tailnet(env, None), "CREATE").values(
            None,
            Some(json!({
                "devicesApprovalOn": e.settings.devices_approval_on,
                "devicesKeyDurationDays": e.settings.devices_key_duration_days.get(),
                "tailnetLockOn": e.settings.tailnet_lock_on,
            })),
        )],
        Event::TailnetSettingsChanged(e) => {
            let toggled = |property: &'static str, on: Option<bool>| {
                on.map(|on| Change::new(names.tailnet(env, Some(property)), toggle(on)))
            };
            // Destructured so that a setting added to the event fails to compile until mapped.
            let KeptSettings {
                devices_auto_updates_on,
                users_approval_on,
                users_role_allowed_to_join_external_tailnets,
                network_flow_logging_on,
                posture_identity_collection_on,
                https_enabled,
                route_selection,
                acls_externally_managed_on,
                acls_external_link,
            } = &e.kept;
            let mut out: Vec<Change> = Vec::new();
            out.extend(toggled("MACHINE_APPROVAL_NEEDED", e.devices_approval_on));
            if let Some(days) = e.devices_key_duration_days {
                let t = names.tailnet(env, Some("MAX_KEY_DURATION"));
                let before = names.key_duration_before(env.seq.get());
                out.push(
                    Change::new(t, "UPDATE")
                        .values(before.map(Value::from), Some(Value::from(days.get()))),
                );
            }
            out.extend(toggled("TKA", e.tailnet_lock_on));
            out.extend(toggled("USER_APPROVAL_REQUIRED", *users_approval_on));
            out.extend(toggled("NETWORK_FLOW_LOGGING", *network_flow_logging_on));
            out.extend(toggled(
                "COLLECT_POSTURE_IDENTITY",
                *posture_identity_collection_on,
            ));
            out.extend(toggled("HTTPS", *https_enabled));
            // Settings Tailscale's audit log has no property for: `TAILNET.UPDATE`, the
            // settings object's field as `new`.
            let unnamed = [
                (
                    "devicesAutoUpdatesOn",
                    devices_auto_updates_on.map(Value::from),
                ),
                (
                    "usersRoleAllowedToJoinExternalTailnets",
                    users_role_allowed_to_join_external_tailnets.map(|r| json!(r)),
                ),
                ("routeSelection", route_selection.map(|r| json!(r))),
                (
                    "aclsExternallyManagedOn",
                    acls_externally_managed_on.map(Value::from),
                ),
                (
                    "aclsExternalLink",
                    acls_external_link.clone().map(Value::from),
                ),
            ];
            for (field, value) in unnamed {
                if let Some(v) = value {
                    out.push(
                        Change::new(names.tailnet(env, None), "UPDATE")
                            .values(None, Some(json!({ field: v }))),
                    );
                }
            }
            out
        }
        Event::UserAdded(e) => vec![
            Change::new(
                target(e.user_id.as_str(), e.login_name.as_str(), "USER", None),
                "CREATE",
            )
            .values(None, Some(json!({ "role": e.role }))),
        ],
        Event::UserRoleChanged(e) => {
            let login = names.login(e.user_id.as_str());
            vec![
                Change::new(
                    target(e.user_id.as_str(), &login, "USER", Some("USER_ROLE")),
                    "UPDATE",
                )
                .values(Some(json!(e.previous_role)), Some(json!(e.role))),
            ]
        }
        Event::UserRemoved(e) => vec![Change::new(names.user(e.user_id.as_str()), "DELETE")],
        Event::UserSuspended(e) => vec![Change::new(names.user(e.user_id.as_str()), "SUSPEND")],
        Event::UserRestored(e) => vec![Change::new(names.user(e.user_id.as_str()), "RESTORE")],
        Event::ApiTokenIssued(e) => vec![
            Change::new(names.key(e.token_id.as_str(), None), "CREATE").values(
                None,
                Some(json!({ "keyType": "api", "userId": e.user_id, "expires": e.expires })),
            ),
        ],
        Event::ApiTokenRevoked(e) => {
            vec![Change::new(names.key(e.token_id.as_str(), None), "REVOKE")]
        }
        Event::KeyGenerated(e) => vec![
            Change::new(names.key(e.key_id.as_str(), None), "CREATE").values(
                None,
                Some(json!({
                    "keyType": "auth",
                    "description": e.description,
                    "userId": e.user_id,
                    "expirySeconds": e.expiry_seconds.get(),
                    "expires": e.expires,
                    "capabilities": { "devices": { "create": {
                        "reusable": e.reusable,
                        "ephemeral": e.ephemeral,
                        "preauthorized": e.preauthorized,
                        "tags": tag_list(&e.tags),
                    } } },
                })),
            ),
        ],
        Event::KeyRevoked(e) => vec![Change::new(names.key(e.key_id.as_str(), None), "REVOKE")],
        Event::OAuthClientCreated(e) => vec![
            Change::new(names.key(e.client_id.as_str(), None), "CREATE").values(
                None,
                Some(json!({
                    "keyType": "client",
                    "description": e.description,
                    "scopes": e.scopes,
                    "tags": tag_list(&e.tags),
                })),
            ),
        ],
        Event::OAuthClientDeleted(e) => {
            vec![Change::new(names.key(e.client_id.as_str(), None), "REVOKE")]
        }
        Event::KeyExpired(e) => vec![
            Change::new(names.key(e.key_id.as_str(), None), "EXPIRED")
                .values(None, Some(json!({ "expires": e.expired_at }))),
        ],
        Event::TailnetLockEnabled(e) => vec![
            Change::new(names.tailnet(env, Some("TKA")), "ENABLE")
                .values(None, Some(json!({ "trustedKeys": e.trusted_keys }))),
        ],
        Event::TrustedLockKeysChanged(e) => vec![
            Change::new(names.tailnet(env, Some("TKA")), "UPDATE").values(
                None,
                Some(json!({ "trustedKeys": e.trusted_keys, "signer": e.signer })),
            ),
        ],
        Event::TailnetLockDisabled(_) => {
            vec![Change::new(names.tailnet(env, Some("TKA")), "DISABLE")]
        }
        Event::NodeRegistered(e) => {
            let mut new = json!({
                "hostname": e.hostname,
                "os": e.os,
                "userId": e.user_id,
                "tags": tag_list(&e.tags),
                "authKeyId": e.auth_key_id,
                "isEphemeral": e.ephemeral,
                "authorized": e.authorized,
                "keyExpiryDisabled": e.key_expiry_disabled,
                "expires": e.expires,
            });
            if let Some(a) = &e.addresses {
                new["addresses"] = json!([a.ipv4.to_string(), a.ipv6.to_string()]);
            }
            if let Some(error) = &e.tailnet_lock_error {
                new["tailnetLockError"] = json!(error);
            }
            vec![
                Change::new(names.node(e.node_id.as_str(), None), "CREATE").values(None, Some(new)),
            ]
        }
        Event::NodeReauthenticated(e) => vec![
            Change::new(
                names.node(e.node_id.as_str(), Some("KEY_EXPIRY_TIME")),
                "UPDATE",
            )
            .values(None, Some(json!(e.expires)))
            .details(format!(
                "re-authenticated with auth key {}; tags: {}",
                e.auth_key_id,
                tag_text(&e.tags)
            )),
        ],
        Event::NodeAuthorized(e) => vec![Change::new(
            names.node(e.node_id.as_str(), None),
            if e.authorized { "APPROVE" } else { "REVOKE" },
        )],
        Event::NodeKeyExpirySet(e) => vec![Change::new(
            names.node(e.node_id.as_str(), Some("KEY_EXPIRY")),
            toggle(!e.key_expiry_disabled),
        )],
        Event::NodeExpired(e) => vec![
            Change::new(
                names.node(e.node_id.as_str(), Some("KEY_EXPIRY_TIME")),
                "EXPIRED",
            )
            .values(None, Some(json!(e.expired_at))),
        ],
        Event::TagsChanged(e) => vec![
            Change::new(names.node(e.node_id.as_str(), Some("ACL_TAGS")), "UPDATE")
                .values(Some(tag_list(&e.previous_tags)), Some(tag_list(&e.tags))),
        ],
        Event::NodeSigned(e) => {
            let mut new = json!({ "lockKey": e.lock_key });
            if let Some(k) = &e.key_id {
                new["keyId"] = json!(k);
            }
            vec![
                Change::new(names.node(e.node_id.as_str(), Some("TKA")), "UPDATE")
                    .values(None, Some(new)),
            ]
        }
        Event::NodeDeleted(e) => {
            let reason = serde_json::to_value(e.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vec![
                Change::new(names.node(e.node_id.as_str(), None), "DELETE")
                    .details(format!("reason: {reason}")),
            ]
        }
        Event::WebhookCreated(e) => {
            let subscriptions: Vec<&str> = e.subscriptions.iter().map(|t| t.as_str()).collect();
            vec![
                Change::new(names.webhook(e.endpoint_id.as_str(), None), "CREATE").values(
                    None,
                    Some(json!({
                        "endpointUrl": e.endpoint_url,
                        "providerType": e.provider_type,
                        "subscriptions": subscriptions,
                    })),
                ),
            ]
        }
        Event::WebhookUpdated(e) => {
            let subscriptions: Vec<&str> = e.subscriptions.iter().map(|t| t.as_str()).collect();
            vec![
                Change::new(
                    names.webhook(e.endpoint_id.as_str(), Some("SUBSCRIBED_EVENTS")),
                    "UPDATE",
                )
                .values(None, Some(json!(subscriptions))),
            ]
        }
        // The secret itself is in no event; the record says it changed.
        Event::WebhookSecretRotated(e) => vec![Change::new(
            names.webhook(e.endpoint_id.as_str(), Some("SECRET")),
            "UPDATE",
        )],
        Event::WebhookDeleted(e) => {
            vec![Change::new(
                names.webhook(e.endpoint_id.as_str(), None),
                "DELETE",
            )]
        }
        _ => Vec::new(),
    }
}

/// The node a registrar acted for in `event`, which is the record's actor.
fn node_acting(event: &Event) -> Option<&str> {
    match event {
        Event::NodeRegistered(e) => Some(e.node_id.as_str()),
        Event::NodeReauthenticated(e) => Some(e.node_id.as_str()),
        Event::NodeAuthorized(e) => Some(e.node_id.as_str()),
        Event::KeyUsed(e) => Some(e.node_id.as_str()),
        Event::NodeConnected(e) => Some(e.node_id.as_str()),
        Event::NodeDisconnected(e) => Some(e.node_id.as_str()),
        _ => None,
    }
}

fn actor(names: &Names, env: &Envelope) -> RecordActor {
    let (actor_type, _) = actor_kind(env.actor.actor_type);
    let mut actor = RecordActor {
        id: env.actor.id.clone(),
        actor_type,
        login_name: None,
        display_name: None,
        tags: Vec::new(),
    };
    match env.actor.actor_type {
        ActorType::User => {
            let login = env
                .actor
                .login_name
                .as_ref()
                .map(|l| l.to_string())
                .or_else(|| names.users.get(&env.actor.id).cloned());
            actor.display_name.clone_from(&login);
            actor.login_name = login;
        }
        ActorType::Registrar => {
            if let Some(node) = node_acting(&env.event) {
                node.clone_into(&mut actor.id);
            }
        }
        ActorType::System | ActorType::Oauth => {}
    }
    actor
}

/// Folds events into records, keeping the names the records need.
#[derive(Debug, Default)]
pub struct Recorder {
    tailnets: HashMap<TailnetId, Names>,
}

impl Recorder {
    /// Folds the names `env` carries, without making its records.
    pub fn fold(&mut self, env: &Envelope) {
        self.tailnets
            .entry(env.tailnet.clone())
            .or_default()
            .fold(env);
    }

    /// The records of `env` (none for events that change no configuration), in order; folds
    /// the names it carries first.
    pub fn records(&mut self, env: &Envelope) -> Vec<Record> {
        let names = self.tailnets.entry(env.tailnet.clone()).or_default();
        names.fold(env);
        let changes = changes(names, env);
        if changes.is_empty() {
            return Vec::new();
        }
        let actor = actor(names, env);
        let (_, origin) = actor_kind(env.actor.actor_type);
        let registrar = (env.actor.actor_type == ActorType::Registrar)
            .then(|| format!("registrar {}", env.actor.id));
        changes
            .into_iter()
            .map(|c| Record {
                event_time: env.time,
                record_type: RECORD_TYPE,
                deferred_at: NOT_DEFERRED,
                event_group_id: env.command_id.to_string(),
                origin,
                actor: actor.clone(),
                target: c.target,
                action: c.action,
                old: c.old,
                new: c.new,
                action_details: match (c.details, &registrar) {
                    (Some(d), Some(r)) => Some(format!("{d}; {r}")),
                    (d, r) => d.or_else(|| r.clone()),
                },
                seq: env.seq.get(),
                hash: env.hash,
            })
            .collect()
    }
}

/// The `actor`, `target` and `event` filters (see the module docs): empty keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    actor_ids: Vec<String>,
    /// `~search` values, lowercased, without the `~`.
    actor_searches: Vec<String>,
    /// Lowercased.
    targets: Vec<String>,
    events: Vec<String>,
}

impl Filter {
    /// Takes one query parameter: `true` if `name` is one of the filters (an empty value is
    /// ignored), `false` for any other parameter.
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        let list = match name {
            "actor" => {
                match value.strip_prefix('~') {
                    Some(search) => self.actor_searches.push(search.to_lowercase()),
                    None if value.is_empty() => {}
                    None => self.actor_ids.push(value.to_owned()),
                }
                return true;
            }
            "target" => &mut self.targets,
            "event" => &mut self.events,
            _ => return false,
        };
        if !value.is_empty() {
            list.push(if name == "target" {
                value.to_lowercase()
            } else {
                value.to_owned()
            });
        }
        true
    }

    /// No filter given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `r` passes every filter given.
    pub fn matches(&self, r: &Record) -> bool {
        let actor = (self.actor_ids.is_empty() && self.actor_searches.is_empty())
            || self.actor_ids.contains(&r.actor.id)
            || self.actor_searches.iter().any(|s| {
                [&r.actor.login_name, &r.actor.display_name]
                    .into_iter()
                    .flatten()
                    .any(|n| n.to_lowercase().contains(s.as_str()))
            });
        let target = self.targets.is_empty()
            || self.targets.iter().any(|t| {
                r.target.id.to_lowercase().contains(t.as_str())
                    || r.target.name.to_lowercase().contains(t.as_str())
            });
        let event = self.events.is_empty() || {
            let name = r.event();
            self.events.contains(&name)
        };
        actor && target && event
    }
}

//! Every NATS name of the contract (SPEC §5): subjects, queue groups, the events stream and the
//! headers. Nothing outside this module spells one; `make check` greps for strays.
//!
//! | subject | payload → reply | served by |
//! |---|---|---|
//! | `authkeys.cmd.register` | `RegisterRequest` → `DeviceReply` | command |
//! | `authkeys.cmd.node.{connected,disconnected}` | `NodeStatusRequest` → `DeviceReply` | command |
//! | `authkeys.cmd.admin.*` | admin requests → their replies | command |
//! | `authkeys.cmd.timer.fire` | `TimerRequest` → `TimerReply` | command |
//! | `authkeys.events.<tailnetId>.<Type>` | envelopes (JetStream `AUTHKEYS_EVENTS`) | the relay publishes |
//! | `authkeys.log.read` | `LogReadRequest` → `LogPage` | command |
//! | `authkeys.log.checkpoints` | `LogReadRequest` → `CheckpointsPage` | command |
//! | `authkeys.query.*` | queries → answers (`crate::query`) | projections |
//! | `authkeys.status` | `{}` → `CommandStatus` | command |
//! | `authkeys.timers.status` | `{}` → `TimersStatus` | timers |
//! | `authkeys.webhooks.{list,get,secret,test,status}` | `crate::webhook` queries → answers | webhooks |

/// The queue group of every command subject: several command-service processes could share the
/// load (there is one writer per log, so today one process serves them all).
pub const COMMAND_QUEUE_GROUP: &str = "authkeys-command";
/// A registrar forwards `--authkey`: `RegisterRequest` → `DeviceReply`.
pub const REGISTER: &str = "authkeys.cmd.register";
/// A node connected: `NodeStatusRequest` → `DeviceReply`.
pub const NODE_CONNECTED: &str = "authkeys.cmd.node.connected";
/// A node disconnected: `NodeStatusRequest` → `DeviceReply`.
pub const NODE_DISCONNECTED: &str = "authkeys.cmd.node.disconnected";
/// `GenerateKeyRequest` → `KeyReply` (with the secret, once).
pub const GENERATE_KEY: &str = "authkeys.cmd.admin.generate-key";
/// `RevokeKeyRequest` → `KeyReply`.
pub const REVOKE_KEY: &str = "authkeys.cmd.admin.revoke-key";
/// `AddUserRequest` → `UserReply` (with the user's first API token).
pub const ADD_USER: &str = "authkeys.cmd.admin.add-user";
/// `IssueTokenRequest` → `TokenReply`.
pub const ISSUE_TOKEN: &str = "authkeys.cmd.admin.issue-token";
/// `CreateClientRequest` → `ClientReply` (R19).
pub const CREATE_CLIENT: &str = "authkeys.cmd.admin.create-client";
/// `DeleteClientRequest` → `ClientIdReply`.
pub const DELETE_CLIENT: &str = "authkeys.cmd.admin.delete-client";
/// `IssueAccessTokenRequest` → `AccessTokenReply`.
pub const ISSUE_ACCESS_TOKEN: &str = "authkeys.cmd.admin.issue-access-token";
/// `RevokeTokenRequest` → `RevokedTokenReply`.
pub const REVOKE_TOKEN: &str = "authkeys.cmd.admin.revoke-token";
/// `ChangeRoleRequest` → `UserReply` (without `apiKey`).
pub const CHANGE_ROLE: &str = "authkeys.cmd.admin.change-role";
/// `RemoveUserRequest` → `UserIdReply`.
pub const REMOVE_USER: &str = "authkeys.cmd.admin.remove-user";
/// `SuspendUserRequest` → `UserIdReply`.
pub const SUSPEND_USER: &str = "authkeys.cmd.admin.suspend-user";
/// `RestoreUserRequest` → `UserIdReply`.
pub const RESTORE_USER: &str = "authkeys.cmd.admin.restore-user";
/// `SetTagsRequest` → `DeviceReply`.
pub const SET_TAGS: &str = "authkeys.cmd.admin.set-tags";
/// `SetKeyExpiryRequest` → `DeviceReply`.
pub const SET_KEY_EXPIRY: &str = "authkeys.cmd.admin.set-key-expiry";
/// `ExpireNodeRequest` → `DeviceReply`.
pub const EXPIRE_NODE: &str = "authkeys.cmd.admin.expire-node";
/// `AuthorizeNodeRequest` → `DeviceReply`.
pub const AUTHORIZE_NODE: &str = "authkeys.cmd.admin.authorize-node";
/// `DeleteNodeRequest` → `DeletedReply`.
pub const DELETE_NODE: &str = "authkeys.cmd.admin.delete-node";
/// `ChangeSettingsRequest` → `SettingsReply`.
pub const CHANGE_SETTINGS: &str = "authkeys.cmd.admin.change-settings";
/// `CreateWebhookRequest` → `WebhookIdReply` (R23).
pub const CREATE_WEBHOOK: &str = "authkeys.cmd.admin.create-webhook";
/// `UpdateWebhookRequest` → `WebhookIdReply`.
pub const UPDATE_WEBHOOK: &str = "authkeys.cmd.admin.update-webhook";
/// `RotateWebhookRequest` → `WebhookIdReply`.
pub const ROTATE_WEBHOOK: &str = "authkeys.cmd.admin.rotate-webhook";
/// `DeleteWebhookRequest` → `WebhookIdReply`.
pub const DELETE_WEBHOOK: &str = "authkeys.cmd.admin.delete-webhook";
/// The expiry timers: `TimerRequest` → `TimerReply`.
pub const TIMER: &str = "authkeys.cmd.timer.fire";
/// Tailnet lock (R04), from `authkeys lock …` with a user's API token:
/// `LockInitRequest` → `LockStatus`.
pub const LOCK_INIT: &str = "authkeys.cmd.lock.init";
/// `LockSignRequest` → `LockStatus`.
pub const LOCK_SIGN: &str = "authkeys.cmd.lock.sign";
/// `LockDisableRequest` → `LockStatus`.
pub const LOCK_DISABLE: &str = "authkeys.cmd.lock.disable";
/// `LockStatusRequest` → `LockStatus`.
pub const LOCK_STATUS: &str = "authkeys.cmd.lock.status";
/// What the lock CLI (the `operator` NATS role) may publish.
pub const LOCK_PREFIX: &str = "authkeys.cmd.lock";

/// Every command subject.
pub const COMMANDS: &[&str] = &[
    LOCK_INIT,
    LOCK_SIGN,
    LOCK_DISABLE,
    LOCK_STATUS,
    REGISTER,
    NODE_CONNECTED,
    NODE_DISCONNECTED,
    GENERATE_KEY,
    REVOKE_KEY,
    ADD_USER,
    ISSUE_TOKEN,
    REVOKE_TOKEN,
    CREATE_CLIENT,
    DELETE_CLIENT,
    ISSUE_ACCESS_TOKEN,
    CHANGE_ROLE,
    REMOVE_USER,
    SUSPEND_USER,
    RESTORE_USER,
    SET_TAGS,
    SET_KEY_EXPIRY,
    EXPIRE_NODE,
    AUTHORIZE_NODE,
    DELETE_NODE,
    CHANGE_SETTINGS,
    CREATE_WEBHOOK,
    UPDATE_WEBHOOK,
    ROTATE_WEBHOOK,
    DELETE_WEBHOOK,
    TIMER,
];

/// The JetStream stream of events.
pub const EVENTS_STREAM: &str = "AUTHKEYS_EVENTS";
/// Event subjects are `<EVENTS_PREFIX>.<tailnetId>.<Type>`.
pub const EVENTS_PREFIX: &str = "authkeys.events";

/// The JetStream key-value bucket of the command service's leader lease (SPEC §7): the one
/// command service that may append holds key [`LEADER_KEY`], renewing it before the bucket's
/// maximum age expires it; standbys take it over when it expires.
pub const LEADER_BUCKET: &str = "AUTHKEYS_LEADER";
/// The lease's key in [`LEADER_BUCKET`].
pub const LEADER_KEY: &str = "command";

/// The header the relay puts on the last event of a command: `<first seq> <fingerprint hex>
/// <scope>`, the command's idempotency record, so that a standby carries it over and answers a
/// retry with the first result once it is primary.
pub const COMMAND_RECORD_HEADER: &str = "Authkeys-Command";

/// Pages of the log: backfill, rebuilds and auditors.
pub const LOG_READ: &str = "authkeys.log.read";
/// The log's signed checkpoints, for auditors over NATS.
pub const LOG_CHECKPOINTS: &str = "authkeys.log.checkpoints";
/// The queue group of the log's read subjects.
pub const LOG_READ_QUEUE_GROUP: &str = "authkeys-log";

/// The command service's counters and the relay's cursor.
pub const STATUS: &str = "authkeys.status";
/// Its queue group.
pub const STATUS_QUEUE_GROUP: &str = "authkeys-status";
/// The timers' schedule and firings.
pub const TIMERS_STATUS: &str = "authkeys.timers.status";
/// Its queue group.
pub const TIMERS_STATUS_QUEUE_GROUP: &str = "authkeys-timers";

/// Every subject the webhooks role serves starts with this; only the gateway publishes below it.
pub const WEBHOOKS_PREFIX: &str = "authkeys.webhooks";
/// `WebhooksListQuery` → `WebhooksAnswer`.
pub const WEBHOOKS_LIST: &str = "authkeys.webhooks.list";
/// `WebhookGetQuery` → `WebhookAnswer` (with the endpoint's dropped events).
pub const WEBHOOKS_GET: &str = "authkeys.webhooks.get";
/// `WebhookSecretQuery` → `WebhookSecretAnswer`: the endpoint's current signing secret, for the
/// create and rotate answers only.
pub const WEBHOOKS_SECRET: &str = "authkeys.webhooks.secret";
/// `WebhookTestQuery` → `WebhookTestAnswer`: queue a test event for the endpoint.
pub const WEBHOOKS_TEST: &str = "authkeys.webhooks.test";
/// `{}` → `WebhooksStatus`: deliveries, retries and dropped events, for `/metrics`.
pub const WEBHOOKS_STATUS: &str = "authkeys.webhooks.status";
/// The queue group of the webhooks role's subjects.
pub const WEBHOOKS_QUEUE_GROUP: &str = "authkeys-webhooks";

/// The prefix of every view query subject.
pub const QUERY_PREFIX: &str = "authkeys.query";
/// The queue group of the view queries, so several projection processes can serve.
pub const QUERY_QUEUE_GROUP: &str = "authkeys-views";

/// Declares each query subject once: relative to the query prefix, and in full.
macro_rules! queries {
    ($($(#[doc = $doc:literal])* $name:ident = $what:literal;)*) => {
        /// The view queries, relative to [`QUERY_PREFIX`](super::QUERY_PREFIX).
        pub mod query {
            $($(#[doc = $doc])* pub const $name: &str = $what;)*
            /// Every query, relative.
            pub const ALL: &[&str] = &[$($name),*];
        }
        /// The view queries in full, under [`QUERY_PREFIX`].
        pub mod query_full {
            $($(#[doc = $doc])* pub const $name: &str = concat!("authkeys.query.", $what);)*
        }
    };
}

queries! {
    /// `TokenQuery` → `TokenAnswer`.
    IDENTITY_TOKEN = "identity.token";
    /// `TailnetQuery` → `TailnetAnswer`.
    IDENTITY_TAILNET = "identity.tailnet";
    /// `TokensListQuery` → `TokensAnswer`.
    IDENTITY_TOKENS = "identity.tokens";
    /// `ClientsQuery` → `ClientsAnswer`.
    IDENTITY_CLIENTS = "identity.clients";
    /// `KeysListQuery` → `KeysAnswer`.
    KEYS_LIST = "keys.list";
    /// `KeysGetQuery` → `KeyAnswer`.
    KEYS_GET = "keys.get";
    /// `DevicesListQuery` → `DevicesAnswer`.
    DEVICES_LIST = "devices.list";
    /// `DevicesGetQuery` → `DeviceAnswer`.
    DEVICES_GET = "devices.get";
    /// `UsersListQuery` → `UsersAnswer`.
    USERS_LIST = "users.list";
    /// `UsersGetQuery` → `UserAnswer`.
    USERS_GET = "users.get";
}

/// Every command subject starts with this.
pub const COMMAND_PREFIX: &str = "authkeys.cmd";
/// Every admin command subject starts with this (only the gateway publishes them).
pub const ADMIN_PREFIX: &str = "authkeys.cmd.admin";

/// The subject registrar `name` registers on: `authkeys.cmd.register.<name>`. NATS permissions
/// let only that registrar publish it, so the subject's last token is who sent it.
pub fn register_of(name: &crate::access::RegistrarName) -> String {
    format!("{REGISTER}.{name}")
}

/// `authkeys.cmd.node.connected.<name>`.
pub fn node_connected_of(name: &crate::access::RegistrarName) -> String {
    format!("{NODE_CONNECTED}.{name}")
}

/// `authkeys.cmd.node.disconnected.<name>`.
pub fn node_disconnected_of(name: &crate::access::RegistrarName) -> String {
    format!("{NODE_DISCONNECTED}.{name}")
}

/// The registrar subjects served with a registrar's name as their last token.
pub const PER_REGISTRAR: [&str; 3] = [REGISTER, NODE_CONNECTED, NODE_DISCONNECTED];

/// `authkeys.cmd.register.<name>` (or a node subject with a name) → the command subject and the
/// registrar; `None` for any other subject, or a name that is not a valid registrar name.
pub fn split_registrar(subject: &str) -> Option<(&'static str, crate::access::RegistrarName)> {
    PER_REGISTRAR.iter().find_map(|base| {
        let name = subject.strip_prefix(base)?.strip_prefix('.')?;
        crate::access::RegistrarName::parse(name)
            .ok()
            .map(|n| (*base, n))
    })
}

/// The inbox prefix registrar `name` receives its replies on: `_INBOX_<name>`.
pub fn registrar_inbox(name: &crate::access::RegistrarName) -> String {
    format!("_INBOX_{name}")
}

/// The NATS header in which a registrar names itself where NATS does not authenticate it (the
/// zero-config loopback setup): a fairness hint, never an identity.
pub const REGISTRAR_HEADER: &str = "Authkeys-Registrar";

#[cfg(test)]
mod tests {
    #[test]
    fn full_query_subjects_are_the_prefix_and_the_relative_name() {
        for (rel, full) in super::query::ALL.iter().zip([
            super::query_full::IDENTITY_TOKEN,
            super::query_full::IDENTITY_TAILNET,
            super::query_full::IDENTITY_TOKENS,
            super::query_full::IDENTITY_CLIENTS,
            super::query_full::KEYS_LIST,
            super::query_full::KEYS_GET,
            super::query_full::DEVICES_LIST,
            super::query_full::DEVICES_GET,
            super::query_full::USERS_LIST,
            super::query_full::USERS_GET,
        ]) {
            assert_eq!(format!("{}.{rel}", super::QUERY_PREFIX), full);
        }
    }
}

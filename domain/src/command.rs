//! Commands and rejections.
//!
//! A command carries everything its decision needs that is not in the state: identifiers and
//! secret hashes drawn by the service (the domain draws no randomness) and the acting user, whom
//! the service authenticated and whose role `decide` re-checks (R07).

use authkeys_events::{
    Description, ExpirySeconds, Hash, Hostname, KeyDurationDays, KeyId, LoginName, NodeId, NodeKey,
    PreSignature, Role, Tags, TailnetId, TailnetName, Timestamp, TokenId, UserId,
};
use serde::Serialize;

/// A new API token, drawn by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Public id.
    pub token_id: TokenId,
    /// Keyed hash of the secret.
    pub secret_hash: Hash,
    /// Lifetime.
    pub expires: Timestamp,
}

/// What an admin asks of a new auth key (SPEC §5 `POST /keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRequest {
    /// Description.
    pub description: Description,
    /// R08: lifetime.
    pub expiry_seconds: ExpirySeconds,
    /// R01.
    pub reusable: bool,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub preauthorized: bool,
    /// R05.
    pub tags: Tags,
}

/// Commands of a signed-in user of a tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    /// Add a user with a role and issue their first API token (Owner, Admin, IT admin; never
    /// an Owner: a tailnet has one, and ownership is transferred with `ChangeRole`).
    AddUser {
        /// New user's id.
        user_id: UserId,
        /// Login.
        login_name: LoginName,
        /// Role.
        role: Role,
        /// Their token.
        token: NewToken,
    },
    /// Change a user's role (Owner, Admin, IT admin). Only the Owner changes the Owner's role or
    /// makes an Owner, and making another user the Owner transfers ownership: the Owner becomes
    /// an Admin in the same decision (R18: one Owner per tailnet).
    ChangeRole {
        /// Whom.
        user_id: UserId,
        /// New role.
        role: Role,
    },
    /// Remove a user: their live API tokens and usable auth keys are revoked in the same
    /// decision; their nodes stay (R11, R18, R21). Never oneself, never the Owner.
    RemoveUser {
        /// Whom.
        user_id: UserId,
    },
    /// Suspend a user: their tokens stop authenticating and their commands are refused until
    /// they are restored (R21). Never oneself, never the Owner; suspending a suspended user
    /// changes nothing.
    SuspendUser {
        /// Whom.
        user_id: UserId,
    },
    /// Restore a suspended user; restoring a user who is not suspended changes nothing.
    RestoreUser {
        /// Whom.
        user_id: UserId,
    },
    /// Issue another API token to oneself.
    IssueToken {
        /// The token.
        token: NewToken,
    },
    /// Revoke one of one's own tokens (or any, for Owner, Admin and IT admin).
    RevokeToken {
        /// Which.
        token_id: TokenId,
    },
    /// Generate an auth key (R07).
    GenerateKey {
        /// Its id, drawn by the service.
        key_id: KeyId,
        /// Keyed hash of its secret.
        secret_hash: Hash,
        /// What was asked.
        request: KeyRequest,
    },
    /// Revoke one of one's own keys (R07, R09, R11, R12).
    RevokeKey {
        /// Which.
        key_id: KeyId,
    },
    /// Set a node's tags (R15).
    SetTags {
        /// Which node.
        node_id: NodeId,
        /// New tags.
        tags: Tags,
    },
    /// Disable or re-enable a node's key expiry (R14).
    SetKeyExpiry {
        /// Which node.
        node_id: NodeId,
        /// Disabled after this.
        disabled: bool,
    },
    /// Expire a node's key now (R14).
    ExpireNode {
        /// Which node.
        node_id: NodeId,
    },
    /// Approve or un-approve a node (R03).
    AuthorizeNode {
        /// Which node.
        node_id: NodeId,
        /// Authorized after this.
        authorized: bool,
    },
    /// Delete a node: how a node is de-authorized (R11).
    DeleteNode {
        /// Which node.
        node_id: NodeId,
    },
    /// R19: an OAuth client with its scopes and tags.
    CreateClient {
        /// Its id (a key id).
        client_id: KeyId,
        /// The user id its keys and nodes are recorded under (drawn by the service).
        principal: UserId,
        /// Keyed hash of its secret; `None` for a federated identity.
        secret_hash: Option<Hash>,
        /// A federated identity's trust (R20).
        federated: Option<authkeys_events::FederatedSpec>,
        /// What its access tokens may do.
        scopes: Vec<authkeys_events::Scope>,
        /// The tags its keys carry.
        tags: Tags,
        /// Free text.
        description: Description,
    },
    /// R19: delete an OAuth client, which revokes its access tokens.
    DeleteClient {
        /// Which client.
        client_id: KeyId,
    },
    /// R23: create, change, rotate or delete a webhook endpoint.
    Webhook(crate::webhook::WebhookOp),
    /// Change tailnet settings (Owner, Admin).
    ChangeSettings {
        /// R03.
        devices_approval_on: Option<bool>,
        /// R14.
        devices_key_duration_days: Option<KeyDurationDays>,
        /// Settings kept and shown, not acted on.
        kept: authkeys_events::KeptSettings,
    },
}

/// Every command the command service decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `authkeys admin bootstrap`: a tailnet, its Owner and the Owner's token.
    CreateTailnet {
        /// New tailnet id.
        tailnet_id: TailnetId,
        /// Its name (unique).
        name: TailnetName,
        /// The Owner's id.
        owner_id: UserId,
        /// The Owner's login.
        owner_login: LoginName,
        /// The Owner's token.
        token: NewToken,
    },
    /// `authkeys admin recover` (R18): a new API token for the tailnet's Owner, on the service's
    /// host, so an Owner whose tokens have all expired is never locked out.
    RecoverOwner {
        /// The tailnet, by name.
        name: TailnetName,
        /// The Owner's new token.
        token: NewToken,
    },
    /// R19: an OAuth client (authenticated by the gateway with its secret) gets an access token,
    /// valid one hour, with its scopes or fewer.
    IssueAccessToken {
        /// Its tailnet.
        tailnet: TailnetId,
        /// Which client.
        client_id: KeyId,
        /// The token.
        token: NewToken,
        /// Narrower scopes asked for; the client's if `None`.
        scopes: Option<Vec<authkeys_events::Scope>>,
    },
    /// A user acting in their tailnet.
    Admin {
        /// The tailnet.
        tailnet: TailnetId,
        /// Who acts.
        actor: UserId,
        /// What they do.
        op: AdminOp,
    },
    /// A registrar forwarding `--authkey` (R01–R06, R08, R10, R16).
    Register {
        /// The key id from the presented key.
        key_id: KeyId,
        /// The keyed hash of the presented secret (compared in constant time).
        presented_hash: Hash,
        /// The node's key.
        node_key: NodeKey,
        /// Host name.
        hostname: Hostname,
        /// OS, may be empty.
        os: String,
        /// The id a new node gets, drawn by the service.
        new_node_id: NodeId,
        /// R04: the signature after `--TL` in the presented key, if any.
        presigned: Option<PreSignature>,
    },
    /// `authkeys lock …` (R04), with the acting user's API token.
    Lock {
        /// The token's id.
        token_id: TokenId,
        /// The keyed hash of the presented token secret (compared in constant time).
        presented_hash: Hash,
        /// What to do.
        op: crate::lock::LockOp,
    },
    /// A registrar reports a node connected.
    NodeConnected {
        /// Which node.
        node_key: NodeKey,
    },
    /// A registrar reports a node disconnected (R02).
    NodeDisconnected {
        /// Which node.
        node_key: NodeKey,
    },
    /// The expiry timers found something due (R02, R08, R13, R14). `decide` re-checks that it
    /// is still due exactly as scheduled: a late or doubled timer never expires something that
    /// was renewed, and one that fires early is refused until it is due.
    Timer {
        /// The tailnet of the thing.
        tailnet: TailnetId,
        /// What fell due.
        due: Due,
        /// R02: how long an ephemeral node stays disconnected before it is removed — the
        /// command service's own setting, never the request's: an inactivity timer is due at
        /// the node's `lastSeen` + this, whatever `due` it names.
        ephemeral_inactivity: std::time::Duration,
    },
}

/// What a timer found due, with the deadline it scheduled from the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// A key reached its `expires` → `KeyExpired` (unless revoked, spent or expired already).
    KeyExpiry {
        /// Which key.
        key_id: KeyId,
        /// Its `expires`, as scheduled.
        expires: Timestamp,
    },
    /// A node's key reached its `expires` → `NodeExpired` (unless renewed, disabled or gone).
    NodeKeyExpiry {
        /// Which node.
        node_id: NodeId,
        /// Its `expires`, as scheduled.
        expires: Timestamp,
    },
    /// An ephemeral node stayed disconnected for the inactivity timeout →
    /// `NodeDeleted{ephemeral-inactive}` (unless it reported since).
    EphemeralInactivity {
        /// Which node.
        node_id: NodeId,
        /// The time of the `NodeDisconnected` that started the clock.
        disconnected_at: Timestamp,
        /// `disconnected_at` + the timers' inactivity timeout. Only a hint: `decide` never
        /// removes a node before its `lastSeen` + the command's own `ephemeral_inactivity`.
        due: Timestamp,
    },
}

impl Due {
    /// When it falls due.
    pub fn at(&self) -> Timestamp {
        match self {
            Self::KeyExpiry { expires, .. } | Self::NodeKeyExpiry { expires, .. } => *expires,
            Self::EphemeralInactivity { due, .. } => *due,
        }
    }
}

/// Why a command was refused. Nothing is written for any of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", content = "message", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// The input is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The actor's role does not allow it (403, R07).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or not the actor's to see (404, R09).
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it now (409).
    #[error("{0}")]
    Conflict(String),
    /// A registration's key is unknown, wrong, expired, revoked or used: one answer for all
    /// (R10).
    #[error("invalid, expired, revoked or used auth key")]
    InvalidKey,
    /// A timer fired before its deadline (the timers' clock is ahead of the log's): retry then.
    #[error("not due until {0}")]
    NotDue(Timestamp),
    /// R17: every address of the tailnet is in use or was released less than 90 days ago. Its
    /// code is `conflict` (409): the tailnet's state does not allow a new node now (deleting
    /// nodes frees their addresses 90 days later).
    #[error(
        "no free address in the tailnet: every one in 100.64.0.0/10 is in use or was released \
         less than 90 days ago"
    )]
    AddressesExhausted,
}

impl Rejection {
    /// The error code of NATS replies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::InvalidKey => "invalid_key",
            Self::NotDue(_) => "not_due",
            Self::AddressesExhausted => "conflict",
        }
    }
}

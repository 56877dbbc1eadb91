//! The command role: the service that owns the log (its only writer) and answers every command
//! of SPEC §5 over NATS, with everything that lives beside the log.
//!
//! - [`CommandService`] (this file): the subject table, idempotency, errors and shutdown; one
//!   module per handler (`register`, `generate_key`, …, `timer`) with the same verbs: decode,
//!   parse, append, answer from the state after the command.
//! - [`app`]: the role (`build → run(shutdown)`): log, service, relay, log reads, status.
//! - [`relay`]: publishes committed events to JetStream in seq order (ADR 002).
//! - [`log_read`]: `authkeys.log.read` and `authkeys.log.checkpoints`.
//! - [`status`]: `authkeys.status`, the counters `/metrics` shows.
//! - [`limits`]: the failed-registration rate limits.
//! - [`directory`]: the keys and their secret hashes beside the writer, so that a wrong key is
//!   refused (and limited) without reaching it.
//! - [`mint`]: the hashing key, random ids and retry-stable secrets (ADR 003).
//! - [`bootstrap`]: the offline bootstrap of a tailnet and its Owner.
//!
//! # Subjects
//!
//! Every subject is served in the queue group `authkeys-command`; payloads are JSON, schemas under
//! `schemas/commands/` (see [`authkeys_protocol`] for the types).
//!
//! | subject | request | reply on success | scope of `requestId`/`commandId` |
//! |---|---|---|---|
//! | `authkeys.cmd.register` | `RegisterRequest` | `{ok, device}` | `registrar` |
//! | `authkeys.cmd.node.connected` | `NodeStatusRequest` | `{ok, device}` | `registrar` |
//! | `authkeys.cmd.node.disconnected` | `NodeStatusRequest` | `{ok, device}` | `registrar` |
//! | `authkeys.cmd.admin.generate-key` | `GenerateKeyRequest` | `{ok, key}` (with `key.key`) | tailnet |
//! | `authkeys.cmd.admin.revoke-key` | `RevokeKeyRequest` | `{ok, key}` | tailnet |
//! | `authkeys.cmd.admin.add-user` | `AddUserRequest` | `{ok, user, apiKey}` | tailnet |
//! | `authkeys.cmd.admin.issue-token` | `IssueTokenRequest` | `{ok, tokenId, apiKey, expires}` | tailnet |
//! | `authkeys.cmd.admin.revoke-token` | `RevokeTokenRequest` | `{ok, tokenId}` | tailnet |
//! | `authkeys.cmd.admin.create-client` | `CreateClientRequest` | `{ok, client}` | tailnet |
//! | `authkeys.cmd.admin.delete-client` | `DeleteClientRequest` | `{ok, clientId}` | tailnet |
//! | `authkeys.cmd.admin.issue-access-token` | `IssueAccessTokenRequest` | `{ok, tokenId, accessToken, expires, scopes}` | tailnet |
//! | `authkeys.cmd.admin.change-role` | `ChangeRoleRequest` | `{ok, user}` | tailnet |
//! | `authkeys.cmd.admin.remove-user` | `RemoveUserRequest` | `{ok, userId}` | tailnet |
//! | `authkeys.cmd.admin.suspend-user` | `SuspendUserRequest` | `{ok, userId}` | tailnet |
//! | `authkeys.cmd.admin.restore-user` | `RestoreUserRequest` | `{ok, userId}` | tailnet |
//! | `authkeys.cmd.admin.set-tags` | `SetTagsRequest` | `{ok, device}` | tailnet |
//! | `authkeys.cmd.admin.set-key-expiry` | `SetKeyExpiryRequest` | `{ok, device}` | tailnet |
//! | `authkeys.cmd.admin.expire-node` | `ExpireNodeRequest` | `{ok, device}` | tailnet |
//! | `authkeys.cmd.admin.authorize-node` | `AuthorizeNodeRequest` | `{ok, device}` | tailnet |
//! | `authkeys.cmd.admin.delete-node` | `DeleteNodeRequest` | `{ok, nodeId}` | tailnet |
//! | `authkeys.cmd.admin.change-settings` | `ChangeSettingsRequest` | `{ok, settings}` | tailnet |
//! | `authkeys.cmd.admin.{create,update,rotate,delete}-webhook` | `CreateWebhookRequest`, … | `{ok, endpointId}` | tailnet |
//! | `authkeys.cmd.timer.fire` | `TimerRequest` | `{ok, fired}` | `timers` |
//!
//! Admin requests carry the acting user's id (`actor`): the caller (the HTTP gateway) has
//! authenticated the user's token; `decide` re-checks the user's role against the state (R07) —
//! authorization has one home, the domain.
//!
//! # Errors
//!
//! A refusal is `{ok: false, error: {code, message}}`; nothing is written for any of them.
//!
//! | code | HTTP | when |
//! |---|---|---|
//! | `bad_request` | 400 | the payload is not the request (message names the field: `nodeKey: …`) |
//! | `invalid_key` | 401 | registration with a malformed, unknown, wrong, expired, revoked or used key: one message for all (R10) |
//! | `rate_limited` | 429 | too many failed registrations from this registrar or for this key id |
//! | `forbidden` | 403 | the actor's role does not allow it (R07), or the actor is not a user of the tailnet (removed, or suspended: R21) |
//! | `not_found` | 404 | unknown tailnet, device, or a key that is not the actor's (R09) |
//! | `conflict` | 409 | the state does not allow it, or the id was used before for a different request |
//! | `unavailable` | 503 | the log cannot take commands (shutting down, storage failure): retry |
//! | `internal` | 500 | unexpected; logged |
//! | `not_due` | — | a timer fired before its deadline (clocks differ): retry at the time named |
//!
//! # Idempotency
//!
//! Each command is appended with `command_id` = the request's id, `scope` = the tailnet (admin) or
//! `registrar`, and `fingerprint` = keyed blake3 of the subject and the request's canonical JSON
//! (keyed: a registration holds an auth key). A retry with the same id and content gets the first
//! result, and nothing is written; the same id with other content is a `conflict`. The reply is
//! built from the state after the command (`Log::query`), so a retry answers like the first try.
//! A command that issues a secret (generate-key, add-user, issue-token) derives the secret from
//! `(tailnet, commandId)` with the derivation key (`derivation.key`, which only this role reads),
//! so a retry returns the same
//! secret although no secret is stored anywhere ([`crate::mint`]) — but only within
//! `secret_replay_window_ms_max` (24 h) of the first answer and while the key or token is
//! usable; a later retry answers the same object without `key`/`apiKey` ([`reveal_secret`]).
//! Timer commands record no idempotency at all (see the `timer` module): `decide` re-checks
//! the state, and their ids are predictable.
//!
//! # Registration (R10)
//!
//! Every registration takes one path: the auth key's form and checksum are checked without a
//! lookup; a malformed key continues with an id no key has and the hash of its whole text, so
//! the service always hashes what was presented. The hash is checked in constant time against
//! the [`directory`] of keys (kept beside the writer from the log file): an unknown id or wrong
//! secret, and the right secret of a revoked, spent or expired key, are answered `invalid_key`
//! at once, without the writer; only the right secret of a usable key is decided by the writer,
//! whose `decide` re-checks everything and answers every failure with the same `invalid_key`.
//!
//! Rate limits ([`limits`]) count **failed** registrations per registrar, per key id and in all
//! (governor, GCRA), and apply to failing registrations only: a correct key is never refused
//! `rate_limited` (R22). A registrar is named by the last token of its subject
//! (`authkeys.cmd.register.<name>`), which NATS permissions make true when authentication is on
//! (SPEC §6); on the unsuffixed subject of the zero-config setup it may name itself in the header
//! `Authkeys-Registrar` (`[A-Za-z0-9_-]{1,64}`, as a subject token; absent or invalid →
//! `anonymous`), a fairness hint
//! between honest registrars only. The per-key-id limit bounds guesses against any one key
//! whoever sends them.
//!
//! # Shutdown
//!
//! On cancellation [`CommandService::serve`] drains every subscription (the server stops sending,
//! already delivered requests are still read), answers every request it read, and returns; the
//! [`app::CommandRole`] then stops the relay (which publishes what is committed), closes the log and
//! drains the NATS connection.

pub mod app;
pub mod bootstrap;
pub mod directory;
pub mod lease;
pub mod limits;
pub mod log_read;
pub mod mint;
pub mod relay;
mod standby;
pub mod status;

mod add_user;
mod authorize_node;
mod change_role;
mod change_settings;
mod delete_node;
mod expire_node;
mod generate_key;
mod issue_token;
mod lock;
mod node_status;
mod oauth_client;
mod register;
mod revoke_key;
mod revoke_token;
mod set_key_expiry;
mod set_tags;
mod timer;
mod user_op;
mod webhook;

pub use timer::{TIMER_ACTOR, TIMER_SCOPE};

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use authkeys_domain::secret;
use authkeys_domain::{AdminOp, Command, NewToken, Rejection, State};
use authkeys_events::{Actor, ActorType, CommandId, TailnetId, Timestamp};
use authkeys_log::{AppendError, Clock, Committed, Idempotency, Log};
use authkeys_protocol::access::RegistrarName;
use authkeys_protocol::nats::{NatsError, Responder, ResponderLimits};
use authkeys_protocol::{self as wire, ErrorCode, ErrorReply, Parsed, subject};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::mint::Mint;
pub use limits::RateLimitConfig;
use limits::RateLimits;

pub use authkeys_protocol::subject::REGISTRAR_HEADER;
/// The registrar name of requests without a valid [`REGISTRAR_HEADER`].
pub const ANONYMOUS_REGISTRAR: &str = "anonymous";
/// The idempotency scope of registrar commands.
pub const REGISTRAR_SCOPE: &str = "registrar";

/// How the command service runs. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Failed-registration limits.
    pub rate_limits: RateLimitConfig,
    /// Requests being handled at once; the service stops reading NATS while this many are open.
    pub requests_in_flight_max: usize,
    /// On shutdown, longest wait for the requests already taken, and for each helper to stop.
    pub shutdown_wait_ms_max: u64,
    /// Lifetime of API tokens issued by add-user and issue-token.
    pub token_lifetime_days: u32,
    /// How long after its first answer a retried generate-key, add-user or issue-token still
    /// answers with the secret (while the key or token is usable); later retries answer
    /// without it.
    pub secret_replay_window_ms_max: u64,
    /// R02: an ephemeral node disconnected this long is removed. `decide` refuses an
    /// inactivity timer that fires sooner, whatever deadline the timer names; keep it equal to
    /// the timers' `--ephemeral-inactivity-timeout`.
    pub ephemeral_inactivity_ms: u64,
    /// Devices' MagicDNS names (`--dns-suffix`); the projections must use the same.
    pub dns: authkeys_protocol::MagicDns,
    /// `--ack-after-replication` (SPEC §7): answer a command only once the relay's PubAck says
    /// its events are stored by the stream (at R3, by a quorum of the cluster), so losing this
    /// machine, process and disk, loses no acknowledged command. Needs the relay.
    pub ack_after_replication: bool,
    /// With `ack_after_replication`: the longest a command waits for its PubAck before it is
    /// answered `unavailable` (committed, not yet replicated: retry with the same id, which
    /// answers the first result once it is).
    pub replication_wait_ms_max: u64,
}

/// 24 hours: the default [`CommandConfig::secret_replay_window_ms_max`].
pub const SECRET_REPLAY_WINDOW_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// 30 minutes: the default [`CommandConfig::ephemeral_inactivity_ms`], the timers' default too
/// (SPEC §5 `--ephemeral-inactivity-timeout`).
pub const EPHEMERAL_INACTIVITY_MS_DEFAULT: u64 = 30 * 60 * 1000;

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            rate_limits: RateLimitConfig::default(),
            requests_in_flight_max: 4096,
            shutdown_wait_ms_max: 5_000,
            token_lifetime_days: 90,
            secret_replay_window_ms_max: SECRET_REPLAY_WINDOW_MS_DEFAULT,
            ephemeral_inactivity_ms: EPHEMERAL_INACTIVITY_MS_DEFAULT,
            dns: authkeys_protocol::MagicDns::default(),
            ack_after_replication: false,
            replication_wait_ms_max: 10_000,
        }
    }
}

/// What every handler needs.
pub(crate) struct Ctx {
    pub(crate) log: Log<State>,
    pub(crate) mint: Mint,
    pub(crate) limits: RateLimits,
    pub(crate) directory: directory::KeyDirectory,
    pub(crate) clock: Clock,
    pub(crate) config: CommandConfig,
    /// The relay's progress, when commands wait for replication.
    pub(crate) replicated: Option<relay::RelayStatus>,
    /// The leader lease, when this service holds one: no command is appended or acknowledged
    /// once it has lapsed (SPEC §7).
    pub(crate) leader: Option<lease::Validity>,
}

impl Ctx {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The command service: decides and appends commands that arrive over NATS.
#[derive(Clone)]
pub struct CommandService {
    ctx: Arc<Ctx>,
}

impl std::fmt::Debug for CommandService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("log", &self.ctx.log)
            .finish_non_exhaustive()
    }
}

/// The live subscriptions of a service, taken before it serves so that a caller knows requests
/// are being received from then on.
#[derive(Debug)]
pub struct Subscriptions(Responder);

/// One request as a handler sees it.
pub(crate) struct Request<'a> {
    pub(crate) subject: &'static str,
    pub(crate) payload: &'a [u8],
    pub(crate) registrar: &'a str,
}

/// What a handler answers: the reply's JSON, or a refusal.
pub(crate) type Answer = Result<Vec<u8>, ErrorReply>;

impl CommandService {
    /// A service over an open log, with the hashing key in `mint`.
    pub fn new(log: Log<State>, mint: Mint, config: CommandConfig) -> Self {
        Self::with_clock(log, mint, config, authkeys_events::decision::system_clock())
    }

    /// [`CommandService::new`] with the clock used for views (`invalid`) and token lifetimes.
    pub fn with_clock(log: Log<State>, mint: Mint, config: CommandConfig, clock: Clock) -> Self {
        let limits = RateLimits::new(&config.rate_limits);
        Self {
            ctx: Arc::new(Ctx {
                log,
                mint,
                limits,
                directory: directory::KeyDirectory::default(),
                clock,
                config,
                replicated: None,
                leader: None,
            }),
        }
    }

    /// Answers commands only once `status` (the relay's) has their events in the stream
    /// (`--ack-after-replication`). Call before serving.
    pub fn acking_after(mut self, status: relay::RelayStatus) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.replicated = Some(status);
        }
        self
    }

    /// Appends and acknowledges commands only while `validity` says the leader lease is held.
    /// Call before serving.
    pub fn leading_while(mut self, validity: lease::Validity) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.leader = Some(validity);
        }
        self
    }

    /// The log this service appends to.
    pub fn log(&self) -> &Log<State> {
        &self.ctx.log
    }

    /// Subscribes to every command subject in the queue group and waits until the server has
    /// them.
    pub async fn subscribe(&self, client: &Client) -> Result<Subscriptions, NatsError> {
        let config = &self.ctx.config;
        let limits = ResponderLimits {
            shutdown_wait_ms_max: config.shutdown_wait_ms_max,
            ..ResponderLimits::concurrent(config.requests_in_flight_max)
        };
        let named = subject::PER_REGISTRAR.iter().map(|s| format!("{s}.*"));
        let subjects: Vec<String> = subject::COMMANDS
            .iter()
            .map(|s| (*s).to_owned())
            .chain(named)
            .collect();
        Responder::subscribe(client, subjects, subject::COMMAND_QUEUE_GROUP, limits)
            .await
            .map(Subscriptions)
    }

    /// Serves requests until `shutdown`, then stops by the responder's drain rule: stop taking
    /// requests, answer every request already received, flush the replies.
    pub async fn serve(&self, subscriptions: Subscriptions, shutdown: CancellationToken) {
        tracing::info!(
            subjects = subject::COMMANDS.len(),
            "command service serving"
        );
        let service = self.clone();
        subscriptions
            .0
            .serve(shutdown, move |msg| {
                let service = service.clone();
                async move {
                    // A registrar's own subject names it, and NATS permissions make that true
                    // (SPEC §6); the header is only a hint where NATS authenticates no one.
                    let (subject, registrar) = match subject::split_registrar(&msg.subject) {
                        Some((base, name)) => (base, name.to_string()),
                        None => (msg.subject.as_str(), registrar_name(msg.headers.as_ref())),
                    };
                    let body = service.handle(subject, &registrar, &msg.payload).await;
                    Some(body.into())
                }
            })
            .await;
        tracing::info!("command service stopped: every request answered");
    }

    /// Handles one request and returns the reply's bytes: the whole service minus NATS, for
    /// benchmarks and tests.
    pub async fn handle(&self, subject: &str, registrar: &str, payload: &[u8]) -> Vec<u8> {
        let Some(subject) = subject::COMMANDS.iter().copied().find(|s| *s == subject) else {
            return wire::reply_bytes(&ErrorReply::new(
                ErrorCode::BadRequest,
                format!("request: unknown subject {subject}"),
            ));
        };
        // Info level, so that a warning or error inside carries the command's ids; the
        // per-request "answered" event itself is debug.
        let span = tracing::info_span!(
            "command",
            subject,
            command_id = tracing::field::Empty,
            tailnet = tracing::field::Empty,
            seq = tracing::field::Empty,
        );
        let req = Request {
            subject,
            payload,
            registrar,
        };
        let ctx = &*self.ctx;
        let answer = async {
            let answer = match subject {
                subject::REGISTER => register::handle(ctx, &req).await,
                subject::NODE_CONNECTED | subject::NODE_DISCONNECTED => {
                    node_status::handle(ctx, &req).await
                }
                subject::GENERATE_KEY => generate_key::handle(ctx, &req).await,
                subject::REVOKE_KEY => revoke_key::handle(ctx, &req).await,
                subject::ADD_USER => add_user::handle(ctx, &req).await,
                subject::ISSUE_TOKEN => issue_token::handle(ctx, &req).await,
                subject::REVOKE_TOKEN => revoke_token::handle(ctx, &req).await,
                subject::CREATE_CLIENT => oauth_client::create(ctx, &req).await,
                subject::DELETE_CLIENT => oauth_client::delete(ctx, &req).await,
                subject::ISSUE_ACCESS_TOKEN => oauth_client::issue_access_token(ctx, &req).await,
                subject::CHANGE_ROLE => change_role::handle(ctx, &req).await,
                subject::REMOVE_USER => {
                    user_op::handle(ctx, &req, wire::RemoveUserRequest::parse).await
                }
                subject::SUSPEND_USER => {
                    user_op::handle(ctx, &req, wire::SuspendUserRequest::parse).await
                }
                subject::RESTORE_USER => {
                    user_op::handle(ctx, &req, wire::RestoreUserRequest::parse).await
                }
                subject::SET_TAGS => set_tags::handle(ctx, &req).await,
                subject::SET_KEY_EXPIRY => set_key_expiry::handle(ctx, &req).await,
                subject::EXPIRE_NODE => expire_node::handle(ctx, &req).await,
                subject::AUTHORIZE_NODE => authorize_node::handle(ctx, &req).await,
                subject::DELETE_NODE => delete_node::handle(ctx, &req).await,
                subject::CHANGE_SETTINGS => change_settings::handle(ctx, &req).await,
                subject::TIMER => timer::handle(ctx, &req).await,
                subject::LOCK_INIT => lock::init(ctx, &req).await,
                subject::LOCK_SIGN => lock::sign(ctx, &req).await,
                subject::LOCK_DISABLE => lock::disable(ctx, &req).await,
                subject::LOCK_STATUS => lock::status(ctx, &req).await,
                subject::CREATE_WEBHOOK => webhook::create(ctx, &req).await,
                subject::UPDATE_WEBHOOK => webhook::update(ctx, &req).await,
                subject::ROTATE_WEBHOOK => webhook::rotate(ctx, &req).await,
                subject::DELETE_WEBHOOK => webhook::delete(ctx, &req).await,
                _ => Err(ErrorReply::new(ErrorCode::Internal, "unrouted subject")),
            };
            match &answer {
                Ok(_) => tracing::debug!(ok = true, "answered"),
                Err(e) => tracing::debug!(ok = false, code = %e.error.code, "answered"),
            }
            answer
        }
        .instrument(span)
        .await;
        match answer {
            Ok(bytes) => bytes,
            Err(e) => wire::reply_bytes(&e),
        }
    }
}

/// The registrar's name from [`REGISTRAR_HEADER`] (a valid [`RegistrarName`], the same rule as
/// a registrar's own subject), or [`ANONYMOUS_REGISTRAR`].
pub fn registrar_name(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(REGISTRAR_HEADER))
        .and_then(|v| RegistrarName::parse(v.as_str()).ok())
        .map_or_else(|| ANONYMOUS_REGISTRAR.to_owned(), |n| n.to_string())
}

/// The JSON of a success reply.
pub(crate) fn ok<T: Serialize>(reply: &T) -> Answer {
    serde_json::to_vec(reply).map_err(|e| internal("encode reply", e))
}

/// An unexpected failure: logged here, once, and answered `internal`.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> ErrorReply {
    tracing::error!(error = %e, "{what}");
    ErrorReply::new(ErrorCode::Internal, format!("internal error: {what}"))
}

/// Decodes a request DTO; a structural error is a `bad_request` naming the field.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(req: &Request<'_>) -> Result<T, ErrorReply> {
    wire::decode(req.payload).map_err(ErrorReply::from)
}

/// The idempotency fingerprint of a request: keyed blake3 of its subject and canonical JSON.
pub(crate) fn fingerprint<T: Serialize>(ctx: &Ctx, req: &Request<'_>, dto: &T) -> [u8; 32] {
    let canonical = serde_json::to_vec(dto).unwrap_or_default();
    ctx.mint.fingerprint(req.subject, &canonical)
}

/// Records the command id and tailnet on the request's span.
pub(crate) fn record_ids(command_id: &CommandId, tailnet: Option<&TailnetId>) {
    let span = tracing::Span::current();
    span.record("command_id", command_id.as_str());
    if let Some(t) = tailnet {
        span.record("tailnet", t.as_str());
    }
}

/// Decides and appends `command` under `(scope, command_id)`, recorded for idempotency or not
/// ([`Idempotency::Unrecorded`]: timer commands, whose `decide` re-checks the state, so that no
/// earlier request under the same id can answer for a later one).
pub(crate) async fn append(
    ctx: &Ctx,
    idempotency: Idempotency,
    scope: &str,
    command_id: CommandId,
    actor: Actor,
    fingerprint: [u8; 32],
    command: Command,
) -> Result<Committed, AppendError<Rejection>> {
    let cmd = log_command(scope, command_id, actor, fingerprint, command);
    submit(ctx, idempotency, cmd).await
}

/// Appends a command built by [`log_command`] (with an [`authkeys_log::Answer`], say), waiting
/// for replication when the service acks after it.
pub(crate) async fn submit(
    ctx: &Ctx,
    idempotency: Idempotency,
    cmd: authkeys_log::Append<State>,
) -> Result<Committed, AppendError<Rejection>> {
    leading(ctx)?;
    let committed = ctx.log.append_with(cmd, idempotency).await?;
    if let (Some(status), Some(last)) = (&ctx.replicated, committed.envelopes.last()) {
        replicated(status, last.seq.get(), ctx.config.replication_wait_ms_max).await?;
    }
    // A primary paused past its lease (its successor may lead now) acknowledges nothing: the
    // retry goes to the leader, which answers the first result if the command got through.
    leading(ctx)?;
    Ok(appended(committed))
}

/// `unavailable` unless this service surely holds the leader lease (or has none to hold).
fn leading(ctx: &Ctx) -> Result<(), AppendError<Rejection>> {
    match &ctx.leader {
        Some(lease) if !lease.holds() => Err(AppendError::Unavailable(
            "this command service's leader lease has lapsed; retry".into(),
        )),
        _ => Ok(()),
    }
}

/// Waits until the stream holds `seq` (`--ack-after-replication`), or answers `unavailable`.
async fn replicated(
    status: &relay::RelayStatus,
    seq: u64,
    wait_ms_max: u64,
) -> Result<(), AppendError<Rejection>> {
    let mut acked = status.subscribe();
    let fenced = status.fenced();
    let wait = async {
        tokio::select! {
            r = acked.wait_for(|a| *a >= seq) => r.is_ok(),
            // Another primary's events took this seq: it will never be replicated.
            () = fenced.cancelled() => false,
        }
    };
    match tokio::time::timeout(Duration::from_millis(wait_ms_max), wait).await {
        Ok(true) => Ok(()),
        _ => {
            tracing::warn!(seq, "committed but not replicated in time");
            Err(AppendError::Unavailable(format!(
                "seq {seq} is committed but not yet stored by the cluster; retry with the same \
                 request id"
            )))
        }
    }
}

pub(crate) fn log_command(
    scope: &str,
    command_id: CommandId,
    actor: Actor,
    fingerprint: [u8; 32],
    command: Command,
) -> authkeys_log::Append<State> {
    authkeys_log::Append {
        scope: scope.to_owned(),
        command_id,
        actor,
        fingerprint,
        answer: None,
        decide: Box::new(move |state: &State, now| authkeys_domain::decide(state, &command, now)),
    }
}

/// Records what was appended on the request's span.
fn appended(committed: Committed) -> Committed {
    if let Some(last) = committed.envelopes.last() {
        let span = tracing::Span::current();
        span.record("seq", last.seq.get());
        span.record("tailnet", last.tailnet.as_str());
    }
    if committed.replayed {
        tracing::debug!("retry answered from the first result");
    }
    committed
}

/// Whether the answer to a command that issues a secret may carry it: always on the first
/// answer; on a retry answered from the first result only within
/// `secret_replay_window_ms_max` of that result and while the key or token is still `usable`
/// (not revoked, spent or expired). Later, the retry answers the same object without it, so
/// a command id seen months later cannot fetch a live secret again.
pub(crate) fn reveal_secret(ctx: &Ctx, committed: &Committed, usable: bool) -> bool {
    if !committed.replayed {
        return true;
    }
    let Some(first) = committed.envelopes.first() else {
        return false;
    };
    let window = i64::try_from(ctx.config.secret_replay_window_ms_max).unwrap_or(i64::MAX);
    let age_ms = ctx.now().unix_ms().saturating_sub(first.time.unix_ms());
    let within = age_ms <= window;
    if !within || !usable {
        tracing::info!(
            age_ms,
            usable,
            "retry answered without its secret (replay window passed or no longer usable)"
        );
    }
    within && usable
}

/// The reply of a failed append.
pub(crate) fn refusal(e: AppendError<Rejection>) -> ErrorReply {
    match e {
        AppendError::Rejected(r) => ErrorReply::of(&r),
        AppendError::IdempotencyMismatch(id) => ErrorReply::new(
            ErrorCode::Conflict,
            format!("the id {id} was already used for a different request"),
        ),
        AppendError::Conflict { stream, .. } => ErrorReply::new(
            ErrorCode::Conflict,
            format!("{stream} changed concurrently; retry"),
        ),
        AppendError::Unavailable(why) => {
            tracing::warn!(%why, "log unavailable");
            ErrorReply::new(
                ErrorCode::Unavailable,
                "the command log is unavailable; retry",
            )
        }
        other => internal("append a command", other),
    }
}

/// The API token `add-user` or `issue-token` issues for `parsed`: derived from `(tailnet,
/// commandId)`, so a retry gets the same one, valid for `lifetime_secs` if given, else
/// `token_lifetime_days`.
pub(crate) fn new_token<T>(
    ctx: &Ctx,
    parsed: &Parsed<T>,
    lifetime_secs: Option<i64>,
) -> (NewToken, secret::Issued) {
    let (token_id, issued) = ctx
        .mint
        .derived_api_token(&parsed.tailnet, &parsed.command_id);
    let lifetime_secs = lifetime_secs.unwrap_or(i64::from(ctx.config.token_lifetime_days) * 86_400);
    let token = NewToken {
        token_id,
        secret_hash: issued.secret_hash,
        expires: ctx.now().plus_seconds(lifetime_secs),
    };
    (token, issued)
}

/// Can the API token still authenticate at `now` (not revoked, not expired)?
pub(crate) fn token_usable(
    state: &State,
    tailnet: &TailnetId,
    token_id: &authkeys_events::TokenId,
    now: Timestamp,
) -> bool {
    state
        .tailnet(tailnet)
        .and_then(|t| t.tokens.get(token_id))
        .is_some_and(|t| !t.revoked && now < t.expires)
}

/// Appends an admin op of a parsed request, in the tailnet's idempotency scope.
pub(crate) async fn append_admin(
    ctx: &Ctx,
    fingerprint: [u8; 32],
    parsed: Parsed<AdminOp>,
) -> Result<Committed, ErrorReply> {
    record_ids(&parsed.command_id, Some(&parsed.tailnet));
    // An OAuth client acts as its principal (R19); the event records the client itself.
    let (tailnet, principal) = (parsed.tailnet.clone(), parsed.actor.clone());
    let client = ctx
        .log
        .query(move |s| {
            s.tailnet(&tailnet)
                .and_then(|t| t.principals.get(&principal).cloned())
        })
        .await
        .map_err(refusal)?;
    let actor = match client {
        Some(client_id) => Actor {
            actor_type: ActorType::Oauth,
            id: client_id.to_string(),
            login_name: None,
        },
        None => Actor {
            actor_type: ActorType::User,
            id: parsed.actor.to_string(),
            login_name: None,
        },
    };
    let command = Command::Admin {
        tailnet: parsed.tailnet.clone(),
        actor: parsed.actor,
        op: parsed.op,
    };
    append(
        ctx,
        Idempotency::Recorded,
        parsed.tailnet.as_str(),
        parsed.command_id,
        actor,
        fingerprint,
        command,
    )
    .await
    .map_err(refusal)
}

/// Reads a view from the state after every earlier command (read-your-writes).
pub(crate) async fn view<R: Send + 'static>(
    ctx: &Ctx,
    f: impl FnOnce(&State) -> Option<R> + Send + 'static,
    missing: &str,
) -> Result<R, ErrorReply> {
    ctx.log
        .query(f)
        .await
        .map_err(refusal)?
        .ok_or_else(|| ErrorReply::new(ErrorCode::NotFound, missing.to_owned()))
}

/// The device reply for a node of a tailnet, after an admin op on it.
pub(crate) async fn device_reply(
    ctx: &Ctx,
    tailnet: TailnetId,
    node_id: authkeys_events::NodeId,
) -> Answer {
    let missing = format!("device {node_id} not found");
    let dns = ctx.config.dns.clone();
    let device = view(
        ctx,
        move |s| wire::device_view(s, &tailnet, &node_id, &dns),
        &missing,
    )
    .await?;
    ok(&wire::DeviceReply {
        ok: wire::True,
        device,
    })
}

/// The common path of the admin ops that answer with a device: decode, parse, append, view.
pub(crate) async fn device_op<T>(
    ctx: &Ctx,
    req: &Request<'_>,
    parse: fn(&T) -> Result<Parsed<AdminOp>, wire::WireError>,
    node_of: fn(&AdminOp) -> Option<&authkeys_events::NodeId>,
) -> Answer
where
    T: serde::de::DeserializeOwned + Serialize,
{
    let dto: T = decode(req)?;
    let parsed = parse(&dto)?;
    let tailnet = parsed.tailnet.clone();
    let node_id = node_of(&parsed.op)
        .cloned()
        .ok_or_else(|| ErrorReply::new(ErrorCode::Internal, "device op without a device"))?;
    append_admin(ctx, fingerprint(ctx, req, &dto), parsed).await?;
    device_reply(ctx, tailnet, node_id).await
}

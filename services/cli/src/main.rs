//! `authkeys`: the command-line entry of every role (SPEC §5).
//!
//! - `authkeys admin bootstrap --data DIR --tailnet NAME --owner LOGIN`: creates a tailnet and its
//!   Owner offline; prints only the Owner's API token on stdout (what was made goes to stderr).
//! - `authkeys admin recover --data DIR --tailnet NAME`: offline, a new API token for the
//!   tailnet's Owner, recorded in the log (R18); prints only the token.
//! - `authkeys admin create-key --data DIR (--token-file FILE | --token TOKEN) [--reusable] [--ephemeral]
//!   [--preauthorized] [--tag TAG]… [--expiry-seconds N] [--description D]`: on the service's
//!   host, generate an auth key as the token's user (over NATS); prints only the key on stdout.
//! - `authkeys serve --data DIR --http ADDR --nats URL`: every role in one process (command
//!   service with its relay and log reads, projection workers, HTTP gateway), talking over NATS
//!   exactly as the split topology does.
//! - `authkeys project --data DIR --nats URL` and `authkeys api --http ADDR --nats URL
//!   --hashing-key FILE`: the projection workers and the HTTP gateway as separate processes.
//! - `authkeys command --data DIR --nats URL`: the command service with its relay and
//!   `authkeys.log.read`; SIGTERM or SIGINT shuts it down gracefully.
//! - `authkeys register --nats URL (--authkey-file FILE | --authkey KEY) --hostname H
//!   [--node-key K] [--os OS] [--request-id ID]`: a registrar client; prints the device JSON, or
//!   `error: <code>: <message>` on stderr and exits 1 when refused (2 when the request could not
//!   be made).
//!
//! Secrets on the command line show in the process list: `--authkey-file` and `--token-file`
//! read them from a file, or from stdin when the file is `-` (issue 11, finding 11); each is
//! mutually exclusive with its plain flag (and its environment variable).
//!
//! - `authkeys audit verify (--data DIR | --nats URL) --trusted-key KEY [--state FILE]`: verify
//!   the whole log against a pinned public key; exit 0 with a summary, 1 naming the first bad
//!   seq. `audit history (--key ID | --node ID | --user LOGIN) [--json]`, `audit replay --until
//!   SEQ|TIME --view keys|machines [--json]` and `audit public-key --data DIR` (the key to pin).
//!
//! Every flag can also be set with an `AUTHKEYS_*` environment variable (shown in `--help`);
//! logs go to stderr, filtered by `RUST_LOG` (default `info` for the service, `warn` for the
//! clients), as text or JSON (`--log-format`).
//!
//! Thin: flags become settings, the library does the work.

/// mimalloc instead of glibc's malloc: every command allocates and frees many small buffers on
/// several threads (envelopes, replies, NATS messages), and glibc's arenas spent ~15% of the
/// command service's CPU under load in them (BENCHMARKS.md, register storm).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use authkeys_command::RateLimitConfig;
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_protocol::access::{RegistrarName, Role};
use authkeys_protocol::nats::Identity;
use authkeys_protocol::{self as wire, DeviceReply, RegisterRequest, Reply};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "authkeys",
    version,
    about = "Pre-authentication keys, event-sourced."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "AUTHKEYS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Administration that works on the data dir directly.
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
    /// Every role in one process: command service, relay, projections, HTTP gateway.
    Serve(ServeArgs),
    /// The command service: owns the log, answers commands over NATS, relays events.
    Command(CommandArgs),
    /// The projection workers (keys, machines, identity views) and their queries.
    Project(ProjectArgs),
    /// The expiry timers: keys, node keys and inactive ephemeral nodes expire on time.
    Timers(TimersArgs),
    /// The HTTP API gateway (Tailscale API v2); talks only NATS.
    Api(ApiArgs),
    /// Webhook deliveries (R23): events to HTTP endpoints, signed, in order, retried for 24 h.
    Webhooks(WebhooksArgs),
    /// Register a node with an auth key, as a registrar does.
    Register(RegisterArgs),
    /// Auditors' tools: verify the log, the history of a key, node or user, replay a view.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Tailnet lock (R04): lock keys, turning the lock on and off, signing keys and nodes.
    Lock {
        #[command(subcommand)]
        command: lock_cli::LockCmd,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Verify the whole log from seq 1 against a pinned public key; exit 1 naming the first bad seq.
    Verify(AuditVerifyArgs),
    /// Every event that touched a key, a node or a user, in order (for a key: every node it registered).
    History(AuditHistoryArgs),
    /// A view (keys or machines) as it stood at a seq or a time.
    Replay(AuditReplayArgs),
    /// Print the public key of a data dir's signing key: the key auditors pin.
    PublicKey(AuditPublicKeyArgs),
}

#[derive(Debug, Args)]
#[group(skip)]
struct AuditSourceArgs {
    /// A data dir (or its log.redb), opened read-only: works while the service runs.
    #[arg(
        long,
        env = "AUTHKEYS_AUDIT_DATA",
        required_unless_present = "nats",
        conflicts_with = "nats"
    )]
    data: Option<PathBuf>,
    /// A running system's NATS server (reads authkeys.log.read and authkeys.log.checkpoints).
    #[arg(long, env = "AUTHKEYS_AUDIT_NATS", required_unless_present = "data")]
    nats: Option<String>,
    /// With NATS authentication on: the folder `authkeys admin nats-config` wrote (the
    /// auditor's seed, `auditor.nk`, may read the log and its checkpoints, nothing else).
    #[arg(long, env = "AUTHKEYS_NATS_AUTH", requires = "nats")]
    nats_auth: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct AuditVerifyArgs {
    #[command(flatten)]
    source: AuditSourceArgs,
    /// The log's ed25519 public key, pinned: 64 hex digits, base64, or a file holding either.
    #[arg(long, env = "AUTHKEYS_TRUSTED_KEY")]
    trusted_key: String,
    /// The auditor's memory between runs: read if it exists (the log must extend the history
    /// verified then), written after a successful run.
    #[arg(long, env = "AUTHKEYS_AUDIT_STATE")]
    state: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).multiple(false)))]
struct AuditHistoryArgs {
    #[command(flatten)]
    source: AuditSourceArgs,
    /// An auth key id (k…).
    #[arg(long, group = "subject")]
    key: Option<String>,
    /// A node id (n…).
    #[arg(long, group = "subject")]
    node: Option<String>,
    /// A user's login name.
    #[arg(long, group = "subject")]
    user: Option<String>,
    /// Print JSON (every envelope whole) instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AuditReplayArgs {
    #[command(flatten)]
    source: AuditSourceArgs,
    /// A seq (the view after it), an RFC 3339 time (the view at it) or `now`.
    #[arg(long)]
    until: String,
    /// Which view: keys or machines.
    #[arg(long)]
    view: String,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct AuditPublicKeyArgs {
    /// The command service's data dir (holds signing.key).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
}

#[derive(Debug, Subcommand)]
enum AdminCmd {
    /// Create a tailnet and its Owner, offline; print the Owner's API token.
    Bootstrap(BootstrapArgs),
    /// Issue the tailnet's Owner a new API token, offline (the service stopped), on the
    /// service's host; print it. The way back in when every token has expired (R18).
    Recover(RecoverArgs),
    /// Generate an auth key as the token's user, on the service's host; print the key.
    CreateKey(CreateKeyArgs),
    /// Write a nats-server authorization config with one nkey user per role (and registrar),
    /// each with the least permissions it needs, and one seed file per role (SPEC §6).
    NatsConfig(NatsConfigArgs),
}

#[derive(Debug, Args)]
struct NatsConfigArgs {
    /// The folder to write nats-server.conf and the seeds (`<role>.nk`, 0600) into.
    #[arg(long)]
    out: PathBuf,
    /// A registrar to admit (its seed is `registrar-<NAME>.nk`); repeat for several.
    #[arg(long = "registrar", value_parser = parse_registrar)]
    registrars: Vec<RegistrarName>,
    /// Replace files that exist (every seed is new: every role needs its new one).
    #[arg(long)]
    force: bool,
    /// Also write a CA (`ca.pem`), a server certificate and key for localhost/127.0.0.1/::1,
    /// and require TLS in the config; roles given `--nats-auth DIR` then trust `DIR/ca.pem`.
    #[arg(long)]
    tls: bool,
}

#[derive(Debug, Args)]
struct CreateKeyArgs {
    /// The command service's data dir (read-only here: the token is checked against its log).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// An API token, tskey-api-… (e.g. the one bootstrap printed). Shows in the process list:
    /// prefer `--token-file`.
    #[arg(
        long,
        env = "AUTHKEYS_TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the API token (alone, on one line); `-` reads it from stdin.
    #[arg(long, env = "AUTHKEYS_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// May register many nodes (R01); one-off otherwise.
    #[arg(long)]
    reusable: bool,
    /// Registers ephemeral nodes (R02).
    #[arg(long)]
    ephemeral: bool,
    /// Nodes are authorized at once under device approval (R03).
    #[arg(long)]
    preauthorized: bool,
    /// An ACL tag, tag:name (R05); repeat for several.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Lifetime, 1 to 7776000 seconds (R08).
    #[arg(long, default_value_t = 7_776_000)]
    expiry_seconds: i64,
    /// Free text: letters, digits, spaces and hyphens.
    #[arg(long)]
    description: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, env = "AUTHKEYS_TIMEOUT_MS", default_value_t = 10_000)]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
struct RecoverArgs {
    /// The data dir of the command service (its log; the service must be stopped).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    /// The tailnet's name, e.g. example.com.
    #[arg(long, env = "AUTHKEYS_TAILNET")]
    tailnet: String,
}

#[derive(Debug, Args)]
struct BootstrapArgs {
    /// The data dir of the command service (created if missing).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    /// The tailnet's name, e.g. example.com.
    #[arg(long, env = "AUTHKEYS_TAILNET")]
    tailnet: String,
    /// The Owner's login name.
    #[arg(long, env = "AUTHKEYS_OWNER")]
    owner: String,
}

#[derive(Debug, Args)]
struct CommandArgs {
    /// The data dir: log.redb, signing.key, hashing.key, derivation.key (created if missing;
    /// derivation.key is read by this role only).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// Run without the relay to JetStream (and so without a lease or standby).
    #[arg(long, env = "AUTHKEYS_NO_RELAY")]
    no_relay: bool,
    /// Start as a standby (SPEC §7): follow the primary through the events stream into this
    /// data dir's own copy of the log, and take over when the primary stops renewing the leader
    /// lease. The data dir must hold copies of the primary's signing.key, hashing.key and
    /// derivation.key; no new log is ever created. (Any command service that finds another one
    /// leading becomes a standby too; this flag only says not to start a new log.)
    #[arg(long, env = "AUTHKEYS_STANDBY", conflicts_with = "no_relay")]
    standby: bool,
    #[command(flatten)]
    replication: ReplicationFlags,
    /// The suffix of devices' MagicDNS names (`<machine>.tail<hex>.<suffix>`); the command
    /// service and the projections must be given the same.
    #[arg(long, env = "AUTHKEYS_DNS_SUFFIX", default_value = authkeys_protocol::DNS_SUFFIX_DEFAULT, value_parser = parse_dns_suffix)]
    dns_suffix: authkeys_protocol::MagicDns,
    /// R02: how long an ephemeral node must have been disconnected before a timer may remove
    /// it (the timers' own setting should match; `30m`, `2s`, `1h 30m`).
    #[arg(long, env = "AUTHKEYS_EPHEMERAL_INACTIVITY_TIMEOUT", default_value = "30m", value_parser = parse_timeout)]
    ephemeral_inactivity_timeout: std::time::Duration,
    /// Failed registrations a registrar may make at once (0: no limit).
    #[arg(long, env = "AUTHKEYS_REGISTRAR_FAILURES_BURST", default_value_t = RateLimitConfig::default().registrar_failures_burst)]
    registrar_failures_burst: u32,
    /// Failed registrations per minute a registrar may make after the burst.
    #[arg(long, env = "AUTHKEYS_REGISTRAR_FAILURES_PER_MINUTE", default_value_t = RateLimitConfig::default().registrar_failures_per_minute)]
    registrar_failures_per_minute: u32,
    /// Failed registrations with one key id at once (0: no limit).
    #[arg(long, env = "AUTHKEYS_KEY_FAILURES_BURST", default_value_t = RateLimitConfig::default().key_failures_burst)]
    key_failures_burst: u32,
    /// Failed registrations per minute with one key id after the burst.
    #[arg(long, env = "AUTHKEYS_KEY_FAILURES_PER_MINUTE", default_value_t = RateLimitConfig::default().key_failures_per_minute)]
    key_failures_per_minute: u32,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The data dir: the log and its keys, and the views under views/.
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    /// Where the HTTP API listens.
    #[arg(long, env = "AUTHKEYS_HTTP", default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    #[command(flatten)]
    nats: NatsArgs,
    /// The suffix of devices' MagicDNS names (`<machine>.tail<hex>.<suffix>`); the command
    /// service and the projections must be given the same.
    #[arg(long, env = "AUTHKEYS_DNS_SUFFIX", default_value = authkeys_protocol::DNS_SUFFIX_DEFAULT, value_parser = parse_dns_suffix)]
    dns_suffix: authkeys_protocol::MagicDns,
    /// Let federated identities (R20) name `http://` OIDC issuers: for local issuers in tests
    /// only; production issuers are https.
    #[arg(long, env = "AUTHKEYS_OIDC_ALLOW_HTTP")]
    oidc_allow_http: bool,
    #[command(flatten)]
    webhooks: WebhookFlags,
    #[command(flatten)]
    replication: ReplicationFlags,
    /// R02: how long an ephemeral node may stay disconnected before it is removed (`30m`, `2s`,
    /// `1h 30m`).
    #[arg(long, env = "AUTHKEYS_EPHEMERAL_INACTIVITY_TIMEOUT", default_value = "30m", value_parser = parse_timeout)]
    ephemeral_inactivity_timeout: std::time::Duration,
}

/// How the command service's events are replicated (SPEC §7), for `command` and `serve`.
#[derive(Debug, Clone, Args)]
struct ReplicationFlags {
    /// How many servers of the NATS cluster store the events stream (3 on a 3-node cluster);
    /// unset, a new stream gets one and an existing one keeps its own.
    #[arg(long, env = "AUTHKEYS_STREAM_REPLICAS", value_parser = clap::value_parser!(u8).range(1..=5))]
    stream_replicas: Option<u8>,
    /// Answer a command only once its events are stored by the stream (at R3: by a quorum of
    /// the cluster), so that losing this machine loses no acknowledged command.
    #[arg(long, env = "AUTHKEYS_ACK_AFTER_REPLICATION")]
    ack_after_replication: bool,
    /// How long the leader lease lives without renewal: a standby takes over at most this long
    /// after the primary stops (it renews every quarter of it).
    #[arg(long, env = "AUTHKEYS_LEASE_TTL", default_value = "2s", value_parser = parse_lease_ttl)]
    lease_ttl: std::time::Duration,
}

impl ReplicationFlags {
    fn apply(&self, s: &mut CommandSettings) {
        if let Some(relay) = &mut s.relay {
            relay.replicas = self.stream_replicas.map(usize::from);
        }
        s.command.ack_after_replication = self.ack_after_replication;
        s.lease.ttl_ms = millis(self.lease_ttl);
    }
}

/// The webhook flags of `serve` and `webhooks` (R23).
#[derive(Debug, Clone, Args)]
struct WebhookFlags {
    /// Let webhook endpoints resolve to loopback, private or link-local addresses: for local
    /// receivers in tests only.
    #[arg(long, env = "AUTHKEYS_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    /// The first wait after a failed delivery; it doubles per failure up to the cap.
    #[arg(long, env = "AUTHKEYS_WEBHOOKS_RETRY_BASE", default_value = "1s", value_parser = parse_timeout)]
    webhooks_retry_base: std::time::Duration,
    /// The longest wait between two attempts.
    #[arg(long, env = "AUTHKEYS_WEBHOOKS_RETRY_CAP", default_value = "10m", value_parser = parse_timeout)]
    webhooks_retry_cap: std::time::Duration,
    /// How long failed events are retried before they are recorded as dropped.
    #[arg(long, env = "AUTHKEYS_WEBHOOKS_RETRY_WINDOW", default_value = "24h", value_parser = parse_timeout)]
    webhooks_retry_window: std::time::Duration,
}

impl WebhookFlags {
    fn apply(&self, s: &mut authkeys_webhooks::WebhooksSettings) {
        s.delivery.allow_private = self.webhooks_allow_private;
        s.delivery.retry_base_ms = millis(self.webhooks_retry_base);
        s.delivery.retry_cap_ms = millis(self.webhooks_retry_cap);
        s.delivery.retry_window_ms = millis(self.webhooks_retry_window);
    }
}

#[derive(Debug, Args)]
struct WebhooksArgs {
    /// Where the role keeps its files (webhooks.redb, and webhook.key, which no other role may
    /// read).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    webhooks: WebhookFlags,
}

#[derive(Debug, Args)]
struct TimersArgs {
    /// Where the schedule keeps its file (timers.redb).
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// R02: how long an ephemeral node may stay disconnected before it is removed (`30m`, `2s`,
    /// `1h 30m`).
    #[arg(long, env = "AUTHKEYS_EPHEMERAL_INACTIVITY_TIMEOUT", default_value = "30m", value_parser = parse_timeout)]
    ephemeral_inactivity_timeout: std::time::Duration,
}

fn parse_dns_suffix(s: &str) -> Result<authkeys_protocol::MagicDns, String> {
    authkeys_protocol::MagicDns::new(s)
}

fn parse_registrar(s: &str) -> Result<RegistrarName, String> {
    RegistrarName::parse(s)
}

/// Whole milliseconds of a duration from [`parse_timeout`] (at most 365 days, so it fits).
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A positive duration such as `30m`, `2s` or `1h 30m`, at most 365 days.
/// A lease ttl: 400 ms (renewals every 100 ms) to 10 minutes.
fn parse_lease_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 2s, 1500ms)"))?;
    if d < std::time::Duration::from_millis(400) || d > std::time::Duration::from_secs(600) {
        return Err("the lease ttl must be from 400ms to 10m".into());
    }
    Ok(d)
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30m, 2s, 1h 30m)"))?;
    if d.is_zero() || d > std::time::Duration::from_secs(365 * 86_400) {
        return Err("must be more than 0 and at most 365 days".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
struct ProjectArgs {
    /// Where the views keep their files.
    #[arg(long, env = "AUTHKEYS_DATA")]
    data: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    /// The suffix of devices' MagicDNS names (`<machine>.tail<hex>.<suffix>`); the command
    /// service and the projections must be given the same.
    #[arg(long, env = "AUTHKEYS_DNS_SUFFIX", default_value = authkeys_protocol::DNS_SUFFIX_DEFAULT, value_parser = parse_dns_suffix)]
    dns_suffix: authkeys_protocol::MagicDns,
    /// This replica's name, when several `authkeys project` processes (each with its own
    /// data dir) serve queries together (SPEC §7): each follows the stream through its own
    /// durable consumers, `view-<NAME>-<view>`. `A-Z a-z 0-9 _ -`, at most 64.
    #[arg(long, env = "AUTHKEYS_REPLICA", value_parser = parse_registrar)]
    replica: Option<RegistrarName>,
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// Where to listen.
    #[arg(long, env = "AUTHKEYS_HTTP", default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
    #[command(flatten)]
    nats: NatsArgs,
    /// The command service's hashing.key (in its data dir): the only key the gateway needs;
    /// never give it derivation.key.
    #[arg(long, env = "AUTHKEYS_HASHING_KEY")]
    hashing_key: PathBuf,
    /// Let federated identities (R20) name `http://` OIDC issuers: for local issuers in tests
    /// only; production issuers are https.
    #[arg(long, env = "AUTHKEYS_OIDC_ALLOW_HTTP")]
    oidc_allow_http: bool,
    /// Let webhook URLs resolve to loopback, private or link-local addresses (R23): for local
    /// receivers in tests only.
    #[arg(long, env = "AUTHKEYS_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
}

/// Where NATS is and who this process is on it.
#[derive(Debug, Clone, Args)]
struct NatsArgs {
    /// The NATS server.
    #[arg(
        long = "nats",
        env = "AUTHKEYS_NATS",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
    /// With NATS authentication on: the folder `authkeys admin nats-config` wrote; each role
    /// reads its own seed (`<role>.nk`) and, when present, the CA (`ca.pem`).
    #[arg(long, env = "AUTHKEYS_NATS_AUTH")]
    nats_auth: Option<PathBuf>,
    /// The CA that signed the NATS server's certificate (requires TLS); default `ca.pem` in
    /// the `--nats-auth` folder when it exists.
    #[arg(long, env = "AUTHKEYS_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
}

impl NatsArgs {
    /// The identity of `role`: its seed when `--nats-auth` is given, anonymous otherwise.
    fn identity(&self, role: Role) -> anyhow::Result<Identity> {
        let identity = match &self.nats_auth {
            Some(dir) => Identity::from_dir(dir, role)?,
            None => Identity::anonymous(role),
        };
        Ok(with_ca(identity, self.nats_tls_ca.as_ref()))
    }
}

/// `identity`, also trusting `ca` (and requiring TLS) when given.
fn with_ca(identity: Identity, ca: Option<&PathBuf>) -> Identity {
    match ca {
        Some(ca) => identity.with_tls_ca(ca.clone()),
        None => identity,
    }
}

#[derive(Debug, Args)]
struct RegisterArgs {
    /// The NATS server.
    #[arg(long, env = "AUTHKEYS_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// With NATS authentication on: this registrar's nkey seed file (from `authkeys admin
    /// nats-config --registrar NAME`).
    #[arg(long, env = "AUTHKEYS_NATS_NKEY")]
    nats_nkey: Option<PathBuf>,
    /// The CA that signed the NATS server's certificate (requires TLS).
    #[arg(long, env = "AUTHKEYS_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// The auth key, tskey-auth-…. Shows in the process list: prefer `--authkey-file`.
    #[arg(
        long,
        env = "AUTHKEYS_AUTHKEY",
        hide_env_values = true,
        required_unless_present = "authkey_file",
        conflicts_with = "authkey_file"
    )]
    authkey: Option<String>,
    /// A file holding the auth key (alone, on one line); `-` reads it from stdin.
    #[arg(long, env = "AUTHKEYS_AUTHKEY_FILE", value_name = "FILE")]
    authkey_file: Option<PathBuf>,
    /// The node's host name.
    #[arg(long, env = "AUTHKEYS_HOSTNAME")]
    hostname: String,
    /// The node's key, nodekey: and 64 lowercase hex digits; a random one if absent.
    #[arg(long, env = "AUTHKEYS_NODE_KEY")]
    node_key: Option<String>,
    /// The node's operating system.
    #[arg(long, env = "AUTHKEYS_OS")]
    os: Option<String>,
    /// Idempotency key; a random one if absent. Retrying with the same id is safe.
    #[arg(long, env = "AUTHKEYS_REQUEST_ID")]
    request_id: Option<String>,
    /// This registrar's name: it registers on `authkeys.cmd.register.<NAME>` and gets its
    /// answers on `_INBOX_<NAME>` (with NATS authentication on, the seed's permissions make the
    /// name true). `A-Z a-z 0-9 _ -`, at most 64.
    #[arg(long, env = "AUTHKEYS_REGISTRAR", default_value = "authkeys-cli", value_parser = parse_registrar)]
    registrar: RegistrarName,
    /// How long to wait for the answer.
    #[arg(long, env = "AUTHKEYS_TIMEOUT_MS", default_value_t = 10_000)]
    timeout_ms: u64,
}

mod audit_cli;
mod local_admin;
mod lock_cli;
mod nats_config;
mod serve;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client's stderr is for its answer; a service's for its story.
    let default_filter = match cli.command {
        Cmd::Command(_)
        | Cmd::Serve(_)
        | Cmd::Project(_)
        | Cmd::Timers(_)
        | Cmd::Api(_)
        | Cmd::Webhooks(_) => "info",
        Cmd::Admin { .. } | Cmd::Register(_) | Cmd::Audit { .. } | Cmd::Lock { .. } => "warn",
    };
    init_logs(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Cmd::Admin {
                command: AdminCmd::Bootstrap(args),
            } => run_bootstrap(args).await,
            Cmd::Admin {
                command: AdminCmd::Recover(args),
            } => run_recover(args).await,
            Cmd::Admin {
                command: AdminCmd::CreateKey(args),
            } => run_create_key(args).await,
            Cmd::Admin {
                command: AdminCmd::NatsConfig(args),
            } => run_nats_config(args),
            Cmd::Command(args) => run_command(args).await,
            Cmd::Serve(args) => run_serve(args).await,
            Cmd::Project(args) => run_project(args).await,
            Cmd::Timers(args) => run_timers(args).await,
            Cmd::Api(args) => run_api(args).await,
            Cmd::Webhooks(args) => run_webhooks(args).await,
            Cmd::Register(args) => run_register(args).await,
            Cmd::Audit { command } => audit_cli::run(command).await,
            Cmd::Lock { command } => lock_cli::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run_bootstrap(args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let made = tokio::task::spawn_blocking(move || {
        bootstrap(&args.data, &args.tailnet, &args.owner)
            .map(|made| (made, args.tailnet, args.owner))
    })
    .await
    .context("bootstrap")?;
    match made {
        Ok((made, tailnet, owner)) => {
            eprintln!(
                "created tailnet {tailnet} (id {}) with Owner {owner} (id {}); their API token \
                 follows on stdout and is shown only now",
                made.tailnet_id, made.owner_id
            );
            println!("{}", made.token.text);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn run_recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let tailnet = args.tailnet.clone();
    let made = tokio::task::spawn_blocking(move || {
        authkeys_command::bootstrap::recover(&args.data, &args.tailnet)
    })
    .await
    .context("recover")?;
    match made {
        Ok(made) => {
            eprintln!(
                "issued the Owner of tailnet {tailnet} (id {}) a new API token, recorded in the \
                 log; it follows on stdout and is shown only now",
                made.tailnet_id
            );
            println!("{}", made.token.text);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run_nats_config(args: NatsConfigArgs) -> anyhow::Result<ExitCode> {
    match nats_config::write(&args.out, &args.registrars, args.force, args.tls) {
        Ok(written) => {
            for (role, public) in &written.users {
                eprintln!("{:<24} {public}", role.name());
            }
            eprintln!(
                "wrote {} and {} seed files",
                written.config.display(),
                written.users.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The longest secret file read (a key or token is about 100 bytes).
const SECRET_FILE_BYTES_MAX: u64 = 4096;

/// A secret given as `value` or read from `file` (`-`: stdin): the file must hold the secret
/// alone, surrounding whitespace (a final newline) ignored. Clap makes the two exclusive.
fn secret_input(
    value: Option<String>,
    file: Option<&std::path::Path>,
    flag: &str,
) -> anyhow::Result<String> {
    use std::io::Read as _;
    let Some(file) = file else {
        return value.with_context(|| format!("--{flag} or --{flag}-file is required"));
    };
    let named = if file == std::path::Path::new("-") {
        "stdin".to_owned()
    } else {
        file.display().to_string()
    };
    let mut text = String::new();
    let read = if file == std::path::Path::new("-") {
        std::io::stdin()
            .take(SECRET_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(SECRET_FILE_BYTES_MAX + 1).read_to_string(&mut text))
    };
    read.with_context(|| format!("--{flag}-file: read {named}"))?;
    if text.len() as u64 > SECRET_FILE_BYTES_MAX {
        anyhow::bail!("--{flag}-file: {named} is larger than {SECRET_FILE_BYTES_MAX} bytes");
    }
    let secret = text.trim();
    if secret.is_empty() {
        anyhow::bail!("--{flag}-file: {named} is empty");
    }
    if secret.chars().any(char::is_whitespace) {
        anyhow::bail!("--{flag}-file: {named} must hold only the {flag}, on one line");
    }
    Ok(secret.to_owned())
}

async fn run_create_key(args: CreateKeyArgs) -> anyhow::Result<ExitCode> {
    let data = args.data.clone();
    let token = secret_input(args.token.clone(), args.token_file.as_deref(), "token")?;
    let owner =
        match tokio::task::spawn_blocking(move || crate::local_admin::authenticate(&data, &token))
            .await
            .context("check the token")?
        {
            Ok(owner) => owner,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(1));
            }
        };
    let request = wire::GenerateKeyRequest {
        command_id: authkeys_command::mint::random_id('c')?,
        tailnet: owner.tailnet.to_string(),
        actor: owner.user_id.to_string(),
        key_type: None,
        description: args.description,
        expiry_seconds: Some(args.expiry_seconds),
        capabilities: wire::Capabilities {
            devices: wire::DeviceCapabilities {
                create: wire::CreateCapabilities {
                    reusable: args.reusable,
                    ephemeral: args.ephemeral,
                    preauthorized: args.preauthorized,
                    tags: Some(args.tags),
                },
            },
        },
    };
    let connection = Connection {
        url: &args.nats.url,
        identity: args.nats.identity(Role::Api)?,
        name: "authkeys-admin",
        timeout_ms: args.timeout_ms,
    };
    let subject = wire::subject::GENERATE_KEY.to_owned();
    ask(connection, subject, &request, |ok: wire::KeyReply| {
        let secret = ok.key.key.clone().unwrap_or_default();
        let mut shown = ok.key;
        shown.key = None;
        let text = serde_json::to_string_pretty(&shown).context("encode the key")?;
        eprintln!("{text}");
        println!("{secret}");
        Ok(())
    })
    .await
}

/// Where a client command sends its one request, and as whom.
#[derive(Debug, Clone)]
struct Connection<'a> {
    url: &'a str,
    identity: Identity,
    name: &'a str,
    timeout_ms: u64,
}

/// Sends one command request and waits for its reply: `on_ok` prints a success (exit 0); a
/// refusal is printed as `error: <code>: <message>` (exit 1).
async fn ask<T: serde::de::DeserializeOwned>(
    connection: Connection<'_>,
    subject: String,
    request: &impl serde::Serialize,
    on_ok: impl FnOnce(T) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let payload = serde_json::to_vec(request).context("encode the request")?;
    let options = connection
        .identity
        .options(connection.name)
        .request_timeout(Some(Duration::from_millis(connection.timeout_ms)));
    let client = authkeys_protocol::nats::connect_with(connection.url, options).await?;
    let reply = client
        .request(subject.clone(), payload.into())
        .await
        .with_context(|| format!("send {subject}"))?;
    let reply: Reply<T> =
        serde_json::from_slice(&reply.payload).context("read the command service's reply")?;
    let code = match reply {
        Reply::Ok(ok) => {
            on_ok(ok)?;
            ExitCode::SUCCESS
        }
        Reply::Err(e) => {
            eprintln!("error: {}: {}", e.error.code, e.error.message);
            ExitCode::from(1)
        }
    };
    client.drain().await.ok();
    Ok(code)
}

async fn run_command(args: CommandArgs) -> anyhow::Result<ExitCode> {
    let mut settings = CommandSettings::new(args.data, args.nats.url.clone());
    settings.identity = args.nats.identity(Role::Command)?;
    settings.command.rate_limits = RateLimitConfig {
        registrar_failures_burst: args.registrar_failures_burst,
        registrar_failures_per_minute: args.registrar_failures_per_minute,
        key_failures_burst: args.key_failures_burst,
        key_failures_per_minute: args.key_failures_per_minute,
        ..RateLimitConfig::default()
    };
    if args.no_relay {
        settings.relay = None;
    }
    settings.standby = args.standby;
    args.replication.apply(&mut settings);
    settings.command.ephemeral_inactivity_ms = millis(args.ephemeral_inactivity_timeout);
    settings.command.dns = args.dns_suffix;
    let app = CommandRole::build(settings).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let mut settings =
        crate::serve::ServeSettings::new(args.data, args.http, args.nats.url.clone());
    if let Some(dir) = &args.nats.nats_auth {
        settings.authenticate(dir)?;
    }
    settings.timers.ephemeral_inactivity = args.ephemeral_inactivity_timeout;
    settings.command.command.ephemeral_inactivity_ms = millis(args.ephemeral_inactivity_timeout);
    settings.command.command.dns = args.dns_suffix.clone();
    args.replication.apply(&mut settings.command);
    settings.projections.dns = args.dns_suffix;
    settings.api.oidc.allow_http = args.oidc_allow_http;
    settings.api.webhooks_allow_private = args.webhooks.webhooks_allow_private;
    args.webhooks.apply(&mut settings.webhooks);
    crate::serve::run(settings, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_timers(args: TimersArgs) -> anyhow::Result<ExitCode> {
    let mut config = authkeys_projections::timers::TimersConfig::new(args.data);
    config.ephemeral_inactivity = args.ephemeral_inactivity_timeout;
    let identity = args.nats.identity(Role::Timers)?;
    run_nats_role(
        &args.nats.url,
        identity,
        "authkeys-timers",
        async |client, shutdown| {
            let clock = authkeys_events::decision::system_clock();
            let timers = authkeys_projections::timers::Timers::build(client, config, clock).await?;
            timers.run(shutdown).await
        },
    )
    .await
}

async fn run_webhooks(args: WebhooksArgs) -> anyhow::Result<ExitCode> {
    let mut settings = authkeys_webhooks::WebhooksSettings::new(args.data);
    args.webhooks.apply(&mut settings);
    let identity = args.nats.identity(Role::Webhooks)?;
    run_nats_role(
        &args.nats.url,
        identity,
        "authkeys-webhooks",
        async |client, shutdown| {
            let clock = authkeys_events::decision::system_clock();
            let role = authkeys_webhooks::WebhooksRole::build(client, settings, clock).await?;
            role.run(shutdown).await
        },
    )
    .await
}

async fn run_project(args: ProjectArgs) -> anyhow::Result<ExitCode> {
    let mut config = authkeys_projections::config::ProjectionConfig::new(args.data);
    config.dns = args.dns_suffix;
    if let Some(replica) = &args.replica {
        config.consumer_prefix = format!("view-{replica}-");
    }
    let identity = args.nats.identity(Role::Project)?;
    run_nats_role(
        &args.nats.url,
        identity,
        "authkeys-project",
        async |client, shutdown| {
            let clock = authkeys_events::decision::system_clock();
            let views = authkeys_projections::Views::build(client, config, clock).await?;
            views.run(shutdown).await
        },
    )
    .await
}

/// Connects to NATS, runs a role on the connection until SIGTERM/SIGINT, then drains it.
async fn run_nats_role<F>(
    url: &str,
    identity: Identity,
    name: &str,
    role: F,
) -> anyhow::Result<ExitCode>
where
    F: AsyncFnOnce(async_nats::Client, CancellationToken) -> anyhow::Result<()>,
{
    let client = identity.connect(url, name).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    role(client.clone(), shutdown).await?;
    client.drain().await.ok();
    Ok(ExitCode::SUCCESS)
}

async fn run_api(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let mut settings =
        authkeys_gateway::ApiSettings::new(args.http, args.nats.url.clone(), args.hashing_key);
    settings.identity = args.nats.identity(Role::Api)?;
    settings.oidc.allow_http = args.oidc_allow_http;
    settings.webhooks_allow_private = args.webhooks_allow_private;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    authkeys_gateway::run(settings, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `token` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
}

async fn run_register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let auth_key = secret_input(args.authkey, args.authkey_file.as_deref(), "authkey")?;
    let node_key = match args.node_key {
        Some(k) => k,
        None => random_node_key()?,
    };
    let request_id = match args.request_id {
        Some(id) => id,
        None => authkeys_command::mint::random_id('r')?,
    };
    let request = RegisterRequest {
        request_id,
        auth_key,
        node_key,
        hostname: args.hostname,
        os: args.os,
    };
    let role = Role::Registrar(args.registrar.clone());
    let identity = match &args.nats_nkey {
        Some(file) => Identity::from_seed_file(file, role)?,
        None => Identity::anonymous(role),
    };
    let identity = with_ca(identity, args.nats_tls_ca.as_ref());
    let connection = Connection {
        url: &args.nats,
        identity,
        name: "authkeys-register",
        timeout_ms: args.timeout_ms,
    };
    ask(
        connection,
        wire::subject::register_of(&args.registrar),
        &request,
        |ok: DeviceReply| {
            let text = serde_json::to_string_pretty(&ok.device).context("encode the device")?;
            println!("{text}");
            Ok(())
        },
    )
    .await
}

/// `nodekey:` and 64 random lowercase hex digits.
fn random_node_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("nodekey:{}", hex::encode(bytes)))
}

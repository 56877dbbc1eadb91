//! `authkeys lock keygen|init|sign|status|disable`: tailnet lock (R04) from an admin's machine.
//!
//! Lock keys are made and kept here, never sent: `keygen` writes the private key to a 0600 file
//! and prints the public key; `sign` signs with it locally. Everything that changes the tailnet
//! goes over NATS (`authkeys.cmd.lock.*`) with the user's API token, which the command service
//! checks; with NATS authentication on, the connection uses the `operator` nkey seed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use authkeys_domain::lock::canonical_keys;
use authkeys_domain::secret::{self, SecretKind};
use authkeys_events::lock::{
    DISABLEMENT_PREFIX, LockPrivateKey, PRESIGN_SEPARATOR, disablement_hash, node_statement,
    split_presigned, trusted_keys_statement,
};
use authkeys_events::{KeyId, LockKey, NodeKey, PreSignature};
use authkeys_protocol::access::Role;
use authkeys_protocol::lock::{
    LockDisableRequest, LockInitRequest, LockSignRequest, LockStatus, LockStatusRequest,
};
use authkeys_protocol::nats::Identity;
use authkeys_protocol::{Reply, subject};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum LockCmd {
    /// Make a lock key: writes the private key to FILE (0600) and prints its public key.
    Keygen(KeygenArgs),
    /// Turn tailnet lock on with the trusted keys (prints the disablement secret once); while
    /// it is on, replace the trusted keys, signed with --lock-key (a key trusted now).
    Init(InitArgs),
    /// Sign an auth key (offline: prints the pre-signed key) or a locked-out node (nodekey:…,
    /// over NATS).
    Sign(SignArgs),
    /// Show the tailnet's lock: on or off, trusted keys, locked-out nodes.
    Status(ClientArgs),
    /// Turn tailnet lock off with the disablement secret `init` printed.
    Disable(DisableArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key; refused if the file exists.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The NATS server.
    #[arg(long, env = "AUTHKEYS_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// With NATS authentication on: the operator nkey seed file (`authkeys admin nats-config`
    /// writes `operator.nk`).
    #[arg(long, env = "AUTHKEYS_NATS_NKEY")]
    nats_nkey: Option<PathBuf>,
    /// The CA that signed the NATS server's certificate (requires TLS).
    #[arg(long, env = "AUTHKEYS_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// Your API token, tskey-api-…. Shows in the process list: prefer `--token-file`.
    #[arg(
        long,
        env = "AUTHKEYS_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding your API token; `-` reads it from stdin.
    #[arg(long, env = "AUTHKEYS_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// How long to wait for each answer.
    #[arg(long, env = "AUTHKEYS_TIMEOUT_MS", default_value_t = 10_000)]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// A key to trust, tlpub:… (repeat for several).
    #[arg(long = "trusted-key", required = true, value_parser = LockKey::parse)]
    trusted_keys: Vec<LockKey>,
    /// While the lock is on: a currently trusted key's private key file, to sign the change.
    #[arg(long, value_name = "FILE")]
    lock_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The lock key's private key file.
    #[arg(long, value_name = "FILE")]
    lock_key: PathBuf,
    /// What to sign: an auth key (tskey-auth-…) or a locked-out node's key (nodekey:…).
    what: String,
}

#[derive(Debug, Args)]
pub(crate) struct DisableArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The disablement secret, tldisable:…; prefer `--disablement-secret-file`.
    #[arg(long, conflicts_with = "disablement_secret_file")]
    disablement_secret: Option<String>,
    /// A file holding the disablement secret; `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    disablement_secret_file: Option<PathBuf>,
}

pub(crate) async fn run(cmd: LockCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LockCmd::Keygen(args) => keygen(&args.out),
        LockCmd::Init(args) => init(args).await,
        LockCmd::Sign(args) => sign(args).await,
        LockCmd::Status(args) => {
            let client = Client::connect(&args).await?;
            let status = client.status().await?;
            Ok(client.finish(status.map(|s| print_status(&s))).await)
        }
        LockCmd::Disable(args) => {
            let secret = crate::secret_input(
                args.disablement_secret,
                args.disablement_secret_file.as_deref(),
                "disablement-secret",
            )?;
            let client = Client::connect(&args.client).await?;
            let request = LockDisableRequest {
                request_id: authkeys_command::mint::random_id('r')?,
                token: client.token.clone(),
                disablement_secret: secret,
            };
            let answer = client.ask(subject::LOCK_DISABLE, &request).await?;
            Ok(client.finish(answer.map(|s| print_status(&s))).await)
        }
    }
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = LockPrivateKey::from_seed(seed);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("--out: create {} (it must not exist)", out.display()))?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", out.display()))?;
    println!("{}", key.public());
    Ok(ExitCode::SUCCESS)
}

fn read_lock_key(path: &Path) -> anyhow::Result<LockPrivateKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--lock-key: read {}", path.display()))?;
    LockPrivateKey::parse(&text).map_err(|e| anyhow::anyhow!("--lock-key {}: {e}", path.display()))
}

async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let lock_key = args.lock_key.as_deref().map(read_lock_key).transpose()?;
    let client = Client::connect(&args.client).await?;
    let status = match client.status().await? {
        Ok(s) => s,
        Err(code) => return Ok(client.finish(Err(code)).await),
    };
    let trusted_keys: Vec<String> = args.trusted_keys.iter().map(ToString::to_string).collect();
    let request_id = authkeys_command::mint::random_id('r')?;
    if !status.enabled {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let request = LockInitRequest {
            request_id,
            token: client.token.clone(),
            trusted_keys,
            disablement_hash: Some(disablement_hash(&secret).to_hex()),
            signer: None,
            signature: None,
        };
        let answer = client.ask(subject::LOCK_INIT, &request).await?;
        return Ok(client
            .finish(answer.map(|s| {
                print_status(&s);
                eprintln!(
                    "Tailnet lock is on. The disablement secret below is shown only now: keep it \
                     somewhere safe; `authkeys lock disable` needs it."
                );
                println!("{DISABLEMENT_PREFIX}{}", hex::encode(secret));
            }))
            .await);
    }
    let Some(signer) = lock_key else {
        eprintln!(
            "error: tailnet lock is already on: changing its trusted keys needs --lock-key FILE, \
             the private key of a key trusted now"
        );
        return Ok(client.finish(Err(ExitCode::from(1))).await);
    };
    let keys = canonical_keys(&args.trusted_keys);
    let statement = trusted_keys_statement(&status.tailnet, status.generation, &keys);
    let request = LockInitRequest {
        request_id,
        token: client.token.clone(),
        trusted_keys,
        disablement_hash: None,
        signer: Some(signer.public().to_string()),
        signature: Some(signer.sign(&statement).to_string()),
    };
    let answer = client.ask(subject::LOCK_INIT, &request).await?;
    Ok(client.finish(answer.map(|s| print_status(&s))).await)
}

async fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let lock_key = read_lock_key(&args.lock_key)?;
    if args.what.starts_with("nodekey:") {
        let node_key = NodeKey::parse(args.what.as_str())
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.what))?;
        let client = Client::connect(&args.client).await?;
        let status = match client.status().await? {
            Ok(s) => s,
            Err(code) => return Ok(client.finish(Err(code)).await),
        };
        let signature = lock_key.sign(&node_statement(&status.tailnet, &node_key));
        let request = LockSignRequest {
            request_id: authkeys_command::mint::random_id('r')?,
            token: client.token.clone(),
            node_key: node_key.to_string(),
            lock_key: lock_key.public().to_string(),
            signature: signature.to_string(),
        };
        let answer = client.ask(subject::LOCK_SIGN, &request).await?;
        return Ok(client.finish(answer.map(|s| print_status(&s))).await);
    }
    // An auth key: signed here, offline. A key signed before is signed again, not twice.
    let (key, _) = split_presigned(args.what.trim());
    let presented = secret::parse(SecretKind::Auth, key).map_err(|_| {
        anyhow::anyhow!("expected an auth key (tskey-auth-…) or a node key (nodekey:…)")
    })?;
    let key_id = KeyId::parse(presented.id.as_str())
        .map_err(|e| anyhow::anyhow!("the auth key's id: {e}"))?;
    let signature = PreSignature::make(&lock_key, &key_id);
    println!("{key}{PRESIGN_SEPARATOR}{signature}");
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &LockStatus) {
    match serde_json::to_string_pretty(s) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: encode the status: {e}"),
    }
}

/// A connection to NATS as the operator, with the user's token.
struct Client {
    nats: async_nats::Client,
    token: String,
}

impl Client {
    async fn connect(args: &ClientArgs) -> anyhow::Result<Self> {
        let token = crate::secret_input(args.token.clone(), args.token_file.as_deref(), "token")?;
        let identity = match &args.nats_nkey {
            Some(file) => Identity::from_seed_file(file, Role::Operator)?,
            None => Identity::anonymous(Role::Operator),
        };
        let identity = crate::with_ca(identity, args.nats_tls_ca.as_ref());
        let options = identity
            .options("authkeys-lock")
            .request_timeout(Some(Duration::from_millis(args.timeout_ms)));
        let nats = authkeys_protocol::nats::connect_with(&args.nats, options).await?;
        Ok(Self { nats, token })
    }

    async fn status(&self) -> anyhow::Result<Result<LockStatus, ExitCode>> {
        let request = LockStatusRequest {
            token: self.token.clone(),
        };
        self.ask(subject::LOCK_STATUS, &request).await
    }

    /// Sends one request: the status it answers, or the refusal printed as `error: <code>:
    /// <message>` (exit 1).
    async fn ask(
        &self,
        subject: &'static str,
        request: &impl serde::Serialize,
    ) -> anyhow::Result<Result<LockStatus, ExitCode>> {
        let payload = serde_json::to_vec(request).context("encode the request")?;
        let reply = self
            .nats
            .request(subject, payload.into())
            .await
            .with_context(|| format!("send {subject}"))?;
        let reply: Reply<LockStatus> =
            serde_json::from_slice(&reply.payload).context("read the command service's reply")?;
        Ok(match reply {
            Reply::Ok(s) => Ok(s),
            Reply::Err(e) => {
                eprintln!("error: {}: {}", e.error.code, e.error.message);
                Err(ExitCode::from(1))
            }
        })
    }

    async fn finish(self, outcome: Result<(), ExitCode>) -> ExitCode {
        self.nats.drain().await.ok();
        outcome.err().unwrap_or(ExitCode::SUCCESS)
    }
}

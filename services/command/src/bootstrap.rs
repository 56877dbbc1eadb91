//! `authkeys admin bootstrap`: creates a tailnet, its Owner and the Owner's first API token,
//! offline, straight into the log (the command service must not be running on the same data dir:
//! the log has one writer). `authkeys admin recover` issues the Owner a new token the same way
//! (R18: the way back in when every token has expired), recorded as an `ApiTokenIssued` by the
//! system actor `recover`.
//!
//! A tailnet name can be bootstrapped once: each run uses a fresh command id, so a second run
//! with the same name reaches `decide`, which refuses it (and no token is printed).

use std::path::Path;

use anyhow::{Context, bail};
use authkeys_domain::secret::Issued;
use authkeys_domain::{Command, NewToken, Rejection, State};
use authkeys_events::{Actor, CommandId, LoginName, TailnetId, TailnetName, UserId};
use authkeys_log::{AppendError, LogConfig};

use crate::mint;

/// Lifetime of the Owner's first token.
pub const OWNER_TOKEN_LIFETIME_DAYS: i64 = 90;

/// What bootstrap made. `token.text` is the only copy of the Owner's token.
#[derive(Debug)]
pub struct Bootstrapped {
    /// The new tailnet's id (used in admin requests and event subjects).
    pub tailnet_id: TailnetId,
    /// The Owner's user id (the `actor` of their admin requests).
    pub owner_id: UserId,
    /// The Owner's API token.
    pub token: Issued,
}

/// Creates tailnet `name` with Owner `owner` in the log under `data_dir` (created if missing,
/// with its key files). Blocking.
pub fn bootstrap(data_dir: &Path, name: &str, owner: &str) -> anyhow::Result<Bootstrapped> {
    let name = TailnetName::parse(name).map_err(|e| anyhow::anyhow!("--tailnet: {}", e.why))?;
    let owner_login = LoginName::parse(owner).map_err(|e| anyhow::anyhow!("--owner: {}", e.why))?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create data dir {}", data_dir.display()))?;
    let (mint, log) = mint::open_log(data_dir, LogConfig::in_dir(data_dir))?;

    let tailnet_id = mint::random_tailnet_id()?;
    let owner_id = mint::random_user_id()?;
    let (token_id, token) = mint.random_api_token()?;
    let now = authkeys_events::decision::system_clock().now();
    let command = Command::CreateTailnet {
        tailnet_id: tailnet_id.clone(),
        name: name.clone(),
        owner_id: owner_id.clone(),
        owner_login,
        token: NewToken {
            token_id,
            secret_hash: token.secret_hash,
            expires: now.plus_seconds(OWNER_TOKEN_LIFETIME_DAYS * 86_400),
        },
    };
    let command_id = CommandId::parse(format!("bootstrap-{tailnet_id}"))
        .context("make the bootstrap command id")?;
    let result = log.append_blocking(authkeys_log::Append {
        scope: "system".to_owned(),
        command_id,
        actor: Actor::system("bootstrap"),
        fingerprint: *blake3::hash(tailnet_id.as_str().as_bytes()).as_bytes(),
        answer: None,
        decide: Box::new(move |state: &State, now| authkeys_domain::decide(state, &command, now)),
    });
    log.close();
    match result {
        Ok(_) => Ok(Bootstrapped {
            tailnet_id,
            owner_id,
            token,
        }),
        Err(AppendError::Rejected(Rejection::Conflict(_))) => bail!(
            "tailnet {name} already exists in {}: a tailnet is bootstrapped once (its Owner's \
             token was printed then)",
            data_dir.display()
        ),
        Err(e) => Err(anyhow::anyhow!("{e}")).context("append the new tailnet"),
    }
}

/// What recover made. `token.text` is the only copy of the new token.
#[derive(Debug)]
pub struct Recovered {
    /// The tailnet's id.
    pub tailnet_id: TailnetId,
    /// The Owner's new API token.
    pub token: Issued,
}

/// Issues a new API token to the Owner of tailnet `name` in the log under `data_dir` (which
/// must exist: recover creates nothing else). Blocking; fails while the command service holds
/// the log.
pub fn recover(data_dir: &Path, name: &str) -> anyhow::Result<Recovered> {
    let name = TailnetName::parse(name).map_err(|e| anyhow::anyhow!("--tailnet: {}", e.why))?;
    let config = LogConfig::in_dir(data_dir);
    if !config.path.is_file() {
        bail!(
            "{} holds no log: recover runs on the service's data dir",
            data_dir.display()
        );
    }
    let (mint, log) = mint::open_log(data_dir, config)?;
    let (token_id, token) = mint.random_api_token()?;
    let now = authkeys_events::decision::system_clock().now();
    let command_id =
        CommandId::parse(format!("recover-{token_id}")).context("make the recover command id")?;
    let command = Command::RecoverOwner {
        name: name.clone(),
        token: NewToken {
            token_id,
            secret_hash: token.secret_hash,
            expires: now.plus_seconds(OWNER_TOKEN_LIFETIME_DAYS * 86_400),
        },
    };
    let result = log.append_blocking(authkeys_log::Append {
        scope: "system".to_owned(),
        command_id,
        actor: Actor::system("recover"),
        fingerprint: *blake3::hash(name.as_str().as_bytes()).as_bytes(),
        answer: None,
        decide: Box::new(move |state: &State, now| authkeys_domain::decide(state, &command, now)),
    });
    log.close();
    match result {
        Ok(committed) => Ok(Recovered {
            tailnet_id: committed
                .envelopes
                .first()
                .map(|env| env.tailnet.clone())
                .context("recover appended no event")?,
            token,
        }),
        Err(AppendError::Rejected(r)) => bail!("{r}"),
        Err(e) => Err(anyhow::anyhow!("{e}")).context("append the Owner's new token"),
    }
}

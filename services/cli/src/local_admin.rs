//! `authkeys admin create-key`: generate an auth key from the command line on the service's host.
//!
//! The HTTP API (which authenticates tokens through the identity view) is the way for remote
//! clients. On the host, an admin holding an API token can do without it: this module reads the
//! log **read-only** (safe while the service writes it), checks the token against the tailnet's
//! state with the hashing key from the data dir (only that key: never `derivation.key`, and it
//! creates no file), and sends `authkeys.cmd.admin.generate-key` over
//! NATS as that user. The command service decides it like any other request (R07 included).

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use authkeys_domain::State;
use authkeys_domain::secret::{self, SecretKind};
use authkeys_events::{Seq, TailnetId, TokenId, UserId};
use authkeys_log::LogReader;
use subtle::ConstantTimeEq;

use authkeys_command::mint::HASHING_KEY_FILE;

/// Events read per page while folding the log.
const READ_PAGE_EVENTS_MAX: usize = 4096;

/// Who an API token belongs to.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    /// The token's tailnet.
    pub tailnet: TailnetId,
    /// The user it acts as.
    pub user_id: UserId,
}

/// Checks `token` against the log in `data_dir` (read-only) and returns its owner. Refuses a
/// malformed, unknown, wrong, revoked or expired token with one message.
pub fn authenticate(data_dir: &Path, token: &str) -> anyhow::Result<TokenOwner> {
    let refused = || anyhow!("invalid, expired or revoked API token");
    let presented = secret::parse(SecretKind::Api, token).map_err(|_| refused())?;
    let key_path = data_dir.join(HASHING_KEY_FILE);
    let hashing_key = authkeys_log::keys::load_or_create_key(&key_path, false)
        .with_context(|| format!("load hashing key {}", key_path.display()))?;
    let hash = presented.hash(&hashing_key);
    let token_id = TokenId::parse(presented.id.as_str()).map_err(|_| refused())?;

    let reader = LogReader::open(&data_dir.join("log.redb"))
        .with_context(|| format!("open the log in {} read-only", data_dir.display()))?;
    let mut state = State::default();
    let mut next = Seq::FIRST;
    loop {
        let page = reader.read(next, READ_PAGE_EVENTS_MAX)?;
        let Some(last) = page.last() else { break };
        next = last.seq.next();
        for ev in &page {
            state.apply(&ev.envelope().context("decode the log")?);
        }
    }
    let now = authkeys_events::decision::system_clock().now();
    let tailnet = state.token_index.get(&token_id).ok_or_else(refused)?;
    let stored = state
        .tailnet(tailnet)
        .and_then(|t| t.tokens.get(&token_id))
        .ok_or_else(refused)?;
    let matches: bool = stored.secret_hash.0.ct_eq(&hash.0).into();
    if !matches || stored.revoked || stored.expires <= now {
        bail!(refused());
    }
    Ok(TokenOwner {
        tailnet: tailnet.clone(),
        user_id: stored.user_id.clone(),
    })
}

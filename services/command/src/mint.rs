//! Secret material of the command service: the hashing key, random ids, and issuing auth keys and
//! API tokens (R10).
//!
//! - The **hashing key** (`hashing.key` in the data dir, beside the log's `signing.key`, 32 random
//!   bytes, created 0600 once) keys every stored secret hash: the log holds only
//!   `blake3::keyed_hash(hashing_key, secret)`, useless without this file. It is created only
//!   with a new log and **bound** to it like the signing key ([`open_log`]): the log records a
//!   one-way digest of it, so a start with the file missing beside an existing log, or with
//!   another key, is refused and names the file — a new key would silently lock out every auth
//!   key and API token the log holds a hash of (issue 11, finding 7).
//! - **Random ids** (`k…`, `n…`, `u…`, `t…`, `T…`): a prefix and 16 base62 characters from the
//!   operating system's randomness.
//! - **Derived secrets**: an admin command that issues a secret (generate key, add user, issue
//!   token) must answer a retry with the *same* secret, yet no secret is ever stored. So its id
//!   and its 32 random bytes are derived from the **derivation key** and `(purpose, tailnet,
//!   commandId)`: a retry derives the same secret, and a thief of the log alone learns nothing
//!   (ADR 003). The derivation key (`derivation.key`, 32 random bytes, 0600) is a file of its
//!   own, independent of the hashing key and held only by the command role: the gateway, which
//!   needs `hashing.key` to verify API tokens, cannot re-derive any secret from it (issue 11,
//!   finding 2).
//!
//! Nothing here logs. [`Issued`] redacts its text in `Debug`.

use std::path::Path;

use anyhow::{Context, bail};
use authkeys_domain::State;
use authkeys_domain::secret::{self, Issued, SecretKind};
use authkeys_events::{CommandId, Hash, KeyId, NodeId, TailnetId, TokenId, UserId};
use authkeys_log::{BoundKey, Log, LogConfig};

/// The hashing key's file name in the data dir.
pub const HASHING_KEY_FILE: &str = "hashing.key";
/// The derivation key's file name in the data dir (command role only; see the module docs).
pub const DERIVATION_KEY_FILE: &str = "derivation.key";

/// The name the hashing key is bound to the log under.
const HASHING_KEY_BINDING: &str = "hashing";
/// The context string of the digest of the hashing key that the log records (never the key).
const BINDING_CONTEXT: &str = "authkeys 2026-01 hashing key binding v1";

pub use authkeys_protocol::ID_RANDOM_LEN;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The context string of the derivation key of [`Mint::from_key`] (tests and benchmarks only):
/// the scheme before `derivation.key` existed, where it came from the hashing key.
const DERIVE_CONTEXT: &str = "authkeys 2026-01 retry-stable secrets v1";
/// The context string of the key that fingerprints requests for idempotency.
const FINGERPRINT_CONTEXT: &str = "authkeys 2026-01 request fingerprint v1";

/// The service's secret keys, loaded once at start.
#[derive(Clone)]
pub struct Mint {
    hashing_key: [u8; 32],
    derive_key: [u8; 32],
    fingerprint_key: [u8; 32],
}

impl std::fmt::Debug for Mint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mint").finish_non_exhaustive()
    }
}

/// What a derived secret is for; part of the derivation so that two purposes never share bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An auth key from `generate-key`.
    AuthKey,
    /// An API token from `add-user` or `issue-token`.
    ApiToken,
    /// A user id from `add-user`.
    User,
    /// An OAuth client's id and secret from `create-client` (R19).
    Client,
    /// An OAuth client's principal from `create-client`.
    Principal,
    /// An access token from `issue-access-token`.
    AccessToken,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::AuthKey => b"auth-key",
            Self::ApiToken => b"api-token",
            Self::User => b"user",
            Self::Client => b"oauth-client",
            Self::Principal => b"oauth-principal",
            Self::AccessToken => b"access-token",
        }
    }
}

/// Loads the keys of `data_dir` and opens the log `config` names (in the same data dir), with
/// the hashing key bound to it: a new log records a digest of the key; an existing one refuses
/// a key it was not made with, naming the file. Blocking.
pub fn open_log(data_dir: &Path, mut config: LogConfig) -> anyhow::Result<(Mint, Log<State>)> {
    let mint = match config.log_id {
        None => Mint::load(data_dir, true)?,
        Some(_) => Mint::load_copy(data_dir)?,
    };
    config.bound_keys.push(mint.binding(data_dir));
    let log = Log::open(config, State::default())
        .with_context(|| format!("open the log in {}", data_dir.display()))?;
    Ok((mint, log))
}

/// Refuses to go on when `hashing.key` is missing beside an existing log: it is never
/// recreated then, since a new key would lock out every secret the log holds a hash of.
fn refuse_missing_hashing_key(data_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let log_path = LogConfig::in_dir(data_dir).path;
    let missing = matches!(
        std::fs::symlink_metadata(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound
    );
    if missing && log_path.exists() {
        bail!(
            "hashing key {} is missing, but the log {} exists: every auth key and API token \
             hash in that log was made with that key, so a new one would lock everyone out. \
             Restore the file from a backup (it is only ever created with a new log)",
            path.display(),
            log_path.display()
        );
    }
    Ok(())
}

impl Mint {
    /// Loads `hashing.key` from `data_dir`, creating it (0600) when `create` is set and neither
    /// it nor the log exists yet. A missing key beside an existing log is an error that names
    /// the file.
    pub fn load(data_dir: &Path, create: bool) -> anyhow::Result<Self> {
        Self::load_keys(data_dir, create, true)
    }

    /// Loads the keys of a copy of another log (a standby's, SPEC §7), creating none: they
    /// must be copies of that log's, or its secrets would not check and its retries would not
    /// answer the same secrets.
    pub fn load_copy(data_dir: &Path) -> anyhow::Result<Self> {
        Self::load_keys(data_dir, false, false).context(
            "a standby needs copies of its primary's hashing.key, derivation.key and signing.key \
             in its data dir",
        )
    }

    fn load_keys(data_dir: &Path, create: bool, create_derivation: bool) -> anyhow::Result<Self> {
        let path = data_dir.join(HASHING_KEY_FILE);
        refuse_missing_hashing_key(data_dir, &path)?;
        let key = authkeys_log::keys::load_or_create_key(&path, create)
            .with_context(|| format!("load hashing key {}", path.display()))?;
        let derivation_key = load_derivation_key(data_dir, create_derivation)?;
        Ok(Self::from_keys(key, derivation_key))
    }

    /// From the 32 bytes of a hashing key alone (tests, benchmarks): the derivation key is then
    /// derived from the hashing key, the scheme before issue 11 (finding 2), which let any
    /// holder of the hashing key re-derive every issued secret. Services use [`Mint::load`].
    pub fn from_key(hashing_key: [u8; 32]) -> Self {
        Self::from_keys(
            hashing_key,
            blake3::derive_key(DERIVE_CONTEXT, &hashing_key),
        )
    }

    /// From a hashing key and an independent derivation key.
    pub fn from_keys(hashing_key: [u8; 32], derivation_key: [u8; 32]) -> Self {
        Self {
            hashing_key,
            derive_key: derivation_key,
            fingerprint_key: blake3::derive_key(FINGERPRINT_CONTEXT, &hashing_key),
        }
    }

    /// The key of every stored secret hash.
    pub fn hashing_key(&self) -> &[u8; 32] {
        &self.hashing_key
    }

    /// What binds this hashing key to the log in `data_dir`: a one-way digest of the key.
    pub fn binding(&self, data_dir: &Path) -> BoundKey {
        BoundKey {
            name: HASHING_KEY_BINDING.to_owned(),
            path: data_dir.join(HASHING_KEY_FILE),
            digest: blake3::derive_key(BINDING_CONTEXT, &self.hashing_key),
        }
    }

    /// The keyed hash of a presented text, e.g. a whole malformed auth key, so that a refused
    /// registration costs the same hashing as an accepted one.
    pub fn hash_text(&self, text: &str) -> Hash {
        secret::hash_secret(&self.hashing_key, text)
    }

    /// A keyed digest of a request's canonical bytes: the log's idempotency fingerprint. Keyed,
    /// because a registration's canonical bytes hold an auth key.
    pub fn fingerprint(&self, subject: &str, canonical: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.fingerprint_key);
        h.update(
            &u64::try_from(subject.len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        h.update(subject.as_bytes());
        h.update(canonical);
        *h.finalize().as_bytes()
    }

    /// 32 bytes derived from `(purpose, tailnet, commandId)`: the same inputs give the same bytes.
    fn derive(&self, purpose: Purpose, tailnet: &TailnetId, command_id: &CommandId) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.derive_key);
        for part in [
            purpose.label(),
            tailnet.as_str().as_bytes(),
            command_id.as_str().as_bytes(),
        ] {
            // Length-prefixed, so that no two different triples hash the same bytes.
            h.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_le_bytes());
            h.update(part);
        }
        *h.finalize().as_bytes()
    }

    /// The key id and secret of `generate-key` with this `commandId` in this tailnet; a retry
    /// gets the same.
    pub fn derived_auth_key(&self, tailnet: &TailnetId, command_id: &CommandId) -> (KeyId, Issued) {
        let (id, issued) =
            self.derived(Purpose::AuthKey, SecretKind::Auth, 'k', tailnet, command_id);
        let key_id = KeyId::parse(id).expect("k and 16 base62 characters is a valid KeyId");
        (key_id, issued)
    }

    /// The token id and secret of `add-user` or `issue-token` with this `commandId`.
    pub fn derived_api_token(
        &self,
        tailnet: &TailnetId,
        command_id: &CommandId,
    ) -> (TokenId, Issued) {
        let (id, issued) =
            self.derived(Purpose::ApiToken, SecretKind::Api, 't', tailnet, command_id);
        let token_id = TokenId::parse(id).expect("t and 16 base62 characters is a valid TokenId");
        (token_id, issued)
    }

    /// An id (`prefix` and 16 base62 characters) and a secret of `kind`, both derived for
    /// `purpose` from `(tailnet, commandId)`.
    fn derived(
        &self,
        purpose: Purpose,
        kind: SecretKind,
        prefix: char,
        tailnet: &TailnetId,
        command_id: &CommandId,
    ) -> (String, Issued) {
        let bytes = self.derive(purpose, tailnet, command_id);
        let (id_seed, random) = split_seed(&bytes);
        let id = format!("{prefix}{}", base62_id(&id_seed));
        let issued = secret::issue(kind, &id, &random, &self.hashing_key);
        (id, issued)
    }

    /// The client id and secret (`tskey-client-…`) of `create-client` with this `commandId`.
    pub fn derived_client(&self, tailnet: &TailnetId, command_id: &CommandId) -> (KeyId, Issued) {
        let (id, issued) = self.derived(
            Purpose::Client,
            SecretKind::Client,
            'k',
            tailnet,
            command_id,
        );
        let key_id = KeyId::parse(id).expect("k and 16 base62 characters is a valid KeyId");
        (key_id, issued)
    }

    /// The access token (`tskey-api-…`) of `issue-access-token` with this `commandId`.
    pub fn derived_access_token(
        &self,
        tailnet: &TailnetId,
        command_id: &CommandId,
    ) -> (TokenId, Issued) {
        let (id, issued) = self.derived(
            Purpose::AccessToken,
            SecretKind::Api,
            't',
            tailnet,
            command_id,
        );
        let token_id = TokenId::parse(id).expect("t and 16 base62 characters is a valid TokenId");
        (token_id, issued)
    }

    /// The principal of `create-client` with this `commandId`.
    pub fn derived_principal(&self, tailnet: &TailnetId, command_id: &CommandId) -> UserId {
        self.derived_id(Purpose::Principal, tailnet, command_id)
    }

    /// The user id of `add-user` with this `commandId`.
    pub fn derived_user_id(&self, tailnet: &TailnetId, command_id: &CommandId) -> UserId {
        self.derived_id(Purpose::User, tailnet, command_id)
    }

    fn derived_id(&self, purpose: Purpose, tailnet: &TailnetId, command_id: &CommandId) -> UserId {
        let bytes = self.derive(purpose, tailnet, command_id);
        let (id_seed, _) = split_seed(&bytes);
        UserId::parse(format!("u{}", base62_id(&id_seed)))
            .expect("u and 16 base62 characters is a valid UserId")
    }

    /// A fresh API token with a random id and secret (bootstrap).
    pub fn random_api_token(&self) -> anyhow::Result<(TokenId, Issued)> {
        let token_id = TokenId::parse(random_id('t')?).context("make a token id")?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let issued = secret::issue(
            SecretKind::Api,
            token_id.as_str(),
            &random,
            &self.hashing_key,
        );
        Ok((token_id, issued))
    }
}

/// Loads `derivation.key` from `data_dir`, creating it (32 fresh random bytes, 0600) when it does
/// not exist: with a new data dir, and once in a data dir made before the key existed (when
/// the derivation key came from the hashing key). In that second case only **retries of commands
/// issued before** are affected: they derive another id and no longer answer with the first
/// secret (the key, token or user they made is untouched and still works). Every secret
/// issued from then on needs this file to be re-derived, and no other role reads it.
fn load_derivation_key(data_dir: &Path, create: bool) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(DERIVATION_KEY_FILE);
    authkeys_log::keys::load_or_create_key(&path, create)
        .with_context(|| format!("load derivation key {}", path.display()))
}

/// Splits 32 derived bytes into an id seed and the secret's 32 random bytes (re-hashed, so the
/// id and the secret share no bytes).
fn split_seed(bytes: &[u8; 32]) -> ([u8; 16], [u8; 32]) {
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&bytes[..16]);
    let random = *blake3::keyed_hash(bytes, b"secret").as_bytes();
    (seed, random)
}

/// 16 base62 characters from 16 bytes (each byte reduced mod 62; the bias is irrelevant for an
/// identifier, which is public).
fn base62_id(seed: &[u8; 16]) -> String {
    seed.iter()
        .map(|b| char::from(BASE62[usize::from(*b) % BASE62.len()]))
        .collect()
}

/// `prefix` and 16 random base62 characters (see [`authkeys_protocol::random_id`]).
pub fn random_id(prefix: char) -> anyhow::Result<String> {
    authkeys_protocol::random_id(prefix).map_err(|e| anyhow::anyhow!("no randomness: {e}"))
}

/// A random node id for a registration that may create a node.
pub fn random_node_id() -> anyhow::Result<NodeId> {
    NodeId::parse(random_id('n')?).context("make a node id")
}

/// A random user id (bootstrap's Owner).
pub fn random_user_id() -> anyhow::Result<UserId> {
    UserId::parse(random_id('u')?).context("make a user id")
}

/// A random tailnet id (bootstrap).
pub fn random_tailnet_id() -> anyhow::Result<TailnetId> {
    TailnetId::parse(random_id('T')?).context("make a tailnet id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TailnetId, CommandId) {
        (
            TailnetId::parse("Tabc").expect("valid"),
            CommandId::parse("req-1").expect("valid"),
        )
    }

    #[test]
    fn r10_derived_auth_key_is_stable_per_command_and_parses() {
        // A retry (same tailnet, same commandId) derives the same id and secret; another
        // commandId, tailnet or hashing key derives different ones; the text parses and hashes to
        // the stored hash.
        let s = Mint::from_key([3; 32]);
        let (t, c) = ids();
        let (k1, i1) = s.derived_auth_key(&t, &c);
        let (k2, i2) = s.derived_auth_key(&t, &c);
        assert_eq!((k1.clone(), i1.text.clone()), (k2, i2.text.clone()));
        let other = CommandId::parse("req-2").expect("valid");
        assert_ne!(s.derived_auth_key(&t, &other).1.text, i1.text);
        let t2 = TailnetId::parse("Tabd").expect("valid");
        assert_ne!(s.derived_auth_key(&t2, &c).1.text, i1.text);
        assert_ne!(
            Mint::from_key([4; 32]).derived_auth_key(&t, &c).1.text,
            i1.text
        );
        let p = secret::parse(SecretKind::Auth, &i1.text).expect("parses");
        assert_eq!(p.id, k1.as_str());
        assert_eq!(p.hash(s.hashing_key()), i1.secret_hash);
        assert_eq!(k1.as_str().len(), 1 + ID_RANDOM_LEN);
        // A token from the same command differs from the key.
        let (tok, ti) = s.derived_api_token(&t, &c);
        assert!(ti.text.starts_with(&format!("tskey-api-{tok}-")));
        assert_ne!(ti.secret_hash, i1.secret_hash);
    }

    #[test]
    fn finding_02_hashing_key_alone_cannot_rederive_an_issued_auth_key() {
        // A data dir as the command role loads it: hashing.key and derivation.key, two
        // independent random files.
        let dir = tempfile::tempdir().expect("temp dir");
        let mint = Mint::load(dir.path(), true).expect("load");
        let hashing = std::fs::read(dir.path().join(HASHING_KEY_FILE)).expect("hashing.key");
        let derivation =
            std::fs::read(dir.path().join(DERIVATION_KEY_FILE)).expect("derivation.key");
        assert_ne!(hashing, derivation);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(DERIVATION_KEY_FILE)).expect("meta");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let (t, c) = ids();
        let (key_id, issued) = mint.derived_auth_key(&t, &c);
        // What the gateway holds (the hashing key) verifies the key…
        let p = secret::parse(SecretKind::Auth, &issued.text).expect("parses");
        assert_eq!(p.hash(mint.hashing_key()), issued.secret_hash);
        // …but re-deriving from it, with the old scheme or the hashing key used directly as
        // the derivation key, yields neither the key nor its id.
        for guess in [
            Mint::from_key(*mint.hashing_key()),
            Mint::from_keys(*mint.hashing_key(), *mint.hashing_key()),
        ] {
            let (id, text) = guess.derived_auth_key(&t, &c);
            assert_ne!(id, key_id);
            assert_ne!(text.text, issued.text);
        }
        // The command role reloading the same data dir derives the same key (retries work).
        let again = Mint::load(dir.path(), false).expect("reload");
        assert_eq!(again.derived_auth_key(&t, &c).1.text, issued.text);
    }

    #[test]
    fn finding_02_a_data_dir_without_derivation_key_gets_a_new_random_one() {
        // A data dir from before the split: hashing.key only. Loading it creates derivation.key;
        // secrets from then on no longer follow from the hashing key.
        let dir = tempfile::tempdir().expect("temp dir");
        let hashing =
            authkeys_log::keys::load_or_create_key(&dir.path().join(HASHING_KEY_FILE), true)
                .expect("hashing.key");
        let old = Mint::from_key(hashing);
        let mint = Mint::load(dir.path(), false).expect("load");
        assert!(dir.path().join(DERIVATION_KEY_FILE).exists());
        assert_eq!(mint.hashing_key(), &hashing, "the hashing key is kept");
        let (t, c) = ids();
        assert_ne!(
            mint.derived_auth_key(&t, &c).1.text,
            old.derived_auth_key(&t, &c).1.text
        );
        // Fingerprints stay keyed by the hashing key: idempotency records of old commands hold.
        assert_eq!(mint.fingerprint("s", b"x"), old.fingerprint("s", b"x"));
    }

    #[test]
    fn random_ids_have_prefix_and_16_base62() {
        let a = random_id('n').expect("random");
        let b = random_id('n').expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 17);
        assert!(a.starts_with('n') && a[1..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert!(random_tailnet_id().is_ok() && random_node_id().is_ok());
    }

    #[test]
    fn fingerprint_is_keyed_and_separates_subjects() {
        let s = Mint::from_key([1; 32]);
        assert_ne!(s.fingerprint("a", b"x"), s.fingerprint("b", b"x"));
        assert_ne!(
            s.fingerprint("a", b"x"),
            Mint::from_key([2; 32]).fingerprint("a", b"x")
        );
        assert!(!format!("{s:?}").contains('1'));
    }
}

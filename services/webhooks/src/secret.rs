//! Endpoint secrets (ADR 005): never stored, never in an event. The secret of endpoint `id` at
//! rotation `r` is `tskey-webhook-` + hex(keyed blake3(`webhook.key`, context ‖ id ‖ r)), where
//! `webhook.key` is 32 random bytes in the webhooks role's data dir (0600, created on first
//! start) that no other role reads. Rotating bumps `r` in the log, so the old secret signs
//! nothing new; whoever holds the log alone can derive nothing.

use std::path::Path;

use anyhow::Context as _;
use authkeys_events::EndpointId;

/// The key's file in the role's data dir.
pub const KEY_FILE: &str = "webhook.key";
/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "tskey-webhook-";
const CONTEXT: &[u8] = b"authkeys webhook secret v1\0";

/// The key the secrets derive from.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Loads `webhook.key` from `data_dir`, creating it (0600) on first start.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let path = data_dir.join(KEY_FILE);
        let key = authkeys_log::keys::load_or_create_key(&path, true)
            .with_context(|| format!("load the webhook key {}", path.display()))?;
        Ok(Self(key))
    }

    /// From 32 bytes (tests, benchmarks).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// The secret of `endpoint` at `rotation`.
    pub fn secret(&self, endpoint: &EndpointId, rotation: u32) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(CONTEXT);
        h.update(
            &u64::try_from(endpoint.as_str().len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        h.update(endpoint.as_str().as_bytes());
        h.update(&rotation.to_le_bytes());
        format!("{SECRET_PREFIX}{}", h.finalize().to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_per_endpoint_rotation_and_key() {
        let k = SecretKey::from_bytes([7; 32]);
        let a = EndpointId::parse("wA").expect("valid");
        let b = EndpointId::parse("wB").expect("valid");
        assert_eq!(k.secret(&a, 0), k.secret(&a, 0));
        assert_ne!(k.secret(&a, 0), k.secret(&a, 1));
        assert_ne!(k.secret(&a, 0), k.secret(&b, 0));
        assert_ne!(
            k.secret(&a, 0),
            SecretKey::from_bytes([8; 32]).secret(&a, 0)
        );
        assert!(k.secret(&a, 0).starts_with(SECRET_PREFIX));
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let k1 = SecretKey::load(dir.path()).expect("created");
        let k2 = SecretKey::load(dir.path()).expect("loaded");
        let id = EndpointId::parse("wA").expect("valid");
        assert_eq!(k1.secret(&id, 0), k2.secret(&id, 0));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

//! Tailnet lock's subjects (R04, SPEC §5 `authkeys lock …`): `authkeys.cmd.lock.init`,
//! `.sign`, `.disable` and `.status`. Each request carries the acting user's API token, which
//! the command service checks against the log (the lock CLI talks to NATS, not to the gateway).
//!
//! Signatures are made by the CLI with a lock key the service never sees; the service checks
//! them against the tailnet's trusted keys ([`authkeys_events::lock`] spells what each covers).

use authkeys_domain::lock::LockOp;
use authkeys_domain::secret::{self, Presented, SecretKind};
use authkeys_events::lock::{DISABLEMENT_PREFIX, parse_disablement_secret};
use authkeys_events::{CommandId, Hash, LockKey, LockSignature, NodeId, NodeKey, TailnetId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{True, WireError, id};

/// `authkeys.cmd.lock.init`: turn tailnet lock on (with `disablementHash`), or, while it is on,
/// replace the trusted keys (with `signer` and `signature` over the tailnet, the current
/// generation and the new set).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockInitRequest {
    /// Idempotency key.
    #[schemars(with = "CommandId")]
    pub request_id: String,
    /// The acting user's API token (Owner or Admin). Never logged.
    pub token: String,
    /// The keys to trust, `tlpub:…`.
    #[schemars(with = "Vec<LockKey>")]
    pub trusted_keys: Vec<String>,
    /// Turning the lock on: the hash of the disablement secret the CLI drew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Hash>")]
    pub disablement_hash: Option<String>,
    /// Changing the keys: a key trusted now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<LockKey>")]
    pub signer: Option<String>,
    /// Changing the keys: its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<LockSignature>")]
    pub signature: Option<String>,
}

debug_redacting!(LockInitRequest { request_id, trusted_keys, disablement_hash, signer } secrets { token });

/// `authkeys.cmd.lock.sign`: sign a locked-out node.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockSignRequest {
    /// Idempotency key.
    #[schemars(with = "CommandId")]
    pub request_id: String,
    /// The acting user's API token (Owner, Admin, IT admin). Never logged.
    pub token: String,
    /// The node's key.
    #[schemars(with = "NodeKey")]
    pub node_key: String,
    /// The signing lock key.
    #[schemars(with = "LockKey")]
    pub lock_key: String,
    /// Its signature over the tailnet and the node key.
    #[schemars(with = "LockSignature")]
    pub signature: String,
}

debug_redacting!(LockSignRequest { request_id, node_key, lock_key } secrets { token });

/// `authkeys.cmd.lock.disable`: turn tailnet lock off with the secret `init` printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockDisableRequest {
    /// Idempotency key.
    #[schemars(with = "CommandId")]
    pub request_id: String,
    /// The acting user's API token (Owner or Admin). Never logged.
    pub token: String,
    /// `tldisable:` and 64 lowercase hex digits. Never logged.
    pub disablement_secret: String,
}

debug_redacting!(LockDisableRequest { request_id } secrets { token, disablement_secret });

/// `authkeys.cmd.lock.status`: the tailnet's lock, for any user of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockStatusRequest {
    /// The acting user's API token. Never logged.
    pub token: String,
}

debug_redacting!(LockStatusRequest {} secrets { token });

/// A tailnet's lock as `authkeys lock status` shows it; also the answer to every lock command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockStatus {
    /// Always `true`.
    pub ok: True,
    /// The tailnet (what a node signature covers).
    pub tailnet: TailnetId,
    /// Whether the lock is on.
    pub enabled: bool,
    /// The trusted keys (empty while off).
    pub trusted_keys: Vec<LockKey>,
    /// How many lock events the tailnet has seen: what a change of the keys is signed for.
    pub generation: u64,
    /// Live nodes signed by a lock key.
    pub signed_nodes: u64,
    /// Live nodes locked out, waiting for a signature.
    pub locked_out: Vec<LockedOutNode>,
}

/// A node waiting for a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedOutNode {
    /// Its id.
    pub node_id: NodeId,
    /// Its machine name.
    pub name: String,
    /// The key to sign.
    pub node_key: NodeKey,
}

impl LockStatus {
    /// The status of tailnet `tid`.
    pub fn of(tid: &TailnetId, t: &authkeys_domain::state::Tailnet) -> Self {
        let mut locked_out: Vec<LockedOutNode> = t
            .nodes
            .iter()
            .filter(|(_, n)| n.tailnet_lock_error.is_some())
            .map(|(id, n)| LockedOutNode {
                node_id: id.clone(),
                name: n.name.clone(),
                node_key: n.node_key.clone(),
            })
            .collect();
        locked_out.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            ok: True,
            tailnet: tid.clone(),
            enabled: t.settings.tailnet_lock_on,
            trusted_keys: t.lock.trusted.clone(),
            generation: t.lock.generation,
            signed_nodes: t.nodes.values().filter(|n| n.signed_by.is_some()).count() as u64,
            locked_out,
        }
    }
}

/// A lock request whose fields are valid.
#[derive(Debug)]
pub struct ParsedLock {
    /// Idempotency key (none for a status read).
    pub request_id: Option<CommandId>,
    /// The token, parsed for form (its checksum passed); `None` when malformed, which is
    /// refused exactly like a wrong one.
    pub token: Option<Presented>,
    /// What to do (none for a status read).
    pub op: Option<LockOp>,
}

fn token(text: &str) -> Option<Presented> {
    secret::parse(SecretKind::Api, text).ok()
}

fn lock_key(field: &'static str, s: &str) -> Result<LockKey, WireError> {
    LockKey::parse(s).map_err(|e| WireError::new(field, e))
}

fn signature(field: &'static str, s: &str) -> Result<LockSignature, WireError> {
    LockSignature::parse(s).map_err(|e| WireError::new(field, e))
}

impl LockInitRequest {
    /// Validates every field.
    pub fn parse(&self) -> Result<ParsedLock, WireError> {
        let request_id = id("requestId", CommandId::parse(self.request_id.as_str()))?;
        let trusted_keys = self
            .trusted_keys
            .iter()
            .map(|k| lock_key("trustedKeys", k))
            .collect::<Result<Vec<_>, _>>()?;
        let op = match (&self.disablement_hash, &self.signer, &self.signature) {
            (Some(h), None, None) => LockOp::Enable {
                trusted_keys,
                disablement_hash: Hash::from_hex(h)
                    .map_err(|e| WireError::new("disablementHash", e))?,
            },
            (None, Some(signer), Some(sig)) => LockOp::ChangeKeys {
                trusted_keys,
                signer: lock_key("signer", signer)?,
                signature: signature("signature", sig)?,
            },
            _ => {
                return Err(WireError::new(
                    "disablementHash",
                    "give disablementHash to turn the lock on, or signer and signature to \
                     change its keys",
                ));
            }
        };
        Ok(ParsedLock {
            request_id: Some(request_id),
            token: token(&self.token),
            op: Some(op),
        })
    }
}

impl LockSignRequest {
    /// Validates every field.
    pub fn parse(&self) -> Result<ParsedLock, WireError> {
        let request_id = id("requestId", CommandId::parse(self.request_id.as_str()))?;
        let op = LockOp::SignNode {
            node_key: id("nodeKey", NodeKey::parse(self.node_key.as_str()))?,
            lock_key: lock_key("lockKey", &self.lock_key)?,
            signature: signature("signature", &self.signature)?,
        };
        Ok(ParsedLock {
            request_id: Some(request_id),
            token: token(&self.token),
            op: Some(op),
        })
    }
}

impl LockDisableRequest {
    /// Validates every field.
    pub fn parse(&self) -> Result<ParsedLock, WireError> {
        let request_id = id("requestId", CommandId::parse(self.request_id.as_str()))?;
        let secret = parse_disablement_secret(&self.disablement_secret).map_err(|_| {
            WireError::new(
                "disablementSecret",
                format!("must be {DISABLEMENT_PREFIX} and 64 lowercase hex digits"),
            )
        })?;
        Ok(ParsedLock {
            request_id: Some(request_id),
            token: token(&self.token),
            op: Some(LockOp::Disable { secret }),
        })
    }
}

impl LockStatusRequest {
    /// Parses the token.
    pub fn parse(&self) -> ParsedLock {
        ParsedLock {
            request_id: None,
            token: token(&self.token),
            op: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_needs_either_a_disablement_hash_or_a_signature() {
        let key = format!("tlpub:{}", hex_key());
        let req = |h: Option<&str>, s: Option<&str>, sig: Option<&str>| LockInitRequest {
            request_id: "r1".into(),
            token: "tskey-api-x".into(),
            trusted_keys: vec![key.clone()],
            disablement_hash: h.map(str::to_owned),
            signer: s.map(str::to_owned),
            signature: sig.map(str::to_owned),
        };
        let hash = "ab".repeat(32);
        let sig = "cd".repeat(64);
        assert!(matches!(
            req(Some(&hash), None, None).parse().map(|p| p.op),
            Ok(Some(LockOp::Enable { .. }))
        ));
        assert!(matches!(
            req(None, Some(&key), Some(&sig)).parse().map(|p| p.op),
            Ok(Some(LockOp::ChangeKeys { .. }))
        ));
        assert_eq!(
            req(None, None, None)
                .parse()
                .map(|_| ())
                .expect_err("refused")
                .field,
            "disablementHash"
        );
        let bad = LockInitRequest {
            trusted_keys: vec!["tlpub:zz".into()],
            ..req(Some(&hash), None, None)
        };
        assert_eq!(
            bad.parse().map(|_| ()).expect_err("refused").field,
            "trustedKeys"
        );
    }

    fn hex_key() -> String {
        authkeys_events::lock::LockPrivateKey::from_seed([7; 32])
            .public()
            .to_string()["tlpub:".len()..]
            .to_owned()
    }
}

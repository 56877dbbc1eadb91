//! Tailnet lock (R04): turning it on, changing its trusted keys, signing nodes, turning it off,
//! and checking a pre-signed key at registration.
//!
//! The lock's commands arrive over NATS from `authkeys lock …` with the acting user's API token,
//! which is checked here (in the writer, against the tokens the log holds) rather than by the
//! gateway: the lock needs no HTTP. Every signature is checked here too, with the keys trusted
//! at that moment — pure computation.

use authkeys_events::lock::{TRUSTED_KEYS_MAX, node_statement, trusted_keys_statement};
use authkeys_events::{
    Event, Hash, KeyId, LockKey, LockSignature, NodeKey, NodeSigned, PreSignature, Role, TailnetId,
    TailnetLockDisabled, TailnetLockEnabled, Timestamp, TokenId, TrustedLockKeysChanged, UserId,
};
use subtle::ConstantTimeEq;

use crate::command::Rejection;
use crate::state::{State, Tailnet};

/// What `authkeys lock …` asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOp {
    /// Turn the lock on with these keys (`lock init` while it is off; Owner, Admin).
    Enable {
        /// The keys to trust.
        trusted_keys: Vec<LockKey>,
        /// The hash of the disablement secret the CLI drew and showed once.
        disablement_hash: Hash,
    },
    /// Replace the trusted keys (`lock init` while it is on; Owner, Admin), signed by a key
    /// trusted now over the tailnet, the current generation and the new set.
    ChangeKeys {
        /// The new set.
        trusted_keys: Vec<LockKey>,
        /// A key trusted now.
        signer: LockKey,
        /// Its signature.
        signature: LockSignature,
    },
    /// Sign a node (`lock sign nodekey:…`; Owner, Admin, IT admin — and the signature is what
    /// really decides).
    SignNode {
        /// The node's key.
        node_key: NodeKey,
        /// The signing lock key (trusted now).
        lock_key: LockKey,
        /// Over [`node_statement`] of the tailnet and the node key.
        signature: LockSignature,
    },
    /// Turn the lock off (`lock disable`; Owner, Admin) with the secret `init` printed.
    Disable {
        /// The disablement secret.
        secret: [u8; 32],
    },
}

/// The user an API token acts for, checked against the log's tokens in constant time: the token
/// exists, is the presented one, is neither revoked nor expired, and belongs to a user (not an
/// OAuth client) who is not suspended. Any failure is the same refusal.
pub fn authenticate_token<'s>(
    state: &'s State,
    token_id: &TokenId,
    presented: &Hash,
    now: Timestamp,
) -> Result<(&'s TailnetId, &'s Tailnet, &'s UserId, Role), Rejection> {
    const DUMMY: [u8; 32] = [0xa5; 32];
    let found = state
        .token_index
        .get(token_id)
        .and_then(|tid| Some((tid, state.tailnet(tid)?)))
        .and_then(|(tid, t)| Some((tid, t, t.tokens.get(token_id)?)));
    let stored = found.map_or(&DUMMY, |(_, _, tok)| &tok.secret_hash.0);
    let secret_ok: bool = stored.ct_eq(&presented.0).into();
    let refused = || Rejection::Forbidden("invalid, expired or revoked API token".into());
    let (tid, t, tok) = found.filter(|_| secret_ok).ok_or_else(refused)?;
    if tok.revoked || now >= tok.expires {
        return Err(refused());
    }
    let user = t
        .users
        .get(&tok.user_id)
        .filter(|u| !u.suspended)
        .ok_or_else(refused)?;
    Ok((tid, t, &tok.user_id, user.role))
}

/// Decides a lock command by `role` in tailnet `tid`.
pub fn decide_lock(
    tid: &TailnetId,
    t: &Tailnet,
    role: Role,
    op: &LockOp,
) -> Result<Vec<Event>, Rejection> {
    let admin = matches!(role, Role::Owner | Role::Admin);
    let on = t.settings.tailnet_lock_on;
    match op {
        LockOp::Enable {
            trusted_keys,
            disablement_hash,
        } => {
            if !admin {
                return Err(Rejection::Forbidden(
                    "only the Owner or an Admin may turn tailnet lock on".into(),
                ));
            }
            if on {
                return Err(Rejection::Conflict(
                    "tailnet lock is already on: changing its keys needs a signature by a \
                     trusted key (authkeys lock init --lock-key FILE …)"
                        .into(),
                ));
            }
            Ok(vec![
                TailnetLockEnabled {
                    trusted_keys: trusted_set(trusted_keys)?,
                    disablement_hash: *disablement_hash,
                }
                .into(),
            ])
        }
        LockOp::ChangeKeys {
            trusted_keys,
            signer,
            signature,
        } => {
            if !admin {
                return Err(Rejection::Forbidden(
                    "only the Owner or an Admin may change the trusted lock keys".into(),
                ));
            }
            if !on {
                return Err(Rejection::Conflict("tailnet lock is off".into()));
            }
            let keys = trusted_set(trusted_keys)?;
            let statement = trusted_keys_statement(tid, t.lock.generation, &keys);
            if !t.lock.trusts(signer) || !signer.verifies(&statement, signature) {
                return Err(Rejection::Forbidden(
                    "the change is not signed by a trusted lock key for the current lock state"
                        .into(),
                ));
            }
            Ok(vec![
                TrustedLockKeysChanged {
                    trusted_keys: keys,
                    generation: t.lock.generation,
                    signer: *signer,
                    signature: *signature,
                }
                .into(),
            ])
        }
        LockOp::SignNode {
            node_key,
            lock_key,
            signature,
        } => {
            if !role.may_manage_devices() {
                return Err(Rejection::Forbidden("your role may not sign nodes".into()));
            }
            if !on {
                return Err(Rejection::Conflict("tailnet lock is off".into()));
            }
            let node_id = t
                .nodes
                .iter()
                .find(|(_, n)| &n.node_key == node_key)
                .map(|(id, _)| id.clone())
                .ok_or_else(|| Rejection::NotFound("no node has this node key".into()))?;
            if !t.lock.trusts(lock_key)
                || !lock_key.verifies(&node_statement(tid, node_key), signature)
            {
                return Err(Rejection::Forbidden(
                    "the signature is not by a trusted lock key over this node key of this \
                     tailnet"
                        .into(),
                ));
            }
            Ok(vec![
                NodeSigned {
                    node_id,
                    node_key: node_key.clone(),
                    key_id: None,
                    lock_key: *lock_key,
                    signature: *signature,
                }
                .into(),
            ])
        }
        LockOp::Disable { secret } => {
            if !admin {
                return Err(Rejection::Forbidden(
                    "only the Owner or an Admin may turn tailnet lock off".into(),
                ));
            }
            let Some(expected) = t.lock.disablement_hash.filter(|_| on) else {
                return Err(Rejection::Conflict("tailnet lock is off".into()));
            };
            let presented = authkeys_events::lock::disablement_hash(secret);
            if !bool::from(expected.0.ct_eq(&presented.0)) {
                return Err(Rejection::Forbidden("wrong disablement secret".into()));
            }
            Ok(vec![TailnetLockDisabled {}.into()])
        }
    }
}

/// A registration's pre-signature under the lock: the lock key that signed, if it is trusted
/// now and its signature covers this key; a present signature that is not good is the uniform
/// `invalid_key` (R10). With the lock off, a pre-signature is not looked at.
pub fn check_presigned(
    t: &Tailnet,
    key_id: &KeyId,
    presigned: Option<&PreSignature>,
) -> Result<Option<PreSignature>, Rejection> {
    if !t.settings.tailnet_lock_on {
        return Ok(None);
    }
    match presigned {
        None => Ok(None),
        Some(p) if t.lock.trusts(&p.lock_key) && p.verifies(key_id) => Ok(Some(*p)),
        Some(_) => Err(Rejection::InvalidKey),
    }
}

/// A trusted set as recorded: sorted, no duplicates, 1 to [`TRUSTED_KEYS_MAX`] keys.
fn trusted_set(keys: &[LockKey]) -> Result<Vec<LockKey>, Rejection> {
    let keys = canonical_keys(keys);
    if keys.is_empty() || keys.len() > TRUSTED_KEYS_MAX {
        return Err(Rejection::BadRequest(format!(
            "trustedKeys: 1 to {TRUSTED_KEYS_MAX} distinct lock keys"
        )));
    }
    Ok(keys)
}

/// The trusted set a `lock init` signs: sorted and deduplicated as it will be recorded.
pub fn canonical_keys(keys: &[LockKey]) -> Vec<LockKey> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    keys
}

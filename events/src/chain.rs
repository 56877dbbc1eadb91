//! The hash chain and signed checkpoints that make the log tamper-evident.
//!
//! `hash(n) = blake3(hash(n-1) ‖ seq as u64 LE ‖ stored bytes of envelope n without its hash)`,
//! with `hash(0)` = 32 zero bytes. A [`Checkpoint`] signs `(logId, seq, hash(seq))` with the log's
//! ed25519 key, so a verifier holding only the public key can tell the history up to `seq` is
//! the one the log's owner wrote.

use std::borrow::Cow;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::ids::Seq;

/// A blake3 digest, serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 32]);

/// The value of a lowercase hex digit, or `NOT_HEX`.
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

impl Hash {
    /// The `prevHash` of the first event.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Parses 64 lowercase hex digits. (Every stored event has one or more: a table lookup per
    /// digit, no allocation.)
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let bad = || "a hash is 64 lowercase hex digits".to_owned();
        let digits: &[u8; 64] = s.as_bytes().try_into().map_err(|_| bad())?;
        let mut out = [0u8; 32];
        let mut any_bad = 0u8;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            any_bad |= (hi | lo) & 0xf0;
            *o = (hi << 4) | (lo & 0x0f);
        }
        if any_bad != 0 {
            return Err(bad());
        }
        Ok(Self(out))
    }

    /// The 64-digit lowercase hex spelling.
    pub fn to_hex(&self) -> String {
        String::from_utf8(self.hex_digits().to_vec()).expect("hex digits are ASCII")
    }

    /// The 64 lowercase hex digits, without allocating (every envelope serializes one or two).
    pub fn hex_digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let digits = self.hex_digits();
        s.serialize_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl TryFrom<String> for Hash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::from_hex(&s)
    }
}

/// Deserializes from a borrowed or owned string alike (as `try_from = "String"` would accept),
/// without allocating one.
impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Hash, E> {
                Hash::from_hex(s).map_err(E::custom)
            }
        }
        d.deserialize_str(HexVisitor)
    }
}

impl From<Hash> for String {
    fn from(h: Hash) -> String {
        h.to_hex()
    }
}

impl JsonSchema for Hash {
    fn schema_name() -> Cow<'static, str> {
        "Hash".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Hash").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A blake3 digest, serialized as 64 lowercase hex digits.",
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "minLength": 64,
            "maxLength": 64,
        })
    }
}

/// One link of the chain: `blake3(prev ‖ seq LE ‖ body)`, where `body` is the exact stored bytes
/// of the envelope without its `hash` field.
pub fn chain_hash(prev: &Hash, seq: Seq, body: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&prev.0);
    h.update(&seq.get().to_le_bytes());
    h.update(body);
    Hash(*h.finalize().as_bytes())
}

/// A log's random identity, fixed at creation; checkpoints name it so that a checkpoint of one
/// log cannot vouch for another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogId(pub [u8; 16]);

impl LogId {
    /// Parses 32 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 16];
        if s.len() != 32 {
            return Err("a log id is 32 hex digits".into());
        }
        hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
        Ok(Self(out))
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({})", hex::encode(self.0))
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl TryFrom<String> for LogId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::from_hex(&s)
    }
}

impl From<LogId> for String {
    fn from(l: LogId) -> String {
        l.to_string()
    }
}

impl JsonSchema for LogId {
    fn schema_name() -> Cow<'static, str> {
        "LogId".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::LogId").into()
    }

    /// Written in lowercase; [`LogId::from_hex`] also reads uppercase digits, so only the
    /// serialize-side schema insists on lowercase.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let pattern = if generator.contract().is_serialize() {
            "^[0-9a-f]{32}$"
        } else {
            "^[0-9a-fA-F]{32}$"
        };
        json_schema!({
            "description": "A log's random identity, fixed at creation: 32 hex digits, written in lowercase.",
            "type": "string",
            "pattern": pattern,
            "minLength": 32,
            "maxLength": 32,
        })
    }
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The stored bytes are not a checkpoint.
    #[error("checkpoint is {0} bytes, expected {len}", len = Checkpoint::ENCODED_LEN)]
    BadLength(usize),
    /// The seq field is 0.
    #[error("checkpoint names seq 0")]
    BadSeq,
    /// The signature does not verify under the trusted key.
    #[error("checkpoint signature does not verify")]
    BadSignature,
}

/// A signed statement "log `log_id` had head `hash` at `seq`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which log.
    pub log_id: LogId,
    /// The position covered.
    pub seq: Seq,
    /// The chain hash at `seq`.
    pub hash: Hash,
    /// ed25519 over [`Checkpoint::message`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Bytes of [`Checkpoint::to_bytes`]: log id, seq LE, hash, signature.
    pub const ENCODED_LEN: usize = 16 + 8 + 32 + 64;
    const DOMAIN: &'static [u8] = b"authkeys/checkpoint/v1";

    /// The signed message: a domain tag, then the fixed-width fields.
    pub fn message(log_id: &LogId, seq: Seq, hash: &Hash) -> Vec<u8> {
        let mut m = Vec::with_capacity(Self::DOMAIN.len() + 56);
        m.extend_from_slice(Self::DOMAIN);
        m.extend_from_slice(&log_id.0);
        m.extend_from_slice(&seq.get().to_le_bytes());
        m.extend_from_slice(&hash.0);
        m
    }

    /// Signs the head `(seq, hash)` of log `log_id`.
    pub fn sign(key: &SigningKey, log_id: LogId, seq: Seq, hash: Hash) -> Self {
        let signature = key.sign(&Self::message(&log_id, seq, &hash)).to_bytes();
        Self {
            log_id,
            seq,
            hash,
            signature,
        }
    }

    /// Checks the signature under `key` (strict: no malleable signatures).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&Self::message(&self.log_id, self.seq, &self.hash), &sig)
            .map_err(|_| CheckpointError::BadSignature)
    }

    /// Fixed-width encoding for storage.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..16].copy_from_slice(&self.log_id.0);
        out[16..24].copy_from_slice(&self.seq.get().to_le_bytes());
        out[24..56].copy_from_slice(&self.hash.0);
        out[56..].copy_from_slice(&self.signature);
        out
    }

    /// Decodes [`Checkpoint::to_bytes`]; does not verify the signature.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CheckpointError> {
        if b.len() != Self::ENCODED_LEN {
            return Err(CheckpointError::BadLength(b.len()));
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&b[..16]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[16..24]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[24..56]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[56..]);
        Ok(Self {
            log_id: LogId(log_id),
            seq: Seq::new(u64::from_le_bytes(seq)).map_err(|_| CheckpointError::BadSeq)?,
            hash: Hash(hash),
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    #[test]
    fn hash_hex_takes_exactly_64_lowercase_digits() {
        // The table-driven parser accepts what `hex` with a lowercase check did, and no more.
        let h = Hash(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        let text = h.to_hex();
        assert_eq!(Hash::from_hex(&text), Ok(h));
        let json = serde_json::to_string(&h).expect("serializes");
        assert_eq!(serde_json::from_str::<Hash>(&json).expect("decodes"), h);
        let refused = [
            text.to_uppercase(),
            text[1..].to_owned(),
            format!("{text}0"),
            text.replacen(&text[..1], "g", 1),
            text.replacen(&text[..1], "-", 1),
            format!("{}é", &text[..62]),
            String::new(),
        ];
        for bad in refused {
            assert_eq!(
                Hash::from_hex(&bad),
                Err("a hash is 64 lowercase hex digits".to_owned()),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<Hash>("5").is_err());
    }

    #[test]
    fn chain_hash_depends_on_every_input() {
        let s1 = Seq::new(1).expect("nonzero");
        let s2 = Seq::new(2).expect("nonzero");
        let base = chain_hash(&Hash::ZERO, s1, b"{}");
        assert_ne!(base, chain_hash(&Hash([1; 32]), s1, b"{}"));
        assert_ne!(base, chain_hash(&Hash::ZERO, s2, b"{}"));
        assert_ne!(base, chain_hash(&Hash::ZERO, s1, b"{ }"));
        // The definition, spelled out.
        let mut manual = Vec::new();
        manual.extend_from_slice(&[0; 32]);
        manual.extend_from_slice(&1u64.to_le_bytes());
        manual.extend_from_slice(b"{}");
        assert_eq!(base.0, *blake3::hash(&manual).as_bytes());
    }

    #[test]
    fn checkpoint_signs_verifies_and_round_trips() {
        let k = key(7);
        let cp = Checkpoint::sign(
            &k,
            LogId([3; 16]),
            Seq::new(42).expect("nonzero"),
            Hash([9; 32]),
        );
        cp.verify(&k.verifying_key())
            .expect("own signature verifies");
        let back = Checkpoint::from_bytes(&cp.to_bytes()).expect("decodes");
        assert_eq!(back, cp);
        assert_eq!(
            cp.verify(&key(8).verifying_key()),
            Err(CheckpointError::BadSignature)
        );
        let mut forged = cp.clone();
        forged.hash.0[0] ^= 1;
        assert_eq!(
            forged.verify(&k.verifying_key()),
            Err(CheckpointError::BadSignature)
        );
        let mut forged_sig = cp.clone();
        forged_sig.signature[10] ^= 0x40;
        assert!(forged_sig.verify(&k.verifying_key()).is_err());
        assert!(Checkpoint::from_bytes(&[0; 5]).is_err());
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = Hash([0xab; 32]);
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash::from_hex(&"AB".repeat(32)).is_err());
        for i in 0u32..256 {
            let h = Hash(*blake3::hash(&i.to_le_bytes()).as_bytes());
            assert_eq!(h.to_hex(), hex::encode(h.0));
            assert_eq!(
                serde_json::to_string(&h).expect("serializes"),
                format!("\"{}\"", hex::encode(h.0))
            );
            assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        }
    }
}

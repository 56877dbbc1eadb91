//! The signature of a delivery, as Tailscale sends it:
//! `Tailscale-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! A receiver checks the MAC and that `t` is recent (replays of old bodies).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header's name.
pub const SIGNATURE_HEADER: &str = "Tailscale-Webhook-Signature";

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header's value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not `t=…,v1=…`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is further than the tolerance from now.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// The MAC does not match.
    #[error("signature mismatch")]
    Mismatch,
}

/// Verifies a header value against `body` and `secret`, with `t` within `tolerance_secs` of
/// `now` (unix seconds): what a receiver does (and the tests).
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    if (now - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    mac(secret, t, body)
        .verify_slice(&v1)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let h = signature("s3cret", 1_700_000_000, b"[{}]");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify("s3cret", &h, b"[{}]", 1_700_000_010, 300), Ok(()));
        assert_eq!(
            verify("other", &h, b"[{}]", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s3cret", &h, b"[{ }]", 1_700_000_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("s3cret", &h, b"[{}]", 1_700_009_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("s3cret", "v1=00", b"", 0, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let m = mac("Jefe", 0, b"").finalize().into_bytes();
        assert_eq!(m.len(), 32);
        let mut k = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("any key");
        k.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(k.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! Who is calling: the API token from `Authorization: Bearer <token>` or HTTP Basic with the
//! token as user name, checked against the identity view.
//!
//! The check, in order, each failure the same 401 ([`ApiError::unauthorized`]):
//! 1. the header's form ([`token_text`]);
//! 2. the token's form and checksum (`secret::parse`), without any lookup;
//! 3. the identity view's record of the token id (`authkeys.query.identity.token`);
//! 4. [`verify`]: the keyed hash of the presented secret equals the record's, compared in
//!    constant time, and the token is neither revoked nor expired, and its user is neither
//!    suspended (R21) nor unknown (a removed user's tokens are revoked as well, R18).
//!
//! Only the hash is ever compared or logged; the token text lives in the request and here.

use authkeys_domain::secret::{self, Presented, SecretKind};
use authkeys_events::Timestamp;
use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The longest `Authorization` header read.
pub const AUTHORIZATION_BYTES_MAX: usize = 1024;

/// The identity view's record of an API token (`authkeys.query.identity.token`).
pub use authkeys_protocol::query::TokenInfo as TokenRecord;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token used.
    pub token_id: String,
    /// The token's tailnet id.
    pub tailnet: String,
    /// The acting user (the `actor` of commands).
    pub user_id: String,
    /// Their login name.
    pub login_name: String,
    /// Their role; empty for an OAuth client.
    pub role: String,
    /// An OAuth access token's scopes (R19); `None` for a user's API token, whose role decides.
    pub scopes: Option<Vec<authkeys_events::Scope>>,
}

/// The token text of the request's credentials: `Bearer <token>`, or `Basic base64(token:)`
/// (the password is ignored, as Tailscale's API does).
pub fn token_text(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(ApiError::unauthorized)?;
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Err(ApiError::unauthorized());
    }
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(ApiError::unauthorized)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(ApiError::unauthorized());
        }
        return Ok(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64_decode(rest).ok_or_else(ApiError::unauthorized)?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized())?;
        let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
        if user.is_empty() {
            return Err(ApiError::unauthorized());
        }
        return Ok(user.to_owned());
    }
    Err(ApiError::unauthorized())
}

/// Parses an API token's form and checksum; no lookup.
pub fn presented(text: &str) -> Result<Presented, ApiError> {
    secret::parse(SecretKind::Api, text).map_err(|_| ApiError::unauthorized())
}

/// Whether `presented` is the token `record` describes and usable at `now`.
pub fn verify(
    presented: &Presented,
    hashing_key: &[u8; 32],
    record: &TokenRecord,
    now: Timestamp,
) -> Result<Caller, ApiError> {
    let stored = record.secret_hash;
    let hash = presented.hash(hashing_key);
    let same: bool = hash.0.ct_eq(&stored.0).into();
    // A suspended user's token is refused exactly like a revoked one; a token whose user is
    // unknown (removed: the identity view answers no role) too.
    if !same
        || record.token_id != presented.id
        || record.revoked_at.is_some()
        || now >= record.expires
        || record.suspended
        || (record.role.is_empty() && record.client_id.is_none())
    {
        return Err(ApiError::unauthorized());
    }
    // An access token's scopes are the names the command service recorded; one it does not know
    // grants nothing.
    let scopes = record.client_id.as_ref().map(|_| {
        record
            .scopes
            .iter()
            .flatten()
            .filter_map(|s| authkeys_events::Scope::parse(s))
            .collect()
    });
    Ok(Caller {
        token_id: record.token_id.clone(),
        tailnet: record.tailnet.clone(),
        user_id: record.user_id.clone(),
        login_name: record.login_name.clone(),
        role: record.role.clone(),
        scopes,
    })
}

/// Standard base64 (with or without padding); `None` if it is not.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("valid header"),
        );
        h
    }

    #[test]
    fn base64_decodes_standard_alphabet() {
        assert_eq!(base64_decode("dG9rOg==").as_deref(), Some(&b"tok:"[..]));
        assert_eq!(base64_decode("dG9rOg").as_deref(), Some(&b"tok:"[..]));
        assert_eq!(base64_decode("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("ab$d").is_none());
        assert!(base64_decode("YQ===").is_none());
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        assert_eq!(token_text(&headers("Bearer tok")).expect("bearer"), "tok");
        assert_eq!(token_text(&headers("bearer  tok ")).expect("case"), "tok");
        // base64("tok:") and base64("tok:ignored")
        assert_eq!(
            token_text(&headers("Basic dG9rOg==")).expect("basic"),
            "tok"
        );
        assert_eq!(
            token_text(&headers("Basic dG9rOmlnbm9yZWQ=")).expect("basic+pw"),
            "tok"
        );
        for bad in ["Bearer", "Bearer ", "Token tok", "Basic !!!", "Basic Og=="] {
            let e = token_text(&headers(bad)).expect_err(bad);
            assert_eq!(e.status.as_u16(), 401, "{bad}");
        }
        assert_eq!(token_text(&HeaderMap::new()).expect_err("none").status, 401);
    }

    fn record(issued: &secret::Issued, id: &str) -> TokenRecord {
        TokenRecord {
            token_id: id.into(),
            tailnet: "Tnet".into(),
            user_id: "u1".into(),
            login_name: "a@example.com".into(),
            role: "owner".into(),
            secret_hash: issued.secret_hash,
            expires: Timestamp::from_unix_ms(2_000_000_000_000).expect("valid"),
            created: Timestamp::from_unix_ms(1_000_000_000_000).expect("in range"),
            revoked_at: None,
            client_id: None,
            scopes: None,
            suspended: false,
        }
    }

    #[test]
    fn verify_checks_hash_revocation_and_expiry() {
        let key = [7u8; 32];
        let issued = secret::issue(SecretKind::Api, "tABC", &[9; 32], &key);
        let p = presented(&issued.text).expect("well-formed");
        let now = Timestamp::from_unix_ms(1_000_000_000_000).expect("valid");
        let rec = record(&issued, "tABC");
        let caller = verify(&p, &key, &rec, now).expect("valid token");
        assert_eq!(
            (caller.tailnet.as_str(), caller.user_id.as_str()),
            ("Tnet", "u1")
        );

        let other = secret::issue(SecretKind::Api, "tABC", &[8; 32], &key);
        let wrong = presented(&other.text).expect("well-formed");
        assert_eq!(
            verify(&wrong, &key, &rec, now).expect_err("wrong").status,
            401
        );
        assert!(
            verify(&p, &[1; 32], &rec, now).is_err(),
            "other hashing key"
        );
        let revoked = TokenRecord {
            revoked_at: Some(now),
            ..rec.clone()
        };
        assert!(verify(&p, &key, &revoked, now).is_err());
        let suspended = TokenRecord {
            suspended: true,
            ..rec.clone()
        };
        assert!(verify(&p, &key, &suspended, now).is_err(), "R21: suspended");
        let removed = TokenRecord {
            role: String::new(),
            login_name: String::new(),
            ..rec.clone()
        };
        assert!(
            verify(&p, &key, &removed, now).is_err(),
            "R18: no such user"
        );
        assert!(verify(&p, &key, &rec, rec.expires).is_err(), "expired");
        let bad_hash = TokenRecord {
            secret_hash: authkeys_events::Hash([0; 32]),
            ..rec
        };
        assert!(verify(&p, &key, &bad_hash, now).is_err());
        // A re-cased token fails its checksum before any lookup.
        assert!(presented(&issued.text.to_uppercase()).is_err());
        let auth = secret::issue(SecretKind::Auth, "kABC", &[9; 32], &key);
        assert!(
            presented(&auth.text).is_err(),
            "an auth key is not an API token"
        );
    }
}

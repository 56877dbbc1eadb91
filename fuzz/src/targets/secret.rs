//! The auth-key and API-token parsers (`authkeys_domain::secret`, R10): the text a node presents
//! to a registrar and the token a client presents to the gateway.
//!
//! Invariants:
//! - a parsed secret has a valid id of its kind, is `tskey-<kind>-<id>-` and 49 base62
//!   characters, and is refused as the other kind;
//! - an issued secret parses to its id and to the hash stored for it; one changed character
//!   (a typo or a change of case) is refused.

use authkeys_domain::secret::{self, CHECK_LEN, SECRET_LEN, SecretKind};
use authkeys_events::{KeyId, TokenId};

use super::{split_selector, text};
use crate::inputs::{BASE62, Gen};
use crate::{Reached, Target};

fn kind_of(selector: u8) -> (SecretKind, SecretKind, &'static str) {
    if selector.is_multiple_of(2) {
        (SecretKind::Auth, SecretKind::Api, "tskey-auth-")
    } else {
        (SecretKind::Api, SecretKind::Auth, "tskey-api-")
    }
}

/// Selector (kind) and the presented text.
fn parse(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    let (kind, other, prefix) = kind_of(selector);
    let text = text(rest);
    let Ok(p) = secret::parse(kind, &text) else {
        return Reached::Refused;
    };
    match kind {
        SecretKind::Auth | SecretKind::Client => assert!(KeyId::parse(p.id.as_str()).is_ok()),
        SecretKind::Api => assert!(TokenId::parse(p.id.as_str()).is_ok()),
    }
    let tail = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(p.id.as_str()))
        .and_then(|r| r.strip_prefix('-'))
        .expect("a parsed secret is prefix, id, '-'");
    assert_eq!(tail.len(), SECRET_LEN + CHECK_LEN);
    assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(secret::parse(other, &text).is_err());
    let _ = p.hash(&[1; 32]);
    assert!(!format!("{p:?}").contains(tail));
    Reached::Accepted
}

fn gen_parse(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let (kind, other, _) = kind_of(selector);
    let text = match g.below(12) {
        0 => g.text(120),
        1 => g.presented(other),
        _ => g.presented(kind),
    };
    [vec![selector], text.into_bytes()].concat()
}

/// Selector (kind), 32 random bytes, a position and a replacement byte, then the id.
fn issue(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    let (kind, _, _) = kind_of(selector);
    let Some((random, rest)) = rest.split_first_chunk::<32>() else {
        return Reached::Refused;
    };
    let Some((edit, id)) = rest.split_first_chunk::<3>() else {
        return Reached::Refused;
    };
    let id = text(id);
    let valid_id = match kind {
        SecretKind::Auth | SecretKind::Client => KeyId::parse(id.as_ref()).is_ok(),
        SecretKind::Api => TokenId::parse(id.as_ref()).is_ok(),
    };
    if !valid_id {
        return Reached::Refused;
    }
    let hashing_key = [9; 32];
    let issued = secret::issue(kind, &id, random, &hashing_key);
    let p = secret::parse(kind, &issued.text).expect("an issued secret parses");
    assert_eq!(p.id, id.as_ref());
    assert_eq!(p.hash(&hashing_key), issued.secret_hash);

    // One character changed to another letter or digit, or re-cased.
    let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % issued.text.len();
    let mut typo = issued.text.clone().into_bytes();
    let old = typo[at];
    typo[at] = if edit[2].is_multiple_of(2) && old.is_ascii_alphabetic() {
        old ^ 0x20
    } else {
        let c = BASE62[usize::from(edit[2]) % BASE62.len()];
        if c == old {
            BASE62[(usize::from(edit[2]) + 1) % 62]
        } else {
            c
        }
    };
    if !typo[at].is_ascii_alphanumeric() {
        return Reached::Decoded;
    }
    let typo = String::from_utf8(typo).expect("ASCII");
    assert_ne!(typo, issued.text);
    assert!(
        secret::parse(kind, &typo).is_err(),
        "a secret with one character changed must be refused"
    );
    Reached::Accepted
}

fn gen_issue(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let (kind, _, _) = kind_of(selector);
    let random = g.bytes_n(32);
    let edit = g.bytes_n(3);
    let id = match kind {
        SecretKind::Auth | SecretKind::Client => g.prefixed_id('k'),
        SecretKind::Api => g.prefixed_id('t'),
    };
    [vec![selector], random, edit, id.into_bytes()].concat()
}

/// The secret targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "secret.parse",
            what: "authkeys_domain::secret::parse (auth keys and API tokens)",
            generate: gen_parse,
            check: parse,
        },
        Target {
            name: "secret.issue_and_typo",
            what: "secret::issue then parse, and one changed character refused (R10)",
            generate: gen_issue,
            check: issue,
        },
    ]
}

//! The HTTP gateway's input parsing (`authkeys_gateway`): JSON bodies (`body::decode_json`),
//! query strings (`body::query_param`, `body::query_bool`) and the `Authorization` header
//! (`auth::token_text`, then `auth::presented` and `auth::verify`).
//!
//! `CreateKeyBody` and `SettingsBody` are the gateway's own (`authkeys_gateway::keys`,
//! `authkeys_gateway::tailnet`); the other body types (`AuthorizedBody`, `TagsBody`,
//! `KeyExpiryBody`, `Empty`, `AddUserBody`) live in private modules of the gateway, so they are
//! restated here with the same serde attributes. Each decoded body is turned into its admin
//! command as the handler does, and parsed.
//!
//! Invariants: a decoded body's command re-encodes and decodes to itself; a query parameter is
//! a piece of the query string; `query_bool` is `true` exactly for `true`, `1` and the empty
//! value; `Bearer <token>` yields the token; `Basic` yields the user name of what the `base64`
//! crate decodes (when it decodes).

use std::fmt::Debug;

use authkeys_events::{Hash, Timestamp};
use authkeys_gateway::auth::{self, TokenRecord};
use authkeys_gateway::body::{decode_json, query_bool, query_param};
use authkeys_gateway::keys::CreateKeyBody;
use authkeys_gateway::tailnet::SettingsBody;
use authkeys_protocol::{
    AddUserRequest, AuthorizeNodeRequest, ExpireNodeRequest, SetKeyExpiryRequest, SetTagsRequest,
};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{request_round_trip, split_selector, text};
use crate::inputs::{Gen, field};
use crate::{Reached, Target};

/// `POST /device/{id}/authorized` (devices.rs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthorizedBody {
    authorized: bool,
}

/// `POST /device/{id}/tags` (devices.rs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagsBody {
    tags: Option<Vec<String>>,
}

/// `POST /device/{id}/key` (devices.rs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyExpiryBody {
    key_expiry_disabled: bool,
}

/// `POST /device/{id}/expire` (devices.rs).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /tailnet/{tailnet}/users` (tailnet.rs).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddUserBody {
    login_name: String,
    role: String,
}

const BODIES: u8 = 7;
const COMMAND_ID: &str = "c0123456789abcdef";
const TAILNET: &str = "T1";
const ACTOR: &str = "u1";
const NODE: &str = "n1";

/// Accepted if `parsed` is, else decoded.
fn parsed<T, E>(parsed: Result<T, E>) -> Reached {
    if parsed.is_ok() {
        Reached::Accepted
    } else {
        Reached::Decoded
    }
}

/// A parse that a valid body always passes.
fn must_parse<T, E: Debug>(parsed: Result<T, E>, what: &str) -> Reached {
    if let Err(e) = parsed {
        panic!("a valid body makes a valid {what}: {e:?}");
    }
    Reached::Accepted
}

/// The admin command `$request` of the fixed caller, with the body's `$field`s.
macro_rules! command {
    ($request:ident { $($field:ident: $value:expr),* $(,)? }) => {
        $request {
            command_id: COMMAND_ID.to_owned(),
            tailnet: TAILNET.to_owned(),
            actor: ACTOR.to_owned(),
            $($field: $value),*
        }
    };
}

/// A body that decoded (else refused), turned into its admin command by `command`; the command
/// round-trips and `parse` says how far it got.
fn body_command<B, R, E>(
    decoded: Result<B, E>,
    command: impl FnOnce(B) -> R,
    parse: impl FnOnce(&R) -> Reached,
) -> Reached
where
    R: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(b) = decoded else {
        return Reached::Refused;
    };
    let r = command(b);
    request_round_trip(&r);
    parse(&r)
}

/// Selector: the body type (÷2) and whether the content type is JSON (bit 0); then the body.
fn bodies(bytes: &[u8]) -> Reached {
    let (selector, body) = split_selector(bytes);
    let json = selector.is_multiple_of(2);
    let node = || NODE.to_owned();
    match (selector / 2) % BODIES {
        0 => body_command(
            decode_json::<CreateKeyBody>(json, body).and_then(|b| {
                b.command(COMMAND_ID.to_owned(), TAILNET.to_owned(), ACTOR.to_owned())
            }),
            |request| request,
            |r| parsed(r.parse()),
        ),
        1 => body_command(
            decode_json::<AuthorizedBody>(json, body),
            |b| {
                command!(AuthorizeNodeRequest {
                    node_id: node(),
                    authorized: b.authorized
                })
            },
            |r| must_parse(r.parse(), "authorize-node"),
        ),
        2 => body_command(
            decode_json::<TagsBody>(json, body),
            |b| {
                command!(SetTagsRequest {
                    node_id: node(),
                    tags: b.tags.unwrap_or_default()
                })
            },
            |r| parsed(r.parse()),
        ),
        3 => body_command(
            decode_json::<KeyExpiryBody>(json, body),
            |b| {
                command!(SetKeyExpiryRequest {
                    node_id: node(),
                    key_expiry_disabled: b.key_expiry_disabled,
                })
            },
            |r| must_parse(r.parse(), "set-key-expiry"),
        ),
        // `OptionalJsonBody`: an empty (all-whitespace) body is `Empty {}`.
        4 => body_command(
            if body.iter().all(u8::is_ascii_whitespace) {
                Ok(Empty::default())
            } else {
                decode_json::<Empty>(json, body)
            },
            |_| command!(ExpireNodeRequest { node_id: node() }),
            |r| must_parse(r.parse(), "expire-node"),
        ),
        5 => body_command(
            decode_json::<SettingsBody>(json, body),
            |b| b.request(COMMAND_ID.to_owned(), TAILNET.to_owned(), ACTOR.to_owned()),
            |r| parsed(r.parse()),
        ),
        _ => body_command(
            decode_json::<AddUserBody>(json, body),
            |b| {
                command!(AddUserRequest {
                    login_name: b.login_name,
                    role: b.role
                })
            },
            |r| parsed(r.parse()),
        ),
    }
}

fn capabilities(g: &mut Gen) -> String {
    let create = g.object(&[
        ("reusable", optional!(field::boolean)),
        ("ephemeral", optional!(field::boolean)),
        ("preauthorized", optional!(field::boolean)),
        ("tags", optional!(field::tags_or_null)),
    ]);
    format!("{{\"devices\":{{\"create\":{create}}}}}")
}

fn gen_bodies(g: &mut Gen) -> Vec<u8> {
    // Mostly JSON content type (even selectors).
    let kind = g.below(usize::from(BODIES)) as u8;
    let selector = kind * 2 + u8::from(g.chance(5));
    let body = g.document(|g| match kind {
        0 => g.object(&[
            ("keyType", optional!(|g| g.field_str(|_| "auth".to_owned()))),
            ("description", optional!(field::description)),
            ("expirySeconds", optional!(field::small_int)),
            ("capabilities", capabilities),
        ]),
        1 => g.object(&[("authorized", field::boolean)]),
        2 => g.object(&[("tags", field::tags_or_null)]),
        3 => g.object(&[("keyExpiryDisabled", field::boolean)]),
        4 => {
            if g.chance(50) {
                let n = g.len(4);
                g.from_alphabet(b" \t\r\n", n)
            } else {
                g.object(&[])
            }
        }
        5 => g.object(&[
            ("devicesApprovalOn", optional!(field::boolean_or_null)),
            ("devicesKeyDurationDays", optional!(field::small_int)),
        ]),
        _ => g.object(&[("loginName", field::login_name), ("role", field::role)]),
    });
    [vec![selector], body].concat()
}

const PARAMS: &[&str] = &["all", "fields", "start", "end", ""];

fn query(bytes: &[u8]) -> Reached {
    let q = text(bytes);
    for name in PARAMS {
        let v = query_param(Some(&q), name);
        if let Some(v) = v {
            assert!(q.contains(v), "a parameter is a piece of the query");
        }
        let b = query_bool(Some(&q), name);
        match v {
            None | Some("false" | "0") => assert!(matches!(b, Ok(false))),
            Some("true" | "1" | "") => assert!(matches!(b, Ok(true))),
            Some(_) => assert!(b.is_err()),
        }
    }
    assert_eq!(query_param(None, "all"), None);
    Reached::Accepted
}

fn gen_query(g: &mut Gen) -> Vec<u8> {
    let n = g.len(5);
    let pairs: Vec<String> = (0..n)
        .map(|_| {
            let k = if g.chance(70) {
                g.pick(PARAMS).to_string()
            } else {
                g.text(8)
            };
            let v = match g.below(5) {
                0 => g
                    .pick(&["true", "false", "1", "0", "", "all", "default", "maybe"])
                    .to_string(),
                1 => g.timestamp(),
                2 => g.text(20),
                _ => g.pick(&["true", "false"]).to_string(),
            };
            if g.chance(10) { k } else { format!("{k}={v}") }
        })
        .collect();
    let sep = if g.chance(5) { "&&" } else { "&" };
    pairs.join(sep).into_bytes()
}

fn record(p: &authkeys_domain::secret::Presented, hashing_key: &[u8; 32]) -> TokenRecord {
    TokenRecord {
        token_id: p.id.clone(),
        tailnet: TAILNET.to_owned(),
        user_id: ACTOR.to_owned(),
        login_name: "a@example.com".to_owned(),
        role: "admin".to_owned(),
        secret_hash: p.hash(hashing_key),
        expires: Timestamp::from_unix_ms(2_000_000_000_000).expect("in range"),
        created: Timestamp::from_unix_ms(1_000_000_000_000).expect("in range"),
        revoked_at: None,
        client_id: None,
        scopes: None,
        suspended: false,
    }
}

/// The `Authorization` header's bytes.
fn authorization(bytes: &[u8]) -> Reached {
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return Reached::Refused;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let got = auth::token_text(&headers);
    if let Ok(text) = std::str::from_utf8(bytes)
        && bytes.len() <= auth::AUTHORIZATION_BYTES_MAX
        && bytes
            .iter()
            .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
    {
        expect_token(text.trim(), got.as_ref().ok());
    }
    let Ok(token) = got else {
        return Reached::Refused;
    };
    let Ok(p) = auth::presented(&token) else {
        return Reached::Decoded;
    };
    let hashing_key = [5; 32];
    let now = Timestamp::from_unix_ms(1_900_000_000_000).expect("in range");
    let caller = auth::verify(&p, &hashing_key, &record(&p, &hashing_key), now)
        .expect("a well-formed token verifies against its own record");
    assert_eq!(caller.token_id, p.id);
    let mut wrong = record(&p, &hashing_key);
    wrong.secret_hash = Hash([0; 32]);
    assert!(auth::verify(&p, &hashing_key, &wrong, now).is_err());
    Reached::Accepted
}

/// What `token_text` must give for a header value (visible ASCII), by the `base64` crate.
fn expect_token(value: &str, got: Option<&String>) {
    let Some((scheme, rest)) = value.split_once(' ') else {
        assert!(got.is_none());
        return;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        assert_eq!(got.map(String::as_str), (!rest.is_empty()).then_some(rest));
    } else if scheme.eq_ignore_ascii_case("basic") {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        if let Ok(decoded) = engine.decode(rest)
            && let Ok(text) = String::from_utf8(decoded)
        {
            let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
            assert_eq!(
                got.map(String::as_str),
                (!user.is_empty()).then_some(user),
                "Basic credentials decode to their user name"
            );
        }
    } else {
        assert!(got.is_none());
    }
}

fn gen_authorization(g: &mut Gen) -> Vec<u8> {
    let token = g.presented(authkeys_domain::secret::SecretKind::Api);
    let value = match g.below(8) {
        0..=2 => format!(
            "{} {token}",
            g.pick(&["Bearer", "bearer", "BEARER", "Bearer "])
        ),
        3..=5 => {
            let password = if g.chance(50) {
                g.text(10)
            } else {
                String::new()
            };
            let creds = if g.chance(80) {
                format!("{token}:{password}")
            } else {
                token
            };
            let engine = if g.chance(70) {
                &base64::engine::general_purpose::STANDARD
            } else {
                &base64::engine::general_purpose::STANDARD_NO_PAD
            };
            format!("{} {}", g.pick(&["Basic", "basic"]), engine.encode(creds))
        }
        6 => format!(
            "{} {}",
            g.pick(&["Basic", "Bearer", "Digest", ""]),
            g.text(60)
        ),
        _ => return g.bytes(120),
    };
    let mut v = value.into_bytes();
    if g.chance(20) {
        g.mutate(&mut v);
    }
    v
}

/// The gateway targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "http.bodies",
            what: "gateway decode_json of every body, then its admin command's parse",
            generate: gen_bodies,
            check: bodies,
        },
        Target {
            name: "http.query",
            what: "gateway query_param, query_bool",
            generate: gen_query,
            check: query,
        },
        Target {
            name: "http.authorization",
            what: "gateway token_text (Bearer, Basic), presented, verify",
            generate: gen_authorization,
            check: authorization,
        },
    ]
}

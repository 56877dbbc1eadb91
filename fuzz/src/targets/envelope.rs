//! Envelopes and checkpoints: `Envelope::from_json` (JetStream messages, `authkeys.log.read`
//! pages), `Envelope::decode_body` (the stored form), and `Checkpoint::from_bytes`
//! (`authkeys.log.checkpoints` rows).
//!
//! Envelopes are generated for every event type of the catalogue, with their data's field names
//! and mostly valid values, and a chain hash that matches their bytes, then sometimes mutated.
//!
//! Invariants:
//! - a decoded envelope re-encodes (`to_json`) and decodes to the same value, and its stored
//!   body (`encode_body`) decodes with `decode_body` to the same value; its stream can be
//!   computed (`Event::stream`);
//! - `decode_body` refuses a body that carries a hash;
//! - a checkpoint that decodes re-encodes to the same bytes; verifying it never panics.

use authkeys_events::{Checkpoint, Envelope, Hash, Seq, chain_hash};
use ed25519_dalek::SigningKey;

use crate::inputs::{Field, Gen, field};
use crate::{Reached, Target};

/// The event types of the catalogue and their data's fields.
const EVENTS: &[(&str, &[(&str, Field)])] = &[
    (
        "TailnetCreated",
        &[("name", field::tailnet), ("settings", tailnet_settings)],
    ),
    (
        "TailnetSettingsChanged",
        &[
            ("devicesApprovalOn", optional!(field::boolean)),
            ("devicesKeyDurationDays", optional!(field::small_int)),
            ("tailnetLockOn", optional!(field::boolean)),
        ],
    ),
    (
        "UserAdded",
        &[
            ("userId", field::user_id),
            ("loginName", field::login_name),
            ("role", field::role),
        ],
    ),
    (
        "UserRoleChanged",
        &[
            ("userId", field::user_id),
            ("previousRole", field::role),
            ("role", field::role),
        ],
    ),
    (
        "ApiTokenIssued",
        &[
            ("tokenId", field::token_id),
            ("userId", field::user_id),
            ("secretHash", field::hash),
            ("expires", field::timestamp),
        ],
    ),
    ("UserRemoved", &[("userId", field::user_id)]),
    ("UserSuspended", &[("userId", field::user_id)]),
    ("UserRestored", &[("userId", field::user_id)]),
    ("ApiTokenRevoked", &[("tokenId", field::token_id)]),
    (
        "KeyGenerated",
        &[
            ("keyId", field::key_id),
            ("userId", field::user_id),
            ("description", field::description),
            ("reusable", field::boolean),
            ("ephemeral", field::boolean),
            ("preauthorized", field::boolean),
            ("tags", field::tags),
            ("expirySeconds", field::small_int),
            ("expires", field::timestamp),
            ("secretHash", field::hash),
        ],
    ),
    (
        "KeyUsed",
        &[
            ("keyId", field::key_id),
            ("nodeId", field::node_id),
            ("nodeKey", field::node_key),
            ("uses", field::seq),
        ],
    ),
    ("KeyRevoked", &[("keyId", field::key_id)]),
    (
        "KeyExpired",
        &[("keyId", field::key_id), ("expiredAt", field::timestamp)],
    ),
    (
        "NodeRegistered",
        &[
            ("nodeId", field::node_id),
            ("nodeKey", field::node_key),
            ("hostname", field::hostname),
            ("name", field::hostname),
            ("os", field::os),
            ("userId", field::user_id),
            ("tags", field::tags),
            ("authKeyId", field::key_id),
            ("ephemeral", field::boolean),
            ("authorized", field::boolean),
            ("keyExpiryDisabled", field::boolean),
            ("expires", field::timestamp_or_null),
            ("tailnetLockError", string_or_null),
        ],
    ),
    (
        "NodeReauthenticated",
        &[
            ("nodeId", field::node_id),
            ("authKeyId", field::key_id),
            ("hostname", field::hostname),
            ("userId", field::user_id),
            ("tags", field::tags),
            ("keyExpiryDisabled", field::boolean),
            ("expires", field::timestamp_or_null),
        ],
    ),
    (
        "NodeAuthorized",
        &[("nodeId", field::node_id), ("authorized", field::boolean)],
    ),
    (
        "NodeKeyExpirySet",
        &[
            ("nodeId", field::node_id),
            ("keyExpiryDisabled", field::boolean),
            ("expires", field::timestamp_or_null),
        ],
    ),
    (
        "NodeExpired",
        &[("nodeId", field::node_id), ("expiredAt", field::timestamp)],
    ),
    (
        "TagsChanged",
        &[
            ("nodeId", field::node_id),
            ("previousTags", field::tags),
            ("tags", field::tags),
        ],
    ),
    ("NodeConnected", &[("nodeId", field::node_id)]),
    ("NodeDisconnected", &[("nodeId", field::node_id)]),
    (
        "NodeSigned",
        &[
            ("nodeId", field::node_id),
            ("nodeKey", field::node_key),
            ("keyId", optional!(field::key_id)),
            ("lockKey", lock_key),
            ("signature", lock_signature),
        ],
    ),
    (
        "TailnetLockEnabled",
        &[("trustedKeys", lock_keys), ("disablementHash", field::hash)],
    ),
    (
        "TrustedLockKeysChanged",
        &[
            ("trustedKeys", lock_keys),
            ("generation", field::seq),
            ("signer", lock_key),
            ("signature", lock_signature),
        ],
    ),
    ("TailnetLockDisabled", &[]),
    (
        "NodeDeleted",
        &[("nodeId", field::node_id), ("reason", delete_reason)],
    ),
];

fn tailnet_settings(g: &mut Gen) -> String {
    g.object(&[
        ("devicesApprovalOn", field::boolean),
        ("devicesKeyDurationDays", field::small_int),
        ("tailnetLockOn", field::boolean),
    ])
}

fn lock_key(g: &mut Gen) -> String {
    g.field_str(|g| format!("tlpub:{}", g.hash_hex()))
}

fn lock_keys(g: &mut Gen) -> String {
    let n = g.u64() % 3;
    let keys: Vec<String> = (0..n).map(|_| lock_key(g)).collect();
    format!("[{}]", keys.join(","))
}

fn lock_signature(g: &mut Gen) -> String {
    g.field_str(|g| format!("{}{}", g.hash_hex(), g.hash_hex()))
}

fn string_or_null(g: &mut Gen) -> String {
    g.or_const(50, "null", field::any_str)
}

fn delete_reason(g: &mut Gen) -> String {
    g.field_str(|g| g.pick(&["admin", "ephemeral-inactive"]).to_string())
}

fn actor(g: &mut Gen) -> String {
    g.object(&[
        ("type", |g| {
            g.field_str(|g| {
                g.pick(&["user", "registrar", "system", "oauth"])
                    .to_string()
            })
        }),
        ("id", field::any_str),
        ("loginName", optional!(field::login_name)),
    ])
}

fn stream(g: &mut Gen) -> String {
    g.field_str(|g| {
        let kind = *g.pick(&["tailnet", "user", "token", "key", "node"]);
        format!("{kind}/{}", g.tailnet())
    })
}

fn event_id(g: &mut Gen) -> String {
    g.field_str(|g| format!("e{}", g.from_alphabet(b"0123456789abcdef", 32)))
}

/// A full JSON envelope: mostly well-formed with a chain hash that matches its bytes (as the log
/// splices it), sometimes with a wrong hash, re-spaced, or mutated.
pub(crate) fn envelope_json(g: &mut Gen) -> Vec<u8> {
    g.maybe_clean(envelope_json_inner)
}

fn envelope_json_inner(g: &mut Gen) -> Vec<u8> {
    let (ty, data_fields) = *g.pick(EVENTS);
    let seq = match g.below(10) {
        0 => g.u64().max(1),
        _ => g.i64_in(1..=1_000).unsigned_abs(),
    };
    let prev = Hash(g.bytes_n(32).try_into().unwrap_or([0; 32]));
    let ty_json = g.unless_noise(3, |_| Gen::json_str(ty), field::any_str);
    let version = g.unless_noise(3, |_| "1".to_owned(), Gen::number);
    let data = g.object(data_fields);
    let seq_json = g.unless_noise(3, |_| seq.to_string(), field::seq);
    let prev_json = g.unless_noise(3, |_| Gen::json_str(&prev.to_hex()), field::hash);
    let fields: Vec<(&str, String)> = vec![
        ("seq", seq_json),
        ("id", event_id(g)),
        ("type", ty_json),
        ("version", version),
        ("tailnet", field::tailnet(g)),
        ("stream", stream(g)),
        ("streamVersion", field::seq(g)),
        ("time", field::timestamp(g)),
        ("actor", actor(g)),
        ("commandId", field::command_id(g)),
        ("data", data),
        ("prevHash", prev_json),
    ];
    let mut parts: Vec<String> = fields
        .iter()
        .filter(|_| !g.noise(1))
        .map(|(k, v)| format!("{}:{v}", Gen::json_str(k)))
        .collect();
    if g.noise(3) {
        g_shuffle(g, &mut parts);
    }
    let body = format!("{{{}}}", parts.join(","));
    let hash = match (g.noise(10), Seq::new(seq)) {
        (true, _) | (_, Err(_)) => Hash(g.bytes_n(32).try_into().unwrap_or([0; 32])),
        (false, Ok(seq)) => chain_hash(&prev, seq, body.as_bytes()),
    };
    let mut full = Envelope::splice_hash(body.as_bytes(), &hash);
    match g.below(20) {
        0..=2 if !g.noise(100) => {}
        0..=2 => g.mutate(&mut full),
        3 => {
            // Valid JSON, but not as the log spliced it.
            full = format!(
                "{{ {}, \"hash\": \"{}\" }}",
                parts.join(" , "),
                hash.to_hex()
            )
            .into_bytes();
        }
        _ => {}
    }
    full
}

/// An envelope, or (sometimes) random bytes.
pub(crate) fn envelope_or_bytes(g: &mut Gen) -> Vec<u8> {
    if g.chance(5) {
        g.bytes(512)
    } else {
        envelope_json(g)
    }
}

fn g_shuffle(g: &mut Gen, parts: &mut [String]) {
    for i in (1..parts.len()).rev() {
        let j = g.below(i + 1);
        parts.swap(i, j);
    }
}

/// The invariants of a decoded envelope.
pub(crate) fn check_envelope(env: &Envelope) {
    let json = env.to_json();
    let again = Envelope::from_json(&json).expect("an envelope's own JSON decodes");
    assert_eq!(
        &again, env,
        "an envelope changed through to_json and from_json"
    );
    let body = env.encode_body();
    let stored = Envelope::decode_body(&body, env.hash).expect("an envelope's own body decodes");
    assert_eq!(&stored, env, "an envelope changed through its stored body");
    assert!(
        Envelope::decode_body(&json, env.hash).is_err(),
        "a stored body must not carry a hash"
    );
    let _ = env.event.stream(&env.tailnet);
}

fn from_json(bytes: &[u8]) -> Reached {
    // The same bytes as a stored body (the log's own rows; `audit` reads them from the file).
    if let Ok(env) = Envelope::decode_body(bytes, Hash::ZERO) {
        check_envelope(&env);
    }
    let Ok(env) = Envelope::from_json(bytes) else {
        return Reached::Refused;
    };
    check_envelope(&env);
    Reached::Accepted
}

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A checkpoint's bytes: signed by a fixed key, sometimes tampered with, sometimes random or of
/// the wrong length.
pub(crate) fn checkpoint_bytes(g: &mut Gen) -> Vec<u8> {
    match g.below(10) {
        0 => g.bytes(2 * Checkpoint::ENCODED_LEN),
        1..=3 => g.bytes_n(Checkpoint::ENCODED_LEN),
        _ => {
            let seq = Seq::new(g.u64() % 1_000 + 1).unwrap_or(Seq::FIRST);
            let log_id = authkeys_events::LogId(g.bytes_n(16).try_into().unwrap_or([0; 16]));
            let hash = Hash(g.bytes_n(32).try_into().unwrap_or([0; 32]));
            let mut b = Checkpoint::sign(&signing_key(), log_id, seq, hash)
                .to_bytes()
                .to_vec();
            if g.chance(50) {
                g.mutate(&mut b);
            }
            b
        }
    }
}

fn checkpoint(bytes: &[u8]) -> Reached {
    let Ok(cp) = Checkpoint::from_bytes(bytes) else {
        return Reached::Refused;
    };
    assert_eq!(
        &cp.to_bytes()[..],
        bytes,
        "a checkpoint re-encodes to its bytes"
    );
    match cp.verify(&signing_key().verifying_key()) {
        Ok(()) => Reached::Accepted,
        Err(_) => Reached::Decoded,
    }
}

/// The envelope and checkpoint targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "events.envelope_from_json",
            what: "Envelope::from_json, Envelope::decode_body (JetStream events, stored rows)",
            generate: envelope_or_bytes,
            check: from_json,
        },
        Target {
            name: "events.checkpoint_from_bytes",
            what: "Checkpoint::from_bytes, Checkpoint::verify",
            generate: checkpoint_bytes,
            check: checkpoint,
        },
    ]
}

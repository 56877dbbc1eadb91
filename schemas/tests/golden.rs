//! The golden examples under `schemas/examples/events/`: one full envelope per event type,
//! together one hash-chained little log. Each must satisfy the schemas *and* the Rust types,
//! byte for byte; mutated copies must be refused by both.

mod common;

use std::collections::BTreeSet;

use authkeys_events::{DecodeError, Envelope, EventType, Hash};
use common::Example;
use serde_json::{Value, json};

#[test]
fn g01_every_event_type_has_one_example_and_there_are_no_others() {
    // The examples folder holds exactly `<Type>.json` for each EventType::ALL, and each file's
    // `type` names its own file.
    let wanted: BTreeSet<String> = EventType::ALL
        .iter()
        .map(|ty| format!("{ty}.json"))
        .collect();
    assert_eq!(common::file_names("examples/events", ""), wanted);
    for ex in common::examples() {
        assert_eq!(ex.json["type"], ex.ty.as_str(), "{}", ex.ty);
    }
}

#[test]
fn g02_examples_validate_against_their_schema_and_the_envelope() {
    // Every example passes its type's schema and the generic envelope schema, with `format`
    // checked (see g06 for proof that it is).
    let envelope = common::envelope_validator();
    for ex in common::examples() {
        let own = common::errors(&common::event_validator(ex.ty), &ex.json);
        assert!(own.is_empty(), "{}: its schema refuses it: {own:?}", ex.ty);
        let generic = common::errors(&envelope, &ex.json);
        assert!(
            generic.is_empty(),
            "{}: the envelope schema refuses it: {generic:?}",
            ex.ty
        );
    }
}

#[test]
fn g03_examples_round_trip_through_the_rust_types_byte_for_byte() {
    // Each file is exactly `Envelope::to_json()` of what `Envelope::from_json` makes of it, plus
    // one newline: the examples are in the canonical encoding the log serves.
    for ex in common::examples() {
        let json = without_newline(&ex);
        let env = Envelope::from_json(json).unwrap_or_else(|e| panic!("{}: {e}", ex.ty));
        assert_eq!(env.event_type(), ex.ty);
        assert!(
            env.to_json() == json,
            "{}: re-serializes differently:\n file: {}\n rust: {}",
            ex.ty,
            String::from_utf8_lossy(json),
            String::from_utf8_lossy(&env.to_json())
        );
    }
}

#[test]
fn g04_examples_form_one_valid_hash_chain() {
    // Ordered by seq, the examples are seq 1..=n without gaps, the first prevHash is zero, each
    // prevHash is the previous hash, and each hash is right: by `Envelope::compute_hash`, and
    // again by blake3 straight over the file's bytes with `hash` cut out (the stored body).
    let mut chain: Vec<(Envelope, Vec<u8>)> = common::examples()
        .iter()
        .map(|ex| {
            let json = without_newline(ex);
            let env = Envelope::from_json(json).unwrap_or_else(|e| panic!("{}: {e}", ex.ty));
            (env, json.to_vec())
        })
        .collect();
    chain.sort_by_key(|(env, _)| env.seq);

    let mut prev = Hash::ZERO;
    for (i, (env, json)) in chain.iter().enumerate() {
        let ty = env.event_type();
        let expected_seq = u64::try_from(i + 1).expect("few examples");
        assert_eq!(
            env.seq.get(),
            expected_seq,
            "{ty}: seq is not contiguous from 1"
        );
        assert_eq!(
            env.prev_hash, prev,
            "{ty}: prevHash does not link to seq {}",
            i
        );
        assert_eq!(
            env.hash,
            env.compute_hash(),
            "{ty}: hash is not compute_hash()"
        );

        let suffix = format!(",\"hash\":\"{}\"}}", env.hash);
        let body_without_brace = json
            .strip_suffix(suffix.as_bytes())
            .unwrap_or_else(|| panic!("{ty}: `hash` is not the last field"));
        let mut hasher = blake3::Hasher::new();
        hasher.update(&prev.0);
        hasher.update(&expected_seq.to_le_bytes());
        hasher.update(body_without_brace);
        hasher.update(b"}");
        assert_eq!(
            *hasher.finalize().as_bytes(),
            env.hash.0,
            "{ty}: hash over the file's body"
        );

        prev = env.hash;
    }
    assert_eq!(chain.len(), EventType::ALL.len());
}

/// A mutation of an example and what each side must say about it.
struct Mutation {
    /// What is wrong, for failure messages.
    what: &'static str,
    /// Which example to start from.
    ty: EventType,
    /// The change.
    apply: fn(&mut Value),
    /// The JSON pointer the type's schema must complain about.
    at: &'static str,
    /// Whether the generic envelope schema (whose `data` is any object) must refuse it too.
    envelope_refuses: bool,
    /// A piece of the Rust decoder's error message, proving it refused for this reason.
    rust_says: &'static str,
}

fn data(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    v["data"].as_object_mut().expect("data is an object")
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        what: "a tag without the `tag:` prefix",
        ty: EventType::NodeRegistered,
        apply: |v| v["data"]["tags"] = json!(["server"]),
        at: "/data/tags/0",
        envelope_refuses: false,
        rust_says: "must start with 'tag:'",
    },
    Mutation {
        what: "a node key in uppercase hex",
        ty: EventType::NodeRegistered,
        apply: |v| {
            let upper = v["data"]["nodeKey"]
                .as_str()
                .expect("a string")
                .to_uppercase();
            v["data"]["nodeKey"] = json!(upper.replacen("NODEKEY", "nodekey", 1));
        },
        at: "/data/nodeKey",
        envelope_refuses: false,
        rust_says: "64 lowercase hex digits",
    },
    Mutation {
        what: "an IPv4 address that is not one (R17)",
        ty: EventType::NodeRegistered,
        apply: |v| v["data"]["addresses"]["ipv4"] = json!("100.64.0.300"),
        // Under `anyOf` (the field is optional), the schema reports the whole object.
        at: "/data/addresses",
        envelope_refuses: false,
        rust_says: "invalid IPv4 address syntax",
    },
    Mutation {
        what: "addresses without their IPv6 (R17)",
        ty: EventType::NodeRegistered,
        apply: |v| {
            v["data"]["addresses"]
                .as_object_mut()
                .expect("addresses is an object")
                .remove("ipv6");
        },
        at: "/data/addresses",
        envelope_refuses: false,
        rust_says: "missing field `ipv6`",
    },
    Mutation {
        what: "a node key one digit short",
        ty: EventType::KeyUsed,
        apply: |v| {
            let mut key = v["data"]["nodeKey"].as_str().expect("a string").to_owned();
            key.pop();
            v["data"]["nodeKey"] = json!(key);
        },
        at: "/data/nodeKey",
        envelope_refuses: false,
        rust_says: "64 lowercase hex digits",
    },
    Mutation {
        what: "an unknown field in data",
        ty: EventType::KeyGenerated,
        apply: |v| {
            data(v).insert("note".into(), json!("hello"));
        },
        at: "/data",
        envelope_refuses: false,
        rust_says: "unknown field `note`",
    },
    Mutation {
        what: "a missing field in data",
        ty: EventType::NodeRegistered,
        apply: |v| {
            data(v).remove("hostname");
        },
        at: "/data",
        envelope_refuses: false,
        rust_says: "missing field `hostname`",
    },
    Mutation {
        what: "null instead of a tag list",
        ty: EventType::NodeReauthenticated,
        apply: |v| v["data"]["tags"] = Value::Null,
        at: "/data/tags",
        envelope_refuses: false,
        rust_says: "invalid type: null",
    },
    Mutation {
        what: "an unknown envelope field",
        ty: EventType::KeyRevoked,
        apply: |v| {
            v.as_object_mut()
                .expect("an object")
                .insert("note".into(), json!("hello"));
        },
        at: "",
        envelope_refuses: true,
        rust_says: "unknown field `note`",
    },
    Mutation {
        what: "a missing envelope field",
        ty: EventType::KeyRevoked,
        apply: |v| {
            v.as_object_mut().expect("an object").remove("commandId");
        },
        at: "",
        envelope_refuses: true,
        rust_says: "missing field `commandId`",
    },
    Mutation {
        what: "seq 0",
        ty: EventType::TailnetCreated,
        apply: |v| v["seq"] = json!(0),
        at: "/seq",
        envelope_refuses: true,
        rust_says: "positions start at 1",
    },
    Mutation {
        what: "an impossible date that matches the timestamp pattern",
        ty: EventType::NodeExpired,
        apply: |v| v["time"] = json!("2026-02-30T08:00:13.377Z"),
        at: "/time",
        envelope_refuses: true,
        rust_says: "invalid timestamp",
    },
    Mutation {
        what: "an unknown event type",
        ty: EventType::KeyRevoked,
        apply: |v| v["type"] = json!("KeyStolen"),
        at: "/type",
        envelope_refuses: true,
        rust_says: "unknown event type \"KeyStolen\"",
    },
    Mutation {
        what: "a version this build does not know",
        ty: EventType::KeyRevoked,
        apply: |v| v["version"] = json!(2),
        at: "/version",
        envelope_refuses: false,
        rust_says: "version 2 is not supported",
    },
    Mutation {
        what: "an actor type that does not exist",
        ty: EventType::UserAdded,
        apply: |v| v["actor"]["type"] = json!("robot"),
        at: "/actor/type",
        envelope_refuses: true,
        rust_says: "unknown variant `robot`",
    },
    Mutation {
        what: "a role that does not exist",
        ty: EventType::UserRoleChanged,
        apply: |v| v["data"]["role"] = json!("superuser"),
        at: "/data/role",
        envelope_refuses: false,
        rust_says: "unknown variant `superuser`",
    },
    Mutation {
        what: "a key lifetime past 90 days",
        ty: EventType::KeyGenerated,
        apply: |v| v["data"]["expirySeconds"] = json!(7_776_001),
        at: "/data/expirySeconds",
        envelope_refuses: false,
        rust_says: "must be from 1 to 7776000",
    },
];

#[test]
fn g05_mutated_examples_are_refused_by_the_schema_and_the_rust_type() {
    // Non-vacuity: each mutation of a valid example is refused by the type's schema, at the
    // mutated place, and by `Envelope::from_json`, for the mutated reason; the generic envelope
    // schema refuses exactly those that touch the envelope rather than `data`.
    let examples = common::examples();
    let envelope = common::envelope_validator();
    for m in MUTATIONS {
        let ex = examples
            .iter()
            .find(|ex| ex.ty == m.ty)
            .expect("every type has an example");
        let mut v = ex.json.clone();
        (m.apply)(&mut v);
        assert_ne!(v, ex.json, "{}: the mutation changed nothing", m.what);

        let errors = common::errors(&common::event_validator(m.ty), &v);
        assert!(
            errors.iter().any(|(at, _)| at == m.at),
            "{}: {} schema did not refuse it at {:?}; errors: {errors:?}",
            m.what,
            m.ty,
            m.at
        );
        let envelope_errors = common::errors(&envelope, &v);
        assert_eq!(
            !envelope_errors.is_empty(),
            m.envelope_refuses,
            "{}: envelope schema verdict; errors: {envelope_errors:?}",
            m.what
        );

        let bytes = serde_json::to_vec(&v).expect("serializes");
        let err: DecodeError = match Envelope::from_json(&bytes) {
            Ok(_) => panic!("{}: Envelope::from_json accepted it", m.what),
            Err(e) => e,
        };
        assert!(
            err.to_string().contains(m.rust_says),
            "{}: refused for another reason: {err}",
            m.what
        );
    }
}

#[test]
fn g07_a_node_registered_before_addresses_existed_still_reads() {
    // R17 added `addresses` to NodeRegistered; logs written before have none. The example
    // without it passes its schema and decodes with `addresses: None`, and re-serializes
    // without the field (so its stored bytes, and hash, are unchanged).
    let ex = common::examples()
        .into_iter()
        .find(|ex| ex.ty == EventType::NodeRegistered)
        .expect("an example");
    assert!(
        ex.json["data"]["addresses"].is_object(),
        "the example carries addresses"
    );
    let mut old = ex.json.clone();
    data(&mut old).remove("addresses");
    let errors = common::errors(&common::event_validator(ex.ty), &old);
    assert!(errors.is_empty(), "{errors:?}");
    let bytes = serde_json::to_vec(&old).expect("serializes");
    let env = Envelope::from_json(&bytes).expect("decodes");
    match &env.event {
        authkeys_events::Event::NodeRegistered(e) => assert_eq!(e.addresses, None),
        other => panic!("{other:?}"),
    }
    assert!(!String::from_utf8_lossy(&env.to_json()).contains("addresses"));
}

#[test]
fn g06_format_validation_is_on() {
    // `format` is only an annotation in 2020-12 unless the validator is told to assert it. An
    // impossible date with a well-formed shape must fail on `format` itself, so the date-time
    // checks in g02 and g05 are real.
    let schema = json!({"type": "string", "format": "date-time"});
    let v = common::validator(&schema);
    assert!(v.is_valid(&json!("2026-03-02T09:00:00.000Z")));
    assert!(!v.is_valid(&json!("2026-02-30T09:00:00.000Z")));
    assert!(!v.is_valid(&json!("2026-03-02T25:00:00.000Z")));
}

/// The example's bytes without their one trailing newline; refuses any other trailing bytes.
fn without_newline(ex: &Example) -> &[u8] {
    let json = ex
        .bytes
        .strip_suffix(b"\n")
        .unwrap_or_else(|| panic!("{}: the file must end in one newline", ex.ty));
    assert!(
        !json.ends_with(b"\n") && !json.ends_with(b" ") && !json.ends_with(b"\r"),
        "{}: more than one trailing newline or whitespace",
        ex.ty
    );
    json
}

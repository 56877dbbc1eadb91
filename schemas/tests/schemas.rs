//! The checked-in schema files: that they are what the generator makes, that they are valid
//! draft 2020-12, and that the hand-written newtype schemas say what the Rust parsers say.

mod common;

use std::collections::BTreeSet;

use authkeys_events::{
    CommandId, Description, EventId, Hash, Hostname, KeyId, LogId, LoginName, NodeId, NodeKey,
    StreamId, TagName, Tags, TailnetId, TailnetName, Timestamp, TokenId, UserId,
};
use authkeys_schemas::{documents, root_schema_for};
use proptest::prelude::*;
use schemars::JsonSchema;
use schemars::generate::Contract;
use serde_json::{Value, json};

#[test]
fn s01_checked_in_schemas_are_exactly_what_the_generator_makes() {
    // Drift: regenerates every document in memory and compares it byte for byte with the file
    // under schemas/. A change to an event type, a doc comment or the generator shows up here.
    let stale: Vec<String> = documents()
        .iter()
        .filter(|doc| {
            let on_disk = std::fs::read(common::root().join(&doc.path)).ok();
            on_disk.as_deref() != Some(doc.to_text().as_bytes())
        })
        .map(|doc| doc.path.clone())
        .collect();
    assert!(
        stale.is_empty(),
        "schema files are stale or missing: {stale:?}; run `make schemas` and commit the result"
    );
}

#[test]
fn s02_schema_files_are_exactly_the_documents() {
    // No stray schema: every *.schema.json under schemas/ and schemas/events/ is a document the
    // generator makes (a removed event type leaves none behind), and every document has a file.
    let wanted: BTreeSet<String> = documents().into_iter().map(|d| d.path).collect();
    let mut found = BTreeSet::new();
    for dir in ["", "events", "commands"] {
        for name in common::file_names(dir, ".schema.json") {
            found.insert(if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            });
        }
    }
    assert_eq!(found, wanted, "run `make schemas`");
    let others: Vec<String> = common::file_names("events", "")
        .into_iter()
        .filter(|n| !n.ends_with(".schema.json"))
        .collect();
    assert!(
        others.is_empty(),
        "unexpected files in schemas/events: {others:?}"
    );
}

#[test]
fn s03_every_document_is_valid_draft_2020_12() {
    // Each document validates against the draft 2020-12 meta-schema (bundled with jsonschema,
    // not fetched) and compiles to a validator with format checking on.
    for doc in documents() {
        assert_eq!(
            doc.schema["$schema"],
            authkeys_schemas::DRAFT_2020_12,
            "{}",
            doc.path
        );
        if let Err(e) = jsonschema::meta::validate(&doc.schema) {
            panic!("{} is not a valid 2020-12 schema: {e}", doc.path);
        }
        common::validator(&doc.schema);
    }
}

/// Does `T`'s deserialize-side schema accept the JSON string `s`?
fn schema_accepts<T: JsonSchema>(s: &str) -> bool {
    common::validator(&root_schema_for::<T>(Contract::Deserialize)).is_valid(&json!(s))
}

/// Asserts that `T`'s schema and the Rust parser (`accepts`) agree on every one of `cases`.
fn agree<T: JsonSchema>(accepts: impl Fn(&str) -> bool, cases: &[&str]) {
    for case in cases {
        let rust = accepts(case);
        let schema = schema_accepts::<T>(case);
        assert_eq!(
            schema,
            rust,
            "{}: schema says {schema}, parser says {rust} for {case:?}",
            T::schema_name()
        );
    }
}

/// `agree!(KeyId, cases)` checks against `KeyId::parse`, `agree!(Hash::from_hex, cases)` against
/// the named constructor.
macro_rules! agree {
    ($t:ident :: $f:ident, $cases:expr $(,)?) => {
        agree::<$t>(|s: &str| $t::$f(s).is_ok(), $cases)
    };
    ($t:ident, $cases:expr $(,)?) => {
        agree!($t::parse, $cases)
    };
}

const NODE_KEY: &str = "nodekey:830dc396edbeac2a25a316e2d008894af4e3c9892fb7496cb9d3881baf708d12";

#[test]
fn s04_newtype_schemas_agree_with_their_parsers_on_edge_cases() {
    // The patterns and lengths in the hand-written JsonSchema impls restate the Rust checks; this
    // holds them to the same verdict on each boundary (empty, longest, one past, wrong prefix,
    // wrong case, forbidden character, non-ASCII).
    let k40 = format!("k{}", "a".repeat(40));
    let k41 = format!("k{}", "a".repeat(41));
    agree! { KeyId, &["kAbCd1234EfGh5678", "k", "K1", "n1", "k-1", "kä", &k40, &k41, ""] }
    agree!(NodeId, &["nW3b1Xy7Zq9Pm4Ks", "n", "k1", "n_1"]);
    agree!(UserId, &["uB0b3Rt8Kx5Np", "u", "u 1"]);
    agree!(TokenId, &["tQ7wE2rT9yU4iOp", "t", "t.1"]);
    let t64 = "T".repeat(64);
    let t65 = "T".repeat(65);
    agree!(TailnetId, &["TkX9p2Lm4Qz", "a_b-c", "", "a.b", &t64, &t65]);
    let n253 = "a".repeat(253);
    let n254 = "a".repeat(254);
    agree! { TailnetName, &["example.com", "a@b_c-d.e", "", "a b", "a/b", &n253, &n254] }
    agree! { NodeKey, &[
        NODE_KEY, &NODE_KEY.to_uppercase(), &NODE_KEY.replace("nodekey:", "nodekey"),
        &NODE_KEY[..NODE_KEY.len() - 1], &format!("{NODE_KEY}0"),
        &NODE_KEY.replace("nodekey:", "mkey:"),
    ] }
    let tag63 = format!("tag:{}", "a".repeat(63));
    let tag64 = format!("tag:{}", "a".repeat(64));
    agree! { TagName, &[
        "tag:server", "tag:web-1", "server", "tag:", "tag:Server", "tag:a_b", "TAG:a", &tag63,
        &tag64,
    ] }
    let c128 = "c".repeat(128);
    let c129 = "c".repeat(129);
    agree! { CommandId, &[
        "01JNPKW4XNTA8H0SBT5XJHRYA4", "a.b_c:d-e", "", "a b", "a/b", &c128, &c129,
    ] }
    agree! { EventId, &[
        "ee0808e63b171a10440abbb30a4c1eeb7", "e0808e63b171a10440abbb30a4c1eeb7",
        "Ee0808e63b171a10440abbb30a4c1eeb7", "eE0808E63B171A10440ABBB30A4C1EEB7",
        "ee0808e63b171a10440abbb30a4c1eeb7a",
    ] }
    let l254 = "a".repeat(254);
    let l255 = "a".repeat(255);
    agree! { LoginName, &[
        "alice@example.com", "ünïcödé@example.com", "", "a b", "a\tb", "a\u{7f}b", "a\u{85}b",
        "a\u{a0}b", "a\u{2009}b", "a\u{3000}b", "a\u{feff}b", "a\u{200b}b", &l254, &l255,
    ] }
    agree! { Hostname, &["web-1", "web-1.eu", "", "web 1", "web\n1", &n253, &n254] }
    let d50 = "d".repeat(50);
    let d51 = "d".repeat(51);
    agree! { Description, &["web servers eu", "", "a-b 1", "semi;colon", "ä", &d50, &d51] }
    let s64 = format!("key/{}", "k".repeat(64));
    let s65 = format!("key/{}", "k".repeat(65));
    agree! { StreamId, &[
        "key/kAbC", "tailnet/TkX9_p-2", "node/n1", "car/x", "key/", "key", "key/a.b", "Key/k", &s64,
        &s65,
    ] }
    let h = "ab".repeat(32);
    agree! { Hash::from_hex, &[
        &h, &h.to_uppercase(), &h[1..], &format!("{h}0"), "g".repeat(64).as_str(),
    ] }
    let l = "ab".repeat(16);
    agree! { LogId::from_hex, &[&l, &l.to_uppercase(), &l[1..], "zz".repeat(16).as_str()] }
    agree! { Timestamp, &[
        "2026-03-02T09:00:00.000Z", "2026-03-02T10:00:00.000+01:00", "2026-03-02T09:00:00Z",
        "2026-02-30T09:00:00.000Z", "2026-03-02t09:00:00.000z", "1970-01-01T00:00:00.000Z",
        "1969-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z", "yesterday",
    ] }
}

#[test]
fn s05_integer_newtypes_state_their_bounds() {
    // Seq from 1, KeyDurationDays 1–180, ExpirySeconds 1–7776000: the schema bounds are the
    // parser's, checked on both sides of each.
    fn check<T: JsonSchema + serde::de::DeserializeOwned>(cases: &[(u64, bool)]) {
        let v = common::validator(&root_schema_for::<T>(Contract::Deserialize));
        for &(n, ok) in cases {
            assert_eq!(
                v.is_valid(&json!(n)),
                ok,
                "{} schema on {n}",
                T::schema_name()
            );
            assert_eq!(
                serde_json::from_value::<T>(json!(n)).is_ok(),
                ok,
                "{} on {n}",
                T::schema_name()
            );
        }
    }
    check::<authkeys_events::Seq>(&[(0, false), (1, true), (u64::MAX, true)]);
    check::<authkeys_events::KeyDurationDays>(&[(0, false), (1, true), (180, true), (181, false)]);
    check::<authkeys_events::ExpirySeconds>(&[
        (0, false),
        (1, true),
        (7_776_000, true),
        (7_776_001, false),
    ]);
}

#[test]
fn s06_written_form_is_stricter_than_read_form_where_the_reader_is_lenient() {
    // The event schemas describe what authkeys writes (serialize contract); where the parser
    // accepts more (a Timestamp with an offset, repeated tags, an uppercase LogId), the written
    // form's schema refuses it and the read form's accepts it, and what is written always passes.
    // The read form's schemas are what a later command schema would use.
    let written = |schema: Value, v: &Value| common::validator(&schema).is_valid(v);
    let ser = Contract::Serialize;
    let de = Contract::Deserialize;

    let offset = json!("2026-03-02T10:00:00.000+01:00");
    assert!(Timestamp::parse("2026-03-02T10:00:00.000+01:00").is_ok());
    assert!(!written(root_schema_for::<Timestamp>(ser.clone()), &offset));
    assert!(written(root_schema_for::<Timestamp>(de.clone()), &offset));
    let canonical = Timestamp::parse("2026-03-02T10:00:00+01:00")
        .expect("valid")
        .to_string();
    assert!(written(
        root_schema_for::<Timestamp>(ser.clone()),
        &json!(canonical)
    ));
    // The one leniency no schema admits: the `time` crate reads a space for the `T`, which
    // RFC 3339's grammar (and so `format: date-time`) does not allow. Nothing writes it.
    let spaced = "2026-03-02 09:00:00.000Z";
    assert!(Timestamp::parse(spaced).is_ok());
    assert!(!written(
        root_schema_for::<Timestamp>(de.clone()),
        &json!(spaced)
    ));

    let repeated = json!(["tag:b", "tag:a", "tag:b"]);
    let tags: Tags = serde_json::from_value(repeated.clone()).expect("the reader deduplicates");
    assert!(!written(root_schema_for::<Tags>(ser.clone()), &repeated));
    assert!(written(root_schema_for::<Tags>(de.clone()), &repeated));
    let tags = serde_json::to_value(&tags).expect("serializes");
    assert!(written(root_schema_for::<Tags>(ser.clone()), &tags));

    let upper = json!("AB".repeat(16));
    assert!(!written(root_schema_for::<LogId>(ser), &upper));
    assert!(written(root_schema_for::<LogId>(de), &upper));
}

/// Text near the shapes of the string ids: a known prefix (or none) and a run of characters from
/// a set that mixes valid ones with near misses.
fn near_id() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "", "k", "n", "u", "t", "e", "tag:", "nodekey:", "key/", "node/", "K",
    ]);
    let body = prop::string::string_regex("[a-fA-Z0-9_.:@ /\\-\u{e4}\u{a0}\t]{0,80}")
        .expect("valid regex");
    (prefix, body).prop_map(|(p, b)| format!("{p}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Random near-misses: the schema and the parser give the same verdict on every one.
    #[test]
    fn s07_newtype_schemas_agree_with_their_parsers_on_random_text(s in near_id()) {
        agree!(KeyId, &[&s]);
        agree!(NodeId, &[&s]);
        agree!(TailnetId, &[&s]);
        agree!(TailnetName, &[&s]);
        agree!(TagName, &[&s]);
        agree!(CommandId, &[&s]);
        agree!(LoginName, &[&s]);
        agree!(Description, &[&s]);
        agree!(StreamId, &[&s]);
    }
}

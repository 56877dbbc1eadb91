//! The validated ids and values of `authkeys_events` (`ids.rs`, `time.rs`, `chain.rs`): every
//! field of every request and event goes through one of them.
//!
//! Invariants: a parsed id spells its input (`as_str`, `Display`), and its JSON form decodes to
//! it; a `StreamId` has a kind and rebuilds from it; `Tags` come out sorted, without duplicates,
//! each a valid `TagName` of the input; a parsed `Timestamp` prints in the canonical form
//! (24 characters, `Z`) and that parses back to it; `Hash` and `LogId` print their input in
//! lowercase.

use std::fmt::Display;

use authkeys_events::{
    CommandId, Description, EventId, Hash, Hostname, InvalidId, KeyId, LogId, LoginName, NodeId,
    NodeKey, StreamId, TagName, Tags, TailnetId, TailnetName, Timestamp, TokenId, UserId,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{split_selector, text};
use crate::inputs::Gen;
use crate::{Reached, Target};

/// `parsed` spells `input`, and its JSON form decodes to it.
fn spells<T>(parsed: Result<T, InvalidId>, input: &str) -> Reached
where
    T: Display + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(v) = parsed else {
        return Reached::Refused;
    };
    assert_eq!(v.to_string(), input, "a parsed id spells its input");
    let json = serde_json::to_string(&v).expect("an id serializes");
    let back: T = serde_json::from_str(&json).expect("an id's JSON decodes");
    assert_eq!(back, v);
    Reached::Accepted
}

const PARSERS: u8 = 14;

/// `spells` of each parser but the last (`StreamId`), by selector.
macro_rules! spellers {
    ($($id:ty),* $(,)?) => {
        [$(|s: &str| spells(<$id>::parse(s), s)),*]
    };
}

const SPELLERS: [fn(&str) -> Reached; PARSERS as usize - 1] = spellers!(
    KeyId,
    NodeId,
    UserId,
    TokenId,
    TailnetId,
    TailnetName,
    NodeKey,
    TagName,
    CommandId,
    EventId,
    LoginName,
    Description,
    Hostname,
);

fn ids(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    let s = text(rest);
    let s = s.as_ref();
    match usize::from(selector % PARSERS) {
        i if i < SPELLERS.len() => SPELLERS[i](s),
        _ => {
            let parsed = StreamId::parse(s);
            if let Ok(id) = &parsed {
                let kind = id.kind();
                let rest = s.split_once('/').map_or("", |(_, r)| r);
                assert_eq!(StreamId::of(kind, rest).as_ref(), Ok(id));
            }
            spells(parsed, s)
        }
    }
}

fn gen_ids(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let valid = match selector % PARSERS {
        0 => g.prefixed_id('k'),
        1 => g.prefixed_id('n'),
        2 => g.prefixed_id('u'),
        3 => g.prefixed_id('t'),
        4 => g.tailnet(),
        5 => format!("{}@{}.com", g.tailnet(), g.tailnet()),
        6 => g.node_key(),
        7 => g.tag(),
        8 => g.command_id(),
        9 => format!("e{}", g.hash_hex().split_at(32).0),
        10 => g.name(254),
        11 => g.description(),
        12 => g.name(253),
        _ => {
            let kind = *g.pick(&["tailnet", "user", "token", "key", "node", "nodes", ""]);
            format!("{kind}/{}", g.tailnet())
        }
    };
    let text = match g.below(10) {
        0..=4 => valid,
        5..=8 => g.near_miss(&valid),
        _ => g.text(300),
    };
    [vec![selector], text.into_bytes()].concat()
}

/// Tags separated by `,`.
fn tags(bytes: &[u8]) -> Reached {
    let s = text(bytes);
    let items: Vec<&str> = if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').collect()
    };
    let Ok(tags) = Tags::parse(&items) else {
        return Reached::Refused;
    };
    let names: Vec<&str> = tags.iter().map(TagName::as_str).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
    assert!(names.iter().all(|n| items.contains(n)));
    assert!(items.iter().all(|i| names.contains(i)));
    assert_eq!(tags.len(), names.len());
    let json = serde_json::to_string(&tags).expect("tags serialize");
    assert_eq!(
        serde_json::from_str::<Tags>(&json).expect("tags decode"),
        tags
    );
    Reached::Accepted
}

fn gen_tags(g: &mut Gen) -> Vec<u8> {
    let n = g.len(8);
    let items: Vec<String> = (0..n)
        .map(|_| match g.below(10) {
            0 => {
                let t = g.tag();
                g.near_miss(&t)
            }
            1 => g.text(20),
            _ => g.tag(),
        })
        .collect();
    let mut items = items;
    if g.chance(20) && !items.is_empty() {
        let dup = items[0].clone();
        items.push(dup);
    }
    items.join(",").into_bytes()
}

fn timestamp(bytes: &[u8]) -> Reached {
    let s = text(bytes);
    let Ok(t) = Timestamp::parse(&s) else {
        return Reached::Refused;
    };
    let canonical = t.to_string();
    assert_eq!(canonical.len(), 24, "{canonical}");
    assert!(canonical.ends_with('Z'));
    assert_eq!(Timestamp::parse(&canonical), Ok(t));
    assert_eq!(Timestamp::from_unix_ms(t.unix_ms()), Ok(t));
    let _ = t.plus_seconds(i64::MAX);
    let _ = t.plus_seconds(i64::MIN);
    Reached::Accepted
}

fn gen_timestamp(g: &mut Gen) -> Vec<u8> {
    let t = g.timestamp();
    match g.below(10) {
        0..=5 => t,
        6..=8 => g.near_miss(&t),
        _ => g.text(40),
    }
    .into_bytes()
}

/// Selector: `Hash::from_hex` (even) or `LogId::from_hex` (odd).
fn hex_values(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    let s = text(rest);
    if selector.is_multiple_of(2) {
        let Ok(h) = Hash::from_hex(&s) else {
            return Reached::Refused;
        };
        assert_eq!(h.to_hex(), s.as_ref());
        let json = serde_json::to_string(&h).expect("a hash serializes");
        assert_eq!(serde_json::from_str::<Hash>(&json).expect("decodes"), h);
    } else {
        let Ok(l) = LogId::from_hex(&s) else {
            return Reached::Refused;
        };
        assert_eq!(l.to_string(), s.to_ascii_lowercase());
        let json = serde_json::to_string(&l).expect("a log id serializes");
        assert_eq!(serde_json::from_str::<LogId>(&json).expect("decodes"), l);
    }
    Reached::Accepted
}

fn gen_hex_values(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let n = if selector.is_multiple_of(2) { 64 } else { 32 };
    let valid = g.from_alphabet(b"0123456789abcdefABCDEF", n);
    let text = match g.below(10) {
        0..=5 => valid,
        6..=8 => g.near_miss(&valid),
        _ => g.text(80),
    };
    [vec![selector], text.into_bytes()].concat()
}

/// The id targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "ids.parse",
            what: "KeyId, NodeId, UserId, TokenId, TailnetId, TailnetName, NodeKey, TagName, \
                   CommandId, EventId, LoginName, Description, Hostname, StreamId ::parse",
            generate: gen_ids,
            check: ids,
        },
        Target {
            name: "ids.tags",
            what: "Tags::parse",
            generate: gen_tags,
            check: tags,
        },
        Target {
            name: "ids.timestamp",
            what: "Timestamp::parse",
            generate: gen_timestamp,
            check: timestamp,
        },
        Target {
            name: "ids.hex",
            what: "Hash::from_hex, LogId::from_hex",
            generate: gen_hex_values,
            check: hex_values,
        },
    ]
}

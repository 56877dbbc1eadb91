//! Webhooks (R23): the endpoint URL every create validates (`EndpointUrl::parse`), and the
//! create request as the command service decodes and parses it.
//!
//! Invariants: a parsed URL spells its input, is http(s), has a non-empty host without user
//! info, and its host and port never panic; its JSON form decodes to it. A create request that
//! parses carries that URL and only known subscription types.

use authkeys_events::{EndpointId, EndpointUrl};
use authkeys_protocol::webhook::CreateWebhookRequest;

use super::{split_selector, text};
use crate::inputs::Gen;
use crate::{Reached, Target};

fn url(bytes: &[u8]) -> Reached {
    let s = text(bytes);
    let Ok(u) = EndpointUrl::parse(s.as_ref()) else {
        return Reached::Refused;
    };
    assert_eq!(u.as_str(), s.as_ref());
    assert!(u.as_str().starts_with("http://") || u.is_https());
    assert!(!u.host().is_empty());
    assert!(!u.host().contains('@'));
    let _ = u.port();
    let json = serde_json::to_string(&u).expect("a URL serializes");
    assert_eq!(
        serde_json::from_str::<EndpointUrl>(&json).expect("decodes"),
        u
    );
    Reached::Accepted
}

fn gen_url(g: &mut Gen) -> Vec<u8> {
    let hosts = [
        "example.com",
        "hooks.example.com:8443",
        "127.0.0.1",
        "[::1]:9",
        "user@example.com",
        "",
    ];
    let scheme = *g.pick(&["https://", "http://", "ftp://", "HTTPS://", ""]);
    let host = *g.pick(&hosts);
    let path = *g.pick(&["/hook", "/a?b=c", "", "/#x", "/ x"]);
    let valid = format!("{scheme}{host}{path}");
    match g.below(10) {
        0..=5 => valid,
        6..=8 => g.near_miss(&valid),
        _ => g.text(60),
    }
    .into_bytes()
}

fn create(bytes: &[u8]) -> Reached {
    let Ok(dto) = serde_json::from_slice::<CreateWebhookRequest>(bytes) else {
        return Reached::Refused;
    };
    let id = EndpointId::parse("wFuzz").expect("valid");
    let Ok(parsed) = dto.parse(id) else {
        return Reached::Decoded;
    };
    assert_eq!(parsed.command_id.as_str(), dto.command_id);
    Reached::Accepted
}

fn gen_create(g: &mut Gen) -> Vec<u8> {
    let (selector, _) = split_selector(&g.bytes(1));
    let subs = ["nodeCreated", "keyCreated", "userDeleted", "policyUpdate"];
    let url = String::from_utf8_lossy(&gen_url(g)).into_owned();
    let mut doc = serde_json::json!({
        "commandId": g.command_id(),
        "tailnet": g.tailnet(),
        "actor": g.prefixed_id('u'),
        "endpointUrl": url,
        "subscriptions": [g.pick(&subs), g.pick(&subs)],
    });
    if selector.is_multiple_of(2) {
        doc["providerType"] = serde_json::json!(g.pick(&["", "slack", "teams"]));
    }
    let mut bytes = serde_json::to_vec(&doc).expect("serializes");
    if g.chance(30) {
        g.mutate(&mut bytes);
    }
    bytes
}

/// The webhook targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "webhook.url",
            what: "EndpointUrl::parse",
            generate: gen_url,
            check: url,
        },
        Target {
            name: "webhook.create",
            what: "CreateWebhookRequest (authkeys.cmd.admin.create-webhook), parse",
            generate: gen_create,
            check: create,
        },
    ]
}

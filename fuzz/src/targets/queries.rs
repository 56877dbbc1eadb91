//! The view queries (`authkeys.query.*`): each query DTO read with
//! [`authkeys_protocol::decode`], then its fields validated as the projections' query service
//! does (its per-field parsing is private there, so it is restated here from
//! `projections/src/query.rs`: the validated ids, and `limit` in `1..=DEVICES_PAGE_MAX`).
//!
//! Invariants: a decoded query re-encodes and decodes to the same value; a validated id spells
//! the query's string.

use authkeys_events::{InvalidId, KeyId, NodeId, TailnetId, TokenId, UserId};
use authkeys_protocol::query::{
    DEVICES_PAGE_MAX, DevicesGetQuery, DevicesListQuery, KeysGetQuery, KeysListQuery, TailnetQuery,
    TokenQuery,
};

use super::decoded_request;
use crate::inputs::{Gen, field};
use crate::{Reached, Target};

/// A validated id spells its input.
fn spells(r: Result<impl std::fmt::Display, InvalidId>, input: &str) -> Reached {
    match r {
        Ok(id) => {
            assert_eq!(id.to_string(), input);
            Reached::Accepted
        }
        Err(_) => Reached::Decoded,
    }
}

fn min_seq(g: &mut Gen) -> String {
    g.or_const(10, "null", field::seq)
}

fn token(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: TokenQuery| {
        spells(TokenId::parse(q.token_id.as_str()), &q.token_id)
    })
}

fn tailnet(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: TailnetQuery| {
        spells(TailnetId::parse(q.tailnet.as_str()), &q.tailnet)
    })
}

fn keys_list(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: KeysListQuery| {
        spells(TailnetId::parse(q.tailnet.as_str()), &q.tailnet)
            .min(spells(UserId::parse(q.user_id.as_str()), &q.user_id))
    })
}

fn keys_get(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: KeysGetQuery| {
        spells(TailnetId::parse(q.tailnet.as_str()), &q.tailnet)
            .min(spells(UserId::parse(q.user_id.as_str()), &q.user_id))
            .min(spells(KeyId::parse(q.key_id.as_str()), &q.key_id))
    })
}

fn devices_list(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: DevicesListQuery| {
        let mut reached = spells(TailnetId::parse(q.tailnet.as_str()), &q.tailnet);
        if let Some(after) = &q.after {
            reached = reached.min(spells(NodeId::parse(after.as_str()), after));
        }
        // The service's check of `limit`.
        let limit = q.limit.map_or(DEVICES_PAGE_MAX, |l| l as usize);
        if !(1..=DEVICES_PAGE_MAX).contains(&limit) {
            reached = reached.min(Reached::Decoded);
        }
        reached
    })
}

fn devices_get(bytes: &[u8]) -> Reached {
    decoded_request(bytes, |q: DevicesGetQuery| {
        spells(TailnetId::parse(q.tailnet.as_str()), &q.tailnet)
            .min(spells(NodeId::parse(q.node_id.as_str()), &q.node_id))
    })
}

/// The query targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "query.identity_token",
            what: "TokenQuery (authkeys.query.identity.token)",
            generate: |g| {
                g.document_object(&[("tokenId", field::token_id), ("minSeq", optional!(min_seq))])
            },
            check: token,
        },
        Target {
            name: "query.identity_tailnet",
            what: "TailnetQuery (authkeys.query.identity.tailnet)",
            generate: |g| {
                g.document_object(&[("tailnet", field::tailnet), ("minSeq", optional!(min_seq))])
            },
            check: tailnet,
        },
        Target {
            name: "query.keys_list",
            what: "KeysListQuery (authkeys.query.keys.list)",
            generate: |g| {
                g.document_object(&[
                    ("tailnet", field::tailnet),
                    ("userId", field::user_id),
                    ("all", optional!(field::boolean_or_null)),
                    ("minSeq", optional!(min_seq)),
                ])
            },
            check: keys_list,
        },
        Target {
            name: "query.keys_get",
            what: "KeysGetQuery (authkeys.query.keys.get)",
            generate: |g| {
                g.document_object(&[
                    ("tailnet", field::tailnet),
                    ("userId", field::user_id),
                    ("keyId", field::key_id),
                    ("minSeq", optional!(min_seq)),
                ])
            },
            check: keys_get,
        },
        Target {
            name: "query.devices_list",
            what: "DevicesListQuery (authkeys.query.devices.list)",
            generate: |g| {
                g.document_object(&[
                    ("tailnet", field::tailnet),
                    ("after", optional!(field::node_id)),
                    ("limit", optional!(field::small_int)),
                    ("minSeq", optional!(min_seq)),
                ])
            },
            check: devices_list,
        },
        Target {
            name: "query.devices_get",
            what: "DevicesGetQuery (authkeys.query.devices.get)",
            generate: |g| {
                g.document_object(&[
                    ("tailnet", field::tailnet),
                    ("nodeId", field::node_id),
                    ("minSeq", optional!(min_seq)),
                ])
            },
            check: devices_get,
        },
    ]
}

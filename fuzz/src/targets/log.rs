//! The log's read subjects (`authkeys.log.read`, `authkeys.log.checkpoints`): the request the
//! command service parses, and the pages a reader (`LogClient`, `authkeys audit`) decodes.
//!
//! Invariants:
//! - a parsed `LogReadRequest` is in range and `to_bytes` parses back to it;
//! - a decoded `RawPage` re-framed with `page_bytes` decodes to the same events and head;
//! - a decoded `CheckpointsPage` re-encodes to the same value;
//! - `split_stored` of an envelope splices back (`Envelope::splice_hash`) to the same bytes;
//! - an envelope `decode_checked` accepts passes the envelope invariants, and its canonical
//!   JSON passes `decode_checked` exactly when its hash is that of its canonical body.

use authkeys_events::{Checkpoint, Envelope};
use authkeys_protocol::log::{
    CHECKPOINTS_PAGE_MAX, CheckpointsPage, LOG_READ_EVENTS_MAX, LogReadRequest, RawPage,
    decode_checked, page_bytes, split_stored,
};

use super::envelope::{check_envelope, checkpoint_bytes, envelope_json, envelope_or_bytes};
use super::reply_round_trip;
use crate::inputs::{Gen, field};
use crate::{Reached, Target};

/// `limit_max` (4 bytes LE) and the payload.
fn read_request(bytes: &[u8]) -> Reached {
    let (limit_max, payload) = match bytes.split_first_chunk::<4>() {
        Some((m, rest)) => (u32::from_le_bytes(*m), rest),
        None => (LOG_READ_EVENTS_MAX, bytes),
    };
    let Ok(r) = LogReadRequest::parse(payload, limit_max) else {
        return Reached::Refused;
    };
    assert!((1..=limit_max).contains(&r.limit), "limit {}", r.limit);
    assert!(r.from_seq.get() >= 1);
    assert_eq!(LogReadRequest::parse(&r.to_bytes(), limit_max), Ok(r));
    Reached::Accepted
}

fn gen_read_request(g: &mut Gen) -> Vec<u8> {
    let limit_max: u32 = match g.below(6) {
        0 => CHECKPOINTS_PAGE_MAX,
        1 => *g.pick(&[0, 1, u32::MAX]),
        2 => u32::try_from(g.below(5_000)).unwrap_or(1),
        _ => LOG_READ_EVENTS_MAX,
    };
    let payload = g.document(|g| {
        g.object(&[
            ("fromSeq", field::seq),
            ("limit", |g| {
                if g.chance(50) {
                    g.i64_in(0..=1_001).to_string()
                } else {
                    field::small_int(g)
                }
            }),
        ])
    });
    [limit_max.to_le_bytes().to_vec(), payload].concat()
}

fn raw_page(bytes: &[u8]) -> Reached {
    let Ok(page) = serde_json::from_slice::<RawPage<'_>>(bytes) else {
        return Reached::Refused;
    };
    // As `LogClient::read` and `authkeys audit` read it: accepted if every event checks.
    let mut reached = Reached::Accepted;
    for raw in &page.events {
        match decode_checked(raw.get().as_bytes()) {
            Ok(env) => check_envelope(&env),
            Err(_) => reached = Reached::Decoded,
        }
    }
    if page.ok {
        let events: Vec<Vec<u8>> = page
            .events
            .iter()
            .map(|e| e.get().as_bytes().to_vec())
            .collect();
        let framed = page_bytes(&events, page.head);
        let again: RawPage<'_> =
            serde_json::from_slice(&framed).expect("page_bytes of a decoded page decodes");
        assert!(again.ok);
        assert_eq!(again.head, page.head);
        let texts: Vec<&str> = again.events.iter().map(|e| e.get()).collect();
        let before: Vec<&str> = page.events.iter().map(|e| e.get()).collect();
        assert_eq!(texts, before, "page_bytes keeps every event's bytes");
    }
    reached
}

fn gen_raw_page(g: &mut Gen) -> Vec<u8> {
    g.document_or_error(15, |g| {
        let events = g.array(5, |g| {
            String::from_utf8_lossy(&envelope_json(g)).into_owned()
        });
        if g.chance(80) {
            format!(
                "{{\"ok\":true,\"events\":{events},\"head\":{}}}",
                field::seq(g)
            )
        } else {
            g.object(&[
                ("ok", field::ok_true),
                ("events", |g| {
                    if g.chance(50) {
                        "[]".to_owned()
                    } else {
                        g.junk_value(2)
                    }
                }),
                ("head", field::seq),
                ("error", optional!(field::error_body)),
            ])
        }
    })
}

fn checkpoints_page(bytes: &[u8]) -> Reached {
    let Ok(page) = serde_json::from_slice::<CheckpointsPage>(bytes) else {
        return Reached::Refused;
    };
    reply_round_trip(&page);
    // As `authkeys audit` reads the rows: accepted if every row decodes.
    let mut reached = Reached::Accepted;
    for row in &page.checkpoints {
        if let Ok(b) = hex::decode(&row.bytes)
            && let Ok(cp) = Checkpoint::from_bytes(&b)
        {
            assert_eq!(&cp.to_bytes()[..], &b[..]);
        } else {
            reached = Reached::Decoded;
        }
    }
    reached
}

fn gen_checkpoints_page(g: &mut Gen) -> Vec<u8> {
    g.document_or_error(15, |g| {
        let rows = g.array(4, |g| {
            g.object(&[
                ("at", field::seq),
                ("bytes", |g| {
                    let b = checkpoint_bytes(g);
                    let hex = hex::encode(b);
                    if g.chance(90) {
                        Gen::json_str(&hex)
                    } else {
                        let m = g.near_miss(&hex);
                        Gen::json_str(&m)
                    }
                }),
            ])
        });
        let log_id = field::log_id(g);
        if g.chance(80) {
            format!("{{\"ok\":true,\"logId\":{log_id},\"checkpoints\":{rows}}}")
        } else {
            g.object(&[
                ("ok", field::boolean),
                ("logId", optional!(field::log_id)),
                ("checkpoints", |g| g.junk_value(2)),
                ("error", optional!(field::error_body)),
            ])
        }
    })
}

fn split(bytes: &[u8]) -> Reached {
    let Some((hash, body)) = split_stored(bytes) else {
        return Reached::Refused;
    };
    assert_eq!(
        Envelope::splice_hash(&body, &hash),
        bytes,
        "split_stored and splice_hash are inverse"
    );
    Reached::Accepted
}

fn checked(bytes: &[u8]) -> Reached {
    let Ok(env) = decode_checked(bytes) else {
        return Reached::Refused;
    };
    check_envelope(&env);
    let canonical = env.to_json();
    assert_eq!(
        decode_checked(&canonical).is_ok(),
        env.hash == env.compute_hash(),
        "decode_checked of an envelope's own JSON"
    );
    Reached::Accepted
}

/// The log targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "log.read_request",
            what: "LogReadRequest::parse (authkeys.log.read, authkeys.log.checkpoints)",
            generate: gen_read_request,
            check: read_request,
        },
        Target {
            name: "log.raw_page",
            what: "RawPage + decode_checked of each event (authkeys.log.read replies)",
            generate: gen_raw_page,
            check: raw_page,
        },
        Target {
            name: "log.checkpoints_page",
            what: "CheckpointsPage + Checkpoint::from_bytes of each row (authkeys.log.checkpoints replies)",
            generate: gen_checkpoints_page,
            check: checkpoints_page,
        },
        Target {
            name: "log.split_stored",
            what: "authkeys_protocol::log::split_stored",
            generate: envelope_or_bytes,
            check: split,
        },
        Target {
            name: "log.decode_checked",
            what: "authkeys_protocol::log::decode_checked",
            generate: envelope_or_bytes,
            check: checked,
        },
    ]
}

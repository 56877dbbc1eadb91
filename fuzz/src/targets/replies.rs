//! The replies a NATS client decodes: the command subjects' `Reply<…>` (the gateway, the CLI and
//! the timers read them), the views' answers, and the status subjects' answers (the gateway's
//! `/metrics`).
//!
//! Invariant: a decoded reply re-encodes and decodes to the same value.

use authkeys_protocol::query::{
    DeviceAnswer, DevicesAnswer, KeyAnswer, KeysAnswer, TailnetAnswer, TokenAnswer,
};
use authkeys_protocol::status::{CommandStatus, TimersStatus};
use authkeys_protocol::{
    DeletedReply, DeviceReply, KeyReply, Reply, SettingsReply, TimerReply, TokenReply, UserReply,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{reply_round_trip, split_selector};
use crate::inputs::{Gen, field};
use crate::{Reached, Target};

fn never_or_time(g: &mut Gen) -> String {
    g.or_const(30, "\"0001-01-01T00:00:00Z\"", field::timestamp)
}

fn device(g: &mut Gen) -> String {
    g.object(&[
        ("id", field::node_id),
        ("nodeId", field::node_id),
        ("name", field::hostname),
        ("hostname", field::hostname),
        ("os", field::os),
        ("user", field::login_name),
        ("tags", field::tags),
        ("authorized", field::boolean),
        ("isEphemeral", field::boolean),
        ("keyExpiryDisabled", field::boolean),
        ("expires", never_or_time),
        ("created", field::timestamp),
        ("lastSeen", field::timestamp_or_null),
        ("connectedToControl", field::boolean),
        ("nodeKey", field::node_key),
        ("tailnetLockError", field::any_str),
        ("authKeyId", field::key_id),
    ])
}

fn capabilities(g: &mut Gen) -> String {
    let create = g.object(&[
        ("reusable", field::boolean),
        ("ephemeral", field::boolean),
        ("preauthorized", field::boolean),
        ("tags", field::tags_or_null),
    ]);
    format!("{{\"devices\":{{\"create\":{create}}}}}")
}

fn key(g: &mut Gen) -> String {
    g.object(&[
        ("id", field::key_id),
        ("key", optional!(field::auth_key)),
        ("keyType", |g| g.field_str(|_| "auth".to_owned())),
        ("description", field::description),
        ("created", field::timestamp),
        ("updated", optional!(field::timestamp)),
        ("expires", field::timestamp),
        ("expirySeconds", field::small_int),
        ("revoked", optional!(field::timestamp)),
        ("invalid", field::boolean),
        ("capabilities", capabilities),
        ("tags", field::tags),
        ("userId", field::user_id),
        ("uses", field::seq),
        ("lastUsed", optional!(field::timestamp)),
    ])
}

fn settings(g: &mut Gen) -> String {
    g.object(&[
        ("devicesApprovalOn", field::boolean),
        ("devicesKeyDurationDays", field::small_int),
    ])
}

fn user(g: &mut Gen) -> String {
    g.object(&[
        ("id", field::user_id),
        ("loginName", field::login_name),
        ("role", field::role),
    ])
}

fn list(g: &mut Gen, item: fn(&mut Gen) -> String) -> String {
    g.array(4, item)
}

/// `{ok:false, error}` some of the time, else the success object `ok`.
fn or_error(g: &mut Gen, ok: impl FnOnce(&mut Gen) -> String) -> Vec<u8> {
    g.document_or_error(20, ok)
}

/// Decodes `bytes` as `T`; if it decodes, checks the round trip.
fn reply<T>(bytes: &[u8]) -> Reached
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => {
            reply_round_trip(&v);
            Reached::Accepted
        }
        Err(_) => Reached::Refused,
    }
}

const COMMAND_REPLIES: u8 = 7;

fn command_reply(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    match selector % COMMAND_REPLIES {
        0 => reply::<Reply<DeviceReply>>(rest),
        1 => reply::<Reply<KeyReply>>(rest),
        2 => reply::<Reply<UserReply>>(rest),
        3 => reply::<Reply<TokenReply>>(rest),
        4 => reply::<Reply<DeletedReply>>(rest),
        5 => reply::<Reply<SettingsReply>>(rest),
        _ => reply::<Reply<TimerReply>>(rest),
    }
}

fn gen_command_reply(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let body = match selector % COMMAND_REPLIES {
        0 => or_error(g, |g| {
            g.object(&[("ok", field::ok_true), ("device", device)])
        }),
        1 => or_error(g, |g| g.object(&[("ok", field::ok_true), ("key", key)])),
        2 => or_error(g, |g| {
            g.object(&[
                ("ok", field::ok_true),
                ("user", user),
                ("apiKey", field::api_key),
            ])
        }),
        3 => or_error(g, |g| {
            g.object(&[
                ("ok", field::ok_true),
                ("tokenId", field::token_id),
                ("apiKey", field::api_key),
                ("expires", field::timestamp),
            ])
        }),
        4 => or_error(g, |g| {
            g.object(&[("ok", field::ok_true), ("nodeId", field::node_id)])
        }),
        5 => or_error(g, |g| {
            g.object(&[("ok", field::ok_true), ("settings", settings)])
        }),
        _ => or_error(g, |g| {
            g.object(&[("ok", field::ok_true), ("fired", field::boolean)])
        }),
    };
    [vec![selector], body].concat()
}

const QUERY_ANSWERS: u8 = 6;

fn query_answer(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    match selector % QUERY_ANSWERS {
        0 => reply::<Reply<TokenAnswer>>(rest),
        1 => reply::<Reply<TailnetAnswer>>(rest),
        2 => reply::<Reply<KeysAnswer>>(rest),
        3 => reply::<Reply<KeyAnswer>>(rest),
        4 => reply::<Reply<DevicesAnswer>>(rest),
        _ => reply::<Reply<DeviceAnswer>>(rest),
    }
}

fn token_info(g: &mut Gen) -> String {
    g.object(&[
        ("tokenId", field::token_id),
        ("tailnet", field::tailnet),
        ("userId", field::user_id),
        ("loginName", field::login_name),
        ("role", field::role),
        ("secretHash", field::hash),
        ("expires", field::timestamp),
        ("revoked", field::boolean),
    ])
}

fn tailnet_info(g: &mut Gen) -> String {
    g.object(&[
        ("id", field::tailnet),
        ("name", field::any_str),
        ("settings", settings),
    ])
}

fn gen_query_answer(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let body = or_error(g, |g| match selector % QUERY_ANSWERS {
        0 => g.object(&[
            ("ok", field::ok_true),
            ("token", token_info),
            ("seq", field::seq),
        ]),
        1 => g.object(&[
            ("ok", field::ok_true),
            ("tailnet", tailnet_info),
            ("seq", field::seq),
        ]),
        2 => g.object(&[
            ("ok", field::ok_true),
            ("keys", |g| list(g, key)),
            ("seq", field::seq),
        ]),
        3 => g.object(&[("ok", field::ok_true), ("key", key), ("seq", field::seq)]),
        4 => g.object(&[
            ("ok", field::ok_true),
            ("devices", |g| list(g, device)),
            ("next", optional!(field::node_id)),
            ("seq", field::seq),
        ]),
        _ => g.object(&[
            ("ok", field::ok_true),
            ("device", device),
            ("seq", field::seq),
        ]),
    });
    [vec![selector], body].concat()
}

fn status(bytes: &[u8]) -> Reached {
    let (selector, rest) = split_selector(bytes);
    if selector.is_multiple_of(2) {
        reply::<CommandStatus>(rest)
    } else {
        reply::<TimersStatus>(rest)
    }
}

fn gen_status(g: &mut Gen) -> Vec<u8> {
    let selector = g.byte();
    let body = g.document(|g| {
        if selector.is_multiple_of(2) {
            g.object(&[
                ("head", field::seq),
                ("relayCursor", field::seq),
                ("commands", field::seq),
                ("events", field::seq),
                ("transactions", field::seq),
                ("checkpoints", field::seq),
            ])
        } else {
            g.object(&[
                ("seq", field::seq),
                ("scheduled", field::seq),
                ("fired", field::seq),
                ("lastLateMs", field::seq),
            ])
        }
    });
    [vec![selector], body].concat()
}

/// The reply targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "reply.command",
            what: "Reply of Device/Key/User/Token/Deleted/Settings/TimerReply (authkeys.cmd.* replies)",
            generate: gen_command_reply,
            check: command_reply,
        },
        Target {
            name: "reply.query",
            what: "Reply of Token/Tailnet/Keys/Key/Devices/DeviceAnswer (authkeys.query.* answers)",
            generate: gen_query_answer,
            check: query_answer,
        },
        Target {
            name: "reply.status",
            what: "CommandStatus, TimersStatus (authkeys.status, authkeys.timers.status)",
            generate: gen_status,
            check: status,
        },
    ]
}

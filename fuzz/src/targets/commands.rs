//! The command subjects (`authkeys.cmd.*`): every request DTO of `authkeys_protocol`, read with
//! [`authkeys_protocol::decode`] and then `.parse()`, as the command service does.
//!
//! Invariants: a decoded request re-encodes and decodes to the same value; a parsed request's
//! validated fields spell the request's strings; tags come out sorted, without duplicates, at
//! most `TAGS_MAX`; a registration's auth key is `WellFormed` exactly when `secret::parse`
//! accepts it.

use std::fmt::Debug;

use authkeys_command::{ANONYMOUS_REGISTRAR, REGISTRAR_HEADER, registrar_name};
use authkeys_domain::command::{AdminOp, KeyRequest};
use authkeys_domain::secret::{self, SecretKind};
use authkeys_events::ExpirySeconds;
use authkeys_protocol::access::RegistrarName;
use authkeys_protocol::{
    AddUser, AddUserRequest, AuthorizeNodeRequest, ChangeRoleRequest, ChangeSettingsRequest,
    DeleteNodeRequest, ExpireNodeRequest, GenerateKeyRequest, IssueTokenRequest, NodeStatusRequest,
    Parsed, PresentedKey, RegisterRequest, RemoveUserRequest, RestoreUserRequest, RevokeKeyRequest,
    SetKeyExpiryRequest, SetTagsRequest, SuspendUserRequest, TAGS_MAX, TimerRequest, WireError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::parsed_request;
use crate::inputs::{Field, Gen, field};
use crate::{Reached, Target};

/// `commandId`, `tailnet`, `actor` and `own`.
fn admin(g: &mut Gen, own: &[(&str, Field)]) -> Vec<u8> {
    let mut fields: Vec<(&str, Field)> = vec![
        ("commandId", field::command_id),
        ("tailnet", field::tailnet),
        ("actor", field::user_id),
    ];
    fields.extend_from_slice(own);
    g.document_object(&fields)
}

/// The node an admin op names, if any.
fn op_node(op: &AdminOp) -> Option<&str> {
    match op {
        AdminOp::SetTags { node_id, .. }
        | AdminOp::SetKeyExpiry { node_id, .. }
        | AdminOp::ExpireNode { node_id }
        | AdminOp::DeleteNode { node_id }
        | AdminOp::AuthorizeNode { node_id, .. } => Some(node_id.as_str()),
        _ => None,
    }
}

fn capabilities(g: &mut Gen) -> String {
    if g.chance(3) {
        return g.junk_value(2);
    }
    let create = g.object(&[
        ("reusable", optional!(field::boolean)),
        ("ephemeral", optional!(field::boolean)),
        ("preauthorized", optional!(field::boolean)),
        ("tags", optional!(field::tags_or_null)),
    ]);
    let devices = format!("{{\"create\":{create}}}");
    if g.chance(5) {
        g.object(&[("devices", |g| g.junk_value(1))])
    } else {
        format!("{{\"devices\":{devices}}}")
    }
}

fn timer_due(g: &mut Gen) -> String {
    if g.noise(3) {
        return g.junk_value(2);
    }
    let shape = if g.noise(20) { 3 } else { g.below(3) };
    // The kind that goes with the shape, mostly.
    let kind: Field = if g.noise(10) {
        |g| {
            let k = *g.pick(&[
                "keyExpiry",
                "nodeKeyExpiry",
                "ephemeralInactivity",
                "KeyExpiry",
            ]);
            g.field_str(|_| k.to_owned())
        }
    } else {
        match shape {
            0 => |_| "\"keyExpiry\"".to_owned(),
            1 => |_| "\"nodeKeyExpiry\"".to_owned(),
            _ => |_| "\"ephemeralInactivity\"".to_owned(),
        }
    };
    match shape {
        0 => g.object(&[
            ("kind", kind),
            ("keyId", field::key_id),
            ("expires", field::timestamp),
        ]),
        1 => g.object(&[
            ("kind", kind),
            ("nodeId", field::node_id),
            ("expires", field::timestamp),
        ]),
        2 => g.object(&[
            ("kind", kind),
            ("nodeId", field::node_id),
            ("disconnectedAt", field::timestamp),
            ("due", field::timestamp),
        ]),
        _ => g.object(&[
            ("kind", kind),
            ("keyId", optional!(field::key_id)),
            ("nodeId", optional!(field::node_id)),
            ("expires", optional!(field::timestamp)),
            ("disconnectedAt", optional!(field::timestamp)),
            ("due", optional!(field::timestamp)),
        ]),
    }
}

fn register(bytes: &[u8]) -> Reached {
    parsed_request(bytes, RegisterRequest::parse, |dto: &RegisterRequest, p| {
        assert_eq!(p.request_id.as_str(), dto.request_id);
        assert_eq!(p.node_key.as_str(), dto.node_key);
        assert_eq!(p.hostname.as_str(), dto.hostname);
        assert_eq!(p.os, dto.os.clone().unwrap_or_default());
        let parsed = secret::parse(SecretKind::Auth, &dto.auth_key);
        assert_eq!(p.auth_key.is_well_formed(), parsed.is_ok());
        match (&p.auth_key, parsed) {
            (PresentedKey::WellFormed(_), Ok(s)) => {
                assert_eq!(p.auth_key.key_id().as_str(), s.id);
            }
            _ => assert_eq!(p.auth_key.key_id().as_str().len(), 41),
        }
        let _ = p.auth_key.hash(&[3; 32]);
        let _ = format!("{p:?} {dto:?}");
    })
}

fn node_status(bytes: &[u8]) -> Reached {
    parsed_request(
        bytes,
        NodeStatusRequest::parse,
        |dto: &NodeStatusRequest, (request_id, node_key)| {
            assert_eq!(request_id.as_str(), dto.request_id);
            assert_eq!(node_key.as_str(), dto.node_key);
        },
    )
}

fn timer(bytes: &[u8]) -> Reached {
    parsed_request(
        bytes,
        TimerRequest::parse,
        |_, (request_id, tailnet, due)| {
            // What the timers send for a due thing parses back to it.
            let again = TimerRequest::new(&request_id, &tailnet, &due);
            let (r2, t2, d2) = again.parse().expect("TimerRequest::new parses");
            assert_eq!((r2, t2, d2), (request_id, tailnet, due));
        },
    )
}

/// The admin request DTOs: their common fields and their parse.
trait AdminRequest: Serialize + DeserializeOwned + PartialEq + Debug {
    /// What the request asks for.
    type Op;
    fn parse_admin(&self) -> Result<Parsed<Self::Op>, WireError>;
    /// `commandId`, `tailnet` and `actor`.
    fn common(&self) -> [&str; 3];
}

macro_rules! admin_requests {
    ($($dto:ty => $op:ty),* $(,)?) => {$(
        impl AdminRequest for $dto {
            type Op = $op;
            fn parse_admin(&self) -> Result<Parsed<$op>, WireError> {
                self.parse()
            }
            fn common(&self) -> [&str; 3] {
                [&self.command_id, &self.tailnet, &self.actor]
            }
        }
    )*};
}

admin_requests!(
    GenerateKeyRequest => KeyRequest,
    RevokeKeyRequest => AdminOp,
    AddUserRequest => AddUser,
    IssueTokenRequest => Option<i64>,
    SetTagsRequest => AdminOp,
    SetKeyExpiryRequest => AdminOp,
    ExpireNodeRequest => AdminOp,
    AuthorizeNodeRequest => AdminOp,
    DeleteNodeRequest => AdminOp,
    ChangeSettingsRequest => AdminOp,
    ChangeRoleRequest => AdminOp,
    RemoveUserRequest => AdminOp,
    SuspendUserRequest => AdminOp,
    RestoreUserRequest => AdminOp,
);

/// An admin request that decodes and parses: the common fields of the parsed request spell the
/// request's, and `check` asserts the rest.
fn admin_request<T: AdminRequest>(bytes: &[u8], check: impl FnOnce(&T, &Parsed<T::Op>)) -> Reached {
    parsed_request(bytes, T::parse_admin, |dto: &T, p| {
        let [command_id, tailnet, actor] = dto.common();
        assert_eq!(p.command_id.as_str(), command_id);
        assert_eq!(p.tailnet.as_str(), tailnet);
        assert_eq!(p.actor.as_str(), actor);
        check(dto, &p);
    })
}

/// An admin request on a node: its op names the request's node.
fn node_request<T: AdminRequest<Op = AdminOp>>(bytes: &[u8], node_id: fn(&T) -> &str) -> Reached {
    admin_request(bytes, |dto: &T, p| {
        assert_eq!(op_node(&p.op), Some(node_id(dto)));
    })
}

fn generate_key(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &GenerateKeyRequest, p| {
        let names: Vec<String> = p.op.tags.iter().map(ToString::to_string).collect();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "tags sorted, no dups"
        );
        assert!(names.len() <= TAGS_MAX);
        if dto.expiry_seconds.is_none() {
            assert_eq!(p.op.expiry_seconds, ExpirySeconds::MAX);
        }
    })
}

fn revoke_key(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &RevokeKeyRequest, p| {
        assert!(matches!(&p.op, AdminOp::RevokeKey { key_id } if key_id.as_str() == dto.key_id));
    })
}

fn add_user(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &AddUserRequest, p| {
        assert_eq!(p.op.login_name.as_str(), dto.login_name);
        assert_eq!(authkeys_protocol::role_str(p.op.role), dto.role);
    })
}

fn issue_token(bytes: &[u8]) -> Reached {
    admin_request(bytes, |_: &IssueTokenRequest, _| {})
}

fn set_tags(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &SetTagsRequest, p| {
        assert_eq!(op_node(&p.op), Some(dto.node_id.as_str()));
        let AdminOp::SetTags { tags, .. } = &p.op else {
            panic!("set-tags parsed to {:?}", p.op)
        };
        assert!(tags.len() <= dto.tags.len() && tags.len() <= TAGS_MAX);
        assert!(
            tags.iter()
                .all(|t| dto.tags.iter().any(|s| s == t.as_str()))
        );
    })
}

fn set_key_expiry(bytes: &[u8]) -> Reached {
    node_request(bytes, |dto: &SetKeyExpiryRequest| dto.node_id.as_str())
}

fn expire_node(bytes: &[u8]) -> Reached {
    node_request(bytes, |dto: &ExpireNodeRequest| dto.node_id.as_str())
}

fn authorize_node(bytes: &[u8]) -> Reached {
    node_request(bytes, |dto: &AuthorizeNodeRequest| dto.node_id.as_str())
}

fn delete_node(bytes: &[u8]) -> Reached {
    node_request(bytes, |dto: &DeleteNodeRequest| dto.node_id.as_str())
}

fn change_settings(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &ChangeSettingsRequest, p| {
        let AdminOp::ChangeSettings {
            devices_approval_on,
            devices_key_duration_days,
            kept,
        } = &p.op
        else {
            panic!("change-settings parsed to {:?}", p.op)
        };
        assert_eq!(*devices_approval_on, dto.devices_approval_on);
        assert_eq!(
            devices_key_duration_days.map(|d| i64::from(d.get())),
            dto.devices_key_duration_days
        );
        assert_eq!(kept.https_enabled, dto.https_enabled);
        assert_eq!(kept.acls_external_link, dto.acls_external_link);
    })
}

fn change_role(bytes: &[u8]) -> Reached {
    admin_request(bytes, |dto: &ChangeRoleRequest, p| {
        let AdminOp::ChangeRole { user_id, role } = &p.op else {
            panic!("change-role parsed to {:?}", p.op)
        };
        assert_eq!(user_id.as_str(), dto.user_id);
        assert_eq!(authkeys_protocol::role_str(*role), dto.role);
    })
}

/// An admin request that names only a user: its op names the request's user.
fn user_request<T: AdminRequest<Op = AdminOp>>(bytes: &[u8], user_id: fn(&T) -> &str) -> Reached {
    admin_request(bytes, |dto: &T, p| {
        let named = match &p.op {
            AdminOp::RemoveUser { user_id }
            | AdminOp::SuspendUser { user_id }
            | AdminOp::RestoreUser { user_id } => user_id.as_str(),
            other => panic!("a user request parsed to {other:?}"),
        };
        assert_eq!(named, user_id(dto));
    })
}

fn remove_user(bytes: &[u8]) -> Reached {
    user_request(bytes, |dto: &RemoveUserRequest| dto.user_id.as_str())
}

fn suspend_user(bytes: &[u8]) -> Reached {
    user_request(bytes, |dto: &SuspendUserRequest| dto.user_id.as_str())
}

fn restore_user(bytes: &[u8]) -> Reached {
    user_request(bytes, |dto: &RestoreUserRequest| dto.user_id.as_str())
}

/// The `Authkeys-Registrar` header of a registrar's request (`registrar_name` of the command
/// service), and `RegistrarName::parse` (the registrar inboxes and permissions).
fn registrar(bytes: &[u8]) -> Reached {
    let value = super::text(bytes);
    if value.contains(['\r', '\n']) {
        // No header value on the wire holds a line break (async-nats refuses to build one).
        return Reached::Refused;
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(REGISTRAR_HEADER, value.as_ref());
    let name = registrar_name(Some(&headers));
    assert!(name == value || name == ANONYMOUS_REGISTRAR, "{name:?}");
    assert_eq!(registrar_name(None), ANONYMOUS_REGISTRAR);
    if let Ok(r) = RegistrarName::parse(&value) {
        assert_eq!(r.as_str(), value);
        // A registrar name is a valid header name too.
        assert_eq!(name, value);
    }
    if name == value {
        Reached::Accepted
    } else {
        Reached::Refused
    }
}

fn gen_registrar(g: &mut Gen) -> Vec<u8> {
    let n = 1 + g.len(63);
    let valid = g.from_alphabet(
        b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-",
        n,
    );
    match g.below(10) {
        0..=5 => valid,
        6..=8 => g.near_miss(&valid),
        _ => g.text(100),
    }
    .into_bytes()
}

/// The command targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "cmd.registrar_header",
            what: "registrar_name (Authkeys-Registrar header), RegistrarName::parse",
            generate: gen_registrar,
            check: registrar,
        },
        Target {
            name: "cmd.register",
            what: "RegisterRequest (authkeys.cmd.register)",
            generate: |g| {
                g.document_object(&[
                    ("requestId", field::command_id),
                    ("authKey", field::auth_key),
                    ("nodeKey", field::node_key),
                    ("hostname", field::hostname),
                    ("os", optional!(field::os)),
                ])
            },
            check: register,
        },
        Target {
            name: "cmd.node_status",
            what: "NodeStatusRequest (authkeys.cmd.node.connected, .disconnected)",
            generate: |g| {
                g.document_object(&[
                    ("requestId", field::command_id),
                    ("nodeKey", field::node_key),
                ])
            },
            check: node_status,
        },
        Target {
            name: "cmd.timer",
            what: "TimerRequest (authkeys.cmd.timer.fire)",
            generate: |g| {
                g.document_object(&[
                    ("requestId", field::command_id),
                    ("tailnet", field::tailnet),
                    ("due", timer_due),
                ])
            },
            check: timer,
        },
        Target {
            name: "cmd.generate_key",
            what: "GenerateKeyRequest (authkeys.cmd.admin.generate-key)",
            generate: |g| {
                admin(
                    g,
                    &[
                        ("keyType", optional!(|g| g.field_str(|_| "auth".to_owned()))),
                        ("description", optional!(field::description)),
                        ("expirySeconds", optional!(field::small_int)),
                        ("capabilities", capabilities),
                    ],
                )
            },
            check: generate_key,
        },
        Target {
            name: "cmd.revoke_key",
            what: "RevokeKeyRequest (authkeys.cmd.admin.revoke-key)",
            generate: |g| admin(g, &[("keyId", field::key_id)]),
            check: revoke_key,
        },
        Target {
            name: "cmd.add_user",
            what: "AddUserRequest (authkeys.cmd.admin.add-user)",
            generate: |g| {
                admin(
                    g,
                    &[("loginName", field::login_name), ("role", field::role)],
                )
            },
            check: add_user,
        },
        Target {
            name: "cmd.issue_token",
            what: "IssueTokenRequest (authkeys.cmd.admin.issue-token)",
            generate: |g| admin(g, &[]),
            check: issue_token,
        },
        Target {
            name: "cmd.set_tags",
            what: "SetTagsRequest (authkeys.cmd.admin.set-tags)",
            generate: |g| admin(g, &[("nodeId", field::node_id), ("tags", field::tags)]),
            check: set_tags,
        },
        Target {
            name: "cmd.set_key_expiry",
            what: "SetKeyExpiryRequest (authkeys.cmd.admin.set-key-expiry)",
            generate: |g| {
                admin(
                    g,
                    &[
                        ("nodeId", field::node_id),
                        ("keyExpiryDisabled", field::boolean),
                    ],
                )
            },
            check: set_key_expiry,
        },
        Target {
            name: "cmd.expire_node",
            what: "ExpireNodeRequest (authkeys.cmd.admin.expire-node)",
            generate: |g| admin(g, &[("nodeId", field::node_id)]),
            check: expire_node,
        },
        Target {
            name: "cmd.authorize_node",
            what: "AuthorizeNodeRequest (authkeys.cmd.admin.authorize-node)",
            generate: |g| {
                admin(
                    g,
                    &[("nodeId", field::node_id), ("authorized", field::boolean)],
                )
            },
            check: authorize_node,
        },
        Target {
            name: "cmd.delete_node",
            what: "DeleteNodeRequest (authkeys.cmd.admin.delete-node)",
            generate: |g| admin(g, &[("nodeId", field::node_id)]),
            check: delete_node,
        },
        Target {
            name: "cmd.change_role",
            what: "ChangeRoleRequest (authkeys.cmd.admin.change-role)",
            generate: |g| admin(g, &[("userId", field::user_id), ("role", field::role)]),
            check: change_role,
        },
        Target {
            name: "cmd.remove_user",
            what: "RemoveUserRequest (authkeys.cmd.admin.remove-user)",
            generate: |g| admin(g, &[("userId", field::user_id)]),
            check: remove_user,
        },
        Target {
            name: "cmd.suspend_user",
            what: "SuspendUserRequest (authkeys.cmd.admin.suspend-user)",
            generate: |g| admin(g, &[("userId", field::user_id)]),
            check: suspend_user,
        },
        Target {
            name: "cmd.restore_user",
            what: "RestoreUserRequest (authkeys.cmd.admin.restore-user)",
            generate: |g| admin(g, &[("userId", field::user_id)]),
            check: restore_user,
        },
        Target {
            name: "cmd.change_settings",
            what: "ChangeSettingsRequest (authkeys.cmd.admin.change-settings)",
            generate: |g| {
                admin(
                    g,
                    &[
                        ("devicesApprovalOn", optional!(field::boolean_or_null)),
                        ("devicesKeyDurationDays", optional!(field::small_int)),
                    ],
                )
            },
            check: change_settings,
        },
    ]
}

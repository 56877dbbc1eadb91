//! A realistic mix of events touching every view, shared by the black-box tests and the
//! rebuild benchmark. Nothing here is used by the workers.
//!
//! Step 0 creates the tailnet, ten users and their tokens; every later step `i` is one command's
//! events, cycling through key generation, registration (`KeyUsed` + `NodeRegistered`),
//! connect, tags, disconnect with a new token, revocation, and a deletion or a role change.

use authkeys_events::{
    ApiTokenIssued, DeleteReason, Description, Event, ExpirySeconds, Hash, Hostname,
    KeyDurationDays, KeyGenerated, KeyId, KeyRevoked, KeyUsed, LoginName, NodeConnected,
    NodeDeleted, NodeDisconnected, NodeId, NodeKey, NodeRegistered, Role, Tags, TagsChanged,
    TailnetCreated, TailnetName, TailnetSettings, Timestamp, TokenId, UserAdded, UserId,
    UserRoleChanged,
};

/// Users step 0 creates.
pub const USERS: u64 = 10;

/// User `n`'s id.
pub fn user(n: u64) -> UserId {
    UserId::parse(format!("u{n}")).expect("valid user id")
}

/// Key `i`'s id.
pub fn key(i: u64) -> KeyId {
    KeyId::parse(format!("k{i}")).expect("valid key id")
}

/// Node `i`'s id.
pub fn node(i: u64) -> NodeId {
    NodeId::parse(format!("n{i}")).expect("valid node id")
}

/// Token `i`'s id.
pub fn token(i: u64) -> TokenId {
    TokenId::parse(format!("t{i}")).expect("valid token id")
}

fn later() -> Timestamp {
    Timestamp::from_unix_ms(4_000_000_000_000).expect("in range")
}

/// The owner of the keys generated at step `i`.
pub fn owner_of(i: u64) -> UserId {
    user(i / 8 % USERS)
}

/// The events of step `i`.
pub fn step(i: u64) -> Vec<Event> {
    if i == 0 {
        let mut out = vec![Event::from(TailnetCreated {
            name: TailnetName::parse("example.com").expect("valid"),
            settings: TailnetSettings {
                devices_approval_on: false,
                devices_key_duration_days: KeyDurationDays::DEFAULT,
                tailnet_lock_on: false,
                kept: Default::default(),
            },
        })];
        for u in 0..USERS {
            out.push(
                UserAdded {
                    user_id: user(u),
                    login_name: LoginName::parse(format!("user{u}@example.com")).expect("valid"),
                    role: if u == 0 { Role::Owner } else { Role::Admin },
                }
                .into(),
            );
            out.push(issued(u, u));
        }
        return out;
    }
    match i % 8 {
        0 | 1 => vec![
            KeyGenerated {
                key_id: key(i),
                user_id: owner_of(i),
                description: Description::parse("ci runner pool west-2").expect("valid"),
                reusable: i % 8 == 1,
                ephemeral: i.is_multiple_of(3),
                preauthorized: true,
                tags: Tags::parse(&["tag:ci", "tag:runner"]).expect("valid"),
                expiry_seconds: ExpirySeconds::MAX,
                expires: later(),
                secret_hash: Hash(*blake3::hash(&i.to_le_bytes()).as_bytes()),
            }
            .into(),
        ],
        2 => {
            let node_key = NodeKey::parse(format!(
                "nodekey:{}",
                blake3::hash(&i.to_be_bytes()).to_hex()
            ))
            .expect("valid");
            vec![
                KeyUsed {
                    key_id: key(i - 2),
                    node_id: node(i),
                    node_key: node_key.clone(),
                    uses: 1,
                }
                .into(),
                NodeRegistered {
                    node_id: node(i),
                    node_key,
                    hostname: Hostname::parse(format!("runner-{i}")).expect("valid"),
                    name: format!("runner-{i}"),
                    os: "linux".into(),
                    user_id: owner_of(i),
                    tags: Tags::parse(&["tag:ci", "tag:runner"]).expect("valid"),
                    auth_key_id: key(i - 2),
                    ephemeral: false,
                    authorized: true,
                    key_expiry_disabled: true,
                    expires: None,
                    tailnet_lock_error: None,
                    addresses: None,
                }
                .into(),
            ]
        }
        3 => vec![
            NodeConnected {
                node_id: node(i - 1),
            }
            .into(),
        ],
        4 => vec![
            TagsChanged {
                node_id: node(i - 2),
                previous_tags: Tags::parse(&["tag:ci", "tag:runner"]).expect("valid"),
                tags: Tags::parse(&["tag:ci"]).expect("valid"),
            }
            .into(),
        ],
        5 => vec![
            NodeDisconnected {
                node_id: node(i - 3),
            }
            .into(),
            issued(owner_num(i), i),
        ],
        6 => vec![KeyRevoked { key_id: key(i - 5) }.into()],
        _ if (i / 8).is_multiple_of(4) => vec![
            NodeDeleted {
                node_id: node(i - 5),
                reason: DeleteReason::Admin,
            }
            .into(),
        ],
        _ => vec![
            UserRoleChanged {
                user_id: user(owner_num(i)),
                previous_role: Role::Admin,
                role: if (i / 8).is_multiple_of(2) {
                    Role::ItAdmin
                } else {
                    Role::Admin
                },
            }
            .into(),
        ],
    }
}

fn owner_num(i: u64) -> u64 {
    i / 8 % USERS
}

fn issued(u: u64, i: u64) -> Event {
    ApiTokenIssued {
        token_id: token(i),
        user_id: user(u),
        secret_hash: Hash(*blake3::hash(&i.to_be_bytes()).as_bytes()),
        expires: later(),
    }
    .into()
}

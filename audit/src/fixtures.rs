//! A seeded, realistic workload written through the real log and the real `decide`: users of
//! every role, one-off, reusable, tagged and short-lived keys, registrations and
//! re-authentications (some refused: a spent, revoked or expired key writes nothing), revocations,
//! node administration by admins and refused attempts by members. Shared by the tests and the
//! benchmark; nothing in the tools uses it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use authkeys_domain::{AdminOp, Command, KeyRequest, NewToken, State, decide};
use authkeys_events::{
    Actor, ActorType, CommandId, Description, ExpirySeconds, Hash, Hostname, KeyId, LoginName,
    NodeId, NodeKey, Role, Tags, TailnetId, TailnetName, Timestamp, TokenId, UserId,
};
use authkeys_log::{Log, LogConfig};
use ed25519_dalek::VerifyingKey;

/// The tailnet the workload creates.
pub const TAILNET: &str = "Taudit";
/// Its users: (id, login, role).
pub const USERS: [(&str, &str, Role); 5] = [
    ("u0", "owner@example.com", Role::Owner),
    ("u1", "admin@example.com", Role::Admin),
    ("u2", "it@example.com", Role::ItAdmin),
    ("u3", "member@example.com", Role::Member),
    ("u4", "auditor@example.com", Role::Auditor),
];

/// What [`build_log`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The log's public key (to pin).
    pub key: VerifyingKey,
    /// Events written.
    pub events: u64,
    /// Commands refused by `decide` (they wrote nothing).
    pub refused: u64,
}

/// A small deterministic generator (xorshift64*), so a seed names a workload.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded; any seed works.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn id<T>(r: Result<T, authkeys_events::InvalidId>) -> T {
    r.expect("fixture ids are valid")
}

/// A stand-in for the service's keyed hash of a key's secret: `decide` only compares them.
fn secret(key: &str) -> Hash {
    Hash(*blake3::hash(key.as_bytes()).as_bytes())
}

struct Writer {
    log: Log<State>,
    clock: Arc<AtomicI64>,
    n: u64,
    refused: u64,
}

impl Writer {
    fn run(&mut self, actor: Actor, cmd: Command) {
        self.n += 1;
        self.clock.fetch_add(1_000, Ordering::SeqCst);
        let command_id = id(CommandId::parse(format!("c{}", self.n)));
        let cmd = authkeys_log::Append {
            scope: TAILNET.to_owned(),
            command_id,
            actor,
            fingerprint: [0; 32],
            answer: None,
            decide: Box::new(move |s: &State, now| decide(s, &cmd, now)),
        };
        match self.log.append_blocking(cmd) {
            Ok(_) => {}
            Err(authkeys_log::AppendError::Rejected(_)) => self.refused += 1,
            Err(e) => panic!("the fixture log failed: {e}"),
        }
    }
}

fn user_actor(u: &str) -> Actor {
    Actor {
        actor_type: ActorType::User,
        id: u.to_owned(),
        login_name: None,
    }
}

fn registrar() -> Actor {
    Actor {
        actor_type: ActorType::Registrar,
        id: "fixture-registrar".to_owned(),
        login_name: None,
    }
}

/// Writes `steps` commands of the workload (seeded) into a new log in `dir`, checkpointing every
/// `checkpoint_events_max` events, and closes it (a final checkpoint covers the head). Blocking.
pub fn build_log(dir: &Path, steps: u64, seed: u64, checkpoint_events_max: u64) -> Built {
    let clock = Arc::new(AtomicI64::new(1_796_000_000_000));
    let mut config = LogConfig::in_dir(dir);
    config.checkpoint_events_max = checkpoint_events_max;
    config.checkpoint_interval = std::time::Duration::from_secs(3600);
    let c = Arc::clone(&clock);
    config.clock = authkeys_events::Clock::new(move || {
        Timestamp::from_unix_ms(c.load(Ordering::SeqCst)).expect("fixture time is in range")
    });
    let log: Log<State> = Log::open(config, State::default()).expect("open the fixture log");
    let key = log.verifying_key();
    let mut w = Writer {
        log,
        clock,
        n: 0,
        refused: 0,
    };
    let tailnet = id(TailnetId::parse(TAILNET));
    let token = |n: u64| NewToken {
        token_id: id(TokenId::parse(format!("t{n}"))),
        secret_hash: Hash([n as u8; 32]),
        expires: Timestamp::from_unix_ms(1_900_000_000_000).expect("in range"),
    };
    w.run(
        Actor::system("bootstrap"),
        Command::CreateTailnet {
            tailnet_id: tailnet.clone(),
            name: id(TailnetName::parse("example.com")),
            owner_id: id(UserId::parse("u0")),
            owner_login: id(LoginName::parse(USERS[0].1)),
            token: token(0),
        },
    );
    for (n, (u, login, role)) in USERS.iter().enumerate().skip(1) {
        w.run(
            user_actor("u0"),
            Command::Admin {
                tailnet: tailnet.clone(),
                actor: id(UserId::parse("u0")),
                op: AdminOp::AddUser {
                    user_id: id(UserId::parse(*u)),
                    login_name: id(LoginName::parse(*login)),
                    role: *role,
                    token: token(n as u64),
                },
            },
        );
    }

    let mut rng = Rng::new(seed);
    // (key id, owner) of every key generated; node keys of every node registered.
    let mut keys: Vec<(String, &str)> = Vec::new();
    let mut nodes: Vec<(String, String)> = Vec::new();
    let admin = |w: &mut Writer, actor: &str, op: AdminOp| {
        w.run(
            user_actor(actor),
            Command::Admin {
                tailnet: tailnet.clone(),
                actor: id(UserId::parse(actor)),
                op,
            },
        );
    };
    for step in 0..steps {
        let actor = USERS[rng.below(5) as usize].0;
        let pick_node = |rng: &mut Rng| -> Option<(String, String)> {
            (!nodes.is_empty()).then(|| nodes[rng.below(nodes.len() as u64) as usize].clone())
        };
        match rng.below(12) {
            0..=2 => {
                let key_id = format!("kA{step}");
                let tags: &[&str] = match rng.below(3) {
                    0 => &[],
                    1 => &["tag:ci"],
                    _ => &["tag:ci", "tag:prod"],
                };
                let short = rng.below(4) == 0;
                admin(
                    &mut w,
                    actor,
                    AdminOp::GenerateKey {
                        key_id: id(KeyId::parse(key_id.clone())),
                        secret_hash: secret(&key_id),
                        request: KeyRequest {
                            description: id(Description::parse(format!("fixture key {step}"))),
                            expiry_seconds: id(ExpirySeconds::new(if short { 5 } else { 86_400 })),
                            reusable: rng.below(2) == 0,
                            ephemeral: rng.below(4) == 0,
                            preauthorized: rng.below(2) == 0,
                            tags: id(Tags::parse(tags)),
                        },
                    },
                );
                keys.push((key_id, actor));
            }
            3..=5 if !keys.is_empty() => {
                let (key_id, _) = keys[rng.below(keys.len() as u64) as usize].clone();
                // A third of the registrations re-authenticate a known node.
                let node_key = match pick_node(&mut rng).filter(|_| rng.below(3) == 0) {
                    Some((_, nk)) => nk,
                    None => format!("nodekey:{:064x}", rng.next_u64()),
                };
                w.run(
                    registrar(),
                    Command::Register {
                        key_id: id(KeyId::parse(key_id.clone())),
                        presented_hash: secret(&key_id),
                        node_key: id(NodeKey::parse(node_key.clone())),
                        hostname: id(Hostname::parse(format!("host-{}", rng.below(20)))),
                        os: "linux".into(),
                        new_node_id: id(NodeId::parse(format!("n{step}"))),
                        presigned: None,
                    },
                );
                let node_id = format!("n{step}");
                if !nodes.iter().any(|(_, nk)| *nk == node_key) {
                    nodes.push((node_id, node_key));
                }
            }
            6 if !keys.is_empty() => {
                let (key_id, owner) = keys[rng.below(keys.len() as u64) as usize].clone();
                // Mostly the owner; sometimes someone else (refused: R09 answers not found).
                let who = if rng.below(4) == 0 { actor } else { owner };
                admin(
                    &mut w,
                    who,
                    AdminOp::RevokeKey {
                        key_id: id(KeyId::parse(key_id)),
                    },
                );
            }
            7 => {
                if let Some((_, nk)) = pick_node(&mut rng) {
                    let node_key = id(NodeKey::parse(nk));
                    let cmd = if rng.below(2) == 0 {
                        Command::NodeConnected { node_key }
                    } else {
                        Command::NodeDisconnected { node_key }
                    };
                    w.run(registrar(), cmd);
                }
            }
            8..=10 => {
                if let Some((n, _)) = pick_node(&mut rng) {
                    let node_id = id(NodeId::parse(n));
                    let op = match rng.below(5) {
                        0 => AdminOp::SetTags {
                            node_id,
                            tags: id(Tags::parse(if rng.below(2) == 0 {
                                &["tag:web"][..]
                            } else {
                                &["tag:ci", "tag:db"][..]
                            })),
                        },
                        1 => AdminOp::AuthorizeNode {
                            node_id,
                            authorized: rng.below(2) == 0,
                        },
                        2 => AdminOp::SetKeyExpiry {
                            node_id,
                            disabled: rng.below(2) == 0,
                        },
                        3 => AdminOp::ExpireNode { node_id },
                        _ => AdminOp::DeleteNode { node_id },
                    };
                    admin(&mut w, actor, op);
                }
            }
            _ => {
                let op = match rng.below(2) {
                    0 => AdminOp::ChangeSettings {
                        devices_approval_on: Some(rng.below(2) == 0),
                        devices_key_duration_days: None,
                        kept: Default::default(),
                    },
                    _ => AdminOp::ChangeRole {
                        user_id: id(UserId::parse("u3")),
                        role: if rng.below(2) == 0 {
                            Role::Member
                        } else {
                            Role::NetworkAdmin
                        },
                    },
                };
                admin(&mut w, actor, op);
            }
        }
    }
    let events = w.log.head().seq;
    let refused = w.refused;
    w.log.close();
    Built {
        key,
        events,
        refused,
    }
}

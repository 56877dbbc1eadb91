//! A state-machine test of the rules through the real log.
//!
//! Proptest generates a sequence of abstract operations (generate, revoke, register, delete,
//! expire, set tags, advance the clock). Each runs as a command through
//! `authkeys_log::Log<State>` with the domain's `decide`, under an injected clock, beside a
//! small model written here. After every step the model must agree with the log on accept or
//! reject (and on which events), and an auditor that reads only the committed events checks the
//! invariants:
//!
//! - R01: a one-off key has at most one `KeyUsed`; `KeyUsed.uses` counts the key's uses.
//! - R08, R11/R12: no `KeyUsed` after its key's `KeyRevoked`, nor at or after its `expires`.
//! - R05, R06: every `NodeRegistered`/`NodeReauthenticated` node is owned by its key's user and
//!   carries exactly its key's tags.
//! - R16: at most one live node per node key.
//! - R17: every new node has an IPv4 in 100.64.0.0/10 and an IPv6 in fd7a:115c:a1e0::/48, held
//!   by no other live node and not released by a deleted node less than 90 days before.
//!
//! At the end the log is closed, verified with `LogReader::verify`, replayed through the auditor
//! and folded into a fresh `State`, which must match the model.
//!
//! Cases: 64 by default; `PROPTEST_CASES` overrides, as for every proptest.

mod domain_log;
#[path = "../../domain/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;

use authkeys_domain::addresses::{QUARANTINE_SECS, in_ipv4_range, in_ipv6_range};
use authkeys_domain::{AdminOp, State};
use authkeys_events::{
    CommandId, Envelope, Event, EventType, KeyId, NodeAddresses, NodeId, NodeKey, Role, Seq, Tags,
    Timestamp, UserId,
};
use authkeys_log::{AppendError, LogReader};
use domain_log::*;
use proptest::prelude::*;
use support::*;

use EventType as E;

/// The users of every case: an Owner, an Admin and a Member (who may manage nothing).
const USERS: [&str; 3] = [OWNER, ALICE, "uMember"];

/// The tag sets keys and `SetTags` draw from (one is given unsorted and with a duplicate).
const TAG_SETS: [&[&str]; 4] = [&[], &["tag:a"], &["tag:b", "tag:a", "tag:b"], &["tag:c"]];

/// Node keys come from a small pool so that re-authentication (R16) is frequent.
const NODE_KEYS: u64 = 4;

#[derive(Debug, Clone)]
enum Op {
    Generate {
        by: usize,
        reusable: bool,
        tags: usize,
        expiry_secs: u32,
    },
    Revoke {
        by: usize,
        key: Option<usize>,
    },
    Register {
        key: Option<usize>,
        wrong_secret: bool,
        node_key: u64,
    },
    Delete {
        by: usize,
        node: usize,
    },
    Expire {
        by: usize,
        node: usize,
    },
    SetTags {
        by: usize,
        node: usize,
        tags: usize,
    },
    Advance {
        secs: u32,
    },
}

/// `None` is a key id that was never generated.
fn key_ref() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![1 => Just(None), 8 => (0..16usize).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS.len();
    prop_oneof![
        3 => (user.clone(), any::<bool>(), 0..TAG_SETS.len(), 1..=300u32).prop_map(
            |(by, reusable, tags, expiry_secs)| Op::Generate { by, reusable, tags, expiry_secs }
        ),
        1 => (user.clone(), key_ref()).prop_map(|(by, key)| Op::Revoke { by, key }),
        6 => (key_ref(), prop::bool::weighted(0.1), 0..NODE_KEYS).prop_map(
            |(key, wrong_secret, node_key)| Op::Register { key, wrong_secret, node_key }
        ),
        1 => (user.clone(), 0..16usize).prop_map(|(by, node)| Op::Delete { by, node }),
        1 => (user.clone(), 0..16usize).prop_map(|(by, node)| Op::Expire { by, node }),
        1 => (user, 0..16usize, 0..TAG_SETS.len())
            .prop_map(|(by, node, tags)| Op::SetTags { by, node, tags }),
        2 => (0..=150u32).prop_map(|secs| Op::Advance { secs }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct MKey {
    id: String,
    user: UserId,
    reusable: bool,
    tags: Tags,
    expires: Timestamp,
    revoked: bool,
    uses: u64,
}

#[derive(Debug, Clone)]
struct MNode {
    id: String,
    node_key: u64,
    user: UserId,
    tags: Tags,
    expired: bool,
    live: bool,
}

/// What the rules say should happen, from a dozen lines per operation.
#[derive(Debug, Default)]
struct Model {
    keys: Vec<MKey>,
    /// Every node ever registered, live or deleted.
    nodes: Vec<MNode>,
    /// Live node (index into `nodes`) by node key.
    live: HashMap<u64, usize>,
}

/// What the model expects of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Rejected(&'static str),
    /// These event types; for a registration also the node id it must concern.
    Accepted(Vec<EventType>, Option<String>),
}

fn may_manage(by: usize) -> bool {
    by < 2
}

impl Model {
    fn key(&self, r: Option<usize>) -> Option<usize> {
        r.filter(|_| !self.keys.is_empty())
            .map(|i| i % self.keys.len())
    }

    fn node(&self, i: usize) -> Option<usize> {
        (!self.nodes.is_empty()).then(|| i % self.nodes.len())
    }
}

// ---------------------------------------------------------------------------------------------
// The auditor: invariants from the committed events alone
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct KeyFacts {
    user: UserId,
    reusable: bool,
    tags: Tags,
    expires: Timestamp,
    revoked: bool,
    used: u64,
}

#[derive(Debug, Default)]
struct Auditor {
    seq: u64,
    keys: HashMap<KeyId, KeyFacts>,
    live_by_node_key: HashMap<NodeKey, NodeId>,
    node_key_of: HashMap<NodeId, NodeKey>,
    /// The node the current command registered or re-authenticated, awaiting its KeyUsed.
    pending: Option<(CommandId, NodeId, KeyId)>,
    /// R17: each live node's addresses.
    addresses_of: HashMap<NodeId, NodeAddresses>,
    /// R17: which live node holds an address (IPv4 and IPv6 alike, as text).
    holder: HashMap<String, NodeId>,
    /// R17: when an address was last released by a deletion.
    released: HashMap<String, Timestamp>,
}

impl Auditor {
    fn see(&mut self, env: &Envelope) {
        assert_eq!(env.seq.get(), self.seq + 1, "gapless seq");
        self.seq += 1;
        match &env.event {
            Event::KeyGenerated(e) => {
                let fresh = self.keys.insert(
                    e.key_id.clone(),
                    KeyFacts {
                        user: e.user_id.clone(),
                        reusable: e.reusable,
                        tags: e.tags.clone(),
                        expires: e.expires,
                        revoked: false,
                        used: 0,
                    },
                );
                assert!(fresh.is_none(), "key id {} generated twice", e.key_id);
            }
            Event::KeyRevoked(e) => {
                let k = self.keys.get_mut(&e.key_id).expect("revoked key exists");
                assert!(!k.revoked, "R12: {} revoked twice", e.key_id);
                k.revoked = true;
            }
            Event::KeyUsed(e) => {
                let k = self.keys.get_mut(&e.key_id).expect("used key exists");
                assert!(
                    !k.revoked,
                    "R11: {} used after KeyRevoked (seq {})",
                    e.key_id, env.seq
                );
                assert!(
                    env.time < k.expires,
                    "R08: {} used at {} but expires {}",
                    e.key_id,
                    env.time,
                    k.expires
                );
                k.used += 1;
                assert_eq!(e.uses, k.used, "KeyUsed.uses counts the key's uses");
                assert!(
                    k.reusable || k.used <= 1,
                    "R01: one-off key {} used {} times",
                    e.key_id,
                    k.used
                );
                let (cmd, node, key) = self
                    .pending
                    .take()
                    .expect("KeyUsed follows its registration");
                assert_eq!(cmd, env.command_id);
                assert_eq!(node, e.node_id);
                assert_eq!(key, e.key_id);
                assert_eq!(self.node_key_of.get(&e.node_id), Some(&e.node_key));
            }
            Event::NodeRegistered(e) => {
                let k = self.presented(&e.auth_key_id, &e.user_id, &e.tags, "registering");
                assert_eq!(e.key_expiry_disabled, !k.tags.is_empty(), "R05/R14");
                assert!(
                    !self.live_by_node_key.contains_key(&e.node_key),
                    "R16: node key {} registered twice",
                    e.node_key
                );
                assert!(!self.node_key_of.contains_key(&e.node_id));
                self.live_by_node_key
                    .insert(e.node_key.clone(), e.node_id.clone());
                self.node_key_of
                    .insert(e.node_id.clone(), e.node_key.clone());
                let a = e.addresses.expect("R17: a new node gets addresses");
                assert!(in_ipv4_range(a.ipv4), "R17: {} out of range", a.ipv4);
                assert!(in_ipv6_range(a.ipv6), "R17: {} out of range", a.ipv6);
                for addr in [a.ipv4.to_string(), a.ipv6.to_string()] {
                    if let Some(other) = self.holder.get(&addr) {
                        panic!("R17: {addr} given to {} but held by {other}", e.node_id);
                    }
                    if let Some(t) = self.released.get(&addr) {
                        assert!(
                            env.time >= t.plus_seconds(QUARANTINE_SECS),
                            "R17: {addr} released at {t} given to {} at {}",
                            e.node_id,
                            env.time
                        );
                    }
                    self.holder.insert(addr, e.node_id.clone());
                }
                self.addresses_of.insert(e.node_id.clone(), a);
                self.awaits_key_used(env, &e.node_id, &e.auth_key_id);
            }
            Event::NodeReauthenticated(e) => {
                let k = self.presented(&e.auth_key_id, &e.user_id, &e.tags, "re-authenticating");
                if !k.tags.is_empty() {
                    assert!(e.key_expiry_disabled, "R15: a tagged key disables expiry");
                }
                assert!(
                    self.node_key_of.contains_key(&e.node_id),
                    "re-authenticated node is live"
                );
                self.awaits_key_used(env, &e.node_id, &e.auth_key_id);
            }
            Event::NodeDeleted(e) => {
                let nk = self
                    .node_key_of
                    .remove(&e.node_id)
                    .expect("deleted node is live");
                self.live_by_node_key.remove(&nk);
                let a = self
                    .addresses_of
                    .remove(&e.node_id)
                    .expect("a live node has addresses");
                for addr in [a.ipv4.to_string(), a.ipv6.to_string()] {
                    self.holder.remove(&addr);
                    self.released.insert(addr, env.time);
                }
            }
            _ => {}
        }
    }

    /// The key a node registers or re-authenticates with: it exists, and the node is its user's
    /// (R06) with its tags (R05).
    fn presented(&self, key: &KeyId, user: &UserId, tags: &Tags, doing: &str) -> &KeyFacts {
        let k = self
            .keys
            .get(key)
            .unwrap_or_else(|| panic!("{doing} key exists"));
        assert_eq!(*user, k.user, "R06: node owned by its key's user");
        assert_eq!(*tags, k.tags, "R05: node carries its key's tags");
        k
    }

    /// The current command registered or re-authenticated `node` with `key`: its KeyUsed is due.
    fn awaits_key_used(&mut self, env: &Envelope, node: &NodeId, key: &KeyId) {
        self.pending = Some((env.command_id.clone(), node.clone(), key.clone()));
    }

    fn end_of_command(&self) {
        assert!(self.pending.is_none(), "every registration has its KeyUsed");
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------

fn commit(log: &authkeys_log::Log<State>, auditor: &mut Auditor, cmd: authkeys_domain::Command) {
    let committed = append(log, cmd).expect("bootstrap is accepted");
    for env in &committed.envelopes {
        auditor.see(env);
    }
    auditor.end_of_command();
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = TestClock::new();
    let log = open_log(dir.path(), &clock);
    let mut auditor = Auditor::default();
    let mut model = Model::default();
    let mut events = 0u64;

    commit(
        &log,
        &mut auditor,
        create_tailnet(TAILNET, "example.com", OWNER),
    );
    commit(
        &log,
        &mut auditor,
        admin(OWNER, add_user(ALICE, Role::Admin)),
    );
    commit(
        &log,
        &mut auditor,
        admin(OWNER, add_user(USERS[2], Role::Member)),
    );
    events += auditor.seq;

    for (step, op) in ops.iter().enumerate() {
        let now = clock.now();
        let (cmd, expect) = match op {
            Op::Advance { secs } => {
                clock.advance_ms(i64::from(*secs) * 1000);
                continue;
            }
            Op::Generate {
                by,
                reusable,
                tags,
                expiry_secs,
            } => {
                let id = format!("k{step}");
                let opts = KeyOpts {
                    reusable: *reusable,
                    tags: support::tags(TAG_SETS[*tags]),
                    expiry_seconds: *expiry_secs,
                    ..KeyOpts::one_off()
                };
                let expect = if may_manage(*by) {
                    model.keys.push(MKey {
                        id: id.clone(),
                        user: uid(USERS[*by]),
                        reusable: *reusable,
                        tags: opts.tags.clone(),
                        expires: now.plus_seconds(i64::from(*expiry_secs)),
                        revoked: false,
                        uses: 0,
                    });
                    Expect::Accepted(vec![E::KeyGenerated], None)
                } else {
                    Expect::Rejected("forbidden")
                };
                (admin(USERS[*by], generate(&id, &opts)), expect)
            }
            Op::Revoke { by, key } => {
                let k = model.key(*key);
                let id = k.map_or("kUnknown".to_owned(), |i| model.keys[i].id.clone());
                let expect = match k {
                    _ if !may_manage(*by) => Expect::Rejected("forbidden"),
                    Some(i)
                        if model.keys[i].user == uid(USERS[*by])
                            && !model.keys[i].revoked
                            && (model.keys[i].reusable || model.keys[i].uses == 0) =>
                    {
                        model.keys[i].revoked = true;
                        Expect::Accepted(vec![E::KeyRevoked], None)
                    }
                    _ => Expect::Rejected("not_found"),
                };
                (admin(USERS[*by], revoke(&id)), expect)
            }
            Op::Register {
                key,
                wrong_secret,
                node_key,
            } => {
                let k = model.key(*key);
                let id = k.map_or("kUnknown".to_owned(), |i| model.keys[i].id.clone());
                let new_node = format!("n{step}");
                let text = if *wrong_secret {
                    issue_with(&id, b"a wrong secret").text
                } else {
                    issued(&id).text
                };
                let usable = k.filter(|&i| {
                    let mk = &model.keys[i];
                    !*wrong_secret
                        && !mk.revoked
                        && now < mk.expires
                        && (mk.reusable || mk.uses == 0)
                });
                let expect = match usable {
                    None => Expect::Rejected("invalid_key"),
                    Some(i) => {
                        model.keys[i].uses += 1;
                        let mk = model.keys[i].clone();
                        if let Some(&n) = model.live.get(node_key) {
                            let node = &mut model.nodes[n];
                            node.user = mk.user;
                            node.tags = mk.tags;
                            node.expired = false;
                            Expect::Accepted(
                                vec![E::NodeReauthenticated, E::KeyUsed],
                                Some(node.id.clone()),
                            )
                        } else {
                            model.live.insert(*node_key, model.nodes.len());
                            model.nodes.push(MNode {
                                id: new_node.clone(),
                                node_key: *node_key,
                                user: mk.user,
                                tags: mk.tags,
                                expired: false,
                                live: true,
                            });
                            Expect::Accepted(
                                vec![E::NodeRegistered, E::KeyUsed],
                                Some(new_node.clone()),
                            )
                        }
                    }
                };
                (register_with_secret(&text, *node_key, &new_node), expect)
            }
            Op::Delete { by, node } | Op::Expire { by, node } | Op::SetTags { by, node, .. } => {
                let n = model.node(*node);
                let id = n.map_or("nGhost".to_owned(), |i| model.nodes[i].id.clone());
                let live = n.filter(|&i| model.nodes[i].live);
                let (admin_op, expect) = match op {
                    Op::Delete { .. } => {
                        let expect = match live {
                            _ if !may_manage(*by) => Expect::Rejected("forbidden"),
                            None => Expect::Rejected("not_found"),
                            Some(i) => {
                                model.nodes[i].live = false;
                                model.live.remove(&model.nodes[i].node_key);
                                Expect::Accepted(vec![E::NodeDeleted], None)
                            }
                        };
                        (AdminOp::DeleteNode { node_id: nid(&id) }, expect)
                    }
                    Op::Expire { .. } => {
                        let expect = match live {
                            _ if !may_manage(*by) => Expect::Rejected("forbidden"),
                            None => Expect::Rejected("not_found"),
                            Some(i) if model.nodes[i].expired => Expect::Accepted(vec![], None),
                            Some(i) => {
                                model.nodes[i].expired = true;
                                Expect::Accepted(vec![E::NodeExpired], None)
                            }
                        };
                        (AdminOp::ExpireNode { node_id: nid(&id) }, expect)
                    }
                    Op::SetTags { tags, .. } => {
                        let new_tags = support::tags(TAG_SETS[*tags]);
                        let expect = match live {
                            _ if !may_manage(*by) => Expect::Rejected("forbidden"),
                            None => Expect::Rejected("not_found"),
                            Some(i) if model.nodes[i].tags == new_tags => {
                                Expect::Accepted(vec![], None)
                            }
                            Some(i) => {
                                model.nodes[i].tags = new_tags.clone();
                                Expect::Accepted(vec![E::TagsChanged], None)
                            }
                        };
                        (
                            AdminOp::SetTags {
                                node_id: nid(&id),
                                tags: new_tags,
                            },
                            expect,
                        )
                    }
                    _ => unreachable!("matched above"),
                };
                (admin(USERS[*by], admin_op), expect)
            }
        };

        let got = match append(&log, cmd.clone()) {
            Ok(c) => {
                for env in &c.envelopes {
                    assert_eq!(env.time, now, "the log stamps the injected time");
                    auditor.see(env);
                }
                auditor.end_of_command();
                events += c.envelopes.len() as u64;
                let node = c.envelopes.iter().find_map(|e| match &e.event {
                    Event::NodeRegistered(r) => Some(r.node_id.to_string()),
                    Event::NodeReauthenticated(r) => Some(r.node_id.to_string()),
                    _ => None,
                });
                Expect::Accepted(c.envelopes.iter().map(Envelope::event_type).collect(), node)
            }
            Err(AppendError::Rejected(r)) => Expect::Rejected(r.code()),
            Err(other) => panic!("step {step} {op:?}: the log failed: {other}"),
        };
        assert_eq!(got, expect, "step {step}: {op:?} as {cmd:?}");
        assert_eq!(log.head().seq, events, "rejections write nothing");
    }

    log.close();
    let reader = LogReader::open(&dir.path().join("log.redb")).expect("the log opens read-only");
    let report = reader
        .verify(None)
        .expect("the chain and checkpoints verify");
    assert_eq!(report.events, events);

    // Replay: the invariants hold over the whole stored history, and the state folded from it
    // is the model's.
    let mut replay = Auditor::default();
    let mut state = State::default();
    for stored in reader.read(Seq::FIRST, usize::MAX).expect("read") {
        let env = stored.envelope().expect("every stored body decodes");
        replay.see(&env);
        state.apply(&env);
    }
    assert_eq!(replay.seq, events);
    // ADR 008: the state's snapshot restores it exactly, and the close left one at the head,
    // from which a reopen restores the same state.
    assert_eq!(
        <State as authkeys_log::Aggregate>::restore(&authkeys_log::Aggregate::snapshot(&state)),
        Ok(state.clone())
    );
    let reopened = open_log(dir.path(), &clock);
    assert_eq!(reopened.opened_from_snapshot(), Some(events));
    let restored = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(reopened.query(State::clone))
        .expect("query");
    assert_eq!(
        restored, state,
        "the state restored from the snapshot is the fold"
    );
    reopened.close();

    let t = &state.tailnets[&t1()];
    assert_eq!(t.keys.len(), model.keys.len());
    for mk in &model.keys {
        let k = &t.keys[&kid(&mk.id)];
        assert_eq!(k.uses, mk.uses, "uses of {}", mk.id);
        assert_eq!(k.revoked.is_some(), mk.revoked, "revoked {}", mk.id);
        assert_eq!(k.user_id, mk.user);
        assert_eq!(k.expires, mk.expires);
    }
    let live: Vec<_> = model.nodes.iter().filter(|n| n.live).collect();
    assert_eq!(t.nodes.len(), live.len());
    assert_eq!(
        state.node_keys.len(),
        live.len(),
        "R16: one live node per node key"
    );
    for mn in live {
        let n = &t.nodes[&nid(&mn.id)];
        assert_eq!(
            n.addresses.as_ref(),
            replay.addresses_of.get(&nid(&mn.id)),
            "R17: the node keeps the addresses it registered with"
        );
        assert_eq!(n.node_key, node_key(mn.node_key));
        assert_eq!(n.user_id, mn.user);
        assert_eq!(n.tags, mn.tags);
        assert_eq!(n.expired, mn.expired);
        assert_eq!(state.node_keys[&n.node_key].1, nid(&mn.id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn model_and_log_agree_and_invariants_hold(ops in prop::collection::vec(op(), 0..=40)) {
        run(&ops);
    }
}

#[test]
fn model_scenario_one_off_key_revoke_expiry_and_reauth() {
    // A fixed walk through the machinery, so that a failure here is readable without shrinking:
    // a one-off key registers once; a reusable tagged key re-authenticates that node (taking its
    // tags) and registers another; revocation and expiry then refuse both keys.
    run(&[
        Op::Generate {
            by: 1,
            reusable: false,
            tags: 0,
            expiry_secs: 100,
        },
        Op::Generate {
            by: 0,
            reusable: true,
            tags: 2,
            expiry_secs: 50,
        },
        Op::Register {
            key: Some(0),
            wrong_secret: false,
            node_key: 0,
        },
        Op::Register {
            key: Some(0),
            wrong_secret: false,
            node_key: 1,
        },
        Op::Register {
            key: Some(1),
            wrong_secret: false,
            node_key: 0,
        },
        Op::Register {
            key: Some(1),
            wrong_secret: true,
            node_key: 2,
        },
        Op::SetTags {
            by: 1,
            node: 0,
            tags: 3,
        },
        Op::Advance { secs: 50 },
        Op::Register {
            key: Some(1),
            wrong_secret: false,
            node_key: 2,
        },
        Op::Revoke {
            by: 1,
            key: Some(0),
        },
        Op::Revoke {
            by: 1,
            key: Some(0),
        },
        Op::Expire { by: 0, node: 0 },
        Op::Expire { by: 0, node: 0 },
        Op::Delete { by: 2, node: 0 },
        Op::Delete { by: 0, node: 0 },
        Op::Register {
            key: None,
            wrong_secret: false,
            node_key: 0,
        },
    ]);
}

//! R17 (node addresses) as a property over long random histories, against the real `decide` and
//! `State::apply`: registrations of new nodes, re-authentications, deletions and a clock that
//! moves by seconds to weeks, in a full pool or one forced small so that exhaustion and reuse
//! after quarantine happen often.
//!
//! A reference model written here remembers every address ever handed out: which live node
//! holds it and when it was last released. After every step:
//!
//! - a new node's addresses are in 100.64.0.0/10 and fd7a:115c:a1e0::/48, the IPv6 embedding the
//!   IPv4, never reserved, held by no live node of the tailnet, and not released less than 90
//!   days ago;
//! - re-authentication keeps a node's addresses; the state's nodes hold what their events said;
//! - a registration is refused `AddressesExhausted` only when every usable address of the pool
//!   is held or in quarantine — so a freed address is handed out again once its 90 days end.
//!
//! Cases: 64 of up to 400 steps by default; `PROPTEST_CASES` overrides.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use authkeys_domain::Rejection;
use authkeys_domain::addresses::{
    QUARANTINE_SECS, USABLE, addresses_at, in_ipv4_range, in_ipv6_range, ipv6_of, is_reserved,
};
use authkeys_events::{Event, NodeAddresses, NodeReauthenticated, NodeRegistered, Timestamp};
use proptest::prelude::*;
use support::*;

/// Node keys come from a small set so that re-authentication is frequent.
const NODE_KEYS: u64 = 48;

#[derive(Debug, Clone)]
enum Op {
    /// Register (or re-authenticate) node key `n`.
    Register(u64),
    /// Delete the live node at this index (modulo the live count), if any.
    Delete(usize),
    /// Move the clock forward.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NODE_KEYS).prop_map(Op::Register),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => (1..=5 * DAY).prop_map(Op::Advance),
        1 => (1..=40 * DAY).prop_map(Op::Advance),
    ]
}

/// `None`: the full pool; `Some(size)`: the first `size` offsets (offset 0 is reserved).
fn pool() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![Just(None), (2u32..=24).prop_map(Some)]
}

/// What the model knows of one live node.
#[derive(Debug, Clone)]
struct Live {
    id: String,
    node_key: u64,
    addresses: NodeAddresses,
}

#[derive(Debug, Default)]
struct Model {
    live: Vec<Live>,
    holder4: HashMap<Ipv4Addr, String>,
    holder6: HashMap<Ipv6Addr, String>,
    released4: HashMap<Ipv4Addr, Timestamp>,
    released6: HashMap<Ipv6Addr, Timestamp>,
}

impl Model {
    fn quarantined4(&self, a: Ipv4Addr, now: Timestamp) -> bool {
        self.released4
            .get(&a)
            .is_some_and(|t| now < t.plus_seconds(QUARANTINE_SECS))
    }

    fn quarantined6(&self, a: Ipv6Addr, now: Timestamp) -> bool {
        self.released6
            .get(&a)
            .is_some_and(|t| now < t.plus_seconds(QUARANTINE_SECS))
    }

    /// Is some usable address of a pool of `size` offsets neither held nor in quarantine?
    fn any_free(&self, size: Option<u32>, now: Timestamp) -> bool {
        match size {
            // Far fewer nodes than the range holds ever exist here.
            None => self.holder4.len() + self.released4.len() < USABLE as usize,
            Some(size) => (0..size).map(addresses_at).any(|a| {
                !is_reserved(a.ipv4)
                    && !self.holder4.contains_key(&a.ipv4)
                    && !self.holder6.contains_key(&a.ipv6)
                    && !self.quarantined4(a.ipv4, now)
                    && !self.quarantined6(a.ipv6, now)
            }),
        }
    }

    /// Checks and records the addresses of a new node `id`.
    fn registered(&mut self, id: &str, node_key: u64, a: NodeAddresses, now: Timestamp) {
        assert!(in_ipv4_range(a.ipv4), "{} not in 100.64.0.0/10", a.ipv4);
        assert!(
            in_ipv6_range(a.ipv6),
            "{} not in fd7a:115c:a1e0::/48",
            a.ipv6
        );
        assert_eq!(a.ipv6, ipv6_of(a.ipv4), "the IPv6 embeds the IPv4");
        assert!(!is_reserved(a.ipv4), "{} is reserved", a.ipv4);
        if let Some(other) = self.holder4.get(&a.ipv4) {
            panic!("{} handed to {id} but held by live node {other}", a.ipv4);
        }
        if let Some(other) = self.holder6.get(&a.ipv6) {
            panic!("{} handed to {id} but held by live node {other}", a.ipv6);
        }
        assert!(
            !self.quarantined4(a.ipv4, now) && !self.quarantined6(a.ipv6, now),
            "{} handed to {id} at {now}, released at {:?}: less than 90 days ago",
            a.ipv4,
            self.released4.get(&a.ipv4)
        );
        self.holder4.insert(a.ipv4, id.to_owned());
        self.holder6.insert(a.ipv6, id.to_owned());
        self.live.push(Live {
            id: id.to_owned(),
            node_key,
            addresses: a,
        });
    }

    fn deleted(&mut self, i: usize, now: Timestamp) -> Live {
        let n = self.live.swap_remove(i);
        self.holder4.remove(&n.addresses.ipv4);
        self.holder6.remove(&n.addresses.ipv6);
        self.released4.insert(n.addresses.ipv4, now);
        self.released6.insert(n.addresses.ipv6, now);
        n
    }
}

/// What a case came to, for the test that shows the property is not vacuous.
#[derive(Debug, Default)]
struct Tally {
    registered: usize,
    reauthenticated: usize,
    deleted: usize,
    exhausted: usize,
    reused: usize,
}

fn run(pool_size: Option<u32>, ops: &[Op]) -> Tally {
    let mut g = given().tailnet();
    if let Some(size) = pool_size {
        g = g.address_pool(size);
    }
    let mut model = Model::default();
    let mut tally = Tally::default();
    let mut now_secs = 0i64;
    // Keys live at most 90 days: a new one whenever the last is about to expire.
    let mut key: Option<(String, i64)> = None;
    let mut next_node = 0u64;
    let mut ever: HashMap<Ipv4Addr, usize> = HashMap::new();

    for op in ops {
        match *op {
            Op::Advance(secs) => {
                now_secs += secs;
                g = g.at(now_secs);
            }
            Op::Delete(i) => {
                if model.live.is_empty() {
                    continue;
                }
                let i = i % model.live.len();
                let id = model.live[i].id.clone();
                g = g.command(admin(
                    OWNER,
                    authkeys_domain::AdminOp::DeleteNode { node_id: nid(&id) },
                ));
                model.deleted(i, g.now());
                tally.deleted += 1;
            }
            Op::Register(nk) => {
                let key_id = match &key {
                    Some((id, expires)) if *expires > now_secs => id.clone(),
                    _ => {
                        let id = format!("k{now_secs}");
                        g = g.key(OWNER, &id, KeyOpts::reusable());
                        key = Some((id.clone(), now_secs + 90 * DAY));
                        id
                    }
                };
                next_node += 1;
                let new_id = format!("n{next_node}");
                let reauth = model.live.iter().position(|n| n.node_key == nk);
                let now = g.now();
                let then = g.when(register(&key_id, nk, &new_id));
                match then.outcome() {
                    Outcome::Accepted(envs) => {
                        let events: Vec<Event> = envs.iter().map(|e| e.event.clone()).collect();
                        assert_eq!(envs[0].time, now);
                        if let Some(i) = reauth {
                            let r = one::<NodeReauthenticated>(&events);
                            assert_eq!(r.node_id, nid(&model.live[i].id));
                            tally.reauthenticated += 1;
                        } else {
                            let r = one::<NodeRegistered>(&events);
                            assert_eq!(r.node_id, nid(&new_id));
                            let a = r.addresses.expect("a new node gets addresses");
                            model.registered(&new_id, nk, a, now);
                            let times = ever.entry(a.ipv4).or_default();
                            *times += 1;
                            if *times > 1 {
                                tally.reused += 1;
                            }
                            tally.registered += 1;
                        }
                    }
                    Outcome::Rejected(Rejection::AddressesExhausted) => {
                        assert!(reauth.is_none(), "re-authentication needs no address");
                        assert!(
                            !model.any_free(pool_size, now),
                            "refused AddressesExhausted at {now} while an address is free"
                        );
                        tally.exhausted += 1;
                    }
                    other => panic!("register {nk}: {other:?}"),
                }
                g = then.and();
            }
        }

        // The state agrees with the model: every live node holds what its registration said
        // (kept across re-authentication), and the pool counts exactly the live nodes.
        let t = &g.state().tailnets[&t1()];
        assert_eq!(t.nodes.len(), model.live.len());
        assert_eq!(t.addresses.in_use(), model.live.len());
        for n in &model.live {
            assert_eq!(
                t.nodes[&nid(&n.id)].addresses,
                Some(n.addresses),
                "node {} keeps its addresses",
                n.id
            );
        }
    }
    tally
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn r17_addresses_are_unique_in_range_kept_and_quarantined(
        pool_size in pool(),
        ops in prop::collection::vec(op(), 0..=400),
    ) {
        run(pool_size, &ops);
    }
}

/// A fixed long history: thousands of registrations, re-authentications and deletions over
/// years, in a pool of 64 offsets. The property holds and every branch is taken:
/// exhaustion, and reuse of addresses whose quarantine ended.
#[test]
fn r17_long_history_in_a_small_pool_exhausts_and_reuses() {
    let mut ops = Vec::new();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..6000 {
        // xorshift: a deterministic stream, no OS randomness.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ops.push(match x % 10 {
            0..=5 => Op::Register(x / 10 % NODE_KEYS),
            6..=8 => Op::Delete(usize::try_from(x / 10 % 1000).expect("small")),
            _ => Op::Advance(i64::try_from(x / 10 % (20 * DAY as u64)).expect("small") + 1),
        });
    }
    let tally = run(Some(64), &ops);
    assert!(tally.registered > 1000, "{tally:?}");
    assert!(tally.reauthenticated > 100, "{tally:?}");
    assert!(tally.deleted > 500, "{tally:?}");
    assert!(tally.exhausted > 0, "{tally:?}");
    assert!(tally.reused > 100, "{tally:?}");
}

/// A long history in the full pool: never exhausted; addresses whose quarantine ended are
/// handed out again before fresh ones.
#[test]
fn r17_long_history_in_the_full_pool_never_runs_out() {
    let mut ops = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ops.push(match x % 10 {
            0..=6 => Op::Register(x / 10 % NODE_KEYS),
            7..=8 => Op::Delete(usize::try_from(x / 10 % 1000).expect("small")),
            _ => Op::Advance(i64::try_from(x / 10 % DAY as u64).expect("small") + 1),
        });
    }
    let tally = run(None, &ops);
    assert!(tally.registered > 500, "{tally:?}");
    assert!(tally.reused > 0, "{tally:?}");
    assert_eq!(tally.exhausted, 0);
}

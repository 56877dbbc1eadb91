//! The rules whose point is the log serializing decisions (R01, R16, R17), and that a refusal writes
//! nothing, through the real `Log<State>` with the domain's `decide`. They live beside the log
//! so that the domain crate links no storage; the given/when/then support is the domain's.

mod domain_log;
#[path = "../../domain/tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::thread;

use authkeys_domain::addresses::{in_ipv4_range, in_ipv6_range};
use authkeys_domain::{Command, Rejection, State};
use authkeys_events::{
    EventType, KeyUsed, NodeAddresses, NodeReauthenticated, NodeRegistered, Role,
};
use authkeys_log::{AppendError, Committed, Log};
use domain_log::*;
use support::*;

use EventType as E;

/// A log in a temp dir on a test clock, holding the bootstrapped tailnet.
fn bootstrapped_log() -> (tempfile::TempDir, TestClock, Log<State>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = TestClock::new();
    let log = open_log(dir.path(), &clock);
    append(&log, create_tailnet(TAILNET, "example.com", OWNER)).expect("bootstrap");
    (dir, clock, log)
}

/// Eight registrars at once, registrar `i` (1 to 8) sending `register(i)`: their results.
fn eight_at_once(
    log: &Log<State>,
    register: impl Fn(u64) -> Command + Sync,
) -> Vec<Result<Committed, AppendError<Rejection>>> {
    thread::scope(|s| {
        let handles: Vec<_> = (1..=8u64)
            .map(|i| {
                let (log, register) = (log.clone(), &register);
                s.spawn(move || append(&log, register(i)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    })
}

#[test]
fn r01_one_off_key_registers_one_node_under_contention() {
    // Eight registrars present the same one-off key with eight node keys at once through the
    // real log: exactly one is accepted (NodeRegistered + KeyUsed{uses: 1}), seven get
    // InvalidKey, and the log holds exactly one KeyUsed for the key.
    let (_dir, _clock, log) = bootstrapped_log();
    append(&log, admin(OWNER, generate("kOne", &KeyOpts::one_off()))).expect("generate");

    let results = eight_at_once(&log, |i| register("kOne", i, &format!("n{i}")));
    let accepted: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(accepted.len(), 1, "{results:?}");
    let events: Vec<_> = accepted[0]
        .envelopes
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(types(&events), [E::NodeRegistered, E::KeyUsed]);
    assert_eq!(one::<KeyUsed>(&events).uses, 1);
    for r in &results {
        match r {
            Ok(_) => {}
            Err(AppendError::Rejected(rej)) => assert_eq!(rej, &Rejection::InvalidKey),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let stored = log
        .read(authkeys_events::Seq::FIRST, usize::MAX)
        .expect("read");
    let used = stored
        .iter()
        .map(|s| s.envelope().expect("decodes"))
        .filter(|e| e.event_type() == E::KeyUsed)
        .count();
    assert_eq!(used, 1);
    log.close();
}

#[test]
fn r16_same_node_key_is_one_node_under_contention() {
    // Eight registrars present the same node key with a reusable key at once through the real
    // log: one NodeRegistered, seven NodeReauthenticated, all of the same node.
    let (_dir, _clock, log) = bootstrapped_log();
    append(&log, admin(OWNER, generate("kA", &KeyOpts::reusable()))).expect("generate");

    let results: Vec<_> = eight_at_once(&log, |i| register("kA", 1, &format!("n{i}")))
        .into_iter()
        .map(|r| r.expect("accepted"))
        .collect();
    let events: Vec<_> = results
        .iter()
        .flat_map(|c| c.envelopes.iter().map(|e| e.event.clone()))
        .collect();
    let registered = all::<NodeRegistered>(&events);
    assert_eq!(registered.len(), 1);
    let node = registered[0].node_id.clone();
    let reauth = all::<NodeReauthenticated>(&events);
    assert_eq!(reauth.len(), 7);
    assert!(reauth.iter().all(|r| r.node_id == node));
    log.close();
}

#[test]
fn rejections_write_nothing_to_the_log() {
    // Every kind of refusal (Forbidden, NotFound, Conflict, InvalidKey) comes back from the real
    // log as AppendError::Rejected and leaves the head where it was (SPEC: "Nothing is written
    // for any of these"; R08's "nothing is written").
    let (_dir, clock, log) = bootstrapped_log();
    append(&log, admin(OWNER, add_user("uMember", Role::Member))).expect("add user");
    append(
        &log,
        admin(OWNER, generate("kA", &KeyOpts::one_off().expiry_secs(60))),
    )
    .expect("generate");
    let head = log.head();
    clock.advance_ms(61_000);
    let refused = [
        (
            admin("uMember", generate("kB", &KeyOpts::one_off())),
            "forbidden",
        ),
        (admin(OWNER, revoke("kNope")), "not_found"),
        (admin(OWNER, change_role(OWNER, Role::Member)), "conflict"),
        (
            admin(OWNER, generate("kA", &KeyOpts::one_off())),
            "conflict",
        ),
        (register("kA", 1, "n1"), "invalid_key"),
        (register("kNope", 1, "n1"), "invalid_key"),
    ];
    for (cmd, code) in refused {
        match append(&log, cmd) {
            Err(AppendError::Rejected(r)) => assert_eq!(r.code(), code),
            other => panic!("expected a {code} rejection, got {other:?}"),
        }
        assert_eq!(log.head(), head);
    }
    log.close();
}

#[test]
fn r17_concurrent_registrations_get_unique_addresses() {
    // Eight registrars register 40 new nodes each at once through the real log (the writer
    // batches them): all 320 are accepted, with 320 distinct IPv4 and IPv6 addresses in the
    // tailnet's ranges; re-authenticating all of them at once changes none; and the state the
    // log folded from its own file holds the same addresses.
    let (dir, _clock, log) = bootstrapped_log();
    append(&log, admin(OWNER, generate("kA", &KeyOpts::reusable()))).expect("generate");

    let register_all = |first_node: u64| -> Vec<Committed> {
        thread::scope(|s| {
            let handles: Vec<_> = (0..8u64)
                .map(|r| {
                    let log = log.clone();
                    s.spawn(move || {
                        (0..40u64)
                            .map(|i| {
                                let nk = r * 40 + i;
                                append(&log, register("kA", nk, &format!("n{}", first_node + nk)))
                                    .expect("accepted")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("no panic"))
                .collect()
        })
    };
    let events: Vec<_> = register_all(0)
        .iter()
        .flat_map(|c| c.envelopes.iter().map(|e| e.event.clone()))
        .collect();
    let registered = all::<NodeRegistered>(&events);
    assert_eq!(registered.len(), 320);
    let addresses: Vec<NodeAddresses> = registered
        .iter()
        .map(|r| r.addresses.expect("a new node gets addresses"))
        .collect();
    let v4: HashSet<_> = addresses.iter().map(|a| a.ipv4).collect();
    let v6: HashSet<_> = addresses.iter().map(|a| a.ipv6).collect();
    assert_eq!(v4.len(), 320, "IPv4 addresses are unique");
    assert_eq!(v6.len(), 320, "IPv6 addresses are unique");
    assert!(
        addresses
            .iter()
            .all(|a| in_ipv4_range(a.ipv4) && in_ipv6_range(a.ipv6))
    );
    let by_node: HashMap<_, _> = registered
        .iter()
        .map(|r| (r.node_id.clone(), r.addresses))
        .collect();

    // Re-authentication of every node at once: no new node, no new address.
    let again: Vec<_> = register_all(1000)
        .iter()
        .flat_map(|c| c.envelopes.iter().map(|e| e.event.clone()))
        .collect();
    assert!(all::<NodeRegistered>(&again).is_empty());
    assert_eq!(all::<NodeReauthenticated>(&again).len(), 320);
    log.close();

    // Reopened, the log folds its file into the same addresses.
    let clock = TestClock::new();
    let log = open_log(dir.path(), &clock);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let folded = runtime
        .block_on(log.query(|s: &State| {
            s.tailnets[&t1()]
                .nodes
                .iter()
                .map(|(id, n)| (id.clone(), n.addresses))
                .collect::<HashMap<_, _>>()
        }))
        .expect("query");
    assert_eq!(folded, by_node);
    log.close();
}

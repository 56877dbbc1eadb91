//! `audit verify` against 1,000 tampered copies of a closed log.
//!
//! The log is written through the real log writer and the real `decide` (the seeded fixture
//! workload), closed (so a signed checkpoint covers its head), verified once untouched, and the
//! auditor's state saved. Then each mutation takes the stored rows, changes them as someone with
//! write access to the file could (and, for some, with the real signing key), writes them into
//! a fresh redb file and runs the file verifier with the pinned key and the saved state. Every
//! mutation must be rejected with the first bad seq that the rule for its kind predicts; the
//! untouched rows written the same way must pass.

use std::path::Path;

use authkeys_audit::fixtures::build_log;
use authkeys_audit::source::{verify_file, verify_file_with};
use authkeys_audit::{AuditState, Verdict};
use authkeys_events::lock::{LockPrivateKey, node_statement, trusted_keys_statement};
use authkeys_events::{
    Actor, ActorType, Checkpoint, Envelope, Event, Hash, KeyGenerated, KeyId, KeyUsed, LogId,
    NodeId, NodeReauthenticated, Seq, Tags, TailnetSettingsChanged, UserId,
};
use authkeys_events::{NodeSigned, TrustedLockKeysChanged};
use authkeys_log::store::event_id;
use authkeys_log::{LogReader, fixtures::write_raw_log};
use ed25519_dalek::{SigningKey, VerifyingKey};

type Rows = Vec<(u64, Vec<u8>)>;

struct Original {
    log_id: LogId,
    events: Rows,
    checkpoints: Rows,
    key: VerifyingKey,
    signing: SigningKey,
    state: AuditState,
}

fn verify(path: &Path, o: &Original, state: Option<&AuditState>) -> Verdict {
    let verdict = verify_file(path, &o.key, state, &mut |_, _| {}).expect("the file can be read");
    // The same verdict in line (no decoding threads) and with batches so small that the
    // tampered seq and its neighbours fall on batch boundaries.
    for (workers, batch_rows) in [(0, 1), (2, 3)] {
        let again = verify_file_with(path, &o.key, state, &mut |_, _| {}, workers, batch_rows)
            .expect("the file can be read");
        assert_eq!(
            again, verdict,
            "{workers} decoders, {batch_rows} rows a batch"
        );
    }
    verdict
}

fn write(path: &Path, o: &Original, events: &Rows, checkpoints: &Rows) {
    write_raw_log(
        path,
        &[("log_id", o.log_id.0.to_vec())],
        events,
        checkpoints,
    )
    .expect("write the tampered file");
}

fn split(row: &[u8]) -> (Hash, &[u8]) {
    let (h, body) = row.split_first_chunk::<32>().expect("a stored row");
    (Hash(*h), body)
}

fn envelope(row: &[u8]) -> Envelope {
    let (hash, body) = split(row);
    Envelope::decode_body(body, hash).expect("an untouched row decodes")
}

fn encode(env: &Envelope) -> Vec<u8> {
    let mut row = env.hash.0.to_vec();
    row.extend_from_slice(&env.encode_body());
    row
}

/// Re-links `env` at `seq` after `prev`, as a forger who knows the format does.
fn relink(mut env: Envelope, log_id: &LogId, seq: u64, prev: Hash) -> Envelope {
    env.seq = Seq::new(seq).expect("nonzero");
    env.prev_hash = prev;
    env.id = event_id(log_id, env.seq);
    env.hash = env.compute_hash();
    env
}

/// Re-chains every row from index `from` (0-based) on, renumbering them from `from + 1`.
fn rechain(o: &Original, events: &mut Rows, from: usize) {
    for i in from..events.len() {
        let prev = if i == 0 {
            Hash::ZERO
        } else {
            split(&events[i - 1].1).0
        };
        let seq = i as u64 + 1;
        let env = relink(envelope(&events[i].1), &o.log_id, seq, prev);
        events[i] = (seq, encode(&env));
    }
}

/// Re-signs every checkpoint at or after `from` over the (rewritten) chain, with `key`.
fn resign(o: &Original, events: &Rows, checkpoints: &mut Rows, from: u64, key: &SigningKey) {
    for (at, bytes) in checkpoints.iter_mut() {
        if *at >= from {
            let hash = split(&events[*at as usize - 1].1).0;
            let seq = Seq::new(*at).expect("nonzero");
            *bytes = Checkpoint::sign(key, o.log_id, seq, hash)
                .to_bytes()
                .to_vec();
        }
    }
}

/// A forged event at `seq` after `prev`, with the time of the event before.
fn forged(o: &Original, events: &Rows, seq: u64, actor: Actor, event: Event) -> Envelope {
    let before = envelope(&events[seq as usize - 2].1);
    let env = Envelope {
        seq: Seq::new(seq).expect("nonzero"),
        id: event_id(&o.log_id, Seq::new(seq).expect("nonzero")),
        stream: event.stream(&before.tailnet),
        event,
        tailnet: before.tailnet.clone(),
        stream_version: 1,
        time: before.time,
        actor,
        command_id: before.command_id.clone(),
        prev_hash: before.hash,
        hash: Hash::ZERO,
    };
    relink(env, &o.log_id, seq, before.hash)
}

fn owner() -> Actor {
    Actor {
        actor_type: ActorType::User,
        id: "u0".into(),
        login_name: None,
    }
}

fn first_checkpoint_at_or_after(o: &Original, k: u64) -> u64 {
    o.state
        .checkpoints
        .iter()
        .map(|a| a.seq)
        .chain([o.state.head.seq])
        .filter(|s| *s >= k)
        .min()
        .expect("the closed log's last checkpoint covers its head")
}

fn seqs_where(o: &Original, pred: impl Fn(&Envelope) -> bool) -> Vec<u64> {
    o.events
        .iter()
        .filter(|(_, row)| pred(&envelope(row)))
        .map(|(k, _)| *k)
        .collect()
}

const KINDS: u64 = 11;

/// Applies mutation `kind` (with randomness from `rng`) and returns the rows and the seq the
/// verifier must name.
fn mutate(o: &Original, kind: u64, rng: &mut fastrand::Rng) -> (Rows, Rows, u64, &'static str) {
    let mut events = o.events.clone();
    let mut checkpoints = o.checkpoints.clone();
    let len = events.len() as u64;
    match kind {
        0 => {
            let k = rng.u64(1..=len);
            let row = &mut events[k as usize - 1].1;
            let byte = rng.usize(..row.len());
            row[byte] ^= 1 << rng.u8(..8);
            (events, checkpoints, k, "bit flip in an event")
        }
        1 => {
            let n = rng.u64(0..len);
            events.truncate(n as usize);
            if rng.bool() {
                checkpoints.retain(|(at, _)| *at <= n);
            }
            (events, checkpoints, n + 1, "truncation")
        }
        2 => {
            let k = rng.u64(1..=len);
            events.remove(k as usize - 1);
            (events, checkpoints, k, "dropped event")
        }
        3 => {
            let k = rng.u64(1..=len);
            let copy = events[k as usize - 1].1.clone();
            events.insert(k as usize, (k + 1, copy));
            for (i, row) in events.iter_mut().enumerate() {
                row.0 = i as u64 + 1;
            }
            (events, checkpoints, k + 1, "duplicated event")
        }
        4 => {
            let k = rng.u64(1..len);
            let (a, b) = (k as usize - 1, k as usize);
            let tmp = events[a].1.clone();
            events[a].1 = events[b].1.clone();
            events[b].1 = tmp;
            (events, checkpoints, k, "reordered events")
        }
        5 | 6 => {
            // A well-formed event the owner could have caused, linked to the one before; 5
            // leaves the rest as it was, 6 re-chains the rest (but cannot re-sign). The owner
            // exists from seq 2 on (an earlier insert is also refused, by the role check).
            let k = rng.u64(3..=len);
            let env = forged(
                o,
                &events,
                k,
                owner(),
                TailnetSettingsChanged {
                    devices_approval_on: Some(rng.bool()),
                    devices_key_duration_days: None,
                    tailnet_lock_on: None,
                    kept: Default::default(),
                }
                .into(),
            );
            events.insert(k as usize - 1, (k, encode(&env)));
            for (i, row) in events.iter_mut().enumerate() {
                row.0 = i as u64 + 1;
            }
            if kind == 5 {
                // Detected at the next event, unless a checkpoint vouches for seq k itself.
                let expected = if first_checkpoint_at_or_after(o, k) == k {
                    k
                } else {
                    k + 1
                };
                (events, checkpoints, expected, "inserted event")
            } else {
                rechain(o, &mut events, k as usize);
                let expected = first_checkpoint_at_or_after(o, k);
                (
                    events,
                    checkpoints,
                    expected,
                    "inserted and re-chained event",
                )
            }
        }
        7 => {
            let a = rng.usize(..checkpoints.len() - 1);
            let b = rng.usize(a + 1..checkpoints.len());
            let tmp = checkpoints[a].1.clone();
            checkpoints[a].1 = checkpoints[b].1.clone();
            checkpoints[b].1 = tmp;
            let at = checkpoints[a].0;
            (events, checkpoints, at, "swapped checkpoints")
        }
        8 => {
            let i = rng.usize(..checkpoints.len());
            let at = checkpoints[i].0;
            if rng.bool() {
                let byte = rng.usize(..checkpoints[i].1.len());
                checkpoints[i].1[byte] ^= 1 << rng.u8(..8);
            } else {
                // Signed by someone else's key, over the right hash.
                let other = SigningKey::from_bytes(&[rng.u8(..); 32]);
                let hash = split(&events[at as usize - 1].1).0;
                let cp = Checkpoint::sign(&other, o.log_id, Seq::new(at).expect("nonzero"), hash);
                checkpoints[i].1 = cp.to_bytes().to_vec();
            }
            (events, checkpoints, at, "forged checkpoint")
        }
        9 => {
            // Rewritten and re-signed with the real key: only the auditor's state can tell.
            let k = rng.u64(1..=len);
            let mut env = envelope(&events[k as usize - 1].1);
            env.command_id =
                authkeys_events::CommandId::parse(format!("c-rewritten-{k}")).expect("valid");
            events[k as usize - 1].1 = encode(&env);
            rechain(o, &mut events, k as usize - 1);
            resign(o, &events, &mut checkpoints, k, &o.signing);
            let expected = first_checkpoint_at_or_after(o, k);
            (events, checkpoints, expected, "rewritten and re-signed")
        }
        _ => {
            // A domain rule broken by a well-formed, re-chained, re-signed event.
            let revoked = seqs_where(o, |e| matches!(e.event, Event::KeyRevoked(_)));
            let variant = match rng.u8(..6) {
                1 if revoked.is_empty() => 2,
                v => v,
            };
            let (k, env, what) = match variant {
                0 => {
                    let spent =
                        seqs_where(o, |e| matches!(&e.event, Event::KeyUsed(u) if u.uses == 1));
                    let used_at = spent[rng.usize(..spent.len())];
                    let Event::KeyUsed(used) = envelope(&events[used_at as usize - 1].1).event
                    else {
                        unreachable!("filtered");
                    };
                    let k = rng.u64(used_at + 1..=len);
                    // A reusable key's second use is fine; make the key one-off by choosing one.
                    let one_off = !key_is_reusable(o, &used.key_id);
                    let event = KeyUsed {
                        uses: if one_off { 2 } else { 1 },
                        ..used
                    };
                    (
                        k,
                        forged(o, &events, k, registrar(), event.into()),
                        "domain: a key's extra use",
                    )
                }
                1 => {
                    let at = revoked[rng.usize(..revoked.len())];
                    let Event::KeyRevoked(r) = envelope(&events[at as usize - 1].1).event else {
                        unreachable!("filtered");
                    };
                    let k = rng.u64(at + 1..=len);
                    let event = NodeReauthenticated {
                        node_id: NodeId::parse("nForged").expect("valid"),
                        auth_key_id: r.key_id,
                        hostname: authkeys_events::Hostname::parse("forged").expect("valid"),
                        user_id: UserId::parse("u0").expect("valid"),
                        tags: Tags::default(),
                        key_expiry_disabled: false,
                        expires: None,
                    };
                    (
                        k,
                        forged(o, &events, k, registrar(), event.into()),
                        "domain: registration after revoke",
                    )
                }
                4 => {
                    // R04: a forged NodeSigned, its signature by a key the tailnet never
                    // trusted (a valid ed25519 signature over the node's real statement).
                    let nodes = seqs_where(o, |e| matches!(e.event, Event::NodeRegistered(_)));
                    let at = nodes[rng.usize(..nodes.len())];
                    let env = envelope(&events[at as usize - 1].1);
                    let Event::NodeRegistered(r) = &env.event else {
                        unreachable!("filtered");
                    };
                    let k = rng.u64(at + 1..=len);
                    let key = LockPrivateKey::from_seed([rng.u8(..); 32]);
                    let event = NodeSigned {
                        node_id: r.node_id.clone(),
                        node_key: r.node_key.clone(),
                        key_id: None,
                        lock_key: key.public(),
                        signature: key.sign(&node_statement(&env.tailnet, &r.node_key)),
                    };
                    (
                        k,
                        forged(o, &events, k, owner(), event.into()),
                        "domain: a forged node signature",
                    )
                }
                5 => {
                    // R04: the trusted lock keys replaced, signed by a key never trusted.
                    let k = rng.u64(7..=len);
                    let before = envelope(&events[k as usize - 2].1);
                    let key = LockPrivateKey::from_seed([rng.u8(..); 32]);
                    let keys = vec![key.public()];
                    let event = TrustedLockKeysChanged {
                        signature: key.sign(&trusted_keys_statement(&before.tailnet, 0, &keys)),
                        trusted_keys: keys,
                        generation: 0,
                        signer: key.public(),
                    };
                    (
                        k,
                        forged(o, &events, k, owner(), event.into()),
                        "domain: trusted lock keys changed by an untrusted key",
                    )
                }
                3 => {
                    // A registration with a key after its expiry (the fixture's 5-second keys).
                    // (Never revoked ones: a revoked key is refused as revoked first.)
                    let revoked_keys: Vec<KeyId> = revoked
                        .iter()
                        .filter_map(|at| match envelope(&events[*at as usize - 1].1).event {
                            Event::KeyRevoked(r) => Some(r.key_id),
                            _ => None,
                        })
                        .collect();
                    let short = seqs_where(o, |e| {
                        matches!(&e.event, Event::KeyGenerated(g)
                            if g.expiry_seconds.get() == 5 && !revoked_keys.contains(&g.key_id))
                    });
                    let (g, after) = short
                        .iter()
                        .cycle()
                        .skip(rng.usize(..short.len()))
                        .take(short.len())
                        .find_map(|at| {
                            let Event::KeyGenerated(g) =
                                envelope(&events[*at as usize - 1].1).event
                            else {
                                unreachable!("filtered");
                            };
                            let after: Vec<u64> = (*at + 2..=len)
                                .filter(|k| envelope(&events[*k as usize - 2].1).time >= g.expires)
                                .collect();
                            (!after.is_empty()).then_some((g, after))
                        })
                        .expect("a short-lived key expires before the log ends");
                    let k = after[rng.usize(..after.len())];
                    let event = KeyUsed {
                        key_id: g.key_id,
                        node_id: NodeId::parse("nLate").expect("valid"),
                        node_key: authkeys_events::NodeKey::parse(format!(
                            "nodekey:{}",
                            "ab".repeat(32)
                        ))
                        .expect("valid"),
                        uses: 1,
                    };
                    (
                        k,
                        forged(o, &events, k, registrar(), event.into()),
                        "domain: registration after expiry",
                    )
                }
                _ => {
                    let k = rng.u64(7..=len);
                    let auditor = Actor {
                        actor_type: ActorType::User,
                        id: "u4".into(),
                        login_name: None,
                    };
                    let event = KeyGenerated {
                        key_id: KeyId::parse("kForged").expect("valid"),
                        user_id: UserId::parse("u4").expect("valid"),
                        description: authkeys_events::Description::parse("x").expect("valid"),
                        reusable: true,
                        ephemeral: false,
                        preauthorized: true,
                        tags: Tags::default(),
                        expiry_seconds: authkeys_events::ExpirySeconds::MAX,
                        expires: authkeys_events::Timestamp::from_unix_ms(4_000_000_000_000)
                            .expect("in range"),
                        secret_hash: Hash([1; 32]),
                    };
                    (
                        k,
                        forged(o, &events, k, auditor, event.into()),
                        "domain: an auditor generates a key",
                    )
                }
            };
            events.insert(k as usize - 1, (k, encode(&env)));
            rechain(o, &mut events, k as usize);
            for (i, row) in events.iter_mut().enumerate() {
                row.0 = i as u64 + 1;
            }
            resign(o, &events, &mut checkpoints, k, &o.signing);
            (events, checkpoints, k, what)
        }
    }
}

fn key_is_reusable(o: &Original, key: &KeyId) -> bool {
    o.events.iter().any(|(_, row)| {
        matches!(&envelope(row).event, Event::KeyGenerated(g) if g.key_id == *key && g.reusable)
    })
}

fn registrar() -> Actor {
    Actor {
        actor_type: ActorType::Registrar,
        id: "forger".into(),
        login_name: None,
    }
}

fn load(dir: &Path) -> Original {
    let built = build_log(dir, 500, 42, 16);
    let reader = LogReader::open(&dir.join("log.redb")).expect("open");
    let snap = reader.snapshot().expect("snapshot");
    let log_id = snap.log_id().expect("read").expect("a log id");
    let checkpoints = snap.checkpoint_rows().expect("checkpoints");
    let mut events = Vec::new();
    snap.for_each_event(1, |k, row| {
        events.push((k, row.to_vec()));
        std::ops::ControlFlow::Continue(())
    })
    .expect("events");
    let secret = authkeys_log::keys::load_or_create_key(&dir.join("signing.key"), false)
        .expect("the signing key");
    let signing = SigningKey::from_bytes(&secret);
    assert_eq!(signing.verifying_key(), built.key);
    let summary = verify_file(&dir.join("log.redb"), &built.key, None, &mut |_, _| {})
        .expect("readable")
        .expect("the untouched log verifies");
    assert_eq!(summary.events, built.events);
    assert_eq!(summary.last_checkpoint.map(|a| a.seq), Some(built.events));
    Original {
        log_id,
        events,
        checkpoints,
        key: built.key,
        signing,
        state: summary.state,
    }
}

#[test]
fn verify_rejects_1000_mutations_naming_the_first_bad_seq() {
    // Proves: every kind of tampering the issue lists is rejected, at the seq its rule predicts;
    // the untouched rows pass (so the rejections are not the raw writer's doing); a rewrite
    // re-signed with the real key passes without the auditor's state and fails with it.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = load(dir.path());
    assert!(o.events.len() > 150, "{} events", o.events.len());
    assert!(
        o.checkpoints.len() > 8,
        "{} checkpoints",
        o.checkpoints.len()
    );
    // The tampered copies are scratch: on tmpfs where there is one, so that a thousand file
    // creations cost no fsyncs (which a busy disk makes slow).
    let work = match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm),
        _ => tempfile::tempdir(),
    }
    .expect("tempdir");

    let untouched = work.path().join("untouched.redb");
    write(&untouched, &o, &o.events, &o.checkpoints);
    let summary = verify(&untouched, &o, Some(&o.state)).expect("untouched rows verify");
    assert_eq!(summary.state, o.state);

    let mut resigned_passed_without_state = 0;
    let mut counts = [0u32; KINDS as usize];
    for i in 0..1000u64 {
        let kind = i % KINDS;
        let mut rng = fastrand::Rng::with_seed(i);
        let (events, checkpoints, expected, what) = mutate(&o, kind, &mut rng);
        let path = work.path().join(format!("m{i}.redb"));
        write(&path, &o, &events, &checkpoints);
        match verify(&path, &o, Some(&o.state)) {
            Ok(_) => panic!("mutation {i} ({what}) was not detected"),
            Err(p) => {
                assert_eq!(
                    p.seq, expected,
                    "mutation {i} ({what}): expected first bad seq {expected}, got {p}"
                );
                // Without the state (whose anchors also flag a re-signed log), the domain rule
                // alone names the same seq, and says what it is.
                let says = match what {
                    "domain: registration after revoke" => Some("revoked"),
                    "domain: registration after expiry" => Some("expired"),
                    "domain: an auditor generates a key" => Some("may not manage auth keys"),
                    "domain: a key's extra use" => Some("key"),
                    "domain: a forged node signature" => Some("did not trust then (R04)"),
                    "domain: trusted lock keys changed by an untrusted key" => {
                        Some("did not trust then (R04)")
                    }
                    _ => None,
                };
                if let Some(says) = says {
                    let alone = verify(&path, &o, None).expect_err("a broken domain rule");
                    assert!(
                        alone.seq == expected && alone.what.contains(says),
                        "mutation {i} ({what}) without state: {alone}"
                    );
                }
            }
        }
        if kind == 9 && verify(&path, &o, None).is_ok() {
            resigned_passed_without_state += 1;
        }
        counts[kind as usize] += 1;
        std::fs::remove_file(&path).expect("remove");
    }
    assert!(counts.iter().all(|c| *c >= 90), "{counts:?}");
    assert!(
        resigned_passed_without_state > 80,
        "a re-signed rewrite should pass the file alone: {resigned_passed_without_state}"
    );
}

#[test]
fn state_of_another_log_and_wrong_key_are_rejected() {
    // Proves that a state file of another log is refused at seq 0 and that a key other than the
    // pinned one fails at the first checkpoint.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = load(dir.path());
    let path = dir.path().join("log.redb");
    let mut other = o.state.clone();
    other.log_id = LogId([9; 16]);
    let p = verify(&path, &o, Some(&other)).expect_err("another log's state");
    assert_eq!(p.seq, 0, "{p}");
    let wrong = SigningKey::from_bytes(&[3; 32]).verifying_key();
    let p = verify_file(&path, &wrong, None, &mut |_, _| {})
        .expect("readable")
        .expect_err("wrong key");
    assert_eq!(p.seq, o.checkpoints[0].0, "{p}");
}

//! The borrowing decode against the owned one (the reference): on every event of the fixture
//! logs it reads what the owned decode reads, and on thousands of mutated bodies it never
//! accepts what the owned decode refuses, nor reads a different value.

use authkeys_audit::borrowed::{self, EnvelopeRef};
use authkeys_audit::fixtures::build_log;
use authkeys_events::{
    Actor, ActorType, Envelope, Event, EventId, EventType, Hash, LoginName, NodeAddresses, Seq,
    TailnetId, Timestamp,
};
use authkeys_log::LogReader;

/// The owned and borrowed decodes of `body` agree: whatever the borrowed one accepts, the owned
/// one accepts, with the same view. Answers whether the borrowed one took it.
fn agree(body: &[u8]) -> bool {
    let owned = Envelope::decode_body(body, Hash::ZERO);
    let Some(fast) = borrowed::decode_body(body) else {
        return false;
    };
    let view = fast.view(body).expect("a decoded body views");
    let owned = owned.unwrap_or_else(|e| {
        panic!(
            "the borrowed decode took a body the owned one refuses ({e}): {}",
            String::from_utf8_lossy(body)
        )
    });
    assert_eq!(
        view,
        EnvelopeRef::from_owned(&owned),
        "{}",
        String::from_utf8_lossy(body)
    );
    true
}

/// The stored bodies of the audit fixture log (users, roles, registrars, tailnet lock, …).
fn audit_fixture_bodies() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    build_log(dir.path(), 800, 7, 64);
    let reader = LogReader::open(&dir.path().join("log.redb")).expect("open");
    let mut out = Vec::new();
    reader
        .snapshot()
        .expect("snapshot")
        .for_each_event(1, |_, row| {
            out.push(row[32..].to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .expect("read");
    out
}

/// Bodies of the projections' fixture mix (the benchmark's log), encoded as the log does.
fn bench_mix_bodies() -> Vec<Vec<u8>> {
    let tailnet = TailnetId::parse("Tbench").expect("valid");
    let mut out = Vec::new();
    let mut seq = 0u64;
    for step in (0..1).chain(8..200) {
        for event in authkeys_projections::fixtures::step(step) {
            seq += 1;
            let env = Envelope {
                seq: Seq::new(seq).expect("nonzero"),
                id: EventId::parse(format!("e{seq:032x}")).expect("valid"),
                stream: event.stream(&tailnet),
                event,
                tailnet: tailnet.clone(),
                stream_version: seq,
                time: Timestamp::from_unix_ms(1_796_000_000_000 + seq as i64).expect("in range"),
                actor: if seq.is_multiple_of(3) {
                    Actor {
                        actor_type: ActorType::User,
                        id: "uAdmin".into(),
                        login_name: Some(LoginName::parse("admin@example.com").expect("valid")),
                    }
                } else {
                    Actor::system("fixtures")
                },
                command_id: authkeys_events::CommandId::parse(format!("c{step}")).expect("valid"),
                prev_hash: Hash([seq as u8; 32]),
                hash: Hash::ZERO,
            };
            out.push(env.encode_body());
        }
    }
    out
}

#[test]
fn borrowed_decode_reads_what_the_owned_decode_reads_on_the_fixture_logs() {
    // Proves: on every event of both fixture logs the borrowed decode either gives up or reads
    // exactly the owned decode's view; and it takes the bulk of them (so the verifier's fast
    // path is what these logs exercise).
    let audit = audit_fixture_bodies();
    let taken = audit.iter().filter(|b| agree(b)).count();
    assert!(audit.len() > 250, "{} events", audit.len());
    assert!(
        taken * 10 >= audit.len() * 6,
        "the borrowed decode took {taken} of {}",
        audit.len()
    );
    let mix = bench_mix_bodies();
    let taken = mix.iter().filter(|b| agree(b)).count();
    // The mix has one TailnetCreated, which is left to the owned decode.
    assert_eq!(taken, mix.len() - 1, "the benchmark's mix");
}

#[test]
fn borrowed_decode_never_accepts_what_the_owned_decode_refuses() {
    // Proves: over random byte edits of real bodies (a byte changed, dropped, inserted or two
    // swapped) and targeted edits (escapes, whitespace, another field order, bad ids, numbers
    // and times), whatever the borrowed decode accepts the owned one accepts with the same view.
    let mut bodies = bench_mix_bodies();
    bodies.extend(audit_fixture_bodies().into_iter().step_by(3));
    let mut rng = fastrand::Rng::with_seed(18);
    // Bytes worth trying: JSON syntax, digits, hex, id letters, and bytes outside ASCII.
    let alphabet = b"{}[]\":,\\ 0123456789abcdefABCDEFknutexz-_.:/\x00\x1f\x7f\xc3\xa9\xff";
    let mut accepted_mutants = 0;
    for _ in 0..40_000 {
        let mut b = bodies[rng.usize(..bodies.len())].clone();
        for _ in 0..rng.usize(1..=2) {
            let i = rng.usize(..b.len());
            let byte = alphabet[rng.usize(..alphabet.len())];
            match rng.u8(..4) {
                0 => b[i] = byte,
                1 => {
                    b.remove(i);
                }
                2 => b.insert(i, byte),
                _ => {
                    let j = rng.usize(..b.len());
                    b.swap(i, j);
                }
            }
        }
        if agree(&b) {
            accepted_mutants += 1;
        }
    }
    // Some edits keep a body valid (another digit in a hash or id): those must agree too.
    assert!(accepted_mutants > 0);

    let body = String::from_utf8(bodies[3].clone()).expect("utf8");
    let edits: Vec<String> = vec![
        body.replacen("\"id\":\"e", "\"id\":\"\\u0065", 1),
        body.replacen(",\"tailnet\"", " ,\"tailnet\"", 1),
        body.replacen("{\"seq\":", "{ \"seq\":", 1),
        format!("{body} "),
        format!("{body}x"),
        body.replacen("\"seq\":", "\"seq\":0", 1),
        body.replacen("\"seq\":", "\"seq\":-", 1),
        body.replacen("\"version\":1", "\"version\":1.0", 1),
        body.replacen("\"version\":1", "\"version\":01", 1),
        body.replacen("\"version\":1", "\"version\":2", 1),
        body.replacen(
            "\"streamVersion\":",
            "\"streamVersion\":99999999999999999999",
            1,
        ),
        body.replacen("T", "Z", 1),
        body.replacen(".00", ".0", 1),
        body.replacen("\"type\":\"system\"", "\"type\":\"System\"", 1),
        body.replacen(",\"prevHash\"", ",\"hash\":null,\"prevHash\"", 1),
    ];
    for edit in edits {
        agree(edit.as_bytes());
    }
}

#[test]
fn node_addresses_and_lock_errors_read_as_the_owned_decode_reads_them() {
    // Proves: R17's addresses (present, absent) and a tailnet lock error read alike both ways.
    let tailnet = TailnetId::parse("T1").expect("valid");
    for (addresses, lock_error) in [
        (None, None),
        (
            Some(NodeAddresses {
                ipv4: "100.64.0.7".parse().expect("ip"),
                ipv6: "fd7a:115c:a1e0::6440:7".parse().expect("ip"),
            }),
            Some("not signed".to_owned()),
        ),
    ] {
        let mut events = authkeys_projections::fixtures::step(10);
        let Some(Event::NodeRegistered(mut e)) = events.pop() else {
            panic!("step 10 registers a node");
        };
        e.addresses = addresses;
        e.tailnet_lock_error = lock_error;
        let event = Event::from(e);
        let env = Envelope {
            seq: Seq::new(5).expect("nonzero"),
            id: EventId::parse(format!("e{:032x}", 5)).expect("valid"),
            stream: event.stream(&tailnet),
            event,
            tailnet: tailnet.clone(),
            stream_version: 1,
            time: Timestamp::from_unix_ms(1_796_000_000_000).expect("in range"),
            actor: Actor::system("t"),
            command_id: authkeys_events::CommandId::parse("c1").expect("valid"),
            prev_hash: Hash([3; 32]),
            hash: Hash::ZERO,
        };
        let body = env.encode_body();
        assert!(agree(&body), "{}", String::from_utf8_lossy(&body));
        let view = borrowed::decode_body(&body)
            .and_then(|d| d.view(&body).map(|v| v.ty))
            .expect("decodes");
        assert_eq!(view, EventType::NodeRegistered);
        let text = String::from_utf8(body).expect("utf8");
        agree(text.replace("100.64.0.7", "100.64.0.300").as_bytes());
        agree(text.replace("fd7a:115c", "fd7a:115g").as_bytes());
        agree(
            text.replace("\"ipv4\"", "\"ipv6\"")
                .replacen("\"ipv6\"", "\"ipv4\"", 1)
                .as_bytes(),
        );
    }
}

//! Sample events of realistic size, shared by the log's tests, its benchmark and the torture tool.
//!
//! Nothing here is used by the service itself.

use authkeys_events::{
    Actor, CommandId, Description, Event, ExpirySeconds, Hash, KeyGenerated, KeyId, KeyUsed,
    NodeId, NodeKey, Tags, TailnetId, Timestamp, UserId,
};

use crate::{Aggregate, Append, Decision, Expected, Proposed};

/// The tailnet the fixtures use.
pub fn tailnet() -> TailnetId {
    TailnetId::parse("Tfixture").expect("valid tailnet id")
}

/// A `KeyGenerated` like one the command service writes, for key number `n`.
pub fn key_generated(n: u64) -> Event {
    Event::KeyGenerated(KeyGenerated {
        key_id: key_id(n),
        user_id: UserId::parse("u7Qx2cV9aLm3").expect("valid user id"),
        description: Description::parse("ci runner pool west-2").expect("valid description"),
        reusable: n.is_multiple_of(2),
        ephemeral: n.is_multiple_of(3),
        preauthorized: true,
        tags: Tags::parse(&["tag:ci", "tag:runner"]).expect("valid tags"),
        expiry_seconds: ExpirySeconds::MAX,
        expires: Timestamp::from_unix_ms(1_803_600_000_000).expect("in range"),
        secret_hash: Hash(*blake3::hash(&n.to_le_bytes()).as_bytes()),
    })
}

/// A `KeyUsed` of key `n`.
pub fn key_used(n: u64) -> Event {
    Event::KeyUsed(KeyUsed {
        key_id: key_id(n),
        node_id: NodeId::parse(format!("n{n}")).expect("valid node id"),
        node_key: NodeKey::parse(format!(
            "nodekey:{}",
            blake3::hash(&n.to_be_bytes()).to_hex()
        ))
        .expect("valid node key"),
        uses: 1,
    })
}

/// Key number `n`'s id.
pub fn key_id(n: u64) -> KeyId {
    KeyId::parse(format!("kFx{n:012}")).expect("valid key id")
}

/// A command id.
pub fn command_id(s: &str) -> CommandId {
    CommandId::parse(s).expect("valid command id")
}

/// A command that appends `events` unconditionally (no rules), with `Expected::Any`.
pub fn append_command<S: Aggregate>(id: &str, events: Vec<Event>) -> Append<S> {
    let fingerprint = *blake3::hash(id.as_bytes()).as_bytes();
    Append {
        scope: tailnet().to_string(),
        command_id: command_id(id),
        actor: Actor::system("fixtures"),
        fingerprint,
        answer: None,
        decide: Box::new(move |_, _| {
            Ok(Decision {
                tailnet: tailnet(),
                events: events
                    .into_iter()
                    .map(|event| Proposed {
                        event,
                        expected: Expected::Any,
                    })
                    .collect(),
            })
        }),
    }
}

/// An aggregate that keeps snapshots, for the tests of snapshots and the torture tool: how many
/// events it folded and a running blake3 of their hashes, so that a state restored from a
/// snapshot and folded on equals the fold of every event only if both saw the same events in the
/// same order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events folded.
    pub events: u64,
    /// blake3 over the previous value and each event's hash, from 32 zero bytes.
    pub digest: [u8; 32],
}

impl Aggregate for Tally {
    type Rejection = String;

    fn apply(&mut self, env: &authkeys_events::Envelope) {
        self.events += 1;
        let mut h = blake3::Hasher::new();
        h.update(&self.digest);
        h.update(&env.hash.0);
        self.digest = *h.finalize().as_bytes();
    }

    const SNAPSHOT_FORMAT: Option<&'static str> = Some("fixtures/tally/1");

    fn snapshot(&self) -> Vec<u8> {
        let mut out = self.events.to_le_bytes().to_vec();
        out.extend_from_slice(&self.digest);
        out
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 40 {
            return Err(format!("a tally is 40 bytes, not {}", bytes.len()));
        }
        Ok(Self {
            events: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            digest: bytes[8..].try_into().expect("32 bytes"),
        })
    }
}

/// Writes a log file with exactly these rows, checking nothing: how tests make a log that an
/// attacker with write access to the file could have made (rows dropped, reordered, rewritten,
/// checkpoints forged). `meta` holds `(name, value)` rows such as `("log_id", 16 bytes)`;
/// `events` and `checkpoints` hold `(key, value)` rows in the stored encodings.
pub fn write_raw_log(
    path: &std::path::Path,
    meta: &[(&str, Vec<u8>)],
    events: &[(u64, Vec<u8>)],
    checkpoints: &[(u64, Vec<u8>)],
) -> Result<(), crate::LogError> {
    use crate::store::{CHECKPOINTS, EVENTS, META};
    let storage = |what: &'static str| move |e: redb::Error| crate::LogError::storage(what, e);
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .create(path)
        .map_err(|e| storage("create raw log")(e.into()))?;
    let txn = db
        .begin_write()
        .map_err(|e| storage("begin write")(e.into()))?;
    {
        let mut t = txn
            .open_table(META)
            .map_err(|e| storage("open meta")(e.into()))?;
        for (k, v) in meta {
            t.insert(*k, v.as_slice())
                .map_err(|e| storage("write meta")(e.into()))?;
        }
        let mut t = txn
            .open_table(EVENTS)
            .map_err(|e| storage("open events")(e.into()))?;
        for (k, v) in events {
            t.insert(*k, v.as_slice())
                .map_err(|e| storage("write events")(e.into()))?;
        }
        let mut t = txn
            .open_table(CHECKPOINTS)
            .map_err(|e| storage("open checkpoints")(e.into()))?;
        for (k, v) in checkpoints {
            t.insert(*k, v.as_slice())
                .map_err(|e| storage("write checkpoints")(e.into()))?;
        }
    }
    txn.commit().map_err(|e| storage("commit")(e.into()))
}

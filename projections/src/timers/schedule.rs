//! The expiry timers' schedule: what falls due when, kept in its own redb file with its
//! checkpoint, so it survives restarts and never has to be held in memory whole.
//!
//! Tables:
//! - `due`: deadline (ms, order-preserving big-endian) ‖ thing → the [`TimerRequest`] to send,
//!   JSON. Iterating it from the start yields what falls due first.
//! - `things`: thing → its `due` key, so a later event can replace or cancel the entry. A thing
//!   is `key/<keyId>` (key expiry), `node/<nodeId>` (node-key expiry) or `idle/<nodeId>`
//!   (ephemeral inactivity); ids are unique across tailnets.
//! - `one_off`: key ids of one-off keys with an entry (their first use cancels it).
//! - `ephemeral`: node ids of live ephemeral nodes (a disconnect starts their clock).
//! - `meta`: format version and the checkpoint (seq + hash of the last applied event).
//!
//! Rules ([`Schedule::apply`], one transaction per batch with the checkpoint):
//! - `KeyGenerated` schedules the key's `expires`; `KeyRevoked`, `KeyExpired` and the use of a
//!   one-off key (`KeyUsed`) cancel it.
//! - `NodeRegistered`, `NodeReauthenticated` and `NodeKeyExpirySet` (re)schedule the node's
//!   `expires`, or cancel when expiry is disabled (`expires: null`: tagged nodes, R05/R14/R15);
//!   `NodeExpired` and `NodeDeleted` cancel. The deadline is the node's own `expires` as its
//!   events recorded it, so a change of `devicesKeyDurationDays` takes effect at the node's next
//!   (re-)authentication, as the machines view shows it.
//! - `NodeDisconnected` of an ephemeral node schedules its removal at the event's time + the
//!   inactivity timeout; `NodeConnected` and `NodeDeleted` cancel it (R02).
//!
//! Each entry's request id is `timer-<kind>-<id>-<seq of the event that scheduled it>-<deadline
//! ms>`, so a deadline fired twice appends once, and a new deadline for the same thing (or the
//! same disconnect under another inactivity timeout) is a new command.
//! Firing ([`Schedule::due`] then [`Schedule::finish`]) never touches the checkpoint: an entry
//! removed after its command was answered can only come back by replaying the events before it,
//! and its command is idempotent.

use std::path::Path;
use std::time::Duration;

use authkeys_domain::Due;
use authkeys_events::{CommandId, Envelope, Event, TailnetId, Timestamp};
use authkeys_protocol::TimerRequest;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::store::{DurablePace, META, Position, StoreError, init_meta, read_checkpoint, redb_err};

const DUE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("due");
const THINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("things");
const ONE_OFF: TableDefinition<&str, ()> = TableDefinition::new("one_off");
const EPHEMERAL: TableDefinition<&str, ()> = TableDefinition::new("ephemeral");
const NAME: &str = "timers";

/// redb's page cache for the schedule: memory stays bounded whatever the schedule holds.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// An entry that has fallen due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    /// Its key in the `due` table (deadline ‖ thing).
    pub due_key: Vec<u8>,
    /// When it fell due.
    pub deadline: Timestamp,
    /// The command to send.
    pub request: TimerRequest,
}

/// What became of a fired entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (the event was appended, or the thing was no longer due as scheduled): remove.
    Done,
    /// Refused as not yet due (clocks differ): try again at this time.
    RetryAt(Timestamp),
}

/// How many entries of each kind, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Entries in `due`.
    pub due: u64,
    /// Ephemeral nodes known.
    pub ephemeral_nodes: u64,
}

/// The schedule file. See the module docs.
#[derive(Debug)]
pub struct Schedule {
    db: Database,
    inactivity: Duration,
    pace: DurablePace,
}

/// `ms` as big-endian bytes that sort like the numbers.
fn deadline_bytes(t: Timestamp) -> [u8; 8] {
    (t.unix_ms().cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

fn deadline_of(key: &[u8]) -> Result<Timestamp, StoreError> {
    let head: [u8; 8] = key
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("a due key is shorter than 8 bytes".into()))?;
    let ms = (u64::from_be_bytes(head) ^ (1 << 63)).cast_signed();
    Timestamp::from_unix_ms(ms).map_err(|e| StoreError::Corrupt(format!("a due key: {e}")))
}

fn due_key(deadline: Timestamp, thing: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + thing.len());
    k.extend_from_slice(&deadline_bytes(deadline));
    k.extend_from_slice(thing.as_bytes());
    k
}

impl Schedule {
    /// Opens or creates the schedule at `path`; ephemeral nodes are removed `inactivity` after
    /// their disconnect.
    pub fn open(path: &Path, inactivity: Duration) -> Result<Self, StoreError> {
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Busy),
            Err(e) => return Err(redb_err(e)),
        };
        let txn = db.begin_write().map_err(redb_err)?;
        {
            init_meta(&txn, NAME)?;
            open_tables(&txn)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(Self {
            db,
            inactivity,
            pace: DurablePace::default(),
        })
    }

    /// The last applied event.
    pub fn checkpoint(&self) -> Result<Position, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        read_checkpoint(&txn.open_table(META).map_err(redb_err)?)
    }

    /// Applies `batch` (in seq order, right after the checkpoint) and records `tip`, in one
    /// transaction (durable at the [`DurablePace`]).
    pub fn apply(&self, batch: &[Envelope], tip: Position) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(self.pace.next()).map_err(redb_err)?;
        for env in batch {
            self.apply_one(&txn, env)?;
        }
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", tip.encode().as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }

    fn apply_one(&self, txn: &WriteTransaction, env: &Envelope) -> Result<(), StoreError> {
        let tailnet = &env.tailnet;
        let seq = env.seq.get();
        match &env.event {
            Event::KeyGenerated(e) => {
                let thing = format!("key/{}", e.key_id);
                let due = Due::KeyExpiry {
                    key_id: e.key_id.clone(),
                    expires: e.expires,
                };
                schedule(txn, &thing, tailnet, &due, seq)?;
                if !e.reusable {
                    let mut one_off = txn.open_table(ONE_OFF).map_err(redb_err)?;
                    one_off.insert(e.key_id.as_str(), ()).map_err(redb_err)?;
                }
            }
            Event::KeyUsed(e) => {
                let one_off = {
                    let mut t = txn.open_table(ONE_OFF).map_err(redb_err)?;
                    t.remove(e.key_id.as_str()).map_err(redb_err)?.is_some()
                };
                if one_off {
                    cancel(txn, &format!("key/{}", e.key_id))?;
                }
            }
            Event::KeyRevoked(e) => cancel_key(txn, e.key_id.as_str())?,
            Event::KeyExpired(e) => cancel_key(txn, e.key_id.as_str())?,
            Event::NodeRegistered(e) => {
                node_expiry(txn, tailnet, &e.node_id, e.expires, seq)?;
                if e.ephemeral {
                    let mut t = txn.open_table(EPHEMERAL).map_err(redb_err)?;
                    t.insert(e.node_id.as_str(), ()).map_err(redb_err)?;
                }
            }
            Event::NodeReauthenticated(e) => node_expiry(txn, tailnet, &e.node_id, e.expires, seq)?,
            Event::NodeKeyExpirySet(e) => node_expiry(txn, tailnet, &e.node_id, e.expires, seq)?,
            Event::NodeExpired(e) => cancel(txn, &format!("node/{}", e.node_id))?,
            Event::NodeDisconnected(e) => {
                let ephemeral = {
                    let t = txn.open_table(EPHEMERAL).map_err(redb_err)?;
                    t.get(e.node_id.as_str()).map_err(redb_err)?.is_some()
                };
                if ephemeral {
                    let inactivity = i64::try_from(self.inactivity.as_millis()).unwrap_or(i64::MAX);
                    let due_at =
                        Timestamp::from_unix_ms(env.time.unix_ms().saturating_add(inactivity))
                            .unwrap_or(env.time);
                    let due = Due::EphemeralInactivity {
                        node_id: e.node_id.clone(),
                        disconnected_at: env.time,
                        due: due_at,
                    };
                    schedule(txn, &format!("idle/{}", e.node_id), tailnet, &due, seq)?;
                }
            }
            Event::NodeConnected(e) => cancel(txn, &format!("idle/{}", e.node_id))?,
            Event::NodeDeleted(e) => {
                cancel(txn, &format!("node/{}", e.node_id))?;
                cancel(txn, &format!("idle/{}", e.node_id))?;
                let mut t = txn.open_table(EPHEMERAL).map_err(redb_err)?;
                t.remove(e.node_id.as_str()).map_err(redb_err)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Up to `limit` entries due at `now`, earliest first, and the deadline of the first entry
    /// not yet due (when the caller should look again).
    pub fn due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<DueEntry>, Option<Timestamp>), StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(DUE).map_err(redb_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(redb_err)? {
            let (k, v) = row.map_err(redb_err)?;
            let deadline = deadline_of(k.value())?;
            if deadline > now {
                return Ok((out, Some(deadline)));
            }
            if out.len() == limit {
                return Ok((out, Some(deadline)));
            }
            let request: TimerRequest = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(format!("a due entry: {e}")))?;
            out.push(DueEntry {
                due_key: k.value().to_vec(),
                deadline,
                request,
            });
        }
        Ok((out, None))
    }

    /// Records what became of fired entries, in one transaction. An entry that an event
    /// replaced or cancelled meanwhile (even by one with the same deadline) is left as the event
    /// made it.
    pub fn finish(&self, outcomes: &[(DueEntry, Outcome)]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(redb_err)?;
        {
            let mut due = txn.open_table(DUE).map_err(redb_err)?;
            let mut things = txn.open_table(THINGS).map_err(redb_err)?;
            for (entry, outcome) in outcomes {
                let key = &entry.due_key;
                let stored = due
                    .get(key.as_slice())
                    .map_err(redb_err)?
                    .map(|v| v.value().to_vec());
                let Some(value) = stored else {
                    continue;
                };
                let same = serde_json::from_slice::<TimerRequest>(&value)
                    .is_ok_and(|r| r.request_id == entry.request.request_id);
                if !same {
                    continue;
                }
                due.remove(key.as_slice()).map_err(redb_err)?;
                let thing = std::str::from_utf8(key.get(8..).unwrap_or_default())
                    .map_err(|_| StoreError::Corrupt("a due key's thing is not UTF-8".into()))?
                    .to_owned();
                match outcome {
                    Outcome::Done => {
                        things.remove(thing.as_str()).map_err(redb_err)?;
                    }
                    Outcome::RetryAt(at) => {
                        let new_key = due_key(*at, &thing);
                        due.insert(new_key.as_slice(), value.as_slice())
                            .map_err(redb_err)?;
                        things
                            .insert(thing.as_str(), new_key.as_slice())
                            .map_err(redb_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(redb_err)
    }

    /// Forgets everything (before a rebuild from seq 1), in one transaction.
    pub fn reset(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(redb_err)?;
        txn.delete_table(DUE).map_err(redb_err)?;
        txn.delete_table(THINGS).map_err(redb_err)?;
        txn.delete_table(ONE_OFF).map_err(redb_err)?;
        txn.delete_table(EPHEMERAL).map_err(redb_err)?;
        open_tables(&txn)?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", Position::START.encode().as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)
    }

    /// How many entries are scheduled and ephemeral nodes known.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let due = txn.open_table(DUE).map_err(redb_err)?;
        let eph = txn.open_table(EPHEMERAL).map_err(redb_err)?;
        Ok(Counts {
            due: due.len().map_err(redb_err)?,
            ephemeral_nodes: eph.len().map_err(redb_err)?,
        })
    }
}

fn open_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DUE).map_err(redb_err)?;
    txn.open_table(THINGS).map_err(redb_err)?;
    txn.open_table(ONE_OFF).map_err(redb_err)?;
    txn.open_table(EPHEMERAL).map_err(redb_err)?;
    Ok(())
}

/// Schedules `due` for `thing`, replacing what it had.
fn schedule(
    txn: &WriteTransaction,
    thing: &str,
    tailnet: &TailnetId,
    due: &Due,
    seq: u64,
) -> Result<(), StoreError> {
    cancel(txn, thing)?;
    let (kind, id) = match due {
        Due::KeyExpiry { key_id, .. } => ("key", key_id.as_str()),
        Due::NodeKeyExpiry { node_id, .. } => ("node", node_id.as_str()),
        Due::EphemeralInactivity { node_id, .. } => ("idle", node_id.as_str()),
    };
    let request_id = CommandId::parse(format!("timer-{kind}-{id}-{seq}-{}", due.at().unix_ms()))
        .map_err(|e| StoreError::Corrupt(format!("timer request id: {e:?}")))?;
    let request = TimerRequest::new(&request_id, tailnet, due);
    let value = serde_json::to_vec(&request).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let key = due_key(due.at(), thing);
    txn.open_table(DUE)
        .map_err(redb_err)?
        .insert(key.as_slice(), value.as_slice())
        .map_err(redb_err)?;
    txn.open_table(THINGS)
        .map_err(redb_err)?
        .insert(thing, key.as_slice())
        .map_err(redb_err)?;
    Ok(())
}

/// Removes `thing`'s entry, if any.
fn cancel(txn: &WriteTransaction, thing: &str) -> Result<(), StoreError> {
    let old = txn
        .open_table(THINGS)
        .map_err(redb_err)?
        .remove(thing)
        .map_err(redb_err)?
        .map(|v| v.value().to_vec());
    if let Some(key) = old {
        txn.open_table(DUE)
            .map_err(redb_err)?
            .remove(key.as_slice())
            .map_err(redb_err)?;
    }
    Ok(())
}

fn cancel_key(txn: &WriteTransaction, key_id: &str) -> Result<(), StoreError> {
    cancel(txn, &format!("key/{key_id}"))?;
    txn.open_table(ONE_OFF)
        .map_err(redb_err)?
        .remove(key_id)
        .map_err(redb_err)?;
    Ok(())
}

fn node_expiry(
    txn: &WriteTransaction,
    tailnet: &TailnetId,
    node_id: &authkeys_events::NodeId,
    expires: Option<Timestamp>,
    seq: u64,
) -> Result<(), StoreError> {
    let thing = format!("node/{node_id}");
    match expires {
        Some(expires) => {
            let due = Due::NodeKeyExpiry {
                node_id: node_id.clone(),
                expires,
            };
            schedule(txn, &thing, tailnet, &due, seq)
        }
        None => cancel(txn, &thing),
    }
}

#[cfg(test)]
mod tests {
    //! Every schedule rule, with the clock injected: `due(now)` is asked at chosen instants.
    use authkeys_events::{
        DeleteReason, Description, ExpirySeconds, Hash, Hostname, KeyExpired, KeyGenerated, KeyId,
        KeyRevoked, KeyUsed, NodeConnected, NodeDeleted, NodeDisconnected, NodeExpired, NodeId,
        NodeKey, NodeKeyExpirySet, NodeReauthenticated, NodeRegistered, Tags, UserId,
    };
    use authkeys_protocol::TimerDue;

    use super::*;
    use crate::views::test_support::{Given, at};

    const INACTIVITY: Duration = Duration::from_secs(30);

    struct Fixture {
        _dir: tempfile::TempDir,
        schedule: Schedule,
        given: Given,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let schedule = Schedule::open(&dir.path().join(FILE), INACTIVITY).expect("opens");
            Self {
                _dir: dir,
                schedule,
                given: Given::new("T1"),
            }
        }

        /// Applies `event` as the next envelope, at `secs`.
        fn at(&mut self, secs: i64, event: impl Into<Event>) -> &mut Self {
            let env = self.given.env(secs, event);
            let tip = Position {
                seq: env.seq.get(),
                hash: Hash::ZERO,
            };
            self.schedule.apply(&[env], tip).expect("applies");
            self
        }

        /// Everything due at `secs`, as (thing kind, id, deadline secs).
        fn due_at(&self, secs: i64) -> Vec<(String, String, i64)> {
            let (entries, _) = self.schedule.due(at(secs), 1000).expect("reads");
            entries
                .into_iter()
                .map(|e| {
                    let (kind, id) = match e.request.due {
                        TimerDue::KeyExpiry { key_id, .. } => ("key", key_id),
                        TimerDue::NodeKeyExpiry { node_id, .. } => ("node", node_id),
                        TimerDue::EphemeralInactivity { node_id, .. } => ("idle", node_id),
                    };
                    let secs = (e.deadline.unix_ms() - at(0).unix_ms()) / 1000;
                    (kind.to_owned(), id, secs)
                })
                .collect()
        }

        fn next_after(&self, secs: i64) -> Option<i64> {
            let (_, next) = self.schedule.due(at(secs), 1000).expect("reads");
            next.map(|t| (t.unix_ms() - at(0).unix_ms()) / 1000)
        }
    }

    const FILE: &str = "timers.redb";

    fn e(kind: &str, id: &str, secs: i64) -> (String, String, i64) {
        (kind.to_owned(), id.to_owned(), secs)
    }

    fn kid(s: &str) -> KeyId {
        KeyId::parse(s).expect("valid")
    }

    fn nid(s: &str) -> NodeId {
        NodeId::parse(s).expect("valid")
    }

    fn generated(key: &str, reusable: bool, expires_secs: i64) -> KeyGenerated {
        KeyGenerated {
            key_id: kid(key),
            user_id: UserId::parse("uAlice").expect("valid"),
            description: Description::parse("ci").expect("valid"),
            reusable,
            ephemeral: false,
            preauthorized: false,
            tags: Tags::default(),
            expiry_seconds: ExpirySeconds::new(60).expect("valid"),
            expires: at(expires_secs),
            secret_hash: Hash([7; 32]),
        }
    }

    fn used(key: &str, node: &str) -> KeyUsed {
        KeyUsed {
            key_id: kid(key),
            node_id: nid(node),
            node_key: NodeKey::parse(format!("nodekey:{}", "ab".repeat(32))).expect("valid"),
            uses: 1,
        }
    }

    fn registered(node: &str, ephemeral: bool, expires: Option<i64>) -> NodeRegistered {
        NodeRegistered {
            node_id: nid(node),
            node_key: NodeKey::parse(format!("nodekey:{}", "cd".repeat(32))).expect("valid"),
            hostname: Hostname::parse("web").expect("valid"),
            name: "web".into(),
            os: "linux".into(),
            user_id: UserId::parse("uAlice").expect("valid"),
            tags: Tags::default(),
            auth_key_id: kid("kA"),
            ephemeral,
            authorized: true,
            key_expiry_disabled: expires.is_none(),
            expires: expires.map(at),
            tailnet_lock_error: None,
            addresses: None,
        }
    }

    fn reauthenticated(node: &str, expires: Option<i64>) -> NodeReauthenticated {
        NodeReauthenticated {
            node_id: nid(node),
            auth_key_id: kid("kA"),
            hostname: Hostname::parse("web").expect("valid"),
            user_id: UserId::parse("uAlice").expect("valid"),
            tags: Tags::default(),
            key_expiry_disabled: expires.is_none(),
            expires: expires.map(at),
        }
    }

    fn expiry_set(node: &str, expires: Option<i64>) -> NodeKeyExpirySet {
        NodeKeyExpirySet {
            node_id: nid(node),
            key_expiry_disabled: expires.is_none(),
            expires: expires.map(at),
        }
    }

    #[test]
    fn key_expiry_is_scheduled_at_expires_and_nothing_is_due_before() {
        let mut f = Fixture::new();
        f.at(0, generated("kA", true, 60));
        assert!(f.due_at(59).is_empty());
        assert_eq!(f.next_after(59), Some(60));
        assert_eq!(f.due_at(60), vec![e("key", "kA", 60)]);
        // A reusable key's uses do not cancel it.
        f.at(10, used("kA", "n1"));
        assert_eq!(f.due_at(61), vec![e("key", "kA", 60)]);
        // KeyExpired (the timer's own event coming back) cancels it.
        f.at(
            61,
            KeyExpired {
                key_id: kid("kA"),
                expired_at: at(60),
            },
        );
        assert!(f.due_at(1000).is_empty());
        assert_eq!(f.next_after(1000), None);
    }

    #[test]
    fn key_expiry_is_cancelled_by_revoke_and_by_the_use_of_a_one_off_key() {
        let mut f = Fixture::new();
        f.at(0, generated("kR", true, 60))
            .at(0, generated("kO", false, 70))
            .at(0, generated("kK", false, 80));
        f.at(5, KeyRevoked { key_id: kid("kR") });
        f.at(6, used("kO", "n1"));
        assert_eq!(f.due_at(100), vec![e("key", "kK", 80)]);
    }

    #[test]
    fn node_expiry_follows_registration_reauthentication_and_expiry_settings() {
        let mut f = Fixture::new();
        f.at(0, registered("n1", false, Some(1000)))
            .at(0, registered("nTagged", false, None));
        assert_eq!(f.due_at(5000), vec![e("node", "n1", 1000)]);
        // Re-authentication recomputes it: one entry, at the new time.
        f.at(100, reauthenticated("n1", Some(1100)));
        assert!(f.due_at(1099).is_empty());
        assert_eq!(f.due_at(5000), vec![e("node", "n1", 1100)]);
        // Disabled: cancelled. Re-enabled: rescheduled at what the event restores.
        f.at(200, expiry_set("n1", None));
        assert!(f.due_at(5000).is_empty());
        f.at(300, expiry_set("n1", Some(1100)));
        assert_eq!(f.due_at(5000), vec![e("node", "n1", 1100)]);
        // Re-authenticating with a tagged key disables it (R15).
        f.at(400, reauthenticated("n1", None));
        assert!(f.due_at(5000).is_empty());
        f.at(500, reauthenticated("n1", Some(2000)));
        // Expired (by an admin or by this timer): cancelled.
        f.at(
            600,
            NodeExpired {
                node_id: nid("n1"),
                expired_at: at(600),
            },
        );
        assert!(f.due_at(5000).is_empty());
        f.at(700, reauthenticated("n1", Some(3000)));
        f.at(
            800,
            NodeDeleted {
                node_id: nid("n1"),
                reason: DeleteReason::Admin,
            },
        );
        assert!(f.due_at(5000).is_empty());
    }

    #[test]
    fn an_ephemeral_node_is_due_for_removal_after_the_inactivity_timeout_unless_it_reconnects() {
        let mut f = Fixture::new();
        f.at(0, registered("nEph", true, None))
            .at(0, registered("nPlain", false, None));
        f.at(
            10,
            NodeDisconnected {
                node_id: nid("nEph"),
            },
        )
        .at(
            10,
            NodeDisconnected {
                node_id: nid("nPlain"),
            },
        );
        assert!(f.due_at(39).is_empty());
        assert_eq!(f.due_at(40), vec![e("idle", "nEph", 40)]);
        let (entries, _) = f.schedule.due(at(40), 10).expect("reads");
        assert!(matches!(
            &entries[0].request.due,
            TimerDue::EphemeralInactivity { disconnected_at, .. } if *disconnected_at == at(10).to_string()
        ));
        // Reconnected in time: cancelled; a later disconnect starts a new clock.
        f.at(
            20,
            NodeConnected {
                node_id: nid("nEph"),
            },
        );
        assert!(f.due_at(1000).is_empty());
        f.at(
            50,
            NodeDisconnected {
                node_id: nid("nEph"),
            },
        );
        assert_eq!(f.due_at(1000), vec![e("idle", "nEph", 80)]);
        f.at(
            60,
            NodeDeleted {
                node_id: nid("nEph"),
                reason: DeleteReason::Admin,
            },
        );
        assert!(f.due_at(1000).is_empty());
        assert_eq!(f.schedule.counts().expect("counts").ephemeral_nodes, 0);
    }

    #[test]
    fn finishing_removes_or_moves_fired_entries_but_never_one_an_event_replaced() {
        let mut f = Fixture::new();
        f.at(0, generated("kA", true, 10))
            .at(0, generated("kB", true, 10))
            .at(0, registered("n1", false, Some(10)))
            .at(0, registered("n2", false, Some(10)));
        let (entries, _) = f.schedule.due(at(10), 10).expect("reads");
        assert_eq!(entries.len(), 4);
        // Meanwhile n1 re-authenticated: its entry moved to 500; and n2's expiry was disabled
        // and re-enabled at the same deadline: the same place, a new request id.
        f.at(9, reauthenticated("n1", Some(500)));
        f.at(9, expiry_set("n2", None))
            .at(9, expiry_set("n2", Some(10)));
        let outcomes: Vec<_> = entries
            .iter()
            .map(|e| match &e.request.due {
                TimerDue::KeyExpiry { key_id, .. } if key_id == "kB" => {
                    (e.clone(), Outcome::RetryAt(at(12)))
                }
                _ => (e.clone(), Outcome::Done),
            })
            .collect();
        f.schedule.finish(&outcomes).expect("finishes");
        assert_eq!(f.due_at(11), vec![e("node", "n2", 10)]);
        assert_eq!(
            f.due_at(1000),
            vec![
                e("node", "n2", 10),
                e("key", "kB", 12),
                e("node", "n1", 500)
            ]
        );
        // The moved entry is still the key's: its revoke cancels it.
        f.at(13, KeyRevoked { key_id: kid("kB") });
        assert_eq!(
            f.due_at(1000),
            vec![e("node", "n2", 10), e("node", "n1", 500)]
        );
    }

    #[test]
    fn the_schedule_and_its_checkpoint_survive_a_reopen_and_reset_clears_both() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        let mut g = Given::new("T1");
        {
            let s = Schedule::open(&path, INACTIVITY).expect("opens");
            let env = g.env(0, generated("kA", true, 60));
            let cp = Position {
                seq: env.seq.get(),
                hash: Hash([9; 32]),
            };
            s.apply(&[env], cp).expect("applies");
            assert!(matches!(
                Schedule::open(&path, INACTIVITY),
                Err(StoreError::Busy)
            ));
        }
        let s = Schedule::open(&path, INACTIVITY).expect("reopens");
        assert_eq!(s.checkpoint().expect("reads").seq, 1);
        assert_eq!(s.due(at(60), 10).expect("reads").0.len(), 1);
        s.reset().expect("resets");
        assert_eq!(s.checkpoint().expect("reads"), Position::START);
        assert_eq!(s.counts().expect("counts"), Counts::default());
    }

    #[test]
    fn request_ids_differ_per_scheduling_event_and_deadline() {
        let mut f = Fixture::new();
        f.at(0, registered("n1", false, Some(100)));
        let first = f.schedule.due(at(100), 1).expect("reads").0[0]
            .request
            .request_id
            .clone();
        f.at(1, expiry_set("n1", None))
            .at(2, expiry_set("n1", Some(100)));
        let second = f.schedule.due(at(100), 1).expect("reads").0[0]
            .request
            .request_id
            .clone();
        assert_ne!(first, second);
        assert!(first.starts_with("timer-node-n1-1-"), "{first}");
    }
}

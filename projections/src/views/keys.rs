//! The keys page view: per (tailnet, user), every auth key with what the API's `Key` object
//! shows (SPEC §5), including revoked, used and expired keys (R12).
//!
//! Rows: `key/<tailnet>/<userId>/<keyId>` → [`KeyRow`]. The user is part of the key so that a
//! user's list is one range scan, and a lookup by another user's id simply finds nothing (R09).
//! An in-memory index `<tailnet>/<keyId>` → user routes `KeyUsed`, `KeyRevoked` and `KeyExpired`,
//! which name only the key; it is rebuilt when rows are loaded.
//!
//! Time: `invalid` and the retention period depend on `now`, which the queries take. Rows are
//! never dropped by time (that would make the rows depend on when events were applied);
//! a key leaves the *answers* once it has been invalid for longer than the retention period.
//!
//! `all=true` (reading of SPEC §5 and R12): Tailscale's `all` adds key types other than auth keys
//! (API keys, OAuth clients). authkeys lists only auth keys, and R12 says invalid keys "stay
//! visible on the keys page" for the retention period. So both forms list the user's valid keys
//! and their invalid keys within the retention period; `all` is accepted and changes nothing.

use std::collections::HashMap;

use authkeys_events::{Envelope, Event, KeyExpired, KeyRevoked, KeyUsed, Timestamp, UserId};
use authkeys_protocol::Key;

use super::{RowChange, RowError, Table, View, key2, unknown_row};

/// R12's default retention period of revoked, used and expired keys.
pub const RETENTION_DAYS_DEFAULT: u32 = 90;

/// One auth key: the command state's own record of it, folded by the same functions, so the
/// page and the command replies cannot disagree.
pub type KeyRow = authkeys_domain::state::Key;

/// The keys page view. See the module docs.
#[derive(Debug, Clone)]
pub struct KeysView {
    keys: Table<KeyRow>,
    /// `<tailnet>/<keyId>` → owner.
    owners: HashMap<String, UserId>,
}

impl Default for KeysView {
    fn default() -> Self {
        Self {
            keys: Table::new("key/"),
            owners: HashMap::new(),
        }
    }
}

impl KeysView {
    /// The user's keys, oldest first by key id, as of `now`: valid ones and those invalid for
    /// less than `retention_days` (R12). Another user's keys never appear (R09).
    pub fn list(
        &self,
        tailnet: &str,
        user_id: &str,
        now: Timestamp,
        retention_days: u32,
    ) -> Vec<Key> {
        let prefix = format!("{tailnet}/{user_id}/");
        self.keys
            .with_prefix(&prefix)
            .filter_map(|(k, row)| {
                let key_id = &k[prefix.len()..];
                visible(row, now, retention_days).then(|| Key::build(key_id, row, now))
            })
            .collect()
    }

    /// The user's key `key_id` as of `now`; `None` when unknown, another user's (R09), or past
    /// its retention period (R12) — the caller cannot tell these apart.
    pub fn get(
        &self,
        tailnet: &str,
        user_id: &str,
        key_id: &str,
        now: Timestamp,
        retention_days: u32,
    ) -> Option<Key> {
        let row = self.keys.get(&format!("{tailnet}/{user_id}/{key_id}"))?;
        visible(row, now, retention_days).then(|| Key::build(key_id, row, now))
    }

    /// How many keys the view holds (all users, all tailnets).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn row_mut(&mut self, tailnet: &str, key_id: &str) -> Option<&mut KeyRow> {
        let owner = self.owners.get(&key2(tailnet, key_id))?;
        let key = format!("{tailnet}/{owner}/{key_id}");
        self.keys.get_mut(&key)
    }
}

fn visible(row: &KeyRow, now: Timestamp, retention_days: u32) -> bool {
    match row.invalid_since(now) {
        None => true,
        Some(since) => now < since.plus_seconds(i64::from(retention_days) * 86_400),
    }
}

impl View for KeysView {
    const NAME: &'static str = "keys";

    fn apply(&mut self, env: &Envelope) {
        let tailnet = env.tailnet.as_str();
        match &env.event {
            Event::KeyGenerated(e) => {
                self.owners
                    .insert(key2(tailnet, e.key_id.as_str()), e.user_id.clone());
                self.keys.insert(
                    format!("{tailnet}/{}/{}", e.user_id, e.key_id),
                    KeyRow::generated(e, env.time),
                );
            }
            Event::KeyUsed(KeyUsed { key_id, .. })
            | Event::KeyRevoked(KeyRevoked { key_id })
            | Event::KeyExpired(KeyExpired { key_id, .. }) => {
                if let Some(k) = self.row_mut(tailnet, key_id.as_str()) {
                    k.apply(&env.event, env.time);
                }
            }
            _ => {}
        }
    }

    fn take_changes(&mut self) -> Vec<RowChange> {
        let mut out = Vec::new();
        self.keys.drain_changes(&mut out);
        out
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        let Some(k) = self.keys.load(key, value)? else {
            return Err(unknown_row(key));
        };
        let mut parts = k.splitn(3, '/');
        let (Some(tailnet), Some(user), Some(key_id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(RowError {
                key: key.to_owned(),
                reason: "a key row's key is <tailnet>/<userId>/<keyId>".to_owned(),
            });
        };
        let user = UserId::parse(user).map_err(|e| RowError {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        self.owners.insert(key2(tailnet, key_id), user);
        Ok(())
    }

    fn for_each_row(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self.keys.for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use authkeys_events::{
        ExpirySeconds, Hash, KeyExpired, KeyGenerated, KeyId, KeyRevoked, KeyUsed, NodeId, NodeKey,
    };

    use super::*;
    use crate::views::test_support::{Given, at, round_trip};
    use authkeys_events::{Description, Tags};

    fn generated(key: &str, user: &str, reusable: bool, expires_secs: i64) -> KeyGenerated {
        KeyGenerated {
            key_id: KeyId::parse(key).expect("valid"),
            user_id: UserId::parse(user).expect("valid"),
            description: Description::parse("ci pool").expect("valid"),
            reusable,
            ephemeral: false,
            preauthorized: true,
            tags: Tags::parse(&["tag:ci"]).expect("valid"),
            expiry_seconds: ExpirySeconds::new(3600).expect("valid"),
            expires: at(expires_secs),
            secret_hash: Hash([7; 32]),
        }
    }

    fn used(key: &str, uses: u64) -> KeyUsed {
        KeyUsed {
            key_id: KeyId::parse(key).expect("valid"),
            node_id: NodeId::parse("n1").expect("valid"),
            node_key: NodeKey::parse(format!("nodekey:{}", "ab".repeat(32))).expect("valid"),
            uses,
        }
    }

    #[test]
    fn keys_follow_their_events_and_reload_from_rows() {
        let mut g = Given::new("T1");
        let mut v = KeysView::default();
        let mut stored = BTreeMap::new();
        v.apply(&g.env(0, generated("kA", "uAlice", false, 3600)));
        v.apply(&g.env(1, generated("kB", "uAlice", true, 3600)));
        v.apply(&g.env(2, generated("kC", "uBob", true, 3600)));
        let mut v = round_trip(&mut v, &mut stored);

        let list = v.list("T1", "uAlice", at(3), 90);
        assert_eq!(
            list.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["kA", "kB"]
        );
        assert!(list.iter().all(|k| !k.invalid && k.revoked.is_none()));
        assert_eq!(list[0].updated, Some(at(0)));
        assert_eq!(
            list[0].capabilities.devices.create.tags,
            Some(vec!["tag:ci".into()])
        );

        // R01: a one-off key is spent by its first use; a reusable one is not.
        v.apply(&g.env(10, used("kA", 1)));
        v.apply(&g.env(11, used("kB", 1)));
        v.apply(&g.env(12, used("kB", 2)));
        let v2 = round_trip(&mut v, &mut stored);
        let a = v2.get("T1", "uAlice", "kA", at(13), 90).expect("listed");
        assert!(a.invalid);
        assert_eq!(
            (a.revoked, a.uses, a.last_used),
            (Some(at(10)), 1, Some(at(10)))
        );
        let b = v2.get("T1", "uAlice", "kB", at(13), 90).expect("listed");
        assert!(!b.invalid);
        assert_eq!(
            (b.uses, b.last_used, b.updated),
            (2, Some(at(12)), Some(at(12)))
        );

        // Revocation (R12: stays listed, invalid, revoked set).
        v.apply(&g.env(
            20,
            KeyRevoked {
                key_id: KeyId::parse("kB").expect("valid"),
            },
        ));
        let b = v.get("T1", "uAlice", "kB", at(21), 90).expect("listed");
        assert_eq!(
            (b.invalid, b.revoked, b.updated),
            (true, Some(at(20)), Some(at(20)))
        );
        round_trip(&mut v, &mut stored);
    }

    #[test]
    fn r09_another_users_key_is_not_found() {
        let mut g = Given::new("T1");
        let mut v = KeysView::default();
        v.apply(&g.env(0, generated("kA", "uAlice", false, 3600)));
        assert!(v.get("T1", "uAlice", "kA", at(1), 90).is_some());
        assert_eq!(v.get("T1", "uBob", "kA", at(1), 90), None);
        assert_eq!(v.get("T1", "uBob", "kZ", at(1), 90), None);
        assert!(v.list("T1", "uBob", at(1), 90).is_empty());
        assert_eq!(
            v.get("T2", "uAlice", "kA", at(1), 90),
            None,
            "other tailnet"
        );
    }

    #[test]
    fn r12_invalid_keys_leave_after_the_retention_period() {
        let mut g = Given::new("T1");
        let mut v = KeysView::default();
        v.apply(&g.env(0, generated("kA", "uAlice", true, 3600)));
        v.apply(&g.env(1, generated("kB", "uAlice", true, 3600)));
        v.apply(&g.env(2, generated("kC", "uAlice", true, 7)));
        v.apply(&g.env(
            5,
            KeyRevoked {
                key_id: KeyId::parse("kA").expect("valid"),
            },
        ));
        // kB expires by time at 3600 s without any event; kC by a KeyExpired event.
        v.apply(&g.env(
            7,
            KeyExpired {
                key_id: KeyId::parse("kC").expect("valid"),
                expired_at: at(7),
            },
        ));
        let day = 86_400;
        let ids = |now| {
            v.list("T1", "uAlice", now, 1)
                .into_iter()
                .map(|k| (k.id, k.invalid))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(at(10)),
            [
                ("kA".into(), true),
                ("kB".into(), false),
                ("kC".into(), true)
            ]
        );
        assert_eq!(
            ids(at(3600)),
            [
                ("kA".into(), true),
                ("kB".into(), true),
                ("kC".into(), true)
            ]
        );
        // kA was revoked at 5 s: gone one day later; kB expired at 3600 s: still there.
        assert_eq!(ids(at(day + 5)), [("kB".into(), true), ("kC".into(), true)]);
        assert_eq!(ids(at(day + 7)), [("kB".into(), true)]);
        assert_eq!(ids(at(day + 3600)), Vec::<(String, bool)>::new());
        assert!(v.get("T1", "uAlice", "kA", at(day + 5), 1).is_none());
        // An expired key's `revoked` is its expiry.
        let c = v
            .get("T1", "uAlice", "kC", at(10), 1)
            .expect("within retention");
        assert_eq!(c.revoked, Some(at(7)));
    }

    #[test]
    fn events_of_unknown_keys_change_nothing() {
        let mut g = Given::new("T1");
        let mut v = KeysView::default();
        let before = v.state_hash();
        v.apply(&g.env(0, used("kNope", 1)));
        v.apply(&g.env(
            1,
            KeyRevoked {
                key_id: KeyId::parse("kNope").expect("valid"),
            },
        ));
        assert!(v.take_changes().is_empty());
        assert_eq!(v.state_hash(), before);
    }

    #[test]
    fn loading_refuses_foreign_rows() {
        let mut v = KeysView::default();
        assert!(v.load_row("device/T1/n1", b"{}").is_err());
        assert!(v.load_row("key/T1/uA/kA", b"not json").is_err());
        assert!(v.load_row("key/T1", b"{}").is_err());
    }
}

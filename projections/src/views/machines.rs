//! The machines view: per tailnet, every live node with every field of the API's `Device`
//! (SPEC §5). Deleted nodes leave it (R02, R11).
//!
//! Rows: `device/<tailnet>/<nodeId>` → [`DeviceRow`], and `user/<tailnet>/<userId>` →
//! [`UserRow`] for the `user` field (a login name), joined at query time so that the order in
//! which a user and their nodes arrive does not matter.

use authkeys_domain::state::node_of;
use authkeys_events::{Envelope, Event, LoginName};
use std::collections::HashMap;
use std::sync::PoisonError;

use authkeys_protocol::{Device, MagicDns, UserDevices};
use serde::{Deserialize, Serialize};

use super::{RowChange, RowError, Table, View, key2, unknown_row};

/// One live node: the command state's own record of it, folded by the same functions, so the
/// view and the command replies cannot disagree.
pub type DeviceRow = authkeys_domain::state::Node;

/// A user's login name, for devices' `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRow {
    /// Login name.
    pub login_name: LoginName,
}

/// The machines view. See the module docs.
#[derive(Debug, Clone)]
pub struct MachinesView {
    devices: Table<DeviceRow>,
    users: Table<UserRow>,
    wire: WireCache,
}

impl Default for MachinesView {
    fn default() -> Self {
        Self {
            devices: Table::new("device/"),
            users: Table::new("user/"),
            wire: WireCache::default(),
        }
    }
}

/// Devices the [`WireCache`] holds at most (about 500 bytes each); past it, it starts over.
pub const WIRE_CACHE_DEVICES_MAX: usize = 50_000;

/// Each device's JSON as `devices.list` answers it, made on first ask and forgotten when its row
/// (or any user's login) changes: building and encoding 10,000 devices was most of what a
/// 10,000-device list cost. Not part of the view's rows or state hash; a clone starts empty.
#[derive(Debug, Default)]
struct WireCache(std::sync::Mutex<WireJson>);

#[derive(Debug, Default)]
struct WireJson {
    /// The suffix the JSON was made with.
    dns: Option<MagicDns>,
    /// `<tailnet>/<nodeId>` → the device's JSON.
    json: HashMap<String, Box<[u8]>>,
}

impl Clone for WireCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl WireCache {
    /// Forgets the device at row key `key` (`<tailnet>/<nodeId>`).
    fn forget(&mut self, key: &str) {
        let cache = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        cache.json.remove(key);
    }

    /// Forgets every device.
    fn clear(&mut self) {
        let cache = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        cache.json.clear();
    }
}

impl MachinesView {
    /// The tailnet's devices, by node id.
    pub fn list(&self, tailnet: &str, dns: &MagicDns) -> Vec<Device> {
        let prefix = format!("{tailnet}/");
        self.devices
            .with_prefix(&prefix)
            .map(|(k, row)| self.to_wire(tailnet, &k[prefix.len()..], row, dns))
            .collect()
    }

    /// Up to `limit` devices of `tailnet` after node id `after`, in node-id order, and the node
    /// id to continue after when more remain.
    pub fn page(
        &self,
        tailnet: &str,
        after: Option<&str>,
        limit: usize,
        dns: &MagicDns,
    ) -> (Vec<Device>, Option<String>) {
        let prefix = format!("{tailnet}/");
        let mut rows = self.devices.with_prefix_after(&prefix, after);
        let devices: Vec<Device> = rows
            .by_ref()
            .take(limit)
            .map(|(k, row)| self.to_wire(tailnet, &k[prefix.len()..], row, dns))
            .collect();
        let next = rows
            .next()
            .and_then(|_| devices.last().map(|d| d.node_id.clone()));
        (devices, next)
    }

    /// [`MachinesView::page`] as JSON: appends the page's devices to `out`, comma-separated (as
    /// in a JSON array), and answers how many and the node id to continue after. The bytes are
    /// those of `serde_json` over the page's `Device`s, kept from one ask to the next.
    pub fn page_json(
        &self,
        tailnet: &str,
        after: Option<&str>,
        limit: usize,
        dns: &MagicDns,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<(usize, Option<String>)> {
        let prefix = format!("{tailnet}/");
        let mut cache = self.wire.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.dns.as_ref() != Some(dns) {
            cache.json.clear();
            cache.dns = Some(dns.clone());
        }
        let mut rows = self.devices.with_prefix_after(&prefix, after);
        let mut n = 0;
        let mut last = None;
        for (k, row) in rows.by_ref().take(limit) {
            if n > 0 {
                out.push(b',');
            }
            match cache.json.get(k) {
                Some(json) => out.extend_from_slice(json),
                None => {
                    let start = out.len();
                    let device = self.to_wire(tailnet, &k[prefix.len()..], row, dns);
                    serde_json::to_writer(&mut *out, &device)?;
                    if cache.json.len() >= WIRE_CACHE_DEVICES_MAX {
                        cache.json.clear();
                    }
                    cache.json.insert(k.to_owned(), out[start..].into());
                }
            }
            n += 1;
            last = Some(k);
        }
        let next = rows
            .next()
            .and_then(|_| last.map(|k| k[prefix.len()..].to_owned()));
        Ok((n, next))
    }

    /// The device `node_id` of `tailnet`.
    pub fn get(&self, tailnet: &str, node_id: &str, dns: &MagicDns) -> Option<Device> {
        let row = self.devices.get(&key2(tailnet, node_id))?;
        Some(self.to_wire(tailnet, node_id, row, dns))
    }

    /// What each user's devices say of them (untagged devices only: tagged ones belong to their
    /// tags), by user id.
    pub fn user_devices(&self, tailnet: &str) -> HashMap<String, UserDevices> {
        let prefix = format!("{tailnet}/");
        let mut out: HashMap<String, UserDevices> = HashMap::new();
        for (_, n) in self.devices.with_prefix(&prefix) {
            if n.tags.is_empty() {
                out.entry(n.user_id.to_string()).or_default().add(n);
            }
        }
        out
    }

    /// How many devices (all tailnets).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// No devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    fn to_wire(&self, tailnet: &str, node_id: &str, n: &DeviceRow, dns: &MagicDns) -> Device {
        let user = self.users.get(&key2(tailnet, n.user_id.as_str()));
        let login = user.map(|u| u.login_name.as_str()).unwrap_or_default();
        Device::build(tailnet, node_id, n, login, dns)
    }

    fn node_mut(&mut self, tailnet: &str, node_id: &str) -> Option<&mut DeviceRow> {
        self.devices.get_mut(&key2(tailnet, node_id))
    }
}

impl View for MachinesView {
    const NAME: &'static str = "machines";

    fn apply(&mut self, env: &Envelope) {
        let t = env.tailnet.as_str();
        let now = env.time;
        // The cached JSON of whatever this event may change goes first (every arm below that
        // changes a row has its case here).
        match &env.event {
            Event::UserAdded(_) | Event::TailnetLockDisabled(_) => self.wire.clear(),
            Event::NodeRegistered(e) => self.wire.forget(&key2(t, e.node_id.as_str())),
            Event::NodeDeleted(e) => self.wire.forget(&key2(t, e.node_id.as_str())),
            event => {
                if let Some(node_id) = node_of(event) {
                    self.wire.forget(&key2(t, node_id.as_str()));
                }
            }
        }
        match &env.event {
            Event::UserAdded(e) => {
                self.users.insert(
                    key2(t, e.user_id.as_str()),
                    UserRow {
                        login_name: e.login_name.clone(),
                    },
                );
            }
            Event::NodeRegistered(e) => {
                self.devices
                    .insert(key2(t, e.node_id.as_str()), DeviceRow::registered(e, now));
            }
            Event::NodeDeleted(e) => {
                self.devices.remove(&key2(t, e.node_id.as_str()));
            }
            Event::TailnetLockDisabled(_) => {
                // R04: every locked-out node of the tailnet is released, as the domain does.
                let prefix = format!("{t}/");
                let locked: Vec<String> = self
                    .devices
                    .with_prefix(&prefix)
                    .filter(|(_, n)| n.tailnet_lock_error.is_some())
                    .map(|(k, _)| k.to_owned())
                    .collect();
                for k in locked {
                    if let Some(n) = self.devices.get_mut(&k) {
                        n.release_lock();
                    }
                }
            }
            event => {
                if let Some(node_id) = node_of(event)
                    && let Some(n) = self.node_mut(t, node_id.as_str())
                {
                    n.apply(event, now);
                }
            }
        }
    }

    fn take_changes(&mut self) -> Vec<RowChange> {
        let mut out = Vec::new();
        self.devices.drain_changes(&mut out);
        self.users.drain_changes(&mut out);
        out
    }

    fn load_row(&mut self, key: &str, value: &[u8]) -> Result<(), RowError> {
        self.wire.clear();
        if self.devices.load(key, value)?.is_some() || self.users.load(key, value)?.is_some() {
            return Ok(());
        }
        Err(unknown_row(key))
    }

    fn for_each_row(&self, f: &mut dyn FnMut(&str, &[u8])) {
        self.devices.for_each(f);
        self.users.for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use authkeys_events::{
        DeleteReason, NodeAuthorized, NodeConnected, NodeDeleted, NodeDisconnected, NodeExpired,
        NodeId, NodeKeyExpirySet, NodeReauthenticated, NodeRegistered, NodeSigned, Role,
        TagsChanged, UserAdded,
    };

    use super::*;
    use crate::views::test_support::{Given, at, round_trip};
    use authkeys_events::{Hostname, KeyId, NodeKey, Tags, UserId};
    use authkeys_protocol::NEVER_EXPIRES;

    fn nid(s: &str) -> NodeId {
        NodeId::parse(s).expect("valid")
    }

    fn registered(node: &str, hex: &str) -> NodeRegistered {
        NodeRegistered {
            node_id: nid(node),
            node_key: NodeKey::parse(format!("nodekey:{}", hex.repeat(32))).expect("valid"),
            hostname: Hostname::parse("web-1").expect("valid"),
            name: format!("{node}-web"),
            os: "linux".into(),
            user_id: UserId::parse("uAlice").expect("valid"),
            tags: Tags::default(),
            auth_key_id: KeyId::parse("kA").expect("valid"),
            ephemeral: true,
            authorized: false,
            key_expiry_disabled: false,
            expires: Some(at(180 * 86_400)),
            tailnet_lock_error: Some("locked out".into()),
            addresses: None,
        }
    }

    #[test]
    fn devices_carry_every_field_through_their_lifecycle() {
        let mut g = Given::new("T1");
        let mut v = MachinesView::default();
        let mut stored = BTreeMap::new();
        v.apply(&g.env(0, registered("n1", "ab")));
        let d = v.get("T1", "n1", &MagicDns::default()).expect("registered");
        assert_eq!(d.user, "", "user not known yet");
        assert_eq!(
            (d.authorized, d.is_ephemeral, d.connected_to_control),
            (false, true, false)
        );
        assert_eq!(d.tailnet_lock_error, "locked out");
        assert_eq!(d.created, at(0));
        assert_eq!(d.auth_key_id, "kA");
        v.apply(&g.env(
            1,
            UserAdded {
                user_id: UserId::parse("uAlice").expect("valid"),
                login_name: LoginName::parse("alice@example.com").expect("valid"),
                role: Role::Admin,
            },
        ));
        v.apply(&g.env(
            2,
            NodeAuthorized {
                node_id: nid("n1"),
                authorized: true,
            },
        ));
        v.apply(&g.env(3, NodeConnected { node_id: nid("n1") }));
        v.apply(
            &g.env(
                4,
                NodeSigned {
                    node_id: nid("n1"),
                    node_key: authkeys_events::NodeKey::parse(format!(
                        "nodekey:{}",
                        "ab".repeat(32)
                    ))
                    .expect("valid"),
                    key_id: None,
                    lock_key: authkeys_events::lock::LockPrivateKey::from_seed([1; 32]).public(),
                    signature: authkeys_events::LockSignature([0; 64]),
                },
            ),
        );
        v.apply(&g.env(
            5,
            TagsChanged {
                node_id: nid("n1"),
                previous_tags: Tags::default(),
                tags: Tags::parse(&["tag:web"]).expect("valid"),
            },
        ));
        let mut v = round_trip(&mut v, &mut stored);
        let d = v.get("T1", "n1", &MagicDns::default()).expect("live");
        assert_eq!(d.user, "alice@example.com");
        assert_eq!(
            (d.authorized, d.connected_to_control, d.last_seen),
            (true, true, None),
            "lastSeen is omitted while connected, as Tailscale does"
        );
        assert_eq!(d.tailnet_lock_error, "");
        assert!(d.tailnet_lock_key.starts_with("tlpub:"), "the signer shows");
        assert_eq!(d.tags, ["tag:web"]);
        assert!(!d.key_expiry_disabled, "R15: tags do not change key expiry");

        v.apply(&g.env(
            6,
            NodeKeyExpirySet {
                node_id: nid("n1"),
                key_expiry_disabled: true,
                expires: None,
            },
        ));
        assert_eq!(
            v.get("T1", "n1", &MagicDns::default())
                .expect("live")
                .expires,
            NEVER_EXPIRES
        );
        v.apply(&g.env(
            7,
            NodeReauthenticated {
                node_id: nid("n1"),
                auth_key_id: KeyId::parse("kB").expect("valid"),
                hostname: Hostname::parse("web-2").expect("valid"),
                user_id: UserId::parse("uAlice").expect("valid"),
                tags: Tags::parse(&["tag:db"]).expect("valid"),
                key_expiry_disabled: false,
                expires: Some(at(1000)),
            },
        ));
        v.apply(&g.env(
            8,
            NodeExpired {
                node_id: nid("n1"),
                expired_at: at(8),
            },
        ));
        v.apply(&g.env(9, NodeDisconnected { node_id: nid("n1") }));
        let d = v.get("T1", "n1", &MagicDns::default()).expect("live");
        assert_eq!(
            (d.hostname.as_str(), d.auth_key_id.as_str()),
            ("web-2", "kB")
        );
        assert_eq!(d.expires, at(8).to_string());
        assert_eq!((d.connected_to_control, d.last_seen), (false, Some(at(9))));
        assert_eq!(
            d.created,
            at(0),
            "re-authentication keeps the creation time"
        );
        round_trip(&mut v, &mut stored);
    }

    /// Events of tailnets T1 and T2 (T2's seqs from 100) and an empty view.
    fn two_tailnets() -> (Given, Given, MachinesView) {
        let mut h = Given::new("T2");
        h.seq = 100;
        (Given::new("T1"), h, MachinesView::default())
    }

    #[test]
    fn deleted_nodes_leave_and_tailnets_stay_apart() {
        let (mut g, mut h, mut v) = two_tailnets();
        let mut stored = BTreeMap::new();
        v.apply(&g.env(0, registered("n1", "ab")));
        v.apply(&g.env(1, registered("n2", "cd")));
        v.apply(&h.env(2, registered("n3", "ef")));
        round_trip(&mut v, &mut stored);
        v.apply(&g.env(
            3,
            NodeDeleted {
                node_id: nid("n1"),
                reason: DeleteReason::Admin,
            },
        ));
        let v = round_trip(&mut v, &mut stored);
        assert_eq!(
            v.list("T1", &MagicDns::default())
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["n2"]
        );
        assert_eq!(v.list("T2", &MagicDns::default()).len(), 1);
        assert_eq!(v.get("T1", "n3", &MagicDns::default()), None);
        assert!(
            stored.keys().all(|k| k != "device/T1/n1"),
            "deletion reached the rows"
        );
    }

    #[test]
    fn pages_cover_every_device_once_in_order() {
        // The devices.list query answers in pages: walking `next` from the first page visits
        // every device of the tailnet exactly once, in node-id order, and no other tailnet's.
        let (mut g, mut h, mut v) = two_tailnets();
        for (i, n) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
            v.apply(&g.env(i as i64, registered(n, &format!("{:02x}", i + 16))));
        }
        v.apply(&h.env(9, registered("n0", "ff")));
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, next) = v.page("T1", after.as_deref(), 2, &MagicDns::default());
            assert!(page.len() <= 2);
            seen.extend(page.into_iter().map(|d| d.node_id));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["n1", "n2", "n3", "n4", "n5"]);
        assert_eq!(
            v.page("T1", None, 5, &MagicDns::default()).1,
            None,
            "an exact fit has no next page"
        );
    }
}

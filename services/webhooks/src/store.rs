//! The webhooks role's own redb file (`webhooks.redb`): what it folded from the events, each
//! endpoint's durable queue (its cursor: an event leaves the queue only once delivered or
//! dropped), the dropped events, and the `nodeKeyExpiringInOneDay` schedule.
//!
//! Tables (keys are text; values JSON unless said):
//! - `meta`: `checkpoint` (seq u64 LE ‖ hash, the last folded event), `order` (u64 LE, the next
//!   queue position), `format`.
//! - `endpoints`: endpoint id → [`EndpointRow`].
//! - `names`: `t/<tailnetId>` → tailnet name, `u/<userId>` → login, `n/<nodeId>` → machine name
//!   (text).
//! - `queue`: `<endpointId>/<order, 20 digits>` → [`Queued`]. Per endpoint, key order is event
//!   order: a batch is the first entries of its range.
//! - `dropped`: the same keys → [`DroppedEvent`], the latest [`StoreLimits::dropped_per_endpoint_max`].
//! - `schedule`: `<due ms, 20 digits>/<nodeId>` → [`Notice`]; `notices`: node id → its
//!   `schedule` key (text), so a later event replaces or cancels it.
//!
//! A batch of events is folded in one durable transaction with the checkpoint: after a crash,
//! the queue holds exactly the messages of the events up to the checkpoint that were not yet
//! delivered, so nothing is lost and nothing is queued twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use authkeys_events::{
    EndpointId, EndpointUrl, Envelope, Event, Hash, NodeId, ProviderType, Timestamp, UserId,
    WebhookType,
};
use authkeys_projections::store::{DurablePace, Position, StoreError};
use authkeys_protocol::webhook::{DroppedEvent, Webhook};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::message::{self, Names, WebhookMessage};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENDPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("endpoints");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const QUEUE: TableDefinition<&str, &[u8]> = TableDefinition::new("queue");
const DROPPED: TableDefinition<&str, &[u8]> = TableDefinition::new("dropped");
const SCHEDULE: TableDefinition<&str, &[u8]> = TableDefinition::new("schedule");
const NOTICES: TableDefinition<&str, &str> = TableDefinition::new("notices");

const FORMAT_VERSION: u32 = 1;
/// redb's page cache: memory stays bounded whatever the queues hold.
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// `nodeKeyExpiringInOneDay` is due this long before the node's `expires`.
pub const NOTICE_BEFORE_MS: i64 = 24 * 60 * 60 * 1000;

fn redb_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Redb(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// The bounds of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Dropped events kept per endpoint (the oldest go first).
    pub dropped_per_endpoint_max: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            dropped_per_endpoint_max: 1_000,
        }
    }
}

/// A live endpoint, as folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    /// Its tailnet's id.
    pub tailnet: String,
    /// Where to POST.
    pub endpoint_url: EndpointUrl,
    /// Tailscale's provider type.
    pub provider_type: ProviderType,
    /// What it receives.
    pub subscriptions: Vec<WebhookType>,
    /// Its creator's login name.
    pub creator_login: String,
    /// Created.
    pub created: Timestamp,
    /// Last changed.
    pub last_modified: Timestamp,
    /// Secret rotations so far.
    pub rotation: u32,
}

impl EndpointRow {
    /// The wire object (no secret), with its delivery status.
    pub fn to_wire(
        &self,
        id: &str,
        queued: u64,
        dropped: u64,
        last_error: Option<String>,
    ) -> Webhook {
        Webhook {
            endpoint_id: id.to_owned(),
            endpoint_url: self.endpoint_url.to_string(),
            provider_type: self.provider_type.as_str().to_owned(),
            creator_login_name: self.creator_login.clone(),
            created: self.created,
            last_modified: self.last_modified,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            secret: None,
            queued_events: queued,
            dropped_events: dropped,
            last_error,
        }
    }
}

/// A message waiting in an endpoint's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The log seq it came from (0: a test or a scheduled notice).
    pub seq: u64,
    /// What is sent.
    pub message: WebhookMessage,
    /// When delivering it first failed (the retry window runs from then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Timestamp>,
    /// Failed attempts.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A scheduled `nodeKeyExpiringInOneDay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// The node's tailnet.
    pub tailnet: String,
    /// The node.
    pub node_id: NodeId,
    /// Its key's expiry.
    pub expires: Timestamp,
}

/// Counts for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Live endpoints.
    pub endpoints: u64,
    /// Queued messages, all endpoints.
    pub queued: u64,
    /// Dropped events recorded.
    pub dropped: u64,
    /// Scheduled notices.
    pub scheduled: u64,
}

/// The store. See the module docs.
#[derive(Debug)]
pub struct Store {
    db: Database,
    limits: StoreLimits,
    /// The live endpoints, as committed (read by deliveries and queries without a transaction).
    endpoints: Mutex<BTreeMap<String, EndpointRow>>,
    /// Queued messages per endpoint, as committed.
    queued: Mutex<HashMap<String, u64>>,
    /// The durability of [`Store::apply`]'s commits (a delivery's commit is always durable,
    /// and with it every commit before it).
    pace: DurablePace,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn queue_key(endpoint: &str, order: u64) -> String {
    format!("{endpoint}/{order:020}")
}

/// The range of an endpoint's keys: `<id>/` to `<id>0` (`0` follows `/`).
fn range_of(endpoint: &str) -> (String, String) {
    (format!("{endpoint}/"), format!("{endpoint}0"))
}

fn endpoint_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(e, _)| e)
}

fn schedule_key(due_ms: i64, node: &NodeId) -> String {
    format!("{:020}/{node}", due_ms.max(0))
}

fn due_of(key: &str) -> i64 {
    key.split_once('/')
        .and_then(|(d, _)| d.parse().ok())
        .unwrap_or(0)
}

fn encode_position(p: Position) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&p.seq.to_le_bytes());
    out[8..].copy_from_slice(&p.hash.0);
    out
}

fn decode_position(b: &[u8]) -> Result<Position, StoreError> {
    if b.len() != 40 {
        return Err(StoreError::Corrupt("checkpoint is not 40 bytes".into()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[..8]);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[8..]);
    Ok(Position {
        seq: u64::from_le_bytes(seq),
        hash: Hash(hash),
    })
}

fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    k: &str,
) -> Result<u64, StoreError> {
    Ok(meta
        .get(k)
        .map_err(redb_err)?
        .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
        .map_or(0, u64::from_le_bytes))
}

/// The names of a transaction's `names` table.
struct TableNames<'a, 't>(&'a Table<'t, &'static str, &'static str>);

impl Names for TableNames<'_, '_> {
    fn login(&self, user: &UserId) -> Option<String> {
        self.0
            .get(format!("u/{user}").as_str())
            .ok()
            .flatten()
            .map(|v| v.value().to_owned())
    }

    fn device(&self, node: &NodeId) -> Option<String> {
        self.0
            .get(format!("n/{node}").as_str())
            .ok()
            .flatten()
            .map(|v| v.value().to_owned())
    }
}

/// The open tables of one write transaction, and the queue positions it hands out.
struct Tx<'t> {
    names: Table<'t, &'static str, &'static str>,
    queue: Table<'t, &'static str, &'static [u8]>,
    endpoints: Table<'t, &'static str, &'static [u8]>,
    schedule: Table<'t, &'static str, &'static [u8]>,
    notices: Table<'t, &'static str, &'static str>,
    dropped: Table<'t, &'static str, &'static [u8]>,
    order: u64,
    /// Per endpoint, messages queued (+) or removed (−) by this transaction.
    queued_delta: HashMap<String, i64>,
}

impl<'t> Tx<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let order = read_u64(&txn.open_table(META).map_err(redb_err)?, "order")?;
        Ok(Self {
            names: txn.open_table(NAMES).map_err(redb_err)?,
            queue: txn.open_table(QUEUE).map_err(redb_err)?,
            endpoints: txn.open_table(ENDPOINTS).map_err(redb_err)?,
            schedule: txn.open_table(SCHEDULE).map_err(redb_err)?,
            notices: txn.open_table(NOTICES).map_err(redb_err)?,
            dropped: txn.open_table(DROPPED).map_err(redb_err)?,
            order,
            queued_delta: HashMap::new(),
        })
    }

    fn name(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .names
            .get(key)
            .map_err(redb_err)?
            .map(|v| v.value().to_owned()))
    }

    fn tailnet_name(&self, tailnet: &str) -> Result<String, StoreError> {
        Ok(self
            .name(&format!("t/{tailnet}"))?
            .unwrap_or_else(|| tailnet.to_owned()))
    }

    fn enqueue(&mut self, endpoint: &str, q: &Queued) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(q).map_err(|e| corrupt("encode a queued message", e))?;
        let key = queue_key(endpoint, self.order);
        self.order += 1;
        self.queue
            .insert(key.as_str(), bytes.as_slice())
            .map_err(redb_err)?;
        *self.queued_delta.entry(endpoint.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Queues `m` for every endpoint of `tailnet` subscribed to `t`.
    fn fan_out(
        &mut self,
        endpoints: &BTreeMap<String, EndpointRow>,
        tailnet: &str,
        t: WebhookType,
        seq: u64,
        m: &WebhookMessage,
    ) -> Result<Vec<String>, StoreError> {
        let mut touched = Vec::new();
        for (id, row) in endpoints {
            if row.tailnet == tailnet && row.subscriptions.contains(&t) {
                self.enqueue(
                    id,
                    &Queued {
                        seq,
                        message: m.clone(),
                        first_failure: None,
                        attempts: 0,
                        last_error: None,
                    },
                )?;
                touched.push(id.clone());
            }
        }
        Ok(touched)
    }

    fn cancel_notice(&mut self, node: &NodeId) -> Result<(), StoreError> {
        let old = self
            .notices
            .remove(node.as_str())
            .map_err(redb_err)?
            .map(|v| v.value().to_owned());
        if let Some(k) = old {
            self.schedule.remove(k.as_str()).map_err(redb_err)?;
        }
        Ok(())
    }

    fn schedule_notice(
        &mut self,
        tailnet: &str,
        node: &NodeId,
        expires: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.cancel_notice(node)?;
        let Some(expires) = expires else {
            return Ok(());
        };
        let key = schedule_key(expires.unix_ms() - NOTICE_BEFORE_MS, node);
        let notice = Notice {
            tailnet: tailnet.to_owned(),
            node_id: node.clone(),
            expires,
        };
        let bytes = serde_json::to_vec(&notice).map_err(|e| corrupt("encode a notice", e))?;
        self.schedule
            .insert(key.as_str(), bytes.as_slice())
            .map_err(redb_err)?;
        self.notices
            .insert(node.as_str(), key.as_str())
            .map_err(redb_err)?;
        Ok(())
    }

    fn remove_range(
        table: &mut Table<'t, &'static str, &'static [u8]>,
        endpoint: &str,
    ) -> Result<u64, StoreError> {
        let (lo, hi) = range_of(endpoint);
        let keys: Vec<String> = table
            .range(lo.as_str()..hi.as_str())
            .map_err(redb_err)?
            .map(|r| r.map(|(k, _)| k.value().to_owned()))
            .collect::<Result<_, _>>()
            .map_err(redb_err)?;
        for k in &keys {
            table.remove(k.as_str()).map_err(redb_err)?;
        }
        Ok(keys.len() as u64)
    }
}

impl Store {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path, limits: StoreLimits) -> Result<Self, StoreError> {
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Busy),
            Err(e) => return Err(redb_err(e)),
        };
        let txn = db.begin_write().map_err(redb_err)?;
        {
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            let format = meta
                .get("format")
                .map_err(redb_err)?
                .map(|v| v.value().to_vec());
            match format {
                None => {
                    meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(redb_err)?;
                    meta.insert("checkpoint", encode_position(Position::START).as_slice())
                        .map_err(redb_err)?;
                    meta.insert("order", 0u64.to_le_bytes().as_slice())
                        .map_err(redb_err)?;
                }
                Some(f) if f == FORMAT_VERSION.to_le_bytes() => {}
                Some(_) => {
                    return Err(StoreError::Corrupt(
                        "webhooks.redb is of another format version".into(),
                    ));
                }
            }
            drop(meta);
            for t in [ENDPOINTS, QUEUE, DROPPED, SCHEDULE] {
                txn.open_table(t).map_err(redb_err)?;
            }
            txn.open_table(NAMES).map_err(redb_err)?;
            txn.open_table(NOTICES).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        let store = Self {
            db,
            limits,
            endpoints: Mutex::new(BTreeMap::new()),
            queued: Mutex::new(HashMap::new()),
            pace: DurablePace::default(),
        };
        store.load()?;
        Ok(store)
    }

    fn load(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let mut endpoints = BTreeMap::new();
        for r in txn
            .open_table(ENDPOINTS)
            .map_err(redb_err)?
            .iter()
            .map_err(redb_err)?
        {
            let (k, v) = r.map_err(redb_err)?;
            let row: EndpointRow =
                serde_json::from_slice(v.value()).map_err(|e| corrupt("an endpoint row", e))?;
            endpoints.insert(k.value().to_owned(), row);
        }
        let mut queued: HashMap<String, u64> = HashMap::new();
        for r in txn
            .open_table(QUEUE)
            .map_err(redb_err)?
            .iter()
            .map_err(redb_err)?
        {
            let (k, _) = r.map_err(redb_err)?;
            *queued.entry(endpoint_of(k.value()).to_owned()).or_default() += 1;
        }
        *lock(&self.endpoints) = endpoints;
        *lock(&self.queued) = queued;
        Ok(())
    }

    /// The last folded event.
    pub fn checkpoint(&self) -> Result<Position, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let meta = txn.open_table(META).map_err(redb_err)?;
        let cp = meta
            .get("checkpoint")
            .map_err(redb_err)?
            .ok_or_else(|| StoreError::Corrupt("no checkpoint".into()))?;
        decode_position(cp.value())
    }

    /// A live endpoint.
    pub fn endpoint(&self, id: &str) -> Option<EndpointRow> {
        lock(&self.endpoints).get(id).cloned()
    }

    /// The live endpoints of `tailnet`, by id.
    pub fn endpoints_of(&self, tailnet: &str) -> Vec<(String, EndpointRow)> {
        lock(&self.endpoints)
            .iter()
            .filter(|(_, r)| r.tailnet == tailnet)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }

    /// Every live endpoint's id.
    pub fn endpoint_ids(&self) -> Vec<String> {
        lock(&self.endpoints).keys().cloned().collect()
    }

    /// Messages waiting for `endpoint`.
    pub fn queued(&self, endpoint: &str) -> u64 {
        lock(&self.queued).get(endpoint).copied().unwrap_or(0)
    }

    fn apply_delta(&self, delta: HashMap<String, i64>) {
        let mut q = lock(&self.queued);
        for (e, d) in delta {
            let n = q.entry(e.clone()).or_default();
            *n = n.saturating_add_signed(d);
            if *n == 0 {
                q.remove(&e);
            }
        }
    }

    /// Folds `batch` (linked, right after the checkpoint) and records `tip`, in one durable
    /// transaction. Messages are queued only for events after `enqueue_after` (a rebuild
    /// re-folds what was queued before without queueing it again). Answers the endpoints
    /// whose queue grew.
    pub fn apply(
        &self,
        batch: &[Envelope],
        tip: Position,
        enqueue_after: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(self.pace.next()).map_err(redb_err)?;
        let mut endpoints = lock(&self.endpoints).clone();
        let mut touched = Vec::new();
        let delta;
        {
            let mut tx = Tx::open(&txn)?;
            for env in batch {
                let seq = env.seq.get();
                let tailnet = env.tailnet.as_str();
                // Messages are made only for a tailnet with an endpoint: most have none, and
                // making them (names read, JSON built) was most of this fold's cost.
                if seq > enqueue_after && endpoints.values().any(|row| row.tailnet == tailnet) {
                    let tname = tx.tailnet_name(tailnet)?;
                    let msgs = message::messages(env, &tname, &TableNames(&tx.names));
                    for (t, m) in msgs {
                        touched.extend(tx.fan_out(&endpoints, tailnet, t, seq, &m)?);
                    }
                }
                self.fold(&mut tx, &mut endpoints, env)?;
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("order", tx.order.to_le_bytes().as_slice())
                .map_err(redb_err)?;
            meta.insert("checkpoint", encode_position(tip).as_slice())
                .map_err(redb_err)?;
            delta = std::mem::take(&mut tx.queued_delta);
        }
        txn.commit().map_err(redb_err)?;
        *lock(&self.endpoints) = endpoints;
        self.apply_delta(delta);
        touched.sort();
        touched.dedup();
        Ok(touched)
    }

    fn fold(
        &self,
        tx: &mut Tx<'_>,
        endpoints: &mut BTreeMap<String, EndpointRow>,
        env: &Envelope,
    ) -> Result<(), StoreError> {
        let tailnet = env.tailnet.as_str();
        let put_row = |tx: &mut Tx<'_>, id: &str, row: &EndpointRow| -> Result<(), StoreError> {
            let bytes = serde_json::to_vec(row).map_err(|e| corrupt("encode an endpoint", e))?;
            tx.endpoints
                .insert(id, bytes.as_slice())
                .map_err(redb_err)?;
            Ok(())
        };
        match &env.event {
            Event::TailnetCreated(e) => {
                tx.names
                    .insert(format!("t/{tailnet}").as_str(), e.name.as_str())
                    .map_err(redb_err)?;
            }
            Event::UserAdded(e) => {
                tx.names
                    .insert(format!("u/{}", e.user_id).as_str(), e.login_name.as_str())
                    .map_err(redb_err)?;
            }
            Event::NodeRegistered(e) => {
                tx.names
                    .insert(format!("n/{}", e.node_id).as_str(), e.name.as_str())
                    .map_err(redb_err)?;
                tx.schedule_notice(tailnet, &e.node_id, e.expires)?;
            }
            Event::NodeReauthenticated(e) => {
                tx.schedule_notice(tailnet, &e.node_id, e.expires)?;
            }
            Event::NodeKeyExpirySet(e) => {
                tx.schedule_notice(tailnet, &e.node_id, e.expires)?;
            }
            Event::NodeExpired(e) => tx.cancel_notice(&e.node_id)?,
            Event::NodeDeleted(e) => {
                tx.cancel_notice(&e.node_id)?;
                tx.names
                    .remove(format!("n/{}", e.node_id).as_str())
                    .map_err(redb_err)?;
            }
            Event::WebhookCreated(e) => {
                let creator = TableNames(&tx.names)
                    .login(&e.creator)
                    .unwrap_or_else(|| e.creator.to_string());
                let row = EndpointRow {
                    tailnet: tailnet.to_owned(),
                    endpoint_url: e.endpoint_url.clone(),
                    provider_type: e.provider_type,
                    subscriptions: e.subscriptions.clone(),
                    creator_login: creator,
                    created: env.time,
                    last_modified: env.time,
                    rotation: 0,
                };
                put_row(tx, e.endpoint_id.as_str(), &row)?;
                endpoints.insert(e.endpoint_id.to_string(), row);
            }
            Event::WebhookUpdated(e) => {
                if let Some(row) = endpoints.get_mut(e.endpoint_id.as_str()) {
                    row.subscriptions.clone_from(&e.subscriptions);
                    row.last_modified = env.time;
                    let row = row.clone();
                    put_row(tx, e.endpoint_id.as_str(), &row)?;
                }
            }
            Event::WebhookSecretRotated(e) => {
                if let Some(row) = endpoints.get_mut(e.endpoint_id.as_str()) {
                    row.rotation = e.rotation;
                    row.last_modified = env.time;
                    let row = row.clone();
                    put_row(tx, e.endpoint_id.as_str(), &row)?;
                }
            }
            Event::WebhookDeleted(e) => {
                let id = e.endpoint_id.as_str();
                endpoints.remove(id);
                tx.endpoints.remove(id).map_err(redb_err)?;
                let removed = Tx::remove_range(&mut tx.queue, id)?;
                Tx::remove_range(&mut tx.dropped, id)?;
                *tx.queued_delta.entry(id.to_owned()).or_default() -=
                    i64::try_from(removed).unwrap_or(i64::MAX);
            }
            _ => {}
        }
        Ok(())
    }

    /// Forgets what was folded (not the queues, dropped events or queue positions), for a
    /// rebuild from seq 1; answers the checkpoint it had.
    pub fn reset_folded(&self) -> Result<Position, StoreError> {
        let before = self.checkpoint()?;
        let txn = self.db.begin_write().map_err(redb_err)?;
        {
            for t in [ENDPOINTS, SCHEDULE] {
                let mut table = txn.open_table(t).map_err(redb_err)?;
                table.retain(|_, _| false).map_err(redb_err)?;
            }
            for t in [NAMES, NOTICES] {
                let mut table = txn.open_table(t).map_err(redb_err)?;
                table.retain(|_, _| false).map_err(redb_err)?;
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("checkpoint", encode_position(Position::START).as_slice())
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        lock(&self.endpoints).clear();
        Ok(before)
    }

    /// The first `max` messages of `endpoint`'s queue, in order, with their keys.
    pub fn peek(&self, endpoint: &str, max: usize) -> Result<Vec<(String, Queued)>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(QUEUE).map_err(redb_err)?;
        let (lo, hi) = range_of(endpoint);
        let mut out = Vec::new();
        for r in table.range(lo.as_str()..hi.as_str()).map_err(redb_err)? {
            if out.len() >= max {
                break;
            }
            let (k, v) = r.map_err(redb_err)?;
            let q: Queued =
                serde_json::from_slice(v.value()).map_err(|e| corrupt("a queued message", e))?;
            out.push((k.value().to_owned(), q));
        }
        Ok(out)
    }

    /// Removes delivered messages.
    pub fn ack(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err)?;
        let mut delta: HashMap<String, i64> = HashMap::new();
        {
            let mut queue = txn.open_table(QUEUE).map_err(redb_err)?;
            for k in keys {
                if queue.remove(k.as_str()).map_err(redb_err)?.is_some() {
                    *delta.entry(endpoint_of(k).to_owned()).or_default() -= 1;
                }
            }
        }
        txn.commit().map_err(redb_err)?;
        self.apply_delta(delta);
        Ok(())
    }

    /// Records a failed attempt on the batch's first message: answers when its first failure
    /// was (the start of its retry window) and its attempts so far.
    pub fn fail(
        &self,
        key: &str,
        now: Timestamp,
        error: &str,
    ) -> Result<(Timestamp, u32), StoreError> {
        let txn = self.db.begin_write().map_err(redb_err)?;
        let out;
        {
            let mut queue = txn.open_table(QUEUE).map_err(redb_err)?;
            let current = queue
                .get(key)
                .map_err(redb_err)?
                .map(|v| v.value().to_vec());
            let Some(bytes) = current else {
                return Ok((now, 1));
            };
            let mut q: Queued =
                serde_json::from_slice(&bytes).map_err(|e| corrupt("a queued message", e))?;
            let first = *q.first_failure.get_or_insert(now);
            q.attempts = q.attempts.saturating_add(1);
            q.last_error = Some(error.to_owned());
            out = (first, q.attempts);
            let bytes =
                serde_json::to_vec(&q).map_err(|e| corrupt("encode a queued message", e))?;
            queue.insert(key, bytes.as_slice()).map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
        Ok(out)
    }

    /// Gives up on `batch` (its retry window ran out): moved to `dropped`, keeping the latest
    /// `dropped_per_endpoint_max` of the endpoint.
    pub fn drop_batch(
        &self,
        batch: &[(String, Queued)],
        now: Timestamp,
        attempts: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err)?;
        let mut delta: HashMap<String, i64> = HashMap::new();
        {
            let mut queue = txn.open_table(QUEUE).map_err(redb_err)?;
            let mut dropped = txn.open_table(DROPPED).map_err(redb_err)?;
            for (k, q) in batch {
                if queue.remove(k.as_str()).map_err(redb_err)?.is_none() {
                    continue;
                }
                *delta.entry(endpoint_of(k).to_owned()).or_default() -= 1;
                let d = DroppedEvent {
                    seq: q.seq,
                    event_type: q.message.event_type.clone(),
                    dropped_at: now,
                    attempts,
                    last_error: error.to_owned(),
                };
                let bytes = serde_json::to_vec(&d).map_err(|e| corrupt("encode a drop", e))?;
                dropped
                    .insert(k.as_str(), bytes.as_slice())
                    .map_err(redb_err)?;
            }
            for endpoint in delta.keys() {
                let (lo, hi) = range_of(endpoint);
                let keys: Vec<String> = dropped
                    .range(lo.as_str()..hi.as_str())
                    .map_err(redb_err)?
                    .map(|r| r.map(|(k, _)| k.value().to_owned()))
                    .collect::<Result<_, _>>()
                    .map_err(redb_err)?;
                let excess = keys
                    .len()
                    .saturating_sub(self.limits.dropped_per_endpoint_max);
                for k in keys.iter().take(excess) {
                    dropped.remove(k.as_str()).map_err(redb_err)?;
                }
            }
        }
        txn.commit().map_err(redb_err)?;
        self.apply_delta(delta);
        Ok(())
    }

    /// The dropped events of `endpoint`, oldest first.
    pub fn dropped(&self, endpoint: &str) -> Result<Vec<DroppedEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(DROPPED).map_err(redb_err)?;
        let (lo, hi) = range_of(endpoint);
        let mut out = Vec::new();
        for r in table.range(lo.as_str()..hi.as_str()).map_err(redb_err)? {
            let (_, v) = r.map_err(redb_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| corrupt("a drop", e))?);
        }
        Ok(out)
    }

    /// The last failure of `endpoint`'s first queued message, while it is being retried.
    pub fn last_error(&self, endpoint: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .peek(endpoint, 1)?
            .into_iter()
            .next()
            .and_then(|(_, q)| q.last_error))
    }

    /// Queues `m` (a test event) for `endpoint`, whatever its subscriptions.
    pub fn enqueue(&self, endpoint: &str, m: WebhookMessage) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err)?;
        let delta;
        {
            let mut tx = Tx::open(&txn)?;
            tx.enqueue(
                endpoint,
                &Queued {
                    seq: 0,
                    message: m,
                    first_failure: None,
                    attempts: 0,
                    last_error: None,
                },
            )?;
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("order", tx.order.to_le_bytes().as_slice())
                .map_err(redb_err)?;
            delta = std::mem::take(&mut tx.queued_delta);
        }
        txn.commit().map_err(redb_err)?;
        self.apply_delta(delta);
        Ok(())
    }

    /// A tailnet's name (its id if unknown).
    pub fn tailnet_name(&self, tailnet: &str) -> Result<String, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(NAMES).map_err(redb_err)?;
        Ok(table
            .get(format!("t/{tailnet}").as_str())
            .map_err(redb_err)?
            .map_or_else(|| tailnet.to_owned(), |v| v.value().to_owned()))
    }

    /// When the earliest notice is due (ms), if any.
    pub fn next_notice_ms(&self) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let table = txn.open_table(SCHEDULE).map_err(redb_err)?;
        let first = table.first().map_err(redb_err)?;
        Ok(first.map(|(k, _)| due_of(k.value())))
    }

    /// Fires up to `max` notices due at `now`: each is queued for the endpoints of its tailnet
    /// subscribed to `nodeKeyExpiringInOneDay` and leaves the schedule, in one transaction.
    /// Answers the endpoints whose queue grew and how many notices fired.
    pub fn fire_notices(
        &self,
        now: Timestamp,
        max: usize,
    ) -> Result<(Vec<String>, usize), StoreError> {
        let mut txn = self.db.begin_write().map_err(redb_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(redb_err)?;
        let endpoints = lock(&self.endpoints).clone();
        let mut touched = Vec::new();
        let fired;
        let delta;
        {
            let mut tx = Tx::open(&txn)?;
            let mut due = Vec::new();
            for r in tx.schedule.iter().map_err(redb_err)? {
                let (k, v) = r.map_err(redb_err)?;
                if due_of(k.value()) > now.unix_ms() || due.len() >= max {
                    break;
                }
                let n: Notice =
                    serde_json::from_slice(v.value()).map_err(|e| corrupt("a notice", e))?;
                due.push((k.value().to_owned(), n));
            }
            fired = due.len();
            for (k, n) in due {
                tx.schedule.remove(k.as_str()).map_err(redb_err)?;
                tx.notices.remove(n.node_id.as_str()).map_err(redb_err)?;
                let tname = tx.tailnet_name(&n.tailnet)?;
                let name = TableNames(&tx.names)
                    .device(&n.node_id)
                    .unwrap_or_else(|| n.node_id.to_string());
                let m = message::expiring_in_one_day(now, &tname, &n.node_id, &name, n.expires);
                touched.extend(tx.fan_out(
                    &endpoints,
                    &n.tailnet,
                    WebhookType::NodeKeyExpiringInOneDay,
                    0,
                    &m,
                )?);
            }
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            meta.insert("order", tx.order.to_le_bytes().as_slice())
                .map_err(redb_err)?;
            delta = std::mem::take(&mut tx.queued_delta);
        }
        txn.commit().map_err(redb_err)?;
        self.apply_delta(delta);
        touched.sort();
        touched.dedup();
        Ok((touched, fired))
    }

    /// Counts for status.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        Ok(Counts {
            endpoints: lock(&self.endpoints).len() as u64,
            queued: txn
                .open_table(QUEUE)
                .map_err(redb_err)?
                .len()
                .map_err(redb_err)?,
            dropped: txn
                .open_table(DROPPED)
                .map_err(redb_err)?
                .len()
                .map_err(redb_err)?,
            scheduled: txn
                .open_table(SCHEDULE)
                .map_err(redb_err)?
                .len()
                .map_err(redb_err)?,
        })
    }

    /// The current secret inputs of a live endpoint of `tailnet`.
    pub fn endpoint_in(&self, tailnet: &str, id: &str) -> Option<(EndpointId, EndpointRow)> {
        let row = self.endpoint(id).filter(|r| r.tailnet == tailnet)?;
        Some((EndpointId::parse(id).ok()?, row))
    }
}

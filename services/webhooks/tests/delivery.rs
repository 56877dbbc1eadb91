//! R23 deliveries against a real HTTP receiver on loopback: the store and the endpoint tasks of
//! the webhooks role, fed envelopes directly (no NATS; `services/cli/tests/webhooks.rs` runs
//! the whole system). Each test names the property it proves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authkeys_events::{
    Actor, CommandId, EndpointId, EndpointUrl, Envelope, Event, EventId, Hash, Hostname, KeyId,
    KeyRevoked, LoginName, NodeId, NodeKey, NodeRegistered, ProviderType, Role, Seq, Tags,
    TailnetId, Timestamp, UserAdded, UserId, WebhookCreated, WebhookSecretRotated, WebhookType,
    decision::system_clock,
};
use authkeys_projections::store::Position;
use authkeys_webhooks::deliver::{Ctx, Deliveries, DeliveryConfig, Stats};
use authkeys_webhooks::sign::{SIGNATURE_HEADER, verify};
use authkeys_webhooks::store::{Store, StoreLimits};
use authkeys_webhooks::{SecretKey, message::WebhookMessage};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

/// What a receiver got: (signature header, body) per request, and how to answer.
#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<(String, Vec<u8>)>>,
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    /// Never answer (hang) this many requests first.
    hang_first: AtomicUsize,
    /// Requests that reached the handler (a held one included).
    entered: AtomicUsize,
}

impl Inbox {
    fn messages(&self) -> Vec<WebhookMessage> {
        self.got
            .lock()
            .expect("ok")
            .iter()
            .flat_map(|(_, b)| serde_json::from_slice::<Vec<WebhookMessage>>(b).expect("JSON"))
            .collect()
    }
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inbox.entered.fetch_add(1, Ordering::SeqCst);
    if inbox
        .hang_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
    if inbox
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    inbox.got.lock().expect("lock").push((sig, body.to_vec()));
    StatusCode::OK
}

async fn receiver() -> (SocketAddr, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&inbox));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback socket");
    let addr = listener.local_addr().expect("a loopback socket");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, inbox)
}

fn tailnet() -> TailnetId {
    TailnetId::parse("T1").expect("valid")
}

/// A store, its deliveries, and envelopes numbered in order.
struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Arc<Store>,
    deliveries: Deliveries,
    key: SecretKey,
    seq: u64,
}

fn config(allow_private: bool) -> DeliveryConfig {
    DeliveryConfig {
        allow_private,
        batch_events_max: 3,
        request_timeout_ms: 2_000,
        retry_base_ms: 20,
        retry_cap_ms: 100,
        ..DeliveryConfig::default()
    }
}

impl Harness {
    fn new(cfg: DeliveryConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("webhooks.redb");
        let store = Arc::new(Store::open(&path, StoreLimits::default()).expect("open"));
        let key = SecretKey::from_bytes([9; 32]);
        let deliveries = deliveries(&store, &key, cfg);
        Self {
            _dir: dir,
            path,
            store,
            deliveries,
            key,
            seq: 0,
        }
    }

    /// Folds `event` as the next envelope and wakes the deliveries.
    fn apply(&mut self, event: impl Into<Event>) {
        self.seq += 1;
        let event = event.into();
        let env = Envelope {
            seq: Seq::new(self.seq).expect("ok"),
            id: EventId::parse(format!("e{:032x}", self.seq)).expect("valid"),
            stream: event.stream(&tailnet()),
            event,
            tailnet: tailnet(),
            stream_version: 1,
            time: system_clock().now(),
            actor: Actor::system("test"),
            command_id: CommandId::parse(format!("c{}", self.seq)).expect("valid"),
            prev_hash: Hash::ZERO,
            hash: Hash::ZERO,
        };
        let tip = Position {
            seq: self.seq,
            hash: Hash::ZERO,
        };
        let touched = self.store.apply(&[env], tip, 0).expect("ok");
        self.deliveries.sync(&touched);
    }

    fn endpoint(&mut self, id: &str, url: String, types: &[WebhookType]) -> EndpointId {
        let id = EndpointId::parse(id).expect("valid");
        self.apply(WebhookCreated {
            endpoint_id: id.clone(),
            endpoint_url: EndpointUrl::parse(url).expect("valid"),
            provider_type: ProviderType::Generic,
            subscriptions: types.to_vec(),
            creator: UserId::parse("u1").expect("valid"),
        });
        id
    }
}

fn deliveries(store: &Arc<Store>, key: &SecretKey, cfg: DeliveryConfig) -> Deliveries {
    let ctx = Arc::new(Ctx {
        store: Arc::clone(store),
        key: key.clone(),
        cfg,
        clock: system_clock(),
        stats: Stats::default(),
    });
    Deliveries::new(ctx, CancellationToken::new())
}

fn user_added(n: u64) -> UserAdded {
    UserAdded {
        user_id: UserId::parse(format!("u{n}")).expect("valid"),
        login_name: LoginName::parse(format!("user{n}@example.com")).expect("valid"),
        role: Role::Member,
    }
}

fn key_revoked(n: u64) -> KeyRevoked {
    KeyRevoked {
        key_id: KeyId::parse(format!("k{n}")).expect("valid"),
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn r23_deliveries_are_signed_with_the_endpoints_secret_and_filtered_by_subscription() {
    // An endpoint subscribed to userCreated only gets userCreated (not keyRevoked), every
    // request verifies against the endpoint's rotation-0 secret, and the event objects have
    // Tailscale's fields.
    let (addr, inbox) = receiver().await;
    let mut h = Harness::new(config(true));
    let id = h.endpoint("wA", url(addr), &[WebhookType::UserCreated]);
    h.apply(key_revoked(1));
    h.apply(user_added(2));
    h.apply(key_revoked(3));
    until("userCreated delivered", || inbox.messages().len() == 1).await;
    let got = inbox.got.lock().expect("lock").clone();
    let now = system_clock().now().unix_ms() / 1000;
    let secret = h.key.secret(&id, 0);
    for (sig, body) in &got {
        verify(&secret, sig, body, now, 300).expect("the signature verifies");
    }
    let m = &inbox.messages()[0];
    assert_eq!(m.event_type, "userCreated");
    assert_eq!(m.version, 1);
    assert_eq!(m.tailnet, "T1");
    assert_eq!(m.data["user"], "user2@example.com");
    let raw: serde_json::Value = serde_json::from_slice(&got[0].1).expect("JSON");
    let keys: Vec<&str> = raw[0]
        .as_object()
        .expect("ok")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["data", "message", "tailnet", "timestamp", "type", "version"]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(inbox.messages().len(), 1, "keyRevoked is not subscribed");
}

#[tokio::test]
async fn r23_a_receiver_that_fails_then_recovers_gets_every_event_in_order() {
    // The receiver answers 500 to its first 4 requests; the events (more than a batch) all
    // arrive, once each, in event order.
    let (addr, inbox) = receiver().await;
    inbox.fail_first.store(4, Ordering::SeqCst);
    let mut h = Harness::new(config(true));
    let id = h.endpoint("wA", url(addr), &[WebhookType::UserCreated]);
    for n in 1..=7 {
        h.apply(user_added(n));
    }
    until("7 events", || inbox.messages().len() >= 7).await;
    let users: Vec<String> = inbox
        .messages()
        .iter()
        .map(|m| m.data["user"].as_str().expect("ok").to_owned())
        .collect();
    let want: Vec<String> = (1..=7).map(|n| format!("user{n}@example.com")).collect();
    assert_eq!(users, want);
    assert_eq!(h.store.queued(id.as_str()), 0);
}

#[tokio::test]
async fn r23_a_dead_endpoint_never_delays_another() {
    // One endpoint points at a port nobody listens on; the other gets its event at once.
    let (addr, inbox) = receiver().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback socket");
    let dead_addr = dead.local_addr().expect("a loopback socket");
    drop(dead);
    let mut h = Harness::new(config(true));
    let dead_id = h.endpoint("wDead", url(dead_addr), &[WebhookType::UserCreated]);
    h.endpoint("wLive", url(addr), &[WebhookType::UserCreated]);
    let started = std::time::Instant::now();
    h.apply(user_added(1));
    until("the live endpoint's event", || inbox.messages().len() == 1).await;
    // Generous for a loaded CI machine; the dead endpoint's retries go on meanwhile.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    until("the dead endpoint's failure", || {
        h.store.last_error(dead_id.as_str()).expect("ok").is_some()
    })
    .await;
    assert_eq!(h.store.queued(dead_id.as_str()), 1, "kept for retry");
}

#[tokio::test]
async fn r23_events_are_dropped_after_the_retry_window_and_recorded() {
    // With a 300 ms window, a dead endpoint's event is given up and listed as dropped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback socket");
    let dead_addr = dead.local_addr().expect("a loopback socket");
    drop(dead);
    let mut h = Harness::new(DeliveryConfig {
        retry_window_ms: 300,
        ..config(true)
    });
    let id = h.endpoint("wA", url(dead_addr), &[WebhookType::UserCreated]);
    h.apply(user_added(1));
    until("dropped", || {
        h.store.dropped(id.as_str()).expect("ok").len() == 1
    })
    .await;
    let d = &h.store.dropped(id.as_str()).expect("ok")[0];
    assert_eq!(d.event_type, "userCreated");
    assert!(d.attempts >= 2, "{d:?}");
    assert_eq!(h.store.queued(id.as_str()), 0);
}

#[tokio::test]
async fn r23_rotate_invalidates_the_old_secret() {
    // After WebhookSecretRotated, deliveries verify with rotation 1's secret, not rotation 0's.
    let (addr, inbox) = receiver().await;
    let mut h = Harness::new(config(true));
    let id = h.endpoint("wA", url(addr), &[WebhookType::UserCreated]);
    h.apply(WebhookSecretRotated {
        endpoint_id: id.clone(),
        rotation: 1,
    });
    h.apply(user_added(1));
    until("delivered", || inbox.messages().len() == 1).await;
    let (sig, body) = inbox.got.lock().expect("lock")[0].clone();
    let now = system_clock().now().unix_ms() / 1000;
    assert!(verify(&h.key.secret(&id, 0), &sig, &body, now, 300).is_err());
    verify(&h.key.secret(&id, 1), &sig, &body, now, 300).expect("the signature verifies");
}

#[tokio::test]
async fn r23_loopback_targets_are_refused_without_allow_private() {
    // Without --webhooks-allow-private, a delivery to 127.0.0.1 is never made (the receiver
    // gets nothing) and the refusal is the endpoint's last error.
    let (addr, inbox) = receiver().await;
    let mut h = Harness::new(config(false));
    let id = h.endpoint("wA", url(addr), &[WebhookType::UserCreated]);
    h.apply(user_added(1));
    until("refused", || {
        h.store.last_error(id.as_str()).expect("ok").is_some()
    })
    .await;
    let why = h.store.last_error(id.as_str()).expect("ok").expect("ok");
    assert!(why.contains("loopback, private"), "{why}");
    assert!(inbox.got.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn r23_a_batch_in_flight_when_the_worker_stops_is_delivered_after_restart() {
    // The receiver takes the first request and never answers; the deliveries stop mid-batch
    // and the store is closed. Reopened, the same events are delivered: nothing was lost.
    let (addr, inbox) = receiver().await;
    inbox.hang_first.store(1, Ordering::SeqCst);
    let mut h = Harness::new(config(true));
    let id = h.endpoint("wA", url(addr), &[WebhookType::UserCreated]);
    h.apply(user_added(1));
    h.apply(user_added(2));
    until("the first delivery in flight", || {
        inbox.entered.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(inbox.messages().is_empty());
    h.deliveries.shutdown().await;
    let Harness {
        store,
        path,
        key,
        _dir,
        deliveries: stopped,
        ..
    } = h;
    drop(stopped);
    drop(store);
    let store = Arc::new(Store::open(&path, StoreLimits::default()).expect("open"));
    assert_eq!(store.queued(id.as_str()), 2);
    let d = deliveries(&store, &key, config(true));
    d.sync(&[id.to_string()]);
    until("redelivered", || inbox.messages().len() == 2).await;
    assert_eq!(inbox.messages()[0].data["user"], "user1@example.com");
    d.shutdown().await;
}

#[tokio::test]
async fn r23_node_key_expiring_in_one_day_fires_when_due_also_if_the_deadline_passed() {
    // A node whose key expires in under a day: its notice is already due (the deadline passed
    // while nobody looked), fires once, and reaches the subscribed endpoint.
    let (addr, inbox) = receiver().await;
    let mut h = Harness::new(config(true));
    h.endpoint(
        "wA",
        url(addr),
        &[
            WebhookType::NodeKeyExpiringInOneDay,
            WebhookType::NodeCreated,
        ],
    );
    let now = system_clock().now();
    h.apply(NodeRegistered {
        node_id: NodeId::parse("n1").expect("valid"),
        node_key: NodeKey::parse(format!("nodekey:{}", "ab".repeat(32))).expect("valid"),
        hostname: Hostname::parse("laptop").expect("valid"),
        name: "laptop".into(),
        os: String::new(),
        user_id: UserId::parse("u1").expect("valid"),
        tags: Tags::new(Vec::new()),
        auth_key_id: KeyId::parse("k1").expect("valid"),
        ephemeral: false,
        authorized: true,
        key_expiry_disabled: false,
        expires: Some(now.plus_seconds(3_600)),
        tailnet_lock_error: None,
        addresses: None,
    });
    let (touched, fired) = h.store.fire_notices(system_clock().now(), 10).expect("ok");
    assert_eq!(fired, 1);
    h.deliveries.sync(&touched);
    until("two events", || inbox.messages().len() == 2).await;
    let types: Vec<String> = inbox
        .messages()
        .iter()
        .map(|m| m.event_type.clone())
        .collect();
    assert_eq!(types, ["nodeCreated", "nodeKeyExpiringInOneDay"]);
    assert_eq!(
        h.store
            .fire_notices(system_clock().now(), 10)
            .expect("ok")
            .1,
        0
    );
    let _: Timestamp = now;
}

//! R23 end to end with the real binary: webhooks created over the HTTP API (and by the PyPI
//! `tailscale` client), events delivered to a real HTTP receiver on loopback, signed with the
//! secret the create answer showed; the `authkeys webhooks` process killed mid-batch and
//! restarted loses nothing; loopback and metadata targets refused without
//! `--webhooks-allow-private`.

mod api_support;
mod proc_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use authkeys_webhooks::sign::{SIGNATURE_HEADER, verify};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use proc_support::{Procs, authkeys, bootstrapped, free_port, get_ok, http, register};
use serde_json::{Value, json};

/// Retries fast, so the tests need not wait out production backoffs.
const FAST_RETRIES: [&str; 5] = [
    "--webhooks-allow-private",
    "--webhooks-retry-base",
    "50ms",
    "--webhooks-retry-cap",
    "200ms",
];

/// What the receiver got, and how it answers.
#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<(String, Vec<u8>)>>,
    fail_first: AtomicUsize,
    hang_first: AtomicUsize,
    /// Requests that reached the handler (a held one included).
    entered: AtomicUsize,
}

impl Inbox {
    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .expect("ok")
            .iter()
            .flat_map(|(_, b)| serde_json::from_slice::<Vec<Value>>(b).expect("JSON"))
            .collect()
    }

    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let take = |n: &AtomicUsize| {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    };
    inbox.entered.fetch_add(1, Ordering::SeqCst);
    if take(&inbox.hang_first) {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
    if take(&inbox.fail_first) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    inbox.got.lock().expect("lock").push((sig, body.to_vec()));
    StatusCode::OK
}

async fn receiver() -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&inbox));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback socket");
    let addr: SocketAddr = listener.local_addr().expect("a loopback socket");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), inbox)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn now_secs() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("ok")
            .as_secs(),
    )
    .expect("ok")
}

/// Every request the receiver got verifies with one of `secrets`; answers which one per request.
fn signed_with(inbox: &Inbox, secrets: &[&str]) -> Vec<usize> {
    inbox
        .got
        .lock()
        .expect("ok")
        .iter()
        .map(|(sig, body)| {
            secrets
                .iter()
                .position(|s| verify(s, sig, body, now_secs(), 300).is_ok())
                .unwrap_or(usize::MAX)
        })
        .collect()
}

async fn ok(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let a = http(port, method, path, token, body).await?;
    ensure!(a.status == 200, "{method} {path}: {} {}", a.status, a.body);
    Ok(a.body)
}

async fn generate_key(port: u16, token: &str) -> anyhow::Result<String> {
    let key = ok(
        port,
        token,
        "POST",
        "/api/v2/tailnet/-/keys",
        Some(json!({"capabilities": {"devices": {"create": {"reusable": true}}}})),
    )
    .await?;
    Ok(key["key"].as_str().context("key")?.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_events_reach_a_receiver_signed_in_order_through_outages_and_rotation()
-> anyhow::Result<()> {
    // `authkeys serve` with fast retries: a webhook on a receiver that fails its first 3
    // requests gets keyCreated, nodeCreated, keyUsed-less (not subscribed) … in event order,
    // each request signed with the create answer's secret; after a rotate, only the new
    // secret verifies; a test event arrives; unsubscribed types never do.
    let (nats, _dir, data, token) = bootstrapped("data")?;
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(FAST_RETRIES)
            .args(["--webhooks-retry-window", "3s"])
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/webhooks", &token).await?;
    let (url, inbox) = receiver().await;
    inbox.fail_first.store(3, Ordering::SeqCst);
    // A second endpoint nobody answers: its events are dropped after the (3 s) window.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead_url = format!("http://{}/hook", dead.local_addr()?);
    drop(dead);
    let dead_hook = ok(
        port,
        &token,
        "POST",
        "/api/v2/tailnet/-/webhooks",
        Some(json!({"endpointUrl": dead_url, "subscriptions": ["keyCreated"]})),
    )
    .await?;
    let dead_id = dead_hook["endpointId"]
        .as_str()
        .context("endpointId")?
        .to_owned();
    let hook = ok(
        port,
        &token,
        "POST",
        "/api/v2/tailnet/-/webhooks",
        Some(json!({"endpointUrl": url, "subscriptions": ["keyCreated", "nodeCreated", "userCreated"]})),
    )
    .await?;
    let id = hook["endpointId"]
        .as_str()
        .context("endpointId")?
        .to_owned();
    let secret = hook["secret"].as_str().context("secret")?.to_owned();
    ensure!(
        hook["providerType"] == "" && hook["creatorLoginName"] == "o@example.com",
        "{hook}"
    );
    let listed = ok(port, &token, "GET", "/api/v2/tailnet/-/webhooks", None).await?;
    let all = listed["webhooks"].as_array().context("webhooks")?;
    ensure!(
        all.len() == 2 && all.iter().any(|w| w["endpointId"] == id.as_str()),
        "{listed}"
    );
    ensure!(
        all.iter().all(|w| w.get("secret").is_none()),
        "no secret in a list: {listed}"
    );

    let key = generate_key(port, &token).await?;
    register(&nats.url(), &key, "laptop", None)?;
    ok(
        port,
        &token,
        "POST",
        "/api/v2/tailnet/-/users",
        Some(json!({"loginName": "m@example.com", "role": "member"})),
    )
    .await?;
    until("keyCreated, nodeCreated, userCreated", || {
        inbox.events().len() >= 3
    })
    .await?;
    ensure!(
        inbox.types() == ["keyCreated", "nodeCreated", "userCreated"],
        "{:?}",
        inbox.types()
    );
    ensure!(signed_with(&inbox, &[&secret]).iter().all(|i| *i == 0));
    let first = &inbox.events()[1];
    ensure!(
        first["tailnet"] == "example.com" && first["version"] == 1,
        "{first}"
    );
    ensure!(first["data"]["deviceName"] == "laptop", "{first}");

    let rotated = ok(
        port,
        &token,
        "POST",
        &format!("/api/v2/webhooks/{id}/rotate"),
        None,
    )
    .await?;
    let new_secret = rotated["secret"].as_str().context("secret")?.to_owned();
    ensure!(new_secret != secret);
    let before = inbox.got.lock().expect("lock").len();
    generate_key(port, &token).await?;
    until("keyCreated after the rotation", || {
        inbox.events().len() >= 4
    })
    .await?;
    let which = signed_with(&inbox, &[&secret, &new_secret]);
    ensure!(which[before..].iter().all(|i| *i == 1), "{which:?}");

    let a = http(
        port,
        "POST",
        &format!("/api/v2/webhooks/{id}/test"),
        &token,
        None,
    )
    .await?;
    ensure!(a.status == 202, "test: {} {}", a.status, a.body);
    until("the test event", || {
        inbox.types().last().map(String::as_str) == Some("test")
    })
    .await?;

    // R21: an Auditor reads webhooks (never their secret), a Member neither reads nor creates.
    let mut tokens = Vec::new();
    for (login, role) in [("aud@example.com", "auditor"), ("m2@example.com", "member")] {
        let u = ok(
            port,
            &token,
            "POST",
            "/api/v2/tailnet/-/users",
            Some(json!({"loginName": login, "role": role})),
        )
        .await?;
        tokens.push(u["apiKey"].as_str().context("apiKey")?.to_owned());
    }
    let a = http(port, "GET", "/api/v2/tailnet/-/webhooks", &tokens[0], None).await?;
    ensure!(a.status == 200, "auditor reads: {} {}", a.status, a.body);
    let a = http(
        port,
        "POST",
        &format!("/api/v2/webhooks/{id}/rotate"),
        &tokens[0],
        None,
    )
    .await?;
    ensure!(a.status == 403, "auditor rotates: {} {}", a.status, a.body);
    let a = http(port, "GET", "/api/v2/tailnet/-/webhooks", &tokens[1], None).await?;
    ensure!(a.status == 403, "member reads: {} {}", a.status, a.body);
    let a = http(
        port,
        "POST",
        "/api/v2/tailnet/-/webhooks",
        &tokens[1],
        Some(json!({"endpointUrl": url, "subscriptions": []})),
    )
    .await?;
    ensure!(a.status == 403, "member creates: {} {}", a.status, a.body);

    // The dead endpoint's keyCreated events were dropped: in the API and in /metrics.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = ok(
            port,
            &token,
            "GET",
            &format!("/api/v2/webhooks/{dead_id}/dropped"),
            None,
        )
        .await?;
        if d["dropped"].as_array().is_some_and(|d| d.len() == 2) {
            ensure!(d["dropped"][0]["type"] == "keyCreated", "{d}");
            break;
        }
        ensure!(Instant::now() < deadline, "never dropped: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let one = ok(
        port,
        &token,
        "GET",
        &format!("/api/v2/webhooks/{dead_id}"),
        None,
    )
    .await?;
    ensure!(
        one["droppedEvents"] == 2 && one["queuedEvents"] == 0,
        "{one}"
    );
    let metrics = http(port, "GET", "/metrics", &token, None).await?;
    let text = String::from_utf8_lossy(&metrics.raw);
    ensure!(text.contains("authkeys_webhooks_dropped 2"), "{text}");
    ensure!(
        text.contains("authkeys_webhooks_delivered_total "),
        "{text}"
    );

    let a = http(
        port,
        "DELETE",
        &format!("/api/v2/webhooks/{id}"),
        &token,
        None,
    )
    .await?;
    ensure!(a.status == 200, "delete: {} {}", a.status, a.body);
    let a = http(port, "GET", &format!("/api/v2/webhooks/{id}"), &token, None).await?;
    ensure!(a.status == 404, "deleted: {} {}", a.status, a.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_the_webhooks_process_killed_mid_batch_loses_nothing() -> anyhow::Result<()> {
    // The split topology: command, project, api, webhooks. The receiver holds the first
    // delivery open; the webhooks process is SIGKILLed with that batch in flight and started
    // again: every event arrives, in order.
    let (nats, dir, data, token) = bootstrapped("command")?;
    let port = free_port()?;
    let hooks_data = dir.path().join("webhooks");
    let spawn_webhooks = || {
        authkeys()
            .args(["webhooks", "--nats", &nats.url()])
            .args(FAST_RETRIES)
            .arg("--data")
            .arg(&hooks_data)
            .spawn()
    };
    let mut procs = Procs(vec![
        authkeys()
            .args(["command", "--nats", &nats.url()])
            .arg("--data")
            .arg(&data)
            .spawn()?,
        authkeys()
            .args(["project", "--nats", &nats.url()])
            .arg("--data")
            .arg(dir.path().join("views"))
            .spawn()?,
        authkeys()
            .args(["api", "--nats", &nats.url(), "--webhooks-allow-private"])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--hashing-key")
            .arg(data.join("hashing.key"))
            .spawn()?,
        spawn_webhooks()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/webhooks", &token).await?;
    let (url, inbox) = receiver().await;
    inbox.hang_first.store(1, Ordering::SeqCst);
    ok(
        port,
        &token,
        "POST",
        "/api/v2/tailnet/-/webhooks",
        Some(json!({"endpointUrl": url, "subscriptions": ["keyCreated"]})),
    )
    .await?;
    let mut want = Vec::new();
    for _ in 0..3 {
        let key = generate_key(port, &token).await?;
        want.push(key.split('-').nth(2).context("key id")?.to_owned());
    }
    // The first request is held open by the receiver: the batch is in flight.
    until("the first delivery in flight", || {
        inbox.entered.load(Ordering::SeqCst) >= 1
    })
    .await?;
    ensure!(inbox.events().is_empty());
    let mut killed = procs.0.pop().context("the webhooks process")?;
    killed.kill()?;
    killed.wait()?;
    procs.0.push(spawn_webhooks()?);
    for _ in 0..2 {
        let key = generate_key(port, &token).await?;
        want.push(key.split('-').nth(2).context("key id")?.to_owned());
    }
    until("every keyCreated", || inbox.events().len() >= want.len()).await?;
    let got: Vec<String> = inbox
        .events()
        .iter()
        .map(|e| e["data"]["keyID"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(got == want, "got {got:?}, want {want:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_private_targets_and_bad_urls_are_refused_at_create() -> anyhow::Result<()> {
    // The gateway without --webhooks-allow-private: loopback, the metadata address, private
    // and CGNAT hosts, user info and non-http URLs are 400 naming endpointUrl; nothing is
    // created.
    let stack = api_support::Stack::start().await?;
    let token = stack.owner_token.clone();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://100.100.100.100/",
        "http://[::1]/",
        "https://user:pw@example.com/",
        "ftp://example.com/",
    ] {
        let a = stack
            .call(
                "POST",
                "/api/v2/tailnet/-/webhooks",
                Some(&token),
                Some(json!({"endpointUrl": url, "subscriptions": ["nodeCreated"]})),
            )
            .await?;
        ensure!(a.status == 400, "{url}: {} {}", a.status, a.body);
        ensure!(
            a.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("endpointUrl"),
            "{url}: {}",
            a.body
        );
    }
    stack.stop().await
}

/// The PyPI client's install (`make tools`: `.tools/pypi`).
fn pypi_dir() -> PathBuf {
    std::env::var_os("AUTHKEYS_PYPI").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/pypi"),
        PathBuf::from,
    )
}

async fn python(args: Vec<String>) -> anyhow::Result<Value> {
    let pypi = pypi_dir();
    ensure!(
        pypi.join("tailscale").is_dir(),
        "the PyPI tailscale client is not installed in {}: run `make tools`",
        pypi.display()
    );
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
    let script = tests.join("pypi_webhooks.py");
    let path = std::env::join_paths([pypi, tests])?;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args(args)
            .env("PYTHONPATH", path)
            .stdin(Stdio::null())
            .output()
    })
    .await??;
    ensure!(
        out.status.success(),
        "the PyPI client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("the script's report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_the_pypi_client_manages_webhooks() -> anyhow::Result<()> {
    // The PyPI client, unchanged, creates, lists, reads, updates, tests, rotates and deletes a
    // webhook against `authkeys serve`; the test event it queued reaches the receiver signed
    // with one of the two secrets it was shown.
    let (nats, _dir, data, token) = bootstrapped("data")?;
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(FAST_RETRIES)
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/webhooks", &token).await?;
    let (url, inbox) = receiver().await;
    let report = python(vec!["manage".into(), port.to_string(), token.clone(), url]).await?;
    let id = report["endpointId"]
        .as_str()
        .context("endpointId")?
        .to_owned();
    let secrets = [
        report["secret"].as_str().context("secret")?.to_owned(),
        report["rotatedSecret"]
            .as_str()
            .context("rotatedSecret")?
            .to_owned(),
    ];
    until("the test event", || inbox.types() == ["test"]).await?;
    ensure!(
        signed_with(&inbox, &[&secrets[0], &secrets[1]])
            .iter()
            .all(|i| *i < 2)
    );
    python(vec!["delete".into(), port.to_string(), token, id]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r23_node_key_expiring_in_one_day_reaches_the_receiver() -> anyhow::Result<()> {
    // With devicesKeyDurationDays = 1, a node's key expires a day after it registers, so its
    // nodeKeyExpiringInOneDay notice is due at once: the webhooks role's schedule fires it
    // (after folding up to the log's head) to the subscribed endpoint, after its nodeCreated.
    let (nats, _dir, data, token) = bootstrapped("data")?;
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(FAST_RETRIES)
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/webhooks", &token).await?;
    let (url, inbox) = receiver().await;
    ok(
        port,
        &token,
        "POST",
        "/api/v2/tailnet/-/webhooks",
        Some(json!({"endpointUrl": url, "subscriptions": ["nodeCreated", "nodeKeyExpiringInOneDay"]})),
    )
    .await?;
    ok(
        port,
        &token,
        "PATCH",
        "/api/v2/tailnet/-/settings",
        Some(json!({"devicesKeyDurationDays": 1})),
    )
    .await?;
    let key = generate_key(port, &token).await?;
    register(&nats.url(), &key, "laptop", None)?;
    until("nodeCreated, nodeKeyExpiringInOneDay", || {
        inbox.events().len() >= 2
    })
    .await?;
    ensure!(
        inbox.types() == ["nodeCreated", "nodeKeyExpiringInOneDay"],
        "{:?}",
        inbox.types()
    );
    let notice = &inbox.events()[1];
    ensure!(notice["data"]["deviceName"] == "laptop", "{notice}");
    Ok(())
}

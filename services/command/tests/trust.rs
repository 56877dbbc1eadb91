//! Trust boundaries (issue 11): the security review's findings that concern the command role,
//! one test each, named after the finding. The service runs in-process over a real log in a temp
//! data dir, with an injected clock that the tests move (no NATS: `CommandService::handle` is
//! the whole service minus the transport, and what these findings are about lies behind it).

mod command_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, ensure};
use authkeys_command::bootstrap::bootstrap;
use authkeys_command::mint::{self, HASHING_KEY_FILE};
use authkeys_command::{CommandConfig, CommandService};
use authkeys_domain::State;
use authkeys_events::{EventType, Seq, Timestamp};
use authkeys_log::{Log, LogConfig};
use authkeys_protocol::subject;
use command_support::{InProcess, admin_body};
use serde_json::{Value, json};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// A command service over a bootstrapped tailnet, on a clock the test moves.
struct Svc {
    dir: tempfile::TempDir,
    now_ms: Arc<AtomicI64>,
    service: CommandService,
    tailnet: String,
    owner: String,
}

impl Svc {
    async fn start(config: CommandConfig) -> anyhow::Result<Svc> {
        let dir = tempfile::tempdir()?;
        let InProcess {
            made,
            now_ms,
            service,
            ..
        } = InProcess::start(dir.path(), config).await?;
        Ok(Svc {
            dir,
            now_ms,
            service,
            tailnet: made.tailnet_id.to_string(),
            owner: made.owner_id.to_string(),
        })
    }

    /// A service with the default config, and a reusable key generated on it (the reply).
    async fn with_reusable_key(
        command_id: &str,
        expiry_seconds: u32,
    ) -> anyhow::Result<(Svc, Value)> {
        let svc = Svc::start(CommandConfig::default()).await?;
        let key = svc
            .generate_ok(command_id, json!({"reusable": true}), expiry_seconds)
            .await?;
        Ok((svc, key))
    }

    /// Registers node `n` with the secret of the generate-key reply `key`; returns the reply and
    /// the node's id.
    async fn register_with(
        &self,
        key: &Value,
        request_id: &str,
        n: u128,
    ) -> anyhow::Result<(Value, String)> {
        let secret = secret_of(key, "/key/key").context("secret")?;
        let reg = self
            .ok(subject::REGISTER, &register_body(request_id, &secret, n))
            .await?;
        let node_id = reg["device"]["nodeId"]
            .as_str()
            .context("node id")?
            .to_owned();
        Ok((reg, node_id))
    }

    fn log(&self) -> &Log<State> {
        self.service.log()
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.now_ms.load(Ordering::SeqCst)).expect("in range")
    }

    fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The reply to `payload` on `subject`, as the `test` registrar, as JSON.
    async fn call(&self, subject: &str, payload: &Value) -> anyhow::Result<Value> {
        let bytes = self
            .service
            .handle(subject, "test", &serde_json::to_vec(payload)?)
            .await;
        serde_json::from_slice(&bytes).context("a JSON reply")
    }

    /// The reply, which must be `ok`.
    async fn ok(&self, subject: &str, payload: &Value) -> anyhow::Result<Value> {
        let reply = self.call(subject, payload).await?;
        ensure!(reply["ok"] == json!(true), "{subject} refused: {reply}");
        Ok(reply)
    }

    /// An admin request as the Owner.
    fn admin(&self, command_id: &str, fields: Value) -> Value {
        admin_body(command_id, &self.tailnet, &self.owner, fields)
    }

    fn generate(&self, command_id: &str, create: Value, expiry_seconds: u32) -> Value {
        self.admin(
            command_id,
            json!({"capabilities": {"devices": {"create": create}}, "expirySeconds": expiry_seconds}),
        )
    }

    /// A generate-key as the Owner, which must be `ok`.
    async fn generate_ok(
        &self,
        command_id: &str,
        create: Value,
        expiry_seconds: u32,
    ) -> anyhow::Result<Value> {
        self.ok(
            subject::GENERATE_KEY,
            &self.generate(command_id, create, expiry_seconds),
        )
        .await
    }

    fn count(&self, ty: EventType) -> anyhow::Result<usize> {
        let page = self.log().read(Seq::FIRST, 100_000)?;
        let mut n = 0;
        for ev in &page {
            n += usize::from(ev.envelope()?.event_type() == ty);
        }
        Ok(n)
    }
}

fn node_key(n: u128) -> String {
    format!("nodekey:{n:064x}")
}

fn register_body(request_id: &str, auth_key: &str, n: u128) -> Value {
    json!({
        "requestId": request_id,
        "authKey": auth_key,
        "nodeKey": node_key(n),
        "hostname": "node",
        "os": "linux",
    })
}

fn secret_of(reply: &Value, pointer: &str) -> Option<String> {
    reply
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn expect_code(reply: &Value, code: &str) -> anyhow::Result<String> {
    ensure!(
        reply["ok"] == json!(false) && reply["error"]["code"] == json!(code),
        "expected {code}, got {reply}"
    );
    Ok(reply["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_03_replays_return_a_secret_only_within_the_window_and_while_usable()
-> anyhow::Result<()> {
    // A retried generate-key, add-user or issue-token answers with its secret only within
    // `secret_replay_window_ms_max` (24 h) of the first answer and while the key or token is
    // usable; later, or once it is revoked, spent or expired, it answers the same object
    // without the secret. Retries still write nothing.
    let config = CommandConfig {
        token_lifetime_days: 2,
        ..CommandConfig::default()
    };
    assert_eq!(config.secret_replay_window_ms_max, 24 * HOUR_MS as u64);
    let svc = Svc::start(config).await?;
    let reusable = json!({"reusable": true});
    let ninety_days = 7_776_000;

    // generate-key: the secret on the first answer and on a retry within the window…
    let first = svc.generate_ok("g1", reusable.clone(), ninety_days).await?;
    let secret = secret_of(&first, "/key/key").context("the first answer has the secret")?;
    let head = svc.log().head().seq;
    svc.advance_ms(23 * HOUR_MS);
    let retry = svc.generate_ok("g1", reusable.clone(), ninety_days).await?;
    assert_eq!(secret_of(&retry, "/key/key"), Some(secret.clone()));
    // …but not after it: the same key, without `key`, and nothing written.
    svc.advance_ms(HOUR_MS + 1);
    let late = svc.generate_ok("g1", reusable.clone(), ninety_days).await?;
    assert_eq!(late["key"]["id"], first["key"]["id"]);
    assert!(late["key"].get("key").is_none(), "{late}");
    assert!(!late.to_string().contains("tskey-"), "{late}");
    assert_eq!(svc.log().head().seq, head);

    // A revoked key's secret is not replayed, even within the window.
    let k2 = svc.generate_ok("g2", reusable.clone(), ninety_days).await?;
    let k2_id = k2["key"]["id"].as_str().context("key id")?.to_owned();
    svc.ok(
        subject::REVOKE_KEY,
        &svc.admin("r2", json!({"keyId": k2_id})),
    )
    .await?;
    let k2_retry = svc.generate_ok("g2", reusable, ninety_days).await?;
    assert!(k2_retry["key"].get("key").is_none(), "{k2_retry}");

    // Nor a spent one-off key's.
    let one_off = json!({"reusable": false});
    let k3 = svc.generate_ok("g3", one_off.clone(), ninety_days).await?;
    let k3_secret = secret_of(&k3, "/key/key").context("secret")?;
    svc.ok(subject::REGISTER, &register_body("reg-3", &k3_secret, 3))
        .await?;
    let k3_retry = svc.generate_ok("g3", one_off, ninety_days).await?;
    assert!(k3_retry["key"].get("key").is_none(), "{k3_retry}");

    // add-user and issue-token: the same rule for `apiKey`.
    let add = |id: &str| {
        svc.admin(
            id,
            json!({"loginName": "bob@example.com", "role": "member"}),
        )
    };
    let issue = |id: &str| svc.admin(id, json!({}));
    let user = svc.ok(subject::ADD_USER, &add("u1")).await?;
    let user_token = secret_of(&user, "/apiKey").context("the new user's token")?;
    let token = svc.ok(subject::ISSUE_TOKEN, &issue("t1")).await?;
    let api_key = secret_of(&token, "/apiKey").context("the new token")?;
    svc.advance_ms(HOUR_MS);
    let user_retry = svc.ok(subject::ADD_USER, &add("u1")).await?;
    assert_eq!(secret_of(&user_retry, "/apiKey"), Some(user_token));
    let token_retry = svc.ok(subject::ISSUE_TOKEN, &issue("t1")).await?;
    assert_eq!(secret_of(&token_retry, "/apiKey"), Some(api_key));
    let head = svc.log().head().seq;
    svc.advance_ms(24 * HOUR_MS);
    let user_late = svc.ok(subject::ADD_USER, &add("u1")).await?;
    assert!(user_late.get("apiKey").is_none(), "{user_late}");
    assert_eq!(user_late["user"], user["user"]);
    let token_late = svc.ok(subject::ISSUE_TOKEN, &issue("t1")).await?;
    assert!(token_late.get("apiKey").is_none(), "{token_late}");
    assert_eq!(token_late["tokenId"], token["tokenId"]);
    assert_eq!(token_late["expires"], token["expires"]);
    assert_eq!(svc.log().head().seq, head);

    // An expired token's secret is not replayed either, whatever the window says.
    let wide = CommandConfig {
        token_lifetime_days: 1,
        secret_replay_window_ms_max: 30 * 24 * HOUR_MS as u64,
        ..CommandConfig::default()
    };
    let svc = Svc::start(wide).await?;
    let t = svc.ok(subject::ISSUE_TOKEN, &issue_in(&svc, "t2")).await?;
    assert!(secret_of(&t, "/apiKey").is_some());
    svc.advance_ms(24 * HOUR_MS + 1);
    let t_late = svc.ok(subject::ISSUE_TOKEN, &issue_in(&svc, "t2")).await?;
    assert!(t_late.get("apiKey").is_none(), "{t_late}");
    Ok(())
}

fn issue_in(svc: &Svc, id: &str) -> Value {
    svc.admin(id, json!({}))
}

/// An ephemeral node registered with its own key, then reported disconnected now; returns its
/// node id.
async fn disconnected_ephemeral_node(svc: &Svc) -> anyhow::Result<String> {
    let key = svc
        .generate_ok(
            "eph",
            json!({"reusable": true, "ephemeral": true}),
            7_776_000,
        )
        .await?;
    let (_, node_id) = svc.register_with(&key, "reg-eph", 7).await?;
    // The forged (or real) report: anyone who may publish on the subject can send it.
    svc.ok(
        subject::NODE_DISCONNECTED,
        &json!({"requestId": "disc-1", "nodeKey": node_key(7)}),
    )
    .await?;
    Ok(node_id)
}

fn inactivity_fire(
    svc: &Svc,
    request_id: &str,
    node_id: &str,
    at: Timestamp,
    due: Timestamp,
) -> Value {
    json!({
        "requestId": request_id,
        "tailnet": svc.tailnet,
        "due": {
            "kind": "ephemeralInactivity",
            "nodeId": node_id,
            "disconnectedAt": at.to_string(),
            "due": due.to_string(),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_04_ephemeral_removal_cannot_be_forced() -> anyhow::Result<()> {
    // A `node.disconnected` followed at once by a `timer.fire` naming `due = disconnectedAt`
    // must not delete an ephemeral node: the command side checks lastSeen + its own inactivity
    // timeout (default 30 min, the timers' default too) and answers `not_due` until then.
    let config = CommandConfig::default();
    assert_eq!(config.ephemeral_inactivity_ms, 30 * MINUTE_MS as u64);
    let svc = Svc::start(config).await?;
    let node_id = disconnected_ephemeral_node(&svc).await?;
    let at = svc.now();
    let head = svc.log().head().seq;

    let forced = svc
        .call(
            subject::TIMER,
            &inactivity_fire(&svc, "forged-1", &node_id, at, at),
        )
        .await?;
    let message = expect_code(&forced, "not_due")?;
    let deadline = Timestamp::from_unix_ms(at.unix_ms() + 30 * MINUTE_MS)?;
    assert!(message.contains(&deadline.to_string()), "{message}");
    svc.advance_ms(29 * MINUTE_MS);
    let early = svc
        .call(
            subject::TIMER,
            &inactivity_fire(&svc, "forged-2", &node_id, at, at),
        )
        .await?;
    expect_code(&early, "not_due")?;
    assert_eq!(
        svc.log().head().seq,
        head,
        "a refused firing writes nothing"
    );
    assert_eq!(svc.count(EventType::NodeDeleted)?, 0);

    // At lastSeen + 30 min the node goes, as R02 says.
    svc.advance_ms(MINUTE_MS);
    let fired = svc
        .ok(
            subject::TIMER,
            &inactivity_fire(&svc, "real-1", &node_id, at, deadline),
        )
        .await?;
    assert_eq!(fired["fired"], json!(true));
    assert_eq!(svc.count(EventType::NodeDeleted)?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_05_timer_firings_cannot_be_suppressed() -> anyhow::Result<()> {
    // The timers' request ids are predictable (`timer-<kind>-<id>-<seq>-<deadline>`). An
    // attacker who sends that id first, with a bogus deadline (which decides nothing), must not
    // turn the real firing into a replay of that empty result or into a `conflict`: the real
    // firing still appends KeyExpired, and NodeExpired.
    let (svc, key) = Svc::with_reusable_key("k60", 60).await?;
    let key_id = key["key"]["id"].as_str().context("key id")?.to_owned();
    let expires = Timestamp::parse(key["key"]["expires"].as_str().context("expires")?)?;
    let key_seq = svc.log().head().seq;
    let predicted = format!("timer-key-{key_id}-{key_seq}-{}", expires.unix_ms());
    // A timer request under `id` for the thing `what` names, due at `due`.
    let fire = |id: &str, what: Value, due: Timestamp| {
        let mut due_json = what;
        due_json["expires"] = json!(due.to_string());
        json!({"requestId": id, "tailnet": svc.tailnet, "due": due_json})
    };
    let key_fire = |due: Timestamp| {
        fire(
            &predicted,
            json!({"kind": "keyExpiry", "keyId": key_id}),
            due,
        )
    };

    // A node whose key expires (the tailnet's default duration), likewise attacked.
    let (reg, node_id) = svc.register_with(&key, "reg-1", 1).await?;
    let node_expires = Timestamp::parse(reg["device"]["expires"].as_str().context("expires")?)?;
    let node_seq = svc.log().head().seq - 1; // NodeRegistered, then KeyUsed
    let predicted_node = format!("timer-node-{node_id}-{node_seq}-{}", node_expires.unix_ms());
    let node_fire = |due: Timestamp| {
        fire(
            &predicted_node,
            json!({"kind": "nodeKeyExpiry", "nodeId": node_id}),
            due,
        )
    };

    // The attack, before the deadlines: the predicted ids with bogus deadlines in the past.
    let bogus = svc.now();
    let head = svc.log().head().seq;
    for attack in [key_fire(bogus), node_fire(bogus)] {
        let reply = svc.ok(subject::TIMER, &attack).await?;
        assert_eq!(reply["fired"], json!(false), "{reply}");
    }
    assert_eq!(svc.log().head().seq, head);

    // The real firings, when due: both append.
    svc.advance_ms(61_000);
    let fired = svc.ok(subject::TIMER, &key_fire(expires)).await?;
    assert_eq!(fired["fired"], json!(true), "{fired}");
    assert_eq!(svc.count(EventType::KeyExpired)?, 1);
    svc.now_ms
        .store(node_expires.unix_ms() + 1, Ordering::SeqCst);
    let fired = svc.ok(subject::TIMER, &node_fire(node_expires)).await?;
    assert_eq!(fired["fired"], json!(true), "{fired}");
    assert_eq!(svc.count(EventType::NodeExpired)?, 1);

    // A firing repeated after it appended (a crash before the schedule's update) appends
    // nothing: `decide` re-checks the state.
    let again = svc.ok(subject::TIMER, &key_fire(expires)).await?;
    assert_eq!(again["fired"], json!(false));
    let again = svc.ok(subject::TIMER, &node_fire(node_expires)).await?;
    assert_eq!(again["fired"], json!(false));
    assert_eq!(svc.count(EventType::KeyExpired)?, 1);
    assert_eq!(svc.count(EventType::NodeExpired)?, 1);
    Ok(())
}

#[test]
fn finding_07_a_missing_or_foreign_hashing_key_beside_a_log_is_refused() -> anyhow::Result<()> {
    // A missing `hashing.key` beside an existing log is never recreated (that would lock out
    // every key and token): the start is refused and names the file. Another key is refused
    // too: the log records a digest of the one it was made with, as it does the signing key.
    let dir = tempfile::tempdir()?;
    bootstrap(dir.path(), "example.com", "owner@example.com")?;
    let key_path = dir.path().join(HASHING_KEY_FILE);
    let original = std::fs::read(&key_path)?;
    let open = || mint::open_log(dir.path(), LogConfig::in_dir(dir.path()));

    std::fs::remove_file(&key_path)?;
    let missing = format!("{:#}", open().expect_err("a missing key is refused"));
    assert!(
        missing.contains(&key_path.display().to_string()) && missing.contains("missing"),
        "{missing}"
    );
    assert!(!key_path.exists(), "the key is not recreated");
    let again = bootstrap(dir.path(), "other.example", "owner@example.com")
        .expect_err("bootstrap refuses too");
    assert!(format!("{again:#}").contains("missing"));
    assert!(!key_path.exists());

    std::fs::write(&key_path, format!("{}\n", "ab".repeat(32)))?;
    let foreign = format!("{:#}", open().expect_err("another key is refused"));
    assert!(
        foreign.contains(&key_path.display().to_string()) && foreign.contains("does not belong"),
        "{foreign}"
    );

    std::fs::write(&key_path, &original)?;
    let (_, log) = open()?;
    log.close();

    // A log made before keys were bound takes the key it is next opened with, and from then on
    // refuses another.
    let old = tempfile::tempdir()?;
    Log::open(LogConfig::in_dir(old.path()), State::default())?.close();
    let old_key = old.path().join(HASHING_KEY_FILE);
    std::fs::write(&old_key, format!("{}\n", "cd".repeat(32)))?;
    let (_, log) = mint::open_log(old.path(), LogConfig::in_dir(old.path()))?;
    log.close();
    std::fs::write(&old_key, format!("{}\n", "ef".repeat(32)))?;
    assert!(mint::open_log(old.path(), LogConfig::in_dir(old.path())).is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_spoofed_names_are_bad_requests_that_write_nothing() -> anyhow::Result<()> {
    // Host names, login names and the OS refuse bidi and zero-width characters (Unicode Cf):
    // a `bad_request` naming the field, and nothing written.
    let (svc, key) = Svc::with_reusable_key("k1", 7_776_000).await?;
    let secret = secret_of(&key, "/key/key").context("secret")?;
    let head = svc.log().head().seq;
    for (i, spoof) in [
        "web\u{202e}1",
        "web\u{200b}1",
        "\u{feff}web",
        "web\u{2066}1\u{2069}",
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = register_body(&format!("reg-{i}"), &secret, 10 + i as u128);
        body["hostname"] = json!(spoof);
        let reply = svc.call(subject::REGISTER, &body).await?;
        let message = expect_code(&reply, "bad_request")?;
        assert!(message.starts_with("hostname"), "{message}");

        let mut body = register_body(&format!("reg-os-{i}"), &secret, 20 + i as u128);
        body["os"] = json!(spoof);
        let reply = svc.call(subject::REGISTER, &body).await?;
        assert!(expect_code(&reply, "bad_request")?.starts_with("os"));

        let add = svc.admin(
            &format!("u-{i}"),
            json!({"loginName": format!("alice{spoof}@example.com"), "role": "member"}),
        );
        let reply = svc.call(subject::ADD_USER, &add).await?;
        assert!(expect_code(&reply, "bad_request")?.starts_with("loginName"));
    }
    assert_eq!(svc.log().head().seq, head);
    let _ = svc.dir.path();
    Ok(())
}

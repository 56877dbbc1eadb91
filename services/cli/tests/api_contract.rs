//! HTTP contract tests of the API gateway (SPEC §5) against the real stack: nats-server, the
//! command service with its log, relay and log reads, the projection views, and the gateway on
//! port 0. Each test checks statuses, body shapes, field names and RFC 3339 times.

mod api_support;

use anyhow::{Context, ensure};
use api_support::{Stack, is_rfc3339};
use bytes::Bytes;
use serde_json::{Value, json};

fn fields(v: &Value) -> Vec<String> {
    let mut f: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    f.sort();
    f
}

fn message_only(v: &Value) -> bool {
    fields(v) == ["message"] && v["message"].is_string()
}

/// `method path` as `token`, which must answer `status` with a body that is exactly
/// {"message"}; returns that body.
async fn refused(
    s: &Stack,
    status: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let a = s.call(method, path, token, body).await?;
    ensure!(a.status == status && message_only(&a.body), "{a:?}");
    Ok(a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_key_lifecycle_secret_once_revoked_stays_listed_second_delete_404() -> anyhow::Result<()>
{
    // Create a key: the secret is in the create response only; list and get never show it.
    // Revoke it: it stays listed with invalid:true and revoked set (R12); a second revoke is 404.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let key = s
        .create_key(&t, json!({ "reusable": true, "tags": null }))
        .await?;
    let id = key["id"].as_str().context("id")?.to_owned();
    ensure!(
        key["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("tskey-auth-")),
        "{key}"
    );
    for f in ["created", "expires", "updated"] {
        ensure!(is_rfc3339(&key[f]), "{f}: {key}");
    }
    ensure!(
        key["keyType"] == "auth" && key["invalid"] == false && key["expirySeconds"] == 7_776_000
    );
    ensure!(key["capabilities"]["devices"]["create"]["reusable"] == true);
    ensure!(key["tags"] == json!([]) && key["uses"] == 0 && key["userId"].is_string());
    ensure!(key.get("revoked").is_none(), "{key}");

    let keys = "/api/v2/tailnet/-/keys";
    let list = s.expect(200, "GET", keys, &t, None).await?;
    ensure!(fields(&list) == ["keys"], "{list}");
    let listed = list["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .find(|k| k["id"] == id.as_str())
        .context("created key is listed")?;
    ensure!(listed.get("key").is_none(), "secret listed: {listed}");
    let got = s.key(&t, &id).await?;
    ensure!(got.get("key").is_none(), "secret shown by get: {got}");
    let mut expected = key.clone();
    expected.as_object_mut().context("object")?.remove("key");
    ensure!(
        got == expected,
        "get {got} != create minus secret {expected}"
    );

    let del = s
        .call("DELETE", &format!("{keys}/{id}"), Some(&t), None)
        .await?;
    ensure!(del.status == 200, "delete: {}", del.status);
    let got = s.key(&t, &id).await?;
    ensure!(
        got["invalid"] == true && is_rfc3339(&got["revoked"]),
        "{got}"
    );
    let list = s.expect(200, "GET", keys, &t, None).await?;
    ensure!(
        list["keys"]
            .as_array()
            .context("keys")?
            .iter()
            .any(|k| k["id"] == id.as_str() && k["invalid"] == true)
    );
    refused(&s, 404, "DELETE", &format!("{keys}/{id}"), Some(&t), None).await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_message_objects_with_their_status() -> anyhow::Result<()> {
    // Every refusal: the status of SPEC §5 and a body that is exactly {"message"}.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let keys = "/api/v2/tailnet/-/keys";
    let create = json!({ "capabilities": { "devices": { "create": {} } } });

    // 401: no credentials, garbage, a well-formed but unknown token, a re-cased token.
    refused(&s, 401, "GET", keys, None, None).await?;
    refused(&s, 401, "GET", keys, Some("nonsense"), None).await?;
    let unknown = authkeys_domain::secret::issue(
        authkeys_domain::secret::SecretKind::Api,
        "tUnknownToken0000",
        &[5; 32],
        &[6; 32],
    );
    refused(&s, 401, "GET", keys, Some(&unknown.text), None).await?;
    let a = s.call("GET", keys, Some(&t.to_uppercase()), None).await?;
    ensure!(a.status == 401);

    // Basic with the token as user name works.
    let basic = api_basic(&t);
    let a = s
        .raw(
            "GET",
            keys,
            &[("authorization".into(), basic)],
            Bytes::new(),
        )
        .await?;
    ensure!(a.status == 200, "basic: {a:?}");

    // 400: wrong content type, not JSON, unknown field, R08 expiry out of range, bad tag.
    let auth = ("authorization".to_owned(), format!("Bearer {t}"));
    let a = s
        .raw(
            "POST",
            keys,
            &[auth.clone(), ("content-type".into(), "text/plain".into())],
            Bytes::from(create.to_string()),
        )
        .await?;
    ensure!(a.status == 400 && message_only(&a.body), "{a:?}");
    let json_ct = ("content-type".to_owned(), "application/json".to_owned());
    let a = s
        .raw(
            "POST",
            keys,
            &[auth.clone(), json_ct.clone()],
            Bytes::from_static(b"{nope"),
        )
        .await?;
    ensure!(a.status == 400 && message_only(&a.body));
    for (body, field) in [
        (
            json!({ "capabilities": { "devices": { "create": {} } }, "x": 1 }),
            "x",
        ),
        (
            json!({ "capabilities": { "devices": { "create": {} } }, "expirySeconds": -1 }),
            "expirySeconds",
        ),
        (
            json!({ "capabilities": { "devices": { "create": {} } }, "expirySeconds": 7_776_001 }),
            "expirySeconds",
        ),
        (
            json!({ "capabilities": { "devices": { "create": { "tags": ["Tag:A"] } } } }),
            "capabilities.devices.create.tags[0]",
        ),
        (
            json!({ "capabilities": { "devices": { "create": {} } }, "description": "no_underscores" }),
            "description",
        ),
    ] {
        let before = s.log_events()?;
        let a = s.call("POST", keys, Some(&t), Some(body.clone())).await?;
        ensure!(a.status == 400 && message_only(&a.body), "{body}: {a:?}");
        ensure!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{body}: {}",
            a.body
        );
        ensure!(s.log_events()? == before, "R08: nothing written for {body}");
    }
    // 413: a body over 64 KiB.
    let big = Bytes::from(vec![b' '; 65 * 1024]);
    let a = s
        .raw("POST", keys, &[auth.clone(), json_ct.clone()], big)
        .await?;
    ensure!(a.status == 413 && message_only(&a.body), "{a:?}");
    // 404: another tailnet, an unknown route, an unknown key; 405 with a message too.
    for (status, method, path) in [
        (404, "GET", "/api/v2/tailnet/other.example/keys"),
        (404, "GET", "/api/v2/nothing"),
        (404, "GET", "/api/v2/tailnet/-/keys/k0000000000000000"),
        (405, "PUT", keys),
    ] {
        refused(&s, status, method, path, Some(&t), None).await?;
    }
    // The tailnet by name and by id are the token's tailnet.
    for tailnet in ["example.com", s.tailnet.as_str()] {
        let path = format!("/api/v2/tailnet/{tailnet}/keys");
        s.expect(200, "GET", &path, &t, None).await?;
    }
    // ?all must be a boolean.
    let all = "/api/v2/tailnet/-/keys?all=maybe";
    refused(&s, 400, "GET", all, Some(&t), None).await?;
    s.stop().await
}

fn api_basic(token: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{token}:");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_retry_returns_the_same_key() -> anyhow::Result<()> {
    // Two creates with one Idempotency-Key are one command: same id, same secret, one key.
    let s = Stack::start().await?;
    let headers = [
        (
            "authorization".to_owned(),
            format!("Bearer {}", s.owner_token),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), "retry-me-1".to_owned()),
    ];
    let body = Bytes::from(json!({ "capabilities": { "devices": { "create": {} } } }).to_string());
    let a = s
        .raw("POST", "/api/v2/tailnet/-/keys", &headers, body.clone())
        .await?;
    let b = s
        .raw("POST", "/api/v2/tailnet/-/keys", &headers, body)
        .await?;
    ensure!(a.status == 200 && b.status == 200);
    ensure!(a.body["id"] == b.body["id"] && a.body["key"] == b.body["key"]);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r07_member_create_is_403_and_writes_nothing() -> anyhow::Result<()> {
    // A Member's token authenticates, but generating a key is refused 403 (R07), and the log
    // file is byte-identical afterwards. Adding a user is Owner/Admin only: the Member gets 403.
    let s = Stack::start().await?;
    let (_, member) = s.add_user("member@example.com", "member").await?;
    ensure!(member.starts_with("tskey-api-"));
    s.settle().await?;
    let before = s.log_file()?;
    for (path, body) in [
        (
            "/api/v2/tailnet/-/keys",
            json!({ "capabilities": { "devices": { "create": {} } } }),
        ),
        (
            "/api/v2/tailnet/-/users",
            json!({ "loginName": "x@example.com", "role": "admin" }),
        ),
    ] {
        refused(&s, 403, "POST", path, Some(&member), Some(body)).await?;
    }
    ensure!(
        s.log_file()? == before,
        "a refused call changed the log file"
    );
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r09_bob_cannot_see_get_or_delete_alices_key() -> anyhow::Result<()> {
    // Alice's key is invisible to Bob: absent from his list, 404 on get and delete, exactly as
    // an unknown id; the log file is byte-identical after each refused call.
    let s = Stack::start().await?;
    let (_, alice) = s.add_user("alice@example.com", "admin").await?;
    let (_, bob) = s.add_user("bob@example.com", "admin").await?;
    let key = s.create_key(&alice, json!({})).await?;
    let id = key["id"].as_str().context("id")?.to_owned();
    s.settle().await?;
    let before = s.log_file()?;
    let keys = "/api/v2/tailnet/-/keys";
    let list = s.expect(200, "GET", keys, &bob, None).await?;
    let listed = list["keys"].as_array().context("keys")?;
    ensure!(
        listed.len() == 1 && listed[0]["keyType"] == "api",
        "Bob sees only his own API token, no auth key: {list}"
    );
    ensure!(s.log_file()? == before);
    let path = format!("{keys}/{id}");
    let got = s.call("GET", &path, Some(&bob), None).await?;
    let unknown = format!("{keys}/k0000000000000000");
    let unknown = s.call("GET", &unknown, Some(&bob), None).await?;
    ensure!(got.status == 404 && unknown.status == 404 && message_only(&got.body));
    ensure!(s.log_file()? == before);
    refused(&s, 404, "DELETE", &path, Some(&bob), None).await?;
    ensure!(
        s.log_file()? == before,
        "Bob's refused delete changed the log file"
    );
    // Alice still has it, valid.
    let mine = s.expect(200, "GET", &path, &alice, None).await?;
    ensure!(mine["invalid"] == false);
    s.stop().await
}

/// The fields of a device that was never connected (`lastSeen` omitted, as Tailscale does).
fn device_fields() -> Vec<String> {
    let mut f: Vec<String> = [
        "addresses",
        "id",
        "nodeId",
        "user",
        "name",
        "hostname",
        "clientVersion",
        "updateAvailable",
        "os",
        "created",
        "keyExpiryDisabled",
        "expires",
        "authorized",
        "isExternal",
        "machineKey",
        "nodeKey",
        "blocksIncomingConnections",
        "tags",
        "tailnetLockError",
        "tailnetLockKey",
        "isEphemeral",
        "connectedToControl",
        "multipleConnections",
        "authKeyId",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r03_device_approval_flow() -> anyhow::Result<()> {
    // With device approval on, a node registered with a plain key waits unauthorized until an
    // admin approves it over HTTP; a pre-approved key's node is authorized at once.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let path = "/api/v2/tailnet/-/settings";
    let settings = s.expect(200, "GET", path, &t, None).await?;
    ensure!(
        settings["devicesApprovalOn"] == false && settings["devicesKeyDurationDays"] == 180,
        "{settings}"
    );
    let approval = Some(json!({ "devicesApprovalOn": true }));
    let settings = s.expect(200, "PATCH", path, &t, approval).await?;
    ensure!(settings["devicesApprovalOn"] == true);
    let days = json!({ "devicesKeyDurationDays": 181 });
    refused(&s, 400, "PATCH", path, Some(&t), Some(days)).await?;

    let plain = s.create_key(&t, json!({})).await?;
    let pre = s.create_key(&t, json!({ "preauthorized": true })).await?;
    let waiting = s.register_key(&plain, "waiting").await?;
    let approved = s.register_key(&pre, "approved").await?;

    let d = s.device(&t, &waiting).await?;
    ensure!(fields(&d) == device_fields(), "{d}");
    ensure!(d["authorized"] == false && d["authKeyId"] == plain["id"] && is_rfc3339(&d["created"]));
    let d = s.device(&t, &approved).await?;
    ensure!(d["authorized"] == true);
    let path = format!("/api/v2/device/{waiting}");
    let authorize = Some(json!({ "authorized": true }));
    let d = s
        .expect(200, "POST", &format!("{path}/authorized"), &t, authorize)
        .await?;
    ensure!(d == json!({}), "Tailscale answers an empty object: {d}");
    let d = s.device(&t, &waiting).await?;
    ensure!(d["authorized"] == true, "read-your-writes: {d}");
    let list = s
        .expect(200, "GET", "/api/v2/tailnet/-/devices?fields=all", &t, None)
        .await?;
    ensure!(fields(&list) == ["devices"] && list["devices"].as_array().map(Vec::len) == Some(2));
    // The one-off key is spent (R01) and shows so.
    let k = s.key(&t, plain["id"].as_str().context("id")?).await?;
    ensure!(
        k["invalid"] == true && k["uses"] == 1 && is_rfc3339(&k["lastUsed"]),
        "{k}"
    );
    // Delete the device: 200, then 404.
    let del = s.call("DELETE", &path, Some(&t), None).await?;
    ensure!(del.status == 200);
    refused(&s, 404, "GET", &path, Some(&t), None).await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r05_r14_r15_tags_and_key_expiry() -> anyhow::Result<()> {
    // R05: a tagged key's node is tagged with expiry disabled. R14: an untagged node expires;
    // disabling then re-enabling restores its expiry; expire sets it to now. R15: changing
    // tags keeps the key-expiry setting; `tags: null` clears them.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let tagged = s
        .create_key(&t, json!({ "tags": ["tag:ci", "tag:ci", "tag:a"] }))
        .await?;
    ensure!(
        tagged["tags"] == json!(["tag:a", "tag:ci"]),
        "R05 sorted, deduplicated: {tagged}"
    );
    let plain = s.create_key(&t, json!({ "reusable": true })).await?;
    let tn = s.register_key(&tagged, "tagged").await?;
    let un = s.register_key(&plain, "untagged").await?;

    let d = s.device(&t, &tn).await?;
    ensure!(d["tags"] == json!(["tag:a", "tag:ci"]) && d["keyExpiryDisabled"] == true);
    ensure!(d["expires"] == "0001-01-01T00:00:00Z", "{d}");
    let d = s.device(&t, &un).await?;
    ensure!(d["keyExpiryDisabled"] == false && is_rfc3339(&d["expires"]));
    let original = d["expires"].clone();

    let path = format!("/api/v2/device/{un}");
    // Each op answers Tailscale's empty object; the device is read back after it.
    let post = async |action: &str, body: Value| {
        let to = format!("{path}/{action}");
        let answer = s.expect(200, "POST", &to, &t, Some(body)).await?;
        ensure!(answer == json!({}), "{action}: {answer}");
        s.expect(200, "GET", &path, &t, None).await
    };
    let d = post("key", json!({ "keyExpiryDisabled": true })).await?;
    ensure!(d["keyExpiryDisabled"] == true && d["expires"] == "0001-01-01T00:00:00Z");
    let d = post("tags", json!({ "tags": ["tag:web"] })).await?;
    ensure!(
        d["tags"] == json!(["tag:web"]) && d["keyExpiryDisabled"] == true,
        "R15: {d}"
    );
    let d = post("tags", json!({ "tags": null })).await?;
    ensure!(
        d["tags"] == json!([]) && d["keyExpiryDisabled"] == true,
        "R15: {d}"
    );
    let d = post("key", json!({ "keyExpiryDisabled": false })).await?;
    ensure!(
        d["keyExpiryDisabled"] == false && d["expires"] == original,
        "R14 restore: {d}"
    );
    let not_a_tag = Some(json!({ "tags": ["NotATag"] }));
    let tags = format!("{path}/tags");
    refused(&s, 400, "POST", &tags, Some(&t), not_a_tag).await?;

    let expired = s
        .call("POST", &format!("{path}/expire"), Some(&t), None)
        .await?;
    ensure!(
        expired.status == 200 && expired.raw.is_empty(),
        "{expired:?}"
    );
    let d = s.expect(200, "GET", &path, &t, None).await?;
    let expires = authkeys_events::Timestamp::parse(d["expires"].as_str().context("expires")?)?;
    let now = authkeys_events::decision::system_clock().now();
    ensure!(expires <= now, "R14 expire now: {d}");
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_endpoint_returns_user_and_working_token() -> anyhow::Result<()> {
    // POST /users answers the user and an apiKey that works at once (read-your-writes of the
    // identity view); a bad role is 400; healthz and metrics answer.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let it = Some(json!({ "loginName": "it@example.com", "role": "it-admin" }));
    let users = "/api/v2/tailnet/-/users";
    let u = s.expect(200, "POST", users, &t, it).await?;
    ensure!(
        fields(&u) == ["apiKey", "id", "loginName", "role"] && u["role"] == "it-admin",
        "{u}"
    );
    let token = u["apiKey"].as_str().context("apiKey")?;
    s.create_key(token, json!({})).await?;
    let king = Some(json!({ "loginName": "x@example.com", "role": "king" }));
    let a = refused(&s, 400, "POST", users, Some(&t), king).await?;
    ensure!(a["message"].as_str().is_some_and(|m| m.starts_with("role")));
    let m = s.raw("GET", "/metrics", &[], Bytes::new()).await?;
    let text = String::from_utf8_lossy(&m.raw);
    ensure!(
        m.status == 200 && text.contains("authkeys_http_requests_total{"),
        "{text}"
    );
    ensure!(text.contains(&format!(
        "authkeys_nats_request_seconds_bucket{{subject=\"{}\"",
        authkeys_protocol::subject::ADD_USER
    )));
    // The command service's counters and the relay's lag come through authkeys.status; the
    // views' lag in ms is the gateway's own observation.
    let value = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    };
    ensure!(
        value("authkeys_commands_total").is_some_and(|n| n >= 1),
        "{text}"
    );
    ensure!(
        value("authkeys_events_total").is_some_and(|n| n >= 1),
        "{text}"
    );
    ensure!(value("authkeys_log_head").is_some_and(|n| n >= 1), "{text}");
    ensure!(value("authkeys_relay_lag_events").is_some(), "{text}");
    ensure!(
        value("authkeys_gateway_projection_lag_ms").is_some(),
        "{text}"
    );
    s.stop().await
}

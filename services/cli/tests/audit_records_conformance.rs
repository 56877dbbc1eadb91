//! The configuration audit log in Tailscale's record shape, through the real stack (nats-server,
//! command service, views, gateway): changes made over the HTTP API and registrations,
//! re-authentications and connection reports sent over NATS as a registrar does, then
//! `GET /api/v2/tailnet/-/logging/configuration` read back record by record, and its `actor`,
//! `target` and `event` filters (Tailscale's query parameters, each repeatable) narrowing the
//! same answer.

mod api_support;

use anyhow::{Context, bail, ensure};
use api_support::Stack;
use authkeys_protocol::subject;
use serde_json::{Value, json};

const BASE: &str = "/api/v2/tailnet/-/logging/configuration";
const WINDOW: &str = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z";

/// Registers (or re-authenticates) the node with `node_key` over NATS; returns the device.
async fn register(
    s: &Stack,
    request_id: &str,
    auth_key: &str,
    node_key: &str,
    hostname: &str,
) -> anyhow::Result<Value> {
    let request = json!({
        "requestId": request_id, "authKey": auth_key, "nodeKey": node_key,
        "hostname": hostname, "os": "linux",
    });
    let reply = s
        .client
        .request(subject::REGISTER, serde_json::to_vec(&request)?.into())
        .await?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    if v["ok"] != json!(true) {
        bail!("registration refused: {v}");
    }
    Ok(v["device"].clone())
}

/// The answer's records for `query` (after the window), as the auditor.
async fn logs(s: &Stack, auditor: &str, query: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("{BASE}?{WINDOW}{query}");
    let answer = s.expect(200, "GET", &path, auditor, None).await?;
    ensure!(
        answer["version"] == "1.1" && answer["tailnet"] == "example.com",
        "{answer}"
    );
    Ok(answer["logs"].as_array().context("logs")?.clone())
}

/// `TARGET_TYPE.ACTION[.PROPERTY]` of a record.
fn event(r: &Value) -> String {
    let mut name = format!(
        "{}.{}",
        r["target"]["type"].as_str().unwrap_or("?"),
        r["action"].as_str().unwrap_or("?")
    );
    if let Some(p) = r["target"]["property"].as_str() {
        name = format!("{name}.{p}");
    }
    name
}

/// The record without the fields that differ per run (checked against the log elsewhere).
fn stable(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        for f in ["eventTime", "eventGroupID", "seq", "hash"] {
            o.remove(f);
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_tailscales_and_actor_target_event_filters_narrow_them() -> anyhow::Result<()> {
    // Proves that registrations, re-authentications and connection reports sent over NATS and
    // changes made over HTTP read back as Tailscale's records (verbs, target types and
    // properties, origins CONFIG_API/NODE/CONTROL, actor types USER/NODE/AUTOMATED_WORKER),
    // field by field; and that `actor` (ids, `~search`), `target` (any part of id or name) and
    // `event` (`TYPE.ACTION[.PROPERTY]`) each narrow the answer to exactly the records they
    // name, repeated values being alternatives and parameters combining, while unknown
    // values answer 200 with no records.
    let s = Stack::start().await?;
    let owner = s.owner_token.clone();
    let (admin_id, admin) = s.add_user("admin@example.com", "admin").await?;
    let (_, auditor) = s.add_user("auditor@example.com", "auditor").await?;
    let before = logs(&s, &auditor, "").await?.len();

    let create = |description: &str, caps: Value| {
        json!({"description": description, "expirySeconds": 3600,
            "capabilities": {"devices": {"create": caps}}})
    };
    let fleet = s
        .expect(
            200,
            "POST",
            "/api/v2/tailnet/-/keys",
            &admin,
            Some(create(
                "fleet",
                json!({"reusable": true, "ephemeral": true, "preauthorized": true, "tags": ["tag:ci"]}),
            )),
        )
        .await?;
    let laptops = s
        .expect(
            200,
            "POST",
            "/api/v2/tailnet/-/keys",
            &admin,
            Some(create("laptops", json!({"reusable": true}))),
        )
        .await?;
    let secret = |k: &Value| k["key"].as_str().map(str::to_owned).context("secret");
    let (fleet_id, laptops_id) = (
        fleet["id"].as_str().context("id")?.to_owned(),
        laptops["id"].as_str().context("id")?.to_owned(),
    );

    // Over NATS: a node registers, reports itself connected, then re-authenticates with the
    // untagged key (its expiry comes back: R15).
    let key_a = format!("nodekey:{}", "a1".repeat(32));
    let a = register(&s, "rRegA", &secret(&fleet)?, &key_a, "db-1").await?;
    let a_id = a["id"].as_str().context("a id")?.to_owned();
    let connected = json!({"requestId": "rConnA", "nodeKey": key_a});
    let reply = s
        .client
        .request(
            subject::NODE_CONNECTED,
            serde_json::to_vec(&connected)?.into(),
        )
        .await?;
    ensure!(
        serde_json::from_slice::<Value>(&reply.payload)?["ok"] == json!(true),
        "{:?}",
        reply.payload
    );
    let a2 = register(&s, "rReauthA", &secret(&laptops)?, &key_a, "db-1").await?;
    ensure!(a2["id"] == a_id.as_str(), "{a2}");
    let a2_expires = a2["expires"].clone();
    ensure!(a2_expires.is_string(), "{a2}");

    // Over HTTP: the Owner turns device approval on and shortens the key duration (one PATCH,
    // two records); a new node waits for approval, which the Admin gives, then tags it.
    s.expect(
        200,
        "PATCH",
        "/api/v2/tailnet/-/settings",
        &owner,
        Some(json!({"devicesApprovalOn": true, "devicesKeyDurationDays": 30})),
    )
    .await?;
    let key_b = format!("nodekey:{}", "b2".repeat(32));
    let b = register(&s, "rRegB", &secret(&laptops)?, &key_b, "laptop").await?;
    let b_id = b["id"].as_str().context("b id")?.to_owned();
    ensure!(b["authorized"] == json!(false), "{b}");
    for (path, body) in [
        (
            format!("/api/v2/device/{b_id}/authorized"),
            json!({"authorized": true}),
        ),
        (
            format!("/api/v2/device/{b_id}/tags"),
            json!({"tags": ["tag:web"]}),
        ),
    ] {
        s.expect(200, "POST", &path, &admin, Some(body)).await?;
    }

    let all = logs(&s, &auditor, "").await?;
    let ours: Vec<Value> = all[before..].iter().map(stable).collect();
    ensure!(
        ours.len() == 9,
        "{} new records: {:#}",
        ours.len(),
        Value::from(ours.clone())
    );
    let base = json!({"type": "CONFIG", "deferredAt": "0001-01-01T00:00:00Z"});
    let rec = |origin: &str, actor: Value, target: Value, action: &str, extra: Value| {
        let mut r = base.clone();
        r["origin"] = json!(origin);
        r["actor"] = actor;
        r["target"] = target;
        r["action"] = json!(action);
        for (k, v) in extra.as_object().into_iter().flatten() {
            r[k] = v.clone();
        }
        r
    };
    let ad = json!({"id": admin_id, "type": "USER", "loginName": "admin@example.com",
        "displayName": "admin@example.com"});
    let o_id = all[1]["target"]["id"].clone();
    let o = json!({"id": o_id, "type": "USER", "loginName": "owner@example.com",
        "displayName": "owner@example.com"});
    let node_a = json!({"id": a_id, "type": "NODE"});
    let node_b = json!({"id": b_id, "type": "NODE"});
    let target_a = |p: Option<&str>| {
        let mut t = json!({"id": a_id, "name": "db-1", "type": "NODE", "isEphemeral": true});
        if let Some(p) = p {
            t["property"] = json!(p);
        }
        t
    };
    let target_b = |p: Option<&str>| {
        let mut t = json!({"id": b_id, "name": "laptop", "type": "NODE"});
        if let Some(p) = p {
            t["property"] = json!(p);
        }
        t
    };
    let tailnet =
        |p: &str| json!({"id": s.tailnet, "name": "example.com", "type": "TAILNET", "property": p});
    let key_new = |description: &str, create: Value, k: &Value| {
        json!({"new": {"keyType": "auth", "description": description, "userId": admin_id,
            "expirySeconds": 3600, "expires": k["expires"],
            "capabilities": {"devices": {"create": create}}}})
    };
    // A registration's record: the device's fields as the registration answered them;
    // addresses are drawn by the service, so taken from the record, checked for form.
    let device_new = |record: &Value, d: &Value, tags: Value, ephemeral: bool, expires: &Value| {
        let mut new = json!({"hostname": d["hostname"], "os": "linux", "userId": admin_id,
            "tags": tags, "authKeyId": d["authKeyId"], "isEphemeral": ephemeral,
            "authorized": d["authorized"], "keyExpiryDisabled": expires.is_null(),
            "expires": expires});
        if let Some(addresses) = record["new"].get("addresses") {
            let ok = addresses
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(Value::is_string));
            if ok {
                new["addresses"] = addresses.clone();
            }
        }
        json!({"new": new, "actionDetails": "registrar anonymous"})
    };
    let want = vec![
        rec(
            "CONFIG_API",
            ad.clone(),
            json!({"id": fleet_id, "name": "fleet", "type": "API_KEY"}),
            "CREATE",
            key_new(
                "fleet",
                json!({"reusable": true, "ephemeral": true, "preauthorized": true, "tags": ["tag:ci"]}),
                &fleet,
            ),
        ),
        rec(
            "CONFIG_API",
            ad.clone(),
            json!({"id": laptops_id, "name": "laptops", "type": "API_KEY"}),
            "CREATE",
            key_new(
                "laptops",
                json!({"reusable": true, "ephemeral": false, "preauthorized": false, "tags": []}),
                &laptops,
            ),
        ),
        rec(
            "NODE",
            node_a.clone(),
            target_a(None),
            "CREATE",
            device_new(&ours[2], &a, json!(["tag:ci"]), true, &Value::Null),
        ),
        // The connection report and the key's use make no record.
        rec(
            "NODE",
            node_a.clone(),
            target_a(Some("KEY_EXPIRY_TIME")),
            "UPDATE",
            json!({
                "new": a2_expires,
                "actionDetails": format!("re-authenticated with auth key {laptops_id}; tags: none; registrar anonymous"),
            }),
        ),
        rec(
            "CONFIG_API",
            o.clone(),
            tailnet("MACHINE_APPROVAL_NEEDED"),
            "ENABLE",
            json!({}),
        ),
        rec(
            "CONFIG_API",
            o.clone(),
            tailnet("MAX_KEY_DURATION"),
            "UPDATE",
            json!({"old": 180, "new": 30}),
        ),
        rec(
            "NODE",
            node_b.clone(),
            target_b(None),
            "CREATE",
            device_new(&ours[6], &b, json!([]), false, &b["expires"]),
        ),
        rec(
            "CONFIG_API",
            ad.clone(),
            target_b(None),
            "APPROVE",
            json!({}),
        ),
        rec(
            "CONFIG_API",
            ad.clone(),
            target_b(Some("ACL_TAGS")),
            "UPDATE",
            json!({"old": [], "new": ["tag:web"]}),
        ),
    ];
    ensure!(
        ours == want,
        "records:\n got  {:#}\n want {:#}",
        Value::from(ours.clone()),
        Value::from(want.clone())
    );
    // The two settings records are one command's: one event group.
    let settings: Vec<&Value> = all
        .iter()
        .filter(|r| r["target"]["type"] == "TAILNET" && r["action"] != "CREATE")
        .collect();
    ensure!(
        settings.len() == 2 && settings[0]["eventGroupID"] == settings[1]["eventGroupID"],
        "{settings:?}"
    );

    // Each filter keeps exactly the records of the unfiltered answer that it names, in order.
    let expect = |query: &str, keep: &dyn Fn(&Value) -> bool| {
        let query = query.to_owned();
        let want: Vec<Value> = all.iter().filter(|r| keep(r)).cloned().collect();
        let s = &s;
        let auditor = &auditor;
        async move {
            let got = logs(s, auditor, &query).await?;
            ensure!(
                got == want,
                "{query}: got {:?}, want {:?}",
                got.iter().map(event).collect::<Vec<_>>(),
                want.iter().map(event).collect::<Vec<_>>()
            );
            anyhow::Ok(got.len())
        }
    };
    let n = expect(&format!("&actor={admin_id}"), &|r| {
        r["actor"]["id"] == admin_id.as_str()
    })
    .await?;
    ensure!(n == 4, "{n} records by the Admin");
    // `~search` on login or display name, any case; `~` percent-encoded as clients send it.
    expect("&actor=~ADMIN%40example", &|r| {
        r["actor"]["id"] == admin_id.as_str()
    })
    .await?;
    expect("&actor=%7Eadmin@", &|r| {
        r["actor"]["id"] == admin_id.as_str()
    })
    .await?;
    // A login name is not an id.
    ensure!(expect("&actor=admin@example.com", &|_| false).await? == 0);
    // A registrar's records are its node's; the bootstrap is an automated worker.
    let n = expect(&format!("&actor={a_id}"), &|r| {
        r["actor"]["id"] == a_id.as_str()
    })
    .await?;
    ensure!(n == 2, "{n} records by node A");
    let n = expect("&actor=bootstrap", &|r| {
        r["actor"] == json!({"id": "bootstrap", "type": "AUTOMATED_WORKER"})
            && r["origin"] == "CONTROL"
    })
    .await?;
    ensure!(n == 3, "{n} bootstrap records");
    expect(&format!("&actor={b_id}&actor=bootstrap"), &|r| {
        r["actor"]["id"] == b_id.as_str() || r["actor"]["id"] == "bootstrap"
    })
    .await?;

    // target: any part of the id or the name.
    let n = expect(&format!("&target={b_id}"), &|r| {
        r["target"]["id"] == b_id.as_str()
    })
    .await?;
    ensure!(n == 3, "{n} records on node B");
    expect("&target=DB-", &|r| r["target"]["id"] == a_id.as_str()).await?;
    expect("&target=lapt", &|r| {
        r["target"]["id"] == b_id.as_str() || r["target"]["id"] == laptops_id.as_str()
    })
    .await?;

    // event: Tailscale's event names; repeated values are alternatives.
    let n = expect("&event=NODE.CREATE", &|r| event(r) == "NODE.CREATE").await?;
    ensure!(n == 2);
    let n = expect(
        "&event=NODE.APPROVE&event=TAILNET.UPDATE.MAX_KEY_DURATION",
        &|r| ["NODE.APPROVE", "TAILNET.UPDATE.MAX_KEY_DURATION"].contains(&event(r).as_str()),
    )
    .await?;
    ensure!(n == 2);
    let n = expect("&event=USER.CREATE", &|r| event(r) == "USER.CREATE").await?;
    ensure!(n == 3, "Owner, Admin, Auditor");

    // Parameters combine.
    let n = expect(
        &format!("&actor={admin_id}&target={b_id}&event=NODE.UPDATE.ACL_TAGS"),
        &|r| event(r) == "NODE.UPDATE.ACL_TAGS",
    )
    .await?;
    ensure!(n == 1);
    ensure!(expect("&actor=bootstrap&event=NODE.CREATE", &|_| false).await? == 0);

    // Unknown values (the dotted names these records used to carry as actions, a verb alone)
    // are answered with no records, never refused.
    for unknown in [
        "&event=TAILNET.UPDATE.DEVICES_APPROVAL",
        "&event=USER.UPDATE.ROLE",
        "&event=UPDATE",
        "&actor=nobody",
        "&target=nothing-like-it",
    ] {
        ensure!(expect(unknown, &|_| false).await? == 0, "{unknown}");
    }
    // Empty values filter nothing; other parameters are ignored.
    expect("&actor=&target=&event=&fields=all", &|_| true).await?;

    // Filters apply within the window: the re-authentication's instant, by node A.
    let at = all[before + 3]["eventTime"]
        .as_str()
        .context("time")?
        .to_owned();
    let narrow = s
        .expect(
            200,
            "GET",
            &format!("{BASE}?start={at}&end={at}&actor={a_id}"),
            &auditor,
            None,
        )
        .await?;
    ensure!(
        narrow["logs"] == json!([all[before + 3].clone()]),
        "{narrow}"
    );
    s.stop().await
}

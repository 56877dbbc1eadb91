//! The auditors' surface against the real stack (nats-server, command service, views, gateway):
//! the configuration audit log endpoint field by field, and `audit verify` / `audit replay`
//! against the live system, from the data dir and over NATS.

mod api_support;

use std::ops::ControlFlow;

use anyhow::{Context, ensure};
use api_support::{Stack, is_rfc3339};
use authkeys_audit::replay::{Until, ViewName, replay};
use authkeys_audit::source::{self, Source};
use authkeys_events::{Envelope, Seq};
use authkeys_log::LogReader;
use authkeys_projections::store::ViewStore;
use authkeys_projections::{KeysView, MachinesView, View};
use serde_json::{Value, json};

const WINDOW: &str = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z";

fn message_only(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.len() == 1) && v["message"].is_string()
}

/// The record without the fields that differ per run (checked separately).
fn stable(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        for f in ["eventTime", "eventGroupID", "seq", "hash"] {
            o.remove(f);
        }
    }
    r
}

fn user(id: &str, login: &str) -> Value {
    json!({ "id": id, "type": "USER", "loginName": login, "displayName": login })
}

fn service(id: &str) -> Value {
    json!({ "id": id, "type": "AUTOMATED_WORKER" })
}

/// A registrar acting for node `id` (the stack's registrations are anonymous).
fn node_actor(id: &str) -> Value {
    json!({ "id": id, "type": "NODE" })
}

fn event_at(reader: &LogReader, seq: u64) -> anyhow::Result<Envelope> {
    let ev = reader
        .read(Seq::new(seq)?, 1)?
        .into_iter()
        .next()
        .context("no event at that seq")?;
    Ok(ev.envelope()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_audit_log_records_of_a_scripted_scenario_field_by_field()
-> anyhow::Result<()> {
    // Proves that GET /tailnet/-/logging/configuration answers Tailscale's wrapper and record
    // shape (verbs in `action`, `target.type`/`target.property`, Tailscale's origins and actor
    // types), every field as the scenario dictates, each record
    // carrying the seq, hash and command id of its event in the log; that only Owners, Admins
    // and Auditors may read it; that bad windows are 400 {"message"}; and that a window selects
    // by event time.
    let s = Stack::start().await?;
    let owner = s.owner_token.clone();
    let owner_id = {
        let reader = LogReader::open(&s.log_path())?;
        match event_at(&reader, 2)?.event {
            authkeys_events::Event::UserAdded(u) => u.user_id.to_string(),
            other => anyhow::bail!("seq 2 is {other:?}"),
        }
    };
    let (admin_id, admin) = s.add_user("admin@example.com", "admin").await?;
    let (auditor_id, auditor) = s.add_user("auditor@example.com", "auditor").await?;
    let (_, member) = s.add_user("member@example.com", "member").await?;
    let (_, it_admin) = s.add_user("it@example.com", "it-admin").await?;

    let create = |caps: Value, description: &str, expiry: Option<u32>| {
        let mut body = json!({ "description": description, "capabilities": { "devices": { "create": caps } } });
        if let Some(e) = expiry {
            body["expirySeconds"] = json!(e);
        }
        body
    };
    let k1 = s
        .expect(
            200,
            "POST",
            "/api/v2/tailnet/-/keys",
            &admin,
            Some(create(
                json!({"reusable": true, "tags": ["tag:ci"]}),
                "ci pool",
                Some(3600),
            )),
        )
        .await?;
    let k2 = s
        .expect(
            200,
            "POST",
            "/api/v2/tailnet/-/keys",
            &admin,
            Some(create(json!({"reusable": false}), "laptop", None)),
        )
        .await?;
    let (k1_id, k2_id) = (
        k1["id"].as_str().context("k1 id")?.to_owned(),
        k2["id"].as_str().context("k2 id")?.to_owned(),
    );
    let a = s
        .register(k1["key"].as_str().context("k1")?, "web-1")
        .await?;
    let b = s
        .register(k2["key"].as_str().context("k2")?, "laptop")
        .await?;
    let b_device = s
        .expect(200, "GET", &format!("/api/v2/device/{b}"), &admin, None)
        .await?;
    let b_expires = b_device["expires"].clone();
    ensure!(is_rfc3339(&b_expires), "{b_device}");

    for (path, body) in [
        (
            format!("/api/v2/device/{a}/tags"),
            json!({"tags": ["tag:web"]}),
        ),
        (
            format!("/api/v2/device/{b}/key"),
            json!({"keyExpiryDisabled": true}),
        ),
        (
            format!("/api/v2/device/{b}/key"),
            json!({"keyExpiryDisabled": false}),
        ),
        (
            format!("/api/v2/device/{b}/authorized"),
            json!({"authorized": false}),
        ),
        (
            format!("/api/v2/device/{b}/authorized"),
            json!({"authorized": true}),
        ),
        (format!("/api/v2/device/{b}/expire"), json!({})),
    ] {
        s.expect(200, "POST", &path, &admin, Some(body)).await?;
    }
    s.expect(
        200,
        "DELETE",
        &format!("/api/v2/tailnet/-/keys/{k1_id}"),
        &admin,
        None,
    )
    .await?;
    s.expect(200, "DELETE", &format!("/api/v2/device/{a}"), &admin, None)
        .await?;
    s.expect(
        200,
        "PATCH",
        "/api/v2/tailnet/-/settings",
        &owner,
        Some(json!({"devicesApprovalOn": true})),
    )
    .await?;

    let path = format!("/api/v2/tailnet/-/logging/configuration?{WINDOW}");
    let answer = s.expect(200, "GET", &path, &auditor, None).await?;
    ensure!(
        answer["version"] == "1.1" && answer["tailnet"] == "example.com",
        "{answer}"
    );
    let logs = answer["logs"].as_array().context("logs")?.clone();
    let tailnet = s.tailnet.clone();
    let o = user(&owner_id, "owner@example.com");
    let ad = user(&admin_id, "admin@example.com");
    let api_token = |record: &Value, user_id: &str, login: &str| -> anyhow::Result<Value> {
        // A token's id and expiry are drawn by the service: taken from the record, checked for form.
        let id = record["target"]["id"].as_str().context("token id")?;
        ensure!(id.starts_with('t'), "{record}");
        ensure!(is_rfc3339(&record["new"]["expires"]), "{record}");
        Ok(json!({
            "target": { "id": id, "name": format!("API access token of {login}"), "type": "API_KEY" },
            "new": { "keyType": "api", "userId": user_id, "expires": record["new"]["expires"] },
        }))
    };
    let mut expected: Vec<Value> = Vec::new();
    let rec = |actor: &Value,
               origin: &str,
               target: Value,
               action: &str,
               old: Option<Value>,
               new: Option<Value>| {
        let mut r = json!({ "type": "CONFIG", "deferredAt": "0001-01-01T00:00:00Z", "origin": origin, "actor": actor, "target": target, "action": action });
        if let Some(v) = old {
            r["old"] = v;
        }
        if let Some(v) = new {
            r["new"] = v;
        }
        r
    };
    ensure!(
        logs.len() == 24,
        "{} records: {:#}",
        logs.len(),
        Value::from(logs.clone())
    );
    // Bootstrap: the tailnet, its Owner and the Owner's token.
    expected.push(rec(&service("bootstrap"), "CONTROL", json!({"id": tailnet, "name": "example.com", "type": "TAILNET"}), "CREATE", None,
        Some(json!({"devicesApprovalOn": false, "devicesKeyDurationDays": 180, "tailnetLockOn": false}))));
    expected.push(rec(
        &service("bootstrap"),
        "CONTROL",
        json!({"id": owner_id, "name": "owner@example.com", "type": "USER"}),
        "CREATE",
        None,
        Some(json!({"role": "owner"})),
    ));
    let t = api_token(&logs[2], &owner_id, "owner@example.com")?;
    expected.push(rec(
        &service("bootstrap"),
        "CONTROL",
        t["target"].clone(),
        "CREATE",
        None,
        Some(t["new"].clone()),
    ));
    // Four users added by the Owner, each with a token.
    let users = [
        (Some(&admin_id), "admin@example.com", "admin"),
        (Some(&auditor_id), "auditor@example.com", "auditor"),
        // Ids the test never saw: taken from the record.
        (None, "member@example.com", "member"),
        (None, "it@example.com", "it-admin"),
    ];
    for (i, (id, login, role)) in (3..).step_by(2).zip(users) {
        let id = match id {
            Some(id) => id.clone(),
            None => logs[i]["target"]["id"]
                .as_str()
                .context("user id")?
                .to_owned(),
        };
        expected.push(rec(
            &o,
            "CONFIG_API",
            json!({"id": id, "name": login, "type": "USER"}),
            "CREATE",
            None,
            Some(json!({"role": role})),
        ));
        let t = api_token(&logs[i + 1], &id, login)?;
        expected.push(rec(
            &o,
            "CONFIG_API",
            t["target"].clone(),
            "CREATE",
            None,
            Some(t["new"].clone()),
        ));
    }
    let auth_key = |description: &str, create: Value, expiry: u32, expires: &Value| {
        json!({"keyType": "auth", "description": description, "userId": admin_id,
            "expirySeconds": expiry, "expires": expires,
            "capabilities": {"devices": {"create": create}}})
    };
    expected.push(rec(&ad, "CONFIG_API", json!({"id": k1_id, "name": "ci pool", "type": "API_KEY"}), "CREATE", None,
        Some(auth_key("ci pool", json!({"reusable": true, "ephemeral": false, "preauthorized": false, "tags": ["tag:ci"]}),
            3600, &k1["expires"]))));
    expected.push(rec(
        &ad,
        "CONFIG_API",
        json!({"id": k2_id, "name": "laptop", "type": "API_KEY"}),
        "CREATE",
        None,
        Some(auth_key(
            "laptop",
            json!({"reusable": false, "ephemeral": false, "preauthorized": false, "tags": []}),
            7_776_000,
            &k2["expires"],
        )),
    ));
    // A registration: the node is the actor, through the (anonymous) registrar; its addresses
    // are drawn by the service: taken from the record, checked for form.
    let registered = |record: &Value, mut new: Value| -> anyhow::Result<Value> {
        if let Some(a) = record["new"].get("addresses") {
            ensure!(
                a.as_array()
                    .is_some_and(|a| a.len() == 2 && a.iter().all(Value::is_string)),
                "{record}"
            );
            new["addresses"] = a.clone();
        }
        Ok(new)
    };
    let from_registrar = |mut r: Value| {
        r["actionDetails"] = json!("registrar anonymous");
        r
    };
    expected.push(from_registrar(rec(&node_actor(&a), "NODE", json!({"id": a, "name": "web-1", "type": "NODE"}), "CREATE", None,
        Some(registered(&logs[13], json!({"hostname": "web-1", "os": "linux", "userId": admin_id, "tags": ["tag:ci"],
            "authKeyId": k1_id, "isEphemeral": false, "authorized": true, "keyExpiryDisabled": true, "expires": null}))?))));
    expected.push(from_registrar(rec(&node_actor(&b), "NODE", json!({"id": b, "name": "laptop", "type": "NODE"}), "CREATE", None,
        Some(registered(&logs[14], json!({"hostname": "laptop", "os": "linux", "userId": admin_id, "tags": [],
            "authKeyId": k2_id, "isEphemeral": false, "authorized": true, "keyExpiryDisabled": false, "expires": b_expires}))?))));
    // What the Admin did over HTTP, in order.
    let node = |id: &str, name: &str, property: Option<&str>| {
        let mut target = json!({"id": id, "name": name, "type": "NODE"});
        if let Some(p) = property {
            target["property"] = json!(p);
        }
        target
    };
    let (web, laptop) = (|p| node(&a, "web-1", p), |p| node(&b, "laptop", p));
    let expired_at = logs[20]["eventTime"].clone();
    let revoked = json!({"id": k1_id, "name": "ci pool", "type": "API_KEY"});
    for (target, action, old, new) in [
        (
            web(Some("ACL_TAGS")),
            "UPDATE",
            Some(json!(["tag:ci"])),
            Some(json!(["tag:web"])),
        ),
        (laptop(Some("KEY_EXPIRY")), "DISABLE", None, None),
        (laptop(Some("KEY_EXPIRY")), "ENABLE", None, None),
        (laptop(None), "REVOKE", None, None),
        (laptop(None), "APPROVE", None, None),
        (
            laptop(Some("KEY_EXPIRY_TIME")),
            "EXPIRED",
            None,
            Some(expired_at),
        ),
        (revoked, "REVOKE", None, None),
        (web(None), "DELETE", None, None),
    ] {
        let mut r = rec(&ad, "CONFIG_API", target, action, old, new);
        if action == "DELETE" {
            r["actionDetails"] = json!("reason: admin");
        }
        expected.push(r);
    }
    expected.push(rec(&o, "CONFIG_API", json!({"id": tailnet, "name": "example.com", "type": "TAILNET", "property": "MACHINE_APPROVAL_NEEDED"}),
        "ENABLE", None, None));
    ensure!(expected.len() == logs.len(), "{} expected", expected.len());

    let reader = LogReader::open(&s.log_path())?;
    let mut last_seq = 0;
    for (n, (got, want)) in logs.iter().zip(&expected).enumerate() {
        ensure!(
            stable(got) == *want,
            "record {n}:\n got  {got:#}\n want {want:#}"
        );
        // seq, hash, eventGroupID and eventTime are those of the event in the log.
        let seq = got["seq"].as_u64().context("seq")?;
        ensure!(seq > last_seq, "record {n} out of order: {got}");
        last_seq = seq;
        let env = event_at(&reader, seq)?;
        ensure!(got["hash"] == env.hash.to_hex(), "record {n} hash: {got}");
        ensure!(
            got["eventGroupID"] == env.command_id.as_str(),
            "record {n} group: {got}"
        );
        ensure!(
            got["eventTime"] == env.time.to_string(),
            "record {n} time: {got}"
        );
    }

    // Owners and Admins may read it too; Members and IT admins may not (403 {"message"}).
    s.expect(200, "GET", &path, &owner, None).await?;
    s.expect(200, "GET", &path, &admin, None).await?;
    for token in [&member, &it_admin] {
        let body = s.expect(403, "GET", &path, token, None).await?;
        ensure!(message_only(&body), "{body}");
    }
    let a401 = s.call("GET", &path, None, None).await?;
    ensure!(a401.status == 401, "{}", a401.status);

    // Bad windows: 400 {"message"} naming the parameter.
    let base = "/api/v2/tailnet/-/logging/configuration";
    for (query, names) in [
        ("start=yesterday&end=2100-01-01T00:00:00Z", "start"),
        ("start=2000-01-01T00:00:00Z", "end"),
        ("end=2000-01-01T00:00:00Z", "start"),
        ("start=2100-01-01T00:00:00Z&end=2000-01-01T00:00:00Z", "end"),
    ] {
        let body = s
            .expect(400, "GET", &format!("{base}?{query}"), &auditor, None)
            .await?;
        ensure!(
            message_only(&body) && body["message"].as_str().is_some_and(|m| m.contains(names)),
            "{query}: {body}"
        );
    }

    // A window of one instant holds exactly the records of that instant.
    let at = logs[14]["eventTime"].as_str().context("time")?.to_owned();
    let narrow = s
        .expect(
            200,
            "GET",
            &format!("{base}?start={at}&end={at}"),
            &auditor,
            None,
        )
        .await?;
    let narrow = narrow["logs"].as_array().context("logs")?;
    let same: Vec<&Value> = logs
        .iter()
        .filter(|r| r["eventTime"] == at.as_str())
        .collect();
    ensure!(narrow.iter().collect::<Vec<_>>() == same, "{narrow:?}");
    let after = s
        .expect(
            200,
            "GET",
            &format!("{base}?start=2099-01-01T00:00:00Z&end=2100-01-01T00:00:00Z"),
            &auditor,
            None,
        )
        .await?;
    ensure!(after["logs"] == json!([]), "{after}");
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_now_equals_the_live_views_and_verify_passes_while_running() -> anyhow::Result<()>
{
    // Proves that `audit replay --until now` folds the log into exactly the rows the live keys
    // and machines views hold (state hash and seq, read from their files after a graceful stop),
    // from the data dir and over NATS alike; that `audit verify` passes on the running system
    // from the data dir (read-only beside the writer) and over NATS; and that a replay at an
    // earlier seq differs. How: a mixed workload over HTTP and NATS, then compare.
    let s = Stack::start().await?;
    let (_, admin) = s.add_user("admin@example.com", "admin").await?;
    let mut devices = Vec::new();
    for i in 0..6 {
        let caps = match i % 3 {
            0 => json!({"reusable": true, "tags": ["tag:ci"]}),
            1 => json!({"reusable": false}),
            _ => json!({"reusable": true, "ephemeral": true}),
        };
        let key = s.create_key(&admin, caps).await?;
        let secret = key["key"].as_str().context("key")?.to_owned();
        devices.push(s.register(&secret, &format!("host-{i}")).await?);
        if i % 3 != 1 {
            devices.push(s.register(&secret, &format!("host-{i}b")).await?);
        }
        if i % 3 == 0 {
            let id = key["id"].as_str().context("id")?;
            s.expect(
                200,
                "DELETE",
                &format!("/api/v2/tailnet/-/keys/{id}"),
                &admin,
                None,
            )
            .await?;
        }
    }
    let (d0, d1, d2, d3) = (&devices[0], &devices[1], &devices[2], &devices[3]);
    for (method, path, body) in [
        (
            "POST",
            format!("/api/v2/device/{d0}/tags"),
            Some(json!({"tags": ["tag:web"]})),
        ),
        (
            "POST",
            format!("/api/v2/device/{d2}/key"),
            Some(json!({"keyExpiryDisabled": true})),
        ),
        ("POST", format!("/api/v2/device/{d3}/expire"), None),
        ("DELETE", format!("/api/v2/device/{d1}"), None),
    ] {
        s.expect(200, method, &path, &admin, body).await?;
    }
    // Reads wait for the views to reach the head (read-your-writes).
    s.expect(200, "GET", "/api/v2/tailnet/-/devices", &admin, None)
        .await?;
    s.expect(200, "GET", "/api/v2/tailnet/-/keys", &admin, None)
        .await?;

    let key = {
        let secret =
            authkeys_log::keys::load_or_create_key(&s.dir.path().join("signing.key"), false)?;
        ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key()
    };
    let log_path = s.log_path();
    let file = tokio::task::spawn_blocking(move || {
        source::verify_file(&log_path, &key, None, &mut |_, _| {})
    })
    .await??
    .map_err(|p| anyhow::anyhow!("verify from the file: {p}"))?;
    let nats = Source::Nats(s.client.clone());
    let Source::Nats(client) = &nats else {
        unreachable!()
    };
    let over_nats = source::verify_nats(client, &key, Some(&file.state), &mut |_, _| {})
        .await?
        .map_err(|p| anyhow::anyhow!("verify over NATS: {p}"))?;
    ensure!(over_nats.head.seq >= file.head.seq, "{over_nats:?}");

    let keys_nats = replay(&nats, Until::Now, ViewName::Keys).await?;
    let machines_nats = replay(&nats, Until::Now, ViewName::Machines).await?;
    let earlier = replay(&nats, Until::Seq(keys_nats.seq / 2), ViewName::Machines).await?;
    ensure!(
        earlier.state_hash != machines_nats.state_hash,
        "an earlier replay should differ"
    );
    let data = s.stop_keep_data().await?;
    let views = data.path().join("views");
    let from_file = Source::File(data.path().to_path_buf());

    let keys_file = replay(&from_file, Until::Now, ViewName::Keys).await?;
    let machines_file = replay(&from_file, Until::Now, ViewName::Machines).await?;
    let (live_keys, keys_cp) =
        ViewStore::open(&views.join("view-keys.redb"), KeysView::NAME)?.load::<KeysView>()?;
    let (live_machines, machines_cp) =
        ViewStore::open(&views.join("view-machines.redb"), MachinesView::NAME)?
            .load::<MachinesView>()?;
    ensure!(
        keys_cp.seq == keys_file.seq && machines_cp.seq == machines_file.seq,
        "views at {}/{}, log at {}",
        keys_cp.seq,
        machines_cp.seq,
        keys_file.seq
    );
    ensure!(
        live_keys.state_hash() == keys_file.state_hash,
        "keys view differs from its replay"
    );
    ensure!(
        live_machines.state_hash() == machines_file.state_hash,
        "machines view differs from its replay"
    );
    ensure!(
        keys_nats.state_hash == keys_file.state_hash
            && machines_nats.state_hash == machines_file.state_hash
    );

    // A replay at a time: the view as of the last event at or before it.
    let mut times = Vec::new();
    source::for_each_file_event(&source::log_path(data.path()), |env| {
        times.push((env.seq.get(), env.time));
        ControlFlow::Continue(())
    })?;
    let (seq, time) = times[times.len() / 2];
    let at_time = replay(&from_file, Until::Time(time), ViewName::Machines).await?;
    ensure!(
        at_time.seq >= seq && times.iter().all(|(s, t)| *s <= at_time.seq || *t > time),
        "{}",
        at_time.seq
    );
    Ok(())
}

//! The expiry timers end to end, through the real binary against a real nats-server
//! (R02, R08, R13, R14):
//! - `authkeys serve --ephemeral-inactivity-timeout 2s`: a key with `expirySeconds: 2` shows
//!   `invalid: true` and its `KeyExpired` is in the log within 1 s of its expiry, while the node
//!   it registered stays authorized; an ephemeral node reported disconnected leaves the device
//!   list after the timeout, one that reconnected in time stays; `/metrics` shows the firings,
//!   and `authkeys audit verify` accepts the live log;
//! - `authkeys command` + `authkeys timers` as processes: the timers are killed with SIGKILL
//!   after they scheduled a key and before its deadline, restarted after it, and the
//!   `KeyExpired` appears exactly once.

mod api_support;
mod proc_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use async_nats::jetstream;
use authkeys_events::{DeleteReason, Envelope, Event};
use authkeys_protocol::{NodeStatusRequest, subject};
use authkeys_tests::wait_until_async;
use proc_support::{
    Procs, WAIT_MS_MAX, authkeys, bootstrapped, create_key, free_port, get_ok, http, log_events,
    register, spawn_role,
};
use serde_json::{Value, json};

fn node_key(n: u8) -> String {
    format!("nodekey:{}", format!("{n:02x}").repeat(32))
}

/// A registrar's connect/disconnect report.
async fn report(client: &async_nats::Client, subj: &str, nk: &str, id: &str) -> anyhow::Result<()> {
    let req = NodeStatusRequest {
        request_id: id.to_owned(),
        node_key: nk.to_owned(),
    };
    let reply = client
        .request(subj.to_owned(), serde_json::to_vec(&req)?.into())
        .await?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    ensure!(v["ok"] == true, "{subj}: {v}");
    Ok(())
}

fn key_expired_of<'a>(events: &'a [Envelope], key_id: &str) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| matches!(&e.event, Event::KeyExpired(x) if x.key_id.as_str() == key_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r08_r13_r02_serve_expires_keys_and_removes_inactive_ephemeral_nodes_on_time()
-> anyhow::Result<()> {
    let (nats, _dir, data, token) = bootstrapped("data")?;
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url()])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(["--ephemeral-inactivity-timeout", "2s"])
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/keys", &token).await?;

    // A key that expires in 2 s, and a node it registers before then.
    let short = create_key(
        port,
        &token,
        json!({"expirySeconds": 2, "capabilities": {"devices": {"create": {"reusable": true}}}}),
    )
    .await?;
    let short_id = short["id"].as_str().context("id")?.to_owned();
    let secret = short["key"].as_str().context("key")?;
    let web = register(&nats.url(), secret, "web-1", Some(&node_key(1)))?;

    // Two ephemeral nodes: A disconnects for good, B disconnects and reconnects at once.
    let eph = create_key(
        port,
        &token,
        json!({"capabilities": {"devices": {"create": {"reusable": true, "ephemeral": true}}}}),
    )
    .await?;
    let eph_secret = eph["key"].as_str().context("key")?;
    let a = register(&nats.url(), eph_secret, "job-a", Some(&node_key(2)))?;
    let b = register(&nats.url(), eph_secret, "job-b", Some(&node_key(3)))?;
    let client = async_nats::connect(nats.url()).await?;
    report(&client, subject::NODE_DISCONNECTED, &node_key(2), "a-off").await?;
    report(&client, subject::NODE_DISCONNECTED, &node_key(3), "b-off").await?;
    report(&client, subject::NODE_CONNECTED, &node_key(3), "b-on").await?;

    // R08: KeyExpired, at most 1 s after the key's expiry; the key reads invalid.
    let wait = Duration::from_millis(WAIT_MS_MAX);
    wait_until_async(wait, async || {
        log_events(&data).is_ok_and(|ev| !key_expired_of(&ev, &short_id).is_empty())
    })
    .await
    .context("no KeyExpired")?;
    let events = log_events(&data)?;
    let expired = key_expired_of(&events, &short_id);
    ensure!(expired.len() == 1, "one KeyExpired: {expired:?}");
    let Event::KeyExpired(x) = &expired[0].event else {
        unreachable!("filtered above")
    };
    ensure!(x.expired_at.to_string() == short["expires"].as_str().unwrap_or_default());
    let late_ms = expired[0].time.unix_ms() - x.expired_at.unix_ms();
    ensure!(
        (0..=1000).contains(&late_ms),
        "KeyExpired {late_ms} ms after expiry"
    );
    let key = get_ok(port, &format!("/api/v2/tailnet/-/keys/{short_id}"), &token).await?;
    ensure!(key["invalid"] == true, "{key}");

    // R02: A leaves the device list after the timeout; B, which reconnected, stays.
    let devices_path = "/api/v2/tailnet/-/devices";
    let ids = async |port, token: &str| -> anyhow::Result<Vec<Value>> {
        let v = get_ok(port, devices_path, token).await?;
        Ok(v["devices"].as_array().context("devices")?.clone())
    };
    wait_until_async(wait, async || {
        ids(port, &token)
            .await
            .is_ok_and(|d| !d.iter().any(|d| d["nodeId"] == a["nodeId"]))
    })
    .await
    .context("ephemeral node A never removed")?;
    let devices = ids(port, &token).await?;
    ensure!(
        devices.iter().any(|d| d["nodeId"] == b["nodeId"]),
        "B reconnected in time and must stay: {devices:?}"
    );
    // R13: the expired key's node stays, authorized.
    let w = devices
        .iter()
        .find(|d| d["nodeId"] == web["nodeId"])
        .context("the expired key's node is gone")?;
    ensure!(w["authorized"] == true, "{w}");
    let events = log_events(&data)?;
    let deletions: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::NodeDeleted(d) => Some((d.node_id.to_string(), d.reason)),
            _ => None,
        })
        .collect();
    ensure!(
        deletions
            == vec![(
                a["nodeId"].as_str().unwrap_or_default().to_owned(),
                DeleteReason::EphemeralInactive
            )],
        "{deletions:?}"
    );

    // /metrics shows the timers: their schedule's seq and what they fired (key + ephemeral).
    wait_until_async(wait, async || {
        let Ok(m) = http(port, "GET", "/metrics", &token, None).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&m.raw).into_owned();
        let fired = text
            .lines()
            .find_map(|l| l.strip_prefix("authkeys_timers_fired_total "))
            .and_then(|v| v.parse::<u64>().ok());
        fired.is_some_and(|n| n >= 2) && text.contains("authkeys_timers_scheduled ")
    })
    .await
    .context("/metrics never showed the timers' firings")?;

    // The timers' events pass the auditors' verification of the live log (chain, signatures,
    // domain rules), read-only beside the running service.
    let key = Command::new(env!("CARGO_BIN_EXE_authkeys"))
        .args(["audit", "public-key", "--data"])
        .arg(&data)
        .stdin(Stdio::null())
        .output()?;
    ensure!(key.status.success(), "audit public-key failed");
    let verify = Command::new(env!("CARGO_BIN_EXE_authkeys"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .args(["--trusted-key", String::from_utf8(key.stdout)?.trim()])
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}

/// The timers' durable consumer has acked `seq`: their schedule holds everything up to it.
async fn timers_acked(js: &jetstream::Context, seq: u64) -> bool {
    let Ok(mut stream) = js
        .get_stream(authkeys_protocol::subject::EVENTS_STREAM)
        .await
    else {
        return false;
    };
    let _ = stream.info().await;
    match stream.consumer_info("view-timers").await {
        Ok(info) => info.ack_floor.stream_sequence >= seq,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r08_a_timer_killed_before_its_deadline_fires_once_after_its_restart() -> anyhow::Result<()>
{
    let (nats, dir, cmd_dir, token) = bootstrapped("command")?;
    let timers_dir = dir.path().join("timers");
    let mut procs = Procs(vec![
        spawn_role("command", &nats.url(), &cmd_dir)?,
        spawn_role("timers", &nats.url(), &timers_dir)?,
    ]);
    // A key expiring in 4 s, created as soon as the command service answers.
    let mut secret = String::new();
    wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        let out = Command::new(env!("CARGO_BIN_EXE_authkeys"))
            .args([
                "admin",
                "create-key",
                "--nats",
                &nats.url(),
                "--token",
                &token,
            ])
            .args(["--reusable", "--expiry-seconds", "4"])
            .arg("--data")
            .arg(&cmd_dir)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                secret = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                true
            }
            _ => false,
        }
    })
    .await
    .context("create-key never succeeded")?;
    let key_id = secret
        .split('-')
        .nth(2)
        .context("key id in the secret")?
        .to_owned();
    let events = log_events(&cmd_dir)?;
    let generated = events
        .iter()
        .find(|e| matches!(&e.event, Event::KeyGenerated(g) if g.key_id.as_str() == key_id))
        .context("KeyGenerated")?;
    let Event::KeyGenerated(g) = &generated.event else {
        unreachable!("found above")
    };
    let expires = g.expires;

    // The timers have scheduled it (acked past its KeyGenerated); kill -9 before the deadline.
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        timers_acked(&js, generated.seq.get()).await
    })
    .await
    .context("the timers never acked the KeyGenerated")?;
    procs.0[1].kill()?;
    procs.0[1].wait()?;
    let now_ms = authkeys_events::decision::system_clock().now().unix_ms();
    ensure!(
        now_ms < expires.unix_ms(),
        "killed only after the deadline ({now_ms} ≥ {expires}): the machine is too slow for this test's 4 s"
    );

    // Past the deadline with no timers: no KeyExpired (the key is refused by time alone).
    let past = Duration::from_millis(u64::try_from(expires.unix_ms() - now_ms)? + 500);
    tokio::time::sleep(past).await;
    ensure!(key_expired_of(&log_events(&cmd_dir)?, &key_id).is_empty());

    // Restarted: the missed deadline fires at start, once.
    procs.0[1] = spawn_role("timers", &nats.url(), &timers_dir)?;
    wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        log_events(&cmd_dir).is_ok_and(|ev| !key_expired_of(&ev, &key_id).is_empty())
    })
    .await
    .context("no KeyExpired after the restart")?;
    // Kill it again and restart once more: still exactly one.
    procs.0[1].kill()?;
    procs.0[1].wait()?;
    procs.0[1] = spawn_role("timers", &nats.url(), &timers_dir)?;
    let head = log_events(&cmd_dir)?.len() as u64;
    wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        timers_acked(&js, head).await
    })
    .await
    .context("the restarted timers never caught up")?;
    let expired = key_expired_of(&log_events(&cmd_dir)?, &key_id).len();
    ensure!(expired == 1, "{expired} KeyExpired events");
    Ok(())
}

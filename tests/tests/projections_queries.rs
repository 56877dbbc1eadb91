//! The views' NATS queries: the reply shapes the HTTP gateway is written against, bounded
//! read-your-writes waits, R09's not-found sameness, and refusals of malformed requests.

mod projections_support;

use std::time::Duration;

use anyhow::Context as _;
use authkeys_projections::query;
use authkeys_protocol::query::{
    DeviceAnswer, DevicesAnswer, KeyAnswer, KeysAnswer, TailnetAnswer, TokenAnswer,
};
use projections_support::{All, Rig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The fixture's tailnet.
const TAILNET: &str = "Tfixture";

struct Q {
    client: async_nats::Client,
    prefix: String,
}

impl Q {
    async fn raw(&self, what: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            self.client
                .request(format!("{}.{what}", self.prefix), body.to_vec().into()),
        )
        .await
        .context("query timed out")??;
        Ok(reply.payload.to_vec())
    }

    async fn raw_json(&self, what: &str, body: Value) -> anyhow::Result<Vec<u8>> {
        self.raw(what, body.to_string().as_bytes()).await
    }

    async fn ask(&self, what: &str, body: Value) -> anyhow::Result<Value> {
        let bytes = self.raw_json(what, body).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn ok<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        body: Value,
    ) -> anyhow::Result<T> {
        let v = self.ask(what, body).await?;
        serde_json::from_value(v.clone()).with_context(|| format!("{what}: unexpected reply {v}"))
    }

    async fn error(&self, what: &str, body: &[u8]) -> anyhow::Result<(String, String)> {
        let v: Value = serde_json::from_slice(&self.raw(what, body).await?)?;
        anyhow::ensure!(
            v["ok"] == json!(false),
            "{what}: expected a refusal, got {v}"
        );
        Ok((
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

async fn setup(read_wait_ms_max: u64) -> anyhow::Result<(Rig, All, Q, CancellationToken)> {
    let mut rig = Rig::start().await?;
    rig.cfg.read_wait_ms_max = read_wait_ms_max;
    let all = All::spawn(&rig).await?;
    let stop = CancellationToken::new();
    tokio::spawn(query::serve(
        rig.client.clone(),
        rig.cfg.clone(),
        all.handles(),
        authkeys_events::decision::system_clock(),
        stop.clone(),
    ));
    rig.append_steps(40).await?;
    all.converge(&rig).await?;
    let q = Q {
        client: rig.client.clone(),
        prefix: rig.cfg.query_prefix.clone(),
    };
    Ok((rig, all, q, stop))
}

/// Stops the query responders, the workers and the rig.
async fn teardown(rig: Rig, all: All, stop: CancellationToken) -> anyhow::Result<()> {
    stop.cancel();
    all.stop_with(rig).await
}

#[tokio::test]
async fn queries_answer_in_the_wire_shapes() -> anyhow::Result<()> {
    // Proves each subject's reply shape and content: tokens with their user's login and role,
    // the tailnet with its settings, a user's keys with `invalid`/`revoked` (R01, R12), devices
    // with their owner's login name, and not_found for unknown ids.
    let (rig, all, q, stop) = setup(2_000).await?;
    let head = rig.head();

    let t: TokenAnswer = q.ok("identity.token", json!({"tokenId": "t0"})).await?;
    anyhow::ensure!(
        t.seq == head && t.token.login_name == "user0@example.com" && t.token.role == "owner",
        "{t:?}"
    );
    anyhow::ensure!(t.token.tailnet == TAILNET && t.token.revoked_at.is_none());
    let tn: TailnetAnswer = q
        .ok("identity.tailnet", json!({"tailnet": TAILNET}))
        .await?;
    anyhow::ensure!(
        tn.tailnet.name == "example.com" && tn.tailnet.settings.devices_key_duration_days == 180
    );

    // Steps 8 and 9 generate k8 (one-off) and k9 (reusable) for u1; k8 registers n10 at step
    // 10; k9 is revoked at step 14.
    let keys: KeysAnswer = q
        .ok("keys.list", json!({"tailnet": TAILNET, "userId": "u1"}))
        .await?;
    let ids: Vec<_> = keys
        .keys
        .iter()
        .map(|k| (k.id.as_str(), k.invalid, k.uses))
        .collect();
    anyhow::ensure!(ids == [("k8", true, 1), ("k9", true, 0)], "{ids:?}");
    anyhow::ensure!(
        keys.keys
            .iter()
            .all(|k| k.revoked.is_some() && k.key.is_none())
    );
    let all_keys: KeysAnswer = q
        .ok(
            "keys.list",
            json!({"tailnet": TAILNET, "userId": "u1", "all": true}),
        )
        .await?;
    anyhow::ensure!(all_keys.keys == keys.keys, "all=true lists the same keys");
    let k: KeyAnswer = q
        .ok(
            "keys.get",
            json!({"tailnet": TAILNET, "userId": "u1", "keyId": "k8"}),
        )
        .await?;
    anyhow::ensure!(k.key.user_id == "u1" && k.key.last_used.is_some());

    let d: DeviceAnswer = q
        .ok("devices.get", json!({"tailnet": TAILNET, "nodeId": "n10"}))
        .await?;
    anyhow::ensure!(
        d.device.user == "user1@example.com" && d.device.auth_key_id == "k8",
        "{d:?}"
    );
    let ds: DevicesAnswer = q.ok("devices.list", json!({"tailnet": TAILNET})).await?;
    anyhow::ensure!(ds.devices.iter().any(|x| x.node_id == "n10"));
    let (code, _) = q
        .error(
            "devices.get",
            json!({"tailnet": TAILNET, "nodeId": "n999"})
                .to_string()
                .as_bytes(),
        )
        .await?;
    anyhow::ensure!(code == "not_found");
    let (code, _) = q
        .error("identity.token", br#"{"tokenId":"t999999"}"#)
        .await?;
    anyhow::ensure!(code == "not_found");
    teardown(rig, all, stop).await
}

#[tokio::test]
async fn r09_another_users_key_is_not_found_exactly_like_an_unknown_one() -> anyhow::Result<()> {
    // Proves R09 on the read side: u2 asking for u1's key gets the very same bytes as asking for
    // a key that does not exist, and u2's list never holds u1's keys.
    let (rig, all, q, stop) = setup(2_000).await?;
    let other = q
        .raw_json(
            "keys.get",
            json!({"tailnet": TAILNET, "userId": "u2", "keyId": "k8"}),
        )
        .await?;
    let unknown = q
        .raw_json(
            "keys.get",
            json!({"tailnet": TAILNET, "userId": "u2", "keyId": "k777"}),
        )
        .await?;
    anyhow::ensure!(
        other == unknown,
        "{} vs {}",
        String::from_utf8_lossy(&other),
        String::from_utf8_lossy(&unknown)
    );
    let v: Value = serde_json::from_slice(&other)?;
    anyhow::ensure!(v["error"]["code"] == "not_found", "{v}");
    let list: KeysAnswer = q
        .ok("keys.list", json!({"tailnet": TAILNET, "userId": "u2"}))
        .await?;
    anyhow::ensure!(!list.keys.is_empty() && list.keys.iter().all(|k| k.user_id == "u2"));
    teardown(rig, all, stop).await
}

#[tokio::test]
async fn min_seq_waits_for_the_write_and_is_bounded() -> anyhow::Result<()> {
    // Proves read-your-writes: a query carrying the seq of a write just committed waits until
    // the view has it (never answers older state), and a minSeq the view cannot reach within
    // read_wait_ms_max answers `unavailable` instead of hanging.
    let (mut rig, all, q, stop) = setup(300).await?;
    for _ in 0..24 {
        let step = rig.next_step;
        rig.append_steps(1).await?;
        let seq = rig.head();
        let v = q.ask("keys.list", json!({"tailnet": TAILNET, "userId": authkeys_projections::fixtures::owner_of(step).as_str(), "minSeq": seq})).await?;
        anyhow::ensure!(
            v["ok"] == json!(true) && v["seq"].as_u64() >= Some(seq),
            "step {step}: {v}"
        );
        if step % 8 < 2 {
            let id = format!("k{step}");
            anyhow::ensure!(
                v["keys"]
                    .as_array()
                    .is_some_and(|ks| ks.iter().any(|k| k["id"] == id.as_str())),
                "step {step}: {v}"
            );
        }
    }
    let far = rig.head() + 1_000;
    let started = std::time::Instant::now();
    let (code, message) = q
        .error(
            "devices.list",
            json!({"tailnet": TAILNET, "minSeq": far})
                .to_string()
                .as_bytes(),
        )
        .await?;
    anyhow::ensure!(code == "unavailable", "{code}: {message}");
    anyhow::ensure!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before the bound"
    );
    teardown(rig, all, stop).await
}

#[tokio::test]
async fn malformed_requests_are_bad_requests_naming_the_field() -> anyhow::Result<()> {
    // Proves that nothing a requester sends crashes the responders and every refusal names the
    // field: missing, unknown, wrongly typed and invalid fields, non-JSON and non-objects.
    let (rig, all, q, stop) = setup(2_000).await?;
    let cases: &[(&str, &[u8], &str)] = &[
        ("keys.list", b"{}", "tailnet"),
        ("keys.list", br#"{"tailnet":"Tfixture"}"#, "userId"),
        (
            "keys.list",
            br#"{"tailnet":"T fixture","userId":"u1"}"#,
            "tailnet",
        ),
        (
            "keys.list",
            br#"{"tailnet":"Tfixture","userId":"u1","extra":1}"#,
            "extra",
        ),
        (
            "keys.list",
            br#"{"tailnet":"Tfixture","userId":"u1","minSeq":"5"}"#,
            "minSeq",
        ),
        (
            "keys.get",
            br#"{"tailnet":"Tfixture","userId":"u1","keyId":"nope"}"#,
            "keyId",
        ),
        (
            "devices.get",
            br#"{"tailnet":"Tfixture","nodeId":"k1"}"#,
            "nodeId",
        ),
        ("identity.token", br#"{"tokenId":5}"#, "tokenId"),
        ("identity.tailnet", b"not json", "request"),
        ("devices.list", b"[1,2]", "request"),
        ("devices.list", b"", "request"),
    ];
    for (what, body, field) in cases {
        let (code, message) = q.error(what, body).await?;
        anyhow::ensure!(
            code == "bad_request" && message.starts_with(&format!("{field}:")),
            "{what} {}: {code} {message}",
            String::from_utf8_lossy(body)
        );
    }
    // Still serving.
    let _: DevicesAnswer = q.ok("devices.list", json!({"tailnet": TAILNET})).await?;
    teardown(rig, all, stop).await
}

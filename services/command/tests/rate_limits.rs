//! R22 and issue 11's finding 1: limits on failed registrations never refuse a correct key. A
//! registrar over its limit, or a key id under attack, still has a correct secret accepted at
//! once; only failing attempts are refused `rate_limited`; one registrar cannot deny service
//! to another; and failing attempts never reach the writer (the log's write transactions do
//! not move while they are refused).

mod command_support;

use anyhow::{Context, ensure};
use authkeys_command::{CommandConfig, RateLimitConfig};
use authkeys_domain::secret::{self, SecretKind};
use authkeys_protocol::{DeviceReply, Reply, subject};
use command_support::{Harness, expect_error, node_key, register_body};
use serde_json::Value;

fn limited(burst: u32, key_burst: u32) -> CommandConfig {
    CommandConfig {
        rate_limits: RateLimitConfig {
            registrar_failures_burst: burst,
            registrar_failures_per_minute: 1,
            key_failures_burst: key_burst,
            key_failures_per_minute: 1,
            ..RateLimitConfig::default()
        },
        ..CommandConfig::default()
    }
}

/// Registers `key` as `registrar` under request id `id`; the reply's bytes.
async fn send(
    h: &Harness,
    registrar: &str,
    id: &str,
    key: &str,
    nk: u128,
) -> anyhow::Result<Vec<u8>> {
    let body = register_body(id, key, &node_key(nk));
    h.raw_as(registrar, subject::REGISTER, serde_json::to_vec(&body)?)
        .await
}

fn accepted(bytes: &[u8]) -> anyhow::Result<()> {
    let r: Reply<DeviceReply> = serde_json::from_slice(bytes)?;
    ensure!(
        matches!(r, Reply::Ok(_)),
        "refused: {}",
        String::from_utf8_lossy(bytes)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_01_a_limited_registrar_still_registers_with_a_correct_key() -> anyhow::Result<()> {
    // "evil" fails past its burst and is limited; its failing attempts are rate_limited, but its
    // correct key is accepted at once, and another registrar's failures are untouched.
    let h = Harness::start(limited(3, 0)).await?;
    let good = h.new_key("gen-good", true).await?;
    for i in 0..10 {
        accepted(&send(&h, "busy", &format!("ok-{i}"), &good, i).await?)
            .with_context(|| format!("success {i} limited"))?;
    }
    let writes = h.transactions();
    // Three wrong keys are refused as such; from then on the registrar is limited.
    for (tries, code) in [(0..3, "invalid_key"), (3..6, "rate_limited")] {
        for i in tries {
            let bytes = send(
                &h,
                "evil",
                &format!("e-{i}"),
                &format!("tskey-auth-bad{i}"),
                99,
            )
            .await?;
            expect_error(&bytes, code)?;
        }
    }
    ensure!(
        h.transactions() == writes,
        "failing registrations reached the writer"
    );
    accepted(&send(&h, "evil", "e-good", &good, 100).await?)
        .context("a limited registrar's correct key")?;
    let bytes = send(&h, "honest", "h-1", "tskey-auth-typo", 101).await?;
    expect_error(&bytes, "invalid_key")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_01_wrong_secrets_for_a_key_id_do_not_lock_out_its_holder() -> anyhow::Result<()> {
    // Ten wrong secrets for a public key id, from ever new registrars, exhaust the key id's
    // bucket: the next wrong one is rate_limited, and the real holder registers at once.
    let h = Harness::start(limited(0, 5)).await?;
    let good = h.new_key("gen-good", true).await?;
    let presented = secret::parse(SecretKind::Auth, &good).context("parses")?;
    let mut codes = Vec::new();
    for i in 0..10u8 {
        let wrong = secret::issue(SecretKind::Auth, &presented.id, &[i; 32], &[9; 32]).text;
        let bytes = send(&h, &format!("r{i}"), &format!("k-{i}"), &wrong, 50).await?;
        let v: Value = serde_json::from_slice(&bytes)?;
        codes.push(v["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    ensure!(
        codes[..5].iter().all(|c| c == "invalid_key")
            && codes[5..].iter().all(|c| c == "rate_limited"),
        "per-key codes: {codes:?}"
    );
    accepted(&send(&h, "holder", "holder-1", &good, 51).await?).context("the key's holder")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_01_a_race_on_a_one_off_key_does_not_lock_out_its_registrar() -> anyhow::Result<()>
{
    // 32 machines of an autoscaling group race on one one-off key, three times each, through one
    // registrar: one registers, every other attempt fails (and is limited past the burst); the
    // registrar's next correct key is accepted at once, and failures after the first round
    // never reach the writer.
    let h = Harness::start(limited(20, 10)).await?;
    let one_off = h.new_key("gen-one-off", false).await?;
    let good = h.new_key("gen-good", true).await?;
    let mut ok = 0;
    for round in 0..3 {
        let writes = h.transactions();
        let attempts = (0..32u128).map(|m| {
            let (h, key) = (&h, &one_off);
            async move { send(h, "asg", &format!("asg-{round}-{m}"), key, 200 + m).await }
        });
        for bytes in futures::future::join_all(attempts).await {
            let bytes = bytes?;
            let v: Value = serde_json::from_slice(&bytes)?;
            match v["error"]["code"].as_str() {
                None => ok += 1,
                Some("invalid_key" | "rate_limited") => {}
                Some(other) => anyhow::bail!("unexpected {other}"),
            }
        }
        if round > 0 {
            ensure!(
                h.transactions() == writes,
                "round {round}: a spent key reached the writer"
            );
        }
    }
    ensure!(ok == 1, "{ok} machines registered with one one-off key");
    accepted(&send(&h, "asg", "asg-good", &good, 300).await?)
        .context("the registrar's good key")?;
    Ok(())
}

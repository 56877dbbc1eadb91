//! Tailnet lock (R04) through the real binary and a real nats-server: `authkeys lock keygen`,
//! `init`, `status`, `sign` (an auth key offline, a locked-out node over NATS) and `disable`,
//! registrations with plain and pre-signed keys, and the device fields the API shows. The rules
//! themselves are tested in `domain/tests/rules.rs` (`r04_…`); the auditors' checks in
//! `audit/tests/verify_mutations.rs`.

mod api_support;
mod proc_support;

use std::path::Path;
use std::process::{Output, Stdio};

use anyhow::{Context, ensure};
use authkeys_events::Event;
use proc_support::{
    Procs, authkeys, bootstrapped, create_key, free_port, get_ok, http, log_events, register,
    reusable_key,
};
use serde_json::{Value, json};

/// The uniform refusal of a bad key (R10).
const INVALID_KEY: &str = "error: invalid_key: invalid, expired, revoked or used auth key";

/// `authkeys lock <args>`: its output.
fn lock(args: &[&str]) -> anyhow::Result<Output> {
    Ok(authkeys()
        .arg("lock")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?)
}

/// `authkeys lock <args>` that must succeed: its stdout.
fn lock_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = lock(args)?;
    ensure!(
        out.status.success(),
        "lock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `authkeys lock <args>` that must fail with exit 1: its stderr.
fn lock_refused(args: &[&str]) -> anyhow::Result<String> {
    let out = lock(args)?;
    ensure!(
        out.status.code() == Some(1),
        "lock {args:?} should exit 1: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8(out.stderr)?)
}

/// `authkeys register` that must be refused: its stderr.
fn register_refused(nats: &str, authkey: &str) -> anyhow::Result<String> {
    let out = authkeys()
        .args(["register", "--nats", nats, "--authkey", authkey])
        .args(["--hostname", "refused"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    ensure!(!out.status.success(), "a registration should be refused");
    Ok(String::from_utf8(out.stderr)?.trim_end().to_owned())
}

fn keygen(dir: &Path, name: &str) -> anyhow::Result<(String, String)> {
    let file = dir.join(name);
    let file = file.to_str().context("path")?.to_owned();
    let public = lock_ok(&["keygen", "--out", &file])?.trim_end().to_owned();
    Ok((file, public))
}

/// The lock's status as `authkeys lock status` prints it.
fn status(nats: &str, token: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&lock_ok(&[
        "status", "--nats", nats, "--token", token,
    ])?)?)
}

/// `authkeys serve` on `data`, and the HTTP port once it answers.
async fn serve(nats: &str, data: &Path, token: &str) -> anyhow::Result<(Procs, u16)> {
    let port = free_port()?;
    let procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", nats])
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/devices", token).await?;
    Ok((procs, port))
}

async fn device(port: u16, token: &str, node_id: &str) -> anyhow::Result<Value> {
    let d = http(
        port,
        "GET",
        &format!("/api/v2/device/{node_id}"),
        token,
        None,
    )
    .await?;
    ensure!(d.status == 200, "{d:?}");
    Ok(d.body)
}

/// Replaces the last hex digit of `text` with another.
fn flip_last(text: &str) -> String {
    let (head, last) = text.split_at(text.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r04_tailnet_lock_from_the_cli_end_to_end() -> anyhow::Result<()> {
    let (nats, dir, data, owner) = bootstrapped("data")?;
    let url = nats.url();
    let (_procs, port) = serve(&url, &data, &owner).await?;

    // keygen: a 0600 private key file and the public key; never over an existing file.
    let (k1, pub1) = keygen(dir.path(), "k1")?;
    let (k2, pub2) = keygen(dir.path(), "k2")?;
    let (k3, pub3) = keygen(dir.path(), "k3")?;
    ensure!(pub1.starts_with("tlpub:") && pub1.len() == 70, "{pub1}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&k1)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "mode {mode:o}");
    let again = lock(&["keygen", "--out", &k1])?;
    ensure!(!again.status.success(), "keygen over an existing file");

    let st = status(&url, &owner)?;
    ensure!(st["enabled"] == false, "{st}");

    // A Member may not turn the lock on; a wrong token is refused alike.
    let member = http(
        port,
        "POST",
        "/api/v2/tailnet/-/users",
        &owner,
        Some(json!({"loginName": "m@example.com", "role": "member"})),
    )
    .await?;
    let member_token = member.body["apiKey"]
        .as_str()
        .context("member token")?
        .to_owned();
    let err = lock_refused(&[
        "init",
        "--nats",
        &url,
        "--token",
        &member_token,
        "--trusted-key",
        &pub1,
    ])?;
    ensure!(err.contains("forbidden"), "{err}");
    let err = lock_refused(&["status", "--nats", &url, "--token", "tskey-api-nope"])?;
    ensure!(
        err.contains("invalid, expired or revoked API token"),
        "{err}"
    );

    // init: on, with keys 1 and 2; the disablement secret is printed once, last.
    let out = lock_ok(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &pub1,
        "--trusted-key",
        &pub2,
    ])?;
    let secret = out.lines().last().context("secret line")?.to_owned();
    ensure!(secret.starts_with("tldisable:"), "{out}");
    let st = status(&url, &owner)?;
    let mut trusted = vec![pub1.clone(), pub2.clone()];
    trusted.sort();
    ensure!(
        st["enabled"] == true && st["trustedKeys"] == json!(trusted),
        "{st}"
    );
    // Turning it on again is refused (changing keys needs a signature).
    let err = lock_refused(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &pub3,
    ])?;
    ensure!(err.contains("--lock-key"), "{err}");

    // A plain key registers a locked-out node; the API shows why.
    let key_text = reusable_key(port, &owner).await?;
    let plain = register(&url, &key_text, "plain", None)?;
    let plain_id = plain["nodeId"].as_str().context("nodeId")?.to_owned();
    let node_key = plain["nodeKey"].as_str().context("nodeKey")?.to_owned();
    ensure!(
        plain["tailnetLockError"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{plain}"
    );
    let st = status(&url, &owner)?;
    ensure!(st["lockedOut"][0]["nodeKey"] == json!(node_key), "{st}");

    // Signing the node with an untrusted key is refused; with key 1 it is released.
    let err = lock_refused(&[
        "sign",
        "--lock-key",
        &k3,
        "--nats",
        &url,
        "--token",
        &owner,
        &node_key,
    ])?;
    ensure!(err.contains("forbidden"), "{err}");
    lock_ok(&[
        "sign",
        "--lock-key",
        &k1,
        "--nats",
        &url,
        "--token",
        &owner,
        &node_key,
    ])?;
    let d = device(port, &owner, &plain_id).await?;
    ensure!(
        d["tailnetLockError"] == "" && d["tailnetLockKey"] == json!(pub1),
        "{d}"
    );

    // A key pre-signed with key 2 (offline) registers signed nodes.
    let presigned = lock_ok(&["sign", "--lock-key", &k2, &key_text])?
        .trim_end()
        .to_owned();
    ensure!(
        presigned.starts_with(&format!("{key_text}--TL")),
        "{presigned}"
    );
    let signed = register(&url, &presigned, "signed", None)?;
    ensure!(
        signed["tailnetLockError"] == "" && signed["tailnetLockKey"] == json!(pub2),
        "{signed}"
    );

    // A wrong, truncated or untrusted signature, and one made for another key, are the one
    // invalid_key refusal (R10).
    let other_text = reusable_key(port, &owner).await?;
    let (_, other_sig) = presigned.split_once("--TL").context("--TL")?;
    let untrusted = lock_ok(&["sign", "--lock-key", &k3, &key_text])?;
    for bad in [
        flip_last(&presigned),
        presigned[..presigned.len() - 2].to_owned(),
        untrusted.trim_end().to_owned(),
        format!("{other_text}--TL{other_sig}"),
    ] {
        ensure!(register_refused(&url, &bad)? == INVALID_KEY, "{bad}");
    }

    // Replacing the trusted keys needs a trusted key's signature: key 3 is not trusted; key 1
    // signs the new set {3}; then key 2's pre-signature stops working and key 3's works.
    let err = lock_refused(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &pub3,
        "--lock-key",
        &k3,
    ])?;
    ensure!(err.contains("forbidden"), "{err}");
    lock_ok(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &pub3,
        "--lock-key",
        &k1,
    ])?;
    ensure!(status(&url, &owner)?["trustedKeys"] == json!([pub3]));
    ensure!(register_refused(&url, &presigned)? == INVALID_KEY);
    let by3 = lock_ok(&["sign", "--lock-key", &k3, &key_text])?;
    register(&url, by3.trim_end(), "signed-3", None)?;

    // Disabling needs the secret; then a plain key's node is not locked out.
    let wrong = format!("tldisable:{}", "0".repeat(64));
    let err = lock_refused(&[
        "disable",
        "--nats",
        &url,
        "--token",
        &owner,
        "--disablement-secret",
        &wrong,
    ])?;
    ensure!(err.contains("wrong disablement secret"), "{err}");
    let err = lock_refused(&[
        "disable",
        "--nats",
        &url,
        "--token",
        &owner,
        "--disablement-secret",
        "nope",
    ])?;
    ensure!(err.contains("disablementSecret"), "{err}");
    lock_ok(&[
        "disable",
        "--nats",
        &url,
        "--token",
        &owner,
        "--disablement-secret",
        &secret,
    ])?;
    ensure!(status(&url, &owner)?["enabled"] == false);
    let after = register(&url, &key_text, "after", None)?;
    ensure!(after["tailnetLockError"] == "", "{after}");

    // The audit log has the TKA records; the auditor's verify passes, signatures included.
    let logs = get_ok(
        port,
        "/api/v2/tailnet/-/logging/configuration?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z",
        &owner,
    )
    .await?;
    let events: Vec<String> = logs["logs"]
        .as_array()
        .context("logs")?
        .iter()
        .map(|r| {
            format!(
                "{}.{}",
                r["target"]["type"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or("")
            )
        })
        .collect();
    for needed in [
        "TAILNET.ENABLE",
        "TAILNET.UPDATE",
        "TAILNET.DISABLE",
        "NODE.UPDATE",
    ] {
        ensure!(events.iter().any(|e| e == needed), "{needed} in {events:?}");
    }
    let data_text = data.to_str().context("path")?;
    let key = authkeys()
        .args(["audit", "public-key", "--data", data_text])
        .stdout(Stdio::piped())
        .output()?;
    let key = String::from_utf8(key.stdout)?.trim().to_owned();
    let verify = authkeys()
        .args([
            "audit",
            "verify",
            "--data",
            data_text,
            "--trusted-key",
            &key,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    ensure!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r04_a_pre_signed_reusable_key_serves_32_concurrent_registrations() -> anyhow::Result<()> {
    let (nats, dir, data, owner) = bootstrapped("data")?;
    let url = nats.url();
    let (_procs, port) = serve(&url, &data, &owner).await?;
    let (k1, pub1) = keygen(dir.path(), "k1")?;
    lock_ok(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &pub1,
    ])?;
    let key_text = reusable_key(port, &owner).await?;
    let presigned = lock_ok(&["sign", "--lock-key", &k1, &key_text])?
        .trim_end()
        .to_owned();

    let children = (0..32)
        .map(|i| {
            authkeys()
                .args(["register", "--nats", &url, "--authkey", &presigned])
                .args(["--hostname", &format!("ci-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: Value = serde_json::from_slice(&out.stdout)?;
        ensure!(
            d["tailnetLockError"] == "" && d["tailnetLockKey"] == json!(pub1),
            "{d}"
        );
    }
    let events = log_events(&data)?;
    let signed = events
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeSigned(s) if s.key_id.is_some()))
        .count();
    let registered = events
        .iter()
        .filter(|e| matches!(&e.event, Event::NodeRegistered(r) if r.tailnet_lock_error.is_none()))
        .count();
    ensure!(
        signed == 32 && registered == 32,
        "{signed} signed, {registered} registered"
    );
    ensure!(status(&url, &owner)?["signedNodes"] == 32);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r04_a_node_signature_made_for_another_tailnet_is_refused() -> anyhow::Result<()> {
    // The CLI signs the tailnet its status names; a request carrying a signature over another
    // tailnet (here sent by hand over NATS) is refused and writes nothing.
    use authkeys_events::lock::{LockPrivateKey, node_statement};
    use authkeys_events::{NodeKey, TailnetId};
    let (nats, _dir, data, owner) = bootstrapped("data")?;
    let url = nats.url();
    let (_procs, port) = serve(&url, &data, &owner).await?;
    let key = LockPrivateKey::from_seed([5; 32]);
    lock_ok(&[
        "init",
        "--nats",
        &url,
        "--token",
        &owner,
        "--trusted-key",
        &key.public().to_string(),
    ])?;
    let k = create_key(
        port,
        &owner,
        json!({"capabilities": {"devices": {"create": {}}}}),
    )
    .await?;
    let node = register(&url, k["key"].as_str().context("key")?, "n", None)?;
    let node_key = NodeKey::parse(node["nodeKey"].as_str().context("nodeKey")?)?;
    let before = log_events(&data)?.len();

    let other = TailnetId::parse("someone-else")?;
    let request = json!({
        "requestId": "sign-other",
        "token": owner,
        "nodeKey": node_key.to_string(),
        "lockKey": key.public().to_string(),
        "signature": key.sign(&node_statement(&other, &node_key)).to_string(),
    });
    let client = async_nats::connect(url.as_str()).await?;
    let reply = client
        .request(
            authkeys_protocol::subject::LOCK_SIGN,
            serde_json::to_vec(&request)?.into(),
        )
        .await?;
    let reply: Value = serde_json::from_slice(&reply.payload)?;
    ensure!(reply["error"]["code"] == "forbidden", "{reply}");
    ensure!(log_events(&data)?.len() == before, "nothing written");
    Ok(())
}

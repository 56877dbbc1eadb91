//! SPEC §6 end to end: NATS is not a trusted network. A real nats-server runs with the config
//! `authkeys admin nats-config` wrote (one nkey user per role and per registrar), and the real
//! binary runs every role as its own user (`authkeys serve --nats-auth`). Then:
//!
//! - an anonymous connection is refused;
//! - registrar `ra` registers a node with its own seed, and the event records `ra` as the actor
//!   (the subject names the registrar; NATS permissions make that true);
//! - with `ra`'s seed, each thing a registrar must not do is refused by the server — publishing
//!   `rb`'s subjects, an admin command, a timer command, `authkeys.log.read`, a view query;
//!   subscribing to `authkeys.cmd.>`, `authkeys.events.>` or `rb`'s inbox — each refusal is the
//!   server's own "Permissions Violation", and the log is byte-for-byte unchanged after them;
//! - the HTTP API, the views, the timers and an auditor (`authkeys audit verify --nats-auth`)
//!   all work;
//! - a standby command service with the command role's seed follows the stream and, once the
//!   primary is killed, takes over and registers `ra`'s node (SPEC §7).

mod api_support;
mod proc_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use authkeys_protocol::access::{RegistrarName, Role};
use authkeys_protocol::nats::Identity;
use authkeys_protocol::subject;
use authkeys_tests::NatsServer;
use proc_support::{Procs, authkeys, bootstrap, create_key, free_port, get_ok, http, log_events};
use serde_json::json;
use tokio::sync::mpsc;

/// How long a refused request may wait for an answer that never comes.
const REFUSED_WAIT_MS: u64 = 1_000;
/// How long to wait for the server's permission error to arrive.
const ERROR_WAIT_MS_MAX: u64 = 5_000;

/// `authkeys admin nats-config --out <dir> --registrar ra --registrar rb`.
fn nats_config(dir: &Path, extra: &[&str]) -> anyhow::Result<()> {
    let mut cmd = authkeys();
    cmd.args([
        "admin",
        "nats-config",
        "--registrar",
        "ra",
        "--registrar",
        "rb",
    ])
    .args(extra)
    .arg("--out")
    .arg(dir);
    run_ok(&mut cmd, "nats-config")?;
    Ok(())
}

/// Runs `cmd` with its output captured; it must succeed (`what` names it in the error).
fn run_ok(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
    ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// A connection as `role` whose server errors (permission violations) arrive on the receiver.
async fn connect_as(
    nats: &NatsServer,
    auth: &Path,
    role: Role,
) -> anyhow::Result<(async_nats::Client, mpsc::UnboundedReceiver<String>)> {
    let identity = Identity::from_dir(auth, role)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let options = identity
        .options("trust-test")
        .request_timeout(Some(Duration::from_millis(REFUSED_WAIT_MS)))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    tx.send(e.to_string()).ok();
                }
            }
        });
    Ok((options.connect(nats.url()).await?, rx))
}

/// Waits for the server to name `what` (`Publish to "<subject>"` or `Subscription to …`) in a
/// permissions violation.
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, what: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ERROR_WAIT_MS_MAX);
    loop {
        let e = tokio::time::timeout_at(deadline, errors.recv())
            .await
            .with_context(|| format!("no permissions violation for {what}"))?
            .context("error channel closed")?;
        if e.to_lowercase().contains("permissions violation") && e.contains(what) {
            return Ok(());
        }
    }
}

/// A bootstrapped `data` dir served by `authkeys serve --nats-auth <auth>` (every role as its
/// own NATS user), once it is healthy: the process, its HTTP port and the Owner's token.
async fn serve_as_roles(
    nats: &NatsServer,
    data: &Path,
    auth: &Path,
) -> anyhow::Result<(Procs, u16, String)> {
    let token = bootstrap(data)?;
    let port = free_port()?;
    let procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &nats.url(), "--http"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data)
            .arg("--nats-auth")
            .arg(auth)
            .spawn()?,
    ]);
    get_ok(port, "/healthz", &token).await?;
    Ok((procs, port, token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_refuses_anonymous_clients_and_every_role_anything_but_its_own_subjects()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let auth = dir.path().join("auth");
    nats_config(&auth, &[])?;
    let nats = NatsServer::start_with_config(&auth.join("nats-server.conf"))?;
    let data = dir.path().join("data");
    let (_procs, port, token) = serve_as_roles(&nats, &data, &auth).await?;

    // Anonymous: refused at connect.
    let anonymous = async_nats::ConnectOptions::new().connect(nats.url()).await;
    ensure!(anonymous.is_err(), "an anonymous connection was accepted");

    // Registrar ra registers a node through its own subject, with its own seed.
    let key = create_key(
        port,
        &token,
        json!({"capabilities": {"devices": {"create": {"reusable": true}}}}),
    )
    .await?;
    let secret = key["key"].as_str().context("secret")?.to_owned();
    run_ok(
        authkeys()
            .args(["register", "--nats", &nats.url(), "--registrar", "ra"])
            .arg("--nats-nkey")
            .arg(auth.join("registrar-ra.nk"))
            .args(["--authkey", &secret, "--hostname", "web-1"]),
        "register",
    )?;
    let registered = log_events(&data)?;
    let by = registered
        .iter()
        .find(|e| e.event.event_type().as_str() == "NodeRegistered")
        .context("NodeRegistered in the log")?;
    ensure!(
        by.actor.id == "ra",
        "the actor is the subject's registrar: {:?}",
        by.actor
    );

    // Registrar ra may do nothing else: every refusal is the server's, and nothing is written.
    let ra = RegistrarName::parse("ra").map_err(anyhow::Error::msg)?;
    let rb = RegistrarName::parse("rb").map_err(anyhow::Error::msg)?;
    let (client, mut errors) = connect_as(&nats, &auth, Role::Registrar(ra.clone())).await?;
    let before = proc_support::log_events(&data)?.len();
    let forbidden_publish = [
        subject::register_of(&rb),
        subject::node_connected_of(&rb),
        subject::GENERATE_KEY.to_owned(),
        subject::TIMER.to_owned(),
        subject::LOG_READ.to_owned(),
        subject::query_full::KEYS_LIST.to_owned(),
        format!("{}.T1.KeyRevoked", subject::EVENTS_PREFIX),
        // R23: only the gateway asks the webhooks role, for a secret above all.
        subject::WEBHOOKS_SECRET.to_owned(),
    ];
    for s in &forbidden_publish {
        let answer = client.request(s.clone(), "{}".into()).await;
        ensure!(answer.is_err(), "{s} was answered for registrar ra");
        refused(&mut errors, &format!("Publish to \"{s}\"")).await?;
    }
    let forbidden_subscribe = [
        format!("{}.>", subject::COMMAND_PREFIX),
        format!("{}.>", subject::EVENTS_PREFIX),
        format!("{}.>", subject::registrar_inbox(&rb)),
    ];
    for s in &forbidden_subscribe {
        let _sub = client.subscribe(s.clone()).await?;
        refused(&mut errors, &format!("Subscription to \"{s}\"")).await?;
    }
    // Its own subject still works (the connection survived every refusal).
    let own = client
        .request(subject::node_connected_of(&ra), "{}".into())
        .await;
    ensure!(own.is_ok(), "ra's own subject: {own:?}");
    ensure!(
        log_events(&data)?.len() == before,
        "a refused request wrote to the log"
    );

    // The API, the views (the device), the timers (/metrics) and an auditor all work.
    let devices = get_ok(port, "/api/v2/tailnet/-/devices", &token).await?;
    ensure!(
        devices["devices"].as_array().is_some_and(|d| d.len() == 1),
        "{devices}"
    );
    let metrics = http(port, "GET", "/metrics", &token, None).await?;
    let text = String::from_utf8_lossy(&metrics.raw);
    ensure!(
        text.contains("authkeys_timers_seq"),
        "timers status over NATS: {text}"
    );
    // The webhooks role answers the gateway as its own user (R23).
    get_ok(port, "/api/v2/tailnet/-/webhooks", &token).await?;
    ensure!(
        text.contains("authkeys_webhooks_seq"),
        "webhooks status over NATS: {text}"
    );
    let public = authkeys()
        .args(["audit", "public-key", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .output()?;
    let public = String::from_utf8(public.stdout)?.trim().to_owned();
    run_ok(
        authkeys()
            .args([
                "audit",
                "verify",
                "--nats",
                &nats.url(),
                "--trusted-key",
                &public,
            ])
            .arg("--nats-auth")
            .arg(&auth),
        "audit verify as the auditor",
    )?;
    // The auditor reads the log and nothing else.
    let (auditor, mut errors) = connect_as(&nats, &auth, Role::Auditor).await?;
    let s = subject::query_full::DEVICES_LIST;
    ensure!(
        auditor.request(s, "{}".into()).await.is_err(),
        "auditor asked a view"
    );
    refused(&mut errors, &format!("Publish to \"{s}\"")).await?;

    // The operator's `authkeys lock` works with its seed; the seed alone may send lock requests
    // and nothing else (and each lock request still needs a user's token).
    let status = run_ok(
        authkeys()
            .args(["lock", "status", "--nats", &nats.url(), "--token", &token])
            .arg("--nats-nkey")
            .arg(auth.join("operator.nk")),
        "lock status as the operator",
    )?;
    ensure!(
        String::from_utf8_lossy(&status.stdout).contains("\"enabled\": false"),
        "{status:?}"
    );
    let (operator, mut errors) = connect_as(&nats, &auth, Role::Operator).await?;
    let s = subject::GENERATE_KEY;
    ensure!(
        operator.request(s, "{}".into()).await.is_err(),
        "the operator sent an admin command"
    );
    refused(&mut errors, &format!("Publish to \"{s}\"")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_config_tls_requires_tls_and_every_role_trusts_the_written_ca() -> anyhow::Result<()> {
    // `nats-config --tls` writes a CA and a server certificate and makes the server require
    // TLS: a client that does not trust the CA cannot connect, even with a valid seed; `serve
    // --nats-auth` (which trusts `ca.pem` from the folder) and a registrar given
    // `--nats-tls-ca` work.
    let dir = tempfile::tempdir()?;
    let auth = dir.path().join("auth");
    nats_config(&auth, &["--tls"])?;
    let nats = NatsServer::start_with_config(&auth.join("nats-server.conf"))?;
    let seed = std::fs::read_to_string(auth.join("registrar-ra.nk"))?;
    let untrusting = async_nats::ConnectOptions::new()
        .nkey(seed.trim().to_owned())
        .connect(nats.url())
        .await;
    ensure!(
        untrusting.is_err(),
        "a client that does not trust the CA connected"
    );

    let data = dir.path().join("data");
    let (_procs, port, token) = serve_as_roles(&nats, &data, &auth).await?;
    let key = create_key(
        port,
        &token,
        json!({"capabilities": {"devices": {"create": {"reusable": true}}}}),
    )
    .await?;
    let secret = key["key"].as_str().context("secret")?.to_owned();
    let mut register = authkeys();
    register
        .args(["register", "--nats", &nats.url(), "--registrar", "ra"])
        .arg("--nats-nkey")
        .arg(auth.join("registrar-ra.nk"))
        .arg("--nats-tls-ca")
        .arg(auth.join("ca.pem"))
        .args(["--authkey", &secret, "--hostname", "web-tls"]);
    run_ok(&mut register, "register over TLS")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_and_takes_over_as_the_command_role_under_authentication()
-> anyhow::Result<()> {
    // The standby (SPEC §7) is the command role with the command role's seed: following the
    // stream, fetching checkpoints and taking the lease are within its permissions, and so is
    // serving once it leads. Registrar ra registers through it after the primary is killed.
    let dir = tempfile::tempdir()?;
    let auth = dir.path().join("auth");
    nats_config(&auth, &[])?;
    let nats = NatsServer::start_with_config(&auth.join("nats-server.conf"))?;
    let data = dir.path().join("data");
    let (mut primary, port, token) = serve_as_roles(&nats, &data, &auth).await?;
    let key = create_key(
        port,
        &token,
        json!({"capabilities": {"devices": {"create": {"reusable": true}}}}),
    )
    .await?;
    let secret = key["key"].as_str().context("secret")?.to_owned();

    let standby = dir.path().join("standby");
    std::fs::create_dir_all(&standby)?;
    for f in ["signing.key", "hashing.key", "derivation.key"] {
        std::fs::copy(data.join(f), standby.join(f))?;
    }
    let said = dir.path().join("standby.log");
    let _procs = Procs(vec![
        authkeys()
            .args(["command", "--standby", "--nats", &nats.url()])
            .arg("--data")
            .arg(&standby)
            .arg("--nats-auth")
            .arg(&auth)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&said)?)
            .spawn()?,
    ]);
    let said = || std::fs::read_to_string(&said).unwrap_or_default();
    // Caught up: the copy holds every event of the primary's log.
    let want = log_events(&data)?.len();
    let deadline = std::time::Instant::now() + Duration::from_millis(proc_support::WAIT_MS_MAX);
    while !standby.join("log.redb").exists() || log_events(&standby)?.len() < want {
        ensure!(
            std::time::Instant::now() < deadline,
            "the standby never caught up:\n{}",
            said()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for c in &mut primary.0 {
        c.kill()?;
        c.wait()?;
    }
    let register = || {
        authkeys()
            .args(["register", "--nats", &nats.url(), "--registrar", "ra"])
            .arg("--nats-nkey")
            .arg(auth.join("registrar-ra.nk"))
            .args(["--authkey", &secret, "--hostname", "after-failover"])
            .status()
    };
    while !register()?.success() {
        ensure!(
            std::time::Instant::now() < deadline,
            "no registration after the failover:\n{}",
            said()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = log_events(&standby)?;
    ensure!(
        events.iter().any(|e| matches!(&e.event,
            authkeys_events::Event::NodeRegistered(n) if n.hostname.as_str() == "after-failover")),
        "the new primary's log holds the registration"
    );
    Ok(())
}

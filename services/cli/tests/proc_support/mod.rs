//! Support for tests that run the real `authkeys` binary as separate processes against a real
//! `nats-server`: spawning, killing on drop, bootstrapping, HTTP with a token, and reading the
//! log file read-only beside the running service.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use authkeys_events::{Envelope, Seq};
use authkeys_log::LogReader;
use authkeys_tests::NatsServer;
use bytes::Bytes;
use serde_json::Value;

use crate::api_support::{self, send};

/// Bound on every wait of these tests (start-up, views catching up, timers firing).
pub const WAIT_MS_MAX: u64 = 30_000;

/// The binary, with stdin closed and its output dropped.
pub fn authkeys() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_authkeys"));
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Children killed on drop, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// `authkeys <role> --nats <nats> --data <data>` (`command`, `project`, `timers`), spawned.
pub fn spawn_role(role: &str, nats: &str, data: &Path) -> anyhow::Result<Child> {
    authkeys()
        .args([role, "--nats", nats])
        .arg("--data")
        .arg(data)
        .spawn()
        .with_context(|| format!("spawn authkeys {role}"))
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `authkeys admin bootstrap` of tailnet `example.com` with Owner `owner` into `data`, not run.
pub fn bootstrap_command(data: &Path, owner: &str) -> Command {
    let mut c = authkeys();
    c.args([
        "admin",
        "bootstrap",
        "--tailnet",
        "example.com",
        "--owner",
        owner,
    ])
    .arg("--data")
    .arg(data);
    c
}

/// `authkeys admin bootstrap` into `data`: the Owner's token.
pub fn bootstrap(data: &Path) -> anyhow::Result<String> {
    let out = bootstrap_command(data, "o@example.com")
        .stdout(Stdio::piped())
        .output()?;
    ensure!(out.status.success(), "bootstrap failed");
    Ok(String::from_utf8(out.stdout)?.trim_end().to_owned())
}

/// A nats-server, and a temp dir whose subdirectory `name` is bootstrapped: the server, the
/// temp dir, that subdirectory and the Owner's token.
pub fn bootstrapped(
    name: &str,
) -> anyhow::Result<(NatsServer, tempfile::TempDir, PathBuf, String)> {
    let nats = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join(name);
    let token = bootstrap(&data)?;
    Ok((nats, dir, data, token))
}

/// An HTTP request with the token; JSON body if any.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<api_support::Answer> {
    let mut headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let body = match body {
        Some(v) => {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            Bytes::from(serde_json::to_vec(&v)?)
        }
        None => Bytes::new(),
    };
    send(port, method, path, &headers, body).await
}

/// Retries `GET path` until it answers 200 (the processes are starting), within the bound.
pub async fn get_ok(port: u16, path: &str, token: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        match http(port, "GET", path, token, None).await {
            Ok(a) if a.status == 200 => return Ok(a.body),
            other if Instant::now() >= deadline => {
                anyhow::bail!("GET {path} never answered 200: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `authkeys register` with `authkey` as `hostname` (and `node_key`, else a random one): the
/// device JSON.
pub fn register(
    nats: &str,
    authkey: &str,
    hostname: &str,
    node_key: Option<&str>,
) -> anyhow::Result<Value> {
    let mut cmd = authkeys();
    cmd.args(["register", "--nats", nats, "--authkey", authkey])
        .args(["--hostname", hostname]);
    if let Some(nk) = node_key {
        cmd.args(["--node-key", nk]);
    }
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
    ensure!(
        out.status.success(),
        "register: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `POST /api/v2/tailnet/-/keys` with `body`, expecting 200; returns the key.
pub async fn create_key(port: u16, token: &str, body: Value) -> anyhow::Result<Value> {
    let created = http(port, "POST", "/api/v2/tailnet/-/keys", token, Some(body)).await?;
    ensure!(
        created.status == 200,
        "create: {} {:?}",
        created.status,
        created.body
    );
    Ok(created.body)
}

/// A new reusable auth key's secret text (`POST /api/v2/tailnet/-/keys`).
pub async fn reusable_key(port: u16, token: &str) -> anyhow::Result<String> {
    let key = create_key(
        port,
        token,
        serde_json::json!({"capabilities": {"devices": {"create": {"reusable": true}}}}),
    )
    .await?;
    key["key"]
        .as_str()
        .map(str::to_owned)
        .context("a new key carries its secret")
}

/// Every event of the log in the command service's data dir, read-only beside the writer.
pub fn log_events(command_data: &Path) -> anyhow::Result<Vec<Envelope>> {
    let reader = LogReader::open(&command_data.join("log.redb")).context("open the log")?;
    let mut out = Vec::new();
    loop {
        let from = Seq::new(out.len() as u64 + 1).context("seq")?;
        let page = reader.read(from, 1000)?;
        if page.is_empty() {
            return Ok(out);
        }
        for e in page {
            out.push(e.envelope()?);
        }
    }
}

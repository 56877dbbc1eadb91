//! Support for the command service's black-box tests: a real `nats-server`, a tailnet
//! bootstrapped into a temp data dir, the service (`CommandRole`) running in-process on it, and typed
//! helpers for its NATS subjects.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Context, bail, ensure};
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::{Bootstrapped, bootstrap};
use authkeys_command::{CommandConfig, CommandService, REGISTRAR_HEADER, mint};
use authkeys_domain::State;
use authkeys_events::{Clock, Envelope, EventType, Seq, Timestamp};
use authkeys_log::{Log, LogConfig};
use authkeys_protocol::{self as wire, DeviceReply, ErrorBody, KeyReply, Reply, subject};
use authkeys_tests::NatsServer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on one request's answer; generous for a loaded 2-core CI machine.
pub const REQUEST_WAIT_MS_MAX: u64 = 30_000;
/// The tailnet every harness bootstraps.
pub const TAILNET_NAME: &str = "example.com";
/// Its Owner.
pub const OWNER_LOGIN: &str = "owner@example.com";

/// An admin request body: `commandId`, `tailnet`, `actor` and `fields`.
pub fn admin_body(command_id: &str, tailnet: &str, actor: &str, fields: Value) -> Value {
    let mut body = json!({
        "commandId": command_id,
        "tailnet": tailnet,
        "actor": actor,
    });
    if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
        b.extend(f);
    }
    body
}

/// A command service in-process (no NATS) over a tailnet bootstrapped into a data dir, on a
/// clock that moves only by hand.
pub struct InProcess {
    /// What bootstrap made.
    pub made: Bootstrapped,
    /// The clock's time: it starts at the wall clock (bootstrap's time).
    pub now_ms: Arc<AtomicI64>,
    /// The service.
    pub service: CommandService,
    /// Its log.
    pub log: Log<State>,
}

impl InProcess {
    /// Bootstraps a tailnet into `dir` and opens the service on it with `config`.
    pub async fn start(dir: &Path, config: CommandConfig) -> anyhow::Result<InProcess> {
        let path = dir.to_path_buf();
        let made = tokio::task::spawn_blocking(move || bootstrap(&path, TAILNET_NAME, OWNER_LOGIN))
            .await??;
        let now_ms = Arc::new(AtomicI64::new(
            authkeys_events::decision::system_clock().now().unix_ms(),
        ));
        let read = Arc::clone(&now_ms);
        let clock = Clock::new(move || {
            Timestamp::from_unix_ms(read.load(Ordering::SeqCst)).expect("a test time in range")
        });
        let mut log_config = LogConfig::in_dir(dir);
        log_config.clock = clock.clone();
        let (mint, log) = mint::open_log(dir, log_config)?;
        let service = CommandService::with_clock(log.clone(), mint, config, clock);
        Ok(InProcess {
            made,
            now_ms,
            service,
            log,
        })
    }
}

/// A running command service over a bootstrapped tailnet.
pub struct Harness {
    /// The broker; dropped (killed) last.
    pub nats: NatsServer,
    /// The data dir.
    pub dir: tempfile::TempDir,
    /// A client of the test's own.
    pub client: async_nats::Client,
    /// The tailnet's id.
    pub tailnet: String,
    /// The Owner's user id.
    pub owner: String,
    /// The Owner's API token (a secret: the secrets test looks for it).
    pub owner_token: String,
    log: Log<State>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    /// Bootstraps a tailnet and starts the service with `config`, relay and log reads on.
    pub async fn start(config: CommandConfig) -> anyhow::Result<Harness> {
        let nats = NatsServer::start()?;
        let dir = tempfile::tempdir().context("temp data dir")?;
        let path = dir.path().to_path_buf();
        let made = tokio::task::spawn_blocking(move || bootstrap(&path, TAILNET_NAME, OWNER_LOGIN))
            .await??;
        let mut settings = CommandSettings::new(dir.path(), nats.url());
        settings.command = config;
        let app = CommandRole::build(settings).await?;
        let log = app.log().context("the service opened its log")?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        let client = authkeys_tests::nats_client(&nats.url(), REQUEST_WAIT_MS_MAX).await?;
        Ok(Harness {
            nats,
            dir,
            client,
            tailnet: made.tailnet_id.to_string(),
            owner: made.owner_id.to_string(),
            owner_token: made.token.text.clone(),
            log,
            shutdown,
            task: Some(task),
        })
    }

    /// Sends `payload` to `subject` as registrar `registrar` and returns the reply's bytes.
    pub async fn raw_as(
        &self,
        registrar: &str,
        subject: &str,
        payload: Vec<u8>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REGISTRAR_HEADER, registrar);
        let reply = self
            .client
            .request_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .with_context(|| format!("request on {subject}"))?;
        Ok(reply.payload.to_vec())
    }

    /// Write transactions the log has committed since the service started (each one fsync):
    /// what reached the writer.
    pub fn transactions(&self) -> u64 {
        self.log
            .stats()
            .transactions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends raw bytes as the `test` registrar.
    pub async fn raw(&self, subject: &str, payload: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        self.raw_as("test", subject, payload).await
    }

    /// Sends a JSON request and reads the reply as `Reply<T>`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        subject: &str,
        request: &impl Serialize,
    ) -> anyhow::Result<Reply<T>> {
        let bytes = self.raw(subject, serde_json::to_vec(request)?).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("reply on {subject}: {}", String::from_utf8_lossy(&bytes)))
    }

    /// An admin request body: `commandId`, `tailnet`, `actor` (the Owner) and `fields`.
    pub fn admin(&self, command_id: &str, fields: Value) -> Value {
        admin_body(command_id, &self.tailnet, &self.owner, fields)
    }

    /// Generates a key as the Owner; returns the reply's key (with its secret in `key.key`).
    pub async fn generate_key(
        &self,
        command_id: &str,
        create: Value,
        expiry_seconds: Option<u32>,
    ) -> anyhow::Result<wire::Key> {
        let mut fields = json!({"capabilities": {"devices": {"create": create}}});
        if let Some(s) = expiry_seconds {
            fields["expirySeconds"] = json!(s);
        }
        let body = self.admin(command_id, fields);
        match self.call::<KeyReply>(subject::GENERATE_KEY, &body).await? {
            Reply::Ok(r) => Ok(r.key),
            Reply::Err(e) => bail!("generate-key refused: {:?}", e.error),
        }
    }

    /// The secret text of a generated key.
    pub async fn new_key(&self, command_id: &str, reusable: bool) -> anyhow::Result<String> {
        let key = self
            .generate_key(command_id, json!({"reusable": reusable}), None)
            .await?;
        key.key.context("a new key carries its secret")
    }

    /// A registration's bytes, as the `test` registrar.
    pub async fn register_raw(
        &self,
        request_id: &str,
        auth_key: &str,
        node_key: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let body = register_body(request_id, auth_key, node_key);
        self.raw(subject::REGISTER, serde_json::to_vec(&body)?)
            .await
    }

    /// A registration, parsed.
    pub async fn register(
        &self,
        request_id: &str,
        auth_key: &str,
        node_key: &str,
    ) -> anyhow::Result<Result<DeviceReply, ErrorBody>> {
        let bytes = self.register_raw(request_id, auth_key, node_key).await?;
        let reply: Reply<DeviceReply> = serde_json::from_slice(&bytes)?;
        Ok(reply.into_result())
    }

    /// Registers a node, which must be accepted; returns its device.
    pub async fn register_ok(
        &self,
        request_id: &str,
        auth_key: &str,
        node_key: &str,
    ) -> anyhow::Result<DeviceReply> {
        self.register(request_id, auth_key, node_key)
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }

    /// Every event in the log.
    pub fn events(&self) -> anyhow::Result<Vec<Envelope>> {
        let mut out = Vec::new();
        let mut from = Seq::FIRST;
        loop {
            let page = self.log.read(from, 1024)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            from = Seq::new(last.seq.get() + 1)?;
            for ev in &page {
                out.push(ev.envelope()?);
            }
        }
    }

    /// The number of events of type `ty`.
    pub fn count(&self, ty: EventType) -> anyhow::Result<usize> {
        Ok(self
            .events()?
            .iter()
            .filter(|e| e.event_type() == ty)
            .count())
    }

    /// The log's head seq.
    pub fn head(&self) -> u64 {
        self.log.head().seq
    }

    /// Cancels the service and waits for it to answer everything and stop.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.context("service task")??;
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A registration request body.
pub fn register_body(request_id: &str, auth_key: &str, node_key: &str) -> Value {
    json!({
        "requestId": request_id,
        "authKey": auth_key,
        "nodeKey": node_key,
        "hostname": "node",
        "os": "linux",
    })
}

/// A distinct, valid node key for `n`.
pub fn node_key(n: u128) -> String {
    format!("nodekey:{n:064x}")
}

/// Asserts that `bytes` is a refusal with `code`; returns its message.
pub fn expect_error(bytes: &[u8], code: &str) -> anyhow::Result<String> {
    let v: Value = serde_json::from_slice(bytes)?;
    ensure!(
        v["ok"] == json!(false) && v["error"]["code"] == json!(code),
        "expected {code}, got {}",
        String::from_utf8_lossy(bytes)
    );
    Ok(v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

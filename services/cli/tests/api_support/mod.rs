//! Support for the HTTP API's black-box tests: the real stack in-process — a `nats-server`, the
//! command service (log, relay, `authkeys.log.read`) on a bootstrapped tailnet, the projection
//! views (`authkeys_projections::Views`) and the gateway on port 0 — and a small HTTP/1.1
//! client (hyper) that returns status, headers and JSON.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_command::bootstrap::bootstrap;
use authkeys_domain::State;
use authkeys_events::Seq;
use authkeys_gateway::{self, ApiSettings};
use authkeys_log::Log;
use authkeys_protocol::subject;
use authkeys_tests::{NatsServer, wait_until_async};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on one HTTP answer; generous for a loaded 2-core CI machine.
pub const REQUEST_WAIT_MS_MAX: u64 = 30_000;
/// Bound on the stack becoming healthy.
pub const READY_WAIT_MS_MAX: u64 = 30_000;
/// Bound on the log settling (relay cursor and checkpoint at the head; checkpoints come every
/// 5 s by default).
pub const SETTLE_WAIT_MS_MAX: u64 = 20_000;
/// The tailnet every stack bootstraps.
pub const TAILNET_NAME: &str = "example.com";
/// Its Owner.
pub const OWNER_LOGIN: &str = "owner@example.com";

/// One answer: status, headers and the body as JSON (`Value::Null` for an empty body).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

/// The whole stack for one test.
pub struct Stack {
    /// Dropped (killed) last.
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tailnet: String,
    pub owner_token: String,
    /// A NATS client of the test's own (registrations).
    pub client: async_nats::Client,
    log: Log<State>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Stack {
    /// Starts everything and waits for `GET /healthz` to answer 200.
    pub async fn start() -> anyhow::Result<Stack> {
        Self::start_with(|_| {}).await
    }

    /// [`Stack::start`] with the gateway's settings changed by `tweak` (benchmarks lift the
    /// rate limit).
    pub async fn start_with(tweak: impl FnOnce(&mut ApiSettings)) -> anyhow::Result<Stack> {
        let nats = NatsServer::start()?;
        let dir = tempfile::tempdir().context("temp data dir")?;
        let path = dir.path().to_path_buf();
        let made = tokio::task::spawn_blocking(move || bootstrap(&path, TAILNET_NAME, OWNER_LOGIN))
            .await??;
        let shutdown = CancellationToken::new();
        let command = CommandRole::build(CommandSettings::new(dir.path(), nats.url())).await?;
        let log = command.log().context("the service opened its log")?;
        let mut tasks = vec![tokio::spawn(command.run(shutdown.clone()))];

        let views_client = async_nats::connect(nats.url()).await?;
        let config = authkeys_projections::ProjectionConfig::new(dir.path().join("views"));
        let views_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let clock = authkeys_events::decision::system_clock();
            let views = authkeys_projections::Views::build(views_client, config, clock).await?;
            views.run(views_shutdown).await
        }));

        let mut settings = ApiSettings::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            nats.url(),
            dir.path().join("hashing.key"),
        );
        tweak(&mut settings);
        let gateway = authkeys_gateway::Gateway::build(settings).await?;
        let port = gateway.port();
        tasks.push(tokio::spawn(gateway.run(shutdown.clone())));

        let client = authkeys_tests::nats_client(&nats.url(), REQUEST_WAIT_MS_MAX).await?;
        let stack = Stack {
            nats,
            dir,
            port,
            tailnet: made.tailnet_id.to_string(),
            owner_token: made.token.text.clone(),
            client,
            log,
            shutdown,
            tasks,
        };
        wait_until_async(Duration::from_millis(READY_WAIT_MS_MAX), async || {
            stack
                .call("GET", "/healthz", None, None)
                .await
                .is_ok_and(|a| a.status == 200)
        })
        .await
        .context("the stack did not become healthy")?;
        Ok(stack)
    }

    /// `method path` with `Authorization: Bearer token` and a JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut headers = vec![];
        if let Some(t) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {t}")));
        }
        let body = match body {
            Some(v) => {
                headers.push(("content-type".to_owned(), "application/json".to_owned()));
                Bytes::from(serde_json::to_vec(&v)?)
            }
            None => Bytes::new(),
        };
        self.raw(method, path, &headers, body).await
    }

    /// A request with exactly these headers and body bytes.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<Answer> {
        send(self.port, method, path, headers, body).await
    }

    /// `call` that expects `status`, returning the body.
    pub async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let a = self.call(method, path, Some(token), body).await?;
        if a.status != status {
            bail!(
                "{method} {path}: expected {status}, got {} {}",
                a.status,
                a.body
            );
        }
        Ok(a.body)
    }

    /// The Owner adds a user with `role` over HTTP; returns (user id, API token).
    pub async fn add_user(&self, login: &str, role: &str) -> anyhow::Result<(String, String)> {
        let body = self
            .expect(
                200,
                "POST",
                "/api/v2/tailnet/-/users",
                &self.owner_token,
                Some(json!({ "loginName": login, "role": role })),
            )
            .await?;
        Ok((
            body["id"].as_str().context("id")?.to_owned(),
            body["apiKey"].as_str().context("apiKey")?.to_owned(),
        ))
    }

    /// Creates a key with these `create` capabilities; returns the key object.
    pub async fn create_key(&self, token: &str, create: Value) -> anyhow::Result<Value> {
        self.expect(
            200,
            "POST",
            "/api/v2/tailnet/-/keys",
            token,
            Some(json!({ "capabilities": { "devices": { "create": create } } })),
        )
        .await
    }

    /// Registers a node over NATS as a registrar does; returns the device id.
    pub async fn register(&self, auth_key: &str, hostname: &str) -> anyhow::Result<String> {
        let node_key = format!("nodekey:{}", hex::encode(rand_bytes()?));
        let request = json!({
            "requestId": authkeys_command::mint::random_id('r')?,
            "authKey": auth_key,
            "nodeKey": node_key,
            "hostname": hostname,
            "os": "linux",
        });
        let reply = self
            .client
            .request(subject::REGISTER, serde_json::to_vec(&request)?.into())
            .await?;
        let v: Value = serde_json::from_slice(&reply.payload)?;
        if v["ok"] != json!(true) {
            bail!("registration refused: {v}");
        }
        Ok(v["device"]["id"].as_str().context("device id")?.to_owned())
    }

    /// Registers a node with the secret of `key`, a create answer; returns the device id.
    pub async fn register_key(&self, key: &Value, hostname: &str) -> anyhow::Result<String> {
        self.register(key["key"].as_str().context("key")?, hostname)
            .await
    }

    /// `GET /api/v2/device/{id}` as `token`, expecting 200; returns the device.
    pub async fn device(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v2/device/{id}");
        self.expect(200, "GET", &path, token, None).await
    }

    /// `GET /api/v2/tailnet/-/keys/{id}` as `token`, expecting 200; returns the key.
    pub async fn key(&self, token: &str, id: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v2/tailnet/-/keys/{id}");
        self.expect(200, "GET", &path, token, None).await
    }

    /// Every event's stored bytes and the head: what "nothing was written" compares.
    pub fn log_events(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let events = self.log.read(Seq::FIRST, 1_000_000)?;
        Ok(events.into_iter().map(|e| e.body).collect())
    }

    /// The log file's bytes.
    pub fn log_file(&self) -> anyhow::Result<Vec<u8>> {
        std::fs::read(self.log_path()).context("read log.redb")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log.redb")
    }

    /// Waits until nothing is pending in the log file: the relay cursor and the last
    /// checkpoint both cover the head, so no housekeeping write follows until a new event.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let log = self.log.clone();
        wait_until_async(Duration::from_millis(SETTLE_WAIT_MS_MAX), async || {
            let head = log.head().seq;
            let cursor = log.relay_cursor().unwrap_or(0);
            let checkpoint = log
                .checkpoints()
                .ok()
                .and_then(|c| c.last().map(|c| c.seq.get()))
                .unwrap_or(0);
            cursor == head && checkpoint == head
        })
        .await
        .context("the log did not settle")
    }

    /// Stops every role gracefully and hands over the data dir, which dropping the stack would
    /// delete (to read the views' and the log's files after a clean stop).
    #[allow(dead_code)]
    pub async fn stop_keep_data(mut self) -> anyhow::Result<tempfile::TempDir> {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        self.stop().await?;
        Ok(dir)
    }

    /// Stops every role gracefully.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for t in self.tasks.drain(..) {
            t.await??;
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn rand_bytes() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b)
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> anyhow::Result<Answer> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"));
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let mut answer = send_on(stream, req.body(Full::new(body))?).await?;
    let is_json = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !answer.raw.is_empty() && is_json {
        answer.body = serde_json::from_slice(&answer.raw).with_context(|| {
            format!(
                "{method} {path}: body is not JSON: {}",
                String::from_utf8_lossy(&answer.raw)
            )
        })?;
    }
    Ok(answer)
}

/// Sends `req` on `stream` (a connection to the gateway); the answer's `body` is left `Null`.
pub async fn send_on(
    stream: tokio::net::TcpStream,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<Answer> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = tokio::time::timeout(
        Duration::from_millis(REQUEST_WAIT_MS_MAX),
        sender.send_request(req),
    )
    .await
    .context("no HTTP answer in time")??;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let raw = res.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body: Value::Null,
        raw,
    })
}

/// Whether `v` is an RFC 3339 time string.
pub fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| authkeys_events::Timestamp::parse(s).is_ok())
}

//! Black-box tests of `authkeys.log.read`: a real redb log in a temp dir, a real `nats-server`,
//! requests over NATS, replies compared byte for byte with the log.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use async_nats::Client;
use authkeys_command::log_read::{self, LogReadConfig};
use authkeys_events::Seq;
use authkeys_log::{Log, LogConfig, fixtures};
use authkeys_tests::{NatsServer, unique_name, wait_until_async};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on the handler becoming reachable after it is spawned.
const READY_WAIT_MS_MAX: u64 = 10_000;
/// Bound on one request/reply.
const REQUEST_WAIT_MS_MAX: u64 = 5_000;
/// Events in the test log.
const EVENTS: u64 = 40;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageReply<'a> {
    ok: bool,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    head: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorReply {
    ok: bool,
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

struct Fixture {
    _server: NatsServer,
    _dir: tempfile::TempDir,
    log: Log<()>,
    client: Client,
    subject: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Fixture {
    /// A log of `EVENTS` events and `instances` handlers on a subject of their own.
    async fn start(instances: usize, cfg: LogReadConfig) -> anyhow::Result<Fixture> {
        let server = NatsServer::start()?;
        let dir = tempfile::tempdir()?;
        let log = Log::<()>::open(LogConfig::in_dir(dir.path()), ())?;
        for i in 0..EVENTS / 2 {
            let events = vec![
                fixtures::key_generated(2 * i + 1),
                fixtures::key_used(2 * i + 1),
            ];
            log.append(fixtures::append_command(&format!("c{i}"), events))
                .await?;
        }
        let client = async_nats::connect(server.url()).await?;
        let subject = unique_name("log_read");
        let shutdown = CancellationToken::new();
        let tasks = (0..instances)
            .map(|_| {
                let cfg = LogReadConfig {
                    subject: subject.clone(),
                    ..cfg.clone()
                };
                tokio::spawn(log_read::serve_with(
                    log.clone(),
                    client.clone(),
                    cfg,
                    shutdown.clone(),
                ))
            })
            .collect();
        let fixture = Fixture {
            _server: server,
            _dir: dir,
            log,
            client,
            subject,
            shutdown,
            tasks,
        };
        // The handlers subscribe on their own tasks: wait until one answers.
        wait_until_async(Duration::from_millis(READY_WAIT_MS_MAX), async || {
            fixture.raw(br#"{"fromSeq":1,"limit":1}"#).await.is_ok()
        })
        .await
        .context("log read handler becomes reachable")?;
        Ok(fixture)
    }

    async fn raw(&self, payload: &[u8]) -> anyhow::Result<bytes::Bytes> {
        let reply = tokio::time::timeout(
            Duration::from_millis(REQUEST_WAIT_MS_MAX),
            self.client
                .request(self.subject.clone(), payload.to_vec().into()),
        )
        .await
        .context("log read request timed out")??;
        Ok(reply.payload)
    }

    /// Asks for a page and checks it against the log: contiguous from `from`, each event the
    /// log's exact bytes. Returns the number of events and the head.
    async fn page(&self, from: u64, limit: u32) -> anyhow::Result<(u64, u64)> {
        let body = format!(r#"{{"fromSeq":{from},"limit":{limit}}}"#);
        let bytes = self.raw(body.as_bytes()).await?;
        let page: PageReply<'_> = serde_json::from_slice(&bytes)
            .with_context(|| format!("page reply: {}", String::from_utf8_lossy(&bytes)))?;
        ensure!(page.ok, "ok is false");
        ensure!(
            page.events.len() <= limit as usize,
            "more events than the limit"
        );
        if let Some(from) = Seq::new(from).ok().filter(|_| !page.events.is_empty()) {
            let stored = self.log.read(from, page.events.len())?;
            ensure!(stored.len() == page.events.len(), "log has fewer events");
            for (raw, ev) in page.events.iter().zip(&stored) {
                ensure!(
                    raw.get().as_bytes() == ev.to_json().as_slice(),
                    "event {} is not the log's bytes",
                    ev.seq
                );
            }
        }
        Ok((page.events.len() as u64, page.head))
    }

    async fn error(&self, payload: &[u8]) -> anyhow::Result<ErrorBody> {
        let bytes = self.raw(payload).await?;
        let reply: ErrorReply = serde_json::from_slice(&bytes)
            .with_context(|| format!("error reply: {}", String::from_utf8_lossy(&bytes)))?;
        ensure!(!reply.ok, "ok is true");
        Ok(reply.error)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.context("log read task panicked")??;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_read_serves_pages_of_the_log_verbatim() -> anyhow::Result<()> {
    // Proves that pages are contiguous runs of the log's exact envelope bytes with the head,
    // that `limit` bounds a page, and that reading past the head gives an empty page. How: a
    // 40-event log read as pages of 7 until empty, then single reads at and past the head.
    let f = Fixture::start(1, LogReadConfig::default()).await?;

    let mut from = 1;
    loop {
        let (n, head) = f.page(from, 7).await?;
        ensure!(head == EVENTS, "head {head}");
        if n == 0 {
            break;
        }
        ensure!(n == 7 || from + n == EVENTS + 1, "short page {n} at {from}");
        from += n;
    }
    ensure!(from == EVENTS + 1, "pages ended at {from}");

    ensure!(
        f.page(1, 1000).await? == (EVENTS, EVENTS),
        "one page of everything"
    );
    ensure!(f.page(EVENTS, 5).await? == (1, EVENTS), "the last event");
    ensure!(
        f.page(EVENTS + 1, 5).await? == (0, EVENTS),
        "just past the head"
    );
    ensure!(
        f.page(u64::MAX, 1000).await? == (0, EVENTS),
        "far past the head"
    );
    f.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_read_refuses_bad_requests_naming_the_field() -> anyhow::Result<()> {
    // Proves that malformed requests get `bad_request` with the offending field named, and that
    // none of them stops the handler. How: each bad payload in turn, then a good request.
    let f = Fixture::start(1, LogReadConfig::default()).await?;

    let cases: [(&[u8], &str); 11] = [
        (b"{}", "fromSeq"),
        (br#"{"fromSeq":0}"#, "fromSeq"),
        (br#"{"fromSeq":0,"limit":1}"#, "fromSeq"),
        (br#"{"fromSeq":"1","limit":1}"#, "fromSeq"),
        (br#""junk""#, "fromSeq"),
        (b"junk", "fromSeq"),
        (b"", "fromSeq"),
        (br#"{"fromSeq":1}"#, "limit"),
        (br#"{"fromSeq":1,"limit":0}"#, "limit"),
        (br#"{"fromSeq":1,"limit":1001}"#, "limit"),
        (br#"{"fromSeq":1,"limit":1,"extra":true}"#, "extra"),
    ];
    for (payload, field) in cases {
        let shown = String::from_utf8_lossy(payload);
        let error = f.error(payload).await.with_context(|| format!("{shown}"))?;
        ensure!(error.code == "bad_request", "{shown}: code {}", error.code);
        ensure!(
            error.message.contains(field),
            "{shown}: message does not name {field}: {}",
            error.message
        );
    }
    ensure!(f.page(1, 3).await? == (3, EVENTS), "still serving");
    f.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_read_caps_the_reply_size() -> anyhow::Result<()> {
    // Proves that a reply never exceeds `reply_bytes_max`: the page stops early (and the caller
    // continues from there), and an event that cannot fit alone is an error, not a truncated
    // reply. How: a 2 KiB cap over events of several hundred bytes, paged to the end; then a cap
    // smaller than one event.
    const CAP_BYTES: usize = 2_048;
    let f = Fixture::start(
        1,
        LogReadConfig {
            reply_bytes_max: CAP_BYTES,
            ..LogReadConfig::default()
        },
    )
    .await?;

    let mut from = 1;
    let mut pages = 0;
    while from <= EVENTS {
        let bytes = f
            .raw(format!(r#"{{"fromSeq":{from},"limit":1000}}"#).as_bytes())
            .await?;
        ensure!(bytes.len() <= CAP_BYTES, "reply of {} bytes", bytes.len());
        let (n, _) = f.page(from, 1000).await?;
        ensure!(
            (1..EVENTS).contains(&n),
            "page of {n} under a {CAP_BYTES}-byte cap"
        );
        from += n;
        pages += 1;
    }
    ensure!(
        from == EVENTS + 1 && pages > 1,
        "{pages} pages ended at {from}"
    );
    f.stop().await?;

    let tiny = Fixture::start(
        1,
        LogReadConfig {
            reply_bytes_max: 100,
            ..LogReadConfig::default()
        },
    )
    .await;
    // Even the readiness probe gets an error reply, which still counts as an answer.
    let tiny = tiny?;
    let error = tiny.error(br#"{"fromSeq":1,"limit":1}"#).await?;
    ensure!(error.code == "too_large", "code {}", error.code);
    tiny.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_read_runs_as_several_instances_in_a_queue_group() -> anyhow::Result<()> {
    // Proves that two instances on the same subject share it (queue group): every request gets a
    // correct reply, and both stop cleanly on shutdown. How: two handlers, 20 requests.
    let f = Fixture::start(2, LogReadConfig::default()).await?;
    for i in 0..20 {
        let from = 1 + i % EVENTS;
        let (n, head) = f.page(from, 3).await?;
        ensure!(
            head == EVENTS && n == 3.min(EVENTS + 1 - from),
            "request {i}"
        );
    }
    f.stop().await
}

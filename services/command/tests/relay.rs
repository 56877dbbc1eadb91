//! Black-box tests of the relay: a real redb log in a temp dir, a real `nats-server` per test,
//! and the stream read back message by message and compared with the log.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, Context};
use authkeys_command::relay::{self, RelayConfig, RelayStatus};
use authkeys_events::Seq;
use authkeys_log::{Log, LogConfig, fixtures};
use authkeys_tests::{NatsServer, unique_name, wait_until, wait_until_async};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on every wait for the relay to catch up; generous for a loaded 2-core CI machine.
const CATCH_UP_WAIT_MS_MAX: u64 = 30_000;
/// Bound on one batch of appends while NATS is down: they must simply complete.
const APPEND_WAIT_MS_MAX: u64 = 10_000;

fn wait_max() -> Duration {
    Duration::from_millis(CATCH_UP_WAIT_MS_MAX)
}

/// A relay config with a stream and subjects of its own, and short waits so that failures are
/// noticed and retried quickly.
fn test_config() -> RelayConfig {
    let name = unique_name("EVENTS");
    RelayConfig {
        subject_prefix: format!("t.{name}"),
        stream: name,
        read_batch_events_max: 8,
        in_flight_acks_max: 8,
        ack_wait_ms_max: 1_000,
        retry_wait_ms_min: 20,
        retry_wait_ms_max: 200,
        shutdown_wait_ms_max: 2_000,
        ..RelayConfig::default()
    }
}

/// Relay logs on the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=authkeys_command=debug`).
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

fn open_log(dir: &tempfile::TempDir) -> anyhow::Result<Log<()>> {
    Ok(Log::<()>::open(LogConfig::in_dir(dir.path()), ())?)
}

/// Appends `commands` commands of two events each; command ids start with `tag`.
async fn append(log: &Log<()>, tag: &str, commands: u64) -> anyhow::Result<()> {
    for i in 0..commands {
        let n = log.head().seq + 1;
        let events = vec![fixtures::key_generated(n), fixtures::key_used(n)];
        log.append(fixtures::append_command(&format!("{tag}-{i}"), events))
            .await
            .with_context(|| format!("append {tag}-{i}"))?;
    }
    Ok(())
}

async fn connect(server: &NatsServer) -> anyhow::Result<Context> {
    Ok(jetstream::new(async_nats::connect(server.url()).await?))
}

/// What every relay test starts from: tracing, a server, an empty log in a temp dir, a
/// JetStream context and a relay config of its own.
async fn start() -> anyhow::Result<(NatsServer, tempfile::TempDir, Log<()>, Context, RelayConfig)> {
    init_tracing();
    let server = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let log = open_log(&dir)?;
    let js = connect(&server).await?;
    Ok((server, dir, log, js, test_config()))
}

/// Waits (deadline) for the stream to hold `head` messages, then for `relay` to catch up, then
/// compares every message with the log.
async fn stream_reaches_head(
    relay: &Running,
    js: &Context,
    cfg: &RelayConfig,
    log: &Log<()>,
    what: &'static str,
) -> anyhow::Result<()> {
    let head = log.head().seq;
    wait_until_async(wait_max(), async || {
        stream_messages(js, cfg).await.is_ok_and(|n| n == head)
    })
    .await
    .context(what)?;
    relay.caught_up(log).await?;
    assert_stream_is_log(js, cfg, log).await
}

struct Running {
    status: RelayStatus,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_relay(log: &Log<()>, js: &Context, cfg: &RelayConfig) -> anyhow::Result<Running> {
    relay::ensure_stream(js, cfg).await?;
    let status = RelayStatus::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(relay::run_with_status(
        log.clone(),
        js.clone(),
        cfg.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    Ok(Running {
        status,
        shutdown,
        task,
    })
}

impl Running {
    async fn caught_up(&self, log: &Log<()>) -> anyhow::Result<()> {
        wait_until(wait_max(), || {
            self.status.last_acked_seq() == log.head().seq
        })
        .await
        .with_context(|| {
            format!(
                "relay at {} of head {}",
                self.status.last_acked_seq(),
                log.head().seq
            )
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("relay task panicked")?
    }
}

async fn stream_messages(js: &Context, cfg: &RelayConfig) -> anyhow::Result<u64> {
    Ok(js
        .get_stream(&cfg.stream)
        .await?
        .get_info()
        .await?
        .state
        .messages)
}

/// The stream holds exactly the log: message `i` is event `i`, on its subject, with its id as
/// `Nats-Msg-Id` and its stored envelope bytes as the body.
async fn assert_stream_is_log(
    js: &Context,
    cfg: &RelayConfig,
    log: &Log<()>,
) -> anyhow::Result<()> {
    let head = log.head().seq;
    let stream = js.get_stream(&cfg.stream).await?;
    let state = stream.get_info().await?.state;
    ensure!(
        state.messages == head && state.first_sequence == 1 && state.last_sequence == head,
        "stream state {state:?} for a log of {head} events"
    );
    let events = log.read(Seq::FIRST, usize::MAX)?;
    ensure!(
        events.len() as u64 == head,
        "log read {} of {head}",
        events.len()
    );
    for ev in events {
        let seq = ev.seq.get();
        let env = ev.envelope()?;
        let message = stream
            .get_raw_message(seq)
            .await
            .with_context(|| format!("stream message {seq}"))?;
        ensure!(
            message.sequence == seq,
            "asked {seq}, got {}",
            message.sequence
        );
        let subject = format!(
            "{}.{}.{}",
            cfg.subject_prefix,
            env.tailnet,
            env.event_type()
        );
        ensure!(
            message.subject.as_str() == subject,
            "subject of {seq}: {}",
            message.subject
        );
        let id = message.headers.get(NATS_MESSAGE_ID).map(|v| v.as_str());
        ensure!(id == Some(env.id.as_str()), "Nats-Msg-Id of {seq}: {id:?}");
        ensure!(
            message.payload[..] == ev.to_json()[..],
            "body of {seq} differs from the log's bytes"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_once_in_seq_order() -> anyhow::Result<()> {
    // Proves that events committed before and after the relay starts all reach the stream once,
    // in seq order, on `<prefix>.<tailnet>.<Type>`, with Nats-Msg-Id = event id and the log's
    // exact bytes, and that the durable cursor ends at the head. How: 10 events before the
    // relay, 20 after, each message compared with the log, then a clean shutdown.
    let (_server, _dir, log, js, cfg) = start().await?;

    append(&log, "before", 5).await?;
    let relay = start_relay(&log, &js, &cfg).await?;
    append(&log, "after", 10).await?;
    relay.caught_up(&log).await?;
    assert_stream_is_log(&js, &cfg, &log).await?;
    // The subject spelled out, not derived the way the relay derives it.
    let stream = js.get_stream(&cfg.stream).await?;
    for (seq, ty) in [(1, "KeyGenerated"), (2, "KeyUsed")] {
        let subject = stream.get_raw_message(seq).await?.subject;
        let wanted = format!("{}.Tfixture.{ty}", cfg.subject_prefix);
        ensure!(subject.as_str() == wanted, "subject of {seq}: {subject}");
    }
    ensure!(relay.status.failures() == 0, "failures without an outage");
    ensure!(relay.status.duplicates() == 0, "duplicates without a retry");
    relay.stop().await?;

    let head = log.head().seq;
    ensure!(head == 30, "head {head}");
    wait_until(wait_max(), || log.relay_cursor().is_ok_and(|c| c == head))
        .await
        .context("durable relay cursor reaches the head")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_survives_a_nats_outage_without_blocking_commands() -> anyhow::Result<()> {
    // Proves that a NATS outage neither blocks nor fails commands, and that afterwards the stream
    // holds every event exactly once and in order. How: relay caught up; nats-server stopped;
    // more appends, which must complete within a bound while the relay is seen failing; server
    // restarted on the same port and store; more appends; wait (deadline) for the stream to hold
    // the head's count, then compare every message with the log. Publishes buffered in the client
    // during the outage reach the server after it returns, racing the relay's re-publishes: the
    // comparison shows they neither duplicate nor reorder.
    let (mut server, _dir, log, js, cfg) = start().await?;

    let relay = start_relay(&log, &js, &cfg).await?;
    append(&log, "up", 10).await?;
    relay.caught_up(&log).await?;

    server.stop()?;
    tokio::time::timeout(
        Duration::from_millis(APPEND_WAIT_MS_MAX),
        append(&log, "down", 10),
    )
    .await
    .context("appends while NATS is down must complete")??;
    wait_until(wait_max(), || relay.status.failures() > 0)
        .await
        .context("the relay notices the outage")?;
    ensure!(relay.status.last_acked_seq() <= 20, "acked past the outage");
    append(&log, "still-down", 5).await?;

    server.restart()?;
    append(&log, "back", 10).await?;
    let head = log.head().seq;
    ensure!(head == 70, "head {head}");
    stream_reaches_head(&relay, &js, &cfg, &log, "the stream reaches the head").await?;
    relay.stop().await?;
    wait_until(wait_max(), || log.relay_cursor().is_ok_and(|c| c == head)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_resumes_without_duplicates() -> anyhow::Result<()> {
    // Proves that a relay killed mid-way (its task aborted: no shutdown, in-flight publishes and
    // an unflushed cursor lost) and replaced by a new one leaves every event in the stream
    // exactly once. How: 300 events in the log; relay A, publishing one at a time, aborted as
    // soon as it has acknowledged 10; relay B (window of 8) started on the same log and stream;
    // more appends; the stream compared with the log.
    let (_server, _dir, log, js, cfg) = start().await?;

    append(&log, "first", 150).await?;
    let head_at_abort = log.head().seq;
    // One publish at a time, so that A is still far from the head when it is aborted.
    let slow = RelayConfig {
        read_batch_events_max: 1,
        in_flight_acks_max: 1,
        ..cfg.clone()
    };
    let a = start_relay(&log, &js, &slow).await?;
    let mut acked = a.status.subscribe();
    tokio::time::timeout(wait_max(), acked.wait_for(|&seq| seq >= 10))
        .await
        .context("relay A acknowledges 10 events")??;
    a.task.abort();
    let _ = a.task.await;
    let acked_at_abort = a.status.last_acked_seq();
    ensure!(
        acked_at_abort < head_at_abort,
        "relay A finished ({acked_at_abort}) before it could be aborted mid-way"
    );

    let b = start_relay(&log, &js, &cfg).await?;
    append(&log, "second", 5).await?;
    b.caught_up(&log).await?;
    assert_stream_is_log(&js, &cfg, &log).await?;
    b.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refills_a_stream_that_was_deleted() -> anyhow::Result<()> {
    // Proves that the cursor is not trusted over the stream: when the stream is deleted (or lost)
    // the relay recreates it and publishes the whole log again, in order. How: relay caught up,
    // stream deleted, one more append (its publish fails), then wait for the stream to match.
    let (_server, _dir, log, js, cfg) = start().await?;

    let relay = start_relay(&log, &js, &cfg).await?;
    append(&log, "one", 10).await?;
    relay.caught_up(&log).await?;
    js.delete_stream(&cfg.stream).await?;
    append(&log, "two", 1).await?;
    stream_reaches_head(
        &relay,
        &js,
        &cfg,
        &log,
        "the recreated stream reaches the head",
    )
    .await?;
    ensure!(relay.status.failures() > 0, "the deletion went unnoticed");
    relay.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refuses_a_stream_written_by_another_log() -> anyhow::Result<()> {
    // Proves that the relay never appends to a stream whose messages are not this log's events
    // (another log's stream, or foreign publishes), and that it keeps commands unaffected while
    // refusing. How: the stream gets one foreign message with a Nats-Msg-Id of no event of this
    // log; the relay starts over a log of 4 events; it must fail and leave the stream untouched.
    let (_server, _dir, log, js, cfg) = start().await?;

    relay::ensure_stream(&js, &cfg).await?;
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, "e-not-from-this-log");
    js.publish_with_headers(format!("{}.x.y", cfg.subject_prefix), headers, "{}".into())
        .await?
        .await?;
    append(&log, "mine", 2).await?;

    let relay = start_relay(&log, &js, &cfg).await?;
    wait_until(wait_max(), || relay.status.failures() >= 2)
        .await
        .context("the relay refuses the stream, repeatedly")?;
    ensure!(
        relay.status.last_acked_seq() == 0,
        "acked on a foreign stream"
    );
    ensure!(
        stream_messages(&js, &cfg).await? == 1,
        "the relay wrote to a foreign stream"
    );
    append(&log, "more", 1).await?;
    relay.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_stream_sets_the_configuration_the_relay_needs() -> anyhow::Result<()> {
    // Proves that ensure_stream creates the stream as the relay needs it (file storage, only its
    // subjects, limits retention without max age, discard new, the duplicate window), is
    // idempotent, and repairs a stream whose settings drifted. How: create, check, change the
    // subjects and window behind its back, ensure again, check.
    use jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
    let server = NatsServer::start()?;
    let js = connect(&server).await?;
    let cfg = test_config();

    let check = async |js: &Context| -> anyhow::Result<()> {
        let config = js.get_stream(&cfg.stream).await?.get_info().await?.config;
        ensure!(
            config.subjects == vec![format!("{}.>", cfg.subject_prefix)],
            "{config:?}"
        );
        ensure!(config.storage == StorageType::File, "{config:?}");
        ensure!(config.retention == RetentionPolicy::Limits, "{config:?}");
        ensure!(config.discard == DiscardPolicy::New, "{config:?}");
        ensure!(config.max_age == Duration::ZERO, "{config:?}");
        ensure!(
            config.duplicate_window == cfg.duplicate_window,
            "{config:?}"
        );
        Ok(())
    };
    relay::ensure_stream(&js, &cfg).await?;
    check(&js).await?;
    relay::ensure_stream(&js, &cfg).await?;
    check(&js).await?;

    let mut drifted = js.get_stream(&cfg.stream).await?.get_info().await?.config;
    drifted.subjects.push(format!("other.{}", cfg.stream));
    drifted.duplicate_window = Duration::from_secs(10);
    js.update_stream(&drifted).await?;
    relay::ensure_stream(&js, &cfg).await?;
    check(&js).await?;
    Ok(())
}

#[tokio::test]
async fn jetstream_refuses_a_publish_whose_expected_sequence_is_not_the_last() -> anyhow::Result<()>
{
    // Proves the server behaviour the relay's ordering rests on: a publish whose
    // `Nats-Expected-Last-Sequence` is not the stream's last sequence is refused with "wrong last
    // sequence" (so a later event cannot overtake a lost earlier one), `0` is accepted on an empty
    // stream, and a repeat of a stored event with its (now stale) expected sequence is refused
    // too, before de-duplication, and not stored (so the relay must reconcile, not wait for a
    // duplicate ack). How: raw publishes with both headers against a stream from ensure_stream.
    use async_nats::header::NATS_EXPECTED_LAST_SEQUENCE;
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};
    let server = NatsServer::start()?;
    let js = connect(&server).await?;
    let cfg = test_config();
    relay::ensure_stream(&js, &cfg).await?;
    let subject = format!("{}.t.e", cfg.subject_prefix);
    let publish = async |id: &str, expected: u64| {
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id);
        headers.insert(NATS_EXPECTED_LAST_SEQUENCE, expected.to_string());
        js.publish_with_headers(subject.clone(), headers, "{}".into())
            .await?
            .await
            .map_err(anyhow::Error::from)
    };
    let refused = |r: &anyhow::Result<_>| {
        r.as_ref()
            .err()
            .and_then(|e| e.downcast_ref::<PublishError>())
            .is_some_and(|e| e.kind() == PublishErrorKind::WrongLastSequence)
    };

    let first = publish("e1", 0).await?;
    ensure!(first.sequence == 1 && !first.duplicate, "{first:?}");
    let gap = publish("e3", 2).await;
    ensure!(refused(&gap), "a gap was accepted: {gap:?}");
    let second = publish("e2", 1).await?;
    ensure!(second.sequence == 2 && !second.duplicate, "{second:?}");
    let repeat = publish("e1", 0).await;
    ensure!(refused(&repeat), "a stale repeat: {repeat:?}");
    ensure!(
        stream_messages(&js, &cfg).await? == 2,
        "a refused publish was stored"
    );
    Ok(())
}

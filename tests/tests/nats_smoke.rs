//! Smoke test of the test harness and of the JetStream behaviour the event log relies on.

use std::time::Duration;

use anyhow::{Context, ensure};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer, stream};
use authkeys_tests::{NatsServer, unique_name};
use futures::StreamExt;

const MESSAGES: u64 = 100;
/// Bound on receiving all messages; they are already stored, so this is generous.
const CONSUME_WAIT_MS_MAX: u64 = 10_000;

#[tokio::test]
async fn jetstream_dedups_delivers_in_order_and_survives_restart() -> anyhow::Result<()> {
    // Proves that a spawned nats-server gives us what the event log builds on: a publish with a
    // repeated Nats-Msg-Id is acknowledged as a duplicate and not stored; every acknowledged
    // message reaches a durable pull consumer exactly once, in publish order, with its payload;
    // and the stream is still there, complete, after a restart on the same store dir. How: 100
    // publishes plus one repeat of message 50's id, every PubAck awaited, then a consumer that
    // reads and acks (double ack, so acks are confirmed) and checks that nothing is left
    // pending, then `NatsServer::restart` and the stream's state read back.
    let mut server = NatsServer::start()?;
    let name = unique_name("smoke");
    let subject = |i: u64| format!("smoke.{name}.msg.{i}");
    let msg_id = |i: u64| format!("{name}-{i}");
    let payload = |i: u64| format!("payload {i}");

    {
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client);
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("smoke.{name}.>")],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("create stream")?;

        // Send everything first, then await the acks: they must come back for every message.
        let mut pending = Vec::new();
        for i in 1..=MESSAGES {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, msg_id(i).as_str());
            pending.push((
                i,
                js.publish_with_headers(subject(i), headers, payload(i).into())
                    .await?,
            ));
            if i == 50 {
                let mut headers = HeaderMap::new();
                headers.insert(NATS_MESSAGE_ID, msg_id(50).as_str());
                let ack = js
                    .publish_with_headers(subject(50), headers, "duplicate".into())
                    .await?
                    .await
                    .context("PubAck of the duplicate")?;
                ensure!(ack.duplicate, "repeated Nats-Msg-Id not flagged duplicate");
                ensure!(
                    ack.sequence == 50,
                    "duplicate acked with seq {}",
                    ack.sequence
                );
                ensure!(
                    ack.stream == name,
                    "duplicate acked by stream {}",
                    ack.stream
                );
            }
        }
        for (i, ack) in pending {
            let ack = ack
                .await
                .with_context(|| format!("PubAck of message {i}"))?;
            ensure!(!ack.duplicate, "message {i} flagged duplicate");
            ensure!(
                ack.sequence == i,
                "message {i} stored at seq {}",
                ack.sequence
            );
        }

        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("smoke".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .context("create durable pull consumer")?;
        let mut messages = consumer.messages().await?;
        let receive_all = async {
            for i in 1..=MESSAGES {
                let message = messages.next().await.context("consumer stream ended")??;
                let info = message.info().map_err(anyhow::Error::from_boxed)?;
                ensure!(
                    info.stream_sequence == i,
                    "got seq {} for message {i}",
                    info.stream_sequence
                );
                ensure!(
                    message.subject.as_str() == subject(i),
                    "subject of message {i}"
                );
                ensure!(
                    message.payload == payload(i).as_bytes(),
                    "payload of message {i}"
                );
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(NATS_MESSAGE_ID));
                ensure!(
                    id.map(|v| v.as_str()) == Some(msg_id(i).as_str()),
                    "msg id of {i}"
                );
                message
                    .double_ack()
                    .await
                    .map_err(anyhow::Error::from_boxed)?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_millis(CONSUME_WAIT_MS_MAX), receive_all)
            .await
            .context("receive all messages")??;
        drop(messages);

        // Exactly 100: the server has nothing more to deliver and nothing awaiting an ack.
        let info = consumer.get_info().await?;
        ensure!(
            info.num_pending == 0,
            "{} messages left undelivered",
            info.num_pending
        );
        ensure!(
            info.num_ack_pending == 0,
            "{} messages unacked",
            info.num_ack_pending
        );
        ensure!(
            info.ack_floor.stream_sequence == MESSAGES,
            "ack floor {:?}",
            info.ack_floor
        );
    }

    server.restart()?;

    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client);
    let state = js.get_stream(&name).await?.get_info().await?.state;
    ensure!(
        state.messages == MESSAGES,
        "{} messages after restart",
        state.messages
    );
    ensure!(
        state.first_sequence == 1 && state.last_sequence == MESSAGES,
        "{state:?}"
    );
    let info = js
        .get_stream(&name)
        .await?
        .get_consumer::<consumer::pull::Config>("smoke")
        .await
        .map_err(anyhow::Error::from_boxed)?
        .get_info()
        .await?;
    ensure!(
        info.ack_floor.stream_sequence == MESSAGES,
        "ack floor after restart {:?}",
        info.ack_floor
    );
    Ok(())
}

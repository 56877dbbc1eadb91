//! Tests of the test support itself: outage tests will lean on `kill9`/`stop`/`restart`, so
//! these must do what they say.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use async_nats::jetstream::{self, stream};
use authkeys_tests::{NatsServer, unique_name, wait_until};

#[tokio::test]
async fn nats_server_comes_back_on_same_port_and_store_after_kill9_and_stop() -> anyhow::Result<()>
{
    // Proves that kill9 and stop really take the server down (the port refuses connections),
    // that restart brings it back on the same URL with the same store (a stream created
    // before each outage is still there), and that stopping twice is harmless.
    let mut server = NatsServer::start()?;
    let url = server.url();
    let port = server.port();
    let name = unique_name("harness");
    {
        let js = jetstream::new(async_nats::connect(&url).await?);
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("harness.{name}.>")],
            ..Default::default()
        })
        .await
        .context("create stream")?;
    }

    server.kill9()?;
    ensure!(!server.is_running(), "running after kill9");
    ensure!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after kill9"
    );
    server.restart()?;
    ensure!(server.url() == url, "url changed across restart");
    let js = jetstream::new(async_nats::connect(&url).await?);
    js.get_stream(&name).await.context("stream after kill9")?;

    server.stop()?;
    server.stop()?;
    ensure!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after stop"
    );
    server.restart()?;
    let js = jetstream::new(async_nats::connect(&url).await?);
    js.get_stream(&name).await.context("stream after stop")?;
    Ok(())
}

#[tokio::test]
async fn wait_until_returns_when_condition_holds_and_fails_past_deadline() -> anyhow::Result<()> {
    // Proves both outcomes of wait_until: it returns as soon as the condition holds (here on
    // the third poll), and it gives up with an error once the deadline has passed.
    let polls = AtomicU32::new(0);
    wait_until(Duration::from_secs(5), || {
        polls.fetch_add(1, Ordering::Relaxed) + 1 >= 3
    })
    .await?;
    ensure!(polls.load(Ordering::Relaxed) == 3, "polled {polls:?} times");

    let never = wait_until(Duration::from_millis(100), || false).await;
    ensure!(never.is_err(), "a condition that never holds must time out");
    Ok(())
}

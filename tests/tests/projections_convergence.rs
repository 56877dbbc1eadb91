//! The views converge to exactly the log's state — checked against a fresh rebuild of the log
//! by state hash — through a normal run, a crashed worker, a nats-server restart, a deleted
//! consumer and a gap in the stream.

mod projections_support;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use authkeys_projections::{KeysView, MachinesView};
use authkeys_tests::wait_until;
use projections_support::{All, Rig, Running, rig_with_all, spawn_worker, wait_max};

#[tokio::test]
async fn views_converge_after_a_normal_run() -> anyhow::Result<()> {
    // Proves that the three workers, fed by the real relay through JetStream, reach the log's
    // head with rows equal to a rebuild from authkeys.log.read, and that a worker reopened on
    // its file resumes from its checkpoint with the same state. How: append 300 steps of the
    // fixture mix with workers running; compare hashes; stop, append 100 more, restart.
    let (mut rig, all) = rig_with_all(300).await?;
    all.converge(&rig).await?;
    all.stop().await?;

    rig.append_steps(100).await?;
    let all = All::spawn(&rig).await?;
    all.converge(&rig).await?;

    // A rebuild through the worker swaps in an equal view at the head.
    let head = rig.head();
    let before = all.machines.handle.state();
    let rebuilt = all.machines.handle.rebuild().await?;
    anyhow::ensure!(rebuilt == head, "rebuilt to {rebuilt}, head {head}");
    anyhow::ensure!(
        all.machines.handle.state() == before,
        "rebuild changed the view"
    );
    rig.append_steps(20).await?;
    all.converge_then_stop(rig).await
}

#[tokio::test]
async fn worker_killed_mid_stream_converges_after_restart() -> anyhow::Result<()> {
    // Proves that a worker dropped without a graceful shutdown (its task aborted mid-stream, as
    // kill -9 would leave it) restarts from its committed checkpoint and still converges: rows
    // and checkpoint were committed together, redeliveries are skipped. How: abort the machines
    // and keys workers while 600 steps are being appended, five times over, then reopen them on
    // the same files.
    let mut rig = Rig::start().await?;
    for round in 0..5 {
        let machines = spawn_worker::<MachinesView>(&rig.client, &rig.cfg).await?;
        let keys = spawn_worker::<KeysView>(&rig.client, &rig.cfg).await?;
        let target = rig.head() + 1;
        rig.append_steps(120).await?;
        wait_until(wait_max(), || machines.handle.applied_seq() >= target)
            .await
            .with_context(|| format!("round {round}: no progress"))?;
        machines.task.abort();
        keys.task.abort();
        let _ = machines.task.await;
        let _ = keys.task.await;
    }
    let machines = spawn_worker::<MachinesView>(&rig.client, &rig.cfg).await?;
    let keys = spawn_worker::<KeysView>(&rig.client, &rig.cfg).await?;
    machines_and_keys_converge_then_stop(rig, machines, keys).await
}

#[tokio::test]
async fn views_converge_across_a_nats_server_restart_during_load() -> anyhow::Result<()> {
    // Proves that a nats-server restart (stop, start on the same store) while events are being
    // appended costs the views nothing: sessions fail, are retried with bounded backoff, and
    // the views reach the head equal to a rebuild. How: append continuously from a task while
    // the test restarts the server twice.
    let (mut rig, all) = rig_with_all(50).await?;
    let log = rig.log.clone();
    let start = rig.next_step;
    let load = tokio::spawn(async move {
        for i in start..start + 400 {
            log.append(authkeys_log::fixtures::append_command(
                &format!("c{i}"),
                authkeys_projections::fixtures::step(i),
            ))
            .await?;
        }
        anyhow::Ok(())
    });
    for _ in 0..2 {
        let seen = all.machines.handle.applied_seq();
        wait_until(wait_max(), || all.machines.handle.applied_seq() > seen).await?;
        rig.nats.restart()?;
    }
    load.await.context("load task")??;
    rig.next_step = start + 400;
    all.converge_then_stop(rig).await
}

#[tokio::test]
async fn views_converge_after_the_durable_consumer_is_deleted() -> anyhow::Result<()> {
    // Proves that deleting a view's durable consumer mid-run is healed: the worker notices,
    // recreates it from its checkpoint + 1 and converges. How: delete `view-machines` and
    // `view-keys` while appending, then wait for the consumers to be back and the views equal
    // to a rebuild.
    let (mut rig, all) = rig_with_all(100).await?;
    let js = jetstream::new(rig.client.clone());
    let stream = js.get_stream(&rig.cfg.stream).await?;
    for name in ["view-machines", "view-keys"] {
        wait_until_async_consumer(&stream, name).await?;
        stream
            .delete_consumer(name)
            .await
            .with_context(|| format!("delete {name}"))?;
    }
    rig.append_steps(200).await?;
    all.converge(&rig).await?;
    for name in ["view-machines", "view-keys"] {
        wait_until_async_consumer(&stream, name).await?;
    }
    all.stop_with(rig).await
}

/// Waits for both workers to reach the head with rows equal to a rebuild, then stops them and
/// the rig.
async fn machines_and_keys_converge_then_stop(
    rig: Rig,
    machines: Running<MachinesView>,
    keys: Running<KeysView>,
) -> anyhow::Result<()> {
    let head = rig.head();
    machines.converges(&rig, head).await?;
    keys.converges(&rig, head).await?;
    machines.stop().await?;
    keys.stop().await?;
    rig.stop().await
}

async fn wait_until_async_consumer(
    stream: &jetstream::stream::Stream,
    name: &str,
) -> anyhow::Result<()> {
    authkeys_tests::wait_until_async(wait_max(), async || {
        stream
            .get_consumer::<jetstream::consumer::pull::Config>(name)
            .await
            .is_ok()
    })
    .await
    .with_context(|| format!("consumer {name} not there"))
}

#[tokio::test]
async fn a_gap_in_the_stream_is_backfilled_from_the_log() -> anyhow::Result<()> {
    // Proves gap handling: messages the stream no longer holds (here purged before a worker
    // first starts, so it is delivered seq > checkpoint + 1) are read from authkeys.log.read
    // before the worker goes on, and the view equals a rebuild. Also proves the idle tail check:
    // with the whole stream purged and nothing new published, the worker still reaches the head.
    let mut rig = Rig::start().await?;
    rig.append_steps(200).await?;
    let js = jetstream::new(rig.client.clone());
    let mut stream = js.get_stream(&rig.cfg.stream).await?;
    let head = rig.head();
    wait_until_async_info(&mut stream, head).await?;
    // Keep only the last 20 messages: seqs 1..=head-20 are gone from JetStream.
    stream.purge().sequence(head - 19).await.context("purge")?;
    let machines = spawn_worker::<MachinesView>(&rig.client, &rig.cfg).await?;
    machines.converges(&rig, head).await?;

    // The tail: purge everything, start the keys view; no message will ever arrive for it.
    stream.purge().await.context("purge all")?;
    let keys = spawn_worker::<KeysView>(&rig.client, &rig.cfg).await?;
    keys.converges(&rig, head).await?;

    // And new events after the gap arrive through JetStream as usual.
    rig.append_steps(50).await?;
    machines_and_keys_converge_then_stop(rig, machines, keys).await
}

async fn wait_until_async_info(
    stream: &mut jetstream::stream::Stream,
    head: u64,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + wait_max();
    loop {
        let info = stream.info().await?;
        if info.state.last_sequence >= head {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "relay did not publish {head}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

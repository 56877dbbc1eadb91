//! Beyond one machine (SPEC §7): authkeys on a 3-node NATS cluster on loopback, the events stream
//! at replicas 3, commands acknowledged after replication. Killing the nats-server that leads the
//! stream during a steady register load loses no acknowledged command; the stream still equals
//! the log; the views converge; the killed server rejoins and catches up.

mod api_support;
mod proc_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use authkeys_events::Event;
use authkeys_protocol::{RegisterRequest, subject};
use authkeys_tests::NatsCluster;
use proc_support::{
    Procs, WAIT_MS_MAX, authkeys, bootstrap, free_port, get_ok, log_events, reusable_key,
};
use serde_json::Value;
use tokio::sync::watch;

/// One registration, retried with the same request id until it is acknowledged (a retry of a
/// committed one answers its first result): the node id, or why it never was.
async fn register_until_acked(
    client: &async_nats::Client,
    key: &str,
    n: u64,
) -> anyhow::Result<String> {
    let request = RegisterRequest {
        request_id: format!("cluster-{n}"),
        auth_key: key.to_owned(),
        node_key: format!("nodekey:{n:064x}"),
        hostname: format!("node-{n}"),
        os: None,
    };
    let payload = serde_json::to_vec(&request)?;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject::REGISTER, payload.clone().into()),
        )
        .await;
        if let Ok(Ok(reply)) = answer {
            let v: Value = serde_json::from_slice(&reply.payload)?;
            if v["ok"] == true {
                return v["device"]["nodeId"]
                    .as_str()
                    .map(str::to_owned)
                    .context("nodeId");
            }
            // `unavailable` (not yet replicated) is retried; anything else is a failure.
            ensure!(v["error"]["code"] == "unavailable", "registration {n}: {v}");
        }
        ensure!(
            Instant::now() < deadline,
            "registration {n} never acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_losing_the_stream_leader_loses_no_acknowledged_command() -> anyhow::Result<()> {
    let mut cluster = NatsCluster::start(3)?;
    cluster.wait_jetstream().await?;
    let urls = cluster.urls();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let owner = bootstrap(&data)?;
    let port = free_port()?;
    let _procs = Procs(vec![
        authkeys()
            .args(["serve", "--nats", &urls, "--stream-replicas", "3"])
            .arg("--ack-after-replication")
            .args(["--http", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(&data)
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/devices", &owner).await?;
    let key = reusable_key(port, &owner).await?;

    // A steady load: registrations one after another, each retried until acknowledged.
    let client = authkeys_protocol::nats::connect(&urls, "cluster-test").await?;
    let js = async_nats::jetstream::new(client.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let load = {
        let (client, key) = (client.clone(), key.clone());
        tokio::spawn(async move {
            let (mut acked, mut longest) = (Vec::new(), Duration::ZERO);
            for n in 0u64.. {
                if *stop_rx.borrow() {
                    break;
                }
                let started = Instant::now();
                acked.push(register_until_acked(&client, &key, n).await?);
                longest = longest.max(started.elapsed());
            }
            // A figure, not an assertion: the longest wait across the kill.
            eprintln!(
                "{} registrations acknowledged; the longest took {} ms",
                acked.len(),
                longest.as_millis()
            );
            anyhow::Ok(acked)
        })
    };

    // Kill the member that leads the stream (the one whose loss costs an election).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut stream = js.get_stream(subject::EVENTS_STREAM).await?;
    let info = stream.info().await?;
    ensure!(
        info.config.num_replicas == 3,
        "{:?}",
        info.config.num_replicas
    );
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .context("the stream's leader")?;
    let index: usize = leader.trim_start_matches('n').parse::<usize>()? - 1;
    cluster.member(index).kill9()?;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop_tx.send(true)?;
    let acked = load.await??;
    ensure!(
        acked.len() > 20,
        "only {} registrations acknowledged",
        acked.len()
    );

    // The killed server rejoins and catches up.
    cluster.member(index).restart()?;
    authkeys_tests::wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        let Ok(info) = stream.info().await else {
            return false;
        };
        info.cluster.as_ref().is_some_and(|c| {
            c.replicas.len() == 2
                && c.replicas
                    .iter()
                    .all(|p| p.current && !p.offline && p.lag.unwrap_or(0) == 0)
        })
    })
    .await
    .with_context(|| {
        format!(
            "the restarted server caught up: {:?}",
            stream.cached_info().cluster
        )
    })?;

    // Every acknowledged registration is in the log exactly once.
    let events = log_events(&data)?;
    let registered: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::NodeRegistered(r) => Some(r.node_id.to_string()),
            _ => None,
        })
        .collect();
    let unique: BTreeSet<&String> = registered.iter().collect();
    ensure!(unique.len() == registered.len(), "a node registered twice");
    for id in &acked {
        ensure!(
            unique.contains(id),
            "acknowledged node {id} is not in the log"
        );
    }

    // The stream equals the log, event for event.
    authkeys_tests::wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        stream
            .info()
            .await
            .is_ok_and(|i| i.state.last_sequence == events.len() as u64)
    })
    .await
    .context("the stream reaches the log's head")?;
    for env in &events {
        let msg = stream.get_raw_message(env.seq.get()).await?;
        ensure!(
            msg.payload.as_ref() == env.to_json().as_slice(),
            "stream message {} differs from the log",
            env.seq
        );
    }

    // The machines view converges to the log.
    authkeys_tests::wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        let Ok(answer) =
            proc_support::http(port, "GET", "/api/v2/tailnet/-/devices", &owner, None).await
        else {
            return false;
        };
        let ids: BTreeSet<String> = answer.body["devices"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|d| d["nodeId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ids.len() == unique.len() && unique.iter().all(|id| ids.contains(*id))
    })
    .await
    .context("the machines view converges to the log")?;
    Ok(())
}

/// `authkeys project --replica NAME` on its own data dir.
fn replica(nats: &str, data: &std::path::Path, name: &str) -> anyhow::Result<std::process::Child> {
    Ok(authkeys()
        .args(["project", "--nats", nats, "--replica", name])
        .arg("--data")
        .arg(data)
        .spawn()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_replicas_keep_answering_when_one_dies_and_it_catches_up() -> anyhow::Result<()>
{
    // Two `authkeys project` replicas, each with its own data dir and durable consumers, answer
    // the gateway's queries in one queue group. One is killed under query and write load: every
    // read still answers 200 and sees the writes made before it (read-your-writes); restarted,
    // the replica catches up from its own checkpoint.
    let (nats, dir, cmd_dir, token) = proc_support::bootstrapped("command")?;
    let url = nats.url();
    let port = free_port()?;
    let mut procs = Procs(vec![
        proc_support::spawn_role("command", &url, &cmd_dir)?,
        replica(&url, &dir.path().join("views-a"), "a")?,
        replica(&url, &dir.path().join("views-b"), "b")?,
        authkeys()
            .args([
                "api",
                "--nats",
                &url,
                "--http",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--hashing-key")
            .arg(cmd_dir.join("hashing.key"))
            .spawn()?,
    ]);
    get_ok(port, "/api/v2/tailnet/-/devices", &token).await?;
    let key = reusable_key(port, &token).await?;
    let client = authkeys_protocol::nats::connect(&url, "replica-test").await?;

    // Each round registers a node, then reads the device list: it must hold every node so far.
    let mut nodes = 0usize;
    let round = async |nodes: &mut usize| -> anyhow::Result<()> {
        register_until_acked(&client, &key, *nodes as u64).await?;
        *nodes += 1;
        let list =
            proc_support::http(port, "GET", "/api/v2/tailnet/-/devices", &token, None).await?;
        ensure!(list.status == 200, "{list:?}");
        let seen = list.body["devices"].as_array().map_or(0, Vec::len);
        ensure!(
            seen == *nodes,
            "read-your-writes: {seen} devices after {nodes} registrations"
        );
        Ok(())
    };
    for _ in 0..10 {
        round(&mut nodes).await?;
    }
    // Kill replica a (SIGKILL); both replicas took queries until now.
    procs.0[1].kill()?;
    procs.0[1].wait()?;
    for _ in 0..20 {
        round(&mut nodes).await?;
    }
    // Restarted, it catches up from its checkpoint and answers again (b stopped, so only a).
    procs.0[1] = replica(&url, &dir.path().join("views-a"), "a")?;
    procs.0[2].kill()?;
    procs.0[2].wait()?;
    authkeys_tests::wait_until_async(Duration::from_millis(WAIT_MS_MAX), async || {
        proc_support::http(port, "GET", "/api/v2/tailnet/-/devices", &token, None)
            .await
            .is_ok_and(|a| {
                a.status == 200 && a.body["devices"].as_array().map_or(0, Vec::len) == nodes
            })
    })
    .await
    .context("the restarted replica caught up")?;
    round(&mut nodes).await?;
    Ok(())
}

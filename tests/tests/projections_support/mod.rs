//! A rig for the projection tests: a real nats-server, a real log on a temp dir, the real relay
//! and `authkeys.log.read` handler, and the projection workers — all in this process, with
//! unique stream, subject and consumer names.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use async_nats::jetstream;
use authkeys_command::log_read;
use authkeys_command::relay::{self, RelayConfig};
use authkeys_log::{Log, LogConfig, fixtures};
use authkeys_projections::query::Handles;
use authkeys_projections::{
    IdentityView, KeysView, MachinesView, ProjectionConfig, View, ViewHandle, ViewWorker,
    rebuild_from_log,
};
use authkeys_protocol::log::LogClient;
use authkeys_tests::{NatsServer, unique_name, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on any convergence wait.
pub const CONVERGE_WAIT_MS_MAX: u64 = 30_000;

pub fn wait_max() -> Duration {
    Duration::from_millis(CONVERGE_WAIT_MS_MAX)
}

pub struct Rig {
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub log: Log<()>,
    pub client: Client,
    pub cfg: ProjectionConfig,
    pub relay_cfg: RelayConfig,
    pub shutdown: CancellationToken,
    pub next_step: u64,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Rig {
    /// Server, log, relay and log-read handler; no workers yet.
    pub async fn start() -> anyhow::Result<Rig> {
        let nats = NatsServer::start()?;
        let dir = tempfile::tempdir()?;
        let log_dir = dir.path().join("log");
        std::fs::create_dir_all(&log_dir)?;
        let log = tokio::task::spawn_blocking(move || Log::open(LogConfig::in_dir(&log_dir), ()))
            .await??;
        let client = async_nats::connect(nats.url()).await?;
        let name = unique_name("pj");
        let relay_cfg = RelayConfig {
            stream: format!("EV_{name}"),
            subject_prefix: format!("ev.{name}"),
            ..RelayConfig::default()
        };
        let mut cfg = ProjectionConfig::new(dir.path().join("views"));
        cfg.stream = relay_cfg.stream.clone();
        cfg.subject_prefix = relay_cfg.subject_prefix.clone();
        cfg.log_read_subject = format!("log.{name}.read");
        cfg.query_prefix = format!("q.{name}");
        cfg.queue_group = format!("views_{name}");
        cfg.retry_wait_ms_max = 500;
        relay::ensure_stream(&jetstream::new(client.clone()), &relay_cfg).await?;
        let shutdown = CancellationToken::new();
        let services = vec![
            tokio::spawn(relay::run(
                log.clone(),
                jetstream::new(client.clone()),
                relay_cfg.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(log_read::serve(
                log.clone(),
                client.clone(),
                cfg.log_read_subject.clone(),
                shutdown.clone(),
            )),
        ];
        Ok(Rig {
            nats,
            dir,
            log,
            client,
            cfg,
            relay_cfg,
            shutdown,
            next_step: 0,
            services,
        })
    }

    /// Appends the next `n` steps of the fixture mix, one command each.
    pub async fn append_steps(&mut self, n: u64) -> anyhow::Result<()> {
        for _ in 0..n {
            let i = self.next_step;
            self.next_step += 1;
            self.log
                .append(fixtures::append_command(
                    &format!("c{i}"),
                    authkeys_projections::fixtures::step(i),
                ))
                .await
                .with_context(|| format!("append step {i}"))?;
        }
        Ok(())
    }

    pub fn head(&self) -> u64 {
        self.log.head().seq
    }

    pub fn log_client(&self) -> LogClient {
        LogClient::new(
            self.client.clone(),
            self.cfg.log_read_subject.clone(),
            1_000,
            Duration::from_secs(10),
        )
    }

    /// A fresh rebuild of `V` from the log up to `seq`: the oracle.
    pub async fn oracle<V: View>(&self, seq: u64) -> anyhow::Result<authkeys_events::Hash> {
        let (view, cp) = rebuild_from_log::<V>(&self.log_client(), Some(seq)).await?;
        anyhow::ensure!(cp.seq == seq, "rebuild reached {} not {seq}", cp.seq);
        Ok(view.state_hash())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for s in self.services {
            s.await.context("service panicked")??;
        }
        Ok(())
    }
}

/// A spawned worker of `V`.
pub struct Running<V: View> {
    pub handle: ViewHandle<V>,
    pub task: JoinHandle<anyhow::Result<()>>,
    pub shutdown: CancellationToken,
}

pub async fn spawn_worker<V: View>(
    client: &Client,
    cfg: &ProjectionConfig,
) -> anyhow::Result<Running<V>> {
    let worker = ViewWorker::<V>::open(client.clone(), cfg).await?;
    let handle = worker.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    Ok(Running {
        handle,
        task,
        shutdown,
    })
}

impl<V: View> Running<V> {
    /// Waits until the view has applied `seq`, then checks its state hash against a fresh
    /// rebuild of the log up to `seq`.
    pub async fn converges(&self, rig: &Rig, seq: u64) -> anyhow::Result<()> {
        wait_until(wait_max(), || self.handle.applied_seq() >= seq)
            .await
            .with_context(|| {
                format!("{} view at {} of {seq}", V::NAME, self.handle.applied_seq())
            })?;
        let (at, hash) = self.handle.state();
        anyhow::ensure!(at == seq, "{} view went past {seq} to {at}", V::NAME);
        let want = rig.oracle::<V>(seq).await?;
        anyhow::ensure!(
            hash == want,
            "{} view at {seq} differs from a rebuild",
            V::NAME
        );
        Ok(())
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("worker panicked")?
    }
}

/// All three workers.
pub struct All {
    pub keys: Running<KeysView>,
    pub machines: Running<MachinesView>,
    pub identity: Running<IdentityView>,
}

impl All {
    pub async fn spawn(rig: &Rig) -> anyhow::Result<All> {
        Ok(All {
            keys: spawn_worker(&rig.client, &rig.cfg).await?,
            machines: spawn_worker(&rig.client, &rig.cfg).await?,
            identity: spawn_worker(&rig.client, &rig.cfg).await?,
        })
    }

    pub fn handles(&self) -> Handles {
        Handles {
            keys: self.keys.handle.clone(),
            machines: self.machines.handle.clone(),
            identity: self.identity.handle.clone(),
        }
    }

    pub async fn converge(&self, rig: &Rig) -> anyhow::Result<()> {
        let head = rig.head();
        self.keys.converges(rig, head).await?;
        self.machines.converges(rig, head).await?;
        self.identity.converges(rig, head).await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.keys.stop().await?;
        self.machines.stop().await?;
        self.identity.stop().await
    }

    /// Stops the workers, then the rig.
    pub async fn stop_with(self, rig: Rig) -> anyhow::Result<()> {
        self.stop().await?;
        rig.stop().await
    }

    /// Waits for the views to converge at the head, then stops the workers and the rig.
    pub async fn converge_then_stop(self, rig: Rig) -> anyhow::Result<()> {
        self.converge(&rig).await?;
        self.stop_with(rig).await
    }
}

/// A rig with all three workers running and `steps` fixture steps appended.
pub async fn rig_with_all(steps: u64) -> anyhow::Result<(Rig, All)> {
    let mut rig = Rig::start().await?;
    let all = All::spawn(&rig).await?;
    rig.append_steps(steps).await?;
    Ok((rig, all))
}

//! A NATS cluster on loopback for the tests about more than one machine (SPEC §7): N real
//! `nats-server` processes with JetStream on each, routed to one another, each with its own
//! store. Members can be killed and restarted (same ports, same store) to test failover and
//! catch-up.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::{NatsServer, free_port};

/// How long the cluster may take to elect a JetStream meta leader after start.
const JETSTREAM_READY_WAIT_MS_MAX: u64 = 30_000;

/// The cluster's members; every process is killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    members: Vec<NatsServer>,
    /// Holds each member's config file.
    _configs: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` members (3 for a cluster that survives the loss of one) and returns once each
    /// accepts connections. Call [`NatsCluster::wait_jetstream`] before creating streams.
    pub fn start(n: usize) -> anyhow::Result<NatsCluster> {
        if n == 0 {
            bail!("a cluster has at least one member");
        }
        let configs = tempfile::Builder::new()
            .prefix("authkeys-cluster-")
            .tempdir()
            .context("create a temp dir for the cluster's configs")?;
        let route_ports = (0..n)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut members = Vec::with_capacity(n);
        for (i, port) in route_ports.iter().enumerate() {
            let routes: Vec<String> = route_ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let config = configs.path().join(format!("n{}.conf", i + 1));
            std::fs::write(
                &config,
                format!(
                    "server_name: \"n{}\"\ncluster {{\n  name: \"authkeys\"\n  listen: \
                     \"127.0.0.1:{port}\"\n  routes: [{}]\n}}\n",
                    i + 1,
                    routes.join(", ")
                ),
            )
            .with_context(|| format!("write {}", config.display()))?;
            members.push(
                NatsServer::start_with_config(&config)
                    .with_context(|| format!("start cluster member n{}", i + 1))?,
            );
        }
        Ok(NatsCluster {
            members,
            _configs: configs,
        })
    }

    /// Every member's client URL, comma-separated: what `--nats` takes for a cluster.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i` (0-based), to kill, restart or connect to alone.
    pub fn member(&mut self, i: usize) -> &mut NatsServer {
        &mut self.members[i]
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none (never: a cluster has at least one member).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Waits until JetStream answers account requests through every running member (a meta
    /// leader is elected and each member knows it).
    pub async fn wait_jetstream(&self) -> anyhow::Result<()> {
        for m in self.members.iter().filter(|m| m.is_running()) {
            let client = async_nats::connect(m.url())
                .await
                .with_context(|| format!("connect to {}", m.url()))?;
            let js = async_nats::jetstream::new(client);
            crate::wait_until_async(
                Duration::from_millis(JETSTREAM_READY_WAIT_MS_MAX),
                async || js.query_account().await.is_ok(),
            )
            .await
            .with_context(|| format!("JetStream ready through {}", m.url()))?;
        }
        Ok(())
    }
}

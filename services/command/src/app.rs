//! `authkeys command`: the command service with everything that lives beside the log — the
//! relay to JetStream and `authkeys.log.read` — as one [`CommandRole`].
//!
//! `CommandRole::build` opens the log, connects to NATS and subscribes, so once it returns, requests are
//! received; [`CommandRole::run`] serves until the token is cancelled and then shuts down in order: stop
//! taking commands and answer those in flight, let the relay publish what is committed, close the
//! log (final checkpoint), drain the NATS connection.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_nats::Client;
use authkeys_domain::State;
use authkeys_log::{Log, LogConfig};
use authkeys_protocol::access::Role;
use authkeys_protocol::nats::Identity;
use tokio_util::sync::CancellationToken;

use super::{CommandConfig, CommandService, Subscriptions};
use crate::relay::{self, RelayConfig};

/// What `authkeys command` needs.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// The data dir: `log.redb`, `signing.key`, `hashing.key` (bound to the log) and
    /// `derivation.key` (this role's only).
    pub data_dir: PathBuf,
    /// The NATS server.
    pub nats_url: String,
    /// Who the role is on NATS.
    pub identity: Identity,
    /// The service's limits.
    pub command: CommandConfig,
    /// The relay's stream and limits; `None` runs without a relay (tests of the command path).
    pub relay: Option<RelayConfig>,
    /// Serve `authkeys.log.read`.
    pub log_read: bool,
}

impl CommandSettings {
    /// The defaults for a data dir and a NATS URL: relay and log reads on.
    pub fn new(data_dir: impl Into<PathBuf>, nats_url: impl Into<String>) -> Self {
        Self {
            data_dir: data_dir.into(),
            nats_url: nats_url.into(),
            identity: Identity::anonymous(Role::Command),
            command: CommandConfig::default(),
            relay: Some(RelayConfig::default()),
            log_read: true,
        }
    }
}

/// The running command role.
#[derive(Debug)]
pub struct CommandRole {
    service: CommandService,
    client: Client,
    subscriptions: Subscriptions,
    settings: CommandSettings,
    relay_status: relay::RelayStatus,
}

impl CommandRole {
    /// Opens the log in the data dir (creating it and its key files), connects to NATS, makes
    /// sure the events stream exists and subscribes to every command subject.
    pub async fn build(settings: CommandSettings) -> anyhow::Result<CommandRole> {
        let dir = settings.data_dir.clone();
        let (log, mint) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create data dir {}", dir.display()))?;
            let (mint, log) = crate::mint::open_log(&dir, LogConfig::in_dir(&dir))?;
            Ok((log, mint))
        })
        .await
        .context("open the log")??;
        let head = log.head();
        tracing::info!(seq = head.seq, data = %settings.data_dir.display(), "log open");

        let client = settings
            .identity
            .connect(&settings.nats_url, "authkeys-command")
            .await?;
        if let Some(cfg) = &settings.relay {
            let js = async_nats::jetstream::new(client.clone());
            relay::ensure_stream(&js, cfg)
                .await
                .context("make sure the events stream exists")?;
        }
        let relay_status = relay::RelayStatus::new();
        let mut service = CommandService::new(log, mint, settings.command.clone());
        if settings.command.ack_after_replication {
            if settings.relay.is_none() {
                anyhow::bail!("--ack-after-replication needs the relay (drop --no-relay)");
            }
            service = service.acking_after(relay_status.clone());
        }
        let subscriptions = service.subscribe(&client).await?;
        Ok(CommandRole {
            service,
            client,
            subscriptions,
            settings,
            relay_status,
        })
    }

    /// The log (for tests: read what was appended).
    pub fn log(&self) -> Log<State> {
        self.service.log().clone()
    }

    /// The NATS connection the service answers on.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Serves until `shutdown`, then stops in order (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let CommandRole {
            service,
            client,
            subscriptions,
            settings,
            relay_status,
        } = self;
        let log = service.log().clone();
        // The helpers stop only after the service has answered everything, so that the relay
        // publishes the last commands' events.
        let helpers = CancellationToken::new();
        let relay_task = settings.relay.clone().map(|cfg| {
            let js = async_nats::jetstream::new(client.clone());
            tokio::spawn(relay::run_with_status(
                log.clone(),
                js,
                cfg,
                relay_status,
                helpers.clone(),
            ))
        });
        let log_read_task = settings.log_read.then(|| {
            tokio::spawn(crate::log_read::serve(
                log.clone(),
                client.clone(),
                authkeys_protocol::subject::LOG_READ.to_owned(),
                helpers.clone(),
            ))
        });
        let checkpoints_task = settings.log_read.then(|| {
            tokio::spawn(crate::log_read::serve_checkpoints(
                log.clone(),
                client.clone(),
                helpers.clone(),
            ))
        });

        let status_task = tokio::spawn(crate::status::serve(
            log.clone(),
            client.clone(),
            helpers.clone(),
        ));
        service.serve(subscriptions, shutdown).await;
        drop(service);

        helpers.cancel();
        // Every wait below is bounded: with NATS gone, flushing or draining would wait for a
        // reconnect that may never come, and shutdown must still finish.
        let wait_max = Duration::from_millis(settings.command.shutdown_wait_ms_max);
        for (what, task) in [
            ("relay", relay_task),
            ("log read", log_read_task),
            ("checkpoints", checkpoints_task),
            ("status", Some(status_task)),
        ] {
            if let Some(mut task) = task {
                match tokio::time::timeout(wait_max, &mut task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => {
                        tracing::error!(error = format!("{e:#}"), "the {what} failed")
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "the {what} task failed"),
                    Err(_) => {
                        tracing::warn!(
                            wait_ms = wait_max.as_millis(),
                            "the {what} did not stop in time"
                        );
                        task.abort();
                    }
                }
            }
        }
        tokio::task::spawn_blocking(move || log.close())
            .await
            .context("close the log")?;
        tracing::info!("log closed");
        match tokio::time::timeout(wait_max, async {
            client.flush().await.ok();
            client.drain().await
        })
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "drain the NATS connection"),
            Err(_) => tracing::warn!(
                wait_ms = wait_max.as_millis(),
                "NATS did not drain in time (unreachable?); every command was answered and logged"
            ),
        }
        Ok(())
    }
}

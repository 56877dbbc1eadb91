//! `authkeys command`: the command service with everything that lives beside the log — the
//! relay to JetStream, `authkeys.log.read`, the leader lease and the standby — as one
//! [`CommandRole`].
//!
//! With the relay on, a command role is a **primary** (it holds the leader lease, answers
//! commands and relays its log) or a **standby** (it follows the stream into its own copy of the
//! log, [`crate::standby`]), and moves between the two (SPEC §7):
//! - `CommandRole::build` opens the log, connects to NATS and takes the lease when it is free and
//!   the stream holds nothing this log lacks; then it subscribes, so once it returns, requests
//!   are received. Otherwise (or with `standby` set) it starts as a standby.
//! - A standby takes the lease once it has caught up and the lease is free, imports the rest of
//!   the stream, and serves.
//! - A primary that loses the lease, or whose relay finds another primary's events in the stream
//!   (fenced), stops answering, lets its relay stop, and follows as a standby.
//!
//! [`CommandRole::run`] serves until the token is cancelled and then shuts down in order: stop
//! taking commands and answer those in flight, let the relay publish what is committed, close
//! the log (final checkpoint), give the lease back, drain the NATS connection.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_nats::Client;
use async_nats::jetstream::Context as JetStream;
use authkeys_domain::State;
use authkeys_log::{Log, LogConfig};
use authkeys_protocol::access::Role;
use authkeys_protocol::nats::Identity;
use tokio_util::sync::CancellationToken;

use super::{CommandConfig, CommandService, Subscriptions};
use crate::lease::{Held, LeaseConfig, Leases};
use crate::relay::{self, RelayConfig};
use crate::standby::{Copy, Followed, Standby};

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
    /// The relay's stream and limits; `None` runs without a relay (tests of the command path),
    /// and then without a lease or standby.
    pub relay: Option<RelayConfig>,
    /// Serve `authkeys.log.read`.
    pub log_read: bool,
    /// `--standby`: start by following the primary, creating no log of its own (the data dir
    /// holds copies of the primary's key files).
    pub standby: bool,
    /// The leader lease.
    pub lease: LeaseConfig,
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
            standby: false,
            lease: LeaseConfig::default(),
        }
    }
}

/// A primary, subscribed.
struct Primary {
    service: CommandService,
    subscriptions: Subscriptions,
    mint: crate::mint::Mint,
    relay_status: relay::RelayStatus,
    lease: Option<Held>,
}

enum Phase {
    Primary(Box<Primary>),
    Standby(Option<Copy>),
}

/// The running command role.
pub struct CommandRole {
    settings: CommandSettings,
    client: Client,
    leases: Option<Leases>,
    phase: Phase,
}

impl std::fmt::Debug for CommandRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandRole")
            .field("data_dir", &self.settings.data_dir)
            .field("primary", &matches!(self.phase, Phase::Primary(_)))
            .finish_non_exhaustive()
    }
}

/// How a role with a log starts.
enum Start {
    /// Serving, holding the lease (`None` without a relay: nothing to lead).
    Primary(Option<Held>),
    /// Following first.
    Standby,
}

/// How a primary stopped being one.
enum Ended {
    Shutdown,
    SteppedDown(Copy),
}

impl CommandRole {
    /// Opens the log in the data dir (creating it and its key files, unless `standby`),
    /// connects to NATS, makes sure the events stream exists, and — when this log may lead —
    /// takes the lease and subscribes to every command subject.
    pub async fn build(settings: CommandSettings) -> anyhow::Result<CommandRole> {
        let client = settings
            .identity
            .connect(&settings.nats_url, "authkeys-command")
            .await?;
        let mut leases = None;
        // Whether the stream already holds some log's events: a data dir without a log then
        // becomes a copy of that log, never a second log.
        let mut stream_used = false;
        if let Some(cfg) = &settings.relay {
            let js = async_nats::jetstream::new(client.clone());
            relay::ensure_stream(&js, cfg)
                .await
                .context("make sure the events stream exists")?;
            stream_used = js
                .get_stream(&cfg.stream)
                .await
                .context("read the events stream")?
                .cached_info()
                .state
                .last_sequence
                > 0;
            let lease = LeaseConfig {
                replicas: cfg.replicas.unwrap_or(settings.lease.replicas),
                ..settings.lease.clone()
            };
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("create data dir {}", settings.data_dir.display()))?;
            let me = crate::lease::holder_id(&settings.data_dir);
            leases = Some(
                Leases::open(&lease_js(&client, &lease), lease, me)
                    .await
                    .context("open the leader lease")?,
            );
        } else if settings.standby {
            anyhow::bail!("--standby follows the relay's stream (drop --no-relay)");
        }
        if settings.command.ack_after_replication && settings.relay.is_none() {
            anyhow::bail!("--ack-after-replication needs the relay (drop --no-relay)");
        }

        let dir = settings.data_dir.clone();
        let exists = LogConfig::in_dir(&dir).path.exists();
        let copy = if !exists && (settings.standby || stream_used) {
            if !settings.standby {
                tracing::info!(
                    "no log here, and the events stream holds a log's events: starting as a \
                     standby of that log instead of creating a new one"
                );
            }
            None
        } else {
            let copy = open(dir).await?;
            let head = copy.log.head();
            tracing::info!(seq = head.seq, data = %settings.data_dir.display(), "log open");
            Some(copy)
        };

        let mut role = CommandRole {
            settings,
            client,
            leases,
            phase: Phase::Standby(None),
        };
        role.phase = match copy {
            Some(copy) if !role.settings.standby => match role.try_lead(&copy).await? {
                Start::Primary(lease) => Phase::Primary(Box::new(role.primary(copy, lease).await?)),
                Start::Standby => Phase::Standby(Some(copy)),
            },
            copy => Phase::Standby(copy),
        };
        if matches!(role.phase, Phase::Standby(_)) {
            tracing::info!("starting as a standby");
        }
        Ok(role)
    }

    /// Takes the lease for `copy` at start if it is free and the stream holds nothing the copy
    /// lacks. Without a relay there is no lease to take.
    async fn try_lead(&self, copy: &Copy) -> anyhow::Result<Start> {
        let (Some(leases), Some(cfg)) = (&self.leases, &self.settings.relay) else {
            return Ok(Start::Primary(None));
        };
        let log_id = copy.log.log_id();
        let taken = match leases.try_acquire(log_id).await {
            Ok(taken) => taken,
            Err(e) => {
                // E.g. a just-created bucket on a cluster, before its Raft group has a leader:
                // the standby loop keeps trying.
                tracing::warn!(error = format!("{e:#}"), "cannot take the lease yet");
                return Ok(Start::Standby);
            }
        };
        let Some(lease) = taken else {
            let holder = leases.holder().await.ok().flatten();
            tracing::info!(holder = ?holder.map(|h| h.holder), "another command service leads");
            return Ok(Start::Standby);
        };
        let held = lease.start(log_id);
        let js = async_nats::jetstream::new(self.client.clone());
        let last = js
            .get_stream(&cfg.stream)
            .await
            .context("read the events stream")?
            .cached_info()
            .state
            .last_sequence;
        if last > copy.log.head().seq {
            tracing::info!(
                head = copy.log.head().seq,
                stream_last = last,
                "the stream holds events this log lacks: following it first"
            );
            held.release(self.wait()).await;
            return Ok(Start::Standby);
        }
        Ok(Start::Primary(Some(held)))
    }

    /// Starts serving `copy` as the primary: a service on its log, subscribed.
    async fn primary(&self, copy: Copy, lease: Option<Held>) -> anyhow::Result<Primary> {
        let Copy { mint, log } = copy;
        let relay_status = relay::RelayStatus::with_lease(lease.as_ref().map(Held::validity));
        let mut service = CommandService::new(log, mint.clone(), self.settings.command.clone());
        if self.settings.command.ack_after_replication {
            service = service.acking_after(relay_status.clone());
        }
        if let Some(held) = &lease {
            service = service.leading_while(held.validity());
        }
        // The key directory starts from the state the log opened with (restored from its
        // snapshot), not from seq 1 (issue 18).
        crate::directory::seed_from_state(&service.ctx.directory, service.log()).await?;
        let subscriptions = service.subscribe(&self.client).await?;
        tracing::info!(
            seq = service.log().head().seq,
            "serving commands as the primary"
        );
        Ok(Primary {
            service,
            subscriptions,
            mint,
            relay_status,
            lease,
        })
    }

    /// The log, when it is open (a standby may not have one yet).
    pub fn log(&self) -> Option<Log<State>> {
        match &self.phase {
            Phase::Primary(p) => Some(p.service.log().clone()),
            Phase::Standby(copy) => copy.as_ref().map(|c| c.log.clone()),
        }
    }

    /// Whether this role answers commands now.
    pub fn is_primary(&self) -> bool {
        matches!(self.phase, Phase::Primary(_))
    }

    /// The NATS connection the service answers on.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn wait(&self) -> Duration {
        Duration::from_millis(self.settings.command.shutdown_wait_ms_max)
    }

    /// Serves (or follows) until `shutdown`, then stops in order (see the module docs).
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Standby(None)) {
                Phase::Primary(p) => match self.serve(*p, &shutdown).await? {
                    Ended::Shutdown => break,
                    Ended::SteppedDown(copy) => self.phase = Phase::Standby(Some(copy)),
                },
                Phase::Standby(copy) => {
                    let (Some(leases), Some(cfg)) = (&self.leases, &self.settings.relay) else {
                        anyhow::bail!("a standby needs the relay's stream");
                    };
                    let js = async_nats::jetstream::new(self.client.clone());
                    let standby = Standby {
                        data_dir: &self.settings.data_dir,
                        client: &self.client,
                        js: &js,
                        stream: &cfg.stream,
                        leases,
                    };
                    match standby.follow(copy, &shutdown).await? {
                        Followed::Shutdown(copy) => {
                            if let Some(copy) = copy {
                                close(copy.log).await?;
                            }
                            break;
                        }
                        Followed::Lead(copy, held) => {
                            let primary = self.primary(copy, Some(held)).await?;
                            self.phase = Phase::Primary(Box::new(primary));
                        }
                    }
                }
            }
        }
        let wait_max = self.wait();
        match tokio::time::timeout(wait_max, async {
            self.client.flush().await.ok();
            self.client.drain().await
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

    /// Serves as the primary until `shutdown`, the lease is lost or the relay is fenced.
    async fn serve(&self, primary: Primary, shutdown: &CancellationToken) -> anyhow::Result<Ended> {
        let Primary {
            service,
            subscriptions,
            mint,
            relay_status,
            lease,
        } = primary;
        let (settings, client) = (&self.settings, &self.client);
        let log = service.log().clone();
        // The service stops on shutdown, or when this log may no longer lead.
        let stop = CancellationToken::new();
        let lost = lease.as_ref().map(Held::lost).unwrap_or_default();
        let fenced = relay_status.fenced();
        let watcher = {
            let (stop, shutdown) = (stop.clone(), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = lost.cancelled() => {}
                    () = fenced.cancelled() => {}
                }
                stop.cancel();
            })
        };
        // The helpers stop only after the service has answered everything, so that the relay
        // publishes the last commands' events.
        let helpers = CancellationToken::new();
        let relay_task = settings.relay.clone().map(|cfg| {
            let js = async_nats::jetstream::new(client.clone());
            tokio::spawn(relay::run_with_status(
                log.clone(),
                js,
                cfg,
                relay_status.clone(),
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
        service.serve(subscriptions, stop).await;
        drop(service);
        watcher.abort();

        helpers.cancel();
        // Every wait below is bounded: with NATS gone, flushing or draining would wait for a
        // reconnect that may never come, and shutdown must still finish.
        let wait_max = self.wait();
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
        if !shutdown.is_cancelled() {
            // Lost the lead: whatever it still holds, this log appends nothing more.
            if let Some(lease) = lease {
                lease.release(wait_max).await;
            }
            tracing::warn!(seq = log.head().seq, "stepped down: following as a standby");
            return Ok(Ended::SteppedDown(Copy { mint, log }));
        }
        close(log).await?;
        tracing::info!("log closed");
        // Given back only now: a standby that takes it finds every event in the stream.
        if let Some(lease) = lease {
            lease.release(wait_max).await;
        }
        Ok(Ended::Shutdown)
    }
}

/// Opens (or creates) the log and its keys in `dir`.
async fn open(dir: PathBuf) -> anyhow::Result<Copy> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create data dir {}", dir.display()))?;
        let (mint, log) = crate::mint::open_log(&dir, LogConfig::in_dir(&dir))?;
        Ok(Copy { mint, log })
    })
    .await
    .context("open the log")?
}

async fn close(log: Log<State>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || log.close())
        .await
        .context("close the log")
}

/// A JetStream context whose requests time out well within the lease's ttl.
fn lease_js(client: &Client, lease: &LeaseConfig) -> JetStream {
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_millis((lease.ttl_ms / 4).max(50)));
    js
}

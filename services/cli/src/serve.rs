//! `authkeys serve`: every role in one process — the command service (with its relay and
//! `authkeys.log.read`), the projection workers with their queries, the expiry timers, the
//! webhook deliveries (R23), and the HTTP gateway — talking over NATS exactly as the split topology does
//! (`authkeys command|project|timers|api`).
//!
//! Shutdown runs front to back: the gateway stops accepting and answers what it has, then the
//! timers stop sending, then the webhook deliveries stop (what they had not delivered stays
//! queued in their file), then the command service answers its in-flight commands and the relay
//! publishes what is committed, then the views stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use authkeys_command::app::{CommandRole, CommandSettings};
use authkeys_events::decision::system_clock;
use authkeys_gateway::{self as gateway, ApiSettings};
use authkeys_projections::Views;
use authkeys_projections::config::ProjectionConfig;
use authkeys_projections::timers::{Timers, TimersConfig};
use authkeys_protocol::access::Role;
use authkeys_protocol::nats::{Identity, NatsError};
use authkeys_webhooks::{WebhooksRole, WebhooksSettings};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What `authkeys serve` runs, with the production defaults of each role.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The command service's settings (data dir, NATS, relay, limits).
    pub command: CommandSettings,
    /// The views' settings (their files under `<data>/views`).
    pub projections: ProjectionConfig,
    /// The expiry timers' settings (their schedule under `<data>/views`, its consumer
    /// `view-timers`).
    pub timers: TimersConfig,
    /// The gateway's settings (its hashing key is the command service's).
    pub api: ApiSettings,
    /// Who the views are on NATS.
    pub views_identity: Identity,
    /// Who the timers are on NATS.
    pub timers_identity: Identity,
    /// The webhooks role's settings (its files under `<data>/webhooks`).
    pub webhooks: WebhooksSettings,
    /// Who the webhooks role is on NATS.
    pub webhooks_identity: Identity,
}

impl ServeSettings {
    /// Defaults for a data dir, an HTTP address and a NATS server.
    pub fn new(data_dir: PathBuf, http: SocketAddr, nats_url: String) -> Self {
        Self {
            webhooks: WebhooksSettings::new(data_dir.join("webhooks")),
            webhooks_identity: Identity::anonymous(Role::Webhooks),
            projections: ProjectionConfig {
                // Beside the log: a view rebuilds from the file, not over NATS.
                log_file: Some(data_dir.join("log.redb")),
                ..ProjectionConfig::new(data_dir.join("views"))
            },
            timers: TimersConfig::new(data_dir.join("views")),
            api: ApiSettings::new(http, nats_url.clone(), data_dir.join("hashing.key")),
            command: CommandSettings::new(data_dir, nats_url),
            views_identity: Identity::anonymous(Role::Project),
            timers_identity: Identity::anonymous(Role::Timers),
        }
    }

    /// Connects every role with its own identity from `dir` (`authkeys admin nats-config`),
    /// exactly as the split topology does.
    pub fn authenticate(&mut self, dir: &Path) -> Result<(), NatsError> {
        self.command.identity = Identity::from_dir(dir, Role::Command)?;
        self.views_identity = Identity::from_dir(dir, Role::Project)?;
        self.timers_identity = Identity::from_dir(dir, Role::Timers)?;
        self.webhooks_identity = Identity::from_dir(dir, Role::Webhooks)?;
        self.api.identity = Identity::from_dir(dir, Role::Api)?;
        Ok(())
    }
}

/// A started `serve`: every role built (subscribed, files open, the gateway bound), not yet
/// serving. The same `build → run(shutdown)` roles as the split topology, listed.
#[derive(Debug)]
pub struct Serve {
    command: CommandRole,
    views: Views,
    timers: Timers,
    webhooks: WebhooksRole,
    gateway: gateway::Gateway,
    clients: [async_nats::Client; 2],
}

impl Serve {
    /// Builds every role (port 0 allowed for the gateway).
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Serve> {
        let command = CommandRole::build(settings.command).await?;
        let url = &settings.api.nats_url;
        let views_client = settings
            .views_identity
            .connect(url, "authkeys-views")
            .await?;
        let timers_client = settings
            .timers_identity
            .connect(url, "authkeys-timers")
            .await?;
        let views =
            Views::build(views_client.clone(), settings.projections, system_clock()).await?;
        let timers = Timers::build(timers_client.clone(), settings.timers, system_clock()).await?;
        // The webhooks role drains its own connection when it stops.
        let webhooks_client = settings
            .webhooks_identity
            .connect(url, "authkeys-webhooks")
            .await?;
        let webhooks =
            WebhooksRole::build(webhooks_client, settings.webhooks, system_clock()).await?;
        let gateway = gateway::Gateway::build(settings.api).await?;
        Ok(Serve {
            command,
            views,
            timers,
            webhooks,
            gateway,
            clients: [views_client, timers_client],
        })
    }

    /// The gateway's port.
    pub fn port(&self) -> u16 {
        self.gateway.port()
    }

    /// Runs every role until `shutdown`, then stops them front to back: the gateway, the
    /// timers, the command service (which answers what it took and relays what it committed),
    /// the views. If a back role ends on its own, the gateway stops too rather than serve half a
    /// system.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Serve {
            command,
            views,
            timers,
            webhooks,
            gateway,
            clients,
        } = self;
        let front = shutdown.child_token();
        let timers = spawn_role(&front, |stop| timers.run(stop));
        let webhooks = spawn_role(&front, |stop| webhooks.run(stop));
        let command = spawn_role(&front, |stop| command.run(stop));
        let views = spawn_role(&front, |stop| views.run(stop));
        let gateway_result = gateway.run(front).await;
        let mut result = gateway_result;
        for (what, (stop, task)) in [
            ("timers", timers),
            ("webhooks", webhooks),
            ("command service", command),
            ("views", views),
        ] {
            stop.cancel();
            let r = task.await.with_context(|| format!("{what} task"))?;
            result = result.and(r);
        }
        for client in clients {
            client.drain().await.ok();
        }
        result
    }
}

/// Spawns a back role with its own stop token; its end (whatever the reason) stops `front`.
fn spawn_role<F, Fut>(
    front: &CancellationToken,
    run: F,
) -> (CancellationToken, JoinHandle<anyhow::Result<()>>)
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let running = run(stop.clone());
    let front = front.clone();
    let task = tokio::spawn(async move {
        let r = running.await;
        front.cancel();
        r
    });
    (stop, task)
}

/// Builds and runs every role until `shutdown` (`authkeys serve`).
pub async fn run(settings: ServeSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let serve = Serve::build(settings).await?;
    tracing::info!(port = serve.port(), "authkeys serve: every role up");
    serve.run(shutdown).await
}

//! `authkeys serve`: every role in one process — the command service (with its relay and
//! `authkeys.log.read`), the projection workers with their queries, the expiry timers, and the
//! HTTP gateway — talking over NATS exactly as the split topology does
//! (`authkeys command|project|timers|api`).
//!
//! Shutdown runs front to back: the gateway stops accepting and answers what it has, then the
//! timers stop sending, then the command service answers its in-flight commands and the relay
//! publishes what is committed, then the views stop.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use authkeys_projections::config::ProjectionConfig;
use authkeys_projections::timers::TimersConfig;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiSettings};
use crate::command::app::{App as CommandApp, CommandSettings};

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
}

impl ServeSettings {
    /// Defaults for a data dir, an HTTP address and a NATS server.
    pub fn new(data_dir: PathBuf, http: SocketAddr, nats_url: String) -> Self {
        Self {
            projections: ProjectionConfig::new(data_dir.join("views")),
            timers: TimersConfig::new(data_dir.join("views")),
            api: ApiSettings::new(http, nats_url.clone(), data_dir.join("hashing.key")),
            command: CommandSettings::new(data_dir, nats_url),
        }
    }
}

/// A started `serve`: every role subscribed and the gateway bound, not yet serving.
#[derive(Debug)]
pub struct Serve {
    command: CommandApp,
    views_client: async_nats::Client,
    projections: ProjectionConfig,
    timers: TimersConfig,
    api: api::App,
}

impl Serve {
    /// Opens the log, subscribes the command service, connects the views and binds the
    /// gateway (port 0 allowed).
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Serve> {
        let command = CommandApp::build(settings.command).await?;
        let views_client = crate::connect_nats(&settings.api.nats_url, "authkeys-views").await?;
        let api = api::App::build(settings.api).await?;
        Ok(Serve {
            command,
            views_client,
            projections: settings.projections,
            timers: settings.timers,
            api,
        })
    }

    /// The gateway's port.
    pub fn port(&self) -> u16 {
        self.api.port()
    }

    /// Runs every role until `shutdown`, then stops them front to back.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Serve {
            command,
            views_client,
            projections,
            timers,
            api,
        } = self;
        // The gateway stops on shutdown, or as soon as a back role ends (rather than serve half a
        // system); the back roles stop after it, front to back.
        let api_stop = shutdown.child_token();
        let command_stop = CancellationToken::new();
        let views_stop = CancellationToken::new();
        let timers_stop = CancellationToken::new();
        let command_task = {
            let (stop, front) = (command_stop.clone(), api_stop.clone());
            tokio::spawn(async move {
                let r = command.run(stop).await;
                front.cancel();
                r
            })
        };
        let views_task = {
            let (client, stop, front) =
                (views_client.clone(), views_stop.clone(), api_stop.clone());
            tokio::spawn(async move {
                let r = authkeys_projections::query::run_views(client, projections, stop).await;
                front.cancel();
                r
            })
        };
        let timers_task = {
            let (client, stop, front) =
                (views_client.clone(), timers_stop.clone(), api_stop.clone());
            tokio::spawn(async move {
                let clock = authkeys_log::system_clock();
                let r = authkeys_projections::timers::run_timers(client, timers, clock, stop).await;
                front.cancel();
                r
            })
        };
        let api_result = api.run(api_stop).await;
        timers_stop.cancel();
        let timers_result = timers_task.await.context("timers task")?;
        command_stop.cancel();
        let command_result = command_task.await.context("command service task")?;
        views_stop.cancel();
        let views_result = views_task.await.context("views task")?;
        views_client.drain().await.ok();
        api_result
            .and(timers_result)
            .and(command_result)
            .and(views_result)
    }
}

/// Builds and runs every role until `shutdown` (`authkeys serve`).
pub async fn run(settings: ServeSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let serve = Serve::build(settings).await?;
    tracing::info!(port = serve.port(), "authkeys serve: every role up");
    serve.run(shutdown).await
}

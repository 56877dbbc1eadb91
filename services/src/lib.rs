//! The processes of authkeys, and the glue between the pure core and the outside world.
//!
//! - [`secrets`]: key files, random ids and issuing auth keys and API tokens.
//! - [`command`]: the command service: NATS request/reply handlers that decide and append
//!   through the log.
//! - [`relay`]: publishes committed events to JetStream in seq order; the cursor lives in the log.
//! - [`log_read`]: serves `authkeys.log.read` for backfill, rebuilds and auditors.
//! - [`api`]: the HTTP gateway (Tailscale API v2): writes become NATS commands, reads NATS
//!   queries of the views.
//! - [`serve`]: every role in one process.
//! - [`status`]: `authkeys.status`, the command service's counters for `/metrics`.
//! - [`local_admin`]: `authkeys admin create-key` on the service's host (token checked against the
//!   log, read-only).
//!
//! Invariant: only this crate touches sockets, files, NATS, the clock and the environment.

pub mod api;
pub mod command;
pub mod local_admin;
pub mod log_read;
pub mod relay;
pub mod secrets;
pub mod serve;
pub mod status;

/// Connects to the NATS server at `url` as `name` (the connection name the server shows).
pub async fn connect_nats(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    connect_nats_with(url, async_nats::ConnectOptions::new().name(name)).await
}

/// [`connect_nats`] with more options (timeouts); the error names the server.
pub async fn connect_nats_with(
    url: &str,
    options: async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::Client> {
    use anyhow::Context as _;
    options
        .connect(url)
        .await
        .with_context(|| format!("connect to NATS at {url}"))
}

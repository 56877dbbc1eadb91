//! The NATS plumbing every role shares: [`connect`], and [`Responder`], the one bounded
//! request/reply loop that every served subject runs on (commands, queries, log reads, status).
//!
//! One drain rule for all: on shutdown the responder drains its subscriptions (the server stops
//! sending; what it already delivered is still read), answers every request it took, waits at
//! most `shutdown_wait_ms_max` for them, then flushes the replies (bounded too: with NATS gone a
//! flush would wait for a reconnect that may never come).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Message, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::SelectAll;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::access::Role;

/// Why a role could not reach NATS, or subscribe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The connection failed.
    #[error("connect to NATS at {url}")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A subscription failed.
    #[error("subscribe to {subject}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// Why.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The server did not confirm the subscriptions.
    #[error("flush subscriptions to NATS")]
    Flush(#[source] async_nats::client::FlushError),
    /// A role's nkey seed file could not be read.
    #[error("nkey seed {}: {why}", file.display())]
    Seed {
        /// The file.
        file: PathBuf,
        /// Why.
        why: String,
    },
}

/// Connects to the NATS server at `url` as `name` (the connection name the server shows),
/// anonymously and with the default inbox prefix: tests and tools.
pub async fn connect(url: &str, name: &str) -> Result<Client, NatsError> {
    connect_with(url, ConnectOptions::new().name(name)).await
}

/// How a role shows itself to NATS: its role (which names its inbox prefix, SPEC §6) and, with
/// authentication on, its nkey seed and the CA that signs the server's certificate.
#[derive(Clone)]
pub struct Identity {
    role: Role,
    seed: Option<String>,
    tls_ca: Option<PathBuf>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("authenticated", &self.seed.is_some())
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl Identity {
    /// No credentials (the zero-config loopback setup); replies still come to the role's own
    /// inbox prefix.
    pub fn anonymous(role: Role) -> Self {
        Self {
            role,
            seed: None,
            tls_ca: None,
        }
    }

    /// The role's seed from `<dir>/<role>.nk` (as `authkeys admin nats-config` writes it), and
    /// the CA `<dir>/ca.pem` when that file exists (the config then requires TLS).
    pub fn from_dir(dir: &Path, role: Role) -> Result<Self, NatsError> {
        let seed_file = dir.join(format!("{}.nk", role.name()));
        let mut identity = Self::from_seed_file(&seed_file, role)?;
        let ca = dir.join(TLS_CA_FILE);
        if ca.exists() {
            identity.tls_ca = Some(ca);
        }
        Ok(identity)
    }

    /// The seed in `file` (an `SU…` nkey seed, one line).
    pub fn from_seed_file(file: &Path, role: Role) -> Result<Self, NatsError> {
        let text = std::fs::read_to_string(file).map_err(|source| NatsError::Seed {
            file: file.to_owned(),
            why: source.to_string(),
        })?;
        let seed = text.trim().to_owned();
        if !seed.starts_with("SU") {
            return Err(NatsError::Seed {
                file: file.to_owned(),
                why: "not a user nkey seed (SU…)".into(),
            });
        }
        Ok(Self {
            role,
            seed: Some(seed),
            tls_ca: None,
        })
    }

    /// Also trust `ca` for the server's certificate (and require TLS).
    pub fn with_tls_ca(mut self, ca: PathBuf) -> Self {
        self.tls_ca = Some(ca);
        self
    }

    /// The role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The connect options of this identity, named `name`.
    pub fn options(&self, name: &str) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .name(name)
            .custom_inbox_prefix(self.role.inbox_prefix());
        if let Some(seed) = &self.seed {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        options
    }

    /// Connects to `url` as this identity, named `name`.
    pub async fn connect(&self, url: &str, name: &str) -> Result<Client, NatsError> {
        connect_with(url, self.options(name)).await
    }
}

/// The CA certificate file `authkeys admin nats-config --tls` writes beside the seeds.
pub const TLS_CA_FILE: &str = "ca.pem";

/// [`connect`] with more options (timeouts, credentials). `url` may list several servers of a
/// cluster, comma-separated (`nats://a:4222,nats://b:4222`): the client connects to any of them
/// and fails over between them (it also learns the cluster's other members from the server).
pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Client, NatsError> {
    let several: Option<Vec<async_nats::ServerAddr>> = url
        .contains(',')
        .then(|| url.split(',').map(|u| u.trim().parse().ok()).collect())
        .flatten();
    let connected = match several {
        Some(addrs) => options.connect(addrs).await,
        None => options.connect(url).await,
    };
    connected.map_err(|source| NatsError::Connect {
        url: url.to_owned(),
        source,
    })
}

/// How a [`Responder`] runs. Every limit is named, unit last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponderLimits {
    /// Requests answered at once; no more are taken off the subscriptions while this many are
    /// open.
    pub requests_in_flight_max: usize,
    /// Longest sending one reply may take (the client's buffer is full while NATS is away).
    pub reply_wait_ms_max: u64,
    /// Longest shutdown waits for requests already taken to be answered, and for the flush.
    pub shutdown_wait_ms_max: u64,
}

impl ResponderLimits {
    /// `requests_in_flight_max` at once, 5 s for a reply and for shutdown.
    pub const fn concurrent(requests_in_flight_max: usize) -> Self {
        Self {
            requests_in_flight_max,
            reply_wait_ms_max: 5_000,
            shutdown_wait_ms_max: 5_000,
        }
    }

    /// One request at a time: small, cheap subjects (status, checkpoints).
    pub const ONE_AT_A_TIME: Self = Self::concurrent(1);
}

/// Subscriptions taken before serving, so that a caller knows requests are received from then
/// on.
#[derive(Debug)]
pub struct Responder {
    client: Client,
    subs: SelectAll<Subscriber>,
    limits: ResponderLimits,
}

impl Responder {
    /// Subscribes to each subject in `queue_group` and waits until the server has them.
    pub async fn subscribe(
        client: &Client,
        subjects: impl IntoIterator<Item = String>,
        queue_group: &str,
        limits: ResponderLimits,
    ) -> Result<Self, NatsError> {
        let mut subs = SelectAll::new();
        for subject in subjects {
            let sub = client
                .queue_subscribe(subject.clone(), queue_group.to_owned())
                .await
                .map_err(|source| NatsError::Subscribe { subject, source })?;
            subs.push(sub);
        }
        client.flush().await.map_err(NatsError::Flush)?;
        Ok(Self {
            client: client.clone(),
            subs,
            limits,
        })
    }

    /// Answers every request with `answer(message)` until `shutdown`, then stops by the drain
    /// rule (module docs). `None` leaves a request unanswered (the asker's wait ends it; the
    /// reason is for `answer` to log). Requests without a reply subject are ignored.
    pub async fn serve<F, Fut>(self, shutdown: CancellationToken, answer: F)
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Bytes>> + Send + 'static,
    {
        let Responder {
            client,
            mut subs,
            limits,
        } = self;
        let answer = Arc::new(answer);
        let permits = Arc::new(Semaphore::new(limits.requests_in_flight_max.max(1)));
        let mut tasks = JoinSet::new();
        let spawn = |tasks: &mut JoinSet<()>, permit, msg: Message| {
            let Some(reply_to) = msg.reply.clone() else {
                tracing::debug!(subject = %msg.subject, "request without a reply subject ignored");
                return;
            };
            let (client, answer) = (client.clone(), Arc::clone(&answer));
            let wait = Duration::from_millis(limits.reply_wait_ms_max);
            tasks.spawn(async move {
                let _permit: tokio::sync::OwnedSemaphorePermit = permit;
                let subject = msg.subject.clone();
                let Some(body) = answer(msg).await else {
                    return;
                };
                match tokio::time::timeout(wait, client.publish(reply_to, body)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(%subject, error = %e, "publish a reply"),
                    Err(_) => {
                        tracing::warn!(%subject, "reply not sent in time (NATS unreachable?)")
                    }
                }
            });
        };
        loop {
            // A permit first: with every permit taken, nothing more is taken off the
            // subscriptions until an answer is sent.
            let permit = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                p = Arc::clone(&permits).acquire_owned() => p,
            };
            let Ok(permit) = permit else { break };
            let msg = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                m = subs.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!("every subscription ended; the NATS connection closed");
                break;
            };
            spawn(&mut tasks, permit, msg);
            // Reap finished answers so the set stays as small as the work in flight.
            while let Some(done) = tasks.try_join_next() {
                report(done);
            }
        }

        let wait = Duration::from_millis(limits.shutdown_wait_ms_max);
        let finish = async {
            for sub in subs.iter_mut() {
                if let Err(e) = sub.drain().await {
                    tracing::warn!(error = %e, "drain a subscription");
                }
            }
            // Requests the server delivered before it saw the drain are still answered.
            while let Some(msg) = subs.next().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                spawn(&mut tasks, permit, msg);
            }
            while let Some(done) = tasks.join_next().await {
                report(done);
            }
        };
        if tokio::time::timeout(wait, finish).await.is_err() {
            tracing::warn!(
                wait_ms = limits.shutdown_wait_ms_max,
                "requests still pending at shutdown were dropped"
            );
        }
        if tokio::time::timeout(wait, client.flush()).await.is_err() {
            tracing::warn!("replies not flushed in time: NATS unreachable");
        }
    }
}

impl Responder {
    /// Answers every request (whatever its payload) with `read()`, run on the blocking pool and
    /// sent as JSON: the status subjects. A failed read is logged (as `what`) and leaves the
    /// request unanswered; the asker's bounded wait ends it.
    pub async fn serve_blocking_json<T, E, F>(
        self,
        shutdown: CancellationToken,
        what: &'static str,
        read: F,
    ) where
        F: Fn() -> Result<T, E> + Clone + Send + Sync + 'static,
        T: serde::Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        self.serve(shutdown, move |_| {
            let read = read.clone();
            async move {
                match tokio::task::spawn_blocking(read).await {
                    Ok(Ok(value)) => serde_json::to_vec(&value).ok().map(Bytes::from),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "read the {what}");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the {what} task failed");
                        None
                    }
                }
            }
        })
        .await;
    }
}

/// Serves a status subject until `shutdown`: one request at a time (any payload), each answered
/// with `read()` as JSON ([`Responder::serve_blocking_json`]). Returns `Err` only if it cannot
/// subscribe.
pub async fn serve_status<T, E, F>(
    client: &Client,
    subject: &str,
    queue_group: &str,
    shutdown: CancellationToken,
    what: &'static str,
    read: F,
) -> Result<(), NatsError>
where
    F: Fn() -> Result<T, E> + Clone + Send + Sync + 'static,
    T: serde::Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let subjects = [subject.to_owned()];
    let limits = ResponderLimits::ONE_AT_A_TIME;
    let responder = Responder::subscribe(client, subjects, queue_group, limits).await?;
    responder.serve_blocking_json(shutdown, what, read).await;
    Ok(())
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a request handler failed");
    }
}

//! The leader lease (SPEC §7): which command service may append to the log.
//!
//! The lease is one key ([`subject::LEADER_KEY`]) in a JetStream key-value bucket
//! ([`subject::LEADER_BUCKET`]) whose maximum age is the lease's time to live: the server itself
//! expires an entry that is not renewed. Taking the lease is a create (it succeeds only while no
//! entry exists); renewing it is an update that names the revision the holder last wrote, so a
//! holder that lost the lease finds out at its next renewal instead of overwriting its successor.
//!
//! A holder stops appending once it cannot show it holds the lease: when a renewal is refused
//! (someone else holds it) or when no renewal has succeeded for [`LeaseConfig::margin`] before
//! the entry would expire. What the lease cannot stop — a holder paused past its expiry, which
//! appends once it resumes — the stream stops: its relay's publishes carry the expected last
//! sequence, and the successor's events are already there (see the relay's fencing).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use async_nats::jetstream::kv::{self, CreateErrorKind, Store, UpdateErrorKind};
use async_nats::jetstream::{self, Context};
use authkeys_events::LogId;
use authkeys_protocol::subject;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How the lease is kept. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// How long an entry lives without renewal: the bucket's maximum age (`--lease-ttl`). A new
    /// primary takes over at most this long (plus one poll) after the old one stopped renewing.
    pub ttl_ms: u64,
    /// How many servers store the bucket (the events stream's replicas).
    pub replicas: usize,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 2_000,
            replicas: 1,
        }
    }
}

impl LeaseConfig {
    /// How often the holder renews, and a standby tries to take the lease.
    pub fn renew_every(&self) -> Duration {
        Duration::from_millis(self.ttl_ms / 4)
    }

    /// A holder that has not renewed by this long before the entry expires stops appending.
    fn margin(&self) -> Duration {
        Duration::from_millis(self.ttl_ms / 4)
    }

    /// How long after a renewal was sent the holder may act on it.
    fn valid_for(&self) -> Duration {
        Duration::from_millis(self.ttl_ms) - self.margin()
    }
}

/// The holder id of the command role on data dir `data_dir`: `<host name>:<data dir>`. Stable
/// across restarts (so a restarted primary takes its own lease back) and unique per machine
/// and dir (two processes cannot share a data dir: the log file is locked).
pub fn holder_id(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!(
        "{}:{}",
        if host.is_empty() { "localhost" } else { &host },
        dir.display()
    )
}

/// What the lease's entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Holder {
    /// Who holds it: unique per process.
    pub holder: String,
    /// The log it appends to.
    pub log_id: LogId,
}

/// The lease bucket.
#[derive(Debug, Clone)]
pub struct Leases {
    kv: Store,
    config: LeaseConfig,
    me: String,
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    leases: Leases,
    revision: u64,
    renewed: Instant,
}

/// How holding a lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Given back on request (shutdown): a standby may take it at once.
    Released,
    /// Taken by someone else, or not renewed in time: stop appending.
    Lost(String),
}

impl Leases {
    /// Opens the bucket, creating it when missing, for holder `me` (see [`holder_id`]). `js`
    /// should time out well within the ttl.
    /// An existing bucket's maximum age is the ttl, whatever `config` says (every holder must
    /// renew by the age the server expires entries at).
    pub async fn open(js: &Context, mut config: LeaseConfig, me: String) -> anyhow::Result<Self> {
        let kv = match js.get_key_value(subject::LEADER_BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: subject::LEADER_BUCKET.to_owned(),
                    description: "authkeys: the command service's leader lease".to_owned(),
                    history: 1,
                    max_age: Duration::from_millis(config.ttl_ms),
                    storage: jetstream::stream::StorageType::Memory,
                    num_replicas: config.replicas,
                    ..Default::default()
                })
                .await
                .context("create the leader lease bucket")?,
        };
        let max_age = kv
            .status()
            .await
            .context("read the leader lease bucket")?
            .max_age();
        let ttl_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms < 100 {
            anyhow::bail!(
                "the lease bucket {} has a maximum age of {ttl_ms} ms, so its lease never \
                 expires; delete the bucket and let the command service create it",
                subject::LEADER_BUCKET
            );
        }
        if ttl_ms != config.ttl_ms {
            tracing::warn!(
                bucket_ms = ttl_ms,
                configured_ms = config.ttl_ms,
                "the lease bucket exists with another ttl; using the bucket's (delete the \
                 bucket to change it)"
            );
            config.ttl_ms = ttl_ms;
        }
        Ok(Self { kv, config, me })
    }

    /// How often the holder renews, and a standby tries to take the lease.
    pub fn renew_every(&self) -> Duration {
        self.config.renew_every()
    }

    /// Takes the lease for `log_id` if nobody holds it, or if this data dir's previous process
    /// holds it (it died without giving it back: a restart re-leads at once instead of waiting
    /// for the entry to expire); `Ok(None)` when someone else does.
    pub async fn try_acquire(&self, log_id: LogId) -> anyhow::Result<Option<Lease>> {
        let value: bytes::Bytes = serde_json::to_vec(&Holder {
            holder: self.me.clone(),
            log_id,
        })?
        .into();
        // A lease counts from before the request that took it.
        let sent = Instant::now();
        let lease = |revision| Lease {
            leases: self.clone(),
            revision,
            renewed: sent,
        };
        match self.kv.create(subject::LEADER_KEY, value.clone()).await {
            Ok(revision) => return Ok(Some(lease(revision))),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(anyhow!(e).context("take the leader lease")),
        }
        let Some(entry) = self
            .kv
            .entry(subject::LEADER_KEY)
            .await
            .context("read the leader lease")?
        else {
            return Ok(None);
        };
        let held_by: Option<Holder> = serde_json::from_slice(&entry.value).ok();
        if held_by.is_none_or(|h| h.holder != self.me || h.log_id != log_id) {
            return Ok(None);
        }
        match self
            .kv
            .update(subject::LEADER_KEY, value, entry.revision)
            .await
        {
            Ok(revision) => {
                tracing::info!("took back the leader lease this data dir's last process held");
                Ok(Some(lease(revision)))
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(anyhow!(e).context("take back the leader lease")),
        }
    }

    /// Who holds the lease now, if anyone.
    pub async fn holder(&self) -> anyhow::Result<Option<Holder>> {
        let entry = self
            .kv
            .get(subject::LEADER_KEY)
            .await
            .context("read the leader lease")?;
        Ok(entry.and_then(|v| serde_json::from_slice(&v).ok()))
    }
}

/// Whether this process may still act as the lease's holder: until the last successful
/// renewal's send time plus the ttl minus the margin. Cheap to clone and to ask; a process
/// paused past that (SIGSTOP, a long stall) finds it lapsed the moment it resumes, before its
/// renewal task has run.
#[derive(Debug, Clone)]
pub struct Validity {
    until: Arc<Mutex<Instant>>,
}

impl Validity {
    fn new(until: Instant) -> Self {
        Self {
            until: Arc::new(Mutex::new(until)),
        }
    }

    /// True while the lease is surely held.
    pub fn holds(&self) -> bool {
        Instant::now() < *self.lock()
    }

    fn extend(&self, until: Instant) {
        *self.lock() = until;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A lease being renewed in the background ([`Lease::start`]); dropping it gives the lease
/// back, as [`Held::release`] does without waiting.
#[derive(Debug)]
pub struct Held {
    release: CancellationToken,
    lost: CancellationToken,
    validity: Validity,
    task: Option<tokio::task::JoinHandle<LeaseEnd>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release.cancel();
    }
}

impl Held {
    /// Cancelled once the lease is lost: stop appending.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Whether the lease is surely still held, asked before each append and acknowledgement.
    pub fn validity(&self) -> Validity {
        self.validity.clone()
    }

    /// Gives the lease back (a standby may take it at once) unless it was lost, waiting at most
    /// `wait` for the server.
    pub async fn release(mut self, wait: Duration) -> LeaseEnd {
        self.release.cancel();
        let Some(task) = self.task.take() else {
            return LeaseEnd::Released;
        };
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => LeaseEnd::Lost(format!("the lease task failed: {e}")),
            Err(_) => LeaseEnd::Lost("giving the lease back timed out; it expires".into()),
        }
    }
}

impl Lease {
    /// Renews the lease in the background from now on.
    pub fn start(self, log_id: LogId) -> Held {
        let (release, lost) = (CancellationToken::new(), CancellationToken::new());
        let validity = Validity::new(self.renewed + self.leases.config.valid_for());
        let (r, l, v) = (release.clone(), lost.clone(), validity.clone());
        let task = tokio::spawn(async move {
            let end = self.hold(log_id, r, v).await;
            if let LeaseEnd::Lost(why) = &end {
                tracing::error!(%why, "leader lease lost: no more commands are appended here");
                l.cancel();
            }
            end
        });
        Held {
            release,
            lost,
            validity,
            task: Some(task),
        }
    }

    /// Renews the lease until `release` is cancelled (then gives it back) or it is lost.
    async fn hold(
        mut self,
        log_id: LogId,
        release: CancellationToken,
        valid: Validity,
    ) -> LeaseEnd {
        let config = self.leases.config.clone();
        let ttl = Duration::from_millis(config.ttl_ms);
        let value = serde_json::to_vec(&Holder {
            holder: self.leases.me.clone(),
            log_id,
        })
        .unwrap_or_default();
        loop {
            tokio::select! {
                () = release.cancelled() => {
                    let kv = &self.leases.kv;
                    if let Err(e) = kv
                        .delete_expect_revision(subject::LEADER_KEY, Some(self.revision))
                        .await
                    {
                        tracing::warn!(error = %e, "could not give the leader lease back; it expires");
                    }
                    return LeaseEnd::Released;
                }
                () = tokio::time::sleep(config.renew_every()) => {}
            }
            // The entry lives a ttl from when the server stores it, which is after this.
            let sent = Instant::now();
            match self
                .leases
                .kv
                .update(subject::LEADER_KEY, value.clone().into(), self.revision)
                .await
            {
                Ok(revision) => {
                    self.revision = revision;
                    self.renewed = sent;
                    valid.extend(sent + config.valid_for());
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    let who = self.leases.holder().await.ok().flatten();
                    return LeaseEnd::Lost(format!(
                        "the leader lease was taken over (now held by {})",
                        who.map_or_else(|| "nobody".to_owned(), |h| h.holder)
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease; retrying");
                    if self.renewed.elapsed() + config.margin() >= ttl {
                        return LeaseEnd::Lost(format!(
                            "the leader lease could not be renewed for {} ms: {e}",
                            self.renewed.elapsed().as_millis()
                        ));
                    }
                }
            }
        }
    }
}

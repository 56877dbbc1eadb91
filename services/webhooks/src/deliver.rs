//! Deliveries: one task per live endpoint, each with its own queue in the store, so a slow or
//! dead endpoint never delays another.
//!
//! A task takes the first `batch_events_max` messages of its queue, POSTs them as one JSON
//! array signed with the endpoint's current secret, and removes them only on a 2xx answer (at
//! least once, in order, across restarts). A failure (connection, timeout, non-2xx, refused
//! address) is recorded on the batch's first message; the task waits an exponential backoff
//! with jitter (`retry_base_ms` doubling up to `retry_cap_ms`) and tries again, until the first
//! failure is `retry_window_ms` old (24 h): the batch is then recorded as dropped.
//!
//! Each attempt resolves the host, checks every address ([`crate::ssrf`]) and pins the HTTP
//! client to the checked addresses; redirects are not followed, the answer's body is read at
//! most `response_bytes_max`, and the whole attempt is bounded by `request_timeout_ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use authkeys_events::{Clock, EndpointId, EndpointUrl};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::secret::SecretKey;
use crate::sign::{SIGNATURE_HEADER, signature};
use crate::ssrf;
use crate::store::{Queued, Store};

/// How deliveries are made. Every limit is named, unit last.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Reach loopback, private and link-local addresses (`--webhooks-allow-private`).
    pub allow_private: bool,
    /// Most messages in one POST.
    pub batch_events_max: usize,
    /// Longest one attempt may take (connect, send, answer).
    pub request_timeout_ms: u64,
    /// Most bytes of an answer read.
    pub response_bytes_max: usize,
    /// First wait after a failure…
    pub retry_base_ms: u64,
    /// …doubling up to this…
    pub retry_cap_ms: u64,
    /// …for this long from the first failure; then the batch is dropped (24 h).
    pub retry_window_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            batch_events_max: 100,
            request_timeout_ms: 10_000,
            response_bytes_max: 64 * 1024,
            retry_base_ms: 1_000,
            retry_cap_ms: 10 * 60 * 1_000,
            retry_window_ms: 24 * 60 * 60 * 1_000,
        }
    }
}

impl DeliveryConfig {
    /// The wait after the `attempts`-th failure in a row: `base · 2^(attempts−1)`, capped, then
    /// a uniform jitter in its upper half (so endpoints that failed together spread out).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(32);
        let full = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_cap_ms)
            .max(1);
        let half = full / 2;
        Duration::from_millis(half + fastrand::u64(0..=full - half))
    }
}

/// Counters since the role started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages delivered.
    pub delivered: AtomicU64,
    /// Failed attempts.
    pub failed_attempts: AtomicU64,
    /// Messages dropped.
    pub dropped: AtomicU64,
}

/// POSTs `body` to `url`, signed with `secret` at `t` (unix seconds). `Err` says why, for the
/// endpoint's `lastError`.
pub async fn post(
    cfg: &DeliveryConfig,
    url: &EndpointUrl,
    secret: &str,
    body: Vec<u8>,
    t: i64,
) -> Result<(), String> {
    let addrs = ssrf::resolve(url, cfg.allow_private)
        .await
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .user_agent("authkeys-webhooks");
    let host = url.host();
    if host.parse::<std::net::IpAddr>().is_err() {
        // Connect to the addresses just checked, never to a second answer of the resolver.
        builder = builder.resolve_to_addrs(host, &addrs);
    }
    let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
    let sig = signature(secret, t, &body);
    let attempt = async {
        let mut resp = client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", without_url(&e)))?;
        let status = resp.status();
        let mut read = 0usize;
        while read < cfg.response_bytes_max {
            match resp.chunk().await {
                Ok(Some(c)) => read += c.len(),
                _ => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {}", status.as_u16()))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("POST {url}: timed out")))
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// What every endpoint task shares.
#[derive(Debug)]
pub struct Ctx {
    /// The store.
    pub store: Arc<Store>,
    /// The secrets' key.
    pub key: SecretKey,
    /// The delivery settings.
    pub cfg: DeliveryConfig,
    /// Timestamps of signatures and windows.
    pub clock: Clock,
    /// Counters.
    pub stats: Stats,
}

#[derive(Debug)]
struct Task {
    wake: Arc<Notify>,
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// The endpoint tasks: one per live endpoint.
#[derive(Debug)]
pub struct Deliveries {
    ctx: Arc<Ctx>,
    tasks: Mutex<HashMap<String, Task>>,
    stop: CancellationToken,
}

impl Deliveries {
    /// No task yet; `stop` ends them all.
    pub fn new(ctx: Arc<Ctx>, stop: CancellationToken) -> Self {
        Self {
            ctx,
            tasks: Mutex::new(HashMap::new()),
            stop,
        }
    }

    /// The shared context.
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Starts a task for every live endpoint that has none, stops those of deleted ones, and
    /// wakes the tasks of `touched`.
    pub fn sync(&self, touched: &[String]) {
        let live = self.ctx.store.endpoint_ids();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|id, t| {
            let keep = live.contains(id) && !t.handle.is_finished();
            if !keep {
                t.stop.cancel();
            }
            keep
        });
        if self.stop.is_cancelled() {
            return;
        }
        for id in live {
            tasks.entry(id.clone()).or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                let stop = self.stop.child_token();
                let handle = tokio::spawn(endpoint_loop(
                    id,
                    Arc::clone(&self.ctx),
                    Arc::clone(&wake),
                    stop.clone(),
                ));
                Task { wake, stop, handle }
            });
        }
        for id in touched {
            if let Some(t) = tasks.get(id) {
                t.wake.notify_one();
            }
        }
    }

    /// Stops every task and waits for them (an attempt in flight is bounded by its timeout).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let tasks: Vec<Task> = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in tasks {
            t.handle.await.ok();
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, authkeys_projections::store::StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "webhooks store failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "webhooks store task failed");
            None
        }
    }
}

/// Delivers `id`'s queue until the endpoint is deleted or `stop`.
async fn endpoint_loop(id: String, ctx: Arc<Ctx>, wake: Arc<Notify>, stop: CancellationToken) {
    let Ok(endpoint_id) = EndpointId::parse(id.as_str()) else {
        return;
    };
    let mut failures: u32 = 0;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let Some(row) = ctx.store.endpoint(&id) else {
            return;
        };
        let batch: Vec<(String, Queued)> = {
            let store = Arc::clone(&ctx.store);
            let (id, max) = (id.clone(), ctx.cfg.batch_events_max.max(1));
            match blocking(move || store.peek(&id, max)).await {
                Some(b) => b,
                None => {
                    // The store failed: wait, as for a failed delivery.
                    failures = failures.saturating_add(1);
                    if sleep_or_stop(&stop, ctx.cfg.backoff(failures)).await {
                        return;
                    }
                    continue;
                }
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = wake.notified() => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        let messages: Vec<_> = batch.iter().map(|(_, q)| &q.message).collect();
        let body = match serde_json::to_vec(&messages) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, endpoint = %id, "encode a webhook batch");
                return;
            }
        };
        let secret = ctx.key.secret(&endpoint_id, row.rotation);
        let now = ctx.clock.now();
        let result = tokio::select! {
            r = post(&ctx.cfg, &row.endpoint_url, &secret, body, now.unix_ms().div_euclid(1000)) => r,
            () = stop.cancelled() => return,
        };
        let n = batch.len() as u64;
        match result {
            Ok(()) => {
                failures = 0;
                let store = Arc::clone(&ctx.store);
                let keys: Vec<String> = batch.iter().map(|(k, _)| k.clone()).collect();
                if blocking(move || store.ack(&keys)).await.is_some() {
                    ctx.stats.delivered.fetch_add(n, Ordering::Relaxed);
                    tracing::debug!(endpoint = %id, events = n, "webhook delivered");
                }
            }
            Err(why) => {
                ctx.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                let store = Arc::clone(&ctx.store);
                let (key, e) = (batch[0].0.clone(), why.clone());
                let Some((first, attempts)) = blocking(move || store.fail(&key, now, &e)).await
                else {
                    failures = failures.saturating_add(1);
                    if sleep_or_stop(&stop, ctx.cfg.backoff(failures)).await {
                        return;
                    }
                    continue;
                };
                failures = attempts;
                let age_ms = now.unix_ms().saturating_sub(first.unix_ms());
                if u64::try_from(age_ms).unwrap_or(0) >= ctx.cfg.retry_window_ms {
                    tracing::warn!(endpoint = %id, events = n, attempts, error = %why,
                        "webhook events dropped after the retry window");
                    let store = Arc::clone(&ctx.store);
                    if blocking(move || store.drop_batch(&batch, now, attempts, &why))
                        .await
                        .is_some()
                    {
                        ctx.stats.dropped.fetch_add(n, Ordering::Relaxed);
                    }
                    continue;
                }
                if attempts == 1 {
                    tracing::info!(endpoint = %id, error = %why, "webhook delivery failed; retrying");
                }
                if sleep_or_stop(&stop, ctx.cfg.backoff(attempts)).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d`; `true` if `stop` came first.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let cfg = DeliveryConfig {
            retry_base_ms: 100,
            retry_cap_ms: 1_000,
            ..DeliveryConfig::default()
        };
        for _ in 0..100 {
            let b1 = cfg.backoff(1).as_millis();
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = cfg.backoff(3).as_millis();
            assert!((200..=400).contains(&b3), "{b3}");
            let b30 = cfg.backoff(30).as_millis();
            assert!((500..=1_000).contains(&b30), "{b30}");
        }
    }
}

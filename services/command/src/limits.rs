//! Limits on **failed** registrations, per registrar, per key id and in all (governor's GCRA).
//!
//! A failure (`invalid_key`) takes a cell from the registrar's bucket, the key id's and the
//! global one. When a bucket is empty the failure is answered `rate_limited` instead, and the
//! registrar or key id is *blocked* until its next cell is due: its **failing** registrations are
//! then answered `rate_limited`. A limit never refuses a correct key (R22): the registration
//! path checks the presented secret first ([`crate::directory`]), without the writer, and only a
//! wrong secret (or a key that can no longer register) is ever limited. So a noisy registrar or
//! a key id under attack slows only the failing attempts, and never another registrar's or the
//! key holder's; failing attempts never reach the writer at all.
//!
//! Memory is bounded: governor's state forgets buckets that are full again
//! ([`RateLimits::forget_idle`], called as failures arrive), and at most `tracked_keys_max`
//! blocked entries are kept (beyond that, expired ones are swept and new blocks are not
//! recorded; the bucket itself still answers `rate_limited`).

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// The limits; a `burst` of 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Failed registrations a registrar may make at once…
    pub registrar_failures_burst: u32,
    /// …and per minute after that.
    pub registrar_failures_per_minute: u32,
    /// Failed registrations with one key id at once…
    pub key_failures_burst: u32,
    /// …and per minute after that.
    pub key_failures_per_minute: u32,
    /// Failed registrations of every registrar and key together at once…
    pub global_failures_burst: u32,
    /// …and per minute after that.
    pub global_failures_per_minute: u32,
    /// Most blocked registrars plus key ids remembered.
    pub tracked_keys_max: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            registrar_failures_burst: 100,
            registrar_failures_per_minute: 600,
            key_failures_burst: 10,
            key_failures_per_minute: 30,
            global_failures_burst: 1_000,
            global_failures_per_minute: 60_000,
            tracked_keys_max: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// No limits (tests that make many failures on purpose).
    pub fn off() -> Self {
        Self {
            registrar_failures_burst: 0,
            key_failures_burst: 0,
            global_failures_burst: 0,
            ..Self::default()
        }
    }
}

/// Failures between two sweeps of idle buckets.
const SWEEP_EVERY_FAILURES: u64 = 1024;

struct Bucket<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    blocked: Mutex<HashMap<K, Instant>>,
    tracked_max: usize,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(burst: u32, per_minute: u32, tracked_max: usize) -> Option<Self> {
        let burst = NonZeroU32::new(burst)?;
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
            tracked_max,
        })
    }

    fn is_blocked(&self, key: &K) -> bool {
        let mut blocked = self
            .blocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match blocked.get(key) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                blocked.remove(key);
                false
            }
            None => false,
        }
    }

    /// Takes a cell for a failure; `true` if there was none (now blocked).
    fn fail(&self, key: &K) -> bool {
        match self.limiter.check_key(key) {
            Ok(()) => false,
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                let mut blocked = self
                    .blocked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if blocked.len() >= self.tracked_max {
                    let now = Instant::now();
                    blocked.retain(|_, until| *until > now);
                }
                if blocked.len() < self.tracked_max {
                    blocked.insert(key.clone(), Instant::now() + wait);
                }
                true
            }
        }
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The failure limits of the command service.
pub struct RateLimits {
    registrars: Option<Bucket<String>>,
    keys: Option<Bucket<String>>,
    global: Option<Bucket<String>>,
    failures: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("registrars", &self.registrars.is_some())
            .field("keys", &self.keys.is_some())
            .field("global", &self.global.is_some())
            .finish()
    }
}

impl RateLimits {
    /// Limits as configured.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            registrars: Bucket::new(
                config.registrar_failures_burst,
                config.registrar_failures_per_minute,
                config.tracked_keys_max,
            ),
            keys: Bucket::new(
                config.key_failures_burst,
                config.key_failures_per_minute,
                config.tracked_keys_max,
            ),
            global: Bucket::new(
                config.global_failures_burst,
                config.global_failures_per_minute,
                1,
            ),
            failures: AtomicU64::new(0),
        }
    }

    /// Whether a failing registration from `registrar` with `key_id` (`None` for a malformed key,
    /// which names no key) is refused `rate_limited` (a correct key is never asked about).
    pub fn is_blocked(&self, registrar: &str, key_id: Option<&str>) -> bool {
        self.each(registrar, key_id, |b, k| b.is_blocked(k))
    }

    /// Records a failed registration; `true` if it exceeded a limit.
    pub fn fail(&self, registrar: &str, key_id: Option<&str>) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY_FAILURES == SWEEP_EVERY_FAILURES - 1 {
            self.forget_idle();
        }
        // Every bucket takes the failure, even when an earlier one is already empty.
        self.each(registrar, key_id, |b, k| b.fail(k))
    }

    /// `f` on the registrar's bucket, the key id's (when it names one) and the global one; true
    /// if any answered true. All are asked, always.
    fn each(
        &self,
        registrar: &str,
        key_id: Option<&str>,
        f: impl Fn(&Bucket<String>, &String) -> bool,
    ) -> bool {
        let by_registrar = self
            .registrars
            .as_ref()
            .is_some_and(|b| f(b, &registrar.to_owned()));
        let by_key = match (&self.keys, key_id) {
            (Some(b), Some(k)) => f(b, &k.to_owned()),
            _ => false,
        };
        let in_all = self.global.as_ref().is_some_and(|b| f(b, &String::new()));
        by_registrar || by_key || in_all
    }

    /// Forgets buckets that are full again.
    pub fn forget_idle(&self) {
        for b in [&self.registrars, &self.keys, &self.global]
            .into_iter()
            .flatten()
        {
            b.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_burst_failures_and_only_that_registrar() {
        let limits = RateLimits::new(&RateLimitConfig {
            registrar_failures_burst: 3,
            registrar_failures_per_minute: 1,
            key_failures_burst: 0,
            key_failures_per_minute: 0,
            global_failures_burst: 0,
            global_failures_per_minute: 0,
            tracked_keys_max: 10,
        });
        for _ in 0..3 {
            assert!(!limits.is_blocked("r1", Some("k1")));
            assert!(!limits.fail("r1", Some("k1")));
        }
        assert!(limits.fail("r1", None), "the 4th failure exceeds the burst");
        assert!(limits.is_blocked("r1", Some("k1")));
        assert!(!limits.is_blocked("r2", Some("k1")), "key limit is off");
        let off = RateLimits::new(&RateLimitConfig::off());
        for _ in 0..100 {
            assert!(!off.fail("r", Some("k")));
        }
    }
}

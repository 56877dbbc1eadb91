//! R17: node addresses. Every node gets one IPv4 address in 100.64.0.0/10 and one IPv6 address
//! in fd7a:115c:a1e0::/48, unique within its tailnet, kept across re-authentication, and not
//! handed to another node for [`QUARANTINE_SECS`] (90 days) after its deletion.
//!
//! Each tailnet keeps an [`AddressPool`] (`state::Tailnet::addresses`), folded from the events
//! like the rest of the state: a `NodeRegistered` takes its addresses, a `NodeDeleted` releases
//! its node's into quarantine at the event's time. `decide` asks [`AddressPool::pick`] for a new
//! node's addresses and writes them into the `NodeRegistered` event; the log's single writer
//! folds each decision before deciding the next, so two registrations never get the same
//! addresses, however many arrive at once.
//!
//! The choice, O(1) per registration (amortized), never a scan of the nodes:
//!
//! 1. The oldest released pair, if its quarantine has ended (release time + 90 days ≤ now).
//!    Reusing first keeps what the pool remembers bounded by the deletions of the last 90 days
//!    (ephemeral CI nodes come and go by the thousand).
//! 2. Otherwise the next never-used address, in order from 100.64.0.1 (a cursor).
//! 3. Otherwise none: [`crate::Rejection::AddressesExhausted`].
//!
//! Reserved, never handed out ([`is_reserved`]): 100.64.0.0 and 100.127.255.255 (the ends of the
//! range, network- and broadcast-like), 100.100.100.100 (Tailscale's "quad-100" service address)
//! and 100.115.92.0/23 (the range ChromeOS uses for its VMs, which Tailscale avoids as well):
//! [`USABLE`] = 2^22 − 515 addresses per tailnet.
//!
//! The IPv6 address embeds the IPv4 one in its last 32 bits ([`ipv6_of`]): 100.64.0.1 goes
//! with fd7a:115c:a1e0::6440:1. Both are tracked anyway, so uniqueness of each holds by itself
//! whatever a log holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use authkeys_events::{NodeAddresses, Timestamp};

/// The IPv4 range of nodes: 100.64.0.0/10 (RFC 6598 shared address space, as Tailscale).
pub const IPV4_NET: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Its prefix length.
pub const IPV4_PREFIX: u8 = 10;
/// The IPv6 range of nodes: fd7a:115c:a1e0::/48 (Tailscale's ULA).
pub const IPV6_NET: Ipv6Addr = Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 0);
/// Its prefix length.
pub const IPV6_PREFIX: u8 = 48;
/// How many IPv4 addresses 100.64.0.0/10 holds: 2^22.
pub const RANGE_SIZE: u32 = 1 << (32 - IPV4_PREFIX);
/// Tailscale's service address ("quad-100"), never a node's.
pub const QUAD_100: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 100);
/// The first address of 100.115.92.0/23, which ChromeOS uses for its VMs.
pub const CHROMEOS_VM_NET: Ipv4Addr = Ipv4Addr::new(100, 115, 92, 0);
/// How many addresses a tailnet can hand out: the range less the reserved ones.
pub const USABLE: u32 = RANGE_SIZE - 2 - 1 - 512;
/// How long a deleted node's addresses are not handed to another node: 90 days.
pub const QUARANTINE_SECS: i64 = 90 * 86_400;

/// The IPv4 address `offset` places into 100.64.0.0/10 (`offset` < [`RANGE_SIZE`]).
pub fn ipv4_at(offset: u32) -> Ipv4Addr {
    debug_assert!(offset < RANGE_SIZE);
    Ipv4Addr::from(u32::from(IPV4_NET) | (offset & (RANGE_SIZE - 1)))
}

/// The IPv6 address that goes with `ipv4`: fd7a:115c:a1e0:: with `ipv4` as its last 32 bits.
pub fn ipv6_of(ipv4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(IPV6_NET) | u128::from(u32::from(ipv4)))
}

/// The addresses at `offset`: [`ipv4_at`] and its [`ipv6_of`].
pub fn addresses_at(offset: u32) -> NodeAddresses {
    let ipv4 = ipv4_at(offset);
    NodeAddresses {
        ipv4,
        ipv6: ipv6_of(ipv4),
    }
}

/// Is `ipv4` in 100.64.0.0/10?
pub fn in_ipv4_range(ipv4: Ipv4Addr) -> bool {
    u32::from(ipv4) & !(RANGE_SIZE - 1) == u32::from(IPV4_NET)
}

/// Is `ipv6` in fd7a:115c:a1e0::/48?
pub fn in_ipv6_range(ipv6: Ipv6Addr) -> bool {
    u128::from(ipv6) >> (128 - IPV6_PREFIX) == u128::from(IPV6_NET) >> (128 - IPV6_PREFIX)
}

/// Is `ipv4` one that is never handed out (see the module's documentation)?
pub fn is_reserved(ipv4: Ipv4Addr) -> bool {
    let a = u32::from(ipv4);
    let net = u32::from(IPV4_NET);
    a == net
        || a == net | (RANGE_SIZE - 1)
        || ipv4 == QUAD_100
        || a & !0x1ff == u32::from(CHROMEOS_VM_NET)
}

/// One tailnet's addresses: those in use by its live nodes, those in quarantine since their
/// node's deletion, and where the next never-used one is. Folded from the events only
/// ([`AddressPool::take`], [`AddressPool::release`]); `decide` only reads it
/// ([`AddressPool::pick`]).
///
/// Invariants kept by every fold: the cursor's address is free (not reserved, in use nor in
/// quarantine) unless the cursor is at the end; the oldest entry of `released` is a pair still
/// in quarantine since that release (stale entries are dropped from the front as they surface).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddressPool {
    /// Offsets `0..size` of 100.64.0.0/10 are the pool ([`RANGE_SIZE`] but in tests).
    size: u32,
    /// The next offset never handed out (and free), or `size`.
    next: u32,
    /// In use by live nodes.
    used4: HashSet<Ipv4Addr>,
    /// In use by live nodes.
    used6: HashSet<Ipv6Addr>,
    /// In quarantine, with the time of their release.
    held4: HashMap<Ipv4Addr, Timestamp>,
    /// In quarantine, with the time of their release.
    held6: HashMap<Ipv6Addr, Timestamp>,
    /// Released pairs, oldest first (event times never go backwards).
    released: VecDeque<(Timestamp, NodeAddresses)>,
}

impl Default for AddressPool {
    fn default() -> Self {
        Self::with_size(RANGE_SIZE)
    }
}

impl AddressPool {
    /// A pool of the first `size` offsets of 100.64.0.0/10 (at most [`RANGE_SIZE`]). Only tests
    /// want fewer than all: a small pool shows exhaustion and reuse after quarantine.
    pub fn with_size(size: u32) -> Self {
        let mut pool = Self {
            size: size.min(RANGE_SIZE),
            next: 0,
            used4: HashSet::new(),
            used6: HashSet::new(),
            held4: HashMap::new(),
            held6: HashMap::new(),
            released: VecDeque::new(),
        };
        pool.advance();
        pool
    }

    /// The addresses a new node registered at `now` gets, or `None` when every one is in use or
    /// in quarantine. O(1).
    pub fn pick(&self, now: Timestamp) -> Option<NodeAddresses> {
        if let Some((released, a)) = self.released.front()
            && now >= released.plus_seconds(QUARANTINE_SECS)
        {
            return Some(*a);
        }
        (self.next < self.size).then(|| addresses_at(self.next))
    }

    /// Addresses in use by live nodes.
    pub fn in_use(&self) -> usize {
        self.used4.len()
    }

    /// Is either of `a` in use by a live node?
    pub fn is_used(&self, a: &NodeAddresses) -> bool {
        self.used4.contains(&a.ipv4) || self.used6.contains(&a.ipv6)
    }

    /// When `a`'s IPv4 address was released, if it is remembered as released and not taken
    /// since (its quarantine may have ended).
    pub fn released_at(&self, a: &NodeAddresses) -> Option<Timestamp> {
        self.held4.get(&a.ipv4).copied()
    }

    /// A node registered with `a`: they are in use.
    pub(crate) fn take(&mut self, a: NodeAddresses) {
        self.used4.insert(a.ipv4);
        self.used6.insert(a.ipv6);
        self.held4.remove(&a.ipv4);
        self.held6.remove(&a.ipv6);
        self.tidy();
        self.advance();
    }

    /// A node holding `a` was deleted at `at`: they are in quarantine from then.
    pub(crate) fn release(&mut self, a: NodeAddresses, at: Timestamp) {
        self.used4.remove(&a.ipv4);
        self.used6.remove(&a.ipv6);
        self.held4.insert(a.ipv4, at);
        self.held6.insert(a.ipv6, at);
        self.released.push_back((at, a));
        self.tidy();
    }

    /// Is the address at `offset` free for a first use?
    fn fresh(&self, offset: u32) -> bool {
        let a = addresses_at(offset);
        !is_reserved(a.ipv4)
            && !self.is_used(&a)
            && !self.held4.contains_key(&a.ipv4)
            && !self.held6.contains_key(&a.ipv6)
    }

    /// Moves the cursor to the next fresh offset. Amortized O(1): it only moves forward.
    fn advance(&mut self) {
        while self.next < self.size && !self.fresh(self.next) {
            self.next += 1;
        }
    }

    /// Drops released pairs from the front that were taken (or released again) since.
    fn tidy(&mut self) {
        while let Some((at, a)) = self.released.front() {
            let current =
                self.held4.get(&a.ipv4) == Some(at) && self.held6.get(&a.ipv6) == Some(at);
            if current {
                break;
            }
            self.released.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> Timestamp {
        Timestamp::from_unix_ms(1_800_000_000_000 + days * 86_400_000).expect("in range")
    }

    #[test]
    fn ranges_and_embedding() {
        assert_eq!(ipv4_at(1), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(ipv4_at(RANGE_SIZE - 1), Ipv4Addr::new(100, 127, 255, 255));
        assert_eq!(
            ipv6_of(Ipv4Addr::new(100, 64, 0, 1)),
            "fd7a:115c:a1e0::6440:1".parse::<Ipv6Addr>().expect("valid")
        );
        assert!(in_ipv4_range(Ipv4Addr::new(100, 64, 0, 0)));
        assert!(in_ipv4_range(Ipv4Addr::new(100, 127, 255, 255)));
        assert!(!in_ipv4_range(Ipv4Addr::new(100, 128, 0, 0)));
        assert!(!in_ipv4_range(Ipv4Addr::new(100, 63, 255, 255)));
        assert!(in_ipv6_range(ipv6_of(ipv4_at(12345))));
        assert!(!in_ipv6_range("fd7a:115c:a1e1::1".parse().expect("valid")));
        // Tailscale's IPv6 quad-100 (fd7a:115c:a1e0::53) is never a node's: its last 32 bits
        // are not in 100.64.0.0/10.
        let quad100_v6: Ipv6Addr = "fd7a:115c:a1e0::53".parse().expect("valid");
        assert!((0..RANGE_SIZE).all(|o| ipv6_of(ipv4_at(o)) != quad100_v6));
    }

    #[test]
    fn reserved_addresses_are_counted_and_skipped() {
        let reserved = (0..RANGE_SIZE).filter(|o| is_reserved(ipv4_at(*o))).count();
        assert_eq!(u32::try_from(reserved).expect("small"), RANGE_SIZE - USABLE);
        assert!(is_reserved(QUAD_100));
        assert!(is_reserved(Ipv4Addr::new(100, 115, 92, 0)));
        assert!(is_reserved(Ipv4Addr::new(100, 115, 93, 255)));
        assert!(!is_reserved(Ipv4Addr::new(100, 115, 94, 0)));
        assert!(!is_reserved(Ipv4Addr::new(100, 115, 91, 255)));
        // The first address handed out is 100.64.0.1.
        let pool = AddressPool::default();
        assert_eq!(
            pool.pick(t(0)).map(|a| a.ipv4),
            Some(Ipv4Addr::new(100, 64, 0, 1))
        );
    }

    /// The offset of `a` in 100.64.0.0/10.
    fn offset(a: Ipv4Addr) -> u32 {
        u32::from(a) - u32::from(IPV4_NET)
    }

    /// The IPv4 addresses a pool hands out from `from` on, taking each.
    fn hand_out(pool: &mut AddressPool, from: Ipv4Addr, n: usize) -> Vec<Ipv4Addr> {
        pool.next = offset(from);
        pool.advance();
        let mut out = Vec::new();
        for _ in 0..n {
            let Some(a) = pool.pick(t(0)) else { break };
            pool.take(a);
            out.push(a.ipv4);
        }
        out
    }

    #[test]
    fn the_cursor_steps_over_quad_100_the_chromeos_range_and_the_end() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("valid");
        let mut pool = AddressPool::default();
        assert_eq!(
            hand_out(&mut pool, ip("100.100.100.99"), 2),
            [ip("100.100.100.99"), ip("100.100.100.101")]
        );
        assert_eq!(
            hand_out(&mut pool, ip("100.115.91.255"), 2),
            [ip("100.115.91.255"), ip("100.115.94.0")]
        );
        assert_eq!(
            hand_out(&mut pool, ip("100.127.255.253"), 5),
            [ip("100.127.255.253"), ip("100.127.255.254")]
        );
        assert_eq!(pool.pick(t(0)), None);
    }

    #[test]
    fn sequential_then_exhausted_then_reused_after_quarantine() {
        // Offsets 0..4: 0 is reserved, so three addresses.
        let mut pool = AddressPool::with_size(4);
        let mut got = Vec::new();
        while let Some(a) = pool.pick(t(0)) {
            pool.take(a);
            got.push(a.ipv4);
        }
        assert_eq!(got, [ipv4_at(1), ipv4_at(2), ipv4_at(3)]);
        assert_eq!(pool.in_use(), 3);
        pool.release(addresses_at(2), t(1));
        pool.release(addresses_at(1), t(2));
        // Quarantined until day 91 (for .2) and 92 (for .1).
        assert_eq!(pool.pick(t(90)), None);
        assert_eq!(pool.pick(t(91)), Some(addresses_at(2)));
        pool.take(addresses_at(2));
        assert_eq!(pool.pick(t(91)), None);
        assert_eq!(pool.pick(t(92)), Some(addresses_at(1)));
        pool.take(addresses_at(1));
        assert_eq!(pool.pick(t(1000)), None);
    }

    #[test]
    fn reuse_of_an_expired_quarantine_comes_before_fresh_addresses() {
        let mut pool = AddressPool::with_size(100);
        pool.take(addresses_at(1));
        pool.release(addresses_at(1), t(0));
        assert_eq!(pool.pick(t(89)), Some(addresses_at(2)));
        assert_eq!(pool.pick(t(90)), Some(addresses_at(1)));
    }

    #[test]
    fn addresses_taken_out_of_order_are_skipped_by_the_cursor() {
        // A log may hold addresses ahead of the cursor (decided by another allocation order):
        // the cursor steps over them, whether in use or in quarantine.
        let mut pool = AddressPool::with_size(10);
        pool.take(addresses_at(2));
        pool.take(addresses_at(3));
        pool.release(addresses_at(3), t(0));
        pool.take(addresses_at(1));
        assert_eq!(pool.pick(t(1)), Some(addresses_at(4)));
        // And a stale released entry (taken again) does not block the front.
        let mut pool = AddressPool::with_size(10);
        pool.take(addresses_at(1));
        pool.take(addresses_at(2));
        pool.release(addresses_at(1), t(0));
        pool.release(addresses_at(2), t(1));
        pool.take(addresses_at(1));
        assert_eq!(pool.pick(t(91)), Some(addresses_at(2)));
    }
}

//! Backing off wrong tokens, per client address: a few wrong tokens are
//! free (typos), then the address is blocked for 1 s, 2 s, 4 s, ... up to
//! 5 minutes after each further one; while blocked its token attempts are
//! answered 429 with Retry-After without being compared. Other addresses,
//! and signed-in sessions, are not affected. An address is forgotten 15
//! minutes after its last wrong token; at most `MAX_CLIENTS` are kept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens before the first block.
pub const FREE_FAILURES: u32 = 5;
const FIRST_BLOCK: Duration = Duration::from_secs(1);
pub const MAX_BLOCK: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
pub const MAX_CLIENTS: usize = 10_000;

/// Whose failures count together: an IPv4 address, or the /64 of an IPv6
/// one (a host gets a /64 to pick addresses from); None when the address
/// is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u64),
    Unknown,
}

fn key(client: Option<IpAddr>) -> Key {
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(a)) => Key::V4(a.into()),
        Some(IpAddr::V6(a)) => Key::V6((u128::from(a) >> 64) as u64),
        None => Key::Unknown,
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

pub struct Throttle {
    inner: Mutex<HashMap<Key, Entry>>,
    max: usize,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(MAX_CLIENTS)
    }
}

/// A block: how long until the address may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked(pub Duration);

impl Blocked {
    /// Retry-After's whole seconds, rounded up.
    pub fn seconds(self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

impl Throttle {
    pub fn new(max: usize) -> Self {
        Throttle {
            inner: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // Every change is one insert or remove: a poisoned map is whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Err while the address is blocked.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Blocked> {
        match self.map().get(&key(client)).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(Blocked(until - now)),
            _ => Ok(()),
        }
    }

    /// A wrong token from this address: the block it starts, if any.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) -> Option<Blocked> {
        let k = key(client);
        let mut m = self.map();
        if !m.contains_key(&k) && m.len() >= self.max {
            m.retain(|_, e| now.saturating_duration_since(e.last_failure) < FORGET_AFTER);
            while m.len() >= self.max {
                let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                m.remove(&oldest);
            }
        }
        let e = m.entry(k).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(e.last_failure) >= FORGET_AFTER {
            *e = Entry {
                failures: 0,
                last_failure: now,
                blocked_until: None,
            };
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        let over = e.failures.checked_sub(FREE_FAILURES + 1)?;
        let block = FIRST_BLOCK
            .checked_mul(1u32.checked_shl(over).unwrap_or(u32::MAX))
            .map_or(MAX_BLOCK, |b| b.min(MAX_BLOCK));
        e.blocked_until = Some(now + block);
        Some(Blocked(block))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn wrong_tokens_back_off_per_address() {
        let t = Throttle::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.failed(a, t0), None);
            assert!(t.check(a, t0).is_ok());
        }
        assert_eq!(t.failed(a, t0), Some(Blocked(Duration::from_secs(1))));
        assert_eq!(t.check(a, t0), Err(Blocked(Duration::from_secs(1))));
        // Another address is not affected.
        assert!(t.check(ip("192.0.2.2"), t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(t.check(a, t1).is_ok());
        assert_eq!(t.failed(a, t1), Some(Blocked(Duration::from_secs(2))));
        assert_eq!(t.failed(a, t1), Some(Blocked(Duration::from_secs(4))));
        for _ in 0..40 {
            t.failed(a, t1);
        }
        assert_eq!(t.check(a, t1), Err(Blocked(MAX_BLOCK)));
        // Forgotten a while after the last wrong token.
        let later = t1 + FORGET_AFTER;
        assert!(t.check(a, later).is_ok());
        assert_eq!(t.failed(a, later), None);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            t.failed(ip(&format!("2001:db8:1:2::{i:x}")), now);
        }
        assert!(t.check(ip("2001:db8:1:2:ffff::1"), now).is_err());
        assert!(t.check(ip("2001:db8:1:3::1"), now).is_ok());
        // An IPv4-mapped address is its IPv4 address.
        for _ in 0..=FREE_FAILURES {
            t.failed(ip("::ffff:192.0.2.9"), now);
        }
        assert!(t.check(ip("192.0.2.9"), now).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(100);
        let now = Instant::now();
        for i in 0..1000u32 {
            t.failed(
                Some(IpAddr::V4(i.into())),
                now + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(t.len(), 100);
        assert_eq!(Blocked(Duration::from_millis(1500)).seconds(), 2);
        assert_eq!(Blocked(Duration::from_secs(3)).seconds(), 3);
    }
}

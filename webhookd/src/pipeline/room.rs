//! What webhookd knows of each endpoint it delivers to, between claims:
//! how many of its deliveries it holds (so a claim asks only for the room
//! left), its concurrency permits (`max_in_flight`), its rate-limit pacing
//! and its circuit breaker (so paused endpoints are left out of claims).
//! Fed by the claim loop and the delivery tasks, under one lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::policy::breaker::{Admit, Breaker, BreakerPolicy, Health};
use crate::policy::retry::Ending;

/// One endpoint's state.
struct Endpoint {
    /// One permit per request that may be in flight (`max_in_flight`).
    permits: Arc<Semaphore>,
    /// The `max_in_flight` the permits were made for.
    max_in_flight: usize,
    /// Deliveries held (waiting for a permit or in flight).
    held: usize,
    /// When the next request may start under its rate limit.
    next_slot: Option<tokio::time::Instant>,
    breaker: Option<Breaker>,
}

impl Endpoint {
    fn new(max_in_flight: usize) -> Self {
        Endpoint {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            held: 0,
            next_slot: None,
            breaker: None,
        }
    }
}

/// What the next claim may take: endpoints left out (paused) and, for
/// each endpoint webhookd holds deliveries of, how many more it may get.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub paused: Vec<i64>,
    pub capped: Vec<i64>,
    pub room: Vec<i32>,
}

impl Limits {
    /// Some endpoint has no room left: webhookd holds all it may have.
    pub fn any_full(&self) -> bool {
        self.room.contains(&0)
    }
}

/// Whether a delivery may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send, once `at` has come (the endpoint's rate limit), if given.
    Send { at: Option<tokio::time::Instant> },
    /// Give the lease back unattempted: the endpoint is paused.
    Hold,
}

#[derive(Default)]
pub struct Endpoints {
    by_id: HashMap<i64, Endpoint>,
}

impl Endpoints {
    /// A delivery of `id` is held; the permits it must wait for.
    pub fn enter(&mut self, id: i64, max_in_flight: usize) -> Arc<Semaphore> {
        let max = max_in_flight.max(1);
        let e = self.by_id.entry(id).or_insert_with(|| Endpoint::new(max));
        // max_in_flight changed: new permits, once nothing holds the old.
        if e.max_in_flight != max && e.held == 0 {
            e.permits = Arc::new(Semaphore::new(max));
            e.max_in_flight = max;
        }
        e.held += 1;
        e.permits.clone()
    }

    /// A delivery of `id` is finished (reported).
    pub fn leave(&mut self, id: i64) {
        if let Some(e) = self.by_id.get_mut(&id) {
            e.held = e.held.saturating_sub(1);
        }
    }

    /// Paused endpoints, and how many more deliveries each endpoint we
    /// hold some for may get: up to its max_in_flight, but no more than a
    /// fair share of the global concurrency while other endpoints are busy
    /// too, so a few endpoints with deep backlogs can never take every
    /// permit (the others' fresh events would wait for one).
    pub fn limits(&self, concurrency: usize, now: Instant) -> Limits {
        let mut limits = Limits::default();
        let busy = self.by_id.values().filter(|e| e.held > 0).count();
        let share = (concurrency / (busy + 1)).max(1);
        for (id, e) in &self.by_id {
            if e.breaker.as_ref().is_some_and(|b| b.paused(now)) {
                limits.paused.push(*id);
            }
            if e.held > 0 || e.max_in_flight > share {
                limits.capped.push(*id);
                limits
                    .room
                    .push(e.max_in_flight.min(share).saturating_sub(e.held) as i32);
            }
        }
        limits
    }

    /// Asked right before sending (the circuit may have opened while the
    /// delivery waited for a permit); takes the next rate-limit slot, so
    /// requests are spaced evenly, never bursting past `per_second`.
    pub fn admit(&mut self, id: i64, per_second: Option<i32>, now: Instant) -> Admission {
        let Some(e) = self.by_id.get_mut(&id) else {
            return Admission::Send { at: None };
        };
        if let Some(b) = e.breaker.as_mut() {
            if b.admit(now) == Admit::Hold {
                return Admission::Hold;
            }
        }
        let Some(per_second) = per_second.filter(|r| *r > 0) else {
            return Admission::Send { at: None };
        };
        let interval = Duration::from_secs_f64(1.0 / per_second as f64);
        let t = tokio::time::Instant::now();
        let at = e.next_slot.map_or(t, |next| next.max(t));
        e.next_slot = Some(at + interval);
        Admission::Send { at: Some(at) }
    }

    /// Feeds an attempt's ending to the endpoint's breaker; the pause when
    /// it opened the circuit.
    pub fn report(
        &mut self,
        policy: &BreakerPolicy,
        id: i64,
        ending: Ending,
        now: Instant,
    ) -> Option<Duration> {
        let health = Health::of(ending);
        let e = self.by_id.get_mut(&id)?;
        if health != Health::Down && e.breaker.is_none() {
            return None;
        }
        e.breaker
            .get_or_insert_with(Breaker::default)
            .report(policy, health, now)
    }

    /// The earliest moment still ahead at which a paused endpoint may be
    /// probed (a past one would make the idle wait spin).
    pub fn next_reopen(&self, now: Instant) -> Option<Instant> {
        self.by_id
            .values()
            .filter_map(|e| e.breaker.as_ref()?.reopens_at())
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room_by_id(l: &Limits) -> HashMap<i64, i32> {
        l.capped
            .iter()
            .copied()
            .zip(l.room.iter().copied())
            .collect()
    }

    #[test]
    fn room_is_max_in_flight_less_what_is_held_within_a_fair_share() {
        let mut eps = Endpoints::default();
        let now = Instant::now();
        for _ in 0..3 {
            eps.enter(1, 16);
        }
        eps.enter(2, 4);
        let l = eps.limits(64, now);
        let room = room_by_id(&l);
        // Two busy endpoints: a share is 64 / 3 = 21.
        assert_eq!(room[&1], 13);
        assert_eq!(room[&2], 3);
        assert!(l.paused.is_empty() && !l.any_full());
        // With a concurrency of 6, the share (2) caps endpoint 1, now full.
        let l = eps.limits(6, now);
        let room = room_by_id(&l);
        assert_eq!((room[&1], room[&2]), (0, 1));
        assert!(l.any_full());
        for _ in 0..3 {
            eps.leave(1);
        }
        eps.leave(2);
        // Nothing held: only endpoints whose max_in_flight exceeds a share
        // are capped, at the share.
        let l = eps.limits(16, now);
        assert_eq!((l.capped, l.room), (vec![], vec![]));
        let l = eps.limits(8, now);
        assert_eq!((l.capped, l.room), (vec![1], vec![8]));
    }

    #[test]
    fn new_permits_once_max_in_flight_changes_and_nothing_holds_the_old() {
        let mut eps = Endpoints::default();
        let a = eps.enter(1, 2);
        let b = eps.enter(1, 5);
        assert!(Arc::ptr_eq(&a, &b), "still held: the old permits stay");
        eps.leave(1);
        eps.leave(1);
        let c = eps.enter(1, 5);
        assert_eq!(c.available_permits(), 5);
    }

    #[tokio::test]
    async fn a_rate_limit_spaces_requests_evenly() {
        let mut eps = Endpoints::default();
        eps.enter(1, 10);
        let now = Instant::now();
        let at = |a: Admission| match a {
            Admission::Send { at } => at,
            Admission::Hold => panic!("held"),
        };
        assert_eq!(at(eps.admit(1, None, now)), None);
        let first = at(eps.admit(1, Some(4), now)).unwrap();
        let second = at(eps.admit(1, Some(4), now)).unwrap();
        let third = at(eps.admit(1, Some(4), now)).unwrap();
        assert_eq!(second - first, Duration::from_millis(250));
        assert_eq!(third - second, Duration::from_millis(250));
    }

    #[test]
    fn a_failing_endpoint_is_paused_then_probed() {
        let policy = BreakerPolicy {
            threshold: 2,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(4),
        };
        let mut eps = Endpoints::default();
        eps.enter(1, 10);
        let t0 = Instant::now();
        let ok = Ending::Answered {
            status: 204,
            retry_after: None,
        };
        assert_eq!(eps.report(&policy, 1, ok, t0), None);
        assert_eq!(eps.report(&policy, 1, Ending::Refused, t0), None);
        assert_eq!(eps.report(&policy, 1, Ending::NoAnswer, t0), None);
        assert_eq!(
            eps.report(&policy, 1, Ending::NoAnswer, t0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(eps.limits(64, t0).paused, vec![1]);
        assert_eq!(eps.admit(1, None, t0), Admission::Hold);
        assert_eq!(eps.next_reopen(t0), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(eps.admit(1, None, t1), Admission::Send { at: None });
        assert_eq!(eps.report(&policy, 1, ok, t1), None);
        assert!(eps.limits(64, t1).paused.is_empty());
    }
}

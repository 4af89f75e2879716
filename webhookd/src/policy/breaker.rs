//! The circuit breaker: whether an endpoint is healthy enough to be sent to.
//! One pure state machine per endpoint, driven by attempt results and the
//! clock the caller passes in, so it is tested on its own.
//!
//! An endpoint that fails `threshold` times in a row (no response, 429 or
//! 5xx) is paused for a cooldown: its deliveries are left out of claims and
//! stay pending without spending attempts of their retry schedule. Then one
//! delivery probes it; success closes the circuit, failure pauses it again
//! for twice as long (up to `max_cooldown`). Without this, an endpoint that
//! is down turns every event into a stream of failing attempts and retries
//! that competes with the healthy endpoints for the dispatcher and the
//! database.

use std::time::{Duration, Instant};

use crate::policy::retry::Ending;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit; 0 never opens it.
    pub threshold: u32,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

/// The defaults, written once: `--breaker-threshold`, `--breaker-cooldown`
/// and `--breaker-max-cooldown` show these.
pub const DEFAULT_THRESHOLD: u32 = 10;
pub const DEFAULT_COOLDOWN: &str = "1s";
pub const DEFAULT_MAX_COOLDOWN: &str = "30s";

impl Default for BreakerPolicy {
    fn default() -> Self {
        let parse = |s| humantime::parse_duration(s).unwrap_or_default();
        BreakerPolicy {
            threshold: DEFAULT_THRESHOLD,
            cooldown: parse(DEFAULT_COOLDOWN),
            max_cooldown: parse(DEFAULT_MAX_COOLDOWN),
        }
    }
}

/// What an attempt said about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// A response that shows the receiver works (2xx, and 4xx but 429: the
    /// receiver refused this one request, not every request).
    Up,
    /// No response (connection refused, timeout, TLS), 429 or 5xx.
    Down,
    /// Nothing was learnt: the request was never sent (the SSRF guard
    /// refused the address). Pausing would not help, nor does it count as
    /// a success.
    Unknown,
}

impl Health {
    pub fn of(ending: Ending) -> Health {
        match ending {
            Ending::Answered {
                status: 429 | 500..,
                ..
            }
            | Ending::NoAnswer => Health::Down,
            Ending::Answered { .. } => Health::Up,
            Ending::Refused => Health::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
    },
    /// Cooldown over; `probing` while the one probe request is out.
    HalfOpen {
        cooldown: Duration,
        probing: bool,
    },
}

/// Whether a claimed delivery may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    /// Give the lease back unattempted: the endpoint is paused (or being probed).
    Hold,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
        }
    }
}

impl Breaker {
    /// Called right before sending a delivery to this endpoint.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Send,
            State::Open { until, cooldown } if now >= until => {
                self.state = State::HalfOpen {
                    cooldown,
                    probing: true,
                };
                Admit::Send
            }
            State::HalfOpen {
                cooldown,
                probing: false,
            } => {
                self.state = State::HalfOpen {
                    cooldown,
                    probing: true,
                };
                Admit::Send
            }
            State::Open { .. } | State::HalfOpen { .. } => Admit::Hold,
        }
    }

    /// Called with each finished attempt's result. Returns the pause when
    /// this result opened the circuit.
    pub fn report(
        &mut self,
        policy: &BreakerPolicy,
        health: Health,
        now: Instant,
    ) -> Option<Duration> {
        if policy.threshold == 0 {
            return None;
        }
        let (state, opened) = match (self.state, health) {
            // A probe that was never sent: another may go.
            (State::HalfOpen { cooldown, .. }, Health::Unknown) => (
                State::HalfOpen {
                    cooldown,
                    probing: false,
                },
                false,
            ),
            (state, Health::Unknown) => (state, false),
            (_, Health::Up) => (State::Closed { failures: 0 }, false),
            (State::Closed { failures }, Health::Down) if failures + 1 >= policy.threshold => (
                State::Open {
                    until: now + policy.cooldown,
                    cooldown: policy.cooldown,
                },
                true,
            ),
            (State::Closed { failures }, Health::Down) => (
                State::Closed {
                    failures: failures + 1,
                },
                false,
            ),
            (State::HalfOpen { cooldown, .. }, Health::Down) => {
                let cooldown = (cooldown * 2).min(policy.max_cooldown);
                (
                    State::Open {
                        until: now + cooldown,
                        cooldown,
                    },
                    true,
                )
            }
            // Requests sent before the circuit opened, finishing late.
            (open @ State::Open { .. }, Health::Down) => (open, false),
        };
        self.state = state;
        match (opened, state) {
            (true, State::Open { cooldown, .. }) => Some(cooldown),
            _ => None,
        }
    }

    /// Whether claims should leave this endpoint out now.
    pub fn paused(&self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => false,
            State::Open { until, .. } => now < until,
            State::HalfOpen { probing, .. } => probing,
        }
    }

    /// When a paused endpoint may be probed (None: not waiting for that).
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            threshold: 3,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(4),
        }
    }

    fn answered(status: u16) -> Ending {
        Ending::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn health_of_endings() {
        assert_eq!(Health::of(Ending::NoAnswer), Health::Down);
        assert_eq!(Health::of(answered(503)), Health::Down);
        assert_eq!(Health::of(answered(429)), Health::Down);
        assert_eq!(Health::of(answered(200)), Health::Up);
        assert_eq!(Health::of(answered(400)), Health::Up);
        assert_eq!(Health::of(answered(410)), Health::Up);
        assert_eq!(Health::of(Ending::Refused), Health::Unknown);
    }

    #[test]
    fn refusals_neither_pause_an_endpoint_nor_count_as_success() {
        let p = policy();
        let mut b = Breaker::default();
        let t0 = Instant::now();
        b.report(&p, Health::Down, t0);
        b.report(&p, Health::Down, t0);
        for _ in 0..10 {
            assert_eq!(b.report(&p, Health::Unknown, t0), None);
        }
        assert!(!b.paused(t0));
        // The third failure still opens it: refusals did not reset the count.
        assert!(b.report(&p, Health::Down, t0).is_some());
        // A probe refused before it was sent lets the next probe go.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.admit(later), Admit::Send);
        assert!(b.paused(later));
        b.report(&p, Health::Unknown, later);
        assert!(!b.paused(later));
        assert_eq!(b.admit(later), Admit::Send);
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let p = policy();
        let t = Instant::now();
        let mut b = Breaker::default();
        assert!(b.report(&p, Health::Down, t).is_none());
        assert!(b.report(&p, Health::Down, t).is_none());
        // A success in between starts the count again.
        assert!(b.report(&p, Health::Up, t).is_none());
        assert!(b.report(&p, Health::Down, t).is_none());
        assert!(b.report(&p, Health::Down, t).is_none());
        assert!(!b.paused(t));
        assert_eq!(b.admit(t), Admit::Send);
        assert!(b.report(&p, Health::Down, t).is_some());
        assert!(b.paused(t));
        assert_eq!(b.admit(t), Admit::Hold);
        assert_eq!(b.reopens_at(), Some(t + Duration::from_secs(1)));
        // Late failures of requests already out change nothing.
        assert!(b.report(&p, Health::Down, t).is_none());
        assert_eq!(b.reopens_at(), Some(t + Duration::from_secs(1)));
    }

    #[test]
    fn one_probe_after_cooldown_then_close_or_back_off() {
        let p = policy();
        let t = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.report(&p, Health::Down, t);
        }
        let t1 = t + Duration::from_secs(1);
        assert!(!b.paused(t1));
        assert_eq!(b.admit(t1), Admit::Send);
        // Only one probe at a time.
        assert!(b.paused(t1));
        assert_eq!(b.admit(t1), Admit::Hold);
        // The probe fails: twice the cooldown, then capped.
        assert_eq!(b.report(&p, Health::Down, t1), Some(Duration::from_secs(2)));
        assert_eq!(b.reopens_at(), Some(t1 + Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.admit(t2), Admit::Send);
        b.report(&p, Health::Down, t2);
        assert_eq!(b.reopens_at(), Some(t2 + Duration::from_secs(4)));
        let t3 = t2 + Duration::from_secs(4);
        assert_eq!(b.admit(t3), Admit::Send);
        b.report(&p, Health::Down, t3);
        assert_eq!(b.reopens_at(), Some(t3 + Duration::from_secs(4)));
        // The probe succeeds: closed, and the next failures count from zero.
        let t4 = t3 + Duration::from_secs(4);
        assert_eq!(b.admit(t4), Admit::Send);
        assert!(b.report(&p, Health::Up, t4).is_none());
        assert!(!b.paused(t4));
        assert_eq!(b.admit(t4), Admit::Send);
        assert!(b.report(&p, Health::Down, t4).is_none());
        assert!(b.report(&p, Health::Down, t4).is_none());
        assert!(b.report(&p, Health::Down, t4).is_some());
        assert_eq!(b.reopens_at(), Some(t4 + Duration::from_secs(1)));
    }

    #[test]
    fn threshold_zero_never_opens() {
        let p = BreakerPolicy {
            threshold: 0,
            ..policy()
        };
        let t = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..100 {
            assert!(b.report(&p, Health::Down, t).is_none());
        }
        assert_eq!(b.admit(t), Admit::Send);
    }
}

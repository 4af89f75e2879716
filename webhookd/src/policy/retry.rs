//! The retry schedule: one pure function, so the production schedule is
//! tested on its own and tests can run a schedule of milliseconds.

use std::time::Duration;

/// How an attempt ended, as the retry decision and the circuit breaker
/// (policy::breaker) see it: typed from the HTTP client's error up to here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The receiver answered with this status.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: DNS, connect, TLS, timeout, a connection lost. The
    /// network or the receiver may recover.
    NoAnswer,
    /// Never sent, and sending again cannot help until the configuration
    /// changes: the SSRF guard or the deny list refused every address, or
    /// the URL cannot be requested.
    Refused,
}

/// What an attempt ended in, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Failed; may be retried (no answer, any non-2xx but 410).
    Failed { retry_after: Option<Duration> },
    /// 410 Gone: the receiver wants no more; the endpoint gets disabled.
    Gone,
    /// Refused before sending: no retry can fix it, so dead at once (and
    /// replayable once the configuration allows it).
    Refused,
}

pub fn verdict(ending: Ending) -> Verdict {
    match ending {
        Ending::Answered {
            status: 200..=299, ..
        } => Verdict::Delivered,
        Ending::Answered { status: 410, .. } => Verdict::Gone,
        Ending::Answered { retry_after, .. } => Verdict::Failed { retry_after },
        Ending::NoAnswer => Verdict::Failed { retry_after: None },
        Ending::Refused => Verdict::Refused,
    }
}

/// The production schedule: the delays before attempts 2, 3, ...
/// (attempt 1 is immediate). About 2.8 days in all, then dead. The one
/// place it is written: `--retry-schedule`'s default is this text.
pub const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h,10h,10h,10h,10h";

pub fn default_schedule() -> Vec<Duration> {
    parse_schedule(DEFAULT_SCHEDULE).unwrap_or_default()
}

/// `--retry-jitter`'s default.
pub const DEFAULT_JITTER: f64 = 0.1;

/// How the schedule bends to receivers and spreads load.
#[derive(Debug, Clone)]
pub struct Policy {
    pub schedule: Vec<Duration>,
    /// ± this fraction of each delay, so retries of a burst do not arrive as a burst.
    pub jitter: f64,
    /// `Retry-After` can push a retry later than the schedule, but not past this.
    pub max_retry_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            schedule: default_schedule(),
            jitter: DEFAULT_JITTER,
            max_retry_after: Duration::from_secs(6 * 3600),
        }
    }
}

/// After attempt number `attempt` (1-based) ended in `verdict`: the delay
/// before the next attempt, or None when there is none (delivered, gone, or
/// the schedule is exhausted: dead). `unit` in [0, 1) supplies the jitter.
pub fn next_delay(policy: &Policy, attempt: u32, verdict: Verdict, unit: f64) -> Option<Duration> {
    let Verdict::Failed { retry_after } = verdict else {
        return None;
    };
    let base = *policy.schedule.get(attempt.saturating_sub(1) as usize)?;
    let factor = 1.0 + policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    let jittered = base.mul_f64(factor.max(0.0));
    Some(match retry_after {
        Some(asked) => jittered.max(asked.min(policy.max_retry_after)),
        None => jittered,
    })
}

impl Policy {
    /// An endpoint's policy: its own schedule (from webhook.endpoint, by
    /// claim()) if it has one, else this one's; jitter and the
    /// `Retry-After` cap are webhookd's.
    pub fn for_endpoint(&self, schedule: Option<&[Duration]>) -> Policy {
        Policy {
            schedule: schedule.map_or_else(|| self.schedule.clone(), <[Duration]>::to_vec),
            ..self.clone()
        }
    }
}

/// A retry `delay` from now, unless it would come after the delivery's
/// maximum age (`left`: the time until then): then none, the delivery is
/// dead.
pub fn within_age(delay: Option<Duration>, left: Option<Duration>) -> Option<Duration> {
    match (delay, left) {
        (Some(d), Some(l)) if d > l => None,
        (d, _) => d,
    }
}

/// Parse a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = humantime::parse_rfc3339_weak(value)
        .ok()
        .or_else(|| httpdate(value))?;
    at.duration_since(now).ok().or(Some(Duration::ZERO))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires.
fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let iso = format!("{year:04}-{month:02}-{day:02}T{}Z", parts[4]);
    humantime::parse_rfc3339(&iso).ok()
}

/// Parse `5s,5m,30m,2h` into a schedule.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|p| humantime::parse_duration(p.trim()).map_err(|e| format!("{p:?}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> Policy {
        Policy {
            jitter: 0.0,
            ..Policy::default()
        }
    }

    #[test]
    fn production_schedule_spans_about_three_days() {
        let p = no_jitter();
        let failed = Verdict::Failed { retry_after: None };
        let delays: Vec<Duration> = (1..)
            .map_while(|a| next_delay(&p, a, failed, 0.5))
            .collect();
        assert_eq!(delays[0], Duration::from_secs(5));
        assert_eq!(delays[1], Duration::from_secs(300));
        assert_eq!(delays[2], Duration::from_secs(1800));
        assert_eq!(delays[3], Duration::from_secs(7200));
        let total: Duration = delays.iter().sum();
        assert!(
            total > Duration::from_secs(2 * 86400) && total < Duration::from_secs(3 * 86400),
            "{total:?}"
        );
        // 11 retries: attempt 12 is the last, then dead.
        assert_eq!(delays.len(), 11);
        assert_eq!(next_delay(&p, 12, failed, 0.5), None);
    }

    #[test]
    fn an_endpoint_s_own_schedule_and_maximum_age_are_honoured() {
        let webhookd = no_jitter();
        let own = [Duration::from_millis(200), Duration::from_secs(1)];
        let p = webhookd.for_endpoint(Some(&own));
        let failed = Verdict::Failed { retry_after: None };
        assert_eq!(next_delay(&p, 1, failed, 0.5), Some(own[0]));
        assert_eq!(next_delay(&p, 2, failed, 0.5), Some(own[1]));
        assert_eq!(next_delay(&p, 3, failed, 0.5), None);
        // No schedule of its own: webhookd's.
        assert_eq!(webhookd.for_endpoint(None).schedule, webhookd.schedule);
        // An empty schedule: no retries.
        assert_eq!(
            next_delay(&webhookd.for_endpoint(Some(&[])), 1, failed, 0.5),
            None
        );
        // A retry past the maximum age is none: dead.
        let d = Some(Duration::from_secs(5));
        assert_eq!(within_age(d, None), d);
        assert_eq!(within_age(d, Some(Duration::from_secs(6))), d);
        assert_eq!(within_age(d, Some(Duration::from_secs(4))), None);
        assert_eq!(within_age(None, Some(Duration::from_secs(4))), None);
    }

    #[test]
    fn success_gone_and_refusals_stop_retrying() {
        let p = Policy::default();
        let answered = |status| Ending::Answered {
            status,
            retry_after: None,
        };
        assert_eq!(next_delay(&p, 1, Verdict::Delivered, 0.5), None);
        assert_eq!(next_delay(&p, 1, Verdict::Gone, 0.5), None);
        assert_eq!(next_delay(&p, 1, Verdict::Refused, 0.5), None);
        assert_eq!(verdict(answered(204)), Verdict::Delivered);
        assert_eq!(verdict(answered(410)), Verdict::Gone);
        assert_eq!(
            verdict(answered(500)),
            Verdict::Failed { retry_after: None }
        );
        assert_eq!(
            verdict(Ending::NoAnswer),
            Verdict::Failed { retry_after: None }
        );
        // The SSRF guard's refusal: no schedule can fix it.
        assert_eq!(verdict(Ending::Refused), Verdict::Refused);
        let asked = Some(Duration::from_secs(9));
        assert_eq!(
            verdict(Ending::Answered {
                status: 429,
                retry_after: asked
            }),
            Verdict::Failed { retry_after: asked }
        );
    }

    #[test]
    fn the_default_schedule_is_the_documented_text() {
        assert_eq!(default_schedule().len(), 11);
        assert_eq!(
            default_schedule(),
            parse_schedule(DEFAULT_SCHEDULE).unwrap()
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = Policy::default();
        let failed = Verdict::Failed { retry_after: None };
        let lo = next_delay(&p, 3, failed, 0.0).unwrap();
        let hi = next_delay(&p, 3, failed, 0.999_999).unwrap();
        assert_eq!(lo, Duration::from_secs(1620));
        assert!(hi > Duration::from_secs(1979) && hi <= Duration::from_secs(1980));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = no_jitter();
        let asked = |s| Verdict::Failed {
            retry_after: Some(Duration::from_secs(s)),
        };
        // Later than the schedule: honoured.
        assert_eq!(
            next_delay(&p, 1, asked(60), 0.5),
            Some(Duration::from_secs(60))
        );
        // Earlier than the schedule: the schedule wins.
        assert_eq!(
            next_delay(&p, 2, asked(1), 0.5),
            Some(Duration::from_secs(300))
        );
        // Absurd: capped.
        assert_eq!(
            next_delay(&p, 1, asked(10 * 86400), 0.5),
            Some(Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn retry_after_formats() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("100ms, 2s,1m").unwrap(),
            vec![
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            ]
        );
        assert!(parse_schedule("5 parsecs").is_err());
    }
}

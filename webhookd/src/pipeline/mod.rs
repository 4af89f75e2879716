//! The pipeline `webhookd run` drives: the claim loop here, one module per
//! stage. claim (routes, leases and signs in the database) → deliver (one
//! HTTP POST, bounded concurrency, per-endpoint limits) → record (outcomes
//! in batches) → retry or dead (the schedule in policy::retry). Beside
//! them: room (what webhookd knows of each endpoint between claims) and
//! maintain (retention, every `--maintain-interval`).

pub mod claim;
pub mod deliver;
pub mod maintain;
pub mod record;
pub mod room;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::net::egress;
use crate::observe::metrics::{self, Metrics};
use crate::observe::probes::{self, Health, Readiness};
use crate::observe::telemetry;
use crate::policy::breaker::BreakerPolicy;
use crate::policy::retry::{self, Policy};
use claim::{ClaimConn, ClaimError, ClaimRequest, ClaimStore, Claimed, HeldBytes};
use deliver::Deliverer;
use record::{Outcome, Report};
use room::{Admission, Endpoints};
use tracing::Instrument;

/// While every endpoint we may claim for is busy, how often committed
/// events are routed anyway, leasing none (see the claim loop).
const PARK_EVERY: Duration = Duration::from_secs(1);

/// Everything `webhookd run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: db::Database,
    pub concurrency: usize,
    pub batch: usize,
    /// Bytes of event bodies held at most (claimed and not finished),
    /// beyond one event larger on its own.
    pub claim_max_bytes: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// How often webhook.maintain() runs (Duration::ZERO: never).
    pub maintain_interval: Duration,
    /// Endpoints with /metrics series of their own.
    pub metrics_max_endpoints: usize,
    pub listen: bool,
    pub http: egress::Options,
    pub retry: Policy,
    pub breaker: BreakerPolicy,
    pub shutdown_grace: Duration,
    pub worker: String,
    /// Threads of the runtime requests run on (`Deliveries`).
    pub delivery_threads: usize,
}

/// The runtime HTTP requests run on, apart from the one claims and
/// outcomes use. What a receiver sends costs CPU on this side only: hyper
/// parses interim (1xx) responses without a limit and reqwest has no
/// setting for it, so a receiver streaming them as fast as loopback
/// carries them keeps a thread busy until the endpoint's timeout. Sharing
/// a thread, that held every other task for about a second per turn of
/// the scheduler (a DB round trip of the recorder took 0.4–0.9 s and no
/// outcome was written until the flood's timeout); apart, claims, outcomes
/// and /healthz never wait for it, and other requests share the delivery
/// thread with it. One thread by default: a delivery is I/O, and
/// cross-thread wake-ups within a runtime cost more CPU per event than the
/// work itself (BENCHMARKS.md, B7).
struct Deliveries {
    handle: tokio::runtime::Handle,
    /// Dropped to stop the runtime's thread (its remaining tasks, idle
    /// pooled connections, are then dropped with it).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Deliveries {
    fn start(threads: usize) -> std::io::Result<Self> {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        let runtime = builder
            .enable_all()
            .thread_name("webhookd-deliver")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // A current-thread runtime runs its tasks only inside block_on.
        std::thread::Builder::new()
            .name("webhookd-deliver".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

/// What every delivery task shares with the claim loop.
struct Shared {
    client: Deliverer,
    retry: Policy,
    breaker: BreakerPolicy,
    metrics: Arc<Metrics>,
    /// Outcomes and given-back leases, to the recorder.
    reports: mpsc::Sender<Report>,
    endpoints: Mutex<Endpoints>,
    /// delivery id → claim token of everything claimed and not yet
    /// reported (given back at shutdown).
    held: Mutex<HashMap<i64, i32>>,
    /// A delivery finished: a permit, endpoint room and claim budget are
    /// free again.
    finished: Notify,
    /// What the claim loop says of itself (/healthz, /readyz).
    health: Arc<Health>,
}

/// One claimed delivery, from its endpoint's permit to its report. The
/// global `permit` is held until the report is queued.
async fn deliver_one(
    shared: Arc<Shared>,
    c: Claimed,
    permit: OwnedSemaphorePermit,
    endpoint_permits: Arc<Semaphore>,
) {
    let attempt = {
        let _endpoint_permit = endpoint_permits.acquire().await;
        let admission = shared
            .endpoints
            .lock()
            .map_or(Admission::Send { at: None }, |mut e| {
                e.admit(c.endpoint_id, c.rate_limit, Instant::now())
            });
        match admission {
            Admission::Send { at } => {
                if let Some(at) = at {
                    tokio::time::sleep_until(at).await;
                }
                let m = &shared.metrics;
                let span = telemetry::deliver_span(&c);
                m.in_flight(1);
                let attempt = deliver::send(&shared.client, &c)
                    .instrument(span.clone())
                    .await;
                m.in_flight(-1);
                Some((attempt, span))
            }
            Admission::Hold => None,
        }
    };
    let report = match attempt {
        Some((attempt, span)) => {
            let opened = shared.endpoints.lock().ok().and_then(|mut e| {
                e.report(
                    &shared.breaker,
                    c.endpoint_id,
                    attempt.ending(),
                    Instant::now(),
                )
            });
            if let Some(pause) = opened {
                shared.metrics.circuit_opened();
                tracing::warn!(
                    endpoint = c.endpoint_id,
                    ?pause,
                    "endpoint keeps failing: paused; its deliveries wait unattempted until a probe succeeds"
                );
            }
            Report::Attempted(outcome_of(
                &shared.retry,
                &c,
                &attempt,
                &shared.metrics,
                &span,
            ))
        }
        None => {
            shared.metrics.held_back();
            Report::Released {
                delivery_id: c.delivery_id,
                claim_token: c.claim_token,
            }
        }
    };
    if let Ok(mut h) = shared.held.lock() {
        h.remove(&c.delivery_id);
    }
    let _ = shared.reports.send(report).await;
    if let Ok(mut e) = shared.endpoints.lock() {
        e.leave(c.endpoint_id);
    }
    // Before the claim loop wakes: the body stops counting against the
    // claim budget and the permit is free.
    drop(c);
    drop(permit);
    shared.finished.notify_one();
}

fn outcome_of(
    policy: &Policy,
    claimed: &Claimed,
    attempt: &deliver::Attempt,
    metrics: &Metrics,
    span: &tracing::Span,
) -> Outcome {
    let verdict = retry::verdict(attempt.ending());
    // The endpoint's own schedule, if it has one (copied only then).
    let own;
    let policy = match claimed.retry_schedule.as_deref() {
        Some(s) => {
            own = policy.for_endpoint(Some(s));
            &own
        }
        None => policy,
    };
    let delay = retry::next_delay(
        policy,
        claimed.attempt.max(1) as u32,
        verdict,
        rand::random::<f64>(),
    );
    let left = claimed
        .retry_deadline
        .map(|d| d.saturating_duration_since(Instant::now()));
    let delay = retry::within_age(delay, left);
    let outcome = match (verdict, delay) {
        (retry::Verdict::Delivered, _) => metrics::Outcome::Succeeded,
        (_, Some(_)) => metrics::Outcome::Retry,
        (_, None) => metrics::Outcome::Dead,
    };
    metrics.attempt(
        claimed.endpoint_id,
        attempt.status(),
        attempt.duration,
        outcome,
    );
    telemetry::record_attempt(
        span,
        attempt.status(),
        attempt.failure_kind(),
        outcome.label(),
    );
    let error = attempt.error();
    match (&attempt.status(), &error) {
        (Some(s), _) if (200..300).contains(s) => {
            tracing::debug!(
                delivery = claimed.delivery_id,
                event = claimed.event_id,
                status = s,
                "delivered"
            )
        }
        (status, error) => tracing::info!(
            delivery = claimed.delivery_id,
            event = claimed.event_id,
            endpoint = claimed.endpoint_id,
            attempt = claimed.attempt,
            status = ?status,
            error = error.as_deref().unwrap_or(""),
            retry_in = ?delay,
            "attempt failed"
        ),
    }
    Outcome::new(
        claimed.delivery_id,
        claimed.claim_token,
        attempt.status().map(i32::from),
        attempt.duration,
        delay.map(|d| SystemTime::now() + d),
        error.as_deref(),
        attempt.excerpt(),
    )
}

/// Run until `shutdown` is cancelled; then stop claiming, let in-flight
/// requests finish within the grace period, give back the rest, write
/// every outcome (within `record::FINAL_FLUSH`) and return.
pub async fn run(
    cfg: Config,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Metrics::new(cfg.metrics_max_endpoints);
    // Stops the metrics server, the backlog poll and LISTEN at the end.
    let background = CancellationToken::new();
    let client = deliver::client(&cfg.http)?;
    let health = Health::claiming(ready_within(&cfg));
    if let Some(listener) = metrics_listener {
        serve_metrics(listener, &cfg, &metrics, &health, &background);
    }
    let wake = Arc::new(Notify::new());
    if cfg.listen {
        tokio::spawn(db::listen(
            cfg.database.clone(),
            "webhook",
            wake.clone(),
            background.clone(),
        ));
    }
    if !cfg.maintain_interval.is_zero() {
        tokio::spawn(maintain::run(
            cfg.database.clone(),
            cfg.maintain_interval,
            background.clone(),
        ));
    }
    let (reports, to_record) = mpsc::channel::<Report>(10_000);
    let give_up = CancellationToken::new();
    let mut recorder = tokio::spawn(record::run(
        cfg.database.clone(),
        cfg.worker.clone(),
        metrics.clone(),
        to_record,
        give_up.clone(),
    ));
    let shared = Arc::new(Shared {
        client,
        retry: cfg.retry.clone(),
        breaker: cfg.breaker.clone(),
        metrics,
        reports,
        endpoints: Mutex::new(Endpoints::default()),
        held: Mutex::default(),
        finished: Notify::new(),
        health: health.clone(),
    });

    let deliveries = Deliveries::start(cfg.delivery_threads)?;
    tracing::info!(worker = %cfg.worker, concurrency = cfg.concurrency, listen = cfg.listen, "webhookd running");
    let mut tasks = JoinSet::new();
    let claimed = claim_loop(
        &cfg,
        &claim::Pg(&cfg.database),
        &shared,
        &wake,
        &deliveries.handle,
        &mut tasks,
        &shutdown,
    )
    .await;
    health.stopped();
    drain(&cfg, shared, tasks).await;

    // The final flush is bounded: a database that cannot take the outcomes
    // must not keep webhookd from exiting.
    if tokio::time::timeout(record::FINAL_FLUSH, &mut recorder)
        .await
        .is_err()
    {
        give_up.cancel();
        let _ = recorder.await;
    }
    background.cancel();
    claimed?;
    tracing::info!("webhookd stopped");
    Ok(())
}

/// How often a working claim loop says so (/readyz): it claims at least
/// every poll interval when idle, and every poll interval it waits for room
/// it checks its session; a claim round takes at most a round trip.
fn ready_within(cfg: &Config) -> Duration {
    db::ROUND_TRIP_TIMEOUT + cfg.poll_interval * 2
}

/// Prometheus `/metrics`, `/healthz` and `/readyz` (observe::probes), and
/// the backlog poll that feeds the backlog gauges.
fn serve_metrics(
    listener: tokio::net::TcpListener,
    cfg: &Config,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    background: &CancellationToken,
) {
    tokio::spawn(probes::serve(
        listener,
        probes::router(metrics.clone(), health.clone()),
        background.clone(),
    ));
    tokio::spawn(crate::observe::metrics::poll_backlog(
        cfg.database.clone(),
        metrics.clone(),
        Duration::from_secs(5),
        background.clone(),
    ));
}

/// Claim while there is room (permits and the body budget), hand each
/// delivery to a task on `deliveries`, and wait when there is nothing to
/// do; until `shutdown`, or until the database refuses the claim itself
/// (`ClaimError::Refused`, returned). Every other failure reconnects after
/// a backoff.
async fn claim_loop<S: ClaimStore>(
    cfg: &Config,
    store: &S,
    shared: &Arc<Shared>,
    wake: &Notify,
    deliveries: &tokio::runtime::Handle,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), ClaimError> {
    let global = Arc::new(Semaphore::new(cfg.concurrency));
    let held_bytes = HeldBytes::default();
    let mut conn: Option<S::Conn> = None;
    // Connecting again resets `backoff`; a database that takes connections
    // but fails every claim still gets a growing wait, reset by a claim.
    let (mut backoff, mut claim_backoff) = (db::Backoff::default(), db::Backoff::default());
    // When the last routing pass that leased nothing ran (see below).
    let mut parked_at = Instant::now();
    let idle_hint = if cfg.listen {
        cfg.poll_interval * 2
    } else {
        Duration::ZERO
    };
    // A request never outlives its lease, or another worker could send it
    // again while this one is still waiting.
    let lease_ms = (cfg.lease.as_millis() as i64 * 8 / 10).max(100) as i32;

    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = global.available_permits().min(cfg.batch);
        // Memory is bounded by the budget, not by payloads: with the
        // budget spent, wait until a request ends (its body may be freed).
        let budget = cfg.claim_max_bytes.saturating_sub(held_bytes.get());
        if free == 0 || budget == 0 {
            // Waiting for room is working, as long as the session that
            // claims next is open (checked at least every poll interval).
            match conn.as_ref() {
                Some(c) if !c.is_closed() => shared.health.ok(),
                _ => shared.health.not_ready(Readiness::Unreachable),
            }
            tokio::select! {
                _ = shared.finished.notified() => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            shared.health.not_ready(Readiness::Unreachable);
            conn =
                db::connect_with_backoff("claim", &mut backoff, shutdown, || store.connect()).await;
        }
        let Some(pg) = conn.as_ref() else {
            break;
        };
        let limits = shared
            .endpoints
            .lock()
            .map(|e| e.limits(cfg.concurrency, Instant::now()))
            .unwrap_or_default();
        let req = ClaimRequest {
            max: free as i32,
            lease: cfg.lease,
            worker: &cfg.worker,
            exclude: &limits.paused,
            caps: (&limits.capped, &limits.room),
            idle_hint,
            max_body_bytes: budget.min(i64::MAX as usize) as i64,
            held: &held_bytes,
        };
        shared.metrics.circuits(&limits.paused);
        let claim_started = Instant::now();
        // What a claim that never answers had leased stays leased until its
        // lease expires, then is claimed again (at least once).
        let span = telemetry::claim_span(free);
        let claim = match tokio::time::timeout(db::ROUND_TRIP_TIMEOUT, pg.claim(&req))
            .instrument(span.clone())
            .await
        {
            Ok(Ok(claim)) => {
                claim_backoff.reset();
                shared.health.ok();
                span.record("webhook.claim.got", claim.deliveries.len() as i64);
                claim
            }
            failed => {
                span.record("otel.status_code", "error");
                shared.health.not_ready(Readiness::ClaimFailed);
                match failed {
                    Ok(Err(e @ ClaimError::Refused(_))) => {
                        tracing::error!(error = %e, "claiming stopped: the database refuses every claim");
                        return Err(e);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "claim failed; reconnecting")
                    }
                    _ => tracing::warn!(
                        seconds = db::ROUND_TRIP_TIMEOUT.as_secs(),
                        "claim got no answer; reconnecting"
                    ),
                }
                conn = None;
                tokio::select! {
                    _ = claim_backoff.wait() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        if !claim.without_body.is_empty() {
            tracing::warn!(
                deliveries = claim.without_body.len(),
                "claimed deliveries came without their event's body; given back"
            );
            let (ids, tokens): (Vec<i64>, Vec<i32>) = claim.without_body.into_iter().unzip();
            give_back(pg, &ids, &tokens).await;
        }
        shared.metrics.claim(claim_started.elapsed());
        let got = claim.deliveries.len();
        tracing::debug!(asked = free, got, limits = ?limits, "claimed");
        for mut c in claim.deliveries {
            let Ok(permit) = global.clone().try_acquire_owned() else {
                // Cannot happen (we asked for at most the free permits), but
                // never drop a claimed delivery: give it back.
                give_back(pg, &[c.delivery_id], &[c.claim_token]).await;
                continue;
            };
            let endpoint_permits = match shared.endpoints.lock() {
                Ok(mut e) => e.enter(c.endpoint_id, c.max_in_flight as usize),
                Err(_) => Arc::new(Semaphore::new(1)),
            };
            if let Ok(mut h) = shared.held.lock() {
                h.insert(c.delivery_id, c.claim_token);
            }
            c.timeout_ms = c.timeout_ms.min(lease_ms);
            tasks.spawn_on(
                deliver_one(shared.clone(), c, permit, endpoint_permits),
                deliveries,
            );
        }
        let busy = limits.any_full();
        if got == 0 && busy && parked_at.elapsed() >= PARK_EVERY {
            // An endpoint is busy (we hold all it may have), and claim()
            // routes nothing then: the next claim, when a request ends,
            // routes straight into leases. An endpoint that stays busy
            // (a slow receiver) would keep its backlog hidden in the outbox,
            // so now and then route a batch anyway, leasing none: it shows
            // as the endpoint's pending deliveries (endpoint_health,
            // webhookd_backlog) within about a second.
            parked_at = Instant::now();
            let batch = cfg.batch.min(i32::MAX as usize) as i32;
            match tokio::time::timeout(db::ROUND_TRIP_TIMEOUT, pg.route(batch)).await {
                Ok(Ok(n)) => tracing::debug!(routed = n, "routed for busy endpoints"),
                Ok(Err(e)) => tracing::warn!(error = %e, "routing failed"),
                Err(_) => {
                    tracing::warn!("routing got no answer; reconnecting");
                    conn = None;
                }
            }
        }
        if got == 0 {
            // Idle: wait for a NOTIFY (sent only because claim() told
            // committers we are idle), the poll timer, or shutdown.
            // With endpoints capped for what we hold, a finished request can
            // make work claimable again: wake on that too.
            // So does the end of a paused endpoint's cooldown.
            let now = Instant::now();
            let reopen = shared
                .endpoints
                .lock()
                .ok()
                .and_then(|e| e.next_reopen(now));
            let wait = reopen.map_or(cfg.poll_interval, |at| (at - now).min(cfg.poll_interval));
            tokio::select! {
                _ = wake.notified() => {}
                _ = shared.finished.notified(), if busy => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
    Ok(())
}

/// Leases given back unattempted (`webhook.release()`); a failure is
/// logged, and those leases expire by themselves.
async fn give_back(pg: &impl ClaimConn, ids: &[i64], tokens: &[i32]) {
    match tokio::time::timeout(db::ROUND_TRIP_TIMEOUT, pg.release(ids, tokens)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, leases = ids.len(), "giving back leases failed; they expire by themselves")
        }
        Err(_) => tracing::warn!(
            leases = ids.len(),
            "giving back leases got no answer; they expire by themselves"
        ),
    }
}

/// Shutdown: in-flight requests get the grace period; the leases of what
/// was not attempted are given back through the recorder (in its final
/// flush), and the recorder's channel is closed.
async fn drain(cfg: &Config, shared: Arc<Shared>, mut tasks: JoinSet<()>) {
    tracing::info!(in_flight = tasks.len(), grace = ?cfg.shutdown_grace, "shutting down: draining in-flight deliveries");
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let leftover: Vec<(i64, i32)> = shared
        .held
        .lock()
        .map(|h| h.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default();
    if !leftover.is_empty() {
        tracing::info!(
            released = leftover.len(),
            "giving back the leases of unfinished deliveries"
        );
    }
    let mut unreleased = 0usize;
    for (delivery_id, claim_token) in leftover {
        let report = Report::Released {
            delivery_id,
            claim_token,
        };
        if shared.reports.try_send(report).is_err() {
            unreleased += 1;
        }
    }
    if unreleased > 0 {
        tracing::warn!(
            unreleased,
            "leases not given back (the recorder is behind); they expire by themselves"
        );
    }
    // The last sender: the recorder sees the channel closed once it has
    // written what is queued.
    drop(shared);
}

//! `webhookd run`: the claim loop. claim (routes + signs in the database) →
//! deliver (bounded concurrency, per-endpoint limits) → record (batched) →
//! retry or dead (the schedule in retry.rs).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Admit, Breaker, BreakerPolicy, Health};
use crate::claim::{ClaimRequest, Claimed, Claimer, HeldBytes};
use crate::deliver;
use crate::egress;
use crate::metrics::Metrics;
use crate::record::{self, Outcome, Report};
use crate::retry::{self, Policy};
use crate::{db, http};

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
    pub linger: Duration,
    pub listen: bool,
    pub http: egress::Options,
    pub retry: Policy,
    pub breaker: BreakerPolicy,
    pub shutdown_grace: Duration,
    pub worker: String,
}

/// Per-endpoint concurrency: a semaphore sized by the endpoint's
/// `max_in_flight`, plus how many deliveries we hold for it (running or
/// waiting), so saturated endpoints are left out of the next claim; and each
/// endpoint's circuit breaker, so paused endpoints are left out too.
#[derive(Default)]
struct Endpoints {
    map: HashMap<i64, (Arc<Semaphore>, usize, usize)>,
    /// Next free send slot per rate-limited endpoint.
    pace: HashMap<i64, tokio::time::Instant>,
    breakers: HashMap<i64, Breaker>,
}

impl Endpoints {
    /// When a request to `id` may start under `per_second` (spacing requests
    /// evenly: no bursts beyond the limit).
    fn slot(&mut self, id: i64, per_second: Option<i32>) -> Option<tokio::time::Instant> {
        let per_second = per_second.filter(|r| *r > 0)?;
        let interval = Duration::from_secs_f64(1.0 / per_second as f64);
        let now = tokio::time::Instant::now();
        let next = self.pace.entry(id).or_insert(now);
        let at = (*next).max(now);
        *next = at + interval;
        Some(at)
    }

    fn enter(&mut self, id: i64, max: usize) -> Arc<Semaphore> {
        let max = max.max(1);
        let entry = self
            .map
            .entry(id)
            .or_insert_with(|| (Arc::new(Semaphore::new(max)), max, 0));
        if entry.1 != max && entry.2 == 0 {
            *entry = (Arc::new(Semaphore::new(max)), max, 0);
        }
        entry.2 += 1;
        entry.0.clone()
    }
    fn leave(&mut self, id: i64) {
        if let Some(e) = self.map.get_mut(&id) {
            e.2 = e.2.saturating_sub(1);
        }
    }
    /// Endpoints the next claim leaves out (paused), and how many more
    /// deliveries each endpoint we hold some for may get: up to its
    /// max_in_flight, but no more than a fair share of the global
    /// concurrency while other endpoints are busy too, so a few endpoints
    /// with deep backlogs can never take every permit (the others' fresh
    /// events would wait for one).
    fn limits(
        &self,
        concurrency: usize,
        now: std::time::Instant,
    ) -> (Vec<i64>, Vec<i64>, Vec<i32>) {
        let paused: Vec<i64> = self
            .breakers
            .iter()
            .filter(|(_, b)| b.paused(now))
            .map(|(id, _)| *id)
            .collect();
        let busy = self.map.values().filter(|e| e.2 > 0).count();
        let share = (concurrency / (busy + 1)).max(1);
        let (ids, caps) = self
            .map
            .iter()
            .filter(|(_, e)| e.2 > 0 || e.1 > share)
            .map(|(id, e)| (*id, e.1.min(share).saturating_sub(e.2) as i32))
            .unzip();
        (paused, ids, caps)
    }

    fn admit(&mut self, id: i64) -> Admit {
        self.breakers
            .get_mut(&id)
            .map_or(Admit::Send, |b| b.admit(std::time::Instant::now()))
    }

    /// Feeds an attempt's result to the endpoint's breaker; the pause when
    /// it opened the circuit.
    fn report(&mut self, policy: &BreakerPolicy, id: i64, status: Option<u16>) -> Option<Duration> {
        let health = Health::of(status);
        if health == Health::Up && !self.breakers.contains_key(&id) {
            return None;
        }
        self.breakers
            .entry(id)
            .or_default()
            .report(policy, health, std::time::Instant::now())
    }

    /// The earliest moment still ahead at which a paused endpoint may be
    /// probed (a past one would make the idle wait spin).
    fn next_reopen(&self, now: std::time::Instant) -> Option<std::time::Instant> {
        self.breakers
            .values()
            .filter_map(Breaker::reopens_at)
            .filter(|at| *at > now)
            .min()
    }
}

fn outcome_of(
    policy: &Policy,
    claimed: &Claimed,
    attempt: &deliver::Attempt,
    metrics: &Metrics,
) -> Outcome {
    let verdict = retry::verdict(attempt.status, attempt.retry_after);
    let delay = retry::next_delay(
        policy,
        claimed.attempt.max(1) as u32,
        verdict,
        rand::random::<f64>(),
    );
    match (verdict, delay) {
        (retry::Verdict::Delivered, _) => metrics.delivered.fetch_add(1, Ordering::Relaxed),
        (_, Some(_)) => metrics.retried.fetch_add(1, Ordering::Relaxed),
        (_, None) => metrics.dead.fetch_add(1, Ordering::Relaxed),
    };
    metrics.observe_attempt(attempt.duration);
    match (&attempt.status, &attempt.error) {
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
        attempt.status.map(i32::from),
        attempt.duration,
        delay.map(|d| SystemTime::now() + d),
        attempt.error.as_deref(),
        attempt.excerpt.as_deref(),
    )
}

/// Run until `shutdown` is cancelled; then stop claiming, let in-flight
/// requests finish within the grace period, release the rest, write every
/// outcome and return.
pub async fn run(
    cfg: Config,
    metrics_listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let background = CancellationToken::new();
    let client = Arc::new(deliver::client(&cfg.http)?);

    if let Some(listener) = metrics_listener {
        let m = metrics.clone();
        tokio::spawn(http::serve(
            listener,
            move |req| {
                let m = m.clone();
                async move {
                    match req.uri().path() {
                        "/metrics" => http::reply(200, m.render()),
                        "/healthz" => http::reply(200, "ok\n"),
                        _ => http::reply(404, "not found\n"),
                    }
                }
            },
            background.clone(),
        ));
        tokio::spawn(crate::metrics::poll_backlog(
            cfg.database.clone(),
            metrics.clone(),
            Duration::from_secs(5),
            background.clone(),
        ));
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

    let (out_tx, out_rx) = mpsc::channel::<Report>(10_000);
    let give_up = CancellationToken::new();
    let mut recorder = tokio::spawn(record::run(
        cfg.database.clone(),
        cfg.worker.clone(),
        out_rx,
        give_up.clone(),
    ));

    let global = Arc::new(Semaphore::new(cfg.concurrency));
    let endpoints = Arc::new(Mutex::new(Endpoints::default()));
    // delivery id → (claim token) of everything claimed and not yet reported.
    let held: Arc<Mutex<HashMap<i64, i32>>> = Arc::default();
    let held_bytes = HeldBytes::default();
    let slot_freed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();

    let mut conn: Option<(tokio_postgres::Client, Claimer)> = None;
    let mut backoff = db::Backoff::default();
    // When the last routing pass that leased nothing ran (see below).
    let mut parked_at = std::time::Instant::now();
    let idle_hint = if cfg.listen {
        cfg.poll_interval * 2
    } else {
        Duration::ZERO
    };

    tracing::info!(worker = %cfg.worker, concurrency = cfg.concurrency, listen = cfg.listen, "webhookd running");
    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = global.available_permits().min(cfg.batch);
        if free == 0 {
            tokio::select! {
                _ = slot_freed.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            continue;
        }
        // Memory is bounded by the budget, not by payloads: with the
        // budget spent, wait until a request ends (its body may be freed).
        let budget = cfg.claim_max_bytes.saturating_sub(held_bytes.get());
        if budget == 0 {
            tokio::select! {
                _ = slot_freed.notified() => {}
                _ = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
            continue;
        }
        if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            let connected = async {
                let c = cfg.database.connect("webhookd claim").await?;
                let claimer = Claimer::prepare(&c).await?;
                Ok::<_, tokio_postgres::Error>((c, claimer))
            }
            .await;
            match connected {
                Ok(pair) => {
                    tracing::info!("connected to the database");
                    conn = Some(pair);
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect to the database; retrying");
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            }
        }
        let Some((pg, claimer)) = conn.as_ref() else {
            continue;
        };
        let (exclude, cap_ids, caps) = endpoints
            .lock()
            .map(|e| e.limits(cfg.concurrency, std::time::Instant::now()))
            .unwrap_or_default();
        let req = ClaimRequest {
            max: free as i32,
            lease: cfg.lease,
            worker: &cfg.worker,
            exclude: &exclude,
            caps: (&cap_ids, &caps),
            idle_hint,
            max_body_bytes: budget.min(i64::MAX as usize) as i64,
            held: &held_bytes,
        };
        let claimed = match claimer.claim(pg, &req).await {
            Ok(claim) => {
                if !claim.without_body.is_empty() {
                    tracing::warn!(
                        deliveries = claim.without_body.len(),
                        "claimed deliveries came without their event's body; given back"
                    );
                    let (ids, tokens): (Vec<i64>, Vec<i32>) =
                        claim.without_body.into_iter().unzip();
                    let _ = record::release(pg, &ids, &tokens).await;
                }
                claim.deliveries
            }
            Err(e) => {
                tracing::warn!(error = %e, "claim failed; reconnecting");
                conn = None;
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        metrics.claims.fetch_add(1, Ordering::Relaxed);
        let got = claimed.len();
        tracing::debug!(asked = free, got, excluded = ?exclude, capped = ?cap_ids, caps = ?caps, "claimed");
        for c in claimed {
            let Ok(permit) = global.clone().try_acquire_owned() else {
                // Cannot happen (we asked for at most the free permits), but
                // never drop a claimed delivery: give it back.
                let _ = record::release(pg, &[c.delivery_id], &[c.claim_token]).await;
                continue;
            };
            let ep_sem = match endpoints.lock() {
                Ok(mut e) => e.enter(c.endpoint_id, c.max_in_flight as usize),
                Err(_) => Arc::new(Semaphore::new(1)),
            };
            if let Ok(mut h) = held.lock() {
                h.insert(c.delivery_id, c.claim_token);
            }
            let (client, policy, breaker, metrics, out_tx, endpoints, held, slot_freed) = (
                client.clone(),
                cfg.retry.clone(),
                cfg.breaker.clone(),
                metrics.clone(),
                out_tx.clone(),
                endpoints.clone(),
                held.clone(),
                slot_freed.clone(),
            );
            // A request never outlives its lease, or another worker could
            // send it again while this one is still waiting.
            let mut c = c;
            let lease_ms = (cfg.lease.as_millis() as i64 * 8 / 10).max(100) as i32;
            c.timeout_ms = c.timeout_ms.min(lease_ms);
            tasks.spawn(async move {
                let _permit = permit;
                let attempt = {
                    let _ep_permit = ep_sem.acquire().await;
                    // Asked only now: the circuit may have opened while this
                    // delivery waited for its endpoint's permit.
                    let (admit, slot) = endpoints.lock().map_or((Admit::Send, None), |mut e| {
                        match e.admit(c.endpoint_id) {
                            Admit::Send => (Admit::Send, e.slot(c.endpoint_id, c.rate_limit)),
                            Admit::Hold => (Admit::Hold, None),
                        }
                    });
                    if admit == Admit::Send {
                        if let Some(at) = slot {
                            tokio::time::sleep_until(at).await;
                        }
                        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
                        let attempt = deliver::send(&client, &c).await;
                        metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                        Some(attempt)
                    } else {
                        None
                    }
                };
                let report = match attempt {
                    Some(attempt) => {
                        let opened = endpoints
                            .lock()
                            .ok()
                            .and_then(|mut e| e.report(&breaker, c.endpoint_id, attempt.status));
                        if let Some(pause) = opened {
                            metrics.circuits_opened.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(
                                endpoint = c.endpoint_id,
                                ?pause,
                                "endpoint keeps failing: paused; its deliveries wait unattempted until a probe succeeds"
                            );
                        }
                        Report::Attempted(outcome_of(&policy, &c, &attempt, &metrics))
                    }
                    None => {
                        metrics.held_back.fetch_add(1, Ordering::Relaxed);
                        Report::Released {
                            delivery_id: c.delivery_id,
                            claim_token: c.claim_token,
                        }
                    }
                };
                if let Ok(mut h) = held.lock() {
                    h.remove(&c.delivery_id);
                }
                let _ = out_tx.send(report).await;
                if let Ok(mut e) = endpoints.lock() {
                    e.leave(c.endpoint_id);
                }
                // Before the claim loop wakes: the body stops counting
                // against the claim budget and the permit is free.
                drop(c);
                drop(_permit);
                slot_freed.notify_one();
            });
        }
        // Some endpoint has no room left: we hold all it may have.
        let busy = caps.contains(&0);
        if got == 0 && busy && parked_at.elapsed() >= PARK_EVERY {
            // An endpoint is busy (we hold all it may have), and claim()
            // routes nothing then: the next claim, when a request ends,
            // routes straight into leases. An endpoint that stays busy
            // (a slow receiver) would keep its backlog hidden in the outbox,
            // so now and then route a batch anyway, leasing none: it shows
            // as the endpoint's pending deliveries (endpoint_health,
            // webhookd_backlog) within about a second.
            parked_at = std::time::Instant::now();
            match claimer
                .route(pg, cfg.batch.min(i32::MAX as usize) as i32)
                .await
            {
                Ok(n) => tracing::debug!(routed = n, "routed for busy endpoints"),
                Err(e) => tracing::warn!(error = %e, "routing failed"),
            }
        }
        if got == 0 {
            // Idle: wait for a NOTIFY (sent only because claim() told
            // committers we are idle), the poll timer, or shutdown.
            // With endpoints capped for what we hold, a finished request can
            // make work claimable again: wake on that too.
            // So does the end of a paused endpoint's cooldown.
            let now = std::time::Instant::now();
            let reopen = endpoints.lock().ok().and_then(|e| e.next_reopen(now));
            let wait = reopen.map_or(cfg.poll_interval, |at| (at - now).min(cfg.poll_interval));
            tokio::select! {
                _ = wake.notified() => {}
                _ = slot_freed.notified(), if busy => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        } else if got < free && !cfg.linger.is_zero() {
            // A partial batch: stay "busy" for a moment so commits arriving
            // now are batched into the next claim instead of each notifying.
            tokio::select! {
                _ = tokio::time::sleep(cfg.linger) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    tracing::info!(in_flight = tasks.len(), grace = ?cfg.shutdown_grace, "shutting down: draining in-flight deliveries");
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Leases of deliveries not attempted (aborted, or never started) are
    // given back through the recorder, in its final flush.
    let leftover: Vec<(i64, i32)> = held
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
        if out_tx.try_send(report).is_err() {
            unreleased += 1;
        }
    }
    if unreleased > 0 {
        tracing::warn!(
            unreleased,
            "leases not given back (the recorder is behind); they expire by themselves"
        );
    }
    drop(out_tx);
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
    tracing::info!("webhookd stopped");
    Ok(())
}

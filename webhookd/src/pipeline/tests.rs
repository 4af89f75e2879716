//! The claim loop against an in-memory store (`Fake`), on tokio's paused
//! clock: every wait the loop makes (backoff, the poll interval, a claim's
//! round-trip timeout, the shutdown grace) passes at once and exactly.
//! Deliveries go to the real delivery task; their URL is not one webhookd
//! can send to, so each attempt ends before any connection is made (an
//! unsendable attempt, reported like any other) and no traffic leaves.
//!
//! What each test pins:
//! - `a_claimed_delivery_is_attempted_once_and_reported`: a delivery
//!   claimed goes to a delivery task and its outcome to the recorder, once;
//!   it is neither claimed again nor given back, and shutdown then gives
//!   back nothing.
//! - `a_lost_connection_reconnects_after_backoff_and_keeps_its_leases`: a
//!   claim that fails, or never answers (after `ROUND_TRIP_TIMEOUT`), drops
//!   the connection, waits the backoff (100 ms, then 200 ms: reconnecting
//!   does not reset it, a claim that succeeds does), connects again and
//!   claims again; what was leased before and still in flight is
//!   delivered and reported, never released.
//! - `on_shutdown_leases_not_started_are_given_back`: a delivery still
//!   waiting (its endpoint's permit, its rate-limit slot) when the grace
//!   period ends is reported `Released`, and one attempted is not.
//! - `with_nothing_to_claim_the_loop_waits_for_a_wake_up_or_the_poll_interval`:
//!   an empty claim parks the loop: no claim until a LISTEN wake-up, or
//!   until the poll interval has passed, whichever comes first.
//! - `permits_bound_how_many_deliveries_are_in_flight`: a claim asks for
//!   no more than the free permits (and the batch), and while every permit
//!   is held (deliveries whose report is not yet taken) the loop claims
//!   nothing, for however long; each delivery reported frees one.
//! - `a_claim_the_database_refuses_stops_the_loop_with_its_error`: a
//!   refusal of the request itself is returned by the loop (and so by
//!   `webhookd run`), after one claim: not retried, not swallowed.
//! - `readiness_follows_the_claim_rounds`: /readyz's state is what the
//!   loop's last round said: a failed claim, a session being replaced (and
//!   a claim not yet answered on it), then ready once a claim succeeds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use super::claim::{Claim, ClaimConn, ClaimError, ClaimRequest, ClaimStore, Claimed};
use super::record::Report;
use super::{claim_loop, deliver, drain, Config, Shared};
use crate::db;
use crate::net::egress;
use crate::observe::metrics::Metrics;
use crate::pipeline::room::Endpoints;

/// What the fake's next claim does (once the script is empty: `Lease`).
enum Step {
    /// Lease from `due`, at most what was asked for.
    Lease,
    /// Fail as a broken connection does.
    Lost,
    /// Never answer.
    Hang,
    /// Refuse the request itself.
    Refused,
}

#[derive(Default)]
struct State {
    due: VecDeque<Claimed>,
    script: VecDeque<Step>,
    connects: usize,
    /// When each claim came and how many it asked for.
    claims: Vec<(Instant, i32)>,
    leased: Vec<i64>,
    released: Vec<i64>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn with(
        due: impl IntoIterator<Item = Claimed>,
        script: impl IntoIterator<Item = Step>,
    ) -> Self {
        let fake = Fake::default();
        {
            let mut s = fake.state();
            s.due.extend(due);
            s.script.extend(script);
        }
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    fn claims(&self) -> usize {
        self.state().claims.len()
    }
}

impl ClaimStore for Fake {
    type Conn = Fake;

    async fn connect(&self) -> Result<Fake, ClaimError> {
        self.state().connects += 1;
        Ok(self.clone())
    }
}

impl ClaimConn for Fake {
    fn is_closed(&self) -> bool {
        false
    }

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Claim, ClaimError> {
        let step = {
            let mut s = self.state();
            s.claims.push((Instant::now(), req.max));
            s.script.pop_front().unwrap_or(Step::Lease)
        };
        match step {
            Step::Lease => {}
            Step::Lost => return Err(ClaimError::Lost("connection reset by peer".into())),
            Step::Hang => std::future::pending().await,
            Step::Refused => {
                return Err(ClaimError::Refused(
                    "SQLSTATE 22001: worker name too long".into(),
                ))
            }
        }
        let mut s = self.state();
        let n = (req.max.max(0) as usize).min(s.due.len());
        let mut claim = Claim::default();
        for mut c in s.due.drain(..n).collect::<Vec<_>>() {
            c.body = req.held.hold("{}");
            s.leased.push(c.delivery_id);
            claim.deliveries.push(c);
        }
        Ok(claim)
    }

    async fn route(&self, _max: i32) -> Result<i32, ClaimError> {
        Ok(0)
    }

    async fn release(&self, ids: &[i64], _tokens: &[i32]) -> Result<(), ClaimError> {
        self.state().released.extend_from_slice(ids);
        Ok(())
    }
}

/// A delivery to an endpoint of its own (no limits), to a URL that cannot
/// be sent to.
fn delivery(id: i64) -> Claimed {
    Claimed {
        delivery_id: id,
        claim_token: 1,
        event_id: id,
        endpoint_id: id,
        attempt: 1,
        url: "not a url".into(),
        headers: serde_json::json!({}),
        signature: "v1,x".into(),
        timeout_ms: 1000,
        max_in_flight: 10,
        ..Claimed::default()
    }
}

fn config(concurrency: usize, poll_interval: Duration) -> Config {
    Config {
        database: db::Database::new("postgres://u@localhost/db", None).unwrap(),
        concurrency,
        batch: 100,
        claim_max_bytes: 1 << 20,
        lease: Duration::from_secs(60),
        poll_interval,
        maintain_interval: Duration::ZERO,
        metrics_max_endpoints: 10,
        listen: true,
        http: egress::Options::default(),
        retry: Default::default(),
        breaker: Default::default(),
        shutdown_grace: Duration::from_millis(100),
        worker: "test".into(),
        delivery_threads: 1,
    }
}

/// The claim loop and, after it, the shutdown drain, as `run` has them.
struct Running {
    reports: mpsc::Receiver<Report>,
    health: Arc<crate::observe::probes::Health>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<Result<(), ClaimError>>,
}

fn start(
    fake: &Fake,
    cfg: Config,
    reports: (mpsc::Sender<Report>, mpsc::Receiver<Report>),
) -> Running {
    let (tx, rx) = reports;
    let health = crate::observe::probes::Health::claiming(super::ready_within(&cfg));
    let shared = Arc::new(Shared {
        client: deliver::client(&cfg.http).unwrap(),
        retry: cfg.retry.clone(),
        breaker: cfg.breaker.clone(),
        metrics: Metrics::new(cfg.metrics_max_endpoints),
        reports: tx,
        endpoints: Mutex::new(Endpoints::default()),
        held: Mutex::default(),
        finished: Notify::new(),
        health: health.clone(),
    });
    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let (store, w, stop) = (fake.clone(), wake.clone(), shutdown.clone());
    let done = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let here = tokio::runtime::Handle::current();
        let r = claim_loop(&cfg, &store, &shared, &w, &here, &mut tasks, &stop).await;
        drain(&cfg, shared, tasks).await;
        r
    });
    Running {
        reports: rx,
        health,
        wake,
        shutdown,
        done,
    }
}

impl Running {
    /// Stops the loop; every report it sent, as (delivery, attempted?).
    async fn stop(mut self) -> (Result<(), ClaimError>, Vec<(i64, bool)>) {
        self.shutdown.cancel();
        let mut all = Vec::new();
        while let Some(r) = self.reports.recv().await {
            all.push(seen(&r));
        }
        (self.done.await.unwrap(), all)
    }
}

/// The recorder's queue, full (of a report on delivery 0): each delivery
/// waits, holding its permit, until the test takes a report.
fn full_queue() -> (mpsc::Sender<Report>, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(Report::Released {
        delivery_id: 0,
        claim_token: 0,
    })
    .unwrap();
    (tx, rx)
}

fn seen(r: &Report) -> (i64, bool) {
    (r.delivery_id(), matches!(r, Report::Attempted(_)))
}

#[tokio::test(start_paused = true)]
async fn a_claimed_delivery_is_attempted_once_and_reported() {
    let fake = Fake::with([delivery(1)], []);
    let mut run = start(&fake, config(4, Duration::from_secs(5)), mpsc::channel(100));
    let first = run.reports.recv().await.unwrap();
    assert_eq!(seen(&first), (1, true));
    // A minute of polling: never claimed or attempted again.
    sleep(Duration::from_secs(60)).await;
    assert!(run.reports.try_recv().is_err());
    let (r, rest) = run.stop().await;
    r.unwrap();
    assert_eq!(rest, vec![]);
    let s = fake.state();
    assert_eq!(s.leased, vec![1]);
    assert_eq!(s.released, Vec::<i64>::new());
    assert!(s.claims.len() >= 12, "polled every 5 s: {}", s.claims.len());
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_reconnects_after_backoff_and_keeps_its_leases() {
    let fake = Fake::with(
        [delivery(1), delivery(2)],
        [Step::Lease, Step::Lost, Step::Hang, Step::Lease],
    );
    let t0 = Instant::now();
    // 1 and 2 stay in flight through the failures: the recorder's queue
    // is full until the test takes from it.
    let mut run = start(&fake, config(4, Duration::from_secs(3600)), full_queue());
    // Through the failure, the hang and both backoffs.
    sleep(db::ROUND_TRIP_TIMEOUT + Duration::from_secs(1)).await;
    fake.state().due.push_back(delivery(3));
    run.wake.notify_one();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(seen(&run.reports.recv().await.unwrap()));
    }
    got.sort();
    assert_eq!(got, vec![(0, false), (1, true), (2, true), (3, true)]);
    let (r, rest) = run.stop().await;
    r.unwrap();
    assert_eq!(rest, vec![]);
    let s = fake.state();
    let at: Vec<Duration> = s.claims.iter().map(|(t, _)| *t - t0).collect();
    assert_eq!(s.connects, 3, "{at:?}");
    // Lease, then at once the claim that fails; 100 ms of backoff, the
    // claim that hangs until its timeout; 200 ms more (a reconnect does
    // not reset the claim's backoff), the next.
    assert_eq!(at[0], at[1]);
    assert_eq!(at[2] - at[1], Duration::from_millis(100));
    assert_eq!(
        at[3] - at[2],
        db::ROUND_TRIP_TIMEOUT + Duration::from_millis(200)
    );
    assert_eq!(s.leased, vec![1, 2, 3]);
    assert_eq!(s.released, Vec::<i64>::new());
}

#[tokio::test(start_paused = true)]
async fn on_shutdown_leases_not_started_are_given_back() {
    // One endpoint, one request at a time, one a second: the first is
    // attempted, the second waits for its slot, the third for a permit.
    let limited = |id| Claimed {
        endpoint_id: 7,
        max_in_flight: 1,
        rate_limit: Some(1),
        ..delivery(id)
    };
    let fake = Fake::with([limited(1), limited(2), limited(3)], []);
    let mut run = start(&fake, config(4, Duration::from_secs(5)), mpsc::channel(100));
    assert_eq!(seen(&run.reports.recv().await.unwrap()), (1, true));
    let (r, mut rest) = run.stop().await;
    r.unwrap();
    rest.sort();
    assert_eq!(rest, vec![(2, false), (3, false)]);
    // Given back through the recorder, not by the claim connection.
    assert_eq!(fake.state().released, Vec::<i64>::new());
}

#[tokio::test(start_paused = true)]
async fn with_nothing_to_claim_the_loop_waits_for_a_wake_up_or_the_poll_interval() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let run = start(
        &fake,
        config(4, Duration::from_secs(10)),
        mpsc::channel(100),
    );
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.claims(), 1);
    run.wake.notify_one();
    sleep(Duration::from_millis(1)).await;
    assert_eq!(fake.claims(), 2);
    sleep(Duration::from_secs(9)).await;
    assert_eq!(fake.claims(), 2);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.claims(), 3);
    let (r, rest) = run.stop().await;
    r.unwrap();
    assert_eq!(rest, vec![]);
    let at: Vec<Duration> = fake.state().claims.iter().map(|(t, _)| *t - t0).collect();
    assert_eq!(
        at,
        [0, 5, 15].map(Duration::from_secs).to_vec(),
        "claims at"
    );
}

#[tokio::test(start_paused = true)]
async fn permits_bound_how_many_deliveries_are_in_flight() {
    let fake = Fake::with((1..=10).map(delivery), []);
    // Each delivery holds its permit until the test takes a report.
    let mut run = start(&fake, config(3, Duration::from_secs(5)), full_queue());
    sleep(Duration::from_secs(60)).await;
    {
        let s = fake.state();
        assert_eq!(s.claims.iter().map(|c| c.1).collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.leased.len(), 3);
    }
    let mut reported = Vec::new();
    while reported.len() < 11 {
        let r = run.reports.recv().await.unwrap();
        reported.push(r.delivery_id());
        sleep(Duration::from_millis(1)).await;
        let leased = fake.state().leased.len();
        // Each report taken lets one more delivery queue its own and
        // free its permit: in flight are those leased, less the reports
        // taken (less the one that was queued first) and the one queued.
        assert!(
            leased <= reported.len() + 3,
            "{leased} leased, {reported:?}"
        );
    }
    let (r, rest) = run.stop().await;
    r.unwrap();
    assert_eq!(rest, vec![]);
    reported.sort();
    assert_eq!(reported, (0..=10).collect::<Vec<_>>());
    let s = fake.state();
    assert!(
        s.claims.iter().all(|c| (1..=3).contains(&c.1)),
        "{:?}",
        s.claims
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_the_database_refuses_stops_the_loop_with_its_error() {
    let fake = Fake::with([delivery(1)], [Step::Refused]);
    let run = start(&fake, config(4, Duration::from_secs(5)), mpsc::channel(100));
    let done = tokio::time::timeout(Duration::from_secs(3600), run.done)
        .await
        .expect("the loop stops by itself")
        .unwrap();
    assert!(matches!(done, Err(ClaimError::Refused(_))), "{done:?}");
    let s = fake.state();
    assert_eq!((s.connects, s.claims.len()), (1, 1));
    assert!(s.leased.is_empty());
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_claim_rounds() {
    let fake = Fake::with([], [Step::Lost, Step::Hang]);
    let run = start(
        &fake,
        config(4, Duration::from_secs(3600)),
        mpsc::channel(100),
    );
    let why = |run: &Running| run.health.unready_because();
    // The first claim failed at once; its backoff is 100 ms.
    sleep(Duration::from_millis(50)).await;
    assert_eq!(why(&run).as_deref(), Some("the last claim round failed"));
    // Reconnected; the claim on the new session has not answered.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(why(&run).as_deref(), Some("the database is unreachable"));
    // It timed out; 200 ms of backoff, then a claim that succeeds.
    sleep(db::ROUND_TRIP_TIMEOUT).await;
    assert_eq!(why(&run).as_deref(), Some("the last claim round failed"));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(why(&run), None);
    let (r, _) = run.stop().await;
    r.unwrap();
}

//! Record: outcomes are reported in batches through `webhook.record()`, and
//! leases given back unattempted (paused endpoint, shutdown) through
//! `webhook.release()`.
//!
//! What a batch may not do is block the others. Text from receivers is made
//! storable before it gets here (`storable`, applied by `Outcome::new`); a
//! batch the database still refuses for its data is split until the refused
//! outcomes are alone, and each of those is written again as an error
//! attempt without its text, or dropped with a log line if even that is
//! refused. Only a database that cannot take outcomes at all (down,
//! restarting, read-only) makes the same batch wait and be retried. An
//! outcome not written (dropped, or still unwritten when the process stops)
//! is not lost: its lease expires and the delivery is attempted again
//! (at-least-once).

use std::ops::Range;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::db;
use crate::observe::telemetry;
use tracing::Instrument;

/// Bytes of a response kept for `webhook.attempts`.
pub const EXCERPT_BYTES: usize = 1024;
/// Bytes of an attempt's error text kept.
pub const ERROR_BYTES: usize = 1024;
/// How long the final flush at shutdown may take (after in-flight requests
/// had their grace): what is not written by then is logged and left to
/// lease expiry.
pub const FINAL_FLUSH: Duration = Duration::from_secs(5);
/// One `record()` or `release()` call taking longer than this counts as the
/// database being unreachable (the connection is replaced).
const WRITE_TIMEOUT: Duration = db::ROUND_TRIP_TIMEOUT;
const MAX_BATCH: usize = 1000;

/// `bytes` as text PostgreSQL can store: valid UTF-8 (invalid sequences
/// become U+FFFD), no NUL (also U+FFFD), at most `max` bytes (cut at a
/// character boundary). Everything that reaches the database from a
/// receiver or the network goes through here.
pub fn storable(bytes: &[u8], max: usize) -> String {
    let head = &bytes[..bytes.len().min(max)];
    let mut text = String::from_utf8_lossy(head).replace('\0', "\u{FFFD}");
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// One attempt's outcome, its texts storable (the only constructor makes
/// them so).
#[derive(Debug, Clone)]
pub struct Outcome {
    delivery_id: i64,
    claim_token: i32,
    http_status: Option<i32>,
    error: Option<String>,
    duration: Duration,
    excerpt: Option<String>,
    /// None with a non-2xx status: no more attempts (dead).
    retry_at: Option<SystemTime>,
}

impl Outcome {
    pub fn new(
        delivery_id: i64,
        claim_token: i32,
        http_status: Option<i32>,
        duration: Duration,
        retry_at: Option<SystemTime>,
        error: Option<&str>,
        excerpt: Option<&[u8]>,
    ) -> Self {
        Outcome {
            delivery_id,
            claim_token,
            http_status,
            error: error.map(|e| storable(e.as_bytes(), ERROR_BYTES)),
            duration,
            excerpt: excerpt
                .map(|x| storable(x, EXCERPT_BYTES))
                .filter(|x| !x.is_empty()),
            retry_at,
        }
    }

    /// The same attempt (status and retry decision kept) without the text
    /// the database refused, saying why instead.
    fn degraded(&self, code: &SqlState, message: &str) -> Self {
        let error = format!(
            "webhookd could not store this attempt's outcome (SQLSTATE {}: {message}); its error text and response excerpt were dropped",
            code.code()
        );
        Outcome {
            error: Some(storable(error.as_bytes(), ERROR_BYTES)),
            excerpt: None,
            ..self.clone()
        }
    }
}

/// What the recorder writes back for one claimed delivery.
#[derive(Debug, Clone)]
pub enum Report {
    Attempted(Outcome),
    /// Not attempted: the lease is given back and the delivery is due again.
    Released {
        delivery_id: i64,
        claim_token: i32,
    },
}

#[cfg(test)]
impl Report {
    /// The delivery reported on.
    pub fn delivery_id(&self) -> i64 {
        match self {
            Report::Attempted(o) => o.delivery_id,
            Report::Released { delivery_id, .. } => *delivery_id,
        }
    }
}

/// Why a write failed, as far as what to do next is concerned.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The database cannot take outcomes now, whatever they are (down,
    /// restarting, read-only, the connection broke, a lock timed out, the
    /// function is missing): retry the same batch later.
    #[error("the database cannot take outcomes now: {}", db::Report(.0.as_ref()))]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The database refused this batch's data: split it.
    #[error("{report}")]
    Refused {
        code: SqlState,
        /// The server's message (stored with a degraded outcome).
        message: String,
        /// All the server said, for the log (`db::Report`).
        report: String,
    },
}

impl From<tokio_postgres::Error> for WriteError {
    /// The decision between retrying (on a new session: the recorder
    /// opens one after any failure) and splitting, made by db::failure.
    fn from(e: tokio_postgres::Error) -> Self {
        match (db::failure(&e), e.as_db_error()) {
            (db::Failure::Refused, Some(server)) => WriteError::Refused {
                code: server.code().clone(),
                message: server.message().to_string(),
                report: db::Report(&e).to_string(),
            },
            _ => WriteError::Unavailable(Box::new(e)),
        }
    }
}

/// Where outcomes go: the database, or a fake in tests.
trait Store {
    async fn record(&mut self, outcomes: &[Outcome]) -> Result<(), WriteError>;
    async fn release(&mut self, ids: &[i64], tokens: &[i32]) -> Result<(), WriteError>;
}

const RECORD: &str = "SELECT webhook.record($1, $2, $3, $4, $5, $6, $7, $8)";
const RECORD_TYPES: &[Type] = &[
    Type::INT8_ARRAY,
    Type::INT4_ARRAY,
    Type::INT4_ARRAY,
    Type::TEXT_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TEXT,
];
const RELEASE: &str = "SELECT webhook.release($1, $2)";
const RELEASE_TYPES: &[Type] = &[Type::INT8_ARRAY, Type::INT4_ARRAY];

/// The recorder's connection with its statements prepared once (a query
/// by text costs a parse round trip on every batch).
struct Conn {
    client: Client,
    record: db::Prepared,
    release: db::Prepared,
    worker: String,
}

impl Conn {
    async fn open(database: &db::Database, worker: &str) -> Result<Self, tokio_postgres::Error> {
        let client = database.connect("webhookd record").await?;
        let record = db::Prepared::prepare(&client, RECORD, RECORD_TYPES).await?;
        let release = db::Prepared::prepare(&client, RELEASE, RELEASE_TYPES).await?;
        Ok(Conn {
            client,
            record,
            release,
            worker: worker.to_string(),
        })
    }
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(WRITE_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(WriteError::Unavailable(
            format!("no answer within {}s", WRITE_TIMEOUT.as_secs()).into(),
        )),
    }
}

impl Store for Conn {
    async fn record(&mut self, batch: &[Outcome]) -> Result<(), WriteError> {
        let ids: Vec<i64> = batch.iter().map(|o| o.delivery_id).collect();
        let tokens: Vec<i32> = batch.iter().map(|o| o.claim_token).collect();
        let statuses: Vec<Option<i32>> = batch.iter().map(|o| o.http_status).collect();
        let errors: Vec<Option<&str>> = batch.iter().map(|o| o.error.as_deref()).collect();
        let durations: Vec<f64> = batch
            .iter()
            .map(|o| o.duration.as_secs_f64() * 1000.0)
            .collect();
        let excerpts: Vec<Option<&str>> = batch.iter().map(|o| o.excerpt.as_deref()).collect();
        let retry: Vec<Option<SystemTime>> = batch.iter().map(|o| o.retry_at).collect();
        let row = bounded(self.record.query_one(
            &self.client,
            &[
                &ids,
                &tokens,
                &statuses,
                &errors,
                &durations,
                &excerpts,
                &retry,
                &self.worker,
            ],
        ))
        .await?;
        // record() writes only outcomes whose lease this dispatcher still
        // holds; the others' leases expired (a slow request, a stalled
        // process) and the delivery went to another claim.
        let written = row.try_get::<_, Option<i32>>(0)?.unwrap_or(0);
        let stale = batch
            .len()
            .saturating_sub(usize::try_from(written).unwrap_or(0));
        if stale > 0 {
            tracing::warn!(
                stale,
                "outcomes for leases no longer held were not recorded: their leases expired and the deliveries are attempted again (raise --lease if requests take that long)"
            );
        }
        Ok(())
    }

    async fn release(&mut self, ids: &[i64], tokens: &[i32]) -> Result<(), WriteError> {
        bounded(self.release.query_one(&self.client, &[&ids, &tokens])).await?;
        Ok(())
    }
}

/// What became of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Written {
    /// Outcomes recorded as they were, and leases released.
    recorded: usize,
    /// Outcomes recorded as an error attempt without their text.
    degraded: usize,
    /// Outcomes the database refused even so (their leases expire).
    dropped: usize,
}

/// Writes `batch`; on `Unavailable` returns the reports still unwritten
/// (for the caller to retry later), together with the error.
async fn write<S: Store>(
    store: &mut S,
    batch: Vec<Report>,
) -> Result<Written, (WriteError, Vec<Report>)> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let (mut released, mut released_tokens) = (Vec::new(), Vec::new());
    for r in batch {
        match r {
            Report::Attempted(o) => outcomes.push(o),
            Report::Released {
                delivery_id,
                claim_token,
            } => {
                released.push(delivery_id);
                released_tokens.push(claim_token);
            }
        }
    }
    let mut written = Written::default();
    if !released.is_empty() {
        match store.release(&released, &released_tokens).await {
            Ok(()) => written.recorded += released.len(),
            Err(e @ WriteError::Unavailable(_)) => {
                let mut left: Vec<Report> = released
                    .into_iter()
                    .zip(released_tokens)
                    .map(|(delivery_id, claim_token)| Report::Released {
                        delivery_id,
                        claim_token,
                    })
                    .collect();
                left.extend(outcomes.into_iter().map(Report::Attempted));
                return Err((e, left));
            }
            // Ids and tokens only: nothing to split or degrade.
            Err(e) => {
                tracing::warn!(error = %db::Report(&e), released = released.len(), "releasing leases was refused; they expire by themselves");
                written.dropped += released.len();
            }
        }
    }
    match write_outcomes(store, &outcomes).await {
        Ok(w) => {
            written.recorded += w.recorded;
            written.degraded += w.degraded;
            written.dropped += w.dropped;
            Ok(written)
        }
        Err((e, left)) => Err((
            e,
            left.into_iter()
                .flat_map(|r| outcomes[r].iter().cloned())
                .map(Report::Attempted)
                .collect(),
        )),
    }
}

/// Writes `outcomes`, halving every range the database refuses until the
/// refused outcomes stand alone; each of those is degraded, or dropped.
/// On `Unavailable`, the ranges still unwritten.
async fn write_outcomes<S: Store>(
    store: &mut S,
    outcomes: &[Outcome],
) -> Result<Written, (WriteError, Vec<Range<usize>>)> {
    let mut written = Written::default();
    // Ranges still to write, the next one last.
    let mut todo: Vec<Range<usize>> = Vec::new();
    if !outcomes.is_empty() {
        todo.push(0..outcomes.len());
    }
    while let Some(range) = todo.pop() {
        let (code, message, report) = match store.record(&outcomes[range.clone()]).await {
            Ok(()) => {
                written.recorded += range.len();
                continue;
            }
            Err(e @ WriteError::Unavailable(_)) => {
                todo.push(range);
                todo.reverse();
                return Err((e, todo));
            }
            Err(WriteError::Refused {
                code,
                message,
                report,
            }) => (code, message, report),
        };
        if range.len() > 1 {
            let mid = range.start + range.len() / 2;
            todo.push(mid..range.end);
            todo.push(range.start..mid);
            continue;
        }
        let original = &outcomes[range.start];
        let degraded = original.degraded(&code, &message);
        match store.record(std::slice::from_ref(&degraded)).await {
            Ok(()) => {
                tracing::warn!(
                    delivery = original.delivery_id,
                    error = %report,
                    "an outcome was refused by the database; recorded without its text"
                );
                written.degraded += 1;
            }
            Err(e @ WriteError::Unavailable(_)) => {
                todo.push(range);
                todo.reverse();
                return Err((e, todo));
            }
            Err(e) => {
                tracing::error!(
                    delivery = original.delivery_id,
                    first = %report,
                    error = %db::Report(&e),
                    "an outcome cannot be recorded; dropped (its lease expires and the delivery is attempted again)"
                );
                written.dropped += 1;
            }
        }
    }
    Ok(written)
}

/// Give leases back unattempted (`webhook.release()`): the deliveries are
/// due again at once, their attempts untouched.
pub async fn release(
    client: &Client,
    delivery_ids: &[i64],
    claim_tokens: &[i32],
) -> Result<u64, tokio_postgres::Error> {
    // Unnamed: once, at shutdown or for leases claimed without a body.
    let n: Option<i32> = client
        .query_typed_one(
            RELEASE,
            &[
                (&delivery_ids, Type::INT8_ARRAY),
                (&claim_tokens, Type::INT4_ARRAY),
            ],
        )
        .await?
        .try_get(0)?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

/// Runs until `rx` is closed and drained, or until `give_up` is cancelled
/// (then what is still unwritten is counted in a log line and left to
/// lease expiry); returns after the last write.
pub async fn run(
    database: db::Database,
    worker: String,
    metrics: std::sync::Arc<crate::observe::metrics::Metrics>,
    mut rx: mpsc::Receiver<Report>,
    give_up: CancellationToken,
) {
    let mut pending: Vec<Report> = Vec::new();
    let gave_up = tokio::select! {
        _ = drain(&database, &worker, &metrics, &mut rx, &mut pending) => false,
        _ = give_up.cancelled() => true,
    };
    if gave_up {
        rx.close();
        while let Ok(r) = rx.try_recv() {
            pending.push(r);
        }
        if !pending.is_empty() {
            tracing::warn!(
                unwritten = pending.len(),
                "outcomes not written before exit; their leases expire and those deliveries are attempted again"
            );
        }
    }
}

/// The recorder's loop; `pending` holds what is received and not yet
/// written (a batch being written included).
async fn drain(
    database: &db::Database,
    worker: &str,
    metrics: &crate::observe::metrics::Metrics,
    rx: &mut mpsc::Receiver<Report>,
    pending: &mut Vec<Report>,
) {
    let mut conn: Option<Conn> = None;
    let mut closed = false;
    let mut backoff = db::Backoff::default();
    // The recorder keeps trying until run() gives up on it.
    let never = CancellationToken::new();
    loop {
        if pending.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(o) => pending.push(o),
                None => return,
            }
        }
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => pending.push(o),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = db::connect_with_backoff("record", &mut backoff, &never, || {
                Conn::open(database, worker)
            })
            .await;
        }
        let Some(c) = conn.as_mut() else { continue };
        let n = pending.len().min(MAX_BATCH);
        // Written from a copy, so that `pending` keeps the batch until it
        // is written (a give-up meanwhile counts it).
        let batch: Vec<Report> = pending[..n].to_vec();
        let started = std::time::Instant::now();
        let written = write(c, batch).instrument(telemetry::record_span(n)).await;
        metrics.record(started.elapsed());
        match written {
            Ok(w) => {
                pending.drain(..n);
                if w.degraded + w.dropped > 0 {
                    tracing::warn!(
                        recorded = w.recorded,
                        degraded = w.degraded,
                        dropped = w.dropped,
                        "a batch of outcomes was partly refused by the database"
                    );
                }
                backoff.reset();
            }
            Err((e, left)) => {
                tracing::warn!(error = %db::Report(&e), unwritten = left.len(), "recording outcomes failed; retrying");
                pending.splice(..n, left);
                conn = None;
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storable_text_has_no_nul_valid_utf8_and_a_bound() {
        assert_eq!(storable(b"ab\0cd", 1024), "ab\u{FFFD}cd");
        assert_eq!(storable(b"a\xff\xfeb", 1024), "a\u{FFFD}\u{FFFD}b");
        assert_eq!(storable(&[b'x'; 5000], 1024).len(), 1024);
        // A multi-byte character across the bound is not split.
        let s = storable("aé".repeat(600).as_bytes(), 1024);
        assert!(s.len() <= 1024, "{}", s.len());
        assert!(s.ends_with('a') || s.ends_with('é'), "{s:?}");
        assert!(std::str::from_utf8(s.as_bytes()).is_ok());
        // A cut through a UTF-8 sequence leaves a replacement character,
        // still within the bound.
        let s = storable("€€".as_bytes(), 4);
        assert!(s.len() <= 4, "{s:?}");
    }

    #[test]
    fn outcomes_are_built_storable() {
        let o = Outcome::new(
            1,
            1,
            Some(200),
            Duration::ZERO,
            None,
            Some("bad \0 thing"),
            Some(b"ab\0cd"),
        );
        assert_eq!(o.excerpt.as_deref(), Some("ab\u{FFFD}cd"));
        assert_eq!(o.error.as_deref(), Some("bad \u{FFFD} thing"));
        let o = Outcome::new(1, 1, None, Duration::ZERO, None, None, Some(b""));
        assert_eq!(o.excerpt, None);
    }

    fn outcome(id: i64, excerpt: &str) -> Report {
        Report::Attempted(Outcome::new(
            id,
            7,
            Some(500),
            Duration::ZERO,
            Some(SystemTime::UNIX_EPOCH),
            None,
            Some(excerpt.as_bytes()),
        ))
    }

    /// Refuses every batch holding an excerpt containing "poison" (and,
    /// when `refuse_all`, every batch at all); fails as unavailable for the
    /// first `down` calls.
    #[derive(Default)]
    struct Fake {
        refuse_all: bool,
        down: usize,
        calls: usize,
        recorded: Vec<Outcome>,
        released: Vec<i64>,
    }

    impl Store for Fake {
        async fn record(&mut self, batch: &[Outcome]) -> Result<(), WriteError> {
            self.calls += 1;
            if self.down > 0 {
                self.down -= 1;
                return Err(WriteError::Unavailable("connection refused".into()));
            }
            let poisoned = batch
                .iter()
                .any(|o| o.excerpt.as_deref().is_some_and(|x| x.contains("poison")));
            if poisoned || self.refuse_all {
                return Err(WriteError::Refused {
                    code: SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                    message: "invalid byte sequence".into(),
                    report: "SQLSTATE 22021: invalid byte sequence".into(),
                });
            }
            self.recorded.extend_from_slice(batch);
            Ok(())
        }
        async fn release(&mut self, ids: &[i64], _: &[i32]) -> Result<(), WriteError> {
            self.released.extend_from_slice(ids);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_outcome_is_degraded_and_the_rest_recorded() {
        let mut fake = Fake::default();
        let mut batch: Vec<Report> = (1..=100).map(|i| outcome(i, "ok")).collect();
        batch[36] = outcome(37, "poison");
        batch.push(Report::Released {
            delivery_id: 500,
            claim_token: 1,
        });
        let w = write(&mut fake, batch).await.unwrap();
        assert_eq!(
            w,
            Written {
                recorded: 100,
                degraded: 1,
                dropped: 0
            }
        );
        assert_eq!(fake.released, vec![500]);
        let mut ids: Vec<i64> = fake.recorded.iter().map(|o| o.delivery_id).collect();
        ids.sort();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
        let poisoned = fake.recorded.iter().find(|o| o.delivery_id == 37).unwrap();
        assert_eq!(poisoned.excerpt, None);
        assert_eq!(poisoned.http_status, Some(500));
        assert_eq!(poisoned.retry_at, Some(SystemTime::UNIX_EPOCH));
        let error = poisoned.error.as_deref().unwrap();
        assert!(error.contains("SQLSTATE 22021"), "{error}");
        // Splitting costs about two writes per level for one bad outcome.
        assert!(fake.calls < 20, "{} writes", fake.calls);
    }

    #[tokio::test]
    async fn an_outcome_refused_even_degraded_is_dropped_never_retried() {
        let mut fake = Fake {
            refuse_all: true,
            ..Fake::default()
        };
        let batch: Vec<Report> = (1..=4).map(|i| outcome(i, "ok")).collect();
        let w = write(&mut fake, batch).await.unwrap();
        assert_eq!(w.dropped, 4);
        assert!(fake.recorded.is_empty());
    }

    #[tokio::test]
    async fn an_unavailable_database_gives_the_unwritten_outcomes_back() {
        let mut fake = Fake {
            down: 1,
            ..Fake::default()
        };
        let batch: Vec<Report> = (1..=10).map(|i| outcome(i, "ok")).collect();
        let (e, left) = write(&mut fake, batch).await.unwrap_err();
        assert!(matches!(e, WriteError::Unavailable(_)));
        assert_eq!(left.len(), 10);
        // Unavailable in the middle of a split: only what was not written
        // comes back.
        let mut batch: Vec<Report> = (1..=8).map(|i| outcome(i, "ok")).collect();
        batch[7] = outcome(8, "poison");
        let mut store = DownAfter {
            inner: Fake::default(),
            after: 3,
        };
        let (_, left) = write(&mut store, batch).await.unwrap_err();
        assert_eq!(store.inner.recorded.len(), 4);
        let left: Vec<i64> = left.iter().map(Report::delivery_id).collect();
        assert_eq!(left, vec![5, 6, 7, 8]);
    }

    /// Becomes unavailable after `after` calls.
    struct DownAfter {
        inner: Fake,
        after: usize,
    }

    impl Store for DownAfter {
        async fn record(&mut self, batch: &[Outcome]) -> Result<(), WriteError> {
            if self.inner.calls >= self.after {
                return Err(WriteError::Unavailable("gone".into()));
            }
            self.inner.record(batch).await
        }
        async fn release(&mut self, ids: &[i64], tokens: &[i32]) -> Result<(), WriteError> {
            self.inner.release(ids, tokens).await
        }
    }
}

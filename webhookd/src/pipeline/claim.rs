//! Claim: lease a batch of due deliveries through `webhook.claim()`, which
//! also routes newly committed events and signs each request in the database
//! (the dispatcher never sees a secret). It needs a READ COMMITTED
//! session that may write, whatever the database's defaults: every
//! session is opened so (db::session, `session_settings`).
//!
//! Payloads are what could make webhookd's memory grow without bound: an
//! event's body comes once per claim (on the first row of its event) and is
//! shared by all its deliveries, and what bodies webhookd holds is counted
//! (`HeldBytes`), so the claim loop asks for no more than its budget.
//!
//! What the claim loop needs from the database is `ClaimStore` (a
//! connection) and `ClaimConn` (claims, routing passes and leases given
//! back on it), each failure typed to what the loop does next
//! (`ClaimError`). `Pg` is the real one; the loop's tests run it against a
//! fake (pipeline::tests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use crate::db;
use crate::pipeline::record;

/// Bytes of event bodies held in memory (claimed and not finished), each
/// body counted once while any delivery holding it lives.
#[derive(Debug, Clone, Default)]
pub struct HeldBytes(Arc<AtomicUsize>);

impl HeldBytes {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// `text` as a shared body, counted until its last holder drops it.
    pub(crate) fn hold(&self, text: &str) -> Bytes {
        self.0.fetch_add(text.len(), Ordering::Relaxed);
        Bytes::from_owner(Counted {
            data: text.as_bytes().into(),
            held: self.0.clone(),
        })
    }
}

/// A body's bytes and the counter they are counted in.
struct Counted {
    data: Box<[u8]>,
    held: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.held.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
#[cfg_attr(test, derive(Default))]
pub struct Claimed {
    pub delivery_id: i64,
    pub claim_token: i32,
    pub event_id: i64,
    pub endpoint_id: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub url: String,
    /// The endpoint's own headers (a JSON object of strings); the standard
    /// ones are built from the fields below (pipeline::deliver).
    pub headers: serde_json::Value,
    /// `webhook-signature`: one `v1,...` per current secret.
    pub signature: String,
    /// `webhook-timestamp`: unix seconds the signature covers.
    pub signed_at: i64,
    /// The event's body, shared with the other deliveries of the event
    /// (cloning it copies nothing).
    pub body: Bytes,
    pub timeout_ms: i32,
    pub max_in_flight: i32,
    /// Requests per second at most, if the endpoint has a limit.
    pub rate_limit: Option<i32>,
    /// The endpoint's own retry schedule, if it has one (else webhookd's).
    pub retry_schedule: Option<Vec<Duration>>,
    /// When the delivery reaches the endpoint's maximum age, if it has one:
    /// no retry is scheduled past it.
    pub retry_deadline: Option<Instant>,
    /// The W3C traceparent of the transaction that wrote the event: the
    /// attempt's span's parent, and the `traceparent` header when spans
    /// are not exported (observe::telemetry).
    pub traceparent: Option<String>,
}

pub struct Claimer {
    stmt: db::Prepared,
    route: db::Prepared,
}

const CLAIM: &str = "SELECT delivery_id, claim_token, event_id, endpoint_id, attempt, url, headers, signature, signed_at, body, timeout_ms, max_in_flight, rate_limit, \
                            retry_schedule_ms, retry_budget_ms, traceparent \
                       FROM webhook.claim($1::int, make_interval(secs => $2::float8), $3::text, $4::bigint[], $5::int, $6::bigint[], $7::int[], $8::bigint)";
const CLAIM_TYPES: &[Type] = &[
    Type::INT4,
    Type::FLOAT8,
    Type::TEXT,
    Type::INT8_ARRAY,
    Type::INT4,
    Type::INT8_ARRAY,
    Type::INT4_ARRAY,
    Type::INT8,
];
const ROUTE: &str = "SELECT webhook.route($1::int)";

#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub max: i32,
    pub lease: Duration,
    pub worker: &'a str,
    pub exclude: &'a [i64],
    /// At most `caps.1[i]` deliveries for endpoint `caps.0[i]`.
    pub caps: (&'a [i64], &'a [i32]),
    /// When > 0: tell capturing transactions we are idle for this long if
    /// the claim comes back empty (they then NOTIFY us).
    pub idle_hint: Duration,
    /// Bytes of distinct event bodies the claim may return (at least 1);
    /// the first event comes whatever its size.
    pub max_body_bytes: i64,
    /// Where the bodies returned are counted.
    pub held: &'a HeldBytes,
}

/// What one claim leased.
#[derive(Debug, Default)]
pub struct Claim {
    pub deliveries: Vec<Claimed>,
    /// Leased rows whose event's body did not come with the claim (never,
    /// by webhook.claim()'s contract): to be given back.
    pub without_body: Vec<(i64, i32)>,
}

impl Claimer {
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let stmt = db::Prepared::prepare(client, CLAIM, CLAIM_TYPES).await?;
        let route = db::Prepared::prepare(client, ROUTE, &[Type::INT4]).await?;
        Ok(Claimer { stmt, route })
    }

    /// Route up to `max` committed events into pending deliveries, leasing
    /// none (`webhook.route()`); how many events were routed.
    pub async fn route(&self, client: &Client, max: i32) -> Result<i32, tokio_postgres::Error> {
        Ok(self.route.query_one(client, &[&max]).await?.get(0))
    }

    /// Rows are read one at a time, each body kept once per event.
    pub async fn claim(
        &self,
        client: &Client,
        req: &ClaimRequest<'_>,
    ) -> Result<Claim, tokio_postgres::Error> {
        let idle_ms = req.idle_hint.as_millis().min(i32::MAX as u128) as i32;
        let lease = req.lease.as_secs_f64();
        let max_body_bytes = req.max_body_bytes.max(1);
        let params: [&(dyn ToSql + Sync); 8] = [
            &req.max,
            &lease,
            &req.worker,
            &req.exclude,
            &idle_ms,
            &req.caps.0,
            &req.caps.1,
            &max_body_bytes,
        ];
        let rows = self.stmt.query_raw(client, &params).await?;
        // The budget is counted from here (the database's "now").
        let claimed_at = Instant::now();
        let mut rows = std::pin::pin!(rows);
        let mut bodies: HashMap<i64, Bytes> = HashMap::new();
        let mut claim = Claim::default();
        while let Some(r) = rows.try_next().await? {
            let delivery_id: i64 = r.try_get(0)?;
            let claim_token: i32 = r.try_get(1)?;
            let event_id: i64 = r.try_get(2)?;
            let body = match (bodies.get(&event_id), r.try_get::<_, Option<&str>>(9)?) {
                (Some(shared), _) => shared.clone(),
                (None, Some(text)) => {
                    let body = req.held.hold(text);
                    bodies.insert(event_id, body.clone());
                    body
                }
                (None, None) => {
                    claim.without_body.push((delivery_id, claim_token));
                    continue;
                }
            };
            claim.deliveries.push(Claimed {
                delivery_id,
                claim_token,
                event_id,
                endpoint_id: r.try_get(3)?,
                attempt: r.try_get(4)?,
                url: r.try_get(5)?,
                headers: r.try_get(6)?,
                signature: r.try_get(7)?,
                signed_at: r.try_get(8)?,
                body,
                timeout_ms: r.try_get(10)?,
                max_in_flight: r.try_get(11)?,
                rate_limit: r.try_get(12)?,
                retry_schedule: r.try_get::<_, Option<Vec<i64>>>(13)?.map(|ms| {
                    ms.into_iter()
                        .map(|m| Duration::from_millis(m.max(0) as u64))
                        .collect()
                }),
                retry_deadline: r.try_get::<_, Option<i64>>(14)?.map(|left| {
                    claimed_at
                        .checked_add(Duration::from_millis(left.max(0) as u64))
                        .unwrap_or(claimed_at)
                }),
                traceparent: r.try_get(15)?,
            });
        }
        Ok(claim)
    }
}

/// Why the database did not claim, as far as the claim loop is concerned.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The connection broke or the database cannot claim now (restarting,
    /// read-only after a failover, a lock, an upgrade or a grant in
    /// progress): the loop drops the connection, backs off, connects again
    /// and claims again. Whatever was leased before stays held.
    #[error("{}", db::Report(.0.as_ref()))]
    Lost(Box<dyn std::error::Error + Send + Sync>),
    /// `webhook.claim()` refused webhookd's own arguments (SQLSTATE class
    /// 22: the worker name, the caps): the same request is refused every
    /// time, so the loop stops and `webhookd run` exits with the server's
    /// words rather than retry it forever.
    #[error("webhook.claim() refused webhookd's request: {}", db::Report(.0.as_ref()))]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

impl From<tokio_postgres::Error> for ClaimError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Of the requests db::failure calls refused, only webhookd's own
        // arguments (class 22) are refused every time; any other is
        // retried on a new session, as a lost one is.
        let refused = db::failure(&e) == db::Failure::Refused
            && e.as_db_error()
                .is_some_and(|db| db.code().code().starts_with("22"));
        if refused {
            ClaimError::Refused(Box::new(e))
        } else {
            ClaimError::Lost(Box::new(e))
        }
    }
}

/// Where the claim loop gets its connection.
pub(crate) trait ClaimStore {
    type Conn: ClaimConn;
    /// A connection ready to claim (its statements prepared).
    async fn connect(&self) -> Result<Self::Conn, ClaimError>;
}

/// One claim connection.
pub(crate) trait ClaimConn {
    /// The connection is gone: connect again before the next claim.
    fn is_closed(&self) -> bool;
    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Claim, ClaimError>;
    /// Route up to `max` committed events, leasing none.
    async fn route(&self, max: i32) -> Result<i32, ClaimError>;
    /// Give leases back unattempted (`webhook.release()`).
    async fn release(&self, ids: &[i64], tokens: &[i32]) -> Result<(), ClaimError>;
}

/// The database through tokio-postgres.
pub(crate) struct Pg<'a>(pub &'a db::Database);

/// A claim connection: a client and its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    claimer: Claimer,
}

impl ClaimStore for Pg<'_> {
    type Conn = PgConn;

    async fn connect(&self) -> Result<PgConn, ClaimError> {
        let client = self.0.connect("webhookd claim").await?;
        let claimer = Claimer::prepare(&client).await?;
        Ok(PgConn { client, claimer })
    }
}

impl ClaimConn for PgConn {
    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<Claim, ClaimError> {
        Ok(self.claimer.claim(&self.client, req).await?)
    }

    async fn route(&self, max: i32) -> Result<i32, ClaimError> {
        Ok(self.claimer.route(&self.client, max).await?)
    }

    async fn release(&self, ids: &[i64], tokens: &[i32]) -> Result<(), ClaimError> {
        record::release(&self.client, ids, tokens).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_count_a_shared_body_once_until_its_last_holder_is_gone() {
        let held = HeldBytes::default();
        let a = held.hold("hello");
        let b = a.clone();
        let c = held.hold("!!");
        assert_eq!(held.get(), 7);
        assert_eq!(&a[..], b"hello");
        drop(a);
        assert_eq!(held.get(), 7);
        drop(b);
        assert_eq!(held.get(), 2);
        drop(c);
        assert_eq!(held.get(), 0);
    }
}

//! The console's one way into the database. Every read is a query of the
//! tables and views of schema `webhook` its role may read, every change a
//! call of the SQL API (`create_endpoint`, `alter_endpoint`, `replay`, ...):
//! the console decides nothing the SQL API does not, and says what the
//! SQL API said when it refuses (SQLSTATE, message, hint).

use std::collections::HashMap;

use deadpool_postgres::{Object, Pool};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::ToSchema;

use webhook_signing::headers;

/// Which pg_webhook the database has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `native` or `portable` (webhook.edition()).
    pub edition: String,
    pub version: String,
}

/// Why a call failed, typed up to the HTTP status that answers it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQL API refused: bad input, a missing object, a wrong state.
    #[error("{message}")]
    Refused {
        sqlstate: String,
        message: String,
        hint: Option<String>,
    },
    /// No row where the caller named one.
    #[error("{0}")]
    NotFound(String),
    /// The database could not be reached or answered nothing.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError::Refused {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                hint: db.hint().map(str::to_string),
            },
            None => StoreError::Unavailable(chain_text(&e)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// An error that is not the server's, and its sources: `error connecting
/// to server: Connection refused (os error 111)`.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

type Result<T> = std::result::Result<T, StoreError>;

/// A timestamp as RFC 3339 text in UTC (microseconds), whatever the
/// session's TimeZone, named as its column (`e.created_at`: `created_at`),
/// so that rows are read by name.
fn ts(expr: &str) -> String {
    let name = expr.rsplit('.').next().unwrap_or(expr);
    format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS {name}")
}

/// The window of `Activity`: the last hour in 5-minute buckets.
pub const ACTIVITY_BUCKETS: usize = 12;
const ACTIVITY_BUCKET_SECONDS: i32 = 300;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    /// Patterns: `*`, an exact type (`orders.insert`) or a prefix (`orders.*`).
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Extra request headers (values hidden from read-only tokens).
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    pub timeout_ms: i32,
    /// Deliveries of one ordering key one at a time, in commit order.
    pub ordered: bool,
    pub max_in_flight: i32,
    /// Requests per second at most; null: no limit.
    pub rate_limit: Option<i32>,
    /// The delays between attempts, in milliseconds; null: webhookd's
    /// schedule (`--retry-schedule`). After the last one the delivery is dead.
    pub retry_schedule_ms: Option<Vec<i64>>,
    /// No attempt is scheduled later than this after the event; null: no limit.
    pub retry_max_age_ms: Option<i64>,
    pub enabled: bool,
    /// Why it is disabled: by hand, `gone` (the receiver answered 410) or
    /// auto-disabled after failing too long.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub health: Health,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Pending deliveries (due, retrying or in flight).
    pub backlog: i64,
    pub oldest_pending_at: Option<String>,
    pub dead: i64,
    /// Since when every attempt has failed, as `webhook.maintain()` last
    /// found (it sends `webhook.endpoint.failing` then); null: not failing.
    pub failing_since: Option<String>,
    pub last_success_at: Option<String>,
    pub last_failure_at: Option<String>,
    /// HTTP status of the newest attempt; null when it got no answer.
    pub last_status: Option<i32>,
    pub attempts_last_hour: i64,
    pub failures_last_hour: i64,
    /// Successful attempts over all attempts in the last hour; null
    /// without attempts.
    pub success_rate_last_hour: Option<f64>,
    pub activity: Activity,
}

/// Attempts and failures per 5-minute bucket over the last hour, oldest
/// first (a sparkline).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Activity {
    pub since: String,
    pub bucket_seconds: i32,
    pub attempts: Vec<i64>,
    pub failures: Vec<i64>,
}

/// The activity of every endpoint in one window.
struct Window {
    since: String,
    per_endpoint: HashMap<i64, Activity>,
}

impl Window {
    fn empty(&self) -> Activity {
        Activity {
            since: self.since.clone(),
            bucket_seconds: ACTIVITY_BUCKET_SECONDS,
            attempts: vec![0; ACTIVITY_BUCKETS],
            failures: vec![0; ACTIVITY_BUCKETS],
        }
    }

    fn of(&self, endpoint: i64) -> Activity {
        self.per_endpoint
            .get(&endpoint)
            .cloned()
            .unwrap_or_else(|| self.empty())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub event_id: i64,
    pub endpoint_id: i64,
    pub event_type: String,
    /// `pending`, `succeeded` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_http_status: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub completed_at: Option<String>,
    pub created_at: String,
    pub in_flight: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    pub attempted_at: String,
    /// null: no HTTP answer (connection refused, timeout, ...); see error.
    pub http_status: Option<i32>,
    pub duration_ms: Option<f64>,
    pub error: Option<String>,
    /// The start of the receiver's response body, sanitized and capped.
    pub response_excerpt: Option<String>,
    /// The webhookd that made the attempt.
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventSummary {
    pub id: i64,
    pub event_type: String,
    pub created_at: String,
    pub ordering_key: Option<String>,
    /// Size of the body in bytes.
    pub size: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub event_type: String,
    pub created_at: String,
    pub ordering_key: Option<String>,
    /// The envelope every attempt sends: `{"type", "timestamp", "data"}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventType {
    pub event_type: String,
    /// Emitted by a tracked table.
    pub tracked: bool,
    /// When it was last seen among the newest events; null if not seen.
    pub last_seen_at: Option<String>,
}

/// What a delivery's request looks like on the wire, from the event and
/// the endpoint's configuration now. `webhook-timestamp` and
/// `webhook-signature` are made for each attempt and are not stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Request {
    pub method: String,
    pub url: String,
    /// In the order they are sent.
    pub headers: Vec<Header>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The settings of an endpoint a create or an update gives. In an update,
/// absent fields keep their value, `description: null` clears the
/// description and `rate_limit: null` removes the limit.
#[derive(Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub secret: Option<String>,
    pub description: Option<Option<String>>,
    pub headers: Option<serde_json::Value>,
    pub timeout_ms: Option<i32>,
    pub ordered: Option<bool>,
    pub max_in_flight: Option<i32>,
    pub rate_limit: Option<Option<i32>>,
    /// `Some(None)`: back to webhookd's schedule.
    pub retry_schedule_ms: Option<Option<Vec<i64>>>,
    /// `Some(None)`: no age limit.
    pub retry_max_age_ms: Option<Option<i64>>,
}

/// Filters of the deliveries list; `after` is the (event_id, endpoint_id)
/// of the last row of the previous page.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<i64>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

#[derive(Debug, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

type Param = Box<dyn ToSql + Sync + Send>;

impl Store {
    pub fn new(pool: Pool) -> Self {
        Store { pool }
    }

    async fn conn(&self) -> Result<Object> {
        Ok(self.pool.get().await?)
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let c = self.conn().await?;
        let st = c.prepare_cached(sql).await?;
        Ok(c.query(&st, params).await?)
    }

    async fn query_boxed(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let c = self.conn().await?;
        Ok(c.query(sql, &refs).await?)
    }

    /// Whether the database answers and has pg_webhook, in either edition
    /// (the console's health check): which edition and release it is.
    pub async fn ping(&self) -> Result<Installed> {
        // From the catalogs first: a native 0.1.0 has no webhook.version().
        let rows = self
            .query(
                "SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_webhook') AS native, \
                        EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                                 WHERE n.nspname = 'webhook' AND p.proname = 'version' AND p.pronargs = 0) AS has_version",
                &[],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound("the database answered nothing".into()))?;
        if let Some(version) = row.get::<_, Option<String>>("native") {
            return Ok(Installed {
                edition: "native".into(),
                version,
            });
        }
        if !row.get::<_, bool>("has_version") {
            return Err(StoreError::NotFound(
                "pg_webhook is not installed in this database (CREATE EXTENSION pg_webhook, or webhookd install)"
                    .into(),
            ));
        }
        let rows = self
            .query(
                "SELECT webhook.edition() AS edition, webhook.version() AS version",
                &[],
            )
            .await?;
        rows.first()
            .map(|r| Installed {
                edition: r.get("edition"),
                version: r.get("version"),
            })
            .ok_or_else(|| StoreError::NotFound("the database answered nothing".into()))
    }

    // Endpoints.

    pub async fn endpoints(&self, id: Option<i64>) -> Result<Vec<Endpoint>> {
        let sql = format!(
            "SELECT e.id, e.url, e.event_types, e.description, e.headers, e.timeout_ms, e.ordered, e.max_in_flight, \
                    e.rate_limit, e.enabled, e.disabled_reason, {}, {}, \
                    h.backlog, {}, h.dead, {}, {}, h.last_status, \
                    ARRAY(SELECT (extract(epoch FROM d) * 1000)::bigint FROM unnest(e.retry_schedule) WITH ORDINALITY u(d, o) ORDER BY o) AS retry_schedule_ms, \
                    e.retry_schedule IS NULL AS default_retry_schedule, \
                    (extract(epoch FROM e.retry_max_age) * 1000)::bigint AS retry_max_age_ms, {} \
               FROM webhook.endpoint e JOIN webhook.endpoint_health h ON h.endpoint_id = e.id \
              WHERE $1::bigint IS NULL OR e.id = $1 \
              ORDER BY e.id",
            ts("e.created_at"),
            ts("e.updated_at"),
            ts("h.oldest_pending_at"),
            ts("h.last_success_at"),
            ts("h.last_failure_at"),
            ts("h.failing_since"),
        );
        let rows = self.query(&sql, &[&id]).await?;
        let window = self.activity(id).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: i64 = r.get("id");
                let a = window.of(id);
                let attempts: i64 = a.attempts.iter().sum();
                let failures: i64 = a.failures.iter().sum();
                Endpoint {
                    id,
                    url: r.get("url"),
                    event_types: r.get("event_types"),
                    description: r.get("description"),
                    headers: r.get("headers"),
                    timeout_ms: r.get("timeout_ms"),
                    ordered: r.get("ordered"),
                    max_in_flight: r.get("max_in_flight"),
                    rate_limit: r.get("rate_limit"),
                    retry_schedule_ms: (!r.get::<_, bool>("default_retry_schedule"))
                        .then(|| r.get("retry_schedule_ms")),
                    retry_max_age_ms: r.get("retry_max_age_ms"),
                    enabled: r.get("enabled"),
                    disabled_reason: r.get("disabled_reason"),
                    created_at: r.get("created_at"),
                    updated_at: r.get("updated_at"),
                    health: Health {
                        backlog: r.get("backlog"),
                        oldest_pending_at: r.get("oldest_pending_at"),
                        dead: r.get("dead"),
                        failing_since: r.get("failing_since"),
                        last_success_at: r.get("last_success_at"),
                        last_failure_at: r.get("last_failure_at"),
                        last_status: r.get("last_status"),
                        attempts_last_hour: attempts,
                        failures_last_hour: failures,
                        success_rate_last_hour: (attempts > 0)
                            .then(|| (attempts - failures) as f64 / attempts as f64),
                        activity: a,
                    },
                }
            })
            .collect())
    }

    pub async fn endpoint(&self, id: i64) -> Result<Endpoint> {
        self.endpoints(Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::NotFound(format!("endpoint {id} does not exist")))
    }

    /// Every endpoint's activity over the last hour.
    async fn activity(&self, id: Option<i64>) -> Result<Window> {
        let sql = format!(
            "WITH s AS MATERIALIZED (SELECT now() - interval '1 hour' AS since) \
             SELECT {}, a.endpoint_id, \
                    least(greatest(floor(extract(epoch FROM a.bucket_start - s.since) / $2)::int, 0), $3 - 1) AS bucket, \
                    a.attempts, a.failures \
               FROM s LEFT JOIN LATERAL (SELECT x.* FROM webhook.endpoint_activity(s.since, make_interval(secs => $2)) x \
                                          WHERE $1::bigint IS NULL OR x.endpoint_id = $1) a ON true",
            ts("s.since")
        );
        let buckets = ACTIVITY_BUCKETS as i32;
        let rows = self
            .query(&sql, &[&id, &f64::from(ACTIVITY_BUCKET_SECONDS), &buckets])
            .await?;
        let mut w = Window {
            since: rows.first().map(|r| r.get("since")).unwrap_or_default(),
            per_endpoint: HashMap::new(),
        };
        for r in &rows {
            let (Some(endpoint), Some(i)) = (
                r.get::<_, Option<i64>>("endpoint_id"),
                r.get::<_, Option<i32>>("bucket"),
            ) else {
                continue;
            };
            let Some(i) = usize::try_from(i).ok().filter(|i| *i < ACTIVITY_BUCKETS) else {
                continue;
            };
            let empty = w.empty();
            let a = w.per_endpoint.entry(endpoint).or_insert(empty);
            a.attempts[i] += r.get::<_, i64>("attempts");
            a.failures[i] += r.get::<_, i64>("failures");
        }
        Ok(w)
    }

    /// The named arguments of create_endpoint/alter_endpoint for the
    /// fields given (absent ones are left to the SQL function's defaults).
    fn endpoint_args(
        change: EndpointChange,
        first: usize,
        for_update: bool,
    ) -> (Vec<String>, Vec<Param>) {
        let mut names = Vec::new();
        let mut params: Vec<Param> = Vec::new();
        let mut add = |name: &str, cast: &str, p: Param| {
            names.push(format!(
                "{name} => {}",
                cast.replace('$', &format!("${}", first + params.len()))
            ));
            params.push(p);
        };
        if let Some(v) = change.url {
            add("url", "$::text", Box::new(v));
        }
        if let Some(v) = change.event_types {
            add("event_types", "$::text[]", Box::new(v));
        }
        if let Some(v) = change.secret {
            add("secret", "$::text", Box::new(v));
        }
        match change.description {
            Some(Some(v)) => add("description", "$::text", Box::new(v)),
            // alter_endpoint: '' clears it; create: nothing to clear.
            Some(None) if for_update => add("description", "$::text", Box::<String>::default()),
            _ => {}
        }
        if let Some(v) = change.headers {
            add("headers", "$::jsonb", Box::new(v));
        }
        if let Some(v) = change.timeout_ms {
            add(
                "timeout",
                "($::int * interval '1 millisecond')",
                Box::new(v),
            );
        }
        if let Some(v) = change.ordered {
            add("ordered", "$::boolean", Box::new(v));
        }
        if let Some(v) = change.max_in_flight {
            add("max_in_flight", "$::int", Box::new(v));
        }
        match change.rate_limit {
            Some(Some(v)) => add("rate_limit", "$::int", Box::new(v)),
            // alter_endpoint: 0 removes the limit.
            Some(None) if for_update => add("rate_limit", "$::int", Box::new(0i32)),
            _ => {}
        }
        match change.retry_schedule_ms {
            // In order; a delay the SQL API refuses (negative, too long)
            // or cannot represent is refused with its SQLSTATE.
            Some(Some(v)) => add(
                "retry_schedule",
                "ARRAY(SELECT m * interval '1 millisecond' FROM unnest($::bigint[]) WITH ORDINALITY u(m, o) ORDER BY o)",
                Box::new(v),
            ),
            Some(None) if for_update => add("default_retry_schedule", "$::boolean", Box::new(true)),
            _ => {}
        }
        let max_age = "($::bigint * interval '1 millisecond')";
        match change.retry_max_age_ms {
            Some(Some(v)) => add("retry_max_age", max_age, Box::new(v)),
            // alter_endpoint: 0 removes the limit.
            Some(None) if for_update => add("retry_max_age", max_age, Box::new(0i64)),
            _ => {}
        }
        (names, params)
    }

    /// Creates an endpoint; returns its id and its (only) secret.
    pub async fn create_endpoint(&self, change: EndpointChange) -> Result<(i64, String)> {
        let (names, params) = Self::endpoint_args(change, 1, false);
        let sql = format!(
            "WITH c AS MATERIALIZED (SELECT webhook.create_endpoint({}) AS id) \
             SELECT c.id, webhook.endpoint_secret(c.id) AS secret FROM c",
            names.join(", ")
        );
        let rows = self.query_boxed(&sql, &params).await?;
        let r = rows
            .first()
            .ok_or_else(|| StoreError::Unavailable("create_endpoint returned nothing".into()))?;
        Ok((r.get("id"), r.get("secret")))
    }

    pub async fn alter_endpoint(&self, id: i64, change: EndpointChange) -> Result<()> {
        let (mut names, mut params) = Self::endpoint_args(change, 2, true);
        names.insert(0, "id => $1::bigint".into());
        params.insert(0, Box::new(id));
        let sql = format!("SELECT webhook.alter_endpoint({})", names.join(", "));
        self.query_boxed(&sql, &params).await?;
        Ok(())
    }

    pub async fn enable_endpoint(&self, id: i64, enabled: bool) -> Result<()> {
        let sql = if enabled {
            "SELECT webhook.enable_endpoint($1)"
        } else {
            "SELECT webhook.disable_endpoint($1)"
        };
        self.query(sql, &[&id]).await?;
        Ok(())
    }

    pub async fn delete_endpoint(&self, id: i64) -> Result<()> {
        self.query("SELECT webhook.delete_endpoint($1)", &[&id])
            .await?;
        Ok(())
    }

    /// A new secret signs at once; the old ones keep signing for `overlap_seconds`.
    pub async fn rotate_secret(&self, id: i64, overlap_seconds: Option<f64>) -> Result<String> {
        let rows = match overlap_seconds {
            Some(s) => {
                self.query(
                    "SELECT webhook.rotate_secret($1, overlap => make_interval(secs => $2)) AS secret",
                    &[&id, &s],
                )
                .await?
            }
            None => {
                self.query("SELECT webhook.rotate_secret($1) AS secret", &[&id])
                    .await?
            }
        };
        Ok(rows.first().map(|r| r.get("secret")).unwrap_or_default())
    }

    pub async fn endpoint_secret(&self, id: i64) -> Result<String> {
        let rows = self
            .query("SELECT webhook.endpoint_secret($1) AS secret", &[&id])
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("secret"))
            .unwrap_or_default())
    }

    pub async fn send_test(&self, id: i64) -> Result<i64> {
        let rows = self
            .query("SELECT webhook.send_test($1) AS event_id", &[&id])
            .await?;
        Ok(rows.first().map(|r| r.get("event_id")).unwrap_or_default())
    }

    /// Dead deliveries of the endpoint since `since` (any text PostgreSQL
    /// reads as a timestamptz) made pending again.
    pub async fn replay(&self, id: i64, since: &str) -> Result<i32> {
        let rows = self
            .query(
                "SELECT webhook.replay($1, $2::text::timestamptz) AS replayed",
                &[&id, &since],
            )
            .await?;
        Ok(rows.first().map(|r| r.get("replayed")).unwrap_or_default())
    }

    // Deliveries.

    fn delivery(r: &Row) -> Delivery {
        Delivery {
            event_id: r.get("event_id"),
            endpoint_id: r.get("endpoint_id"),
            event_type: r.get("event_type"),
            status: r.get("status"),
            attempts: r.get("attempts"),
            next_attempt_at: r.get("next_attempt_at"),
            last_http_status: r.get("last_http_status"),
            last_error: r.get("last_error"),
            last_attempt_at: r.get("last_attempt_at"),
            completed_at: r.get("completed_at"),
            created_at: r.get("created_at"),
            in_flight: r.get("in_flight"),
        }
    }

    fn delivery_columns() -> String {
        format!(
            "d.event_id, d.endpoint_id, d.event_type, d.status, d.attempts, {}, d.last_http_status, d.last_error, \
             {}, {}, {}, d.in_flight",
            ts("d.next_attempt_at"),
            ts("d.last_attempt_at"),
            ts("d.completed_at"),
            ts("d.created_at")
        )
    }

    pub async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {} FROM webhook.deliveries d \
              WHERE ($1::bigint IS NULL OR d.endpoint_id = $1) \
                AND ($2::text IS NULL OR d.status = $2) \
                AND ($3::text IS NULL OR d.event_type = $3) \
                AND ($4::text IS NULL OR d.created_at >= $4::text::timestamptz) \
                AND ($5::text IS NULL OR d.created_at < $5::text::timestamptz) \
                AND ($6::bigint IS NULL OR (d.event_id, d.endpoint_id) < ($6, $7::bigint)) \
              ORDER BY d.event_id DESC, d.endpoint_id DESC \
              LIMIT $8",
            Self::delivery_columns()
        );
        let (after_event, after_endpoint) = match f.after {
            Some((e, p)) => (Some(e), Some(p)),
            None => (None, None),
        };
        let rows = self
            .query(
                &sql,
                &[
                    &f.endpoint_id,
                    &f.status,
                    &f.event_type,
                    &f.since,
                    &f.until,
                    &after_event,
                    &after_endpoint,
                    &f.limit,
                ],
            )
            .await?;
        Ok(rows.iter().map(Self::delivery).collect())
    }

    pub async fn delivery_of(&self, event_id: i64, endpoint_id: i64) -> Result<Delivery> {
        let sql = format!(
            "SELECT {} FROM webhook.deliveries d WHERE d.event_id = $1 AND d.endpoint_id = $2",
            Self::delivery_columns()
        );
        let rows = self.query(&sql, &[&event_id, &endpoint_id]).await?;
        rows.first().map(Self::delivery).ok_or_else(|| {
            StoreError::NotFound(format!(
                "event {event_id} has no delivery to endpoint {endpoint_id}"
            ))
        })
    }

    pub async fn deliveries_of_event(&self, event_id: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {} FROM webhook.deliveries d WHERE d.event_id = $1 ORDER BY d.endpoint_id",
            Self::delivery_columns()
        );
        let rows = self.query(&sql, &[&event_id]).await?;
        Ok(rows.iter().map(Self::delivery).collect())
    }

    pub async fn attempts(&self, event_id: i64, endpoint_id: i64) -> Result<Vec<Attempt>> {
        let sql = format!(
            "SELECT a.attempt, {}, a.http_status, a.duration_ms, a.error, a.response_excerpt, a.worker \
               FROM webhook.attempts a WHERE a.event_id = $1 AND a.endpoint_id = $2 ORDER BY a.id",
            ts("a.attempted_at")
        );
        let rows = self.query(&sql, &[&event_id, &endpoint_id]).await?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                attempt: r.get("attempt"),
                attempted_at: r.get("attempted_at"),
                http_status: r.get("http_status"),
                duration_ms: r.get("duration_ms"),
                error: r.get("error"),
                response_excerpt: r.get("response_excerpt"),
                worker: r.get("worker"),
            })
            .collect())
    }

    /// redeliver(): the event again, to one endpoint or to all.
    pub async fn redeliver(&self, event_id: i64, endpoint_id: Option<i64>) -> Result<i32> {
        let rows = self
            .query(
                "SELECT webhook.redeliver($1, $2) AS redelivered",
                &[&event_id, &endpoint_id],
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| r.get("redelivered"))
            .unwrap_or_default())
    }

    // Events.

    pub async fn events(&self, f: &EventFilter) -> Result<Vec<EventSummary>> {
        let sql = format!(
            "SELECT e.id, e.event_type, {}, e.ordering_key, octet_length(e.body) AS size \
               FROM webhook.events e \
              WHERE ($1::text IS NULL OR e.event_type = $1) \
                AND ($2::text IS NULL OR e.created_at >= $2::text::timestamptz) \
                AND ($3::text IS NULL OR e.created_at < $3::text::timestamptz) \
                AND ($4::bigint IS NULL OR e.id < $4) \
              ORDER BY e.id DESC LIMIT $5",
            ts("e.created_at")
        );
        let rows = self
            .query(
                &sql,
                &[&f.event_type, &f.since, &f.until, &f.after, &f.limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| EventSummary {
                id: r.get("id"),
                event_type: r.get("event_type"),
                created_at: r.get("created_at"),
                ordering_key: r.get("ordering_key"),
                size: r.get("size"),
            })
            .collect())
    }

    pub async fn event(&self, id: i64) -> Result<Event> {
        let sql = format!(
            "SELECT e.id, e.event_type, {}, e.ordering_key, e.payload FROM webhook.events e WHERE e.id = $1",
            ts("e.created_at")
        );
        let rows = self.query(&sql, &[&id]).await?;
        rows.first()
            .map(|r| Event {
                id: r.get("id"),
                event_type: r.get("event_type"),
                created_at: r.get("created_at"),
                ordering_key: r.get("ordering_key"),
                payload: r.get("payload"),
            })
            .ok_or_else(|| StoreError::NotFound(format!("event {id} does not exist")))
    }

    pub async fn event_types(&self) -> Result<Vec<EventType>> {
        let sql = format!(
            "SELECT t.event_type, t.tracked, {} FROM webhook.event_types() t",
            ts("t.last_seen_at")
        );
        let rows = self.query(&sql, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| EventType {
                event_type: r.get("event_type"),
                tracked: r.get("tracked"),
                last_seen_at: r.get("last_seen_at"),
            })
            .collect())
    }
}

/// The request a delivery sends, as far as it is known without the
/// endpoint's secret: see `Request`.
pub fn request_of(endpoint: &Endpoint, event_id: i64, user_agent: &str) -> Request {
    let header = |name: &str, value: String| Header {
        name: name.to_string(),
        value,
    };
    // Every header of headers::STANDARD, with what is known of its value.
    let mut headers: Vec<Header> = headers::STANDARD
        .iter()
        .map(|&name| {
            let value = match name {
                headers::CONTENT_TYPE => headers::JSON.into(),
                headers::USER_AGENT => user_agent.into(),
                headers::WEBHOOK_ID => event_id.to_string(),
                headers::WEBHOOK_TIMESTAMP => "(the attempt's time, in Unix seconds)".into(),
                _ => "v1,… (one per signing secret, made for each attempt)".into(),
            };
            header(name, value)
        })
        .collect();
    if let Some(obj) = endpoint.headers.as_object() {
        for (k, v) in obj {
            headers.push(header(k, v.as_str().unwrap_or_default().to_string()));
        }
    }
    Request {
        method: "POST".into(),
        url: endpoint.url.clone(),
        headers,
    }
}

//! Claim: lease a batch of due deliveries through `webhook.claim()`, which
//! also routes newly committed events and signs each request in the database
//! (the dispatcher never sees a secret).

use std::time::Duration;

use tokio_postgres::{Client, Statement};

#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub claim_token: i32,
    pub event_id: i64,
    pub endpoint_id: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub url: String,
    /// The endpoint's own headers (a JSON object of strings); the standard
    /// ones are built from the fields below (deliver.rs).
    pub headers: serde_json::Value,
    /// `webhook-signature`: one `v1,...` per current secret.
    pub signature: String,
    /// `webhook-timestamp`: unix seconds the signature covers.
    pub signed_at: i64,
    pub body: String,
    pub timeout_ms: i32,
    pub max_in_flight: i32,
    /// Requests per second at most, if the endpoint has a limit.
    pub rate_limit: Option<i32>,
}

pub struct Claimer {
    stmt: Statement,
    route: Statement,
}

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
}

impl Claimer {
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let stmt = client
            .prepare(
                "SELECT delivery_id, claim_token, event_id, endpoint_id, attempt, url, headers, signature, signed_at, body, timeout_ms, max_in_flight, rate_limit \
                   FROM webhook.claim($1::int, make_interval(secs => $2::float8), $3::text, $4::bigint[], $5::int, $6::bigint[], $7::int[])",
            )
            .await?;
        let route = client.prepare("SELECT webhook.route($1::int)").await?;
        Ok(Claimer { stmt, route })
    }

    /// Route up to `max` committed events into pending deliveries, leasing
    /// none (`webhook.route()`); how many events were routed.
    pub async fn route(&self, client: &Client, max: i32) -> Result<i32, tokio_postgres::Error> {
        Ok(client.query_one(&self.route, &[&max]).await?.get(0))
    }

    pub async fn claim(
        &self,
        client: &Client,
        req: &ClaimRequest<'_>,
    ) -> Result<Vec<Claimed>, tokio_postgres::Error> {
        let idle_ms = req.idle_hint.as_millis().min(i32::MAX as u128) as i32;
        let rows = client
            .query(
                &self.stmt,
                &[
                    &req.max,
                    &req.lease.as_secs_f64(),
                    &req.worker,
                    &req.exclude,
                    &idle_ms,
                    &req.caps.0,
                    &req.caps.1,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    delivery_id: r.try_get(0)?,
                    claim_token: r.try_get(1)?,
                    event_id: r.try_get(2)?,
                    endpoint_id: r.try_get(3)?,
                    attempt: r.try_get(4)?,
                    url: r.try_get(5)?,
                    headers: r.try_get(6)?,
                    signature: r.try_get(7)?,
                    signed_at: r.try_get(8)?,
                    body: r.try_get(9)?,
                    timeout_ms: r.try_get(10)?,
                    max_in_flight: r.try_get(11)?,
                    rate_limit: r.try_get(12)?,
                })
            })
            .collect()
    }
}

//! Retention: `webhook.maintain()` every `--maintain-interval` (a minute by
//! default), so a deployment needs no pg_cron. It starts a new generation
//! of the outbox's partitions and drops the generations past the retention
//! (extension/sql/retention.sql). Every webhookd runs it; the database lets
//! one call at a time through and the others return at once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{self, Database};
use crate::observe::telemetry;
use tracing::Instrument;

/// What one call did, as `webhook.maintain()` returns it.
#[derive(Debug)]
struct Run {
    generation: Option<i64>,
    started: bool,
    dropped: i32,
    kept: i32,
    deferred: i32,
}

pub async fn run(database: Database, every: Duration, shutdown: CancellationToken) {
    let mut client = None;
    let mut backoff = db::Backoff::default();
    let mut last_kept = 0;
    let mut refused = false;
    loop {
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = db::connect_with_backoff("maintain", &mut backoff, &shutdown, || {
                database.connect("webhookd maintain")
            })
            .await;
        }
        if let Some(c) = client.as_ref() {
            match maintain(c).instrument(telemetry::maintain_span()).await {
                Ok(r) => {
                    refused = false;
                    if r.started || r.dropped > 0 {
                        tracing::info!(
                            generation = r.generation,
                            started = r.started,
                            dropped = r.dropped,
                            "retention: generations started and dropped"
                        );
                    }
                    if r.kept > last_kept {
                        tracing::warn!(
                            kept = r.kept,
                            "retention: generations past the retention kept for their pending deliveries \
                             (SELECT * FROM webhook.endpoint_health shows whose)"
                        );
                    }
                    if r.deferred > 0 {
                        tracing::info!(
                            deferred = r.deferred,
                            "retention: a long transaction held the outbox; dropping again next time"
                        );
                    }
                    last_kept = r.kept;
                }
                Err(e) => {
                    // 42501: the role may not (granted by grant_dispatcher);
                    // 42883: the extension is older (ALTER EXTENSION ... UPDATE).
                    // Said once, and tried again every interval.
                    let code = e.code().map(|c| c.code().to_owned());
                    if matches!(code.as_deref(), Some("42501" | "42883")) {
                        if !refused {
                            tracing::warn!(
                                error = %db::Report(&e),
                                "retention: webhook.maintain() cannot run; nothing expires until it does \
                                 (SELECT webhook.grant_dispatcher('<role>'); after ALTER EXTENSION pg_webhook UPDATE)"
                            );
                        }
                        refused = true;
                    } else {
                        tracing::warn!(error = %db::Report(&e), "retention: webhook.maintain() failed; trying again");
                        client = None;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn maintain(c: &tokio_postgres::Client) -> Result<Run, tokio_postgres::Error> {
    // Unnamed (parsed with the call): once a minute, and through any pooler.
    let row = c
        .query_typed_one(
            "SELECT generation, started, dropped, kept, deferred FROM webhook.maintain()",
            &[],
        )
        .await?;
    Ok(Run {
        generation: row.try_get("generation")?,
        started: row.try_get::<_, Option<bool>>("started")?.unwrap_or(false),
        dropped: row.try_get::<_, Option<i32>>("dropped")?.unwrap_or(0),
        kept: row.try_get::<_, Option<i32>>("kept")?.unwrap_or(0),
        deferred: row.try_get::<_, Option<i32>>("deferred")?.unwrap_or(0),
    })
}

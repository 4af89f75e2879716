//! `webhookd status`: backlog, oldest pending age and per-endpoint health.

use anyhow::Context;
use clap::Args;

use crate::db::{reported, Database, DatabaseArgs};

/// `webhookd status`'s flags.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DatabaseArgs,
}

pub async fn command(a: StatusArgs) -> anyhow::Result<()> {
    run(&a.db.database()?).await
}

pub async fn run(database: &Database) -> anyhow::Result<()> {
    let client = database
        .connect("webhookd status")
        .await
        .map_err(reported)
        .context("connecting to the database")?;
    // webhook.edition() and version() are new in 0.2.0; a database still
    // at 0.1.0 (its extension not yet updated) is native, its version in
    // pg_extension.
    let has_edition: bool = client
        .query_one(
            "SELECT to_regprocedure('webhook.edition()') IS NOT NULL",
            &[],
        )
        .await
        .map_err(reported)
        .context("reading which edition the database has")?
        .get(0);
    let query = if has_edition {
        "SELECT webhook.edition(), webhook.version()"
    } else {
        "SELECT 'native', (SELECT extversion FROM pg_extension WHERE extname = 'pg_webhook')"
    };
    let row = client
        .query_one(query, &[])
        .await
        .map_err(reported)
        .context("reading which edition the database has")?;
    let (edition, version): (String, Option<String>) = (row.get(0), row.get(1));
    println!(
        "pg_webhook: {edition} edition {}",
        version.as_deref().unwrap_or("(version unknown)")
    );
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'pending'), \
                    coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')), 0)::float8, \
                    count(*) FILTER (WHERE status = 'dead') \
               FROM webhook.deliveries",
            &[],
        )
        .await
        .map_err(reported)
        .context("reading the backlog")?;
    let (pending, oldest, dead): (i64, f64, i64) = (row.get(0), row.get(1), row.get(2));
    println!("backlog: {pending} pending (oldest {oldest:.1}s), {dead} dead");
    let rows = client
        .query(
            "SELECT endpoint_id, url, enabled, backlog, dead, \
                    coalesce(to_char(last_success_at, 'YYYY-MM-DD HH24:MI:SS'), '-'), \
                    coalesce(to_char(last_failure_at, 'YYYY-MM-DD HH24:MI:SS'), '-'), \
                    coalesce(disabled_reason, '') \
               FROM webhook.endpoint_health ORDER BY endpoint_id",
            &[],
        )
        .await
        .map_err(reported)
        .context("reading endpoint health")?;
    println!(
        "{:>4}  {:<40} {:<8} {:>8} {:>6}  {:<19}  {:<19}",
        "id", "url", "state", "backlog", "dead", "last success", "last failure"
    );
    for r in rows {
        let id: i64 = r.get(0);
        let url: String = r.get(1);
        let enabled: bool = r.get(2);
        let reason: String = r.get(7);
        println!(
            "{:>4}  {:<40} {:<8} {:>8} {:>6}  {:<19}  {:<19} {}",
            id,
            url.chars().take(40).collect::<String>(),
            if enabled { "enabled" } else { "DISABLED" },
            r.get::<_, i64>(3),
            r.get::<_, i64>(4),
            r.get::<_, String>(5),
            r.get::<_, String>(6),
            reason
        );
    }
    Ok(())
}

//! `webhookd status`: backlog, oldest pending age and per-endpoint health.

use anyhow::Context;
use clap::Args;

use super::install::{self, Found};
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
    // What `install` reads (the catalogs first: a native 0.1.0 has no
    // webhook.version()); a database without pg_webhook is an error, not
    // a report of nothing pending.
    let (edition, version) = match install::found(&client).await? {
        Found::Native(v) => ("native", v),
        Found::Portable { version, .. } => ("portable", version),
        Found::Nothing | Found::EmptySchema => anyhow::bail!(
            "pg_webhook is not installed in this database (CREATE EXTENSION pg_webhook, or webhookd install)"
        ),
        Found::ForeignSchema => {
            anyhow::bail!("schema webhook in this database is not pg_webhook's")
        }
    };
    println!("pg_webhook: {edition} edition {version}");
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

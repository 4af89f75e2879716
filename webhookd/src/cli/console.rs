//! `webhookd console`: the admin API and web console of crate
//! pg-webhook-console, with webhookd's database flags and the facts of
//! the dispatcher it describes.

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::db::DatabaseArgs;
use crate::net::egress::USER_AGENT;
use crate::policy::retry;
use pg_webhook_console::{ConsoleArgs, Facts};

#[derive(Args, Debug)]
pub struct ConsoleCommand {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// What the console shows and reads as webhookd does.
const FACTS: Facts = Facts {
    user_agent: USER_AGENT,
    default_retry_schedule: retry::DEFAULT_SCHEDULE,
    parse_schedule: retry::parse_schedule,
};

pub async fn command(args: ConsoleCommand, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = args.db;
    let pool = move |size| Ok(db.database()?.pool("webhookd console", size)?);
    pg_webhook_console::run(args.console, pool, FACTS, shutdown).await
}

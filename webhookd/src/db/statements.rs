//! webhookd's statements: prepared once per session (a parse saved on
//! every claim and record) where sessions keep them, and sent unnamed,
//! parsed with each call in its one round trip, once a connection has lost
//! one. A pooler in transaction mode (PgBouncer before 1.21, or with
//! `max_prepared_statements = 0`) hands each transaction to whichever
//! server connection is free, where a statement prepared on another does
//! not exist (SQLSTATE 26000); an unnamed statement lives within the
//! one transaction PgBouncer gives it.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, RowStream, Statement};

static UNNAMED: AtomicBool = AtomicBool::new(false);

/// Sessions do not keep prepared statements: from now on every connection
/// of this process sends its statements unnamed. Said once.
pub(super) fn lost_prepared_statements() {
    if !UNNAMED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "a connection lost a statement prepared on it (SQLSTATE 26000: a connection pooler in transaction \
             mode?); webhookd sends its statements unnamed from now on, parsed with each call"
        );
    }
}

fn unnamed() -> bool {
    UNNAMED.load(Ordering::Relaxed)
}

/// One statement of webhookd's with its parameter types: prepared on a
/// session (`prepare`) unless sessions have been seen to lose them.
pub struct Prepared {
    sql: &'static str,
    types: &'static [Type],
    statement: Option<Statement>,
}

impl Prepared {
    pub async fn prepare(
        client: &Client,
        sql: &'static str,
        types: &'static [Type],
    ) -> Result<Self, tokio_postgres::Error> {
        let statement = if unnamed() {
            None
        } else {
            Some(client.prepare_typed(sql, types).await?)
        };
        Ok(Prepared {
            sql,
            types,
            statement,
        })
    }

    /// The rows, as a stream.
    pub async fn query_raw(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream, tokio_postgres::Error> {
        match &self.statement {
            Some(s) if !unnamed() => client.query_raw(s, params.iter().copied()).await,
            _ => {
                client
                    .query_typed_raw(
                        self.sql,
                        params.iter().copied().zip(self.types.iter().cloned()),
                    )
                    .await
            }
        }
    }

    /// The one row.
    pub async fn query_one(
        &self,
        client: &Client,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        match &self.statement {
            Some(s) if !unnamed() => client.query_one(s, params).await,
            _ => {
                let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
                    .iter()
                    .copied()
                    .zip(self.types.iter().cloned())
                    .collect();
                client.query_typed_one(self.sql, &typed).await
            }
        }
    }
}

//! Connections to PostgreSQL, and reconnecting with backoff.
//!
//! Every connection webhookd opens (claim, record, LISTEN, the metrics
//! poll, `webhookd status`, release) goes through one `Database`: the
//! connection string parsed once, with the TLS setup its `sslmode` asks for.
//!
//! `sslmode` follows libpq: `disable`; `allow` and `prefer` (TLS when the
//! server offers it, the certificate not checked, else plaintext);
//! `require` (TLS, the certificate not checked, unless a root certificate
//! is given: then as `verify-ca`); `verify-ca` (the chain must lead to the
//! root certificate; any host name); `verify-full` (the chain and the host
//! name). tokio-postgres itself knows only disable/prefer/require and
//! refuses `sslrootcert`, so both are taken out of the string here and
//! enforced by the rustls configuration handed to it.
//!
//! Every session also gets what webhookd relies on (`session_settings`),
//! whatever the server, database or role defaults say; every database
//! error is logged with what the server said (`Report`).
//!
//! - `session`: the timeouts and settings every session is opened with.
//! - `tls`: `sslmode` / `sslrootcert` and the rustls configuration.
//! - `reconnect`: the one reconnect loop, with backoff.
//! - `listen`: the LISTEN connection that wakes the claim loop.
//! - `failure`: what a failed statement means for its session.
//! - `statements`: prepared where sessions keep them, unnamed where not.

mod failure;
mod listen;
mod reconnect;
mod session;
mod statements;
mod tls;

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use failure::{failure, Failure};
pub use listen::listen;
pub use reconnect::{connect_with_backoff, connection_states, Backoff};
pub use session::ROUND_TRIP_TIMEOUT;
use session::{
    startup_options, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, LIBPQ_KEEPALIVE_IDLE,
    TCP_USER_TIMEOUT,
};
pub use statements::Prepared;
use tls::{split_tls_options, tls_config, Mode};

/// How to reach PostgreSQL; shared by every command that connects.
#[derive(Args, Debug)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string (postgres://user@host:port/db or
    /// key=value form). TLS by libpq's sslmode (disable, allow, prefer,
    /// require, verify-ca, verify-full) and sslrootcert.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// PEM file of the certificate authority that signed the database
    /// server's certificate, when the URL names no sslrootcert.
    #[arg(long, env = "WEBHOOKD_DATABASE_CA_FILE")]
    pub database_ca_file: Option<std::path::PathBuf>,
}

impl DatabaseArgs {
    pub fn database(&self) -> anyhow::Result<Database> {
        Database::new(&self.database_url, self.database_ca_file.as_deref())
            .context("--database-url")
    }
}

/// A database error as webhookd logs it: for an error from the server,
/// `SQLSTATE 42501: permission denied for function claim (detail: …; hint:
/// …)` (tokio-postgres's own text says only "db error"); otherwise the
/// error and its sources, `error connecting to server: Connection refused
/// (os error 111)`. Takes any error, so that one wrapping a database error
/// (the recorder's) reads the same: `error = %db::Report(&e)`.
pub struct Report<'a>(pub &'a (dyn StdError + 'static));

/// The error with what the server said, for a command's answer (anyhow's
/// chain would show tokio-postgres's "db error" first and the server's
/// message only below).
pub fn reported(e: tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", Report(&e))
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = String::new();
        let mut next: Option<&(dyn StdError + 'static)> = Some(self.0);
        while let Some(e) = next {
            next = e.source();
            if let Some(db) = e.downcast_ref::<tokio_postgres::error::DbError>() {
                let sep = if written.is_empty() { "" } else { ": " };
                write!(f, "{sep}SQLSTATE {}: {}", db.code().code(), db.message())?;
                match (db.detail(), db.hint()) {
                    (Some(d), Some(h)) => write!(f, " (detail: {d}; hint: {h})")?,
                    (Some(d), None) => write!(f, " (detail: {d})")?,
                    (None, Some(h)) => write!(f, " (hint: {h})")?,
                    (None, None) => {}
                }
                return Ok(());
            }
            // Its text ("db error") says nothing its source does not.
            let wraps_db = e
                .downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|pg| pg.as_db_error().is_some());
            let text = e.to_string();
            if wraps_db || text.is_empty() || written.contains(&text) {
                continue;
            }
            if !written.is_empty() {
                f.write_str(": ")?;
                written.push_str(": ");
            }
            f.write_str(&text)?;
            written.push_str(&text);
        }
        Ok(())
    }
}

/// Why a connection string cannot be used. Never carries the string
/// itself (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid database URL: {0}")]
    Invalid(String),
    #[error("sslmode {0:?} is not supported: use disable, allow, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    #[error("sslmode={0} needs a root certificate: sslrootcert=<file> in the database URL, or --database-ca-file")]
    NoRootCert(&'static str),
    #[error("root certificate {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connection pool: {0}")]
    Pool(String),
}

/// How to reach the database: the parsed connection string and its TLS
/// setup. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Database")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A connection that is driven by its owner (LISTEN reads notifications
/// from it).
pub type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

impl Database {
    /// `conn`: a connection string with libpq's `sslmode` and
    /// `sslrootcert`; `ca_file`: the root certificate when the string names
    /// none.
    pub fn new(conn: &str, ca_file: Option<&Path>) -> Result<Self, ConfigError> {
        let split = split_tls_options(conn)?;
        let mode = Mode::parse(split.sslmode.as_deref().unwrap_or("prefer"))?;
        let mut config: tokio_postgres::Config = split
            .rest
            .parse()
            .map_err(|e: tokio_postgres::Error| ConfigError::Invalid(e.to_string()))?;
        let root = split
            .sslrootcert
            .or_else(|| ca_file.map(|p| p.display().to_string()));
        config.ssl_mode(match mode {
            Mode::Disable => SslMode::Disable,
            Mode::Allow | Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_keepalives_idle() == LIBPQ_KEEPALIVE_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        let options = startup_options(config.get_options());
        config.options(options);
        let tls = tls_config(mode, root.as_deref())?;
        Ok(Database {
            config,
            tls: MakeRustlsConnect::new(tls),
        })
    }

    /// Connect, and drive the connection in the background.
    pub async fn connect(&self, application_name: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.connect_raw(application_name).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %Report(&e), "database connection closed");
            }
        });
        Ok(client)
    }

    /// A pool of up to `size` connections (the console: requests from
    /// several browsers at once, each a short autocommit statement). A
    /// connection is checked with a round trip before it is reused, so one
    /// the network or a server restart closed is replaced, not handed out.
    pub fn pool(
        &self,
        application_name: &str,
        size: usize,
    ) -> Result<deadpool_postgres::Pool, ConfigError> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        let manager = deadpool_postgres::Manager::from_config(
            config,
            self.tls.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Verified,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(size.max(1))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| ConfigError::Pool(e.to_string()))
    }

    /// Connect; the caller drives the connection.
    pub async fn connect_raw(
        &self,
        application_name: &str,
    ) -> Result<(Client, Connection), tokio_postgres::Error> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        config.connect(self.tls.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_errors_that_are_not_the_servers_give_their_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("connecting")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(Report(&e).to_string(), "connecting: refused");
        // A source its error already quotes is not repeated.
        #[derive(Debug, thiserror::Error)]
        #[error("connecting: {0}")]
        struct Quoting(#[source] std::io::Error);
        let e = Quoting(std::io::Error::other("refused"));
        assert_eq!(Report(&e).to_string(), "connecting: refused");
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = Database::new("postgres://u:hunter2@h:notaport/db", None).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let d = Database::new("postgres://u:hunter2@h/db", None).unwrap();
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}

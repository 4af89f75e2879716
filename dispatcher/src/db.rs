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

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::sync::Notify;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

/// Longest a statement of webhookd's may run. A claim, a batch of
/// outcomes or a routing pass takes milliseconds; this is for a loaded
/// server and a large backlog, not a budget. It is under the default lease
/// (60 s), so what a claim leases is still leased when it returns, and
/// under the recorder's own wait (record.rs), so the server cancels first
/// and says why, rather than the connection being dropped.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One round trip of webhookd's (a claim, a record, a release) taking
/// longer than this counts as the database being unreachable: the
/// connection is replaced. Longer than the statement timeout, so a slow
/// statement is cancelled by the server (which says why, and keeps the
/// connection) before this fires; it is for a network that stopped
/// answering.
pub const ROUND_TRIP_TIMEOUT: Duration = STATEMENT_TIMEOUT.saturating_add(Duration::from_secs(5));

/// A cut network (a partition, a database host gone without a reset) must
/// not leave a connection waiting for TCP's own retransmission timeout,
/// about 15 minutes: data unacknowledged this long drops the connection
/// (TCP_USER_TIMEOUT), and an idle one (LISTEN) is probed after
/// KEEPALIVE_IDLE, every KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES times. The
/// kernel acknowledges data however busy the server is, so a slow query
/// never trips this. Settings in DATABASE_URL win.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// tokio-postgres's default keepalive idle time (what an unset one reads as).
const LIBPQ_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// Longest a statement of webhookd's waits for a lock. Queue statements
/// hold row locks for milliseconds (claims skip locked rows); a wait this
/// long means something else (a long transaction, DDL, an extension
/// upgrade) holds the lock, and failing with the server's message, then
/// retrying with backoff, says so where waiting silently would not.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What webhookd's sessions rely on, sent in the startup packet of every
/// connection (no extra round trip; it overrides server, database and role
/// defaults, `ALTER ROLE … IN DATABASE … SET` included). The one place
/// these are decided.
///
/// Not set, because nothing depends on them: `DateStyle`, `TimeZone`,
/// `IntervalStyle`, `extra_float_digits` and `bytea_output` (parameters
/// and results travel in binary; `webhookd status` shows times in the
/// database's zone on purpose), and `client_encoding` (tokio-postgres
/// always asks for UTF8).
fn session_settings() -> [(&'static str, String); 6] {
    [
        // webhook.claim() and webhook.route() refuse any other level:
        // leasing with SKIP LOCKED and the routing snapshot rest on READ
        // COMMITTED's snapshot per statement.
        ("default_transaction_isolation", "read committed".into()),
        // Claiming and recording write.
        ("default_transaction_read_only", "off".into()),
        (
            "statement_timeout",
            format!("{}ms", STATEMENT_TIMEOUT.as_millis()),
        ),
        ("lock_timeout", format!("{}ms", LOCK_TIMEOUT.as_millis())),
        // Every statement of webhookd's is its own transaction, so a
        // session of ours is never idle in one; off, so that a value meant
        // for interactive sessions decides nothing here either way.
        ("idle_in_transaction_session_timeout", "0".into()),
        // Every name webhookd writes is qualified (`webhook.`) or a
        // built-in: nothing placed earlier on a path, and no temporary
        // object, may stand in for one.
        ("search_path", "pg_catalog, pg_temp".into()),
    ]
}

/// The startup `options` for `session_settings()`, followed by the user's
/// own (`-c name=value` words; the server splits them at whitespace, and a
/// backslash escapes the next character). The user's come last, so an
/// explicit choice in the connection string still wins.
fn startup_options(user: Option<&str>) -> String {
    let mut out = String::new();
    for (name, value) in session_settings() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        for c in format!("{name}={value}").chars() {
            if c == '\\' || c.is_whitespace() {
                out.push('\\');
            }
            out.push(c);
        }
    }
    if let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) {
        out.push(' ');
        out.push_str(user);
    }
    out
}

/// A database error as webhookd logs it: for an error from the server,
/// `SQLSTATE 42501: permission denied for function claim (detail: …; hint:
/// …)` (tokio-postgres's own text says only "db error"); otherwise the
/// error and its sources, `error connecting to server: Connection refused
/// (os error 111)`. Takes any error, so that one wrapping a database error
/// (the recorder's) reads the same: `error = %db::Report(&e)`.
pub struct Report<'a>(pub &'a (dyn StdError + 'static));

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

/// Exponential backoff from 100 ms to 5 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(100),
        }
    }
}

impl Backoff {
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// Whether each of this process's connections (by name: claim, record,
/// listen, maintain, metrics) is up: false from the moment one is being
/// made again until it is. Read by /metrics (webhookd_database_connected).
static CONNECTIONS: std::sync::Mutex<std::collections::BTreeMap<&'static str, bool>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn set_connected(what: &'static str, up: bool) {
    if let Ok(mut c) = CONNECTIONS.lock() {
        c.insert(what, up);
    }
}

pub fn connection_states() -> Vec<(&'static str, bool)> {
    CONNECTIONS
        .lock()
        .map(|c| c.iter().map(|(k, v)| (*k, *v)).collect())
        .unwrap_or_default()
}

/// Open a connection with `open` (connect, then prepare what it needs),
/// again and again with `backoff` between tries, each failure logged in
/// the server's words, until it succeeds (the backoff is reset) or
/// `shutdown` is cancelled (None). webhookd's one reconnect loop: the
/// claim loop, the recorder, the LISTEN connection and the metrics poll
/// open theirs through it.
pub async fn connect_with_backoff<T, F, Fut>(
    what: &'static str,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    mut open: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    set_connected(what, false);
    while !shutdown.is_cancelled() {
        match open().await {
            Ok(conn) => {
                backoff.reset();
                set_connected(what, true);
                return Some(conn);
            }
            Err(e) => {
                tracing::warn!(connection = what, error = %Report(&e), "cannot connect to the database; retrying");
                tokio::select! {
                    _ = backoff.wait() => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
    None
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

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => return Err(ConfigError::SslMode(other.to_string())),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Allow => "allow",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// The TLS options taken out of a connection string, and the rest of it.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];

/// Takes `sslmode` and `sslrootcert` out of a connection string, in the URL
/// form (`postgres://...?sslmode=...`) or the key=value form, leaving the
/// rest as it was written.
fn split_tls_options(conn: &str) -> Result<Split, ConfigError> {
    let mut split = Split {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut take = |key: &str, value: String| match key {
        "sslmode" => split.sslmode = Some(value),
        _ => split.sslrootcert = Some(value),
    };
    let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
    if is_url {
        let (base, query) = match conn.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (conn, None),
        };
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k)?;
            if TAKEN.contains(&key.as_str()) {
                take(&key, percent_decode(v)?);
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        split.rest = rest;
        return Ok(split);
    }
    // key = value pairs; values unquoted (backslash escapes) or in single
    // quotes (backslash escapes), as libpq reads them.
    let mut rest = String::with_capacity(conn.len());
    let b = conn.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            rest.push_str(&conn[start..]);
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &conn[key_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' {
            return Err(ConfigError::Invalid(format!("missing \"=\" after {key:?}")));
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(ConfigError::Invalid("unterminated quoted value".into())),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        if TAKEN.contains(&key) {
            let value = String::from_utf8(value)
                .map_err(|_| ConfigError::Invalid(format!("{key} is not UTF-8")))?;
            take(key, value);
        } else {
            rest.push_str(&conn[start..i]);
        }
    }
    split.rest = rest;
    Ok(split)
}

fn percent_decode(s: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ConfigError::Invalid("a query parameter is not UTF-8".into()))
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration `mode` asks for (`root`: a PEM file, or
/// `system` for the bundled Web PKI roots).
fn tls_config(mode: Mode, root: Option<&str>) -> Result<rustls::ClientConfig, ConfigError> {
    let provider = provider();
    let roots = root.map(load_roots).transpose()?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        // Never used: no TLS is negotiated.
        (Mode::Disable, _) => Arc::new(NoVerify(provider)),
        // libpq checks nothing in these modes, root certificate or not.
        (Mode::Allow | Mode::Prefer, _) | (Mode::Require, None) => Arc::new(NoVerify(provider)),
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(ConfigError::NoRootCert(mode.name()))
        }
        (Mode::Require | Mode::VerifyCa, Some(roots)) => Arc::new(ChainOnly(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))?,
        )),
        (Mode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ConfigError::Tls(rustls::Error::General(e.to_string())))?
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn load_roots(path: &str) -> Result<RootCertStore, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    if path == "system" {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    let err = |reason: String| ConfigError::RootCert {
        path: path.to_string(),
        reason,
    };
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a root, the host name is not
/// checked. The Web PKI verifier checks the chain before the name, so a
/// name error means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`, and `require` without a root certificate: encrypted, the
/// certificate not checked (the handshake's signatures still are).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Keep a LISTEN connection open and turn each notification (and each
/// reconnect, since notifications sent while disconnected are lost) into a
/// wake-up of the claim loop.
pub async fn listen(
    database: Database,
    channel: &'static str,
    wake: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let Some((client, mut connection)) =
            connect_with_backoff("listen", &mut backoff, &shutdown, || {
                database.connect_raw("webhookd listen")
            })
            .await
        else {
            return;
        };
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        let sql = format!("LISTEN {channel}");
        let listened = {
            // Drive the connection while LISTEN runs.
            let listen = client.batch_execute(&sql);
            let mut listen = std::pin::pin!(listen);
            loop {
                tokio::select! {
                    r = &mut listen => break r,
                    m = messages.next() => if m.is_none() { break Ok(()) },
                }
            }
        };
        if let Err(e) = listened {
            tracing::warn!(error = %Report(&e), "LISTEN failed; retrying");
            backoff.wait().await;
            continue;
        }
        tracing::info!(channel, "listening for wake-ups");
        backoff.reset();
        wake.notify_one();
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %Report(&e), "LISTEN connection lost; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("LISTEN connection closed; reconnecting");
                        break;
                    }
                },
                _ = shutdown.cancelled() => return,
            }
        }
        drop(client);
        tokio::select! {
            _ = backoff.wait() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, Option<String>, Option<String>) {
        let s = split_tls_options(s).unwrap();
        (s.rest, s.sslmode, s.sslrootcert)
    }

    #[test]
    fn tls_options_are_taken_out_of_urls() {
        assert_eq!(
            split("postgresql://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"),
            (
                "postgresql://u:p@h:5432/db?application_name=x".into(),
                Some("verify-full".into()),
                Some("/tmp/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require"),
            ("postgres://h/db".into(), Some("require".into()), None)
        );
        assert_eq!(
            split("postgres://h/db"),
            ("postgres://h/db".into(), None, None)
        );
    }

    #[test]
    fn tls_options_are_taken_out_of_key_value_strings() {
        assert_eq!(
            split("host=h sslmode=verify-ca  dbname='my db' sslrootcert = '/a b\\'c.pem' user=u"),
            (
                "host=h  dbname='my db' user=u".into(),
                Some("verify-ca".into()),
                Some("/a b'c.pem".into())
            )
        );
        assert_eq!(
            split("host=h password=se\\ cret"),
            ("host=h password=se\\ cret".into(), None, None)
        );
        assert!(split_tls_options("host=h sslmode").is_err());
        assert!(split_tls_options("host='h").is_err());
    }

    #[test]
    fn sslmodes_map_onto_tokio_postgres() {
        let ssl = |s: &str| Database::new(s, None).map(|d| d.config.get_ssl_mode());
        assert_eq!(
            ssl("postgres://h/db?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(ssl("postgres://h/db").unwrap(), SslMode::Prefer);
        assert_eq!(ssl("host=h sslmode=require").unwrap(), SslMode::Require);
        assert!(matches!(
            ssl("postgres://h/db?sslmode=verify-full"),
            Err(ConfigError::NoRootCert("verify-full"))
        ));
        assert!(matches!(
            ssl("postgres://h/db?sslmode=bogus"),
            Err(ConfigError::SslMode(_))
        ));
        assert_eq!(
            ssl("postgres://h/db?sslmode=verify-full&sslrootcert=system").unwrap(),
            SslMode::Require
        );
        let e = ssl("host=h sslmode=verify-ca sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
    }

    #[test]
    fn sessions_get_their_settings_before_the_users_own_options() {
        let options = |s: &str| {
            Database::new(s, None)
                .unwrap()
                .config
                .get_options()
                .map(str::to_string)
        };
        let ours = options("postgres://h/db").unwrap();
        assert!(
            ours.starts_with("-c default_transaction_isolation=read\\ committed -c "),
            "{ours}"
        );
        assert!(ours.contains("-c statement_timeout=30000ms"), "{ours}");
        assert!(ours.contains("-c lock_timeout=10000ms"), "{ours}");
        assert!(
            ours.ends_with("-c search_path=pg_catalog,\\ pg_temp"),
            "{ours}"
        );
        // The server splits at unescaped whitespace only: one word per
        // `-c` and one per setting.
        let words = ours.split(' ').filter(|w| !w.ends_with('\\')).count();
        assert_eq!(words, 2 * session_settings().len(), "{ours}");
        assert_eq!(
            options("postgres://h/db?options=-c%20geqo%3Doff").unwrap(),
            format!("{ours} -c geqo=off")
        );
        assert_eq!(
            options("host=h options='-c statement_timeout=5min'").unwrap(),
            format!("{ours} -c statement_timeout=5min")
        );
    }

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

    #[test]
    fn a_cut_network_is_noticed_unless_the_url_says_otherwise() {
        let c = Database::new("postgres://u@h/db", None).unwrap().config;
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        let c = Database::new(
            "postgres://u@h/db?tcp_user_timeout=90&keepalives_idle=60&keepalives_interval=7&keepalives_retries=9",
            None,
        )
        .unwrap()
        .config;
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(90)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(7)));
        assert_eq!(c.get_keepalives_retries(), Some(9));
    }
}

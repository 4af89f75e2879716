//! What every session of webhookd's is opened with: the timeouts that keep
//! a statement, a lock wait or a cut network from hanging webhookd, and the
//! settings it relies on, sent in the startup packet (`session_settings`).

use std::time::Duration;

/// Longest a statement of webhookd's may run. A claim, a batch of
/// outcomes or a routing pass takes milliseconds; this is for a loaded
/// server and a large backlog, not a budget. It is under the default lease
/// (60 s), so what a claim leases is still leased when it returns, and
/// under the recorder's own wait (pipeline::record), so the server cancels first
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
pub(super) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(20);
pub(super) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
pub(super) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub(super) const KEEPALIVE_RETRIES: u32 = 3;
/// tokio-postgres's default keepalive idle time (what an unset one reads as).
pub(super) const LIBPQ_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

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
pub(super) fn session_settings() -> [(&'static str, String); 6] {
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
pub(super) fn startup_options(user: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Database;

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

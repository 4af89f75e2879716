//! Reconnecting: webhookd's one loop that opens a connection again and
//! again with backoff until it succeeds, and the up/down state of each
//! named connection that /metrics reports.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Report;

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
pub async fn connect_with_backoff<T, E, F, Fut>(
    what: &'static str,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    mut open: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    E: std::error::Error + 'static,
    Fut: std::future::Future<Output = Result<T, E>>,
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

//! Connections to PostgreSQL, and reconnecting with backoff.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

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

/// Connect and drive the connection in the background.
pub async fn connect(url: &str, application_name: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(application_name);
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

/// Keep a LISTEN connection open and turn each notification (and each
/// reconnect, since notifications sent while disconnected are lost) into a
/// wake-up of the claim loop.
pub async fn listen(
    url: String,
    channel: &'static str,
    wake: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        let config: tokio_postgres::Config = match url.parse() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid database URL for LISTEN");
                return;
            }
        };
        let connected = config.connect(NoTls).await;
        let (client, mut connection) = match connected {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                tokio::select! {
                    _ = backoff.wait() => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
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
            tracing::warn!(error = %e, "LISTEN failed; retrying");
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
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
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

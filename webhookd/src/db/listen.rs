//! The LISTEN connection: wake-ups of the claim loop.

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{connect_with_backoff, Backoff, Database, Report};

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

//! The LISTEN connection: wake-ups of the claim loop.

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{connect_with_backoff, Backoff, Database, Report};

/// How long a probe notification may take to arrive once sent (db::listen).
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Send one notification on `channel` from a session of its own: a pooler
/// in transaction mode runs LISTEN on whichever server connection is free,
/// then hands that one to other clients, so notifications never reach the
/// listening client; LISTEN itself succeeds. Only a notification sent from
/// elsewhere shows whether they arrive.
async fn probe(
    database: &Database,
    channel: &str,
    payload: &str,
) -> Result<(), tokio_postgres::Error> {
    let client = database.connect("webhookd listen probe").await?;
    client
        .query_typed(
            "SELECT pg_catalog.pg_notify($1, $2)",
            &[
                (&channel, tokio_postgres::types::Type::TEXT),
                (&payload, tokio_postgres::types::Type::TEXT),
            ],
        )
        .await?;
    Ok(())
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
        let payload = format!(
            "webhookd-probe:{}:{}",
            std::process::id(),
            rand::random::<u64>()
        );
        // The wait starts when the probe's notification has been sent: its
        // session may itself wait long for a connection (a small pool in
        // session mode), which says nothing about LISTEN.
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let mut probe_sent = Some(sent_rx);
        let mut probe_deadline: Option<tokio::time::Instant> = None;
        let mut probe_done = false;
        {
            let (database, payload) = (database.clone(), payload.clone());
            tokio::spawn(async move {
                match probe(&database, channel, &payload).await {
                    Ok(()) => {
                        let _ = sent_tx.send(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %Report(&e), "could not send the notification that checks LISTEN");
                    }
                }
            });
        }
        loop {
            tokio::select! {
                sent = async {
                    match probe_sent.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                } => {
                    probe_sent = None;
                    if sent.is_ok() && !probe_done {
                        probe_deadline = Some(tokio::time::Instant::now() + PROBE_WAIT);
                    }
                }
                _ = async {
                    match probe_deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    probe_deadline = None;
                    probe_done = true;
                    tracing::warn!(
                        channel,
                        "LISTEN succeeded but a notification sent from another session did not arrive within {}s: \
                         a connection pooler in transaction or statement mode does not deliver them; \
                         webhookd finds new events by polling every --poll-interval (point the database URL \
                         straight at PostgreSQL or at a pool in session mode for wake-ups, or run with --no-listen)",
                        PROBE_WAIT.as_secs()
                    );
                }
                m = messages.next() => match m {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if !probe_done && n.payload() == payload {
                            probe_done = true;
                            probe_deadline = None;
                            tracing::debug!(channel, "wake-ups arrive");
                        }
                        wake.notify_one();
                    }
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

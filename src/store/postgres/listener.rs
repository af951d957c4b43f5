//! Following other replicas: a dedicated connection LISTENs on the events
//! and invalidation channels and turns what arrives into
//! [`Notification`]s for the cache and the event feed.
//!
//! When the connection is lost, notifications sent meanwhile are lost with
//! it: the listener announces `Lost` at once (the cache stops answering
//! from memory), reconnects with backoff, and announces `Resync` once it
//! listens again (the cache starts empty, the event feed re-reads).

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{EVENTS_CHANNEL, INVALIDATE_CHANNEL};
use crate::domain::SessionId;
use crate::store::Notification;

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// Listens until the task is aborted, reconnecting as needed.
pub(super) async fn listen(config: tokio_postgres::Config, sender: broadcast::Sender<Notification>) {
    let mut retry = FIRST_RETRY;
    loop {
        match follow(&config, &sender).await {
            Ok(()) => tracing::warn!("the notification connection closed; reconnecting"),
            Err(err) => tracing::warn!(error = %err, "the notification connection failed; reconnecting"),
        }
        // Receivers may all be gone (shutting down): nothing to tell.
        let _ = sender.send(Notification::Lost);
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// One connection's life: LISTEN, announce `Resync`, forward until it ends.
async fn follow(
    config: &tokio_postgres::Config,
    sender: &broadcast::Sender<Notification>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (messages, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if messages.send((n.channel().to_owned(), n.payload().to_owned())).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {INVALIDATE_CHANNEL}")).await?;
    let _ = sender.send(Notification::Resync);
    tracing::info!("following other replicas' changes");
    while let Some((channel, payload)) = received.recv().await {
        if let Some(notification) = parse(&channel, &payload) {
            let _ = sender.send(notification);
        }
    }
    drop(client);
    // The driver ended: a join error means it panicked, which the next
    // connection recovers from like any loss.
    driver.await.unwrap_or(Ok(()))
}

fn parse(channel: &str, payload: &str) -> Option<Notification> {
    match channel {
        EVENTS_CHANNEL => payload.parse().ok().map(Notification::EventsRecorded),
        INVALIDATE_CHANNEL if payload == "*" => Some(Notification::Resync),
        INVALIDATE_CHANNEL => SessionId::parse(payload, "payload").ok().map(Notification::Invalidate),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_notifications() {
        assert_eq!(parse(EVENTS_CHANNEL, "42"), Some(Notification::EventsRecorded(42)));
        assert_eq!(parse(INVALIDATE_CHANNEL, "*"), Some(Notification::Resync));
        let id = SessionId::generate();
        assert_eq!(parse(INVALIDATE_CHANNEL, id.as_str()), Some(Notification::Invalidate(id)));
        assert_eq!(parse(INVALIDATE_CHANNEL, "garbage"), None);
    }
}

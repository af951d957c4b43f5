//! Following other replicas: a dedicated connection LISTENs on the events
//! and invalidation channels and turns what arrives into
//! [`Notification`]s for the cache and the event feed.
//!
//! A listening connection can go silent without closing: its backend
//! stopped, a network partition that TCP has not noticed yet. Nothing would
//! then tell the cache that revocations are no longer arriving. So the
//! listener proves the stream alive: every [`HEARTBEAT_INTERVAL`] it
//! notifies [`HEARTBEAT_CHANNEL`] through its own connection with a number
//! of its own, and notes when that heartbeat comes back.
//! Postgres delivers notifications in commit order, so by then every change
//! committed before `sent` has been announced too: the cache may answer
//! from memory only while the last heartbeat back was sent recently
//! ([`FRESHNESS`]), which the listener announces as `FreshUntil`. A heartbeat not back within [`SILENCE`] ends the
//! connection like any loss.
//!
//! When the connection is lost, notifications sent meanwhile are lost with
//! it: the listener announces `Lost` at once (the cache stops answering
//! from memory), reconnects with backoff, and announces `Resync` once it
//! listens again (the cache starts empty, the event feed re-reads).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};
use tokio_postgres::AsyncMessage;

use super::{Connector, EVENTS_CHANNEL, HEARTBEAT_CHANNEL, INVALIDATE_CHANNEL, LOGS_CHANNEL};
use crate::domain::SessionId;
use crate::store::Notification;
use crate::telemetry::throttle::{self, Admitted, Cause};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// How often the listener sends itself a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);
/// How long a heartbeat may take to come back before the connection is
/// taken for lost.
pub const SILENCE: Duration = Duration::from_millis(500);
/// How long after a heartbeat was sent, once it came back, the cache may
/// keep answering from memory: a change committed on another replica is
/// applied here, or the cache bypassed, within this bound (plus the time
/// to apply a notification).
pub const FRESHNESS: Duration = Duration::from_millis(750);

/// What the count of lost notification connections is logged as.
const LOST: &str = "the notification connection was lost; reconnecting";

/// Listens until the task is aborted, reconnecting as needed.
pub(super) async fn listen(connector: Connector, sender: broadcast::Sender<Notification>) {
    let mut retry = FIRST_RETRY;
    loop {
        // Reconnecting through an outage fails every few seconds: each
        // way of losing the connection is logged once per interval.
        let ended = follow(&connector, &sender).await;
        let kind = match &ended {
            Ok(Ended::Closed) => "closed",
            Ok(Ended::Silent) => "silent",
            Err(_) => "failed",
        };
        if let Some(Admitted { repeated }) = throttle::admit(Cause::new(tracing::Level::WARN, LOST, kind)) {
            match ended {
                Ok(Ended::Closed) => {
                    tracing::warn!(cause = kind, repeated, "the notification connection closed; reconnecting")
                }
                Ok(Ended::Silent) => tracing::warn!(
                    silence = ?SILENCE,
                    cause = kind,
                    repeated,
                    "the notification connection went silent; reconnecting"
                ),
                Err(err) => {
                    tracing::warn!(
                        error = super::described(&err),
                        cause = kind,
                        repeated,
                        "the notification connection failed; reconnecting"
                    )
                }
            }
        }
        // Receivers may all be gone (shutting down): nothing to tell.
        let _ = sender.send(Notification::Lost);
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Why a connection's life ended without an error.
enum Ended {
    Closed,
    /// A heartbeat did not come back in time.
    Silent,
}

/// One connection's life: LISTEN, announce `Resync`, forward until it ends
/// or goes silent.
async fn follow(
    connector: &Connector,
    sender: &broadcast::Sender<Notification>,
) -> Result<Ended, tokio_postgres::Error> {
    let (client, mut connection) = connector.connect().await?;
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
    let client = Arc::new(client);
    let heartbeat = Heartbeat::new();
    client
        .batch_execute(&format!(
            "LISTEN {EVENTS_CHANNEL}; LISTEN {INVALIDATE_CHANNEL}; LISTEN {HEARTBEAT_CHANNEL}; LISTEN {LOGS_CHANNEL}"
        ))
        .await?;
    let _ = sender.send(Notification::Resync);
    tracing::info!("following other replicas' changes");
    let ended = heartbeat.run(&client, &mut received, sender).await;
    drop(client);
    // The driver ends once the client is gone: a join error means it
    // panicked, which the next connection recovers from like any loss.
    // Awaited only when the connection closed by itself: a silent one may
    // never answer.
    match ended {
        Ended::Closed => driver.await.unwrap_or(Ok(())).map(|()| Ended::Closed),
        Ended::Silent => {
            driver.abort();
            Ok(Ended::Silent)
        }
    }
}

/// The heartbeats one connection has sent and not yet seen back.
struct Heartbeat {
    /// Tells this connection's heartbeats from other replicas'.
    nonce: String,
    next: u64,
    pending: VecDeque<(u64, Instant)>,
}

impl Heartbeat {
    fn new() -> Self {
        Heartbeat { nonce: format!("{:016x}", rand::random::<u64>()), next: 0, pending: VecDeque::new() }
    }

    /// Forwards notifications and sends heartbeats until the connection
    /// closes or a heartbeat stays away longer than [`SILENCE`].
    async fn run(
        mut self,
        client: &Arc<tokio_postgres::Client>,
        received: &mut mpsc::UnboundedReceiver<(String, String)>,
        sender: &broadcast::Sender<Notification>,
    ) -> Ended {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = received.recv() => {
                    let Some((channel, payload)) = message else { return Ended::Closed };
                    if channel == HEARTBEAT_CHANNEL {
                        if let Some(sent) = self.returned(&payload) {
                            let _ = sender.send(Notification::FreshUntil(sent + FRESHNESS));
                        }
                    } else if let Some(notification) = parse(&channel, &payload) {
                        let _ = sender.send(notification);
                    }
                }
                _ = ticks.tick() => {
                    if self.pending.front().is_some_and(|(_, sent)| sent.elapsed() > SILENCE) {
                        return Ended::Silent;
                    }
                    self.send(client);
                }
            }
        }
    }

    /// Sends the next heartbeat without waiting for its answer: a stalled
    /// backend never answers, and the silence is what is being watched.
    fn send(&mut self, client: &Arc<tokio_postgres::Client>) {
        let number = self.next;
        self.next += 1;
        self.pending.push_back((number, Instant::now()));
        let payload = format!("{}:{number}", self.nonce);
        let client = Arc::clone(client);
        tokio::spawn(async move {
            // A failure shows as a heartbeat that never comes back.
            let _ = client.execute("SELECT pg_notify($1, $2)", &[&HEARTBEAT_CHANNEL, &payload]).await;
        });
    }

    /// When `payload` is one of this connection's heartbeats: when it was
    /// sent. Earlier ones still pending are answered by it too.
    fn returned(&mut self, payload: &str) -> Option<Instant> {
        let (nonce, number) = payload.split_once(':')?;
        if nonce != self.nonce {
            return None;
        }
        let number: u64 = number.parse().ok()?;
        let mut sent = None;
        while let Some(&(pending, at)) = self.pending.front() {
            if pending > number {
                break;
            }
            self.pending.pop_front();
            sent = Some(at);
        }
        sent
    }
}

fn parse(channel: &str, payload: &str) -> Option<Notification> {
    match channel {
        EVENTS_CHANNEL => payload.parse().ok().map(Notification::EventsRecorded),
        LOGS_CHANNEL => payload.parse().ok().map(Notification::LogsReadable),
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
        assert_eq!(parse(LOGS_CHANNEL, "812"), Some(Notification::LogsReadable(812)));
        assert_eq!(parse(INVALIDATE_CHANNEL, "*"), Some(Notification::Resync));
        let id = SessionId::generate();
        assert_eq!(parse(INVALIDATE_CHANNEL, id.as_str()), Some(Notification::Invalidate(id)));
        assert_eq!(parse(INVALIDATE_CHANNEL, "garbage"), None);
    }

    #[tokio::test]
    async fn a_returning_heartbeat_answers_when_it_was_sent_and_settles_those_before_it() {
        let mut heartbeat = Heartbeat::new();
        let first = Instant::now();
        heartbeat.pending.extend([(0, first), (1, first + SILENCE), (2, first + FRESHNESS)]);
        assert_eq!(heartbeat.returned("someone-else:1"), None);
        assert_eq!(heartbeat.returned(&format!("{}:1", heartbeat.nonce)), Some(first + SILENCE));
        assert_eq!(heartbeat.pending.len(), 1, "the heartbeat before it is settled too");
        assert_eq!(heartbeat.returned(&format!("{}:1", heartbeat.nonce)), None, "answered once");
    }
}

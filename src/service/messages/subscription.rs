//! One subscription: a task (the pump) reads the subscription's inbox in
//! the hub and writes items to the stream the client reads.
//!
//! Per channel the pump remembers the last global sequence it sent. A
//! message at or below it is a duplicate (the same message reached this
//! process twice, or was replayed) and is skipped; one beyond the next is
//! preceded by the messages in between, read from the store. A channel
//! resumed with `after_sequence` starts from the store; a live-only one
//! starts after the channel's latest message at the time it subscribed,
//! so a message that overtakes an earlier one (posted on another replica)
//! does not make it skip that one.
//!
//! The stream checks the hub's `cut` flag before every item: a
//! subscription cut off for falling behind ends with
//! `SubscriberTooSlow` at once, without the items still queued.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;

use super::hub::{Delivery, Registered, Registration};
use super::{ChannelStart, Messages, SharedMessage};
use crate::domain::{Channel, EndReason, Scope, SessionId, TenantChannel, TenantId};
use crate::service::Error;

/// Messages read from the store per query.
const READ_BATCH: usize = 500;

/// Items between the pump and the stream. Small: the hub's inbox is the
/// subscriber's buffer.
const STREAM_BUFFER: usize = 16;

/// What a subscription streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The subscription is in place, following these channels.
    Subscribed(Vec<Channel>),
    /// A message; live ones are shared with the other subscriptions that
    /// receive them.
    Message(Arc<SharedMessage>),
    /// A followed session ended; `last` on its own channel, which ends the
    /// subscription.
    SessionEnded { channel: Channel, session_id: SessionId, reason: EndReason, last: bool },
}

/// A running subscription, as a stream of items. Dropping it ends the
/// subscription.
pub struct Subscription {
    items: mpsc::Receiver<Result<Item, Error>>,
    cut: watch::Receiver<bool>,
    max_behind: usize,
    done: bool,
}

impl Stream for Subscription {
    type Item = Result<Item, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if *self.cut.borrow() {
            self.done = true;
            self.items.close();
            return Poll::Ready(Some(Err(Error::SubscriberTooSlow { max_behind: self.max_behind })));
        }
        let polled = self.items.poll_recv(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
            if *self.cut.borrow() {
                return Poll::Ready(Some(Err(Error::SubscriberTooSlow { max_behind: self.max_behind })));
            }
        }
        polled
    }
}

/// Starts the pump of a registered subscription.
pub(super) fn start(
    messages: Messages,
    tenant: TenantId,
    channels: Vec<ChannelStart>,
    registered: Registered,
) -> Subscription {
    let Registered { registration, inbox, cut } = registered;
    let (sender, items) = mpsc::channel(STREAM_BUFFER);
    let max_behind = messages.config().buffer;
    let pump = Pump { messages, tenant, out: sender, cut: cut.clone(), _registration: registration };
    tokio::spawn(pump.run(channels, inbox));
    Subscription { items, cut, max_behind, done: false }
}

struct Pump {
    messages: Messages,
    tenant: TenantId,
    out: mpsc::Sender<Result<Item, Error>>,
    cut: watch::Receiver<bool>,
    /// Leaves the hub when the pump ends.
    _registration: Registration,
}

/// Why the pump stops early.
enum Stop {
    /// The client is gone, the subscription was cut off or ended.
    Done,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Failed(err)
    }
}

impl Pump {
    async fn run(self, channels: Vec<ChannelStart>, mut inbox: mpsc::Receiver<Delivery>) {
        let mut last: HashMap<Channel, Option<u64>> = channels.iter().cloned().collect();
        let stopped = async {
            self.send(Item::Subscribed(channels.into_iter().map(|(channel, _)| channel).collect())).await?;
            let resumed: Vec<(Channel, u64)> =
                last.iter().filter_map(|(channel, after)| after.map(|after| (channel.clone(), after))).collect();
            for (channel, after) in resumed {
                self.catch_up(&channel, after, &mut last).await?;
            }
            let mut stopping = self.messages.service().stopping();
            let mut cut = self.cut.clone();
            loop {
                let delivery = tokio::select! {
                    delivery = inbox.recv() => delivery,
                    _ = stopping.wait_for(|stop| *stop) => return Ok::<(), Stop>(()),
                    _ = cut.wait_for(|cut| *cut) => return Ok(()),
                    () = self.out.closed() => return Ok(()),
                };
                // The hub dropped the inbox: cut off.
                let Some(delivery) = delivery else { return Ok(()) };
                match delivery {
                    Delivery::Message(message) => self.forward(message, &mut last).await?,
                    Delivery::Ended { channel, session_id, reason, last: final_item } => {
                        self.send(Item::SessionEnded { channel, session_id, reason, last: final_item }).await?;
                        if final_item {
                            return Ok(());
                        }
                    }
                    Delivery::Resync => {
                        let known: Vec<(Channel, u64)> = last
                            .iter()
                            .filter_map(|(channel, seen)| seen.map(|seen| (channel.clone(), seen)))
                            .collect();
                        for (channel, seen) in known {
                            self.catch_up(&channel, seen, &mut last).await?;
                        }
                    }
                }
            }
        };
        if let Err(Stop::Failed(err)) = stopped.await {
            // The client may be gone already; then nobody is told.
            let _ = self.out.send(Err(err)).await;
        }
    }

    /// Sends a live message in sequence order (see the module's comment).
    async fn forward(&self, shared: Arc<SharedMessage>, last: &mut HashMap<Channel, Option<u64>>) -> Result<(), Stop> {
        let message = &shared.message;
        let channel = &message.message.to.channel;
        if message.scope == Scope::Local {
            return self.send(Item::Message(shared)).await;
        }
        let sequence = message.sequence;
        let seen = last.get(channel).copied().flatten();
        match seen {
            Some(seen) if sequence <= seen => Ok(()),
            Some(seen) if sequence > seen + 1 => {
                let channel = channel.clone();
                self.catch_up(&channel, seen, last).await?;
                if last.get(&channel).copied().flatten().is_some_and(|now| now >= sequence) {
                    return Ok(());
                }
                last.insert(channel, Some(sequence));
                self.send(Item::Message(shared)).await
            }
            _ => {
                last.insert(channel.clone(), Some(sequence));
                self.send(Item::Message(shared)).await
            }
        }
    }

    /// Sends the kept messages of `channel` after `after`.
    async fn catch_up(
        &self,
        channel: &Channel,
        mut after: u64,
        last: &mut HashMap<Channel, Option<u64>>,
    ) -> Result<(), Stop> {
        let key = TenantChannel { tenant: self.tenant.clone(), channel: channel.clone() };
        loop {
            let found = self.messages.inner.log.messages_after(&key, after, READ_BATCH).await.map_err(Error::from)?;
            let count = found.len();
            for message in found {
                after = message.sequence;
                last.insert(channel.clone(), Some(after));
                self.send(Item::Message(Arc::new(SharedMessage::new(message)))).await?;
            }
            if count < READ_BATCH {
                return Ok(());
            }
        }
    }

    /// Sends one item, unless the client is gone or the subscription was
    /// cut off meanwhile.
    async fn send(&self, item: Item) -> Result<(), Stop> {
        let posted_at = match &item {
            Item::Message(shared) => Some(shared.message.message.posted_at),
            _ => None,
        };
        let mut cut = self.cut.clone();
        tokio::select! {
            sent = self.out.send(Ok(item)) => sent.map_err(|_| Stop::Done)?,
            _ = cut.wait_for(|cut| *cut) => return Err(Stop::Done),
        }
        if let Some(posted_at) = posted_at {
            let lag = self.messages.inner.service.now().0.saturating_sub(posted_at.0).max(0);
            crate::telemetry::message_metrics::delivered(std::time::Duration::from_millis(lag as u64));
        }
        Ok(())
    }
}

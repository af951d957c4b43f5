//! One subscription: the stream the client reads, served straight from
//! the subscription's inbox in the hub. A delivery wakes the task that
//! writes the response and nothing else; each poll of the stream answers
//! the next item already queued, so one wake-up drains every delivery
//! that arrived meanwhile.
//!
//! Per channel the stream remembers the last global sequence it sent. A
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
//! `SubscriberTooSlow` at once, without the items still queued. Its inbox
//! ends once cut off (the hub drops its sender), which wakes the stream
//! should it be waiting. When sessiond stops, the hub closes every inbox
//! and the stream ends after the deliveries already in it.
//!
//! Each message sent records its lag at once; the count of messages
//! delivered is added up and reported whenever the stream has nothing
//! more to send for now (see `message_metrics::Deliveries`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::sync::mpsc;
use tokio_stream::Stream;

use super::hub::{Delivery, Registered, Registration};
use super::{ChannelStart, Messages, SharedMessage};
use crate::domain::{Channel, EndReason, Message, Scope, SessionId, TenantChannel, TenantId};
use crate::service::Error;
use crate::telemetry::message_metrics::Deliveries;

/// Messages read from the store per query.
const READ_BATCH: usize = 500;

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

/// A read of kept messages under way: the channel, and its answer.
type Reading = (Channel, Pin<Box<dyn Future<Output = Result<Vec<Message>, Error>> + Send>>);

/// A running subscription, as a stream of items. Dropping it ends the
/// subscription.
pub struct Subscription {
    messages: Messages,
    tenant: TenantId,
    inbox: mpsc::Receiver<Delivery>,
    cut: Arc<AtomicBool>,
    max_behind: usize,
    /// The last global sequence sent per channel.
    last: HashMap<Channel, Option<u64>>,
    /// Items to send before anything else.
    queued: VecDeque<Item>,
    /// Channels to read from the store, after which sequence, in turn.
    to_read: VecDeque<(Channel, u64)>,
    reading: Option<Reading>,
    /// A live message that came after a gap, sent once the gap is read
    /// (unless the read covered it).
    held: Option<Arc<SharedMessage>>,
    /// Ends after the next item (a session's last message).
    ending: bool,
    done: bool,
    /// Messages sent and not yet counted as delivered: counted whenever
    /// the stream has nothing more to send for now.
    deliveries: Deliveries,
    /// Leaves the hub when the stream is dropped.
    _registration: Registration,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// Starts the stream of a registered subscription: `Subscribed` first,
/// then the kept messages of resumed channels, then live ones.
pub(super) fn start(
    messages: Messages,
    tenant: TenantId,
    channels: Vec<ChannelStart>,
    registered: Registered,
) -> Subscription {
    let Registered { registration, inbox, cut } = registered;
    let max_behind = messages.config().buffer;
    let to_read = channels.iter().filter_map(|(channel, after)| after.map(|after| (channel.clone(), after))).collect();
    let subscribed = Item::Subscribed(channels.iter().map(|(channel, _)| channel.clone()).collect());
    Subscription {
        messages,
        tenant,
        inbox,
        cut,
        max_behind,
        last: channels.into_iter().collect(),
        queued: VecDeque::from([subscribed]),
        to_read,
        reading: None,
        held: None,
        ending: false,
        done: false,
        deliveries: Deliveries::default(),
        _registration: registration,
    }
}

/// What to do with a live delivery.
enum Next {
    Send(Item),
    /// Nothing to send for it (a duplicate), or reads to do first.
    Skip,
}

impl Subscription {
    fn too_slow(&mut self) -> Option<Result<Item, Error>> {
        self.done = true;
        self.inbox.close();
        Some(Err(Error::SubscriberTooSlow { max_behind: self.max_behind }))
    }

    /// Answers `item`, counting a message as delivered.
    fn send(&mut self, item: Item) -> Option<Result<Item, Error>> {
        match &item {
            Item::Message(shared) => {
                let posted_at = shared.message.message.posted_at;
                let service = &self.messages.inner.service;
                self.deliveries.delivered(|| {
                    let lag = service.now().0.saturating_sub(posted_at.0).max(0);
                    std::time::Duration::from_millis(lag as u64)
                });
            }
            Item::SessionEnded { last: true, .. } => self.ending = true,
            _ => {}
        }
        Some(Ok(item))
    }

    /// A live delivery in sequence order (see the module's comment).
    fn live(&mut self, delivery: Delivery) -> Next {
        match delivery {
            Delivery::Message(shared) => {
                let message = &shared.message;
                if message.scope == Scope::Local {
                    return Next::Send(Item::Message(shared));
                }
                let sequence = message.sequence;
                let channel = &message.message.to.channel;
                match self.last.get(channel).copied().flatten() {
                    Some(seen) if sequence <= seen => Next::Skip,
                    Some(seen) if sequence > seen + 1 => {
                        self.to_read.push_back((channel.clone(), seen));
                        self.held = Some(shared);
                        Next::Skip
                    }
                    _ => {
                        self.last.insert(channel.clone(), Some(sequence));
                        Next::Send(Item::Message(shared))
                    }
                }
            }
            Delivery::Ended { channel, session_id, reason, last } => {
                Next::Send(Item::SessionEnded { channel, session_id, reason, last })
            }
            Delivery::Resync => {
                let known = self.last.iter().filter_map(|(channel, seen)| seen.map(|seen| (channel.clone(), seen)));
                self.to_read.extend(known);
                Next::Skip
            }
        }
    }

    /// Starts reading the kept messages of `channel` after `after`.
    fn read(&mut self, channel: Channel, after: u64) {
        let log = Arc::clone(&self.messages.inner.log);
        let key = TenantChannel { tenant: self.tenant.clone(), channel: channel.clone() };
        let read = async move { log.messages_after(&key, after, READ_BATCH).await.map_err(Error::from) };
        self.reading = Some((channel, Box::pin(read)));
    }

    /// Queues what a read found; reads on while a whole batch came back.
    fn found(&mut self, channel: Channel, found: Vec<Message>) {
        let count = found.len();
        for message in found {
            self.last.insert(channel.clone(), Some(message.sequence));
            self.queued.push_back(Item::Message(Arc::new(SharedMessage::new(message))));
        }
        if count == READ_BATCH {
            let after = self.last.get(&channel).copied().flatten().unwrap_or(0);
            self.to_read.push_front((channel, after));
        }
    }

    /// The message held after a gap, unless the reads since covered it.
    fn release_held(&mut self, shared: Arc<SharedMessage>) {
        let channel = &shared.message.message.to.channel;
        let sequence = shared.message.sequence;
        if self.last.get(channel).copied().flatten().is_some_and(|now| now >= sequence) {
            return;
        }
        self.last.insert(channel.clone(), Some(sequence));
        self.queued.push_back(Item::Message(shared));
    }
}

impl Stream for Subscription {
    type Item = Result<Item, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.next_item(cx);
        if !matches!(next, Poll::Ready(Some(Ok(_)))) {
            self.deliveries.flush();
        }
        next
    }
}

impl Subscription {
    /// The next item: queued ones first, then reads of kept messages, then
    /// the inbox.
    fn next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Item, Error>>> {
        let this = self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.cut.load(Ordering::Acquire) {
                return Poll::Ready(this.too_slow());
            }
            if this.ending {
                this.done = true;
                return Poll::Ready(None);
            }
            if let Some(item) = this.queued.pop_front() {
                return Poll::Ready(this.send(item));
            }
            if let Some((_, read)) = &mut this.reading {
                let found = ready!(read.as_mut().poll(cx));
                let (channel, _) = this.reading.take().expect("a read under way");
                match found {
                    Ok(found) => this.found(channel, found),
                    Err(err) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(err)));
                    }
                }
                continue;
            }
            if let Some((channel, after)) = this.to_read.pop_front() {
                this.read(channel, after);
                continue;
            }
            if let Some(held) = this.held.take() {
                this.release_held(held);
                continue;
            }
            match ready!(this.inbox.poll_recv(cx)) {
                Some(delivery) => {
                    if let Next::Send(item) = this.live(delivery) {
                        return Poll::Ready(this.send(item));
                    }
                }
                // Cut off, or sessiond is stopping.
                None if this.cut.load(Ordering::Acquire) => return Poll::Ready(this.too_slow()),
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

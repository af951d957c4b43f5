//! The fan-out of one process: which subscriptions follow which channel,
//! and the bounded inbox of each.
//!
//! Delivering never waits: a message is offered to each inbox with
//! `try_send`. A subscription whose inbox is full has fallen a whole
//! buffer behind; it is cut off (its `cut` flag raised, its slot
//! removed) instead of holding the others back or growing without bound.
//!
//! The hub holds the only sender of each inbox: once a subscription is cut
//! off, or the hub closed as sessiond stops, its inbox ends after the
//! deliveries already in it, which wakes the subscription's stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::mpsc;

use super::SharedMessage;
use crate::domain::{Channel, EndReason, SessionId, TenantChannel, TenantId};
use crate::service::Error;

/// What an inbox receives.
#[derive(Debug, Clone)]
pub(super) enum Delivery {
    Message(Arc<SharedMessage>),
    /// A followed session ended: on its session channel (`last`), or on its
    /// user's channel.
    Ended {
        channel: Channel,
        session_id: SessionId,
        reason: EndReason,
        last: bool,
    },
    /// Deliveries may have been missed: re-read what the store keeps.
    Resync,
}

/// One subscription's place in the hub.
#[derive(Debug)]
struct Slot {
    inbox: mpsc::Sender<Delivery>,
    cut: Arc<AtomicBool>,
    channels: Vec<TenantChannel>,
}

/// Every subscription of this process, by channel.
#[derive(Debug)]
pub(super) struct Hub {
    slots: Mutex<Slots>,
    subscriptions: AtomicUsize,
    max_subscriptions: usize,
    /// Deliveries an inbox holds before its subscription is cut off.
    buffer: usize,
}

/// The subscriptions by channel, until the hub is closed.
#[derive(Debug, Default)]
struct Slots {
    by_channel: HashMap<TenantChannel, Vec<Arc<Slot>>>,
    closed: bool,
}

/// A subscription's registration; dropping it leaves the hub. It does not
/// keep the slot (and its inbox's sender) alive: the hub does.
#[derive(Debug)]
pub(super) struct Registration {
    hub: Arc<Hub>,
    slot: Weak<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.upgrade() {
            self.hub.remove(&slot);
        }
        self.hub.subscriptions.fetch_sub(1, Ordering::Relaxed);
        crate::telemetry::message_metrics::subscribers(-1);
    }
}

/// What a registration hands its subscription.
pub(super) struct Registered {
    pub registration: Registration,
    pub inbox: mpsc::Receiver<Delivery>,
    /// Raised when the subscription is cut off for falling behind.
    pub cut: Arc<AtomicBool>,
}

impl Hub {
    pub(super) fn new(max_subscriptions: usize, buffer: usize) -> Self {
        Self { slots: Mutex::default(), subscriptions: AtomicUsize::new(0), max_subscriptions, buffer }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every critical section leaves the map whole: a panic in one
        // cannot have half-changed it.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a subscription to `channels`, unless this process already
    /// serves as many as it may.
    pub(super) fn register(self: &Arc<Self>, channels: Vec<TenantChannel>) -> Result<Registered, Error> {
        let taken = self.subscriptions.fetch_add(1, Ordering::Relaxed);
        if taken >= self.max_subscriptions {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::QuotaExceeded {
                subject: "message-max-subscribers".into(),
                description: format!("this replica serves at most {} subscriptions at once", self.max_subscriptions),
            });
        }
        crate::telemetry::message_metrics::subscribers(1);
        let (inbox, receiver) = mpsc::channel(self.buffer);
        let cut = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(Slot { inbox, cut: Arc::clone(&cut), channels });
        let mut slots = self.slots();
        // Once closed, the slot is dropped here and the inbox ends at once.
        if !slots.closed {
            for channel in &slot.channels {
                slots.by_channel.entry(channel.clone()).or_default().push(Arc::clone(&slot));
            }
        }
        drop(slots);
        Ok(Registered {
            registration: Registration { hub: Arc::clone(self), slot: Arc::downgrade(&slot) },
            inbox: receiver,
            cut,
        })
    }

    fn remove(&self, slot: &Arc<Slot>) {
        let mut slots = self.slots();
        remove_locked(&mut slots.by_channel, slot);
    }

    /// Ends every inbox after the deliveries already in it, and those of
    /// subscriptions registered later at once: sessiond is stopping.
    pub(super) fn close(&self) {
        let mut slots = self.slots();
        slots.closed = true;
        slots.by_channel.clear();
    }

    /// Offers `delivery` to every subscription of `to`; answers to how many
    /// it was handed. Subscriptions with a full inbox are cut off.
    pub(super) fn deliver(&self, to: &TenantChannel, delivery: Delivery) -> u32 {
        let mut slots = self.slots();
        let Some(followers) = slots.by_channel.get(to) else { return 0 };
        let mut handed = 0;
        let mut gone = Vec::new();
        for slot in followers {
            match slot.inbox.try_send(delivery.clone()) {
                Ok(()) => handed += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.cut.store(true, Ordering::Release);
                    crate::telemetry::message_metrics::dropped("too_slow");
                    tracing::info!(channel = %to.channel, "a subscriber fell too far behind and was cut off");
                    gone.push(Arc::clone(slot));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(Arc::clone(slot)),
            }
        }
        for slot in &gone {
            remove_locked(&mut slots.by_channel, slot);
        }
        handed
    }

    /// Whether any subscription of this process follows `to`.
    pub(super) fn follows(&self, to: &TenantChannel) -> bool {
        self.slots().by_channel.contains_key(to)
    }

    /// Tells the subscriptions of a session's channel, and of its user's,
    /// that it ended.
    pub(super) fn session_ended(&self, tenant: &TenantId, id: &SessionId, user: Option<&str>, reason: EndReason) {
        let session = Channel::Session(id.clone());
        let ended = |channel: Channel, last| Delivery::Ended { channel, session_id: id.clone(), reason, last };
        self.deliver(&TenantChannel { tenant: tenant.clone(), channel: session.clone() }, ended(session, true));
        if let Some(user) = user {
            let channel = Channel::User(user.to_owned());
            self.deliver(&TenantChannel { tenant: tenant.clone(), channel: channel.clone() }, ended(channel, false));
        }
    }

    /// The session channels followed now.
    pub(super) fn session_channels(&self) -> Vec<(TenantId, SessionId)> {
        self.slots()
            .by_channel
            .keys()
            .filter_map(|key| match &key.channel {
                Channel::Session(id) => Some((key.tenant.clone(), id.clone())),
                _ => None,
            })
            .collect()
    }

    /// Tells every subscription to re-read what it may have missed.
    pub(super) fn resync(&self) {
        let channels: Vec<TenantChannel> = self.slots().by_channel.keys().cloned().collect();
        for channel in channels {
            self.deliver(&channel, Delivery::Resync);
        }
    }
}

fn remove_locked(slots: &mut HashMap<TenantChannel, Vec<Arc<Slot>>>, slot: &Arc<Slot>) {
    for channel in &slot.channels {
        if let Some(followers) = slots.get_mut(channel) {
            followers.retain(|other| !Arc::ptr_eq(other, slot));
            if followers.is_empty() {
                slots.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixMillis;
    use crate::domain::{Message, NewMessage, Scope};
    use tokio::sync::mpsc::error::TryRecvError::Disconnected;

    fn channel(tenant: &str, name: &str) -> TenantChannel {
        TenantChannel {
            tenant: TenantId::parse(tenant, "tenant").expect("a valid tenant"),
            channel: Channel::Named(name.into()),
        }
    }

    fn message(to: &TenantChannel, sequence: u64) -> Delivery {
        Delivery::Message(Arc::new(SharedMessage::new(Message {
            sequence,
            scope: Scope::Global,
            message: NewMessage {
                to: to.clone(),
                payload: serde_json::json!(sequence),
                type_name: String::new(),
                posted_at: UnixMillis(0),
            },
        })))
    }

    #[test]
    fn a_full_inbox_cuts_its_subscription_off_and_spares_the_others() {
        let hub = Arc::new(Hub::new(10, 2));
        let room = channel("acme", "room");
        let slow = hub.register(vec![room.clone()]).expect("room for one");
        let mut quick = hub.register(vec![room.clone()]).expect("room for two");
        for sequence in 1..=3 {
            let handed = hub.deliver(&room, message(&room, sequence));
            let _ = quick.inbox.try_recv();
            assert_eq!(handed, if sequence < 3 { 2 } else { 1 }, "message {sequence}");
        }
        assert!(slow.cut.load(Ordering::Acquire), "the slow one is cut off");
        assert!(!quick.cut.load(Ordering::Acquire));
        assert_eq!(hub.deliver(&room, message(&room, 4)), 1, "the cut one is gone from the hub");
        let mut slow = slow;
        for _ in 0..2 {
            assert!(slow.inbox.try_recv().is_ok(), "what it held stays readable");
        }
        assert!(matches!(slow.inbox.try_recv(), Err(Disconnected)), "then its inbox ends");
    }

    #[test]
    fn closing_ends_every_inbox_and_those_registered_after() {
        let hub = Arc::new(Hub::new(10, 4));
        let room = channel("acme", "room");
        let mut before = hub.register(vec![room.clone()]).expect("room for one");
        hub.deliver(&room, message(&room, 1));
        hub.close();
        assert!(before.inbox.try_recv().is_ok(), "what it held stays readable");
        assert!(matches!(before.inbox.try_recv(), Err(Disconnected)));
        let mut after = hub.register(vec![room.clone()]).expect("room for two");
        assert!(matches!(after.inbox.try_recv(), Err(Disconnected)));
        assert!(!before.cut.load(Ordering::Acquire) && !after.cut.load(Ordering::Acquire), "neither is cut off");
    }

    #[test]
    fn tenants_never_share_a_channel_and_the_limit_counts_live_subscriptions() {
        let hub = Arc::new(Hub::new(1, 4));
        let first = hub.register(vec![channel("acme", "room")]).expect("room for one");
        assert!(matches!(hub.register(vec![channel("beta", "room")]), Err(Error::QuotaExceeded { .. })));
        assert_eq!(hub.deliver(&channel("beta", "room"), message(&channel("beta", "room"), 1)), 0);
        drop(first);
        let mut second = hub.register(vec![channel("beta", "room")]).expect("the first one left");
        assert_eq!(hub.deliver(&channel("beta", "room"), message(&channel("beta", "room"), 1)), 1);
        assert!(second.inbox.try_recv().is_ok());
    }
}

//! Messages between services: Post and Subscribe over channels of a
//! tenant, local to this process or global across every process sharing
//! the store.
//!
//! - `hub`: this process's subscriptions by channel, and the bounded
//!   inbox of each (a subscriber a whole buffer behind is cut off);
//! - `subscription`: one subscription's stream, read straight from its
//!   inbox: replay from the store, then live messages in sequence order,
//!   gaps filled from the store;
//! - `rate`: posts per second per API key;
//! - `shared`: a message as the subscriptions of this process share it,
//!   encoded once for all of them.
//!
//! A global message is numbered and kept by the [`MessageLog`], which
//! announces it to the other processes; this process hands it to its own
//! subscribers itself once it is committed. Session ends come from the
//! service's event fan-out (`watch`), which carries every replica's events.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::auth::Caller;
use crate::domain::{Channel, Message, NewMessage, Scope, SessionId, TenantChannel};
use crate::service::Error;
use crate::store::messages::{Announced, MessageLog};

use super::{Service, SessionRef};

mod hub;
mod rate;
mod shared;
mod subscription;

pub use shared::SharedMessage;
pub use subscription::{Item, Subscription};

use hub::{Delivery, Hub};

/// Bounds and windows of messages. All settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageConfig {
    /// Largest payload, as JSON, plus its type name, in bytes.
    pub max_bytes: usize,
    /// Channels one subscription may follow.
    pub max_channels: usize,
    /// Subscriptions one process serves at once.
    pub max_subscribers: usize,
    /// Deliveries a subscriber may fall behind before it is cut off.
    pub buffer: usize,
    /// Posts per second per API key (and as many at once).
    pub post_rate: u32,
    /// How long global messages are kept for replay.
    pub replay_window: Duration,
}

impl Default for MessageConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_channels: 64,
            max_subscribers: 10_000,
            buffer: 1_024,
            post_rate: 1_000,
            replay_window: Duration::from_secs(300),
        }
    }
}

/// A message to post, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub channel: Channel,
    pub payload: serde_json::Value,
    pub type_name: String,
    pub scope: Scope,
}

/// What a post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    /// 0 for a local message.
    pub sequence: u64,
    /// Subscriptions of this process it was handed to.
    pub local_deliveries: u32,
}

/// One channel of a subscription and where it starts: `None` live only,
/// `Some(n)` after message `n`.
pub type ChannelStart = (Channel, Option<u64>);

/// The message service. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Messages {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Service,
    log: Arc<dyn MessageLog>,
    hub: Arc<Hub>,
    rate: rate::PostRate,
    config: MessageConfig,
}

impl Messages {
    pub fn new(service: Service, log: Arc<dyn MessageLog>, config: MessageConfig) -> Self {
        let hub = Arc::new(Hub::new(config.max_subscribers, config.buffer));
        let rate = rate::PostRate::new(config.post_rate);
        Self { inner: Arc::new(Inner { service, log, hub, rate, config }) }
    }

    pub fn config(&self) -> &MessageConfig {
        &self.inner.config
    }

    /// The session service messages belong to (its limits, its users).
    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// Checks a session channel: the session must be the caller's tenant's
    /// and open.
    async fn check_session(&self, caller: &Caller, id: &SessionId) -> Result<(), Error> {
        let session = self.inner.service.find(caller, &SessionRef::id(id.clone())).await?;
        match session.end {
            Some(end) => Err(Error::SessionEnded(end.reason)),
            None => Ok(()),
        }
    }

    /// Posts a message: a global one is committed (numbered, kept and
    /// announced) first; either is then handed to this process's
    /// subscribers.
    #[tracing::instrument(level = "debug", skip_all, fields(scope = post.scope.as_str()))]
    pub async fn post(&self, caller: &Caller, post: Post) -> Result<Posted, Error> {
        self.inner.rate.admit(caller)?;
        if let Channel::Session(id) = &post.channel {
            self.check_session(caller, id).await?;
        }
        let Post { channel, payload, type_name, scope } = post;
        let to = TenantChannel { tenant: caller.tenant.clone(), channel };
        let message = NewMessage { to, payload, type_name, posted_at: self.inner.service.now() };
        let sequence = match scope {
            Scope::Local => 0,
            Scope::Global => self.inner.log.append(&message).await?,
        };
        crate::telemetry::message_metrics::posted(scope.as_str());
        let shared = Arc::new(SharedMessage::new(Message { sequence, scope, message }));
        let to = &shared.message.message.to;
        let local_deliveries = self.inner.hub.deliver(to, Delivery::Message(Arc::clone(&shared)));
        Ok(Posted { sequence, local_deliveries })
    }

    /// Subscribes to `channels` of the caller's tenant. Refused, before
    /// the stream starts, when a session channel names no open session of
    /// the tenant, when a resumed channel's cursor is out of range, or when
    /// this process serves as many subscriptions as it may.
    #[tracing::instrument(level = "debug", skip_all, fields(channels = channels.len()))]
    pub async fn subscribe(&self, caller: &Caller, channels: Vec<ChannelStart>) -> Result<Subscription, Error> {
        let keys = channels
            .iter()
            .map(|(channel, _)| TenantChannel { tenant: caller.tenant.clone(), channel: channel.clone() });
        // Registered before the checks: a session that ends after its
        // check is announced to the subscription.
        let registered = self.inner.hub.register(keys.collect())?;
        let mut starts = Vec::with_capacity(channels.len());
        for (channel, after) in channels {
            if let Channel::Session(id) = &channel {
                self.check_session(caller, id).await?;
            }
            let key = TenantChannel { tenant: caller.tenant.clone(), channel: channel.clone() };
            let bounds = self.inner.log.bounds(&key).await?;
            // A live-only channel starts after the latest message committed
            // once the subscription is in the hub: what follows reaches it
            // live, or is read back when it arrives out of order.
            let Some(after) = after else {
                starts.push((channel, Some(bounds.latest)));
                continue;
            };
            if (after + 1 < bounds.oldest && after < bounds.latest) || after > bounds.latest {
                return Err(Error::ChannelCursorOutOfRange {
                    channel: channel.to_string(),
                    expired: after <= bounds.latest,
                    oldest: bounds.oldest,
                    latest: bounds.latest,
                });
            }
            starts.push((channel, Some(after)));
        }
        Ok(subscription::start(self.clone(), caller.tenant.clone(), starts, registered))
    }

    /// Follows what reaches this process from elsewhere until sessiond
    /// shuts down: session ends (every replica's, from the event fan-out),
    /// other replicas' messages, and the purge of the replay window. Then
    /// ends every subscription after the deliveries already in its inbox.
    pub async fn run(self) {
        let mut stopping = self.inner.service.stopping();
        let work = async {
            tokio::join!(self.follow_session_ends(), self.follow_announcements(), self.purge_old());
        };
        tokio::select! {
            () = work => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
        // Subscriptions end after what their inboxes hold.
        self.inner.hub.close();
    }

    async fn follow_session_ends(&self) {
        let mut events = self.inner.service.inner.events.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    let event = event.event;
                    if let Some(reason) = event.end_reason {
                        self.inner.hub.session_ended(
                            &event.tenant,
                            &event.session_id,
                            event.user_id.as_deref(),
                            reason,
                        );
                    }
                }
                Err(RecvError::Lagged(_)) => self.recheck_sessions().await,
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// After missed events: ends the subscriptions of followed sessions
    /// that ended meanwhile.
    async fn recheck_sessions(&self) {
        for (tenant, id) in self.inner.hub.session_channels() {
            if let Ok(Some(session)) = self.inner.service.stores().sessions.session_by_id(&id).await
                && let Some(end) = session.end
            {
                let user = session.user_id.as_deref();
                self.inner.hub.session_ended(&tenant, &id, user, end.reason);
            }
        }
    }

    async fn follow_announcements(&self) {
        let Some(mut announced) = self.inner.log.announcements() else { return };
        loop {
            match announced.recv().await {
                Ok(Announced::Message(message)) => {
                    let shared = Arc::new(SharedMessage::new(message));
                    self.inner.hub.deliver(&shared.message.message.to, Delivery::Message(Arc::clone(&shared)));
                }
                Ok(Announced::Posted { to, sequence }) => {
                    if !self.inner.hub.follows(&to) {
                        continue;
                    }
                    match self.inner.log.messages_after(&to, sequence.saturating_sub(1), 1).await {
                        Ok(found) => {
                            for message in found.into_iter().filter(|m| m.sequence == sequence) {
                                let message = Arc::new(SharedMessage::new(message));
                                self.inner.hub.deliver(&to, Delivery::Message(message));
                            }
                        }
                        // Subscribers find the gap at the next message, or
                        // at the next resync, and read it then.
                        Err(err) => tracing::debug!(error = %err, "cannot read an announced message"),
                    }
                }
                Ok(Announced::Resync) | Err(RecvError::Lagged(_)) => self.inner.hub.resync(),
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Deletes global messages older than the replay window, every tenth
    /// of it (at least every second, at most every minute).
    async fn purge_old(&self) {
        let window = self.inner.config.replay_window;
        let every = (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let before = self.inner.service.now() - window;
            match self.inner.log.purge_messages(before).await {
                Ok(purged) if purged > 0 => tracing::debug!(purged, "purged channel messages"),
                Ok(_) => {}
                Err(err) => tracing::debug!(error = %err, "cannot purge channel messages"),
            }
        }
    }
}

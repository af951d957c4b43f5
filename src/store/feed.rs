//! [`ChangeFeed`]: the changes other processes sharing the store make, as
//! this process follows them.
//!
//! A shared store announces its changes as [`Notification`]s. The feed
//! turns them into what the service acts on: the events other processes
//! recorded, read from the event log in sequence order, and the log
//! positions they made readable. It reads only what this process did not
//! record itself ([`OwnEvents`]): a replica recording events by the
//! thousand would otherwise read each of them back. Session records need
//! no feed: the cache follows their invalidations itself.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{EventLog, Notification, StoreError};
use crate::domain::Event;
use crate::telemetry::throttle::{self, Admitted, Cause};

/// Events read from the event log per catch-up query.
const CATCH_UP_BATCH: usize = 500;

/// A change made by another process, as [`ChangeFeed::next`] answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An event another process recorded, in sequence order.
    Event(Event),
    /// Log entries became readable at this position (see
    /// [`crate::domain::LogCursor`]).
    LogsReadable(i64),
    /// Changes may have been missed (announcements of readable logs
    /// among them): whoever waits on one should look again.
    Resync,
}

/// Follows other processes' changes; made by [`super::Stores::changes`].
#[derive(Debug)]
pub struct ChangeFeed {
    notifications: broadcast::Receiver<Notification>,
    events: Arc<dyn EventLog>,
    own: Arc<OwnEvents>,
    /// The last event sequence answered or stepped over; read from the
    /// store on the first call.
    last: Option<u64>,
    /// Events read and not answered yet.
    pending: VecDeque<Event>,
    /// The last read filled its batch: more may follow.
    more: bool,
}

impl ChangeFeed {
    pub(super) fn new(
        notifications: broadcast::Receiver<Notification>,
        events: Arc<dyn EventLog>,
        own: Arc<OwnEvents>,
    ) -> Self {
        own.follow();
        Self { notifications, events, own, last: None, pending: VecDeque::new(), more: false }
    }

    /// The next change another process made; `None` once the store
    /// closes. Store failures are logged, and the next announcement tries
    /// again.
    pub async fn next(&mut self) -> Option<Change> {
        let mut last = match self.last {
            Some(last) => last,
            None => *self.last.insert(self.events.last_event_sequence().await.unwrap_or(0)),
        };
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = Some(event.sequence);
                return Some(Change::Event(event));
            }
            if self.more {
                self.catch_up(last).await;
                continue;
            }
            match self.notifications.recv().await {
                Ok(Notification::EventsRecorded(sequence)) if sequence <= last => {}
                Ok(Notification::EventsRecorded(sequence)) => {
                    let covered = self.own.cover(&mut last, sequence);
                    self.last = Some(last);
                    if !covered {
                        self.catch_up(last).await;
                    }
                }
                Ok(Notification::Resync) | Err(RecvError::Lagged(_)) => {
                    self.catch_up(last).await;
                    return Some(Change::Resync);
                }
                Ok(Notification::LogsReadable(position)) => return Some(Change::LogsReadable(position)),
                Ok(Notification::Invalidate(_) | Notification::Lost | Notification::FreshUntil(_)) => {}
                Err(RecvError::Closed) => return None,
            }
            last = self.last.unwrap_or(last);
        }
    }

    /// Reads a batch of the events recorded after `last`.
    async fn catch_up(&mut self, last: u64) {
        match self.events.events_after(last, CATCH_UP_BATCH).await {
            Ok(events) => {
                self.more = events.len() == CATCH_UP_BATCH;
                self.pending.extend(events);
            }
            Err(err) => {
                self.more = false;
                warn_unread(&err);
            }
        }
    }
}

fn warn_unread(err: &StoreError) {
    const LINE: &str = "cannot read events recorded by other replicas";
    let kind = throttle::store_error_kind(err);
    let cause = Cause::new(tracing::Level::WARN, LINE, kind);
    if let Some(Admitted { repeated }) = throttle::admit(cause) {
        tracing::warn!(error = %err, cause = kind, repeated, "{LINE}");
    }
}

/// The sequence numbers of events this process recorded itself that the
/// feed has not reached yet. Kept only while a feed runs; it lets the feed
/// step over them instead of reading them back.
#[derive(Debug, Default)]
pub(super) struct OwnEvents {
    following: AtomicBool,
    ahead: Mutex<BTreeSet<u64>>,
}

/// Own events remembered at most: past this, the feed reads them back.
const MAX_OWN_AHEAD: usize = 65_536;

impl OwnEvents {
    fn follow(&self) {
        self.following.store(true, Ordering::Relaxed);
    }

    /// Remembers an event this process recorded.
    pub(super) fn recorded(&self, sequence: u64) {
        if !self.following.load(Ordering::Relaxed) {
            return;
        }
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if ahead.len() >= MAX_OWN_AHEAD {
            ahead.clear();
        }
        ahead.insert(sequence);
    }

    /// Moves `last` past the own events that follow it; answers whether
    /// that reached `sequence`, so that nothing up to it is left to read.
    fn cover(&self, last: &mut u64, sequence: u64) -> bool {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(first) = ahead.pop_first() {
            if first > *last + 1 {
                ahead.insert(first);
                break;
            }
            *last = (*last).max(first);
        }
        *last >= sequence
    }
}

#[cfg(test)]
mod tests {
    use super::OwnEvents;

    #[test]
    fn the_feed_steps_over_own_events_up_to_the_first_gap() {
        let own = OwnEvents::default();
        own.recorded(1);
        let mut last = 0;
        assert!(!own.cover(&mut last, 1), "nothing is remembered before the feed follows");

        own.follow();
        for sequence in [3, 4, 6, 2] {
            own.recorded(sequence);
        }
        let mut last = 1;
        assert!(own.cover(&mut last, 4), "2, 3 and 4 are own events");
        assert_eq!(last, 4);
        assert!(!own.cover(&mut last, 6), "5 is another replica's: it must be read");
        assert_eq!(last, 4);

        // The feed read 5 and 6 from the store; 6 is forgotten on the way.
        let mut last = 6;
        own.recorded(7);
        assert!(own.cover(&mut last, 7));
        assert_eq!(last, 7);
        assert!(own.ahead.lock().unwrap().is_empty());
    }
}

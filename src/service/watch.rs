//! WatchSessions: recorded events first, then live ones, in sequence order
//! and without gaps.
//!
//! Stores number events in commit order, but the in-process fan-out may
//! deliver them slightly out of order, or drop some for a slow watcher
//! (`Lagged`). The watcher therefore tracks the last sequence it sent; any
//! live event that is not the next one sends it back to the store to catch
//! up, and events it already sent are skipped.
//!
//! With a store shared by several processes, [`Service::run_event_feed`]
//! publishes the events the others record, so a watcher on any replica
//! sees every event. It reads from the store only what this process did not
//! publish itself ([`OwnEvents`]): a replica recording events by the
//! thousand would otherwise read each of them back.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::auth::{Caller, Permission};
use crate::domain::{Error, Event, EventFilter};
use crate::store::Notification;
use crate::telemetry::throttle::{self, Admitted, Cause};

use super::Service;

/// Events read from the store per catch-up query.
const CATCH_UP_BATCH: usize = 500;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// Only events recorded from now on.
    Now,
    /// Recorded events with a greater sequence number, then live ones.
    After(u64),
}

impl Service {
    /// Streams matching events until the receiver is dropped or sessiond
    /// shuts down. Store failures end the stream with an error.
    ///
    /// Only the caller's tenant's events; a service caller must name a
    /// session or a user, an admin may watch the whole tenant. A named
    /// session must exist in the caller's tenant (in any state): an unknown
    /// one, or another tenant's, is `SessionNotFound`, as in every other
    /// call, rather than a stream that stays silent.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn watch(
        &self,
        caller: &Caller,
        mut filter: EventFilter,
        from: WatchFrom,
    ) -> Result<mpsc::Receiver<Result<Event, Error>>, Error> {
        if !caller.is_admin() && filter.session_id.is_none() && filter.user_id.is_none() {
            return Err(Error::PermissionDenied(
                "watching a whole tenant needs an admin key; name a session_id or user_id",
            ));
        }
        if let Some(id) = &filter.session_id {
            caller.require(Permission::SessionIds)?;
            let found = self.stores().sessions.session_by_id(id).await?;
            if !found.is_some_and(|session| session.tenant == caller.tenant) {
                return Err(Error::SessionNotFound);
            }
        }
        filter.tenant = Some(caller.tenant.clone());
        // Subscribe before reading the last sequence, so nothing recorded in
        // between is missed.
        let live = self.inner.events.subscribe();
        let last = match from {
            WatchFrom::Now => self.stores().events.last_event_sequence().await?,
            WatchFrom::After(0) => 0,
            WatchFrom::After(sequence) => self.resumable(sequence).await?,
        };
        let (sender, receiver) = mpsc::channel(256);
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(err) = service.pump(filter, last, live, &sender).await {
                // The receiver may be gone already; then nobody is told.
                let _ = sender.send(Err(err)).await;
            }
        });
        Ok(receiver)
    }

    /// `after` itself, when the events after it are all still kept: a
    /// cursor beyond the latest event, or one whose next event was purged
    /// (`--event-retention`), is out of range rather than silently empty.
    async fn resumable(&self, after: u64) -> Result<u64, Error> {
        let latest = self.stores().events.last_event_sequence().await?;
        let next = match after.cmp(&latest) {
            std::cmp::Ordering::Equal => return Ok(after),
            std::cmp::Ordering::Greater => None,
            std::cmp::Ordering::Less => self.stores().events.events_after(after, 1).await?.first().map(|e| e.sequence),
        };
        if next == Some(after + 1) {
            return Ok(after);
        }
        // Purges remove the oldest events: what is kept runs from the first.
        let oldest = self.stores().events.events_after(0, 1).await?.first().map_or(latest + 1, |e| e.sequence);
        Err(Error::CursorOutOfRange { expired: after < latest, oldest, latest })
    }

    async fn pump(
        &self,
        filter: EventFilter,
        mut last: u64,
        mut live: tokio::sync::broadcast::Receiver<Event>,
        sender: &mpsc::Sender<Result<Event, Error>>,
    ) -> Result<(), Error> {
        let mut stopping = self.stopping();
        loop {
            // Catch up from the store on the events recorded up to now,
            // the store matching the filter; later ones come live, or by
            // the next catch-up.
            let upto = self.stores().events.last_event_sequence().await?;
            loop {
                let events = self.stores().events.matching_events(&filter, last, upto, CATCH_UP_BATCH).await?;
                let count = events.len();
                for event in events {
                    last = event.sequence;
                    if sender.send(Ok(event)).await.is_err() {
                        return Ok(());
                    }
                }
                if count < CATCH_UP_BATCH {
                    break;
                }
            }
            last = last.max(upto);
            // Follow live events until one is out of order or missed.
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    _ = stopping.wait_for(|stop| *stop) => return Ok(()),
                    _ = sender.closed() => return Ok(()),
                };
                match received {
                    Ok(event) if event.sequence <= last => continue,
                    Ok(event) if event.sequence == last + 1 => {
                        last = event.sequence;
                        if filter.matches(&event.event) && sender.send(Ok(event)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

impl Service {
    /// Publishes events other processes record, as their notifications
    /// arrive, until sessiond shuts down. Does nothing for a store only
    /// this process writes.
    pub async fn run_event_feed(self) {
        use tokio::sync::broadcast::error::RecvError;
        let Some(mut notifications) = self.stores().coordination.notifications() else { return };
        let own = &self.inner.own_events;
        own.follow();
        let mut stopping = self.stopping();
        let mut last = self.stores().events.last_event_sequence().await.unwrap_or(0);
        loop {
            let notification = tokio::select! {
                notification = notifications.recv() => notification,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match notification {
                Ok(Notification::EventsRecorded(sequence)) if sequence <= last => {}
                Ok(Notification::EventsRecorded(sequence)) if own.cover(&mut last, sequence) => {}
                Ok(Notification::EventsRecorded(_)) => self.catch_up_events(&mut last).await,
                Ok(Notification::Resync) | Err(RecvError::Lagged(_)) => {
                    // Announcements of readable logs may have been missed
                    // too: followers read again.
                    self.inner.logs_readable.send_modify(|_| {});
                    self.catch_up_events(&mut last).await;
                }
                Ok(Notification::LogsReadable(position)) => {
                    self.inner.logs_readable.send_modify(|announced| *announced = (*announced).max(position));
                }
                Ok(Notification::Invalidate(_) | Notification::Lost | Notification::FreshUntil(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Publishes the events recorded after `last`, moving it on; a failure
    /// is logged, and the next notification tries again.
    async fn catch_up_events(&self, last: &mut u64) {
        match self.publish_after(*last).await {
            Ok(published) => *last = published,
            Err(err) => {
                const LINE: &str = "cannot read events recorded by other replicas";
                let kind = throttle::error_kind(&err);
                let cause = Cause::new(tracing::Level::WARN, LINE, kind);
                if let Some(Admitted { repeated }) = throttle::admit(cause) {
                    tracing::warn!(error = %err, cause = kind, repeated, "{LINE}");
                }
            }
        }
    }

    /// Publishes recorded events after `last`; answers the last published.
    async fn publish_after(&self, mut last: u64) -> Result<u64, Error> {
        loop {
            let events = self.stores().events.events_after(last, CATCH_UP_BATCH).await?;
            let count = events.len();
            let now = self.now();
            for event in events {
                last = event.sequence;
                crate::telemetry::metrics::event_delivered(now.since(event.event.at));
                self.relay(event);
            }
            if count < CATCH_UP_BATCH {
                return Ok(last);
            }
        }
    }
}

/// The sequence numbers of events this process recorded and published
/// itself that the event feed has not reached yet. Kept only while the feed
/// runs; it lets the feed step over them instead of reading them back.
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

    /// Remembers an event this process published.
    pub(super) fn published(&self, sequence: u64) {
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
        own.published(1);
        let mut last = 0;
        assert!(!own.cover(&mut last, 1), "nothing is remembered before the feed follows");

        own.follow();
        for sequence in [3, 4, 6, 2] {
            own.published(sequence);
        }
        let mut last = 1;
        assert!(own.cover(&mut last, 4), "2, 3 and 4 are own events");
        assert_eq!(last, 4);
        assert!(!own.cover(&mut last, 6), "5 is another replica's: it must be read");
        assert_eq!(last, 4);

        // The feed read 5 and 6 from the store; 6 is forgotten on the way.
        let mut last = 6;
        own.published(7);
        assert!(own.cover(&mut last, 7));
        assert_eq!(last, 7);
        assert!(own.ahead.lock().unwrap().is_empty());
    }
}

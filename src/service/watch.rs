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
//! sees every event.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::domain::{Error, Event, EventFilter};
use crate::store::Notification;

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
    #[tracing::instrument(level = "debug", skip_all)]
    /// Only the caller's tenant's events; a service caller must name a
    /// session or a user, an admin may watch the whole tenant.
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
        filter.tenant = Some(caller.tenant.clone());
        // Subscribe before reading the last sequence, so nothing recorded in
        // between is missed.
        let live = self.inner.events.subscribe();
        let last = match from {
            WatchFrom::Now => self.store().last_event_sequence().await?,
            WatchFrom::After(sequence) => sequence,
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

    async fn pump(
        &self,
        filter: EventFilter,
        mut last: u64,
        mut live: tokio::sync::broadcast::Receiver<Event>,
        sender: &mpsc::Sender<Result<Event, Error>>,
    ) -> Result<(), Error> {
        let mut stopping = self.stopping();
        loop {
            // Catch up from the store.
            loop {
                let events = self.store().events_after(last, CATCH_UP_BATCH).await?;
                let count = events.len();
                for event in events {
                    last = event.sequence;
                    if filter.matches(&event.event) && sender.send(Ok(event)).await.is_err() {
                        return Ok(());
                    }
                }
                if count < CATCH_UP_BATCH {
                    break;
                }
            }
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
        let Some(mut notifications) = self.store().notifications() else { return };
        let mut stopping = self.stopping();
        let mut last = self.store().last_event_sequence().await.unwrap_or(0);
        loop {
            let notification = tokio::select! {
                notification = notifications.recv() => notification,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match notification {
                Ok(Notification::EventsRecorded(sequence)) if sequence <= last => {}
                Ok(Notification::EventsRecorded(_) | Notification::Resync) | Err(RecvError::Lagged(_)) => {
                    match self.publish_after(last).await {
                        Ok(published) => last = published,
                        Err(err) => tracing::warn!(error = %err, "cannot read events recorded by other replicas"),
                    }
                }
                Ok(Notification::Invalidate(_) | Notification::Lost) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Publishes recorded events after `last`; answers the last published.
    async fn publish_after(&self, mut last: u64) -> Result<u64, Error> {
        loop {
            let events = self.store().events_after(last, CATCH_UP_BATCH).await?;
            let count = events.len();
            for event in events {
                last = event.sequence;
                self.publish(event);
            }
            if count < CATCH_UP_BATCH {
                return Ok(last);
            }
        }
    }
}

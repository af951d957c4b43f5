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
//! publishes the events the others record, as the store's change feed
//! ([`crate::store::feed`]) answers them, so a watcher on any replica sees
//! every event.

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::auth::{Caller, Permission};
use crate::domain::{Event, EventFilter};
use crate::service::Error;
use crate::store::feed::Change;

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
            if found.is_none_or(|session| session.tenant != caller.tenant) {
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
    /// Publishes events other processes record, and wakes log followers
    /// when they make entries readable, as the store's change feed
    /// announces them, until sessiond shuts down. Does nothing for a store
    /// only this process writes.
    pub async fn run_event_feed(self) {
        let Some(mut changes) = self.stores().changes() else { return };
        let mut stopping = self.stopping();
        loop {
            let change = tokio::select! {
                change = changes.next() => change,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            match change {
                Some(Change::Event(event)) => {
                    crate::telemetry::metrics::event_delivered(self.now().since(event.event.at));
                    self.relay(event);
                }
                Some(Change::LogsReadable(position)) => {
                    self.inner.logs_readable.send_modify(|announced| *announced = (*announced).max(position));
                }
                // Announcements of readable logs may have been missed:
                // followers read again.
                Some(Change::Resync) => self.inner.logs_readable.send_modify(|_| {}),
                None => return,
            }
        }
    }
}

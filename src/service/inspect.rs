//! An operator's look at one session (the web console's session page): its
//! record, storage, grants and recent events, in any state, read without
//! counting as activity — looking at a session must not keep it alive or
//! end it.

use std::collections::BTreeSet;

use crate::auth::Caller;
use crate::domain::{Event, EventFilter, SessionId, VersionedStorage};
use crate::service::Error;

use super::lifecycle::SessionStatus;
use super::{Service, SessionRef};

/// The latest events searched for one session's timeline: events are not
/// indexed by session, so an inspection reads at most this many.
pub const TIMELINE_EVENTS_SEARCHED: u64 = 10_000;

/// Events read from the store per batch while searching.
const BATCH: usize = 1_000;

/// One session as an operator sees it.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub status: SessionStatus,
    pub storage: VersionedStorage,
    /// Every privilege held now, through roles, includes and promotions
    /// (none once the session has ended).
    pub expanded: BTreeSet<String>,
    /// The session's events among the latest [`TIMELINE_EVENTS_SEARCHED`]
    /// kept, oldest first.
    pub events: Vec<Event>,
}

impl Service {
    /// The session `id` of the caller's tenant, open or ended. Admin
    /// callers only; not activity.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty))]
    pub async fn inspect(&self, caller: &Caller, id: &SessionId) -> Result<Inspection, Error> {
        if !caller.is_admin() {
            return Err(Error::PermissionDenied("inspecting a session needs an admin key"));
        }
        let session = self.find(caller, &SessionRef::id(id.clone())).await?;
        let storage = self.stores().storage.storage(&session.id).await?;
        let expanded = if session.end.is_none() { self.expanded(&session) } else { BTreeSet::new() };
        let filter = EventFilter {
            tenant: Some(caller.tenant.clone()),
            session_id: Some(session.id.clone()),
            ..EventFilter::default()
        };
        let latest = self.stores().events.last_event_sequence().await?;
        let mut after = latest.saturating_sub(TIMELINE_EVENTS_SEARCHED);
        let mut events = Vec::new();
        while after < latest {
            let batch = self.stores().events.events_after(after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.sequence;
            events.extend(batch.into_iter().filter(|e| e.sequence <= latest && filter.matches(&e.event)));
        }
        let last_active = self.inner.activity.last_active(&session);
        Ok(Inspection { status: self.status(session, last_active), storage, expanded, events })
    }
}

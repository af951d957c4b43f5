//! Writing and reading session logs. Entries under the session's policy
//! level are dropped; the rest are stored before the call answers.

use crate::auth::Caller;
use crate::domain::{Error, LogEntry, LogQuery, LogRecord};

use super::{Service, SessionRef};

impl Service {
    /// Appends entries (checked at the edge); answers how many were kept by
    /// the level filter.
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = tracing::field::Empty, entries = entries.len()))]
    pub async fn log(&self, caller: &Caller, session: &SessionRef, entries: Vec<LogEntry>) -> Result<usize, Error> {
        let session = self.open_session(caller, session).await?;
        let policy = self.inner.config.log_policies.for_session(session.kind, &session.labels.endpoint);
        let now = self.now();
        let kept: Vec<LogEntry> = entries
            .into_iter()
            .filter(|e| e.level >= policy.min_level)
            .map(|e| LogEntry { logged_at: now, ..e })
            .collect();
        if !kept.is_empty() {
            self.store().append_logs(&session.id, &kept).await?;
        }
        Ok(kept.len())
    }

    /// Entries of kept logs, by increasing entry id.
    #[tracing::instrument(level = "debug", skip_all)]
    /// Admin callers only: logs span users.
    pub async fn query_logs(&self, caller: &Caller, mut query: LogQuery) -> Result<Vec<LogRecord>, Error> {
        if !caller.is_admin() {
            return Err(Error::PermissionDenied("reading logs needs an admin key"));
        }
        query.tenant = Some(caller.tenant.clone());
        query.limit = query.limit.clamp(1, self.inner.config.limits.max_page_size);
        Ok(self.store().query_logs(&query).await?)
    }
}

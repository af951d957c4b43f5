//! The log entries a transaction inserts: one multi-row `INSERT` of all
//! of them and one `UPDATE` of their sessions' counts, whether they come
//! from a batch's appends (see `bulk`) or from one append on its own (see
//! `writes`).

use std::collections::HashMap;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::pipeline::Pipeline;
use super::sql_int;
use crate::domain::{LogEntry, SessionId};
use crate::store::StoreResult;

/// Entries in the order given, which is the order their ids increase in.
/// Entries logged continuously are readable at once, at this transaction's
/// id (see `V6__logs.sql`), and said so on `sessiond_logs` with that id.
const INSERT_ENTRIES: &str = "WITH inserted AS (INSERT INTO log_entries (session_id, sequence, level, message, \
     exception, stack_trace, client_time, logged_at, tenant, user_id, kind, continuous, endpoint, position) \
     SELECT u.*, CASE WHEN u.continuous THEN pg_current_xact_id()::text::int8 END \
     FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::int8[], \
     $8::int8[], $9::text[], $10::text[], $11::text[], $12::bool[], $13::text[]) \
     AS u (session_id, sequence, level, message, exception, stack_trace, client_time, logged_at, tenant, user_id, \
     kind, continuous, endpoint) RETURNING continuous) \
     SELECT pg_notify('sessiond_logs', pg_current_xact_id()::text) WHERE EXISTS (SELECT 1 FROM inserted \
     WHERE continuous)";

const COUNT_ENTRIES: &str = "UPDATE sessions AS s SET log_count = s.log_count + u.added \
     FROM unnest($1::text[], $2::int8[]) AS u (id, added) WHERE s.id = u.id";

/// What a session's log entries carry of it, for QueryLogs' filters.
pub(super) struct EntrySession {
    tenant: String,
    user_id: Option<String>,
    kind: String,
    endpoint: String,
}

impl EntrySession {
    /// From a row with the session's `tenant`, `user_id`, `kind` and
    /// `endpoint`.
    pub(super) fn of(row: &tokio_postgres::Row) -> StoreResult<Self> {
        Ok(Self {
            tenant: row.try_get("tenant")?,
            user_id: row.try_get("user_id")?,
            kind: row.try_get("kind")?,
            endpoint: row.try_get("endpoint")?,
        })
    }
}

/// Log entries to insert, one array per column, and how many each session
/// gains.
#[derive(Default)]
pub(super) struct NewEntries<'a> {
    session_id: Vec<&'a str>,
    sequence: Vec<i64>,
    level: Vec<i64>,
    message: Vec<&'a str>,
    exception: Vec<Option<&'a str>>,
    stack_trace: Vec<Option<&'a str>>,
    client_time: Vec<Option<i64>>,
    logged_at: Vec<i64>,
    tenant: Vec<String>,
    user_id: Vec<Option<String>>,
    kind: Vec<String>,
    continuous: Vec<bool>,
    endpoint: Vec<String>,
    counted: Vec<&'a str>,
    added: Vec<i64>,
    /// Where each session is in `counted`.
    counted_at: HashMap<&'a str, usize>,
}

impl<'a> NewEntries<'a> {
    /// Adds `entries` of session `id`, numbered from `first`.
    pub(super) fn add(&mut self, id: &'a SessionId, first: u64, entries: &'a [LogEntry], session: &EntrySession) {
        if entries.is_empty() {
            return;
        }
        for (sequence, entry) in (first..).zip(entries) {
            self.session_id.push(id.as_str());
            self.sequence.push(sql_int(sequence));
            self.level.push(entry.level as i64);
            self.message.push(&entry.message);
            self.exception.push(entry.exception.as_deref());
            self.stack_trace.push(entry.stack_trace.as_deref());
            self.client_time.push(entry.client_time.map(|t| t.0));
            self.logged_at.push(entry.logged_at.0);
            self.tenant.push(session.tenant.clone());
            self.user_id.push(session.user_id.clone());
            self.kind.push(session.kind.clone());
            self.continuous.push(entry.continuous);
            self.endpoint.push(session.endpoint.clone());
        }
        match self.counted_at.get(id.as_str()) {
            Some(&at) => self.added[at] += sql_int(entries.len()),
            None => {
                self.counted_at.insert(id.as_str(), self.counted.len());
                self.counted.push(id.as_str());
                self.added.push(sql_int(entries.len()));
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.session_id.is_empty()
    }

    /// Adds the entries' insert and their sessions' counts to `pipeline`,
    /// as `statements` ([`INSERT_ENTRIES`], [`COUNT_ENTRIES`]); answers
    /// the two statements' places.
    pub(super) fn push<'p>(
        &'p self,
        pipeline: &mut Pipeline<'p>,
        (insert, count): &'p (Statement, Statement),
    ) -> (usize, usize) {
        (pipeline.push(insert, self.insert_params()), pipeline.push(count, self.count_params()))
    }

    /// Prepares [`INSERT_ENTRIES`] and [`COUNT_ENTRIES`].
    pub(super) async fn prepare(client: &ClientWrapper) -> StoreResult<(Statement, Statement)> {
        Ok((client.prepare_cached(INSERT_ENTRIES).await?, client.prepare_cached(COUNT_ENTRIES).await?))
    }

    /// The parameters of [`INSERT_ENTRIES`].
    fn insert_params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.session_id,
            &self.sequence,
            &self.level,
            &self.message,
            &self.exception,
            &self.stack_trace,
            &self.client_time,
            &self.logged_at,
            &self.tenant,
            &self.user_id,
            &self.kind,
            &self.continuous,
            &self.endpoint,
        ]
    }

    /// The parameters of [`COUNT_ENTRIES`].
    fn count_params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.counted, &self.added]
    }
}

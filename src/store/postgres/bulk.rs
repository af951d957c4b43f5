//! The writes a batch applies in multi-row statements: its creates, one
//! `INSERT … SELECT FROM unnest(…)` for all of them, and its log appends,
//! one row-locking `SELECT` of their sessions and one `COPY` of all their
//! entries (see `entries`). These are the writes that come by the thousand; a statement per
//! write would cost a round trip each (see `writer`). Creates and appends
//! carrying an idempotency record are not among them: whether they apply
//! depends on their record, so each runs on its own (see `writes`).

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use super::entries::{EntrySession, NewEntries};
use super::pipeline::{Attempt, Pipeline, first_failure};
use super::rows::{end_reason, millis, unsigned};
use super::writes::{Applied, Write};
use super::{internal, sql_int};
use crate::domain::{LogEntry, NewEvent, Session, SessionId};
use crate::store::{LogLimits, StoreError, StoreResult};

/// The batch's creates, one row per element of the arrays, but those of a
/// tenant that holds the limit given at `$limit` (zero: none) of open
/// sessions already, as committed when the statement starts (so the
/// batch's creates of one tenant do not see each other). Answers the ids
/// created.
macro_rules! insert_sessions {
    ($limit:literal) => {
        concat!(
            "INSERT INTO sessions (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, \
             client_address, user_agent, created_at, last_active_at, idle_ms, lifetime_ms, expires_at, trusted, \
             grants, grants_version, storage, storage_version) \
             SELECT n.* FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], \
             $15::int8[], $16::bool[], $17::text[], $18::int8[], $19::text[], $20::int8[]) \
             AS n (id, token_hash, tenant, kind, user_id, endpoint, method, future_call, client_address, user_agent, \
             created_at, last_active_at, idle_ms, lifetime_ms, expires_at, trusted, grants, grants_version, storage, \
             storage_version) \
             WHERE ",
            $limit,
            "::int8 = 0 OR coalesce((SELECT t.open FROM tenant_sessions AS t WHERE t.tenant = n.tenant), 0) < ",
            $limit,
            "::int8 RETURNING id"
        )
    };
}

const INSERT_SESSIONS: &str = insert_sessions!("$21");

/// A batch of creates alone, as one statement and so a transaction of its
/// own: the sessions, but those over their tenant's limit at `$29`; once
/// they are in, the event counter bumped by as many (its row lock is held
/// from there to the commit, which follows at once); the events of those
/// created, of `$21`…`$27`, numbered after the counter's old value in the
/// order given; the notification on `$28`. Answers the counter and the ids
/// created. Against a `BEGIN`, the statements of each step and a `COMMIT`,
/// this spares Postgres five statements per batch; and the quota is
/// checked without a statement of its own.
const CREATE_ALONE: &str = concat!(
    "WITH created AS (",
    insert_sessions!("$29"),
    "), \
     bumped AS (UPDATE event_counter SET last_sequence = last_sequence + (SELECT count(*) FROM created) \
     RETURNING last_sequence), \
     recorded AS (INSERT INTO events (sequence, event_type, session_id, tenant, user_id, kind, end_reason, at) \
     SELECT b.last_sequence - (SELECT count(*) FROM created) + e.k, e.event_type, e.session_id, e.tenant, \
     e.user_id, e.kind, e.end_reason, e.at \
     FROM bumped AS b, (SELECT u.*, row_number() OVER (ORDER BY u.n) AS k \
     FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[], $27::int8[]) \
     WITH ORDINALITY AS u (event_type, session_id, tenant, user_id, kind, end_reason, at, n) \
     WHERE u.session_id IN (SELECT id FROM created)) AS e) \
     SELECT last_sequence, pg_notify($28, last_sequence::text), ARRAY(SELECT id FROM created) AS created \
     FROM bumped"
);

/// Locks the sessions log entries go to, in id order (so that two writers
/// never wait for each other's locks in a cycle), and reads what appending
/// builds on: with the log entries their tenant holds, as committed (see
/// `entries::TENANT_ENTRIES`).
const LOCK_SESSIONS: &str = "SELECT id, end_reason, log_count, tenant, user_id, kind, endpoint, \
     pg_current_xact_id()::text::int8 AS transaction, \
     (SELECT coalesce(sum(t.entries), 0) FROM tenant_log_entries AS t WHERE t.tenant = sessions.tenant)::int8 \
     AS tenant_entries \
     FROM sessions WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";

/// The creates and log appends of a batch, by their place in it.
#[derive(Default)]
pub(super) struct Bulk<'w> {
    creates: Vec<(usize, &'w Write)>,
    appends: Vec<(usize, &'w SessionId, &'w [LogEntry], LogLimits)>,
}

impl<'w> Bulk<'w> {
    /// Writes carrying an idempotency record are left to be applied one by
    /// one, since whether they apply depends on the record; so are appends
    /// to a session a keyed append writes to, which must be numbered after
    /// it in batch order.
    pub(super) fn of(writes: &[&'w Write]) -> Self {
        let keyed: BTreeSet<&SessionId> = writes
            .iter()
            .filter_map(|write| match write {
                Write::Logs { id, request: Some(_), .. } => Some(id),
                _ => None,
            })
            .collect();
        let mut bulk = Bulk::default();
        for (i, write) in writes.iter().enumerate() {
            match write {
                Write::Create { request: None, .. } => bulk.creates.push((i, write)),
                Write::Logs { id, entries, request: None, max } if !keyed.contains(id) => {
                    bulk.appends.push((i, id, entries, *max))
                }
                _ => {}
            }
        }
        bulk
    }

    /// Whether the batch is creates alone: then it is one statement (see
    /// [`Bulk::create_alone`]).
    pub(super) fn is_creates_alone(&self, writes: usize) -> bool {
        self.appends.is_empty() && self.creates.len() == writes
    }

    /// The `created` event of each create, in batch order.
    pub(super) fn events(&self) -> Vec<&'w NewEvent> {
        self.creates
            .iter()
            .filter_map(|(_, write)| match write {
                Write::Create { event, .. } => Some(event),
                _ => None,
            })
            .collect()
    }

    /// Open sessions a tenant may hold, as the batch's creates say (zero:
    /// no limit).
    fn max_open(&self) -> u64 {
        self.creates
            .iter()
            .find_map(|(_, write)| match write {
                Write::Create { max_open, .. } => Some(*max_open),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Commits a batch of creates alone as one statement, [`CREATE_ALONE`],
    /// with their `events` (the columns of `$21`…`$27`, one `created`
    /// event per create, in batch order) and notifying `channel`; answers
    /// the event counter after it and the ids of the sessions created.
    pub(super) async fn create_alone(
        &self,
        client: &ClientWrapper,
        events: Vec<&(dyn ToSql + Sync)>,
        channel: &str,
    ) -> Result<(i64, Vec<String>), Attempt> {
        let statement = client.prepare_cached(CREATE_ALONE).await.map_err(StoreError::from)?;
        let sessions = NewSessions::of(self.creates.iter().map(|(_, write)| *write));
        let limit = sql_int(self.max_open());
        let mut params = sessions.params();
        params.extend(events);
        params.push(&channel);
        params.push(&limit);
        let rows = client.query(&statement, &params).await.map_err(|e| Attempt::after(e.into(), true))?;
        let row = rows.first().ok_or_else(|| internal("the event counter answered no row"))?;
        let last = row.try_get("last_sequence").map_err(StoreError::from)?;
        Ok((last, row.try_get("created").map_err(StoreError::from)?))
    }

    /// Prepares `BEGIN` and the creates' insert.
    async fn opening(&self, client: &ClientWrapper) -> StoreResult<Opening<'w>> {
        let begin = client.prepare_cached("BEGIN").await?;
        let insert = match self.creates.is_empty() {
            true => None,
            false => Some(client.prepare_cached(INSERT_SESSIONS).await?),
        };
        Ok(Opening {
            begin,
            insert,
            sessions: NewSessions::of(self.creates.iter().map(|(_, write)| *write)),
            limit: sql_int(self.max_open()),
        })
    }

    /// Fills in each create's result from the ids of the sessions
    /// `created`: the others were refused for their tenant's quota. If the
    /// insert is refused, the transaction rolls back and nothing is
    /// answered from this attempt.
    pub(super) fn created(&self, created: &[String], applied: &mut [Option<StoreResult<Applied>>]) {
        let created: BTreeSet<&str> = created.iter().map(String::as_str).collect();
        for (i, write) in &self.creates {
            if let Write::Create { session, event, max_open, .. } = write {
                applied[*i] = Some(match created.contains(session.id.as_str()) {
                    true => Ok(Applied::recorded(event)),
                    false => Err(StoreError::TenantFull { max: *max_open }),
                });
            }
        }
    }

    /// Step 1 of a batch: `BEGIN`, inserts the creates and locks the
    /// sessions appended to, in one round trip. Fills in the result of
    /// each create and append; answers the entries to insert at the end.
    pub(super) async fn begin(
        &self,
        client: &ClientWrapper,
        applied: &mut [Option<StoreResult<Applied>>],
    ) -> Result<NewEntries<'w>, Attempt> {
        let opening = self.opening(client).await?;
        let lock = match self.appends.is_empty() {
            true => None,
            false => Some(client.prepare_cached(LOCK_SESSIONS).await.map_err(StoreError::from)?),
        };
        let locked: Vec<&str> =
            self.appends.iter().map(|(_, id, _, _)| id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();

        let mut pipeline = Pipeline::new(client);
        let inserting = opening.push(&mut pipeline);
        let locking = lock.as_ref().map(|lock| pipeline.push(lock, vec![&locked]));
        let mut answers = pipeline.run().await;
        if let Some((failed, cause)) = first_failure(&mut answers) {
            // Everything after `BEGIN` is a multi-row statement.
            return Err(Attempt::after(cause, failed > 0));
        }

        let inserted = match inserting {
            Some(at) => std::mem::replace(&mut answers[at], Ok(Vec::new())).map_err(StoreError::from)?,
            None => Vec::new(),
        };
        let created: Vec<String> =
            inserted.iter().map(|row| row.try_get("id")).collect::<Result<_, _>>().map_err(StoreError::from)?;
        self.created(&created, applied);
        let rows = match locking {
            Some(at) => answers.swap_remove(at).map_err(StoreError::from)?,
            None => Vec::new(),
        };
        let mut open = HashMap::with_capacity(rows.len());
        // Each tenant's entries: as committed, then as the batch adds.
        let mut tenants: HashMap<String, u64> = HashMap::new();
        for row in &rows {
            let id: &str = row.try_get("id").map_err(StoreError::from)?;
            let next = match end_reason(row)? {
                Some(reason) => Err(reason),
                None => Ok((unsigned(row, "log_count")? + 1, EntrySession::of(row)?)),
            };
            if let Ok((_, session)) = &next {
                tenants.insert(session.tenant().to_owned(), unsigned(row, "tenant_entries")?);
            }
            open.insert(id.to_owned(), next);
        }
        let mut entries = NewEntries::default();
        for (i, id, appended, limits) in &self.appends {
            let result = match open.get_mut(id.as_str()) {
                None => Err(StoreError::NotFound),
                Some(Err(reason)) => Err(StoreError::Ended(*reason)),
                Some(Ok((next, session))) => {
                    let held = tenants.get_mut(session.tenant()).ok_or_else(|| internal("a tenant went uncounted"))?;
                    limits.check(*next - 1, *held, appended.len()).map(|()| {
                        entries.add(id, *next, appended, session);
                        *next += appended.len() as u64;
                        *held += appended.len() as u64;
                        Applied::unrecorded()
                    })
                }
            };
            applied[*i] = Some(result);
        }
        Ok(entries)
    }
}

/// What a batch's transaction opens with: `BEGIN` and its creates.
struct Opening<'w> {
    begin: Statement,
    insert: Option<Statement>,
    sessions: NewSessions<'w>,
    /// Open sessions a tenant may hold (zero: no limit).
    limit: i64,
}

impl Opening<'_> {
    /// Adds `BEGIN` (first) and the creates' insert to `pipeline`; answers
    /// where the insert's answer will be, if there is one.
    fn push<'a>(&'a self, pipeline: &mut Pipeline<'a>) -> Option<usize> {
        pipeline.push(&self.begin, Vec::new());
        self.insert.as_ref().map(|insert| {
            let mut params = self.sessions.params();
            params.push(&self.limit);
            pipeline.push(insert, params)
        })
    }
}

/// The columns of the sessions a batch creates, one array per column.
#[derive(Default)]
struct NewSessions<'a> {
    id: Vec<&'a str>,
    token_hash: Vec<&'a [u8]>,
    tenant: Vec<&'a str>,
    kind: Vec<&'a str>,
    user_id: Vec<Option<&'a str>>,
    endpoint: Vec<&'a str>,
    method: Vec<&'a str>,
    future_call: Vec<&'a str>,
    client_address: Vec<&'a str>,
    user_agent: Vec<&'a str>,
    created_at: Vec<i64>,
    last_active_at: Vec<i64>,
    idle_ms: Vec<Option<i64>>,
    lifetime_ms: Vec<Option<i64>>,
    expires_at: Vec<Option<i64>>,
    trusted: Vec<bool>,
    grants: Vec<&'a str>,
    grants_version: Vec<i64>,
    storage: Vec<&'a str>,
    storage_version: Vec<i64>,
}

impl<'a> NewSessions<'a> {
    fn of(creates: impl Iterator<Item = &'a Write>) -> Self {
        let mut columns = NewSessions::default();
        for write in creates {
            if let Write::Create { session, grants, storage, storage_version, .. } = write {
                columns.add(session, grants, storage, *storage_version);
            }
        }
        columns
    }

    fn add(&mut self, s: &'a Session, grants: &'a str, storage: &'a str, storage_version: i64) {
        self.id.push(s.id.as_str());
        self.token_hash.push(s.token_hash.0.as_slice());
        self.tenant.push(s.tenant.as_str());
        self.kind.push(s.kind.as_str());
        self.user_id.push(s.user_id.as_deref());
        self.endpoint.push(&s.labels.endpoint);
        self.method.push(&s.labels.method);
        self.future_call.push(&s.labels.future_call);
        self.client_address.push(&s.labels.client_address);
        self.user_agent.push(&s.labels.user_agent);
        self.created_at.push(s.created_at.0);
        self.last_active_at.push(s.last_active_at.0);
        self.idle_ms.push(millis(s.idle_timeout));
        self.lifetime_ms.push(millis(s.lifetime));
        self.expires_at.push(s.expires_at(s.last_active_at).map(|at| at.0));
        self.trusted.push(s.trusted);
        self.grants.push(grants);
        self.grants_version.push(sql_int(s.grants_version));
        self.storage.push(storage);
        self.storage_version.push(storage_version);
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.token_hash,
            &self.tenant,
            &self.kind,
            &self.user_id,
            &self.endpoint,
            &self.method,
            &self.future_call,
            &self.client_address,
            &self.user_agent,
            &self.created_at,
            &self.last_active_at,
            &self.idle_ms,
            &self.lifetime_ms,
            &self.expires_at,
            &self.trusted,
            &self.grants,
            &self.grants_version,
            &self.storage,
            &self.storage_version,
        ]
    }
}

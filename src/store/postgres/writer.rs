//! Group commit: the writer tasks of the Postgres store, which commit its
//! writes (see `writes`) in batches.
//!
//! A write is sent to one of a few writer tasks; all writes of one session
//! go to the same writer, so a store's own writers never wait on each
//! other's row locks, and one session's writes commit in the order queued.
//! Creates all go to the first writer (see `Write::writer`).
//! A writer takes every write waiting (up to [`MAX_BATCH`]) and runs them
//! in one transaction, in three steps. Each step is one [`Pipeline`]: its
//! statements go out together and are answered in order, so a step costs
//! one round trip however many writes it carries (step 3 two, when it
//! copies log entries: the copy is answered its go-ahead before its rows
//! are sent).
//!
//! 1. `BEGIN`, the batch's creates as one multi-row `INSERT`, and the row
//!    locks of the sessions its log appends go to (see `bulk`);
//! 2. every other write inside the savepoint `write`: one that fails (an
//!    unknown or ended session, a version conflict, a refused statement) is
//!    rolled back to it alone and answered its error;
//! 3. the log entries as one `COPY` (see `entries`), the events of the writes
//!    that succeeded, numbered by bumping `event_counter` once for the
//!    whole batch, the notifications for other replicas, and `COMMIT`.
//!
//! A batch of creates alone, the most common batch, skips the steps: it is
//! one statement, a transaction of its own (`bulk::CREATE_ALONE`).
//!
//! When a multi-row statement is refused (a duplicate token hash, say), the
//! transaction is rolled back and the batch runs again with every write in
//! its own savepoint, so that only the write at fault fails.
//!
//! Callers are answered after the `COMMIT`. When the batch itself fails
//! (the connection is lost, the commit is refused) every write in it is
//! answered that failure.
//!
//! When Postgres is found not to commit (see `probe`), a batch under way is
//! abandoned with its connection and its writes are answered UNAVAILABLE
//! at once; while it is not committing, writes give up after the connect
//! timeout. Such a write may still commit
//! if the server resumes and had its `COMMIT` already (its outcome is
//! unknown, as after any lost answer); it is never half-applied.

use std::collections::BTreeSet;

use deadpool_postgres::{ClientWrapper, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;
use tracing::Level;

use super::bulk::Bulk;
use super::connect::Retirement;
use super::entries::{EntryStatements, NewEntries, TenantEntries};
use super::pipeline::{Attempt, BatchFailed, Pipeline, first_failure};
use super::probe::Availability;
use super::writes::{Applied, Changed, Outcome, Write};
use super::{EVENTS_CHANNEL, INVALIDATE_CHANNEL, READ_ONLY, internal, not_committing, pool_error, sql_int};
use crate::domain::{EndReason, Event, NewEvent, SessionId};
use crate::store::{Purged, StoreError, StoreResult};
use crate::telemetry::throttle::{self, Admitted, Cause};

/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;
/// Writes that may wait for one writer before callers wait to queue more.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// A write's answer once its batch committed.
#[derive(Debug)]
pub(super) struct Committed {
    /// The events the write recorded, numbered, in order.
    pub events: Vec<Event>,
    pub outcome: Outcome,
}

impl Committed {
    /// The event of a write that records one.
    pub fn event(self) -> StoreResult<Event> {
        self.events.into_iter().next().ok_or_else(|| internal("a write that records an event recorded none"))
    }

    /// The new version and the event of a compare-and-set.
    pub fn versioned(self) -> StoreResult<(u64, Event)> {
        match self {
            Committed { events, outcome: Outcome::Version(version) } => {
                let event = events.into_iter().next().ok_or_else(|| internal("a compare-and-set recorded no event"))?;
                Ok((version, event))
            }
            _ => Err(internal("a compare-and-set answered no version")),
        }
    }

    pub fn purged(self) -> StoreResult<Purged> {
        match self.outcome {
            Outcome::Purged(purged) => Ok(purged),
            _ => Err(internal("a purge answered no counts")),
        }
    }
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<StoreResult<Committed>>,
}

/// The queues of the writer tasks. The tasks stop once these are dropped
/// and what is queued is committed.
pub(super) struct Writers {
    queues: Vec<mpsc::Sender<Queued>>,
    availability: Availability,
}

impl Writers {
    /// Starts `count` writer tasks taking connections from `pool`.
    pub fn start(pool: &Pool, count: usize, availability: &Availability, retirement: &Retirement) -> Writers {
        let queues = (0..count.max(1))
            .map(|_| {
                let (queue, writes) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(run_writer(pool.clone(), writes, availability.clone(), retirement.clone()));
                queue
            })
            .collect();
        Writers { queues, availability: availability.clone() }
    }

    /// Queues `write` for its writer and waits until its batch committed,
    /// or until Postgres is found not to commit.
    pub async fn submit(&self, write: Write) -> StoreResult<Committed> {
        let queue = &self.queues[write.writer(self.queues.len())];
        let (reply, answer) = oneshot::channel();
        let committed = async {
            queue.send(Queued { write, reply }).await.map_err(|_| internal("the postgres writer has stopped"))?;
            answer.await.map_err(|_| internal("the postgres writer has stopped"))?
        };
        tokio::select! {
            committed = committed => committed,
            () = self.availability.given_up() => Err(not_committing()),
        }
    }
}

impl Writers {
    /// Queues each of `writes` for its writer, then waits until all their
    /// batches committed: writes for different writers commit side by side.
    pub async fn submit_all(&self, writes: Vec<Write>) -> StoreResult<Vec<Committed>> {
        let committed = async {
            let mut answers = Vec::with_capacity(writes.len());
            for write in writes {
                let queue = &self.queues[write.writer(self.queues.len())];
                let (reply, answer) = oneshot::channel();
                queue.send(Queued { write, reply }).await.map_err(|_| internal("the postgres writer has stopped"))?;
                answers.push(answer);
            }
            let mut committed = Vec::with_capacity(answers.len());
            for answer in answers {
                committed.push(answer.await.map_err(|_| internal("the postgres writer has stopped"))??);
            }
            Ok(committed)
        };
        tokio::select! {
            committed = committed => committed,
            () = self.availability.given_up() => Err(not_committing()),
        }
    }
}

/// A writer task: commits queued writes in batches until the queue closes.
async fn run_writer(
    pool: Pool,
    mut writes: mpsc::Receiver<Queued>,
    availability: Availability,
    retirement: Retirement,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while writes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A write whose caller gave up waiting (answered UNAVAILABLE, or past
        // its deadline) before its batch began is not applied at all.
        batch.retain(|queued| !queued.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        match commit(&pool, &batch, &availability, &retirement).await {
            Ok(results) => {
                tracing::trace!(writes = batch.len(), "committed a postgres write batch");
                for (queued, result) in batch.drain(..).zip(results) {
                    // The caller may have stopped waiting; then no one needs the answer.
                    let _ = queued.reply.send(result);
                }
            }
            Err(failure) => {
                const LINE: &str = "a postgres write batch did not commit";
                let kind = if failure.transient { "unavailable" } else { "internal" };
                if let Some(Admitted { repeated }) = throttle::admit(Cause::new(Level::ERROR, LINE, kind)) {
                    tracing::error!(error = %failure, writes = batch.len(), cause = kind, repeated, "{LINE}");
                }
                for queued in batch.drain(..) {
                    let _ = queued.reply.send(Err(failure.for_each_write()));
                }
            }
        }
    }
}

/// How a batch's transaction applies its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Creates and log appends in multi-row statements, the rest one by one.
    Bulk,
    /// Every write in its own savepoint.
    OneByOne,
}

/// Commits a batch; answers each write's own result. The batch is
/// abandoned, with its connection, when Postgres is found not to commit.
/// When Postgres refuses it as read-only, the pool's connections are
/// retired, so the next batch connects afresh (to the new primary).
async fn commit(
    pool: &Pool,
    batch: &[Queued],
    availability: &Availability,
    retirement: &Retirement,
) -> Result<Vec<StoreResult<Committed>>, BatchFailed> {
    let given_up = availability.given_up();
    tokio::pin!(given_up);
    let client = tokio::select! {
        client = super::timed_get(pool) => client.map_err(pool_error)?,
        () = &mut given_up => return Err(not_committing().into()),
    };
    let writes: Vec<&Write> = batch.iter().map(|queued| &queued.write).collect();
    let committed = async {
        match transact(&client, &writes, Plan::Bulk).await {
            Err(Attempt::Refused(cause)) => {
                tracing::debug!(error = %cause, "a multi-row statement was refused; committing the batch write by write");
                transact(&client, &writes, Plan::OneByOne).await
            }
            attempt => attempt,
        }
    };
    let attempt = tokio::select! {
        attempt = committed => attempt,
        () = given_up => {
            // Its transaction may never answer: the pool must not lend it
            // again. Postgres rolls it back once it sees the socket closed,
            // unless its COMMIT had arrived already.
            drop(deadpool_postgres::Object::take(client));
            return Err(not_committing().into());
        }
    };
    let attempt = attempt.map_err(|failure| match failure {
        Attempt::Refused(cause) => BatchFailed::from(cause),
        Attempt::Failed(failure) => failure,
    });
    if attempt.as_ref().is_err_and(|failure| failure.read_only) {
        drop(deadpool_postgres::Object::take(client));
        retirement.retire(READ_ONLY);
    }
    attempt
}

/// Runs the batch in one transaction and commits it.
async fn transact(
    client: &ClientWrapper,
    writes: &[&Write],
    plan: Plan,
) -> Result<Vec<StoreResult<Committed>>, Attempt> {
    let bulk = match plan {
        Plan::Bulk => Bulk::of(writes),
        Plan::OneByOne => Bulk::default(),
    };
    let mut applied: Vec<Option<StoreResult<Applied>>> = writes.iter().map(|_| None).collect();
    if bulk.is_creates_alone(writes.len()) {
        let events = NewEvents::from(bulk.events());
        let (last, created) = bulk.create_alone(client, events.columns(), EVENTS_CHANNEL).await?;
        bulk.created(&created, &mut applied);
        let count = sql_int(created.len());
        return Ok(answers(settled(applied), last - count + 1..=last));
    }
    let entries = match bulk.begin(client, &mut applied).await {
        Ok(entries) => entries,
        Err(attempt) => {
            rollback(client).await;
            return Err(attempt);
        }
    };
    if let Err(failure) = apply_one_by_one(client, writes, &mut applied).await {
        rollback(client).await;
        return Err(failure.into());
    }
    let applied = settled(applied);
    let sequences = finish(client, &applied, &entries, plan).await?;
    Ok(answers(applied, sequences))
}

/// Each write's result, once every write was applied.
fn settled(applied: Vec<Option<StoreResult<Applied>>>) -> Vec<StoreResult<Applied>> {
    applied.into_iter().map(|a| a.unwrap_or_else(|| Err(internal("a write was never applied")))).collect()
}

/// Each write's answer: its result, with its event numbered from
/// `sequences`, taken in batch order.
fn answers(
    applied: Vec<StoreResult<Applied>>,
    sequences: impl IntoIterator<Item = i64>,
) -> Vec<StoreResult<Committed>> {
    let mut sequences = sequences.into_iter();
    applied
        .into_iter()
        .map(|result| {
            let Applied { events, outcome, .. } = result?;
            let events = events
                .into_iter()
                .map(|event| {
                    let sequence = sequences.next().ok_or_else(|| internal("an event went unnumbered"))?;
                    Ok(Event { sequence: sequence as u64, event })
                })
                .collect::<StoreResult<_>>()?;
            Ok(Committed { events, outcome })
        })
        .collect()
}

/// Step 2: applies each write not applied yet inside the savepoint `write`,
/// rolling a failed one back alone.
async fn apply_one_by_one(
    client: &ClientWrapper,
    writes: &[&Write],
    applied: &mut [Option<StoreResult<Applied>>],
) -> StoreResult<()> {
    let mut savepoint_set = false;
    for (write, slot) in writes.iter().zip(applied.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        // After a success, move the savepoint past it; after a failure the
        // rollback left it where the next write starts.
        if !savepoint_set {
            client.batch_execute("SAVEPOINT write").await?;
            savepoint_set = true;
        }
        let result = write.apply(client).await;
        if result.is_ok() {
            client.batch_execute("RELEASE SAVEPOINT write").await?;
            savepoint_set = false;
        } else {
            client.batch_execute("ROLLBACK TO SAVEPOINT write").await?;
        }
        *slot = Some(result);
    }
    Ok(())
}

/// Step 3: inserts the log entries, numbers and inserts the events of the
/// writes that succeeded (in batch order), notifies, and commits; answers
/// the events' sequence numbers. The counter's row lock is taken here, as
/// late as possible, and held until the commit.
async fn finish(
    client: &ClientWrapper,
    applied: &[StoreResult<Applied>],
    entries: &NewEntries<'_>,
    plan: Plan,
) -> Result<Vec<i64>, Attempt> {
    let events = NewEvents::of(applied);
    let changed = changed_sessions(applied);
    let mut held = TenantEntries::default();
    held.merge(entries.tenants());
    for applied in applied.iter().flatten() {
        held.merge(&applied.tenant_entries);
    }
    let statements = Finish::prepare(client, entries, &held, &events, &changed).await?;
    let count = sql_int(events.event_type.len());
    let ids = packed(&changed);

    let (tenants, added, stripe) = held.params();

    let mut pipeline = Pipeline::new(client);
    let inserted = statements.entries.as_ref().map(|statements| entries.push(&mut pipeline, statements));
    if let Some(count) = &statements.tenant_entries {
        pipeline.push(count, vec![&tenants, &added, &stripe]);
    }
    // Invalidations are notified before the events: a replica that has
    // seen event N has then dropped every record changed up to N (reads
    // asking for `min_sequence` rely on it).
    if let Some(notify) = &statements.invalidate {
        pipeline.push(notify, vec![&INVALIDATE_CHANNEL, &ids]);
    }
    let bumped = statements.events.as_ref().map(|(bump, insert, notify)| {
        let bumped = pipeline.push(bump, vec![&count]);
        pipeline.push(insert, events.params(&count));
        pipeline.push(notify, vec![&EVENTS_CHANNEL]);
        bumped
    });
    pipeline.push(&statements.commit, Vec::new());
    let mut answers = pipeline.run().await;

    // The first failure ended the transaction: Postgres refused every
    // statement after it, and answered the `COMMIT` with a rollback.
    if let Some((failed, cause)) = first_failure(&mut answers) {
        let multi_row = inserted.is_some_and(|(insert, counts)| failed == insert || failed == counts);
        return Err(Attempt::after(cause, multi_row && plan == Plan::Bulk));
    }
    let Some(bumped) = bumped else { return Ok(Vec::new()) };
    let rows = answers.swap_remove(bumped).map_err(StoreError::from)?;
    let row = rows.first().ok_or_else(|| internal("the event counter answered no row"))?;
    let last: i64 = row.try_get(0).map_err(StoreError::from)?;
    Ok((last - count + 1..=last).collect())
}

/// The statements of step 3, prepared before any is sent so that the
/// pipeline goes out in order.
struct Finish {
    entries: Option<EntryStatements>,
    tenant_entries: Option<Statement>,
    events: Option<(Statement, Statement, Statement)>,
    invalidate: Option<Statement>,
    commit: Statement,
}

impl Finish {
    async fn prepare(
        client: &ClientWrapper,
        entries: &NewEntries<'_>,
        held: &TenantEntries,
        events: &NewEvents<'_>,
        changed: &BTreeSet<&str>,
    ) -> StoreResult<Finish> {
        let entries = match entries.is_empty() {
            true => None,
            false => Some(NewEntries::prepare(client).await?),
        };
        let tenant_entries = match held.is_empty() {
            true => None,
            false => Some(TenantEntries::prepare(client).await?),
        };
        let events = match events.event_type.is_empty() {
            true => None,
            false => Some((
                client
                    .prepare_cached(
                        "UPDATE event_counter SET last_sequence = last_sequence + $1 RETURNING last_sequence",
                    )
                    .await?,
                client.prepare_cached(INSERT_EVENTS).await?,
                client.prepare_cached("SELECT pg_notify($1, last_sequence::text) FROM event_counter").await?,
            )),
        };
        let invalidate = match changed.is_empty() {
            true => None,
            false => Some(client.prepare_cached("SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id").await?),
        };
        Ok(Finish { entries, tenant_entries, events, invalidate, commit: client.prepare_cached("COMMIT").await? })
    }
}

/// The batch's events, numbered after the counter just bumped by `$1`, in
/// the order given.
const INSERT_EVENTS: &str = "INSERT INTO events (sequence, event_type, session_id, tenant, user_id, kind, \
     end_reason, at) \
     SELECT c.last_sequence - $1 + e.n, e.event_type, e.session_id, e.tenant, e.user_id, e.kind, e.end_reason, e.at \
     FROM event_counter AS c, \
     unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[]) \
     WITH ORDINALITY AS e (event_type, session_id, tenant, user_id, kind, end_reason, at, n)";

/// The events of the writes that succeeded, one array per column.
struct NewEvents<'a> {
    event_type: Vec<&'a str>,
    session_id: Vec<&'a str>,
    tenant: Vec<&'a str>,
    user_id: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    end_reason: Vec<Option<&'a str>>,
    at: Vec<i64>,
}

impl<'a> NewEvents<'a> {
    fn of(applied: &'a [StoreResult<Applied>]) -> Self {
        Self::from(applied.iter().flatten().flat_map(|a| &a.events).collect::<Vec<_>>())
    }

    fn from(events: Vec<&'a NewEvent>) -> Self {
        NewEvents {
            event_type: events.iter().map(|e| e.event_type.as_str()).collect(),
            session_id: events.iter().map(|e| e.session_id.as_str()).collect(),
            tenant: events.iter().map(|e| e.tenant.as_str()).collect(),
            user_id: events.iter().map(|e| e.user_id.as_deref()).collect(),
            kind: events.iter().map(|e| e.kind.as_str()).collect(),
            end_reason: events.iter().map(|e| e.end_reason.map(EndReason::as_str)).collect(),
            at: events.iter().map(|e| e.at.0).collect(),
        }
    }

    fn params<'p>(&'p self, count: &'p i64) -> Vec<&'p (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![count];
        params.extend(self.columns());
        params
    }

    /// The events' columns, in the order `INSERT_EVENTS` takes them after
    /// the count.
    fn columns(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.event_type, &self.session_id, &self.tenant, &self.user_id, &self.kind, &self.end_reason, &self.at]
    }
}

/// The session records the batch changed, for other replicas to drop from
/// their caches; `*` when a purge deleted sessions.
fn changed_sessions(applied: &[StoreResult<Applied>]) -> BTreeSet<&str> {
    let mut changed = BTreeSet::new();
    for applied in applied.iter().flatten() {
        match &applied.changed {
            Changed::Nothing => {}
            Changed::Session(id) => {
                changed.insert(id.as_str());
            }
            Changed::Sessions(ids) => changed.extend(ids.iter().map(SessionId::as_str)),
            Changed::Every => {
                changed.insert("*");
            }
        }
    }
    changed
}

/// Longest payload of one invalidation: Postgres refuses a `NOTIFY`
/// payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;

/// The changed session ids packed into as few payloads as the limit
/// allows, separated by spaces; `*` alone in its own.
fn packed(changed: &BTreeSet<&str>) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    let mut current = String::new();
    for id in changed {
        if *id == "*" {
            payloads.push((*id).to_owned());
            continue;
        }
        if !current.is_empty() && current.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// Ends a transaction that will not commit. Best effort: when the
/// connection is lost the server rolls back by itself, and the pool drops
/// the connection.
async fn rollback(client: &ClientWrapper) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        tracing::debug!(error = %StoreError::from(e), "could not roll back a postgres write batch");
    }
}

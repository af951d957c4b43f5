//! The log entries a transaction inserts: one binary `COPY` of all of
//! them, one `UPDATE` of their sessions' counts and, when some are logged
//! continuously, their notification, whether they come
//! from a batch's appends (see `bulk`) or from one append on its own (see
//! `writes`).

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::ClientWrapper;
use tokio_postgres::Statement;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::pipeline::Pipeline;
use super::sql_int;
use crate::domain::{LogEntry, SessionId};
use crate::store::StoreResult;

/// Entries in the order given, which is the order their ids increase in,
/// in Postgres' binary copy format: a multi-row insert without the
/// statement's arrays to take apart, and written by the page. `position`
/// is the transaction's id for entries logged continuously, which makes
/// them readable at once (see `V9__logs.sql`), and `NULL` for the others.
const COPY_ENTRIES: &str = "COPY log_entries (session_id, sequence, level, message, exception, stack_trace, \
     client_time, logged_at, tenant, user_id, kind, continuous, endpoint, position) FROM STDIN (FORMAT binary)";

/// The types of [`COPY_ENTRIES`]' columns, in its order.
const ENTRY_TYPES: [Type; 14] = [
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::INT8,
];

/// Says on `sessiond_logs` that entries logged continuously became
/// readable at the transaction id `$1`.
const NOTIFY_ENTRIES: &str = "SELECT pg_notify('sessiond_logs', $1::int8::text)";

const COUNT_ENTRIES: &str = "UPDATE sessions AS s SET log_count = s.log_count + u.added \
     FROM unnest($1::text[], $2::int8[]) AS u (id, added) WHERE s.id = u.id";

/// Adds to the log entries each tenant of `$1` holds the count of `$2`
/// (fewer when negative), in the row of stripe `$3`, in tenant order.
const COUNT_TENANT_ENTRIES: &str = "INSERT INTO tenant_log_entries AS t (tenant, stripe, entries) \
     SELECT u.tenant, $3, u.added FROM unnest($1::text[], $2::int8[]) AS u (tenant, added) ORDER BY u.tenant \
     ON CONFLICT (tenant, stripe) DO UPDATE SET entries = t.entries + excluded.entries";

/// The log entries tenant `$1` holds, as committed (see `V17__tenant_log_entries.sql`).
pub(super) const TENANT_ENTRIES: &str =
    "SELECT coalesce(sum(entries), 0)::int8 AS held FROM tenant_log_entries WHERE tenant = $1";

/// Rows each tenant's count of log entries is spread over: a transaction
/// adds to one of them, picked at random, so that writers appending for
/// one tenant at once seldom wait for each other's row lock until commit.
const STRIPES: i16 = 16;

/// How many log entries each tenant gains (loses, when negative) in one
/// transaction, written by one statement at its end (`writer::finish`):
/// tenants' rows are then locked in one order by every transaction, so
/// writers never wait for each other in a cycle.
#[derive(Debug, Default)]
pub(super) struct TenantEntries(BTreeMap<String, i64>);

impl TenantEntries {
    pub(super) fn add(&mut self, tenant: &str, added: i64) {
        match self.0.get_mut(tenant) {
            Some(held) => *held += added,
            None => {
                self.0.insert(tenant.to_owned(), added);
            }
        }
    }

    /// Adds the counts of `other`.
    pub(super) fn merge(&mut self, other: &TenantEntries) {
        for (tenant, added) in &other.0 {
            self.add(tenant, *added);
        }
    }

    /// From the rows of a `DELETE … RETURNING tenant` counted by tenant,
    /// as `tenant` and `n`: entries gone.
    pub(super) fn deleted(rows: &[tokio_postgres::Row]) -> StoreResult<Self> {
        let mut gone = TenantEntries::default();
        for row in rows {
            let n: i64 = row.try_get("n")?;
            gone.add(row.try_get("tenant")?, -n);
        }
        Ok(gone)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.values().all(|added| *added == 0)
    }

    /// Prepares [`COUNT_TENANT_ENTRIES`].
    pub(super) async fn prepare(client: &ClientWrapper) -> StoreResult<Statement> {
        Ok(client.prepare_cached(COUNT_TENANT_ENTRIES).await?)
    }

    /// The statement's parameters: the tenants, their counts and a stripe.
    pub(super) fn params(&self) -> (Vec<&str>, Vec<i64>, i16) {
        let (tenants, added) = self.0.iter().filter(|(_, added)| **added != 0).map(|(t, a)| (t.as_str(), *a)).unzip();
        (tenants, added, rand::random_range(0..STRIPES))
    }
}

/// What a session's log entries carry of it, for QueryLogs' filters, and
/// the id of the transaction that appends them.
pub(super) struct EntrySession {
    tenant: String,
    user_id: Option<String>,
    kind: String,
    endpoint: String,
    transaction: i64,
}

impl EntrySession {
    /// From a row with the session's `tenant`, `user_id`, `kind` and
    /// `endpoint`, and the locking transaction's id as `transaction`
    /// (`pg_current_xact_id()::text::int8`).
    pub(super) fn of(row: &tokio_postgres::Row) -> StoreResult<Self> {
        Ok(Self {
            tenant: row.try_get("tenant")?,
            user_id: row.try_get("user_id")?,
            kind: row.try_get("kind")?,
            endpoint: row.try_get("endpoint")?,
            transaction: row.try_get("transaction")?,
        })
    }

    pub(super) fn tenant(&self) -> &str {
        &self.tenant
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
    position: Vec<Option<i64>>,
    /// The transaction id to notify on `sessiond_logs`, when an entry is
    /// logged continuously.
    readable_at: Option<i64>,
    counted: Vec<&'a str>,
    added: Vec<i64>,
    /// Where each session is in `counted`.
    counted_at: HashMap<&'a str, usize>,
    /// What each tenant gains.
    tenants: TenantEntries,
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
            self.position.push(entry.continuous.then_some(session.transaction));
            if entry.continuous {
                self.readable_at = Some(session.transaction);
            }
        }
        self.tenants.add(&session.tenant, sql_int(entries.len()));
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

    /// How many entries each tenant gains.
    pub(super) fn tenants(&self) -> &TenantEntries {
        &self.tenants
    }

    /// The same, once the entries are written.
    pub(super) fn into_tenants(self) -> TenantEntries {
        self.tenants
    }

    /// Adds the entries' copy, their sessions' counts and the notification
    /// on `sessiond_logs` to `pipeline`, as `statements` ([`COPY_ENTRIES`],
    /// [`COUNT_ENTRIES`], [`NOTIFY_ENTRIES`]); answers the places of the
    /// copy and the counts.
    pub(super) fn push<'p>(&'p self, pipeline: &mut Pipeline<'p>, statements: &'p EntryStatements) -> (usize, usize) {
        let client = pipeline.client();
        let copied = pipeline.push_answer(Box::pin(async move {
            let sink = client.copy_in(&statements.copy).await?;
            let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &ENTRY_TYPES));
            for row in 0..self.session_id.len() {
                writer.as_mut().write(&self.row(row)).await?;
            }
            writer.finish().await?;
            Ok(Vec::new())
        }));
        let counted = pipeline.push(&statements.count, vec![&self.counted, &self.added]);
        if let Some(transaction) = &self.readable_at {
            pipeline.push(&statements.notify, vec![transaction]);
        }
        (copied, counted)
    }

    /// Prepares [`COPY_ENTRIES`], [`COUNT_ENTRIES`] and [`NOTIFY_ENTRIES`].
    pub(super) async fn prepare(client: &ClientWrapper) -> StoreResult<EntryStatements> {
        Ok(EntryStatements {
            copy: client.prepare_cached(COPY_ENTRIES).await?,
            count: client.prepare_cached(COUNT_ENTRIES).await?,
            notify: client.prepare_cached(NOTIFY_ENTRIES).await?,
        })
    }

    /// Entry `i`'s columns, in the order of [`COPY_ENTRIES`].
    fn row(&self, i: usize) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.session_id[i],
            &self.sequence[i],
            &self.level[i],
            &self.message[i],
            &self.exception[i],
            &self.stack_trace[i],
            &self.client_time[i],
            &self.logged_at[i],
            &self.tenant[i],
            &self.user_id[i],
            &self.kind[i],
            &self.continuous[i],
            &self.endpoint[i],
            &self.position[i],
        ]
    }
}

/// The prepared statements that insert log entries (see [`NewEntries::push`]).
pub(super) struct EntryStatements {
    copy: Statement,
    count: Statement,
    notify: Statement,
}

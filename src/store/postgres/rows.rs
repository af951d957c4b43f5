//! Postgres rows read through the mapping both stores share
//! (`store::sql`), and the shared `SELECT`s with `$n` placeholders.

use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::clock::UnixMillis;
use crate::domain::{EventFilter, LogQuery};
use crate::store::log_sql;
use crate::store::sql::{self, Columns, Dialect, Param};
pub(super) use crate::store::sql::{
    end_from_row, end_reason, event_from_row, from_json, millis, record_from_row, session_from_row, unsigned,
};
use crate::store::{PageRequest, SessionFilter, StoreResult};

impl Columns for Row {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.try_get(column)?)
    }

    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(self.try_get(column)?)
    }

    fn optional_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> StoreResult<bool> {
        Ok(self.try_get(column)?)
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Int(n) => n.to_sql_checked(ty, out),
            Param::Text(text) => text.to_sql_checked(ty, out),
            Param::Texts(texts) => texts.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty) || <Vec<String> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// A built query's parameters, in the order of their `$n` placeholders.
pub(super) struct Filters(Vec<Param>);

impl Filters {
    /// The parameters as the driver takes them.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }
}

fn built((sql, params): sql::Query) -> (String, Filters) {
    (sql, Filters(params))
}

/// A page of the sessions matching `filter`, newest first.
pub(super) fn list_query(filter: &SessionFilter, page: &PageRequest) -> (String, Filters) {
    built(sql::list_query(filter, page, Dialect::POSTGRES))
}

/// Open sessions expired by `now`, oldest expiry first.
pub(super) fn due_query(now: UnixMillis, limit: usize) -> (String, Filters) {
    built(sql::due_query(now, limit, Dialect::POSTGRES))
}

/// Events after sequence `after`, in order, at most `limit`.
pub(super) fn events_query(after: u64, limit: usize) -> (String, Filters) {
    built(sql::events_query(after, limit, Dialect::POSTGRES))
}

/// Events matching `filter` in `(after, upto]`, in order, at most `limit`;
/// the tenant, session and user are matched by the indexes of V6.
pub(super) fn matching_events_query(filter: &EventFilter, after: u64, upto: u64, limit: usize) -> (String, Filters) {
    built(sql::matching_events_query(filter, after, upto, limit, Dialect::POSTGRES))
}

/// Readable entries matching `query` below `horizon` (with a `ceiling`:
/// at or below it, and kept entries above it), in the order they became
/// readable (see `store::log_sql`).
pub(super) fn logs_query(query: &LogQuery, horizon: i64, ceiling: Option<i64>) -> (String, Filters) {
    built(log_sql::logs_sql(query, horizon, ceiling, Dialect::POSTGRES))
}

//! SQLite's rows read through the mapping both stores share
//! (`store::sql`), and [`one`] and [`all`] to run a query with it.

use rusqlite::{Connection, Params, Row};

use crate::domain::{Event, LogRecord, Session, SessionEnd};
use crate::store::StoreResult;
use crate::store::sql::{self, Columns};
pub(super) use crate::store::sql::{end_reason, from_json, millis, session_columns, to_json};

// The shared mappings for SQLite's rows, as functions of every row's
// lifetime (what `all` takes).

pub(super) fn session_from_row(row: &Row<'_>) -> StoreResult<Session> {
    sql::session_from_row(row)
}

pub(super) fn end_from_row(row: &Row<'_>) -> StoreResult<Option<SessionEnd>> {
    sql::end_from_row(row)
}

pub(super) fn event_from_row(row: &Row<'_>) -> StoreResult<Event> {
    sql::event_from_row(row)
}

pub(super) fn record_from_row(row: &Row<'_>) -> StoreResult<LogRecord> {
    sql::record_from_row(row)
}

impl Columns for Row<'_> {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.get(column)?)
    }

    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(self.get(column)?)
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(self.get(column)?)
    }

    fn optional_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.get(column)?)
    }

    fn flag(&self, column: &str) -> StoreResult<bool> {
        Ok(self.get(column)?)
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        Ok(self.get(column)?)
    }
}

/// The first row `sql` answers, converted; `None` when it answers none.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    convert: impl FnOnce(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(convert).transpose()
}

/// Every row `sql` answers, converted.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    convert: fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut converted = Vec::new();
    while let Some(row) = rows.next()? {
        converted.push(convert(row)?);
    }
    Ok(converted)
}

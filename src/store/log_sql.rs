//! The one SQL query behind QueryLogs and FollowLogs, for both stores.
//!
//! Its cost does not depend on how many entries a filter skips: every
//! filter shape walks an index whose leading columns are the filter's
//! equalities, then `level`, then the order (`position`, `entry_id`), from
//! the cursor on, and stops after one page. A minimum level becomes one
//! branch per level at or above it (at most five), each reading at most a
//! page, merged in order; so a search for errors among millions of info
//! entries reads no info entry. Only entries readable now are indexed
//! (`position IS NOT NULL`). What no index leads with (a second equality
//! next to the one the index leads with) filters the entries the walk
//! reads.
//!
//! A time range starts the walk where its first entry can be: an entry is
//! given its position when it becomes readable, which is never before it
//! is logged, and positions grow with the time they are taken. So the
//! position of a continuous entry (positioned when logged) logged
//! [`CLOCK_MARGIN`] or more before `from` is below every entry logged at
//! or after `from`: [`floor_sql`] finds the latest such entry through
//! `log_entries_continuous_by_time`, one index probe, and [`from_floor`]
//! moves the cursor up to it. The walk then skips only what became
//! readable within the margin before `from`; past `to` it reads on until
//! the page is full, as an entry logged before `to` may become readable
//! much later (a log kept when its session ends).
//!
//! The indexes, the same on both stores (see their migrations):
//!
//! | index | leads with | used when the query names |
//! |---|---|---|
//! | `log_entries_readable_by_session` | `session_id, level` | a session |
//! | `log_entries_readable_by_user` | `tenant, user_id, level` | a user (no session) |
//! | `log_entries_readable_by_endpoint` | `tenant, endpoint, level` | an endpoint (no session, no user) |
//! | `log_entries_readable_by_kind` | `tenant, kind, level` | a kind (none of the above) |
//! | `log_entries_readable_failed` | `tenant, level`, failed only | failed only (none of the above) |
//! | `log_entries_readable_slow` | `tenant, level`, slow only | slow only (none of the above) |
//! | `log_entries_readable` | `tenant, level` | none of the above |
//! | `log_entries_continuous_by_time` | `logged_at`, continuous readable only | a time range's floor ([`floor_sql`]) |

use crate::domain::{LogCursor, LogLevel, LogQuery};

/// How long after it is logged (by one replica's clock) an entry may be
/// given its position (by the clock of the replica that makes it
/// readable), at most: the time its write waits and commits, and the
/// difference between the replicas' clocks. An entry logged
/// `CLOCK_MARGIN` before another is positioned before it.
pub const CLOCK_MARGIN: i64 = 10_000;

pub use super::sql::Param;

/// The columns each query answers, `log_id` from the entry's session.
const COLUMNS: &str = "entry_id, position, session_id, sequence, level, message, exception, stack_trace, \
     client_time, logged_at, user_id, kind, endpoint, continuous";

/// Which index a query walks: its name and the equalities it leads with.
pub fn walked_index(query: &LogQuery) -> &'static str {
    match () {
        _ if query.session_id.is_some() => "log_entries_readable_by_session",
        _ if query.user_id.is_some() && query.tenant.is_some() => "log_entries_readable_by_user",
        _ if query.endpoint.is_some() && query.tenant.is_some() => "log_entries_readable_by_endpoint",
        _ if query.kind.is_some() && query.tenant.is_some() => "log_entries_readable_by_kind",
        _ if query.failed_only => "log_entries_readable_failed",
        _ if query.slow_only => "log_entries_readable_slow",
        _ => "log_entries_readable",
    }
}

/// Builds the query for `query` over entries below `horizon`, placeholders
/// written by `placeholder(n)` for the n-th parameter (from 1).
/// `indexed_by`: name the index (SQLite's `INDEXED BY`), so the plan never
/// depends on statistics.
pub fn logs_sql(
    query: &LogQuery,
    horizon: i64,
    placeholder: fn(usize) -> String,
    indexed_by: bool,
) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let mut bind = |p: Param| {
        params.push(p);
        placeholder(params.len())
    };
    let mut filters = Vec::new();
    let tenant = query.tenant.as_ref().map(|tenant| bind(Param::Text(tenant.as_str().to_owned())));
    let session = query.session_id.as_ref().map(|id| bind(Param::Text(id.as_str().to_owned())));
    match (tenant, session) {
        // Where the index cannot be named, a search by session checks the
        // tenant on the session's row, once, not on each entry: with
        // `tenant = …` among the entries' equalities, the tenant-led
        // indexes match as many of them as the session's does, and a
        // planner without statistics for the table (after a bulk load,
        // before ANALYZE) walked `log_entries_readable`, every entry of the
        // tenant at each level (see `tests/log_plans.rs`).
        (Some(tenant), Some(session)) if !indexed_by => {
            filters.push(format!("session_id = {session}"));
            filters.push(format!("EXISTS (SELECT 1 FROM sessions WHERE id = {session} AND tenant = {tenant})"));
        }
        (tenant, session) => {
            filters.extend(tenant.map(|tenant| format!("tenant = {tenant}")));
            filters.extend(session.map(|session| format!("session_id = {session}")));
        }
    }
    if let Some(user) = &query.user_id {
        filters.push(format!("user_id = {}", bind(Param::Text(user.clone()))));
    }
    if let Some(kind) = query.kind {
        filters.push(format!("kind = {}", bind(Param::Text(kind.as_str().to_owned()))));
    }
    if let Some(endpoint) = &query.endpoint {
        filters.push(format!("endpoint = {}", bind(Param::Text(endpoint.clone()))));
    }
    if query.failed_only {
        filters.push("failed".to_owned());
    }
    if query.slow_only {
        filters.push("slow".to_owned());
    }
    if let Some(from) = query.from {
        filters.push(format!("logged_at >= {}", bind(Param::Int(from.0))));
    }
    if let Some(to) = query.to {
        filters.push(format!("logged_at < {}", bind(Param::Int(to.0))));
    }
    let horizon = bind(Param::Int(horizon));
    let position = bind(Param::Int(query.after.position));
    let entry_id = bind(Param::Int(query.after.entry_id));
    let limit = bind(Param::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    filters.push(format!(
        "position IS NOT NULL AND position < {horizon} AND (position, entry_id) > ({position}, {entry_id})"
    ));
    let filters = filters.join(" AND ");
    let index = walked_index(query);
    let indexed = if indexed_by { format!(" INDEXED BY {index}") } else { String::new() };
    let lowest = query.min_level.unwrap_or(LogLevel::Debug) as i64;
    let branches: Vec<String> = (lowest..=LogLevel::Fatal as i64)
        .map(|level| {
            format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM log_entries{indexed} WHERE level = {level} AND {filters} \
                 ORDER BY position, entry_id LIMIT {limit}) AS l{level}"
            )
        })
        .collect();
    // The session's log id is looked up for the page's rows alone, once
    // merged: a join of the branches would read (or hash) far more.
    let sql = format!(
        "SELECT m.*, (SELECT s.log_id FROM sessions AS s WHERE s.id = m.session_id) AS log_id FROM \
         (SELECT * FROM ({}) AS e ORDER BY e.position, e.entry_id LIMIT {limit}) AS m \
         ORDER BY m.position, m.entry_id",
        branches.join(" UNION ALL ")
    );
    (sql, params)
}

/// The query answering the position below which no entry of `query`'s
/// time range is (see the module's notes), with its parameter, placeholder
/// `placeholder(1)`; `None` without a lower time bound. It answers no row
/// when no continuous entry was logged long enough before.
pub fn floor_sql(query: &LogQuery, placeholder: fn(usize) -> String, indexed_by: bool) -> Option<(String, Param)> {
    let from = query.from?;
    let indexed = if indexed_by { " INDEXED BY log_entries_continuous_by_time" } else { "" };
    let sql = format!(
        "SELECT position FROM log_entries{indexed} WHERE continuous AND position IS NOT NULL AND logged_at < {} \
         ORDER BY logged_at DESC LIMIT 1",
        placeholder(1)
    );
    Some((sql, Param::Int(from.0.saturating_sub(CLOCK_MARGIN))))
}

/// `query` reading on from `floor` (what [`floor_sql`] answered) when its
/// cursor is below it: entries at `floor` and above.
pub fn from_floor(query: &LogQuery, floor: Option<i64>) -> LogQuery {
    let after = floor.map_or(query.after, |floor| query.after.max(LogCursor::below(floor)));
    LogQuery { after, ..query.clone() }
}

/// The filter shapes a plan test runs: each filter alone and together with
/// the others (every subset of session, user, kind, failed, slow, time range,
/// minimum level and endpoint), by the caller's tenant.
pub fn filter_shapes(base: &LogQuery, sample: &LogQuery) -> Vec<LogQuery> {
    (0u32..1 << 8)
        .map(|mask| {
            let on = |bit: u32| mask & (1 << bit) != 0;
            LogQuery {
                session_id: sample.session_id.clone().filter(|_| on(0)),
                user_id: sample.user_id.clone().filter(|_| on(1)),
                kind: sample.kind.filter(|_| on(2)),
                failed_only: on(3),
                slow_only: on(4),
                from: sample.from.filter(|_| on(5)),
                to: sample.to.filter(|_| on(5)),
                min_level: sample.min_level.filter(|_| on(6)),
                endpoint: sample.endpoint.clone().filter(|_| on(7)),
                ..base.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;

    #[test]
    fn each_placeholder_has_its_parameter() {
        let query = LogQuery {
            tenant: Some(TenantId::default()),
            user_id: Some("u".into()),
            min_level: Some(LogLevel::Warning),
            from: Some(crate::clock::UnixMillis(5)),
            limit: 10,
            ..LogQuery::default()
        };
        let (sql, params) = logs_sql(&query, 99, |n| format!("${n}"), false);
        for n in 1..=params.len() {
            assert!(sql.contains(&format!("${n}")), "{sql}");
        }
        assert!(!sql.contains(&format!("${}", params.len() + 1)));
        assert_eq!(sql.matches("UNION ALL").count(), 2, "warning, error and fatal: {sql}");
        let (sql, _) = logs_sql(&query, 99, |_| "?".into(), true);
        assert!(sql.contains("INDEXED BY log_entries_readable_by_user"), "{sql}");
    }

    #[test]
    fn a_time_range_reads_from_its_floor_and_never_back_from_a_later_cursor() {
        let query = LogQuery { from: Some(crate::clock::UnixMillis(100_000)), limit: 10, ..LogQuery::default() };
        let (sql, param) = floor_sql(&query, |n| format!("${n}"), false).expect("a lower time bound has a floor");
        assert!(sql.contains("logged_at < $1"), "{sql}");
        assert_eq!(param, Param::Int(100_000 - CLOCK_MARGIN));
        assert_eq!(floor_sql(&LogQuery { from: None, ..query.clone() }, |n| format!("${n}"), false), None);
        assert_eq!(from_floor(&query, Some(7)).after, LogCursor::below(7));
        assert_eq!(from_floor(&query, None).after, LogCursor::default());
        let later = LogQuery { after: LogCursor { position: 9, entry_id: 1 }, ..query };
        assert_eq!(from_floor(&later, Some(7)).after, later.after);
    }
}

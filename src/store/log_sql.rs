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
//! readable within the margin before `from`.
//!
//! The far side is bounded the same way, for continuous entries: the
//! earliest continuous entry logged `CLOCK_MARGIN` or more after `to` is
//! positioned at or above every continuous entry logged before `to`
//! ([`ceiling_sql`]). An entry of a log kept at its session's end may be
//! logged before `to` and become readable at any later position: with a
//! ceiling, each level is walked twice, every entry up to the ceiling on
//! the filter's index, and kept entries above it on
//! `log_entries_readable_kept` (their session's index for a search by
//! session), which holds only them. A time range then costs the entries
//! readable between its floor and its ceiling (those logged within it and
//! its margins, and kept entries), and the kept entries of that level
//! readable since, whatever else the store holds after it.
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
//! | `log_entries_readable_kept` | `tenant, level`, kept (not continuous) only | a time range's kept entries (no session) |
//! | `log_entries_continuous_by_time` | `logged_at`, continuous readable only | a time range's floor and ceiling ([`floor_sql`], [`ceiling_sql`]) |

use crate::domain::{LogCursor, LogLevel, LogQuery};

/// How long after it is logged (by one replica's clock) an entry may be
/// given its position (by the clock of the replica that makes it
/// readable), at most: the time its write waits and commits, and the
/// difference between the replicas' clocks. An entry logged
/// `CLOCK_MARGIN` before another is positioned before it.
pub const CLOCK_MARGIN: i64 = 10_000;

use super::sql::Dialect;
pub use super::sql::Param;

/// The index holding readable entries of kept logs only (not continuous).
pub const KEPT_INDEX: &str = "log_entries_readable_kept";

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

/// Which index a time range's walk of kept entries takes: its session's
/// when the query names one (a session's entries are few), else
/// [`KEPT_INDEX`].
pub fn kept_index(query: &LogQuery) -> &'static str {
    match query.session_id {
        Some(_) => "log_entries_readable_by_session",
        None => KEPT_INDEX,
    }
}

/// Builds the query for `query` over entries below `horizon`, in
/// `dialect`; with a `ceiling` (what [`ceiling_sql`] answered), entries at
/// or below it and kept entries above it.
pub fn logs_sql(query: &LogQuery, horizon: i64, ceiling: Option<i64>, dialect: Dialect) -> (String, Vec<Param>) {
    let mut params = Vec::new();
    let mut bind = |p: Param| {
        params.push(p);
        (dialect.placeholder)(params.len())
    };
    let indexed_by = dialect.indexed_by;
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
    let limit = bind(Param::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    // Each walk's positions: after its cursor and below its bound, one
    // bound on each side, as SQLite walks an index between one lower and
    // one upper bound of a column and checks any other on each entry it
    // reads (two upper bounds, the horizon and a ceiling, had it walk to
    // the horizon). One walk per level; with a ceiling, two: every entry
    // up to it, and kept entries above it. (The first names no
    // `continuous`, so that `log_entries_continuous_by_time` never serves
    // it: a walk in time order would sort every entry of the range.)
    let mut walk = |index: &'static str, after: LogCursor, below: i64, only: &str| {
        let (position, entry_id) = (bind(Param::Int(after.position)), bind(Param::Int(after.entry_id)));
        let below = bind(Param::Int(below));
        let bounds =
            format!("position IS NOT NULL AND position < {below} AND (position, entry_id) > ({position}, {entry_id})");
        (index, format!("{bounds}{only}"))
    };
    let walks: Vec<(&str, String)> = match ceiling {
        None => vec![walk(walked_index(query), query.after, horizon, "")],
        Some(ceiling) => {
            let past = ceiling.saturating_add(1);
            vec![
                walk(walked_index(query), query.after, horizon.min(past), ""),
                walk(kept_index(query), query.after.max(LogCursor::below(past)), horizon, " AND NOT continuous"),
            ]
        }
    };
    // The filters before each walk's bounds.
    let filters: String = filters.iter().map(|filter| format!("{filter} AND ")).collect();
    let lowest = query.min_level.unwrap_or(LogLevel::Debug) as i64;
    let mut branches = Vec::new();
    for level in lowest..=LogLevel::Fatal as i64 {
        for (walk, (index, bounds)) in walks.iter().enumerate() {
            let indexed = if indexed_by { format!(" INDEXED BY {index}") } else { String::new() };
            branches.push(format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM log_entries{indexed} WHERE level = {level} AND {filters}{bounds} \
                 ORDER BY position, entry_id LIMIT {limit}) AS l{level}_{walk}"
            ));
        }
    }
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
/// time range is (see the module's notes), with the time bound to its one
/// placeholder; `None` without a lower time bound. It answers no row
/// when no continuous entry was logged long enough before.
pub fn floor_sql(query: &LogQuery, dialect: Dialect) -> Option<(String, i64)> {
    let from = query.from?;
    Some((probe_by_time(dialect, "logged_at <", " DESC"), from.0.saturating_sub(CLOCK_MARGIN)))
}

/// The query answering the position at or below which every continuous
/// entry of `query`'s time range is (see the module's notes), with the
/// time bound to its one placeholder; `None` without an upper time
/// bound. It answers no row when no continuous entry was logged long
/// enough after: then nothing bounds the walk but the horizon.
pub fn ceiling_sql(query: &LogQuery, dialect: Dialect) -> Option<(String, i64)> {
    let to = query.to?;
    Some((probe_by_time(dialect, "logged_at >=", ""), to.0.saturating_add(CLOCK_MARGIN)))
}

/// The position of the nearest continuous entry on one side of a time
/// (`side`: the comparison with the placeholder; `order`: `" DESC"` to look
/// back), one probe of `log_entries_continuous_by_time`, named where the
/// dialect names indexes.
fn probe_by_time(dialect: Dialect, side: &str, order: &str) -> String {
    let indexed = if dialect.indexed_by { " INDEXED BY log_entries_continuous_by_time" } else { "" };
    format!(
        "SELECT position FROM log_entries{indexed} WHERE continuous AND position IS NOT NULL AND {side} {} \
         ORDER BY logged_at{order} LIMIT 1",
        (dialect.placeholder)(1)
    )
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

    /// The highest `?n` in `sql`.
    fn placeholders_in(sql: &str) -> usize {
        (1..).take_while(|n| sql.contains(&format!("?{n}"))).count()
    }

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
        let (sql, params) = logs_sql(&query, 99, None, Dialect::POSTGRES);
        for n in 1..=params.len() {
            assert!(sql.contains(&format!("${n}")), "{sql}");
        }
        assert!(!sql.contains(&format!("${}", params.len() + 1)));
        assert_eq!(sql.matches("UNION ALL").count(), 2, "warning, error and fatal: {sql}");
        let (sql, _) = logs_sql(&query, 99, None, Dialect::SQLITE);
        assert!(sql.contains("INDEXED BY log_entries_readable_by_user"), "{sql}");
        let (sql, params) = logs_sql(&query, 99, Some(42), Dialect::SQLITE);
        assert_eq!(placeholders_in(&sql), params.len(), "{sql}");
        assert_eq!(sql.matches("UNION ALL").count(), 5, "two walks per level: {sql}");
        assert_eq!(sql.matches("INDEXED BY log_entries_readable_by_user").count(), 3, "{sql}");
        assert_eq!(sql.matches("INDEXED BY log_entries_readable_kept").count(), 3, "{sql}");
        // One upper bound per walk (SQLite walks to one of them, and
        // checks the other on every entry): the ceiling's, below the
        // horizon, or the horizon alone above the ceiling.
        for branch in sql.split("UNION ALL") {
            assert_eq!(branch.matches("position < ").count(), 1, "{branch}");
            assert!(!branch.contains("position <=") && !branch.contains("position >"), "{branch}");
        }
        assert!(params.contains(&Param::Int(43)) && params.contains(&Param::Int(99)), "{params:?}");
    }

    #[test]
    fn a_time_range_reads_from_its_floor_and_never_back_from_a_later_cursor() {
        let query = LogQuery { from: Some(crate::clock::UnixMillis(100_000)), limit: 10, ..LogQuery::default() };
        let (sql, at) = floor_sql(&query, Dialect::POSTGRES).expect("a lower time bound has a floor");
        assert!(sql.contains("logged_at < $1"), "{sql}");
        assert_eq!(at, 100_000 - CLOCK_MARGIN);
        assert_eq!(floor_sql(&LogQuery { from: None, ..query.clone() }, Dialect::POSTGRES), None);
        assert_eq!(ceiling_sql(&query, Dialect::POSTGRES), None, "no upper time bound, no ceiling");
        let bounded = LogQuery { to: Some(crate::clock::UnixMillis(200_000)), ..query.clone() };
        let (sql, at) = ceiling_sql(&bounded, Dialect::SQLITE).expect("an upper time bound has a ceiling");
        assert!(sql.contains("logged_at >= ?1") && sql.contains("INDEXED BY log_entries_continuous_by_time"), "{sql}");
        assert_eq!(at, 200_000 + CLOCK_MARGIN);
        assert_eq!(from_floor(&query, Some(7)).after, LogCursor::below(7));
        assert_eq!(from_floor(&query, None).after, LogCursor::default());
        let later = LogQuery { after: LogCursor { position: 9, entry_id: 1 }, ..query };
        assert_eq!(from_floor(&later, Some(7)).after, later.after);
    }
}

//! QueryLogs' plans, on both stores, for every filter shape (each filter
//! alone and with every combination of the others): each level's walk is
//! an index search on a readable-entry index in the order of the answer,
//! never a scan of the table nor a sort of what a filter matched. Only the
//! merge of the (at most five) branches, each at most a page, is sorted.
//! A time range's starting place is one backward probe of
//! `log_entries_continuous_by_time`, its ceiling one forward probe; with a
//! ceiling each level is walked twice, continuous entries on the filter's
//! index and kept entries on `log_entries_readable_kept` (or the session's).
//! `README.md` (Logs) shows the plans.

#[path = "support/postgres.rs"]
mod postgres_support;

use sessiond::clock::UnixMillis;
use sessiond::domain::{LogCursor, LogLevel, LogQuery, SessionId, SessionKind, TenantId};
use sessiond::store::log_sql::{ceiling_sql, filter_shapes, floor_sql, kept_index, logs_sql, walked_index};
use sessiond::store::sql::Dialect;
use sessiond::store::sqlite::{FILE_NAME, SqliteStore};

/// A query with every filter set, for [`filter_shapes`] to pick from.
fn sample() -> LogQuery {
    LogQuery {
        session_id: Some(SessionId::generate()),
        user_id: Some("user7".into()),
        kind: Some(SessionKind::WebUser),
        endpoint: Some("/ep7".into()),
        from: Some(UnixMillis(1_000)),
        to: Some(UnixMillis(900_000)),
        min_level: Some(LogLevel::Error),
        failed_only: true,
        slow_only: true,
        ..LogQuery::default()
    }
}

/// The ceiling a shape's time range is given, as `ceiling_sql` would
/// find it.
fn ceiling(query: &LogQuery) -> Option<i64> {
    query.to.map(|_| 20_000)
}

fn base() -> LogQuery {
    LogQuery {
        tenant: Some(TenantId::default()),
        after: LogCursor { position: 100, entry_id: 5_000 },
        limit: 100,
        ..LogQuery::default()
    }
}

/// Rows of entries spread over tenants, users, kinds, endpoints and levels: enough
/// for a planner to prefer an index when one fits.
const POPULATE: &str = "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, tenant, user_id, \
     kind, continuous, failed, slow, position, endpoint) \
     SELECT 's' || (n % 5000), n, 1 + n % 5, 'message ' || n, n, CASE WHEN n % 3 = 0 THEN 'other' ELSE 'default' \
     END, 'user' || (n % 500), (ARRAY['web_user','streaming','web_call','internal'])[1 + n % 4], n % 2 = 0, \
     n % 50 = 0, n % 70 = 0, CASE WHEN n % 10 = 9 THEN NULL ELSE n / 7 END, '/ep' || (n % 200)";

#[test]
fn sqlite_plans_search_a_readable_entry_index_in_order_for_every_filter_shape() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    drop(SqliteStore::open_in(dir.path()).expect("a new store opens"));
    let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).expect("the database opens");
    let populate = POPULATE.replace(
        "(ARRAY['web_user','streaming','web_call','internal'])[1 + n % 4]",
        "CASE n % 4 WHEN 0 THEN 'web_user' WHEN 1 THEN 'streaming' WHEN 2 THEN 'web_call' ELSE 'internal' END",
    );
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = OFF; WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 20000) \
         {populate} FROM r; ANALYZE;"
    ))
    .expect("entries are written");
    for query in filter_shapes(&base(), &sample()) {
        let (sql, params) = logs_sql(&query, i64::MAX, ceiling(&query), Dialect::SQLITE);
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("the plan is explained");
        let plan: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>(3))
            .expect("the plan reads")
            .collect::<Result<_, _>>()
            .expect("the plan reads");
        let walks: Vec<&String> = plan.iter().filter(|line| line.contains("log_entries")).collect();
        let levels = 1 + LogLevel::Fatal as usize - query.min_level.unwrap_or(LogLevel::Debug) as usize;
        let per_level = 1 + usize::from(ceiling(&query).is_some());
        assert_eq!(walks.len(), levels * per_level, "one walk per level, two with a ceiling: {plan:#?}");
        if ceiling(&query).is_some() {
            let kept = format!("USING INDEX {} (", kept_index(&query));
            assert!(walks.iter().filter(|walk| walk.contains(&kept)).count() >= levels, "{query:?}\n{plan:#?}");
        }
        for walk in walks {
            assert!(
                walk.starts_with("SEARCH log_entries USING INDEX log_entries_readable")
                    && walk.contains("level=?")
                    && walk.contains("position>?"),
                "{query:?}\n{plan:#?}"
            );
        }
        // A walk's own order comes from its index: no sort follows it
        // inside its branch (the merge of the branches, each at most a
        // page, may be sorted).
        for (i, _) in plan.iter().enumerate().filter(|(_, line)| line.contains("log_entries")) {
            let next = plan.get(i + 1).map_or("", String::as_str);
            assert!(!next.contains("TEMP B-TREE"), "a walk is not sorted: {plan:#?}");
        }
    }
    for (bound, search) in [
        (floor_sql(&sample(), Dialect::SQLITE), "(logged_at<?)"),
        (ceiling_sql(&sample(), Dialect::SQLITE), "(logged_at>?)"),
    ] {
        let (sql, at) = bound.expect("a time range has a floor and a ceiling");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .and_then(|mut s| s.query_map([at], |row| row.get::<_, String>(3))?.collect())
            .expect("the plan is explained");
        assert_eq!(plan.len(), 1, "one search, no sort: {plan:#?}");
        assert!(plan[0].contains(&format!("INDEX log_entries_continuous_by_time {search}")), "{plan:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plans_scan_a_readable_entry_index_in_order_for_every_filter_shape() {
    let db = postgres_support::fresh_database().await;
    drop(sessiond::store::postgres::PgStore::connect(db.settings()).await.expect("a fresh database migrates"));
    let client = db.connect().await;
    client
        .batch_execute(&format!("{POPULATE} FROM generate_series(1, 200000) AS n; ANALYZE log_entries;"))
        .await
        .expect("entries are written");
    client.batch_execute("SET plan_cache_mode = force_generic_plan").await.expect("set");
    for (bound, scan) in [
        (floor_sql(&sample(), Dialect::POSTGRES), "Scan Backward using log_entries_continuous_by_time"),
        (ceiling_sql(&sample(), Dialect::POSTGRES), "Scan using log_entries_continuous_by_time"),
    ] {
        let (sql, at) = bound.expect("a time range has a floor and a ceiling");
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {}", sql.replace("$1", &at.to_string())), &[])
            .await
            .expect("the plan is explained")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let text = plan.join("\n");
        assert!(text.contains(scan), "{text}");
        assert!(!text.contains("Sort") && !text.contains("Seq Scan"), "{text}");
    }
    // Every shape is explained with the table's statistics, then with none
    // (a table just loaded, not yet analyzed), where a search by session
    // once walked the tenant's index and read every entry of the tenant. A
    // search by session, or by one of user, endpoint, kind, failed and
    // slow, walks its own index either way; a search by two of those walks
    // either one's index (README, Logs: the other is checked on the
    // entries walked).
    for statistics in ["with statistics", "without statistics"] {
        if statistics == "without statistics" {
            client
                .batch_execute("DELETE FROM pg_statistic WHERE starelid = 'log_entries'::regclass")
                .await
                .expect("the statistics are dropped");
        }
        for query in filter_shapes(&base(), &sample()) {
            let plan = postgres_plan(&client, &query).await;
            let text = plan.join("\n");
            assert!(!text.contains("Seq Scan on log_entries"), "{statistics}: {query:?}\n{text}");
            assert!(!text.contains("Bitmap Heap Scan on log_entries"), "{statistics}: {query:?}\n{text}");
            let walks: Vec<&String> = plan.iter().filter(|line| line.contains(" on log_entries")).collect();
            let narrowing = [
                query.user_id.is_some(),
                query.endpoint.is_some(),
                query.kind.is_some(),
                query.failed_only,
                query.slow_only,
            ];
            // `using <index> on` names one index; `using log_entries_readable`
            // alone, any readable-entry index.
            let using = match query.session_id.is_some() || narrowing.iter().filter(|on| **on).count() <= 1 {
                true => format!("using {} on", walked_index(&query)),
                false => "using log_entries_readable".to_owned(),
            };
            // With a ceiling, kept entries are walked on their own index.
            let kept = format!("using {} on", kept_index(&query));
            let walked = |walk: &&String| walk.contains(&using) || (ceiling(&query).is_some() && walk.contains(&kept));
            assert!(
                !walks.is_empty() && walks.iter().all(walked),
                "{statistics}: every walk is `{using}` (or `{kept}`): {query:?}\n{text}"
            );
            // A sort may only be the merge of the branches, above them.
            let first_scan = plan.iter().position(|line| line.contains(" on log_entries")).unwrap_or(0);
            let last_sort =
                plan.iter().rposition(|line| line.contains("Sort  (") || line.contains("Sort (")).unwrap_or(0);
            assert!(last_sort <= first_scan, "{statistics}: no sort below a branch: {query:?}\n{text}");
        }
    }
}

/// The generic plan of `query`'s prepared statement, as sessiond runs it,
/// one line per row of `EXPLAIN`.
async fn postgres_plan(client: &tokio_postgres::Client, query: &LogQuery) -> Vec<String> {
    let (sql, params) = logs_sql(query, i64::MAX, ceiling(query), Dialect::POSTGRES);
    postgres_support::explain_prepared(client, &sql, &params).await
}

//! QueryLogs at scale, before and after the readable-entry indexes: the
//! figures in BENCHMARKS.md. Ignored by default (minutes of loading):
//!
//! ```sh
//! SESSIOND_LOG_SCALE_ENTRIES=1000000 cargo test --release --test log_scale -- --ignored --nocapture
//! ```
//!
//! Each store is loaded with SQL inserts (N entries, ten per session, 90 %
//! of sessions ended with their log kept, the rest open and logged
//! continuously; levels 90 % info, 7 % warning, 2.5 % error, 0.5 % fatal;
//! 1 % of sessions failed, 2 % slow; 10,000 users, ten kinds). "Before" is
//! the query sessiond ran until the readable-entry indexes (a join on
//! sessions ordered by entry id) with only the indexes it had; "after" is
//! `store::log_sql` with them. Each figure is the median of three runs of a
//! first page of 100 and of the page after it.

#[path = "support/postgres.rs"]
mod postgres_support;

use std::time::{Duration, Instant};

use sessiond::clock::UnixMillis;
use sessiond::domain::{LogCursor, LogLevel, LogQuery, SessionId, SessionKind, TenantId};
use sessiond::store::log_sql::{Param, logs_sql};
use sessiond::store::sql::Dialect;
use sessiond::store::sqlite::{FILE_NAME, SqliteStore};

const PAGE: usize = 100;
const SESSIONS_PER_ENTRY: u64 = 10;

fn entries() -> u64 {
    std::env::var("SESSIOND_LOG_SCALE_ENTRIES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}

/// The new indexes, as the migrations create them (dropped for "before").
const INDEXES: &[(&str, &str)] = &[
    ("log_entries_readable", "(tenant, level, position, entry_id) WHERE position IS NOT NULL"),
    ("log_entries_readable_by_session", "(session_id, level, position, entry_id) WHERE position IS NOT NULL"),
    ("log_entries_readable_by_user", "(tenant, user_id, level, position, entry_id) WHERE position IS NOT NULL"),
    ("log_entries_readable_by_kind", "(tenant, kind, level, position, entry_id) WHERE position IS NOT NULL"),
    ("log_entries_readable_failed", "(tenant, level, position, entry_id) WHERE position IS NOT NULL AND failed"),
    ("log_entries_readable_slow", "(tenant, level, position, entry_id) WHERE position IS NOT NULL AND slow"),
];

/// Sessions `s<n>`: ended and kept unless n % 10 = 9; user n % 10,000;
/// kind n % 10; failed when n % 100 = 7, slow when n % 50 = 3.
fn sessions_sql(sessions: u64, series: &str, bool_true: &str) -> String {
    format!(
        "INSERT INTO sessions (id, token_hash, kind, user_id, endpoint, method, future_call, client_address, \
         user_agent, created_at, last_active_at, trusted, grants, grants_version, storage, storage_version, ended_at, \
         end_reason, log_id, slow, tenant) \
         SELECT 's' || n, {hash}, (ARRAY['method_call','web_call','method_stream','streaming','future_call', \
         'internal','web_user','remote_user','stored_procedure','standalone'])[1 + n % 10], 'user' || (n % 10000), '', \
         '', '', '', '', n, n, {f}, '{{}}', 0, '{{}}', 0, CASE WHEN n % 10 = 9 THEN NULL ELSE n + 5 END, \
         CASE WHEN n % 10 = 9 THEN NULL WHEN n % 100 = 7 THEN 'failed' ELSE 'closed' END, \
         CASE WHEN n % 10 = 9 THEN NULL ELSE 'log' || n END, n % 50 = 3, 'default' FROM {series}",
        hash = if bool_true == "1" { "randomblob(32)" } else { "sha256(n::text::bytea)" },
        f = if bool_true == "1" { "0" } else { "false" },
        series = series.replace("{N}", &sessions.to_string()),
    )
}

/// Entries: n-th entry of session n / 10; position n for readable ones.
fn entries_sql(entries: u64, series: &str) -> String {
    format!(
        "INSERT INTO log_entries (session_id, sequence, level, message, logged_at, tenant, user_id, kind, \
         continuous, failed, slow, position) \
         SELECT 's' || (n / 10), 1 + n % 10, CASE WHEN n % 1000 < 900 THEN 2 WHEN n % 1000 < 970 THEN 3 \
         WHEN n % 1000 < 995 THEN 4 ELSE 5 END, 'entry ' || n, n, 'default', 'user' || ((n / 10) % 10000), \
         (ARRAY['method_call','web_call','method_stream','streaming','future_call','internal','web_user', \
         'remote_user','stored_procedure','standalone'])[1 + (n / 10) % 10], (n / 10) % 10 = 9, \
         (n / 10) % 100 = 7, (n / 10) % 50 = 3, n FROM {series}",
        series = series.replace("{N}", &(entries - 1).to_string()),
    )
}

/// The query shapes measured, with a name.
fn shapes() -> Vec<(&'static str, LogQuery)> {
    let base = LogQuery { tenant: Some(TenantId::default()), limit: PAGE, ..LogQuery::default() };
    let n = entries();
    vec![
        ("none", base.clone()),
        ("session", LogQuery { session_id: Some(SessionId::from_stored("s4242".into())), ..base.clone() }),
        ("user", LogQuery { user_id: Some("user42".into()), ..base.clone() }),
        ("kind", LogQuery { kind: Some(SessionKind::WebUser), ..base.clone() }),
        ("time range (last 10 %)", LogQuery { from: Some(UnixMillis((n * 9 / 10) as i64)), ..base.clone() }),
        ("min level ERROR", LogQuery { min_level: Some(LogLevel::Error), ..base.clone() }),
        ("min level FATAL", LogQuery { min_level: Some(LogLevel::Fatal), ..base.clone() }),
        ("failed only", LogQuery { failed_only: true, ..base.clone() }),
        ("slow only", LogQuery { slow_only: true, ..base.clone() }),
        ("user + ERROR", LogQuery { user_id: Some("user42".into()), min_level: Some(LogLevel::Error), ..base.clone() }),
        ("kind + failed", LogQuery { kind: Some(SessionKind::WebCall), failed_only: true, ..base.clone() }),
        ("failed, no match (user)", LogQuery { user_id: Some("user1".into()), failed_only: true, ..base.clone() }),
    ]
}

/// The query sessiond ran before, for `query` after entry `after`.
fn old_sql(query: &LogQuery, after: i64, p: fn(usize) -> String) -> (String, Vec<Param>) {
    let mut params = vec![Param::Int(after), Param::Text("default".into())];
    let mut sql = format!(
        "SELECT e.entry_id, e.sequence, e.level, e.message, e.exception, e.stack_trace, e.client_time, e.logged_at, \
         s.log_id, s.id AS session_id, s.user_id, s.kind FROM log_entries e JOIN sessions s ON s.id = e.session_id \
         WHERE s.log_id IS NOT NULL AND e.entry_id > {} AND s.tenant = {}",
        p(1),
        p(2)
    );
    let mut add = |clause: &str, param: Param| {
        params.push(param);
        sql.push_str(&format!(" AND {clause} {}", p(params.len())));
    };
    if let Some(id) = &query.session_id {
        add("s.id =", Param::Text(id.as_str().into()));
    }
    if let Some(user) = &query.user_id {
        add("s.user_id =", Param::Text(user.clone()));
    }
    if let Some(kind) = query.kind {
        add("s.kind =", Param::Text(kind.as_str().into()));
    }
    if let Some(from) = query.from {
        add("e.logged_at >=", Param::Int(from.0));
    }
    if let Some(level) = query.min_level {
        add("e.level >=", Param::Int(level as i64));
    }
    if query.failed_only {
        add("s.end_reason =", Param::Text("failed".into()));
    }
    if query.slow_only {
        sql.push_str(" AND s.slow");
    }
    params.push(Param::Int(PAGE as i64));
    sql.push_str(&format!(" ORDER BY e.entry_id LIMIT {}", p(params.len())));
    (sql, params)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

// ---- SQLite ----

fn sqlite_rows(conn: &rusqlite::Connection, (sql, params): &(String, Vec<Param>)) -> Vec<(i64, i64)> {
    let mut statement = conn.prepare_cached(sql).expect("prepares");
    let has_position = statement.column_names().contains(&"position");
    statement
        .query_map(rusqlite::params_from_iter(params), |row| {
            Ok((if has_position { row.get("position")? } else { 0 }, row.get("entry_id")?))
        })
        .expect("runs")
        .collect::<Result<_, _>>()
        .expect("reads")
}

/// Times a first page and the page after it, five times each.
fn time_pages(mut page: impl FnMut(Option<(i64, i64)>) -> Vec<(i64, i64)>) -> (Duration, Duration) {
    let (mut first, mut next) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let start = Instant::now();
        let rows = page(None);
        first.push(start.elapsed());
        let start = Instant::now();
        page(rows.last().copied());
        next.push(start.elapsed());
    }
    (median(first), median(next))
}

#[test]
#[ignore = "loads a large store; run for BENCHMARKS.md"]
fn sqlite_query_logs_at_scale() {
    let n = entries();
    let dir = tempfile::tempdir().expect("a temporary directory");
    drop(SqliteStore::open_in(dir.path()).expect("a new store opens"));
    let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).expect("opens");
    let series = "(WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < {N}) SELECT n FROM r)";
    let kinds = "CASE n % 10 WHEN 0 THEN 'method_call' WHEN 1 THEN 'web_call' WHEN 2 THEN 'method_stream' \
        WHEN 3 THEN 'streaming' WHEN 4 THEN 'future_call' WHEN 5 THEN 'internal' WHEN 6 THEN 'web_user' \
        WHEN 7 THEN 'remote_user' WHEN 8 THEN 'stored_procedure' ELSE 'standalone' END";
    let kinds_of_entry = kinds.replace("n % 10", "(n / 10) % 10");
    let arr = "(ARRAY['method_call','web_call','method_stream','streaming','future_call', \
         'internal','web_user','remote_user','stored_procedure','standalone'])[1 + n % 10]";
    let arr_entry = "(ARRAY['method_call','web_call','method_stream','streaming','future_call','internal','web_user', \
         'remote_user','stored_procedure','standalone'])[1 + (n / 10) % 10]";
    let load = Instant::now();
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF; BEGIN;").expect("begins");
    let sessions = sessions_sql(n / SESSIONS_PER_ENTRY, &format!("{series} AS g"), "1").replace(arr, kinds);
    conn.execute_batch(&sessions).expect("sessions load");
    let entries = entries_sql(n, &format!("{series} AS g")).replace(arr_entry, &kinds_of_entry);
    // Open sessions' entries are readable (continuous); kept ones too.
    conn.execute_batch(&entries).expect("entries load");
    conn.execute_batch("COMMIT; ANALYZE;").expect("commits");
    println!("sqlite: loaded {n} entries in {:.1} s", load.elapsed().as_secs_f64());

    let drop_new: String = INDEXES.iter().map(|(name, _)| format!("DROP INDEX {name};")).collect();
    conn.execute_batch(&format!("{drop_new} ANALYZE;")).expect("drops");
    let mut before = Vec::new();
    for (name, query) in shapes() {
        let times = time_pages(|after| {
            let sql = old_sql(&query, after.map_or(0, |(_, e)| e), |i| format!("?{i}"));
            sqlite_rows(&conn, &sql)
        });
        before.push((name, times));
    }
    let create: String =
        INDEXES.iter().map(|(name, columns)| format!("CREATE INDEX {name} ON log_entries {columns};")).collect();
    conn.execute_batch(&format!("{create} ANALYZE;")).expect("creates");
    report("sqlite", n, before, |query, after| {
        let query = LogQuery {
            after: after.map_or(LogCursor::default(), |(p, e)| LogCursor { position: p, entry_id: e }),
            ..query.clone()
        };
        sqlite_rows(&conn, &logs_sql(&query, i64::MAX, None, Dialect::SQLITE))
    });
}

fn report(
    store: &str,
    n: u64,
    before: Vec<(&str, (Duration, Duration))>,
    mut after: impl FnMut(&LogQuery, Option<(i64, i64)>) -> Vec<(i64, i64)>,
) {
    println!(
        "| store | entries | filter | before: first page | before: next page | after: first page | after: next page |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((name, query), (_, (b_first, b_next))) in shapes().into_iter().zip(before) {
        let (first, next) = time_pages(|cursor| after(&query, cursor));
        println!(
            "| {store} | {n} | {name} | {} ms | {} ms | {} ms | {} ms |",
            ms(b_first),
            ms(b_next),
            ms(first),
            ms(next)
        );
    }
}

// ---- Postgres ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads a large store; run for BENCHMARKS.md"]
async fn postgres_query_logs_at_scale() {
    let n = entries();
    let db = postgres_support::fresh_database().await;
    drop(sessiond::store::postgres::PgStore::connect(db.settings()).await.expect("a fresh database migrates"));
    let client = db.connect().await;
    let load = Instant::now();
    let series = "generate_series(0, {N}) AS n";
    client.batch_execute(&sessions_sql(n / SESSIONS_PER_ENTRY, series, "true")).await.expect("sessions load");
    client.batch_execute(&entries_sql(n, series)).await.expect("entries load");
    client.batch_execute("VACUUM ANALYZE log_entries").await.expect("analyzed");
    client.batch_execute("VACUUM ANALYZE sessions").await.expect("analyzed");
    println!("postgres: loaded {n} entries in {:.1} s", load.elapsed().as_secs_f64());
    // As sessiond's connections run: generic plans of prepared statements.
    client.batch_execute("SET plan_cache_mode = force_generic_plan").await.expect("set");

    let drop_new: String = INDEXES.iter().map(|(name, _)| format!("DROP INDEX {name};")).collect();
    client.batch_execute(&drop_new).await.expect("drops");
    let mut before = Vec::new();
    for (name, query) in shapes() {
        let times =
            pg_time_pages(&client, 1, |after| old_sql(&query, after.map_or(0, |(_, e)| e), |i| format!("${i}"))).await;
        before.push((name, times));
    }
    let create: String =
        INDEXES.iter().map(|(name, columns)| format!("CREATE INDEX {name} ON log_entries {columns};")).collect();
    client.batch_execute(&format!("{create} ANALYZE log_entries;")).await.expect("creates");
    println!(
        "| store | entries | filter | before: first page | before: next page | after: first page | after: next page |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((name, query), (_, (b_first, b_next))) in shapes().into_iter().zip(before) {
        let (first, next) = pg_time_pages(&client, 3, |after| {
            let query = LogQuery {
                after: after.map_or(LogCursor::default(), |(p, e)| LogCursor { position: p, entry_id: e }),
                ..query.clone()
            };
            logs_sql(&query, i64::MAX, None, Dialect::POSTGRES)
        })
        .await;
        println!(
            "| postgres | {n} | {name} | {} ms | {} ms | {} ms | {} ms |",
            ms(b_first),
            ms(b_next),
            ms(first),
            ms(next)
        );
    }
}

async fn pg_rows(client: &tokio_postgres::Client, (sql, params): &(String, Vec<Param>)) -> Vec<(i64, i64)> {
    // Both stores bind `Param` as it is.
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let statement = client.prepare(sql).await.expect("prepares");
    let has_position = statement.columns().iter().any(|c| c.name() == "position");
    let rows = tokio::time::timeout(Duration::from_secs(60), client.query(&statement, &refs))
        .await
        .expect("answers within a minute")
        .expect("runs");
    rows.iter().map(|r| (if has_position { r.get("position") } else { 0 }, r.get("entry_id"))).collect()
}

async fn pg_time_pages(
    client: &tokio_postgres::Client,
    runs: usize,
    sql: impl Fn(Option<(i64, i64)>) -> (String, Vec<Param>),
) -> (Duration, Duration) {
    let (mut first, mut next) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let built = sql(None);
        // Prepared once, as sessiond's statement cache does; timed runs.
        if runs > 1 {
            let _ = pg_rows(client, &built).await;
        }
        let start = Instant::now();
        let rows = pg_rows(client, &built).await;
        first.push(start.elapsed());
        let built = sql(rows.last().copied());
        let _ = pg_rows(client, &built).await;
        let start = Instant::now();
        pg_rows(client, &built).await;
        next.push(start.elapsed());
    }
    (median(first), median(next))
}

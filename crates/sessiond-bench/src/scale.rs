//! `sessiond-bench scale`: what the paths that must stay flat cost as the
//! store grows, on stores of N sessions built directly through the store
//! (no gRPC on the way in, so set-up stays short).
//!
//! For each N and each store (the embedded one always, Postgres when a
//! database URL is given) it prints one row:
//!
//! - **expiry**: N idle sessions ended by the sweeper (`sweep_once` on a
//!   service with a manual clock), sessions per second; baseline: the same
//!   store ending sessions one transaction each (`end_session`), on a
//!   sample, as the sweeper did before it ended them in batches;
//! - **flush**: the activity of N touched sessions written as shutdown
//!   writes it (`record_activities` in the service's batches), total time;
//!   baseline: one `record_activity` per session, on a sample, scaled to N;
//! - **list**: one admin page (100) of ended sessions across users when
//!   none has ended (the filter skips all N), per page;
//! - **start**: opening the store and finding the request-scoped sessions
//!   an unclean stop left open (none), as start-up does;
//! - **log append**: `--entries-per-session` × N entries logged
//!   continuously (readable at once), 100 per `append_logs`, `LOADERS` at a
//!   time, as if logged at 1,000 entries per second; entries per second;
//! - **QueryLogs**: a first page (100) and the page after it, per filter
//!   (none, session, user, kind, time range of one second, minimum level
//!   error, failed only: no match), median of five;
//! - **reads**: GetSession by token through the service over the caching
//!   decorator (`READ_CACHE` sessions), `READERS` calls in flight for
//!   `READ_WINDOW`: cold (tokens of every session at random, so nearly
//!   every read misses the cache) and cached (`HOT` sessions that never
//!   expire); calls/s, p99, and this process's CPU per call; the sessions
//!   read cold were idle half their timeout, so each first read makes the
//!   activity writer (running, as in sessiond) write its activity;
//! - **sweep reads**: the p99 of cached reads at a steady pace
//!   (`PACED_READERS` readers pausing a millisecond between reads) while
//!   the sweeper ends every session, against the same reads without a
//!   sweep.
//!
//! Every store is wrapped in the caching decorator as sessiond wraps it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sessiond::auth::Caller;
use sessiond::clock::{ManualClock, UnixMillis};
use sessiond::domain::{
    EncodedStorage, EndReason, EventType, Labels, LogCursor, LogEntry, LogLevel, LogQuery, NewEvent, RoleBook, Session,
    SessionEnd, SessionId, SessionKind, TenantId, Token,
};
use sessiond::service::{Service, ServiceConfig, SessionRef};
use sessiond::settings::Settings;
use sessiond::store::postgres::{PgSettings, PgStore};
use sessiond::store::sqlite::SqliteStore;
use sessiond::store::{PageRequest, SessionFilter, Stores};

use crate::procfs::Process;
use crate::scratch::ScratchDir;
use crate::stats::percentile;

/// Sessions in the samples the one-at-a-time baselines are measured on.
const SAMPLE: usize = 2_000;
/// Creates in flight while loading.
const LOADERS: usize = 64;

const START: UnixMillis = UnixMillis(1_700_000_000_000);
const IDLE: Duration = Duration::from_secs(60);
/// Sessions the caching decorator holds, as `--cache-capacity`.
const READ_CACHE: u64 = 1_000;
/// Sessions read as the cached working set: never expiring, fewer than
/// `READ_CACHE`.
const HOT: usize = 500;
/// Reads in flight, and how long each read measurement lasts.
const READERS: usize = 48;
const READ_WINDOW: Duration = Duration::from_secs(3);
/// Readers beside a sweep, each pausing between reads.
const PACED_READERS: usize = 4;
/// Entries per `append_logs`; the time between two batches' `logged_at`.
const LOG_BATCH: usize = 100;
const LOG_BATCH_EVERY_MS: i64 = 100;
/// Where the log entries' times start: after every session's creation.
const LOGS_START: UnixMillis = UnixMillis(START.0 + 1_500);
const PAGE: usize = 100;

/// One row of the table.
struct Row {
    store: &'static str,
    sessions: usize,
    expiry_per_s: f64,
    expiry_baseline_per_s: f64,
    flush: Duration,
    flush_baseline: Duration,
    list_page: Duration,
    start: Duration,
    append_per_s: f64,
    entries: usize,
    /// Per filter: first page, next page.
    pages: Vec<(&'static str, Duration, Duration)>,
    cold: Reads,
    cached: Reads,
    /// Paced cached reads' p99 without a sweep, and during one.
    paced_p99: Duration,
    sweep_p99: Duration,
}

/// What a read measurement found.
#[derive(Default, Clone, Copy)]
struct Reads {
    per_s: f64,
    p99: Duration,
    cpu_per_call: Duration,
}

/// Runs the scale mode for each of `sizes`.
pub async fn run(sizes: Vec<usize>, database_url: Option<String>, entries_per_session: f64) -> anyhow::Result<()> {
    for &n in &sizes {
        let entries = (n as f64 * entries_per_session) as usize;
        let dir = ScratchDir::new("scale")?;
        let path = dir.path().to_owned();
        let embedded = move || {
            let path = path.clone();
            async move {
                let store = SqliteStore::open_in(&path).context("opening the embedded store")?;
                Ok(Stores::of(store).cached(READ_CACHE))
            }
        };
        print_row(&measure("embedded", n, entries, embedded).await?);
        if let Some(url) = &database_url {
            reset(url).await?;
            let url = url.clone();
            let postgres = move || {
                let url = url.clone();
                async move {
                    let store = PgStore::connect(PgSettings {
                        max_log_entries_per_session: 0,
                        max_open_sessions_per_tenant: 0,
                        max_log_entries_per_tenant: 0,
                        ..Settings::default_postgres(url)
                    })
                    .await
                    .context("connecting to Postgres")?;
                    Ok(Stores::of(store).cached(READ_CACHE))
                }
            };
            print_row(&measure("postgres", n, entries, postgres).await?);
        }
    }
    Ok(())
}

/// Prints a store's figures at one size as soon as they are measured: one
/// line per table of BENCHMARKS.md, each a Markdown row.
fn print_row(r: &Row) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "costs | {} | {} | {:.0} | {:.0} | {:.2} s | {:.2} s | {:.2} ms | {:.1} ms | {:.0} |",
        r.store,
        r.sessions,
        r.expiry_per_s,
        r.expiry_baseline_per_s,
        r.flush.as_secs_f64(),
        r.flush_baseline.as_secs_f64(),
        ms(r.list_page),
        ms(r.start),
        r.append_per_s,
    );
    println!(
        "reads | {} | {} | {:.0} | {:.2} ms | {:.0} µs | {:.0} | {:.2} ms | {:.0} µs | {:.2}× | {:.2} ms | {:.2} ms | {:.2}× |",
        r.store,
        r.sessions,
        r.cold.per_s,
        ms(r.cold.p99),
        us(r.cold.cpu_per_call),
        r.cached.per_s,
        ms(r.cached.p99),
        us(r.cached.cpu_per_call),
        r.cold.per_s / r.cached.per_s,
        ms(r.paced_p99),
        ms(r.sweep_p99),
        r.sweep_p99.as_secs_f64() / r.paced_p99.as_secs_f64(),
    );
    let pages: Vec<String> =
        r.pages.iter().map(|(_, first, next)| format!("{:.2} / {:.2}", ms(*first), ms(*next))).collect();
    let names: Vec<&str> = r.pages.iter().map(|(name, _, _)| *name).collect();
    println!("logs ({}) | {} | {} | {} | {} |", names.join(", "), r.store, r.sessions, r.entries, pages.join(" | "));
}

/// Empties the database for the next size.
async fn reset(url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting")?;
    tokio::spawn(connection);
    client.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public").await.context("emptying the database")?;
    Ok(())
}

fn session(created_at: UnixMillis, token: &Token) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: token.hash(),
        tenant: TenantId::default(),
        kind: SessionKind::WebUser,
        user_id: Some(format!("user-{}", created_at.0 % 1_000)),
        labels: Labels::default(),
        created_at,
        last_active_at: created_at,
        idle_timeout: Some(IDLE),
        lifetime: None,
        trusted: false,
        grants: Default::default(),
        grants_version: 0,
        end: None,
    }
}

fn created(s: &Session) -> NewEvent {
    NewEvent {
        event_type: EventType::Created,
        session_id: s.id.clone(),
        tenant: s.tenant.clone(),
        user_id: s.user_id.clone(),
        kind: s.kind,
        end_reason: None,
        at: s.created_at,
    }
}

/// Stores `n` open sessions, `LOADERS` at a time; answers their ids and
/// tokens.
async fn load(store: &Stores, n: usize) -> anyhow::Result<(Vec<SessionId>, Vec<Token>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for loader in 0..LOADERS {
        let store = store.clone();
        let count = n / LOADERS + usize::from(loader < n % LOADERS);
        tasks.spawn(async move {
            let (mut ids, mut tokens) = (Vec::with_capacity(count), Vec::with_capacity(count));
            for i in 0..count {
                let token = Token::generate();
                let s = session(UnixMillis(START.0 + (i * LOADERS + loader) as i64 % 1_000), &token);
                store
                    .sessions
                    .create_session(s.clone(), EncodedStorage::encode(&Default::default()), created(&s))
                    .await?;
                ids.push(s.id);
                tokens.push(token);
            }
            Ok::<_, sessiond::store::StoreError>((ids, tokens))
        });
    }
    let (mut ids, mut tokens) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while let Some(loaded) = tasks.join_next().await {
        let (more_ids, more_tokens) = loaded.context("a loader panicked")?.context("loading sessions")?;
        ids.extend(more_ids);
        tokens.extend(more_tokens);
    }
    Ok((ids, tokens))
}

/// Stores `HOT` sessions that never expire; answers their tokens.
async fn load_hot(store: &Stores) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::with_capacity(HOT);
    for _ in 0..HOT {
        let token = Token::generate();
        let s = Session { idle_timeout: None, ..session(START, &token) };
        store.sessions.create_session(s.clone(), EncodedStorage::encode(&Default::default()), created(&s)).await?;
        tokens.push(token);
    }
    Ok(tokens)
}

/// The level of the `i`-th entry: 90 % info, 7 % warning, 2.5 % error,
/// 0.5 % fatal.
fn level(i: usize) -> LogLevel {
    match i % 200 {
        0 => LogLevel::Fatal,
        1..=5 => LogLevel::Error,
        6..=19 => LogLevel::Warning,
        _ => LogLevel::Info,
    }
}

/// Logs `entries` entries continuously over `ids`, `LOG_BATCH` to a
/// session per call, in batches numbered in the order they are taken (so
/// a batch's `logged_at` is never far behind an earlier one's position);
/// answers entries per second.
async fn load_logs(store: &Stores, ids: &[SessionId], entries: usize) -> anyhow::Result<f64> {
    let batches = entries.div_ceil(LOG_BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Vec<SessionId>> = Arc::new(ids.to_vec());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..LOADERS {
        let (store, next, ids) = (store.clone(), Arc::clone(&next), Arc::clone(&ids));
        tasks.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<_, sessiond::store::StoreError>(());
                }
                let at = UnixMillis(LOGS_START.0 + b as i64 * LOG_BATCH_EVERY_MS);
                let batch: Vec<LogEntry> = (0..LOG_BATCH)
                    .map(|k| LogEntry {
                        level: level(b * LOG_BATCH + k),
                        message: format!("entry {k} of batch {b}"),
                        exception: None,
                        stack_trace: None,
                        client_time: None,
                        logged_at: at,
                        continuous: true,
                    })
                    .collect();
                store.logs.append_logs(&ids[b % ids.len()], batch.clone()).await?;
            }
        });
    }
    while let Some(loaded) = tasks.join_next().await {
        loaded.context("a log loader panicked")?.context("logging")?;
    }
    Ok((batches * LOG_BATCH) as f64 / started.elapsed().as_secs_f64())
}

/// A first page and the page after it for each filter, median of five.
async fn log_pages(
    store: &Stores,
    ids: &[SessionId],
    entries: usize,
) -> anyhow::Result<Vec<(&'static str, Duration, Duration)>> {
    let base = LogQuery { tenant: Some(TenantId::default()), limit: PAGE, ..LogQuery::default() };
    let middle = UnixMillis(LOGS_START.0 + (entries / LOG_BATCH / 2) as i64 * LOG_BATCH_EVERY_MS);
    let filters: Vec<(&'static str, LogQuery)> = vec![
        ("none", base.clone()),
        ("session", LogQuery { session_id: Some(ids[ids.len() / 2].clone()), ..base.clone() }),
        ("user", LogQuery { user_id: Some("user-7".into()), ..base.clone() }),
        ("kind", LogQuery { kind: Some(SessionKind::WebUser), ..base.clone() }),
        ("time range", LogQuery { from: Some(middle), to: Some(UnixMillis(middle.0 + 1_000)), ..base.clone() }),
        ("min level error", LogQuery { min_level: Some(LogLevel::Error), ..base.clone() }),
        ("failed (no match)", LogQuery { failed_only: true, ..base.clone() }),
    ];
    let mut pages = Vec::new();
    for (name, query) in filters {
        let (mut firsts, mut nexts) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let started = Instant::now();
            let first = store.logs.query_logs(&query).await?;
            firsts.push(started.elapsed());
            let after = first.cursor(LogCursor::default(), PAGE);
            let started = Instant::now();
            store.logs.query_logs(&LogQuery { after, ..query.clone() }).await?;
            nexts.push(started.elapsed());
        }
        pages.push((name, crate::stats::median(firsts), crate::stats::median(nexts)));
    }
    Ok(pages)
}

/// GetSession by token, `READERS` at a time for `window`, each reading
/// tokens picked from `tokens` at random; the latencies, sorted, and the
/// calls made.
async fn read_load(service: &Service, tokens: Arc<Vec<Token>>, window: Duration) -> anyhow::Result<Reads> {
    read_until(service, tokens, window, Arc::new(AtomicBool::new(false)), false).await
}

/// [`read_load`] until `window` has passed or `stop` is set; `paced`:
/// `PACED_READERS` readers, each pausing a millisecond after each read (a
/// steady load that leaves the CPU to others, for the reads beside a
/// sweep), instead of `READERS` reading flat out.
async fn read_until(
    service: &Service,
    tokens: Arc<Vec<Token>>,
    window: Duration,
    stop: Arc<AtomicBool>,
    paced: bool,
) -> anyhow::Result<Reads> {
    let cpu = Process::This.cpu_time()?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let readers = if paced { PACED_READERS } else { READERS };
    for reader in 0..readers {
        let (service, tokens, stop) = (service.clone(), Arc::clone(&tokens), Arc::clone(&stop));
        tasks.spawn(async move {
            let caller = Caller::open();
            let mut latencies = Vec::new();
            // A xorshift per reader: a spread of picks without a dependency.
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ reader as u64;
            while started.elapsed() < window && !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let token = tokens[(x % tokens.len() as u64) as usize].clone();
                let call = Instant::now();
                service.get(&caller, &SessionRef::token(token)).await?;
                latencies.push(call.elapsed().as_nanos() as u64);
                if paced {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok::<_, sessiond::service::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(read) = tasks.join_next().await {
        all.extend(read.context("a reader panicked")?.context("reading a session")?);
    }
    let elapsed = started.elapsed();
    let cpu = Process::This.cpu_time()?.saturating_sub(cpu);
    all.sort_unstable();
    let calls = all.len().max(1);
    Ok(Reads {
        per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p99: percentile(&all, 0.99),
        cpu_per_call: cpu / calls as u32,
    })
}

async fn measure<F, Fut>(name: &'static str, n: usize, entries: usize, open: F) -> anyhow::Result<Row>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Stores>>,
{
    eprintln!("scale: {name}, {n} sessions: loading");
    let store = open().await?;
    let (ids, tokens) = load(&store, n + SAMPLE).await?;
    let hot = Arc::new(load_hot(&store).await?);
    eprintln!("scale: {name}, {n} sessions: logging {entries} entries");
    let append_per_s = if entries > 0 { load_logs(&store, &ids, entries).await? } else { 0.0 };

    // Start-up: the store opened again, and the listing recovery runs.
    drop(store);
    let started = Instant::now();
    let store = open().await?;
    store
        .sessions
        .list_sessions(&SessionFilter::open_request_scoped(), &PageRequest { after: None, limit: 500 })
        .await?;
    let start = started.elapsed();

    // An admin's page of ended sessions, none of which has ended.
    let ended = SessionFilter { tenant: Some(TenantId::default()), open: Some(false), ..SessionFilter::default() };
    let started = Instant::now();
    const PAGES: u32 = 20;
    for _ in 0..PAGES {
        store.sessions.list_sessions(&ended, &PageRequest { after: None, limit: 100 }).await?;
    }
    let list_page = started.elapsed() / PAGES;
    let pages = if entries > 0 { log_pages(&store, &ids, entries).await? } else { Vec::new() };

    // Flush: every session touched, written in the service's batches; the
    // baseline one session per write, on the sample.
    let at = UnixMillis(START.0 + 2_000);
    let (sample, rest) = ids.split_at(SAMPLE);
    eprintln!("scale: {name}, {n} sessions: flush");
    let started = Instant::now();
    for id in sample {
        store.sessions.record_activity(id, at).await?;
    }
    let flush_baseline = started.elapsed().mul_f64(n as f64 / SAMPLE as f64);
    let touched: Vec<(SessionId, UnixMillis)> = rest.iter().map(|id| (id.clone(), at)).collect();
    let started = Instant::now();
    for batch in touched.chunks(sessiond::service::SHUTDOWN_FLUSH_BATCH) {
        store.sessions.record_activities(batch).await?;
    }
    let flush = started.elapsed();

    // Reads, half the idle timeout after the flush: each session read cold
    // is read for the first time since, so its activity is due for writing.
    eprintln!("scale: {name}, {n} sessions: reads");
    let read_at = UnixMillis(at.0 + IDLE.as_millis() as i64 / 2);
    let clock = Arc::new(ManualClock::starting_at(read_at));
    let service = Service::new(store.clone(), clock.clone(), RoleBook::default(), ServiceConfig::default());
    let writer = tokio::spawn(service.clone().run_activity_writer());
    read_load(&service, Arc::clone(&hot), Duration::from_millis(500)).await?;
    let cached = read_load(&service, Arc::clone(&hot), READ_WINDOW).await?;
    let cold = read_load(&service, Arc::new(tokens[SAMPLE..].to_vec()), READ_WINDOW).await?;
    service.flush_activity().await?;

    // Expiry: the baseline ends the sample one transaction each; then the
    // sweeper ends the rest.
    eprintln!("scale: {name}, {n} sessions: expiry");
    // Past the idle timeout and the write interval a shared store allows
    // for activity not yet written.
    let later = UnixMillis(read_at.0 + IDLE.as_millis() as i64 + 20_000);
    let started = Instant::now();
    for id in sample {
        let end = SessionEnd {
            reason: EndReason::IdleTimeout,
            at: later,
            error: None,
            stack_trace: None,
            log_id: None,
            slow: false,
        };
        let event = NewEvent {
            event_type: EventType::Expired,
            session_id: id.clone(),
            tenant: TenantId::default(),
            user_id: None,
            kind: SessionKind::WebUser,
            end_reason: Some(EndReason::IdleTimeout),
            at: later,
        };
        store.sessions.end_session(id, &end, &event).await?;
    }
    let expiry_baseline_per_s = SAMPLE as f64 / started.elapsed().as_secs_f64();
    clock.advance(Duration::from_millis((later.0 - read_at.0) as u64));
    let paced = read_until(&service, Arc::clone(&hot), READ_WINDOW, Arc::new(AtomicBool::new(false)), true).await?;
    // The cached reads beside the sweep, until it is done.
    let swept = Arc::new(AtomicBool::new(false));
    let sweep_reads = {
        let (service, hot, swept) = (service.clone(), Arc::clone(&hot), Arc::clone(&swept));
        tokio::spawn(async move { read_until(&service, hot, Duration::from_secs(3_600), swept, true).await })
    };
    let started = Instant::now();
    let mut expired = 0;
    loop {
        let report = service.sweep_once().await?;
        if report.expired.is_empty() {
            break;
        }
        expired += report.expired.len();
    }
    let expiry_per_s = expired as f64 / started.elapsed().as_secs_f64();
    swept.store(true, Ordering::Relaxed);
    let sweep_p99 = sweep_reads.await.context("the sweep's reader panicked")??.p99;
    writer.abort();
    anyhow::ensure!(expired == n, "MISMATCH: the sweeper ended {expired} of {n} sessions");
    Ok(Row {
        store: name,
        sessions: n,
        expiry_per_s,
        expiry_baseline_per_s,
        flush,
        flush_baseline,
        list_page,
        start,
        append_per_s,
        entries,
        pages,
        cold,
        cached,
        paced_p99: paced.p99,
        sweep_p99,
    })
}

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
//!   an unclean stop left open (none), as start-up does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sessiond::clock::{ManualClock, UnixMillis};
use sessiond::domain::{
    EndReason, EventType, Labels, NewEvent, RoleBook, Session, SessionEnd, SessionId, SessionKind, TenantId, Token,
};
use sessiond::service::{Service, ServiceConfig};
use sessiond::store::postgres::{PgSettings, PgStore};
use sessiond::store::sqlite::SqliteStore;
use sessiond::store::{PageRequest, SessionFilter, Store};

use crate::scratch::ScratchDir;

/// Sessions in the samples the one-at-a-time baselines are measured on.
const SAMPLE: usize = 2_000;
/// Creates in flight while loading.
const LOADERS: usize = 64;

const START: UnixMillis = UnixMillis(1_700_000_000_000);
const IDLE: Duration = Duration::from_secs(60);

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
}

/// Runs the scale mode for each of `sizes`.
pub async fn run(sizes: Vec<usize>, database_url: Option<String>) -> anyhow::Result<()> {
    println!(
        "| store | sessions | expiry /s | baseline /s | flush | baseline | list page (no match) | start |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &n in &sizes {
        let dir = ScratchDir::new("scale")?;
        let path = dir.path().to_owned();
        let embedded = move || {
            let path = path.clone();
            async move {
                let store = SqliteStore::open_in(&path).context("opening the embedded store")?;
                Ok(Arc::new(store) as Arc<dyn Store>)
            }
        };
        print_row(&measure("embedded", n, embedded).await?);
        if let Some(url) = &database_url {
            reset(url).await?;
            let url = url.clone();
            let postgres = move || {
                let url = url.clone();
                async move {
                    let store = PgStore::connect(PgSettings::new(url)).await.context("connecting to Postgres")?;
                    Ok(Arc::new(store) as Arc<dyn Store>)
                }
            };
            print_row(&measure("postgres", n, postgres).await?);
        }
    }
    Ok(())
}

/// Prints one row of the table as soon as it is measured.
fn print_row(r: &Row) {
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.2} s | {:.2} s | {:.2} ms | {:.1} ms |",
        r.store,
        r.sessions,
        r.expiry_per_s,
        r.expiry_baseline_per_s,
        r.flush.as_secs_f64(),
        r.flush_baseline.as_secs_f64(),
        r.list_page.as_secs_f64() * 1e3,
        r.start.as_secs_f64() * 1e3,
    );
}

/// Empties the database for the next size.
async fn reset(url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting")?;
    tokio::spawn(connection);
    client.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public").await.context("emptying the database")?;
    Ok(())
}

fn session(created_at: UnixMillis) -> Session {
    Session {
        id: SessionId::generate(),
        token_hash: Token::generate().hash(),
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

/// Stores `n` open sessions, `LOADERS` at a time.
async fn load(store: &Arc<dyn Store>, n: usize) -> anyhow::Result<Vec<SessionId>> {
    let mut tasks = tokio::task::JoinSet::new();
    for loader in 0..LOADERS {
        let store = Arc::clone(store);
        let count = n / LOADERS + usize::from(loader < n % LOADERS);
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for i in 0..count {
                let s = session(UnixMillis(START.0 + (i * LOADERS + loader) as i64 % 1_000));
                store.create_session(&s, &Default::default(), &created(&s)).await?;
                ids.push(s.id);
            }
            Ok::<_, sessiond::store::StoreError>(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(loaded) = tasks.join_next().await {
        ids.extend(loaded.context("a loader panicked")?.context("loading sessions")?);
    }
    Ok(ids)
}

async fn measure<F, Fut>(name: &'static str, n: usize, open: F) -> anyhow::Result<Row>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Arc<dyn Store>>>,
{
    eprintln!("scale: {name}, {n} sessions: loading");
    let store = open().await?;
    let ids = load(&store, n + SAMPLE).await?;

    // Start-up: the store opened again, and the listing recovery runs.
    drop(store);
    let started = Instant::now();
    let store = open().await?;
    let request_scoped = SessionFilter {
        kinds: SessionKind::ALL.iter().copied().filter(|k| k.is_request_scoped()).collect(),
        open: Some(true),
        ..SessionFilter::default()
    };
    store.list_sessions(&request_scoped, &PageRequest { after: None, limit: 500 }).await?;
    let start = started.elapsed();

    // An admin's page of ended sessions, none of which has ended.
    let ended = SessionFilter { tenant: Some(TenantId::default()), open: Some(false), ..SessionFilter::default() };
    let started = Instant::now();
    const PAGES: u32 = 20;
    for _ in 0..PAGES {
        store.list_sessions(&ended, &PageRequest { after: None, limit: 100 }).await?;
    }
    let list_page = started.elapsed() / PAGES;

    // Flush: every session touched, written in the service's batches; the
    // baseline one session per write, on the sample.
    let at = UnixMillis(START.0 + 2_000);
    let (sample, rest) = ids.split_at(SAMPLE);
    eprintln!("scale: {name}, {n} sessions: flush");
    let started = Instant::now();
    for id in sample {
        store.record_activity(id, at).await?;
    }
    let flush_baseline = started.elapsed().mul_f64(n as f64 / SAMPLE as f64);
    let touched: Vec<(SessionId, UnixMillis)> = rest.iter().map(|id| (id.clone(), at)).collect();
    let started = Instant::now();
    for batch in touched.chunks(2_000) {
        store.record_activities(batch).await?;
    }
    let flush = started.elapsed();

    // Expiry: the baseline ends the sample one transaction each; then the
    // sweeper ends the rest.
    eprintln!("scale: {name}, {n} sessions: expiry");
    // Past the idle timeout and the write interval a shared store allows
    // for activity not yet written.
    let later = UnixMillis(at.0 + IDLE.as_millis() as i64 + 20_000);
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
        store.end_session(id, &end, &event).await?;
    }
    let expiry_baseline_per_s = SAMPLE as f64 / started.elapsed().as_secs_f64();
    let clock = ManualClock::starting_at(later);
    let service = Service::new(Arc::clone(&store), Arc::new(clock), RoleBook::default(), ServiceConfig::default());
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
    anyhow::ensure!(expired == n, "MISMATCH: the sweeper ended {expired} of {n} sessions");
    Ok(Row { store: name, sessions: n, expiry_per_s, expiry_baseline_per_s, flush, flush_baseline, list_page, start })
}

//! Live events (WatchSessions of the whole tenant, from now on, as
//! server-sent events) and headline figures: calls per second and failed
//! calls of this process, open sessions of the tenant, and the cache hit
//! ratio of this process; and what this process is (GetServerInfo's
//! version, build, store and start).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Serialize;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use super::signin::Admin;
use super::{ConsoleError, ConsoleState, layout};
use crate::domain::EventFilter;
use crate::service::lifecycle::ListQuery;
use crate::service::watch::WatchFrom;

/// Open sessions are counted by listing them, a page at a time, up to
/// this many; beyond, the figure says "more than".
pub const OPEN_SESSIONS_COUNTED: usize = 10_000;

/// The live page: figures the script refreshes, and events as they come.
pub async fn page(State(state): State<ConsoleState>, admin: Admin) -> Result<Response, ConsoleError> {
    let figures = figures_now(&state, &admin).await?;
    let server = state.service.server_info(&admin.caller);
    let body = html! {
        h1 { "Live" }
        section aria-labelledby="server-title" {
            h2 #server-title { "Server" }
            dl.figures #server {
                div { dt { "Version" } dd #server-version { (server.version) } }
                div { dt { "Build" } dd #server-build { (server.build_profile) " " (server.build_target) } }
                div { dt { "Store" } dd #server-store { (server.store.as_str()) " (schema " (server.schema_version) ")" } }
                div { dt { "Started" } dd #server-started { time { (layout::time_ms(server.started_at)) } } }
            }
        }
        section aria-labelledby="figures-title" {
            h2 #figures-title { "Figures" }
            dl.figures #figures data-source="/live/figures" {
                div { dt { "Calls/s" } dd #calls-per-second { "—" } }
                div { dt { "Calls answered" } dd #calls { (figures.calls) } }
                div { dt { "Failed calls" } dd #failed { (figures.failed) } }
                div { dt { "Open sessions" } dd #open-sessions { (figures.open_sessions) } }
                div { dt { "Cache hit ratio" } dd #cache-hit-ratio { (figures.cache_hit_ratio) } }
            }
            p.hint { "Calls and the cache are this replica's since it started; open sessions are the tenant's, counted up to "
                (OPEN_SESSIONS_COUNTED) "." }
        }
        section aria-labelledby="events-title" {
            h2 #events-title { "Events" }
            p #events-status role="status" aria-live="polite" { "Connecting…" }
            div.scroll role="region" aria-label="Events" tabindex="0" {
                table.events #events data-source="/live/events" {
                    thead { tr {
                        th scope="col" { "Sequence" } th scope="col" { "At" } th scope="col" { "Event" }
                        th scope="col" { "Session" } th scope="col" { "User" } th scope="col" { "Kind" }
                        th scope="col" { "End reason" }
                    } }
                    tbody {}
                }
            }
        }
    };
    Ok(layout::frame("Live", Some(&admin), body).into_response())
}

/// The figures as the script reads them.
#[derive(Debug, Serialize)]
pub struct Figures {
    calls: u64,
    failed: u64,
    /// The count, or `more than N`.
    open_sessions: String,
    /// A percentage with one decimal, or `—` before any lookup.
    cache_hit_ratio: String,
}

async fn figures_now(state: &ConsoleState, admin: &Admin) -> Result<Figures, ConsoleError> {
    let totals = crate::telemetry::tally::totals();
    let mut open = 0;
    let mut after = None;
    loop {
        let page_size = OPEN_SESSIONS_COUNTED;
        let query = ListQuery { open: Some(true), page_size, after: after.take(), ..ListQuery::default() };
        let page = state.service.list(&admin.caller, query).await?;
        open += page.items.len();
        match page.next {
            Some(next) if open < OPEN_SESSIONS_COUNTED => after = Some(next),
            _ => break,
        }
    }
    let lookups = totals.cache_hits + totals.cache_misses;
    Ok(Figures {
        calls: totals.calls,
        failed: totals.failed,
        open_sessions: if open >= OPEN_SESSIONS_COUNTED {
            format!("more than {OPEN_SESSIONS_COUNTED}")
        } else {
            open.to_string()
        },
        cache_hit_ratio: if lookups == 0 {
            "—".to_owned()
        } else {
            format!("{:.1} %", totals.cache_hits as f64 * 100.0 / lookups as f64)
        },
    })
}

/// The figures now, for the script.
pub async fn figures(State(state): State<ConsoleState>, admin: Admin) -> Result<Json<Figures>, ConsoleError> {
    Ok(Json(figures_now(&state, &admin).await?))
}

/// One event as the script receives it; it inserts every field as text.
#[derive(Debug, Serialize)]
struct LiveEvent {
    sequence: u64,
    at: String,
    event_type: &'static str,
    session_id: String,
    user_id: String,
    kind: &'static str,
    end_reason: &'static str,
}

/// The tenant's events from now on, as server-sent events, until the page
/// goes away or sessiond stops.
pub async fn events(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>>, ConsoleError> {
    let events = state.service.watch(&admin.caller, EventFilter::default(), WatchFrom::Now).await?;
    let stream = ReceiverStream::new(events).map(|item| {
        Ok(match item {
            Ok(event) => {
                let e = event.event;
                let live = LiveEvent {
                    sequence: event.sequence,
                    at: layout::time_ms(e.at),
                    event_type: e.event_type.as_str(),
                    session_id: e.session_id.as_str().to_owned(),
                    user_id: e.user_id.unwrap_or_default(),
                    kind: e.kind.as_str(),
                    end_reason: e.end_reason.map_or("", |r| r.as_str()),
                };
                // Plain data of strings and numbers always serialises.
                SseEvent::default().event("session").json_data(live).unwrap_or_default()
            }
            Err(err) => {
                let status = tonic::Status::from(err);
                SseEvent::default().event("failed").data(format!("{:?}: {}", status.code(), status.message()))
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

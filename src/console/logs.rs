//! Log search (level, time range, session, user, kind, endpoint, slow or
//! failed only; paged) and its live tail: the page's script follows the entries
//! after the page with the same filters through `/logs/follow`, which is
//! FollowLogs as server-sent events. Entries are those QueryLogs reads:
//! kept logs, and open sessions' entries under continuous logging.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::sessions::{kind_select, parse_kind};
use super::signin::Admin;
use super::{ConsoleError, ConsoleState, layout};
use crate::clock::UnixMillis;
use crate::domain::{InvalidInput, LogCursor, LogLevel, LogQuery, LogRecord, SessionId, Violations};
use crate::service::logs::{LogBatch, LogsPage};

/// Entries per page of the search.
pub const PAGE_SIZE: usize = 50;

const LEVELS: [(LogLevel, &str); 5] = [
    (LogLevel::Debug, "debug"),
    (LogLevel::Info, "info"),
    (LogLevel::Warning, "warning"),
    (LogLevel::Error, "error"),
    (LogLevel::Fatal, "fatal"),
];

fn level_name(level: LogLevel) -> &'static str {
    LEVELS.iter().find(|(l, _)| *l == level).map_or("?", |(_, name)| name)
}

/// The search form, as the query string carries it.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Search {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The endpoint, matched exactly; empty for any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The minimum level's name; empty for any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub level: String,
    /// From and to, in UTC: `YYYY-MM-DDTHH:MM[:SS]` (an HTML
    /// `datetime-local` value) or RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slow: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failed: String,
    /// Entries after this cursor (the API's page token or cursor).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
}

fn parse_time(text: &str, field: &str) -> Result<Option<UnixMillis>, InvalidInput> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let full = if text.len() == 16 { format!("{text}:00") } else { text.to_owned() };
    let at = humantime::parse_rfc3339_weak(&full)
        .map_err(|_| InvalidInput::new(field, "must be a valid timestamp between 1970 and 9999"))?;
    let millis = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Ok(Some(UnixMillis(millis)))
}

impl Search {
    fn query(&self, limit: usize, max_text_bytes: usize) -> Result<LogQuery, ConsoleError> {
        let mut v = Violations::default();
        let session = self.session.trim();
        let session_id = v.check((!session.is_empty()).then(|| SessionId::parse(session, "session_id")).transpose());
        v.text(&self.user, "user_id", max_text_bytes);
        v.text(&self.endpoint, "endpoint", max_text_bytes);
        let kind = v.check(parse_kind(&self.kind, "kind"));
        let min_level = v.check(match self.level.as_str() {
            "" => Ok(None),
            name => LEVELS
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(l, _)| Some(*l))
                .ok_or_else(|| InvalidInput::new("min_level", "must be a log level")),
        });
        let from = v.check(parse_time(&self.from, "start_time"));
        let to = v.check(parse_time(&self.to, "end_time"));
        let after = v.check(match self.after.as_str() {
            "" => Ok(LogCursor::default()),
            token => LogCursor::decode(token).ok_or_else(|| {
                InvalidInput::new("page_token", "must be a cursor or next_page_token from an earlier answer")
            }),
        });
        let query = v.finish(crate::domain::all(|| {
            Some(LogQuery {
                tenant: None,
                session_id: session_id?,
                user_id: Some(self.user.trim().to_owned()).filter(|u| !u.is_empty()),
                kind: kind?,
                endpoint: Some(self.endpoint.trim().to_owned()).filter(|e| !e.is_empty()),
                from: from?,
                to: to?,
                min_level: min_level?,
                failed_only: !self.failed.is_empty(),
                slow_only: !self.slow.is_empty(),
                after: after?,
                limit,
            })
        }))?;
        Ok(query)
    }
}

/// The search page.
pub async fn search(
    State(state): State<ConsoleState>,
    admin: Admin,
    Query(search): Query<Search>,
) -> Result<Response, ConsoleError> {
    let query = search.query(PAGE_SIZE, state.service.config().limits.max_text_bytes)?;
    let LogsPage { page, cursor } = state.service.query_logs(&admin.caller, query).await?;
    let next = page.next.map(|next| Search { after: next.encode(), ..search.clone() });
    let records = page.items;
    let filters = serde_urlencoded::to_string(Search { after: String::new(), ..search.clone() }).unwrap_or_default();
    let body = html! {
        h1 { "Logs" }
        (search_form(&search))
        div #log-entries data-follow={ "/logs/follow?" (filters) } data-cursor=(cursor.encode()) {
            @if records.is_empty() {
                p.empty { "No kept log entries match." }
            }
            (table(&records))
        }
        div.tail {
            button #follow type="button" aria-pressed="false" { "Follow new entries" }
            span #tail-status role="status" aria-live="polite" {}
        }
        nav.pages aria-label="Pages" {
            @if !search.after.is_empty() {
                a href={ "/logs?" (filters) } { "First page" }
            }
            @if let Some(next) = &next {
                a rel="next" href={ "/logs?" (serde_urlencoded::to_string(next).unwrap_or_default()) } { "Next page" }
            }
        }
    };
    Ok(layout::frame("Logs", Some(&admin), body).into_response())
}

fn search_form(search: &Search) -> Markup {
    html! {
        form.search method="get" action="/logs" role="search" {
            div.field {
                label for="level" { "Minimum level" }
                select #level name="level" {
                    option value="" selected[search.level.is_empty()] { "any" }
                    @for (_, name) in LEVELS {
                        option value=(name) selected[search.level == name] { (name) }
                    }
                }
            }
            div.field { label for="from" { "From (UTC)" } input #from type="datetime-local" step="1" name="from" value=(search.from); }
            div.field { label for="to" { "To (UTC)" } input #to type="datetime-local" step="1" name="to" value=(search.to); }
            div.field { label for="user" { "User id" } input #user type="search" name="user" value=(search.user); }
            div.field { label for="kind" { "Kind" } (kind_select("kind", &search.kind)) }
            div.field { label for="endpoint" { "Endpoint" } input #endpoint type="search" name="endpoint" value=(search.endpoint); }
            div.field { label for="session" { "Session id" } input #session type="search" name="session" value=(search.session); }
            div.check { input #slow type="checkbox" name="slow" value="1" checked[!search.slow.is_empty()]; label for="slow" { "Slow sessions only" } }
            div.check { input #failed type="checkbox" name="failed" value="1" checked[!search.failed.is_empty()]; label for="failed" { "Failed sessions only" } }
            button type="submit" { "Search" }
        }
    }
}

/// Log entries as a table: time, level, session, user, kind, endpoint,
/// message with its exception and stack trace.
pub fn table(records: &[LogRecord]) -> Markup {
    html! {
        div.scroll role="region" aria-label="Log entries" tabindex="0" {
            table.logs.stack {
                thead { tr {
                    th scope="col" { "Logged at" } th scope="col" { "Level" } th scope="col" { "Session" }
                    th scope="col" { "User" } th scope="col" { "Kind" } th scope="col" { "Endpoint" }
                    th scope="col" { "Message" }
                } }
                tbody {
                    @for record in records {
                        tr data-level=(level_name(record.entry.level)) {
                            td data-label="Logged at" { time { (layout::time_ms(record.entry.logged_at)) } }
                            td data-label="Level" { span class={ "level level-" (level_name(record.entry.level)) } { (level_name(record.entry.level)) } }
                            td data-label="Session" { a href={ "/sessions/" (record.session_id) } { code { (short(record.session_id.as_str())) } } }
                            td data-label="User" { (record.user_id.as_deref().unwrap_or("")) }
                            td data-label="Kind" { (record.kind) }
                            td data-label="Endpoint" { (record.endpoint) }
                            td data-label="Message".message {
                                div { (record.entry.message) }
                                @if let Some(exception) = &record.entry.exception { div.exception { (exception) } }
                                @if let Some(trace) = &record.entry.stack_trace {
                                    details { summary { "Stack trace" } pre.trace { (trace) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One entry as the live tail's script receives it; it inserts every
/// field as text.
#[derive(Debug, Serialize)]
struct TailEntry {
    logged_at: String,
    level: &'static str,
    session_id: String,
    session_short: String,
    user_id: String,
    kind: &'static str,
    endpoint: String,
    message: String,
    exception: String,
    stack_trace: String,
}

/// What the live tail receives per batch: entries in the order they
/// became readable, and the cursor to resume after them.
#[derive(Debug, Serialize)]
struct Tail {
    entries: Vec<TailEntry>,
    cursor: String,
}

fn tail_entry(r: LogRecord) -> TailEntry {
    TailEntry {
        logged_at: layout::time_ms(r.entry.logged_at),
        level: level_name(r.entry.level),
        session_short: short(r.session_id.as_str()).to_owned(),
        session_id: r.session_id.as_str().to_owned(),
        user_id: r.user_id.unwrap_or_default(),
        kind: r.kind.as_str(),
        endpoint: r.endpoint,
        message: r.entry.message,
        exception: r.entry.exception.unwrap_or_default(),
        stack_trace: r.entry.stack_trace.unwrap_or_default(),
    }
}

/// FollowLogs as server-sent events: entries matching the filters after
/// `after` (from now on when empty), then each as it becomes readable, on
/// any replica; `entries` events, or one `failed` event saying why the
/// follow ended (a too slow reader, the store unavailable, sessiond
/// stopping).
pub async fn follow(
    State(state): State<ConsoleState>,
    admin: Admin,
    Query(search): Query<Search>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>>, ConsoleError> {
    let from = (!search.after.is_empty()).then_some(());
    let query = search.query(PAGE_SIZE, state.service.config().limits.max_text_bytes)?;
    let from = from.map(|()| query.after);
    let batches = state.service.follow_logs(&admin.caller, query, from).await?;
    let stream = tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(batches), |batch| {
        Ok(match batch {
            Ok(LogBatch { records, cursor }) => {
                let tail = Tail { entries: records.into_iter().map(tail_entry).collect(), cursor: cursor.encode() };
                // Plain data of strings always serialises.
                SseEvent::default().event("entries").json_data(tail).unwrap_or_default()
            }
            Err(err) => {
                let status = tonic::Status::from(err);
                SseEvent::default().event("failed").data(format!("{:?}: {}", status.code(), status.message()))
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

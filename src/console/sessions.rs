//! The sessions table (searchable, paged), one session's page, and
//! revoking a session after a confirmation.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::signin::{Admin, check_form};
use super::{ConsoleError, ConsoleState, layout, logs};
use crate::clock::UnixMillis;
use crate::domain::{InvalidInput, LogQuery, SessionId, SessionKind, Violations};
use crate::service::lifecycle::{ListQuery, RevokeFilter, SessionStatus};

/// Sessions per page of the table.
pub const PAGE_SIZE: usize = 25;

/// Log entries shown on a session's page.
const SESSION_LOG_ENTRIES: usize = 200;

/// The search form, as the query string carries it.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Search {
    /// Jump to this session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `open`, `ended`, or empty for both.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// The API's page token: `<created_at>.<session id>` of the last row.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
}

/// A kind named in a form: empty is none.
pub fn parse_kind(text: &str, field: &str) -> Result<Option<SessionKind>, InvalidInput> {
    match text {
        "" => Ok(None),
        name => {
            SessionKind::from_name(name).map(Some).ok_or_else(|| InvalidInput::new(field, "must be a session kind"))
        }
    }
}

impl Search {
    fn query(&self, max_text_bytes: usize) -> Result<ListQuery, ConsoleError> {
        let mut v = Violations::default();
        v.text(&self.user, "user_id", max_text_bytes);
        let kind = v.check(parse_kind(&self.kind, "kind"));
        let open = v.check(match self.state.as_str() {
            "" => Ok(None),
            "open" => Ok(Some(true)),
            "ended" => Ok(Some(false)),
            _ => Err(InvalidInput::new("state", "must be a session state")),
        });
        let after = v.check(parse_after(&self.after));
        let query = v.finish(crate::domain::all(|| {
            Some(ListQuery {
                user_id: Some(self.user.trim().to_owned()).filter(|u| !u.is_empty()),
                kind: kind?,
                open: open?,
                page_size: PAGE_SIZE,
                after: after?,
            })
        }))?;
        Ok(query)
    }
}

fn parse_after(token: &str) -> Result<Option<(UnixMillis, SessionId)>, InvalidInput> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || InvalidInput::new("page_token", "must be a next_page_token from an earlier answer");
    let (at, id) = token.split_once('.').ok_or_else(invalid)?;
    let at = at.parse::<i64>().map_err(|_| invalid())?;
    let id = SessionId::parse(id, "page_token").map_err(|_| invalid())?;
    Ok(Some((UnixMillis(at), id)))
}

/// The sessions table.
pub async fn list(
    State(state): State<ConsoleState>,
    admin: Admin,
    Query(search): Query<Search>,
) -> Result<Response, ConsoleError> {
    let id = search.id.trim();
    if !id.is_empty() {
        let id = SessionId::parse(id, "session_id")?;
        return Ok(Redirect::to(&format!("/sessions/{id}")).into_response());
    }
    let query = search.query(state.service.config().limits.max_text_bytes)?;
    let page = state.service.list(&admin.caller, query).await?;
    let next = page.next.map(|(at, id)| Search { after: format!("{}.{id}", at.0), ..search.clone() });
    let sessions = page.items;
    let body = html! {
        h1 { "Sessions" }
        (search_form(&search))
        @if sessions.is_empty() {
            p.empty { "No sessions match." }
        } @else {
            div.scroll role="region" aria-label="Sessions" tabindex="0" {
                table.sessions.stack {
                    thead { tr {
                        th scope="col" { "Session" } th scope="col" { "User" } th scope="col" { "Kind" }
                        th scope="col" { "Tenant" } th scope="col" { "State" } th scope="col" { "Age" }
                        th scope="col" { "Last activity" } th scope="col" { "End reason" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for status in &sessions { (row(status)) }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if !search.after.is_empty() {
                a href=(link(&Search { after: String::new(), ..search.clone() })) { "First page" }
            }
            @if let Some(next) = &next {
                a rel="next" href=(link(next)) { "Next page" }
            }
        }
    };
    Ok(layout::frame("Sessions", Some(&admin), body).into_response())
}

fn link(search: &Search) -> String {
    // Strings only: serde_urlencoded cannot fail on them.
    format!("/sessions?{}", serde_urlencoded::to_string(search).unwrap_or_default())
}

fn search_form(search: &Search) -> Markup {
    html! {
        form.search method="get" action="/sessions" role="search" {
            div.field {
                label for="user" { "User id" }
                input #user type="search" name="user" value=(search.user);
            }
            div.field {
                label for="kind" { "Kind" }
                (kind_select("kind", &search.kind))
            }
            div.field {
                label for="state" { "State" }
                select #state name="state" {
                    @for (value, name) in [("", "any"), ("open", "open"), ("ended", "ended")] {
                        option value=(value) selected[search.state == value] { (name) }
                    }
                }
            }
            div.field {
                label for="id" { "Session id" }
                input #id type="search" name="id" value=(search.id) placeholder="go to a session";
            }
            button type="submit" { "Search" }
        }
    }
}

/// A `<select>` of the session kinds, `selected` chosen, empty for any.
pub fn kind_select(id: &str, selected: &str) -> Markup {
    html! {
        select id=(id) name="kind" {
            option value="" selected[selected.is_empty()] { "any" }
            @for kind in SessionKind::ALL {
                option value=(kind.as_str()) selected[selected == kind.as_str()] { (kind.as_str()) }
            }
        }
    }
}

fn row(status: &SessionStatus) -> Markup {
    let session = &status.session;
    html! {
        tr {
            td data-label="Session" { a href={ "/sessions/" (session.id) } { code { (session.id) } } }
            td data-label="User" { (session.user_id.as_deref().unwrap_or("")) }
            td data-label="Kind" { (session.kind) }
            td data-label="Tenant" { (session.tenant) }
            td data-label="State" { @if session.end.is_some() { "ended" } @else { "open" } }
            td data-label="Age" { (layout::age(session.created_at)) }
            td data-label="Last activity" { time { (layout::time(status.last_active_at)) } }
            td data-label="End reason" { (session.end.as_ref().map(|e| e.reason.as_str()).unwrap_or("")) }
            td {
                @if session.end.is_none() {
                    a.danger href={ "/sessions/" (session.id) "/revoke" } aria-label={ "Revoke session " (session.id) } { "Revoke" }
                }
            }
        }
    }
}

/// One session: what it is, its timeline, privileges, storage and log.
pub async fn show(
    State(state): State<ConsoleState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = SessionId::parse(&id, "session_id")?;
    let seen = state.service.inspect(&admin.caller, &id).await?;
    let log = LogQuery { session_id: Some(id.clone()), limit: SESSION_LOG_ENTRIES, ..LogQuery::default() };
    let entries = state.service.query_logs(&admin.caller, log).await?.page.items;
    let session = &seen.status.session;
    let storage = serde_json::to_string_pretty(&seen.storage.values).unwrap_or_default();
    let body = html! {
        h1 { "Session " code { (session.id) } }
        dl.facts {
            dt { "User" } dd { (session.user_id.as_deref().unwrap_or("—")) }
            dt { "Kind" } dd { (session.kind) }
            dt { "Tenant" } dd { (session.tenant) }
            dt { "State" } dd { @if let Some(end) = &session.end { "ended: " (end.reason) } @else { "open" } }
            dt { "Endpoint" } dd { (session.labels.endpoint) }
            dt { "Method" } dd { (session.labels.method) }
            dt { "Client" } dd { (session.labels.client_address) " " (session.labels.user_agent) }
            dt { "Duration" } dd { (layout::duration(seen.status.duration)) }
            dt { "Expires" } dd { (seen.status.expires_at.map(layout::time).unwrap_or_else(|| "—".into())) }
        }
        @if session.end.is_none() {
            p { a.danger href={ "/sessions/" (session.id) "/revoke" } { "Revoke this session" } }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for (at, what) in timeline(&seen) {
                li { time { (layout::time_ms(at)) } " " (what) }
            }
            @if let Some(end) = &session.end {
                @if let Some(error) = &end.error { li.exception { "error: " (error) } }
                @if let Some(trace) = &end.stack_trace { li { pre.trace { (trace) } } }
            }
        }
        p.hint { "Events are looked for among the latest " (crate::service::inspect::TIMELINE_EVENTS_SEARCHED) " kept." }
        h2 { "Privileges" }
        dl.facts {
            dt { "Trusted" } dd { @if session.trusted { "yes" } @else { "no" } }
            dt { "Roles" } dd { (session.grants.roles.join(", ")) }
            dt { "Privileges granted" } dd { (session.grants.privileges.join(", ")) }
            dt { "Privileges held" } dd { (seen.expanded.iter().cloned().collect::<Vec<_>>().join(", ")) }
        }
        @if !session.grants.promotions.is_empty() {
            h3 { "Promotions" }
            ul {
                @for promotion in &session.grants.promotions {
                    li { (promotion.privilege) " until " time { (layout::time(promotion.expires_at)) } " (" code { (promotion.id.as_str()) } ")" }
                }
            }
        }
        h2 { "Storage" }
        p { "Version " (seen.storage.version) }
        pre.json tabindex="0" aria-label="Storage as JSON" { (storage) }
        h2 { "Log" }
        @if entries.is_empty() {
            p.empty { "No readable log entries." }
        } @else {
            (logs::table(&entries))
        }
    };
    Ok(layout::frame("Session", Some(&admin), body).into_response())
}

/// What happened to the session, oldest first: its creation, its events
/// (privilege and storage changes among them), its last activity and its
/// end.
fn timeline(seen: &crate::service::inspect::Inspection) -> Vec<(UnixMillis, String)> {
    let session = &seen.status.session;
    let mut items = Vec::new();
    if !seen.events.iter().any(|e| e.event.event_type == crate::domain::EventType::Created) {
        items.push((session.created_at, "created".to_owned()));
    }
    for event in &seen.events {
        items.push((event.event.at, format!("{} (event {})", event.event.event_type.as_str(), event.sequence)));
    }
    items.push((seen.status.last_active_at, "last activity".to_owned()));
    if let Some(end) = &session.end {
        let slow = if end.slow { ", slow" } else { "" };
        items.push((end.at, format!("ended: {}{slow}, storage at version {}", end.reason, seen.storage.version)));
    }
    // Stable: at the same millisecond, the order above stands.
    items.sort_by_key(|(at, _)| *at);
    items
}

/// Asks before revoking.
pub async fn confirm_revoke(
    State(state): State<ConsoleState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = SessionId::parse(&id, "session_id")?;
    let seen = state.service.inspect(&admin.caller, &id).await?;
    let session = &seen.status.session;
    let body = html! {
        h1 { "Revoke session" }
        @if let Some(end) = &session.end {
            p { "Session " code { (session.id) } " has already ended: " (end.reason) "." }
        } @else {
            p { "Revoke session " code { (session.id) } " of user " strong { (session.user_id.as_deref().unwrap_or("—")) }
                " (" (session.kind) ")? It ends at once, with reason revoked, and every call naming it is refused." }
            form.confirm method="post" action={ "/sessions/" (session.id) "/revoke" } {
                input type="hidden" name="csrf" value=(admin.csrf);
                button.danger type="submit" { "Revoke" }
                a href={ "/sessions/" (session.id) } { "Cancel" }
            }
        }
    };
    Ok(layout::frame("Revoke", Some(&admin), body).into_response())
}

#[derive(Deserialize)]
pub struct Confirmed {
    #[serde(default)]
    csrf: String,
}

/// Revokes the session (RevokeSessions with its id), then shows it.
pub async fn revoke(
    State(state): State<ConsoleState>,
    admin: Admin,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<Confirmed>,
) -> Result<Response, ConsoleError> {
    check_form(&headers, &uri, &admin, &form.csrf)?;
    let id = SessionId::parse(&id, "session_id")?;
    let filter = RevokeFilter { user_id: None, kind: None, session_ids: vec![id.clone()] };
    let revoked = state.service.revoke(&admin.caller, filter).await?;
    tracing::info!(session_id = %id, key = %admin.caller.name, revoked = revoked.len(), "revoked from the console");
    Ok(Redirect::to(&format!("/sessions/{id}")).into_response())
}

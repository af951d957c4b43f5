//! The frame every console page shares (navigation, the signed-in tenant,
//! sign out), error pages, and how times and durations are shown.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::signin::Admin;
use crate::clock::UnixMillis;

/// The pages in the navigation: path and name.
const PAGES: [(&str, &str); 3] = [("/sessions", "Sessions"), ("/logs", "Logs"), ("/live", "Live")];

/// A whole page: `title`, the navigation when signed in, and `body`.
pub fn frame(title: &str, admin: Option<&Admin>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sessiond" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "sessiond " span.version { (crate::service::server_info::VERSION) } }
                    @if let Some(admin) = admin {
                        nav aria-label="Console" {
                            ul {
                                @for (path, name) in PAGES {
                                    li {
                                        @if name == title {
                                            a href=(path) aria-current="page" { (name) }
                                        } @else {
                                            a href=(path) { (name) }
                                        }
                                    }
                                }
                            }
                        }
                        span.who { "tenant " strong { (admin.caller.tenant) } " · " (admin.caller.name) }
                        @if admin.by_certificate {
                            span.who { "signed in by client certificate" }
                        } @else {
                            form.signout method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(admin.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// An error page saying `message` (escaped like everything else).
pub fn problem(status: StatusCode, message: &str) -> Response {
    problem_with(status, message, &[])
}

/// An error page saying `message`, then each of `details`.
pub fn problem_with(status: StatusCode, message: &str, details: &[String]) -> Response {
    let body = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        div.problem role="alert" {
            p { (message) }
            @if !details.is_empty() {
                ul { @for detail in details { li { (detail) } } }
            }
        }
        p { a href="/sessions" { "Back to the sessions" } }
    };
    (status, frame("Error", None, body)).into_response()
}

/// A time as RFC 3339 in UTC, to the second.
pub fn time(at: UnixMillis) -> String {
    let Ok(millis) = u64::try_from(at.0) else { return at.0.to_string() };
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

/// A time as RFC 3339 in UTC, to the millisecond.
pub fn time_ms(at: UnixMillis) -> String {
    let Ok(millis) = u64::try_from(at.0) else { return at.0.to_string() };
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

/// A duration to the second (`1h 2m 3s`), or `0s`.
pub fn duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// How long ago `at` was, by the wall clock, to the second.
pub fn age(at: UnixMillis) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    duration(UnixMillis(now).since(at))
}

//! Signing in to the console with an admin API key, or by a client
//! certificate mapped to an admin entry of the keys file.
//!
//! The key is posted once by the sign-in form and kept by the browser (in
//! hex) in a cookie that scripts cannot read (`HttpOnly`), that no other site's page
//! sends (`SameSite=Strict`) and, over TLS, that travels only over TLS
//! (`Secure`). Every request authenticates the key again against the keys
//! in force, so a key removed from the keys file is refused from the next
//! page on, on every replica. The key never appears in a URL or a page.
//!
//! Forms that change something carry a CSRF token derived from the key
//! (`SHA-256("sessiond/console-csrf" ‖ key)`: the same on every replica,
//! unknown to whoever does not hold the key), and are refused when the
//! browser says they come from another site.
//!
//! Over mutual TLS, a browser presenting a client certificate the handshake
//! verified against `--tls-client-ca`, and that the keys file maps to an
//! admin entry (`cert_sha256`), is signed in by it without a key: the
//! connection carries the certificate ([`ClientCertificate`]) to every
//! request. A key in the cookie, when it still authenticates, goes first.
//! A certificate is no secret, so the forms of an admin signed in by one
//! must also say where they come from (`Origin` or `Sec-Fetch-Site`, which
//! every current browser sends with a form) and that it is this console.

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, extract::OptionalFromRequestParts};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ConsoleError, ConsoleState, layout};
use crate::auth::Caller;

/// The cookie holding the API key.
const COOKIE: &str = "sessiond_console_key";

/// The admin who signed in, with the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct Admin {
    pub caller: Caller,
    pub csrf: String,
    /// Signed in by a client certificate rather than a key: signing out
    /// means no longer presenting it.
    pub by_certificate: bool,
}

/// The client certificate (DER) a TLS connection's handshake verified,
/// carried to each request of the connection.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub std::sync::Arc<[u8]>);

impl<S> FromRequestParts<S> for Admin
where
    ConsoleState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = ConsoleState::from_ref(state);
        let page = parts.method == Method::GET && !wants_data(&parts.headers, parts.uri.path());
        let callers = state.callers.current();
        let Some(keys) = callers.keys() else {
            return Ok(Admin { caller: Caller::open(), csrf: csrf_token(""), by_certificate: false });
        };
        let key = cookie(&parts.headers, COOKIE)
            .and_then(|hexed| hex::decode(hexed).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((key, caller)) = key.and_then(|key| keys.authenticate(&key).map(|caller| (key, caller))) {
            if !caller.is_admin() {
                return Err(ConsoleError::Domain(crate::service::Error::PermissionDenied(
                    "the console needs an admin key",
                )));
            }
            return Ok(Admin { caller: Caller::clone(&caller), csrf: csrf_token(&key), by_certificate: false });
        }
        let certificate = parts.extensions.get::<ClientCertificate>().ok_or(ConsoleError::SignIn { page })?;
        let caller = keys.authenticate_certificate(&certificate.0).ok_or(ConsoleError::SignIn { page })?;
        if !caller.is_admin() {
            return Err(ConsoleError::Domain(crate::service::Error::PermissionDenied(
                "the console needs an admin key or an admin's client certificate",
            )));
        }
        let fingerprint = hex::encode(Sha256::digest(&certificate.0));
        Ok(Admin {
            caller: Caller::clone(&caller),
            csrf: csrf_token(&format!("certificate:{fingerprint}")),
            by_certificate: true,
        })
    }
}

impl<S> OptionalFromRequestParts<S> for Admin
where
    ConsoleState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(<Admin as FromRequestParts<S>>::from_request_parts(parts, state).await.ok())
    }
}

/// Requests a page's script makes (the live tail, events, figures), which
/// are answered 401 rather than sent to the sign-in form.
fn wants_data(headers: &HeaderMap, path: &str) -> bool {
    path.starts_with("/live/")
        || path == "/logs/follow"
        || headers.get(header::ACCEPT).is_some_and(|a| a == "text/event-stream")
}

/// The value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of the forms of whoever holds `key`.
fn csrf_token(key: &str) -> String {
    hex::encode(Sha256::new().chain_update("sessiond/console-csrf").chain_update(key).finalize())
}

/// Refuses a form posted from another site, or without `admin`'s token.
pub fn check_form(headers: &HeaderMap, uri: &Uri, admin: &Admin, token: &str) -> Result<(), ConsoleError> {
    same_origin(headers, uri)?;
    // A certificate's token is no secret: the browser must say the form is
    // this console's own.
    if admin.by_certificate && !headers.contains_key(header::ORIGIN) && !headers.contains_key("sec-fetch-site") {
        return Err(ConsoleError::Forged);
    }
    let expected = admin.csrf.as_bytes();
    if subtle::ConstantTimeEq::ct_eq(expected, token.as_bytes()).into() { Ok(()) } else { Err(ConsoleError::Forged) }
}

/// Refuses a request the browser marks as coming from another site
/// (`Sec-Fetch-Site`), or whose `Origin` is not this console's host (the
/// `Host` header, or over HTTP/2 the request's authority).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), ConsoleError> {
    if headers.get("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(ConsoleError::Forged);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if origin_host != host {
            return Err(ConsoleError::Forged);
        }
    }
    Ok(())
}

fn set_cookie(state: &ConsoleState, value: &str, max_age: Option<u32>) -> HeaderValue {
    let secure = if state.secure { "; Secure" } else { "" };
    let age = max_age.map(|age| format!("; Max-Age={age}")).unwrap_or_default();
    // Hex digits and the fixed attributes are always a valid header value.
    let value = hex::encode(value);
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
        .expect("hex digits and fixed attributes make a valid header value")
}

/// The sign-in form (or, signed in already or running open, the sessions).
pub async fn form(State(state): State<ConsoleState>, admin: Option<Admin>) -> Response {
    if admin.is_some() {
        return Redirect::to("/sessions").into_response();
    }
    page(&state, StatusCode::OK, None)
}

fn page(state: &ConsoleState, status: StatusCode, problem: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(problem) = problem {
            p.problem role="alert" { (problem) }
        }
        @if state.callers.current().keys().is_some() {
            form.signin method="post" action="/login" {
                label for="key" { "Admin API key" }
                input #key type="password" name="key" required autocomplete="current-password" autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint { "The key is kept in a cookie of this browser until you sign out or close it." }
        }
    };
    (status, layout::frame("Sign in", None, body)).into_response()
}

#[derive(Deserialize)]
pub struct SignIn {
    key: String,
}

/// Checks the key and keeps it in the cookie.
pub async fn sign_in(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<SignIn>,
) -> Response {
    if let Err(err) = same_origin(&headers, &uri) {
        return err.into_response();
    }
    let callers = state.callers.current();
    let Some(keys) = callers.keys() else { return Redirect::to("/sessions").into_response() };
    let key = form.key.trim();
    match keys.authenticate(key) {
        None => page(&state, StatusCode::UNAUTHORIZED, Some("unknown API key")),
        Some(caller) if !caller.is_admin() => {
            page(&state, StatusCode::FORBIDDEN, Some("the console needs an admin key"))
        }
        Some(caller) => {
            tracing::info!(key = %caller.name, tenant = %caller.tenant, "signed in to the console");
            let mut response = Redirect::to("/sessions").into_response();
            response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, key, None));
            response
        }
    }
}

#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Forgets the key.
pub async fn sign_out(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    uri: Uri,
    admin: Admin,
    Form(form): Form<SignOut>,
) -> Result<Response, ConsoleError> {
    check_form(&headers, &uri, &admin, &form.csrf)?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&state, "", Some(0)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; sessiond_console_key=sdk_x; b=2"));
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("sdk_x"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let admin = Admin { caller: Caller::open(), csrf: csrf_token("k"), by_certificate: false };
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("console.example:8080"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://console.example:8080"));
        assert!(check_form(&headers, &Uri::from_static("/logout"), &admin, &csrf_token("k")).is_ok());
        assert!(matches!(
            check_form(&headers, &Uri::from_static("/logout"), &admin, &csrf_token("other")),
            Err(ConsoleError::Forged)
        ));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(matches!(
            check_form(&headers, &Uri::from_static("/logout"), &admin, &csrf_token("k")),
            Err(ConsoleError::Forged)
        ));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(matches!(
            check_form(&headers, &Uri::from_static("/logout"), &admin, &csrf_token("k")),
            Err(ConsoleError::Forged)
        ));
    }
}

//! The web console: sessions, one session, logs, live events and headline
//! figures for operators, served on its own address (`--console-listen`).
//!
//! Pages are rendered on the server with maud, which escapes every value
//! it prints, so a log message or storage value holding HTML shows as
//! text. The console reads and writes through the domain [`Service`], as
//! the admin caller who signed in (`signin`): the same tenant, the same
//! checks and the same errors as the gRPC API, on either store and on
//! every replica sharing one. Every asset is embedded in the binary; the
//! pages' script only polls, follows events and inserts text.
//!
//! - `signin`: the sign-in form, the key cookie, the CSRF token;
//! - `layout`: the page frame and how times and durations are shown;
//! - `sessions`: the sessions table, one session, revoking;
//! - `logs`: log search and its live tail (FollowLogs);
//! - `live`: live events and headline figures.

mod layout;
mod live;
mod logs;
mod sessions;
mod signin;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::grpc::authn::SharedCallers;
use crate::reload::SharedTls;
use crate::service::Service;

/// What every handler of the console shares.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    service: Service,
    /// Who may sign in; `None`: sessiond runs open and so does the console.
    callers: SharedCallers,
    /// Whether the console is served over TLS (its cookies are then `Secure`).
    secure: bool,
}

impl ConsoleState {
    pub fn new(service: Service, callers: SharedCallers, secure: bool) -> Self {
        Self { service, callers, secure }
    }
}

/// The console's routes.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/sessions") }))
        .route("/login", get(signin::form).post(signin::sign_in))
        .route("/logout", post(signin::sign_out))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::show))
        .route("/sessions/{id}/revoke", get(sessions::confirm_revoke).post(sessions::revoke))
        .route("/logs", get(logs::search))
        .route("/logs/follow", get(logs::follow))
        .route("/live", get(live::page))
        .route("/live/events", get(live::events))
        .route("/live/figures", get(live::figures))
        .route("/assets/console.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/console.css"))))
        .route("/assets/console.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/console.js"))))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { layout::problem(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

/// How long a new TLS connection may take to finish its handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the console on `listener`, over TLS with `tls` (the gRPC
/// server's certificate, reloaded with it) when given, until dropped.
pub async fn serve(listener: TcpListener, state: ConsoleState, tls: Option<SharedTls>) {
    let app = router(state);
    let Some(tls) = tls else {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the console stopped serving");
        }
        return;
    };
    let mut connections = crate::connection::tls_incoming(listener, HANDSHAKE_TIMEOUT, tls);
    while let Some(connection) = tokio_stream::StreamExt::next(&mut connections).await {
        let Ok(stream) = connection else { continue };
        // The client certificate the handshake verified, if any, goes
        // with every request of the connection (`signin`).
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| signin::ClientCertificate(std::sync::Arc::from(leaf.as_ref())));
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                if let Some(certificate) = &certificate {
                    request.extensions_mut().insert(certificate.clone());
                }
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(app);
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // A client that goes away mid-answer is not worth a log line.
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// Headers on every answer: only the console's own scripts, styles and
/// forms; no framing; no caching of pages that show sessions.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A failed console request: a domain error shown as the gRPC API would
/// answer it (its code and message), or a refusal of the console's own.
#[derive(Debug)]
pub enum ConsoleError {
    Domain(crate::service::Error),
    /// Not signed in: pages send the browser to the sign-in form, other
    /// requests are answered 401.
    SignIn {
        page: bool,
    },
    /// A form without the right CSRF token, or posted from another site.
    Forged,
}

impl From<crate::service::Error> for ConsoleError {
    fn from(err: crate::service::Error) -> Self {
        Self::Domain(err)
    }
}

impl From<crate::domain::InvalidInput> for ConsoleError {
    fn from(err: crate::domain::InvalidInput) -> Self {
        Self::Domain(err.into())
    }
}

impl From<crate::domain::InvalidRequest> for ConsoleError {
    fn from(err: crate::domain::InvalidRequest) -> Self {
        Self::Domain(err.into())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::Domain(err) => {
                // The fields and what is wrong with each, as the API's
                // BadRequest detail says them.
                let fields: Vec<String> = match &err {
                    crate::service::Error::InvalidArgument(violations) => {
                        violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect()
                    }
                    _ => Vec::new(),
                };
                // The one mapping of domain errors: the same code and message
                // as the API, internal causes logged there and never shown.
                let status = tonic::Status::from(err);
                let http = match status.code() {
                    tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
                    tonic::Code::NotFound => StatusCode::NOT_FOUND,
                    tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                    tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
                    tonic::Code::FailedPrecondition | tonic::Code::Aborted => StatusCode::CONFLICT,
                    tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
                    tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                layout::problem_with(http, &format!("{:?}: {}", status.code(), status.message()), &fields)
            }
            Self::SignIn { page: true } => Redirect::to("/login").into_response(),
            Self::SignIn { page: false } => (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
            Self::Forged => layout::problem(
                StatusCode::FORBIDDEN,
                "the form was not sent from this console's own page; reload the page and try again",
            ),
        }
    }
}

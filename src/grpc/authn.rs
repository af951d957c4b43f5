//! Authentication at the edge: for every call to a sessiond service
//! (health and reflection stay open) `limits` turns the `authorization:
//! Bearer <key>` metadata — or, without one, a client certificate verified
//! by mutual TLS — into a [`Caller`] in the request's extensions, or
//! refuses the call as UNAUTHENTICATED, before the call is counted against
//! its caller's share (`fairness`). Handlers take the caller with
//! [`caller`].

use std::sync::Arc;

use tokio::time::Instant;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Request, Status};

use super::fairness::{Admitted, Fairness, FairnessLimits};
use crate::auth::{ApiKeys, Caller};
use crate::reload::Shared;

/// Who may call and how much: the keys in force (none: every caller is
/// [`Caller::open`]) and each caller's counters, replaced together when
/// the keys file is reloaded, so that a caller is always counted by the
/// keys that recognised it.
#[derive(Debug)]
pub struct Callers {
    keys: Option<ApiKeys>,
    fairness: Fairness,
    /// The one caller of an open server, shared by its calls.
    open: Arc<Caller>,
}

/// The callers in force, shared by every call and replaced by a reload.
pub type SharedCallers = Shared<Callers>;

impl Callers {
    pub fn new(keys: Option<ApiKeys>, limits: FairnessLimits) -> Self {
        let fairness = Fairness::new(keys.as_ref(), limits);
        Self { keys, fairness, open: Arc::new(Caller::open()) }
    }

    /// The callers of a reloaded keys file: keys and tenants it keeps keep
    /// their counters (`Fairness::renewed`).
    pub fn reloaded(&self, keys: ApiKeys) -> Self {
        Self { fairness: self.fairness.renewed(Some(&keys)), keys: Some(keys), open: self.open.clone() }
    }

    /// The caller of a request with these headers and extensions (where
    /// the server puts the connection's TLS details).
    pub fn caller_of(&self, headers: &http::HeaderMap, extensions: &http::Extensions) -> Result<Arc<Caller>, Status> {
        let Some(keys) = &self.keys else { return Ok(self.open.clone()) };
        if let Some(authorization) = headers.get(http::header::AUTHORIZATION) {
            return keys
                .authenticate(bearer(authorization)?)
                .ok_or_else(|| unauthenticated("unknown API key", API_KEY_INVALID));
        }
        let certificates = extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(TlsConnectInfo::peer_certs);
        match certificates {
            Some(chain) => chain.first().and_then(|leaf| keys.authenticate_certificate(leaf)).ok_or_else(|| {
                unauthenticated("the client certificate is not configured for any tenant", CLIENT_CERTIFICATE_UNKNOWN)
            }),
            None => Err(unauthenticated("an API key is required: authorization: Bearer <key>", API_KEY_MISSING)),
        }
    }

    /// The keys in force; `None` when the server runs open.
    pub fn keys(&self) -> Option<&ApiKeys> {
        self.keys.as_ref()
    }

    /// Admits a call of `caller` within its key's and its tenant's share;
    /// a server stream (`stream`) also within its key's streams.
    pub fn admit(&self, caller: &Caller, now: Instant, stream: bool) -> Result<Admitted, Status> {
        self.fairness.admit(caller, now, stream)
    }
}

/// The ErrorInfo reasons of a caller's own credentials failing, apart from
/// Authenticate's reasons for a user's token.
const API_KEY_MISSING: &str = "API_KEY_MISSING";
const API_KEY_INVALID: &str = "API_KEY_INVALID";
const CLIENT_CERTIFICATE_UNKNOWN: &str = "CLIENT_CERTIFICATE_UNKNOWN";

fn unauthenticated(why: &str, reason: &str) -> Status {
    // The message says what was wrong with the credentials, never echoes them.
    super::status::unauthenticated(why, reason, Default::default())
}

/// The key in an `authorization` header's value.
fn bearer(value: &http::HeaderValue) -> Result<&str, Status> {
    let value =
        value.to_str().map_err(|_| unauthenticated("the authorization metadata is not text", API_KEY_INVALID))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| unauthenticated("the authorization metadata must be: Bearer <key>", API_KEY_INVALID))
}

/// The caller `limits` authenticated, shared with the request: handlers
/// pass it on as `&Caller`.
pub fn caller<T>(request: &Request<T>) -> Result<Arc<Caller>, Status> {
    // Every call to a sessiond service is authenticated by `limits`: a
    // request without a caller means a route was added outside it.
    request.extensions().get::<Arc<Caller>>().cloned().ok_or_else(|| Status::internal("internal error"))
}

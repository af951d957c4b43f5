//! Authentication at the edge: an interceptor in front of the sessiond
//! services (health and reflection stay open) turns the `authorization:
//! Bearer <key>` metadata — or, without one, a client certificate verified
//! by mutual TLS — into a [`Caller`] in the request's extensions, or
//! refuses the call as UNAUTHENTICATED. Handlers take the caller with
//! [`caller`].

use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::reload::SharedKeys;

/// The interceptor. Without keys, every caller is [`Caller::open`]; with
/// them, each call meets the keys in force when it arrives.
#[derive(Debug, Clone)]
pub struct Authenticate {
    keys: Option<SharedKeys>,
}

impl Authenticate {
    pub fn new(keys: Option<SharedKeys>) -> Self {
        Self { keys }
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

fn bearer(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| unauthenticated("an API key is required: authorization: Bearer <key>", API_KEY_MISSING))?;
    let value =
        value.to_str().map_err(|_| unauthenticated("the authorization metadata is not text", API_KEY_INVALID))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| unauthenticated("the authorization metadata must be: Bearer <key>", API_KEY_INVALID))
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let keys = self.keys.as_ref().map(SharedKeys::current);
        let caller = match &keys {
            None => Caller::open(),
            Some(keys) if request.metadata().contains_key("authorization") => keys
                .authenticate(bearer(request.metadata())?)
                .ok_or_else(|| unauthenticated("unknown API key", API_KEY_INVALID))?,
            Some(keys) => match request.peer_certs() {
                Some(chain) => chain.first().and_then(|leaf| keys.authenticate_certificate(leaf)).ok_or_else(|| {
                    unauthenticated(
                        "the client certificate is not configured for any tenant",
                        CLIENT_CERTIFICATE_UNKNOWN,
                    )
                })?,
                None => {
                    return Err(unauthenticated("an API key is required: authorization: Bearer <key>", API_KEY_MISSING));
                }
            },
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The caller the interceptor authenticated.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    // Every sessiond service is wrapped by `Authenticate`: a request without
    // a caller means a route was added without it.
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::internal("internal error"))
}

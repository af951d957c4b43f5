//! `sessiond.v1.SessionService`.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, optional, parse_kind, parse_ref};
use super::{pb, status};
use crate::domain::{EventFilter, InvalidInput, RequestId, SessionId, Token, Violations, all};
use crate::service::lifecycle::{Authenticated, CreateSession, ListQuery, RevokeFilter};
use crate::service::watch::WatchFrom;
use crate::service::{Service, SessionRef, committing};

#[derive(Debug)]
pub struct SessionsApi {
    service: Service,
}

impl SessionsApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

/// Page tokens are `<created_at>.<session id>` of the last session answered.
fn parse_page_token(token: &str) -> Result<Option<(crate::clock::UnixMillis, SessionId)>, InvalidInput> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || InvalidInput::new("page_token", "must be a next_page_token from an earlier answer");
    let (at, id) = token.split_once('.').ok_or_else(invalid)?;
    let at = at.parse::<i64>().map_err(|_| invalid())?;
    let id = SessionId::parse(id, "page_token").map_err(|_| invalid())?;
    Ok(Some((crate::clock::UnixMillis(at), id)))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSessionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::session_service_server::SessionService for SessionsApi {
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let caller = caller(&request)?;
        let pb::CreateSessionRequest {
            kind,
            user_id,
            labels,
            idle_timeout,
            lifetime,
            privileges,
            roles,
            storage,
            trusted,
            request_id,
        } = request.into_inner();
        let limits = &self.service.config().limits;
        let mut v = Violations::default();
        let kind = v.check(parse_kind(kind, "kind", true)).flatten();
        v.text(&user_id, "user_id", limits.max_text_bytes);
        let labels = convert::parse_labels(labels, limits.max_text_bytes, &mut v);
        let idle_timeout = v.check(convert::parse_timeout(idle_timeout, "idle_timeout", limits.max_timeout));
        let lifetime = v.check(convert::parse_timeout(lifetime, "lifetime", limits.max_timeout));
        if trusted && kind.is_some_and(|k| !k.may_be_trusted()) {
            v.push(InvalidInput::new("trusted", "only stored_procedure and standalone sessions may be trusted"));
        }
        let grants = self.service.roles().grants(&privileges, &roles, limits.max_names_per_request, &mut v);
        let storage = convert::parse_storage(storage, "storage", &limits.storage, &mut v);
        let request_id = v.check(RequestId::parse_optional(request_id, "request_id"));
        let request = v.finish(all(|| {
            Some(CreateSession {
                kind: kind?,
                user_id: optional(user_id),
                labels,
                idle_timeout: idle_timeout?,
                lifetime: lifetime?,
                grants,
                storage,
                trusted,
                request_id: request_id?,
            })
        }))?;
        let (created, sequence) = committing(self.service.create(&caller, request)).await;
        let created = created?;
        Ok(Response::new(pb::CreateSessionResponse {
            token: created.token.expose().to_owned(),
            session: Some(convert::session(created.session)),
            sequence,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let caller = caller(&request)?;
        let pb::GetSessionRequest { session } = request.into_inner();
        let opened = self.service.get(&caller, &parse_ref(session, "session")?).await?;
        Ok(Response::new(pb::GetSessionResponse { session: Some(convert::open_session(opened)) }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let caller = caller(&request)?;
        let pb::AuthenticateRequest { token, privileges, min_sequence } = request.into_inner();
        // A token the user cannot sign in with is the caller's one answer
        // for "sign in again", not a bad request.
        if token.is_empty() {
            return Err(status::unauthenticated("a session token is required", "TOKEN_MISSING", Default::default()));
        }
        let Ok(token) = Token::parse_owned(token, "token") else {
            return Err(status::unauthenticated(
                "the token is not a session token as answered by CreateSession",
                "TOKEN_MALFORMED",
                Default::default(),
            ));
        };
        let mut v = Violations::default();
        let max = self.service.config().limits.max_names_per_request;
        let privileges = self.service.roles().privileges(privileges, "privileges", max, &mut v);
        v.finish(Some(()))?;
        let session = SessionRef::token(token).with_min_sequence(min_sequence);
        let Authenticated { record, expires_at, held } =
            self.service.authenticate(&caller, &session, &privileges).await.map_err(status::sign_in_again)?;
        Ok(Response::new(pb::AuthenticateResponse {
            session_id: record.id().as_str().to_owned(),
            user_id: record.user_id().unwrap_or_default().to_owned(),
            tenant: record.tenant().to_owned(),
            kind: pb::SessionKind::from(record.kind()).into(),
            roles: record.roles(),
            expires_at: expires_at.map(convert::timestamp),
            all_granted: held.iter().all(|h| *h),
            granted: held,
            trusted: record.trusted(),
        }))
    }

    async fn touch_session(
        &self,
        request: Request<pb::TouchSessionRequest>,
    ) -> Result<Response<pb::TouchSessionResponse>, Status> {
        let caller = caller(&request)?;
        let pb::TouchSessionRequest { session } = request.into_inner();
        let expires_at = self.service.touch(&caller, &parse_ref(session, "session")?).await?;
        Ok(Response::new(pb::TouchSessionResponse { expires_at: expires_at.map(convert::timestamp) }))
    }

    async fn close_session(
        &self,
        request: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let caller = caller(&request)?;
        let pb::CloseSessionRequest { session, error, stack_trace } = request.into_inner();
        let limits = &self.service.config().limits;
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        v.text(&error, "error", limits.max_text_bytes);
        v.text(&stack_trace, "stack_trace", limits.max_log_message_bytes);
        let session = v.finish(session)?;
        // No sequence is answered: closing again answers exactly as the
        // first close did, and only that one recorded an event.
        let closed = self.service.close(&caller, &session, optional(error), optional(stack_trace)).await?;
        Ok(Response::new(pb::CloseSessionResponse {
            session_id: closed.session_id.as_str().to_owned(),
            log_id: closed.log_id.map(|id| id.as_str().to_owned()).unwrap_or_default(),
            end_reason: pb::EndReason::from(closed.end_reason).into(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListSessionsRequest { user_id, kind, state, page_size: size, page_token } = request.into_inner();
        let mut v = Violations::default();
        let open = match pb::SessionState::try_from(state) {
            Ok(pb::SessionState::Unspecified) => Some(None),
            Ok(pb::SessionState::Open) => Some(Some(true)),
            Ok(pb::SessionState::Ended) => Some(Some(false)),
            Err(_) => v.check(Err(InvalidInput::new("state", "must be a session state"))),
        };
        v.text(&user_id, "user_id", self.service.config().limits.max_text_bytes);
        let kind = v.check(parse_kind(kind, "kind", false));
        let page_size = v.check(convert::page_size(size));
        let after = v.check(parse_page_token(&page_token));
        let query = v.finish(all(|| {
            Some(ListQuery {
                user_id: optional(user_id),
                kind: kind?,
                open: open?,
                page_size: page_size?,
                after: after?,
            })
        }))?;
        let page = self.service.list(&caller, query).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.items.into_iter().map(convert::session).collect(),
            next_page_token: page.next.map(|(at, id)| format!("{}.{id}", at.0)).unwrap_or_default(),
        }))
    }

    async fn revoke_sessions(
        &self,
        request: Request<pb::RevokeSessionsRequest>,
    ) -> Result<Response<pb::RevokeSessionsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::RevokeSessionsRequest { user_id, kind, session_ids } = request.into_inner();
        let limits = &self.service.config().limits;
        let mut v = Violations::default();
        v.text(&user_id, "user_id", limits.max_text_bytes);
        let kind = v.check(parse_kind(kind, "kind", false));
        let session_ids: Vec<SessionId> = if v.count(session_ids.len(), "session_ids", limits.max_ids_per_request) {
            let parse = |(i, id): (usize, &String)| SessionId::parse(id, &format!("session_ids[{i}]"));
            session_ids.iter().enumerate().filter_map(|item| v.check(parse(item))).collect()
        } else {
            Vec::new()
        };
        let filter = v.finish(all(|| Some(RevokeFilter { user_id: optional(user_id), kind: kind?, session_ids })))?;
        let (revoked, sequence) = committing(self.service.revoke(&caller, filter)).await;
        Ok(Response::new(pb::RevokeSessionsResponse {
            session_ids: revoked?.iter().map(|id| id.as_str().to_owned()).collect(),
            sequence,
        }))
    }

    type WatchSessionsStream = EventStream;

    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let caller = caller(&request)?;
        let pb::WatchSessionsRequest { session_id, user_id, kind, after_sequence } = request.into_inner();
        let mut v = Violations::default();
        let session_id = v.check(optional(session_id).map(|id| SessionId::parse(&id, "session_id")).transpose());
        v.text(&user_id, "user_id", self.service.config().limits.max_text_bytes);
        let kind = v.check(parse_kind(kind, "kind", false));
        let filter = v.finish(all(|| {
            Some(EventFilter { tenant: None, session_id: session_id?, user_id: optional(user_id), kind: kind? })
        }))?;
        let from = after_sequence.map_or(WatchFrom::Now, WatchFrom::After);
        let events = self.service.watch(&caller, filter, from).await?;
        let stream = ReceiverStream::new(events).map(|item| item.map(convert::event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

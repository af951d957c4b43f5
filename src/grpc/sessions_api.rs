//! `sessiond.v1.SessionService`.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

use super::authn::caller;
use super::convert::{self, optional, parse_kind, parse_ref};
use super::pb;
use crate::domain::{EventFilter, InvalidInput, RequestId, SessionId};
use crate::service::Service;
use crate::service::lifecycle::{CreateSession, ListQuery, RevokeFilter};
use crate::service::watch::WatchFrom;

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
        let mut violations = Vec::new();
        let kind = parse_kind(kind, "kind", true).map_err(|v| violations.push(v)).ok().flatten();
        let idle_timeout = convert::parse_timeout(idle_timeout, "idle_timeout").map_err(|v| violations.push(v)).ok();
        let lifetime = convert::parse_timeout(lifetime, "lifetime").map_err(|v| violations.push(v)).ok();
        let storage = match convert::parse_storage(storage, "storage") {
            Ok(storage) => Some(storage),
            Err(crate::domain::Error::InvalidArgument(mut more)) => {
                violations.append(&mut more);
                None
            }
            Err(other) => return Err(other.into()),
        };
        let request_id = RequestId::parse_optional(request_id, "request_id").map_err(|v| violations.push(v)).ok();
        let (Some(kind), Some(idle_timeout), Some(lifetime), Some(storage), Some(request_id), true) =
            (kind, idle_timeout, lifetime, storage, request_id, violations.is_empty())
        else {
            return Err(crate::domain::Error::InvalidArgument(violations).into());
        };
        let created = self
            .service
            .create(
                &caller,
                CreateSession {
                    kind,
                    user_id: optional(user_id),
                    labels: convert::parse_labels(labels),
                    idle_timeout,
                    lifetime,
                    privileges,
                    roles,
                    storage,
                    trusted,
                    request_id,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateSessionResponse {
            token: created.token.expose().to_owned(),
            session: Some(convert::session(created.session)),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let caller = caller(&request)?;
        let pb::GetSessionRequest { session } = request.into_inner();
        let status = self.service.get(&caller, &parse_ref(session, "session")?).await?;
        Ok(Response::new(pb::GetSessionResponse { session: Some(convert::session(status)) }))
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
        let closed = self
            .service
            .close(&caller, &parse_ref(session, "session")?, optional(error), optional(stack_trace))
            .await?;
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
        let open = match pb::SessionState::try_from(state) {
            Ok(pb::SessionState::Unspecified) => None,
            Ok(pb::SessionState::Open) => Some(true),
            Ok(pb::SessionState::Ended) => Some(false),
            Err(_) => {
                return Err(crate::domain::Error::from(InvalidInput::new("state", "must be a session state")).into());
            }
        };
        let query = ListQuery {
            user_id: optional(user_id),
            kind: parse_kind(kind, "kind", false)?,
            open,
            page_size: convert::page_size(size)?,
            after: parse_page_token(&page_token)?,
        };
        let wanted = query.page_size.min(self.service.config().limits.max_page_size);
        let sessions = self.service.list(&caller, query).await?;
        let next_page_token = match sessions.last() {
            Some(last) if sessions.len() == wanted => format!("{}.{}", last.session.created_at.0, last.session.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(convert::session).collect(),
            next_page_token,
        }))
    }

    async fn revoke_sessions(
        &self,
        request: Request<pb::RevokeSessionsRequest>,
    ) -> Result<Response<pb::RevokeSessionsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::RevokeSessionsRequest { user_id, kind, session_ids } = request.into_inner();
        let session_ids = session_ids
            .iter()
            .enumerate()
            .map(|(i, id)| SessionId::parse(id, &format!("session_ids[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = RevokeFilter { user_id: optional(user_id), kind: parse_kind(kind, "kind", false)?, session_ids };
        let revoked = self.service.revoke(&caller, filter).await?;
        Ok(Response::new(pb::RevokeSessionsResponse {
            session_ids: revoked.iter().map(|id| id.as_str().to_owned()).collect(),
        }))
    }

    type WatchSessionsStream = EventStream;

    async fn watch_sessions(
        &self,
        request: Request<pb::WatchSessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        let caller = caller(&request)?;
        let pb::WatchSessionsRequest { session_id, user_id, kind, after_sequence } = request.into_inner();
        let filter = EventFilter {
            tenant: None,
            session_id: optional(session_id).map(|id| SessionId::parse(&id, "session_id")).transpose()?,
            user_id: optional(user_id),
            kind: parse_kind(kind, "kind", false)?,
        };
        let from = after_sequence.map_or(WatchFrom::Now, WatchFrom::After);
        let events = self.service.watch(&caller, filter, from).await?;
        let stream = ReceiverStream::new(events).map(|item| item.map(convert::event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

//! `sessiond.v1.LogService`.

use tonic::{Request, Response, Status, Streaming};

use super::authn::caller;
use super::convert::{self, optional, parse_kind, parse_level, parse_ref};
use super::pb;
use crate::domain::{InvalidInput, LogEntry, LogQuery, SessionId, Violations, all};
use crate::service::Limits;
use crate::service::{Service, SessionKey, SessionRef};

#[derive(Debug)]
pub struct LogsApi {
    service: Service,
}

impl LogsApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

/// Entries from the wire, at least one and at most `--log-max-entries`,
/// each named `entries[i]`; the service stamps `logged_at` when it stores
/// them.
fn parse_entries(entries: Vec<pb::LogEntry>, limits: &Limits, v: &mut Violations) -> Vec<LogEntry> {
    if entries.is_empty() {
        v.push(InvalidInput::new("entries", "name at least one entry"));
    }
    if !v.count(entries.len(), "entries", limits.max_log_entries_per_call) {
        return Vec::new();
    }
    let max = limits.max_log_message_bytes;
    let mut parsed = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let pb::LogEntry { level, message, exception, stack_trace, client_time } = entry;
        let level = v.check(parse_level(level, &format!("entries[{i}].level"), true)).flatten();
        let client_time = v.check(
            client_time.map(|t| convert::parse_client_time(&t, &format!("entries[{i}].client_time"))).transpose(),
        );
        for (field, text) in [("message", &message), ("exception", &exception), ("stack_trace", &stack_trace)] {
            v.text(text, &format!("entries[{i}].{field}"), max);
        }
        if let (Some(level), Some(client_time)) = (level, client_time) {
            parsed.push(LogEntry {
                level,
                message,
                exception: optional(exception),
                stack_trace: optional(stack_trace),
                client_time,
                logged_at: crate::clock::UnixMillis::default(),
            });
        }
    }
    parsed
}

#[tonic::async_trait]
impl pb::log_service_server::LogService for LogsApi {
    async fn log(&self, request: Request<pb::LogRequest>) -> Result<Response<pb::LogResponse>, Status> {
        let caller = caller(&request)?;
        let pb::LogRequest { session, entries } = request.into_inner();
        let mut v = Violations::default();
        let session = v.check(parse_ref(session, "session"));
        let entries = parse_entries(entries, &self.service.config().limits, &mut v);
        let session = v.finish(session)?;
        let accepted = self.service.log(&caller, &session, entries).await?;
        Ok(Response::new(pb::LogResponse { accepted: accepted as u32 }))
    }

    /// Each batch is stored as it arrives, so the answer at the end of the
    /// stream means every batch is durable.
    async fn stream_log(
        &self,
        request: Request<Streaming<pb::StreamLogRequest>>,
    ) -> Result<Response<pb::StreamLogResponse>, Status> {
        let caller = caller(&request)?;
        let mut stream = request.into_inner();
        // The session the stream writes to, by id once the first message
        // named it (by token or id); later messages may name it again.
        let mut target: Option<SessionRef> = None;
        let mut accepted = 0usize;
        while let Some(message) = stream.message().await? {
            let pb::StreamLogRequest { session, entries } = message;
            let mut v = Violations::default();
            let named = v.check(session.map(|s| parse_ref(Some(s), "session")).transpose());
            // A message may only name the session, without entries.
            let entries = if entries.is_empty() {
                Vec::new()
            } else {
                parse_entries(entries, &self.service.config().limits, &mut v)
            };
            let named = v.finish(named)?;
            let session = match (&target, named) {
                (None, Some(named)) => {
                    target.insert(SessionRef::id(self.service.get(&caller, &named).await?.session.id))
                }
                (None, None) => {
                    return Err(InvalidInput::new("session", "the first message must name the session").into());
                }
                (Some(SessionRef { key: SessionKey::Id(current), .. }), Some(named))
                    if self.service.get(&caller, &named).await?.session.id != *current =>
                {
                    return Err(InvalidInput::new("session", "a stream may not switch sessions").into());
                }
                (Some(current), _) => current,
            };
            if entries.is_empty() {
                continue;
            }
            accepted += self.service.log(&caller, session, entries).await?;
        }
        if target.is_none() {
            return Err(InvalidInput::new("session", "the stream named no session").into());
        }
        Ok(Response::new(pb::StreamLogResponse { accepted: accepted as u32 }))
    }

    async fn query_logs(
        &self,
        request: Request<pb::QueryLogsRequest>,
    ) -> Result<Response<pb::QueryLogsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::QueryLogsRequest {
            session_id,
            user_id,
            kind,
            start_time,
            end_time,
            min_level,
            failed_only,
            slow_only,
            page_size,
            page_token,
        } = request.into_inner();
        let mut v = Violations::default();
        let limit = v.check(convert::page_size(page_size));
        let after_entry = match page_token.as_str() {
            "" => Some(0),
            token => v.check(
                token
                    .parse::<i64>()
                    .map_err(|_| InvalidInput::new("page_token", "must be a next_page_token from an earlier answer")),
            ),
        };
        let session_id = v.check(optional(session_id).map(|id| SessionId::parse(&id, "session_id")).transpose());
        v.text(&user_id, "user_id", self.service.config().limits.max_text_bytes);
        let kind = v.check(parse_kind(kind, "kind", false));
        let from = v.check(start_time.map(|t| convert::parse_timestamp(&t, "start_time")).transpose());
        let to = v.check(end_time.map(|t| convert::parse_timestamp(&t, "end_time")).transpose());
        let min_level = v.check(parse_level(min_level, "min_level", false));
        let query = v.finish(all(|| {
            Some(LogQuery {
                tenant: None,
                session_id: session_id?,
                user_id: optional(user_id),
                kind: kind?,
                from: from?,
                to: to?,
                min_level: min_level?,
                failed_only,
                slow_only,
                after_entry: after_entry?,
                limit: limit?,
            })
        }))?;
        let limit = query.limit;
        let wanted = limit.min(self.service.config().limits.max_page_size);
        let records = self.service.query_logs(&caller, query).await?;
        let next_page_token = match records.last() {
            Some(last) if records.len() == wanted => last.entry_id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::QueryLogsResponse {
            records: records.into_iter().map(convert::log_record).collect(),
            next_page_token,
        }))
    }
}

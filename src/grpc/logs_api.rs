//! `sessiond.v1.LogService`.

use tonic::{Request, Response, Status, Streaming};

use super::authn::caller;
use super::convert::{self, optional, parse_kind, parse_level, parse_ref};
use super::pb;
use super::status::with_stream_progress;
use crate::auth::Caller;
use crate::domain::{Error, InvalidInput, LogEntry, LogQuery, RequestId, SessionId, Violations, all};
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

/// A Log call's or StreamLog message's fields, parsed together so that
/// every invalid one is named.
struct Batch {
    /// Set when the message names a session.
    session: Option<SessionRef>,
    entries: Vec<LogEntry>,
    request_id: Option<RequestId>,
}

impl Batch {
    /// `entries_required`: a Log call needs entries; a StreamLog message
    /// may only name the session.
    fn parse(
        session: Option<Option<pb::SessionRef>>,
        entries: Vec<pb::LogEntry>,
        request_id: String,
        limits: &Limits,
        entries_required: bool,
    ) -> Result<Batch, Error> {
        let mut v = Violations::default();
        let session = v.check(session.map(|s| parse_ref(s, "session")).transpose());
        let entries = match entries.is_empty() && !entries_required {
            true => Vec::new(),
            false => parse_entries(entries, limits, &mut v),
        };
        let request_id = v.check(RequestId::parse_optional(request_id, "request_id"));
        let (session, request_id) = v.finish(all(|| Some((session?, request_id?))))?;
        Ok(Batch { session, entries, request_id })
    }
}

/// How much of a StreamLog is committed: whole messages, and the entries
/// they stored.
#[derive(Debug, Default)]
struct Progress {
    messages: usize,
    entries: usize,
}

impl LogsApi {
    /// Commits a StreamLog's messages one by one, counting them in
    /// `progress`.
    async fn consume(
        &self,
        caller: &Caller,
        mut stream: Streaming<pb::StreamLogRequest>,
        progress: &mut Progress,
    ) -> Result<(), Status> {
        let limits = &self.service.config().limits;
        // The session the stream writes to, by id once the first message
        // named it (by token or id); later messages may name it again.
        let mut target: Option<SessionRef> = None;
        while let Some(message) = stream.message().await? {
            let pb::StreamLogRequest { session, entries, request_id } = message;
            let Batch { session: named, entries, request_id } =
                Batch::parse(session.map(Some), entries, request_id, limits, false)?;
            let session = match (&target, named) {
                (None, Some(named)) => target.insert(SessionRef::id(self.service.log_target(caller, &named).await?)),
                (None, None) => {
                    return Err(InvalidInput::new("session", "the first message must name the session").into());
                }
                (Some(SessionRef { key: SessionKey::Id(current), .. }), Some(named))
                    if self.service.log_target(caller, &named).await? != *current =>
                {
                    return Err(InvalidInput::new("session", "a stream may not switch sessions").into());
                }
                (Some(current), _) => current,
            };
            if !entries.is_empty() {
                progress.entries += self.service.log(caller, session, entries, request_id.as_ref()).await?;
            }
            progress.messages += 1;
        }
        if target.is_none() {
            return Err(InvalidInput::new("session", "the stream named no session").into());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::log_service_server::LogService for LogsApi {
    async fn log(&self, request: Request<pb::LogRequest>) -> Result<Response<pb::LogResponse>, Status> {
        let caller = caller(&request)?;
        let pb::LogRequest { session, entries, request_id } = request.into_inner();
        let limits = &self.service.config().limits;
        let Batch { session, entries, request_id } = Batch::parse(Some(session), entries, request_id, limits, true)?;
        // Parsing `Some` answers a session or a violation naming it.
        let session = session.ok_or_else(|| InvalidInput::new("session", "name a session by token or session_id"))?;
        let accepted = self.service.log(&caller, &session, entries, request_id.as_ref()).await?;
        Ok(Response::new(pb::LogResponse { accepted: accepted as u32 }))
    }

    /// Each message is validated whole, then committed before the next is
    /// read. A refusal leaves the messages before it committed and says how
    /// many (see [`with_stream_progress`]).
    async fn stream_log(
        &self,
        request: Request<Streaming<pb::StreamLogRequest>>,
    ) -> Result<Response<pb::StreamLogResponse>, Status> {
        let caller = caller(&request)?;
        let mut progress = Progress::default();
        match self.consume(&caller, request.into_inner(), &mut progress).await {
            Ok(()) => Ok(Response::new(pb::StreamLogResponse { accepted: progress.entries as u32 })),
            Err(refused) => Err(with_stream_progress(refused, progress.messages, progress.entries)),
        }
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

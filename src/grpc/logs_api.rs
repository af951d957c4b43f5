//! `sessiond.v1.LogService`.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use super::authn::caller;
use super::convert::{self, optional, parse_kind, parse_level, parse_ref};
use super::pb;
use super::status::with_stream_progress;
use crate::auth::Caller;
use crate::domain::{InvalidInput, LogCursor, LogEntry, LogQuery, RequestId, SessionId, Violations, all};
use crate::service::Error;
use crate::service::Limits;
use crate::service::logs::{LogBatch, LogStream, LogsPage};
use crate::service::{Service, SessionRef};

#[derive(Debug)]
pub struct LogsApi {
    service: Service,
}

impl LogsApi {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

/// Entries from the wire, at least one and at most `--session-log-max-entries`,
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
                continuous: false,
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
        let mut bound = LogStream::default();
        while let Some(message) = stream.message().await? {
            let pb::StreamLogRequest { session, entries, request_id } = message;
            let Batch { session: named, entries, request_id } =
                Batch::parse(session.map(Some), entries, request_id, limits, false)?;
            let session = self.service.stream_log_target(caller, &mut bound, named.as_ref()).await?;
            if !entries.is_empty() {
                progress.entries += self.service.log(caller, session, entries, request_id.as_ref()).await?;
            }
            progress.messages += 1;
        }
        bound.finish()?;
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
            endpoint,
        } = request.into_inner();
        let mut v = Violations::default();
        let limit = v.check(convert::page_size(page_size));
        let after = v.check(parse_cursor(&page_token, "page_token")).map(Option::unwrap_or_default);
        let filters =
            Filters { session_id, user_id, kind, start_time, end_time, min_level, failed_only, slow_only, endpoint };
        let query = filters.parse(&self.service, &mut v);
        let query = v.finish(all(|| Some(LogQuery { after: after?, limit: limit?, ..query? })))?;
        let LogsPage { page, cursor } = self.service.query_logs(&caller, query).await?;
        Ok(Response::new(pb::QueryLogsResponse {
            records: page.items.into_iter().map(convert::log_record).collect(),
            next_page_token: page.next.map(|next| next.encode()).unwrap_or_default(),
            cursor: cursor.encode(),
        }))
    }

    type FollowLogsStream = Pin<Box<dyn Stream<Item = Result<pb::FollowLogsResponse, Status>> + Send>>;

    async fn follow_logs(
        &self,
        request: Request<pb::FollowLogsRequest>,
    ) -> Result<Response<Self::FollowLogsStream>, Status> {
        let caller = caller(&request)?;
        let pb::FollowLogsRequest {
            session_id,
            user_id,
            kind,
            start_time,
            end_time,
            min_level,
            failed_only,
            slow_only,
            cursor,
            endpoint,
        } = request.into_inner();
        let mut v = Violations::default();
        let from = v.check(parse_cursor(&cursor, "cursor"));
        let filters =
            Filters { session_id, user_id, kind, start_time, end_time, min_level, failed_only, slow_only, endpoint };
        let query = filters.parse(&self.service, &mut v);
        let (query, from) = v.finish(all(|| Some((query?, from?))))?;
        let batches = self.service.follow_logs(&caller, query, from).await?;
        let stream = ReceiverStream::new(batches).map(|batch| {
            let LogBatch { records, cursor } = batch?;
            Ok(pb::FollowLogsResponse {
                records: records.into_iter().map(convert::log_record).collect(),
                cursor: cursor.encode(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A cursor from an earlier answer; `None` when not given.
fn parse_cursor(text: &str, field: &str) -> Result<Option<LogCursor>, InvalidInput> {
    match text {
        "" => Ok(None),
        text => LogCursor::decode(text)
            .map(Some)
            .ok_or_else(|| InvalidInput::new(field, "must be a cursor or next_page_token from an earlier answer")),
    }
}

/// The filters QueryLogs and FollowLogs share: fields 1 to 8 of both, and
/// `endpoint`.
struct Filters {
    session_id: String,
    user_id: String,
    kind: i32,
    start_time: Option<prost_types::Timestamp>,
    end_time: Option<prost_types::Timestamp>,
    min_level: i32,
    failed_only: bool,
    slow_only: bool,
    endpoint: String,
}

impl Filters {
    /// The query they make (cursor and limit unset), each invalid filter
    /// named in `v`.
    fn parse(self, service: &Service, v: &mut Violations) -> Option<LogQuery> {
        let Filters { session_id, user_id, kind, start_time, end_time, min_level, failed_only, slow_only, endpoint } =
            self;
        let session_id = v.check(optional(session_id).map(|id| SessionId::parse(&id, "session_id")).transpose());
        v.text(&user_id, "user_id", service.config().limits.max_text_bytes);
        v.text(&endpoint, "endpoint", service.config().limits.max_text_bytes);
        let kind = v.check(parse_kind(kind, "kind", false));
        let from = v.check(start_time.map(|t| convert::parse_timestamp(&t, "start_time")).transpose());
        let to = v.check(end_time.map(|t| convert::parse_timestamp(&t, "end_time")).transpose());
        if let (Some(Some(from)), Some(Some(to))) = (from, to)
            && to < from
        {
            v.push(InvalidInput::new("end_time", "must not be before start_time"));
        }
        let min_level = v.check(parse_level(min_level, "min_level", false));
        Some(LogQuery {
            tenant: None,
            session_id: session_id?,
            user_id: optional(user_id),
            kind: kind?,
            endpoint: optional(endpoint),
            from: from?,
            to: to?,
            min_level: min_level?,
            failed_only,
            slow_only,
            after: LogCursor::default(),
            limit: 0,
        })
    }
}

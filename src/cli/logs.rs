//! `sessiond logs query|tail`: QueryLogs, every page (or up to
//! `--limit`); and a tail that follows the entries that become readable
//! from its start on with FollowLogs, until interrupted. A follow that is
//! cut (sessiond restarting, a connection reaching its age) is resumed
//! after its last cursor, so no entry is missed or printed twice.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Failure;
use super::connect::{Client, ConnectArgs};
use super::output::{self, Format, Rows};
use crate::pb;
use crate::pb::log_service_client::LogServiceClient;
use crate::settings::Secret;

/// The page size asked of QueryLogs; sessiond caps it.
const PAGE_SIZE: i32 = 500;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum LogsCommand {
    /// Prints the log entries matching the filters, oldest first.
    Query {
        #[command(flatten)]
        filters: Filters,
        /// Entries logged at or after this time: RFC 3339, or a duration
        /// before now (`15m`).
        #[arg(long, value_parser = output::parse_time)]
        since: Option<prost_types::Timestamp>,
        /// Entries logged before this time (same forms as --since).
        #[arg(long, value_parser = output::parse_time)]
        until: Option<prost_types::Timestamp>,
        /// Print at most this many entries.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Follows the entries that become readable from now on and match
    /// the filters (FollowLogs), printing each as it comes, until
    /// interrupted.
    Tail {
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// QueryLogs' filters.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Only this session's entries (its public id).
    #[arg(long)]
    pub session: Option<String>,
    /// Only this user's sessions.
    #[arg(long)]
    pub user: Option<String>,
    /// Only sessions of this kind (`web_user`, …).
    #[arg(long, value_parser = output::parse_kind)]
    pub kind: Option<pb::SessionKind>,
    /// Only sessions serving this endpoint (their `labels.endpoint`,
    /// matched exactly).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only entries at or above this level (`debug`, `info`, `warning`,
    /// `error`, `fatal`).
    #[arg(long, value_parser = output::parse_level)]
    pub level: Option<pb::LogLevel>,
    /// Only sessions that failed.
    #[arg(long)]
    pub failed: bool,
    /// Only slow sessions.
    #[arg(long)]
    pub slow: bool,
}

/// How long a cut follow waits before resuming.
const RESUME_DELAY: Duration = Duration::from_secs(1);

impl Filters {
    fn follow_request(&self, cursor: String) -> pb::FollowLogsRequest {
        let query = self.request(None);
        pb::FollowLogsRequest {
            session_id: query.session_id,
            user_id: query.user_id,
            kind: query.kind,
            start_time: None,
            end_time: None,
            min_level: query.min_level,
            failed_only: query.failed_only,
            slow_only: query.slow_only,
            cursor,
            endpoint: query.endpoint,
        }
    }

    fn request(&self, start_time: Option<prost_types::Timestamp>) -> pb::QueryLogsRequest {
        pb::QueryLogsRequest {
            session_id: self.session.clone().unwrap_or_default(),
            user_id: self.user.clone().unwrap_or_default(),
            kind: self.kind.unwrap_or(pb::SessionKind::Unspecified).into(),
            start_time,
            end_time: None,
            min_level: self.level.unwrap_or(pb::LogLevel::Unspecified).into(),
            failed_only: self.failed,
            slow_only: self.slow,
            page_size: PAGE_SIZE,
            page_token: String::new(),
            endpoint: self.endpoint.clone().unwrap_or_default(),
        }
    }
}

const COLUMNS: [&str; 7] = ["logged_at", "level", "session_id", "user_id", "kind", "endpoint", "message"];

pub async fn run(command: LogsCommand, key: Option<Secret>) -> Result<(), Failure> {
    match command {
        LogsCommand::Query { filters, since, until, limit, connect } => {
            let client = connect.connect(key).await?;
            let mut request = filters.request(since);
            request.end_time = until;
            let mut rows = Rows::new(connect.output, &COLUMNS);
            let mut printed = 0;
            let mut pages = Pages::new(client, request);
            while let Some(page) = pages.next().await? {
                for record in page {
                    if limit.is_some_and(|limit| printed >= limit) {
                        return rows.finish();
                    }
                    rows.push(record_object(&record))?;
                    printed += 1;
                }
            }
            rows.finish()
        }
        LogsCommand::Tail { filters, connect } => {
            let client = connect.connect(key).await?;
            tail(client, filters, connect.output).await
        }
    }
}

/// QueryLogs' answers, page after page.
struct Pages {
    logs: LogServiceClient<Client>,
    request: pb::QueryLogsRequest,
    done: bool,
}

impl Pages {
    fn new(client: Client, request: pb::QueryLogsRequest) -> Self {
        Self { logs: LogServiceClient::new(client), request, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<pb::LogRecord>>, Failure> {
        if self.done {
            return Ok(None);
        }
        let page = self.logs.query_logs(self.request.clone()).await?.into_inner();
        self.done = page.next_page_token.is_empty();
        self.request.page_token = page.next_page_token;
        Ok(Some(page.records))
    }
}

/// Follows with FollowLogs from now on; resumes after the last cursor
/// when the stream ends or its connection breaks. The table's header is
/// printed once the follow has started: entries that become readable
/// after it are printed.
async fn tail(client: Client, filters: Filters, format: Format) -> Result<(), Failure> {
    let widths = [24, 7, 32, 12, 12, 12, 0];
    let mut logs = LogServiceClient::new(client);
    let mut cursor = String::new();
    let mut started = false;
    loop {
        let cut = match logs.follow_logs(filters.follow_request(cursor.clone())).await {
            Ok(stream) => {
                if !started && format == Format::Table {
                    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_uppercase()).collect();
                    output::text(&output::aligned(&header, &widths))?;
                }
                started = true;
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(answer)) => {
                            for record in &answer.records {
                                print_record(record, format, &widths)?;
                            }
                            cursor = answer.cursor;
                        }
                        Ok(None) => {
                            break Failure::Connect { address: "sessiond".into(), cause: "the follow ended".into() };
                        }
                        Err(status) => break Failure::from(status),
                    }
                }
            }
            Err(status) => Failure::from(status),
        };
        // Only a follow that has a place to resume from, cut by the
        // connection or by sessiond going away, is resumed.
        let resumable = !cursor.is_empty()
            && match &cut {
                Failure::Connect { .. } => true,
                Failure::Status(status) => {
                    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
                }
                _ => false,
            };
        if !resumable {
            return Err(cut);
        }
        eprintln!("sessiond: the follow was cut ({cut}); resuming");
        tokio::time::sleep(RESUME_DELAY).await;
    }
}

fn print_record(record: &pb::LogRecord, format: Format, widths: &[usize]) -> Result<(), Failure> {
    let object = record_object(record);
    match format {
        Format::Json => output::line(&Value::Object(object)),
        Format::Table => {
            let row: Vec<String> = COLUMNS.iter().map(|c| output::cell(object.get(*c))).collect();
            output::text(&output::aligned(&row, widths))
        }
    }
}

/// A log record as one JSON object: every field of the API's `LogRecord`.
fn record_object(r: &pb::LogRecord) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("logged_at".into(), output::time(r.logged_at.as_ref()));
    object.insert("level".into(), output::level_name(r.level).into());
    object.insert("session_id".into(), r.session_id.clone().into());
    object.insert("user_id".into(), r.user_id.clone().into());
    object.insert("kind".into(), output::kind_name(r.kind).into());
    object.insert("endpoint".into(), r.endpoint.clone().into());
    object.insert("message".into(), r.message.clone().into());
    object.insert("exception".into(), r.exception.clone().into());
    object.insert("stack_trace".into(), r.stack_trace.clone().into());
    object.insert("client_time".into(), output::time(r.client_time.as_ref()));
    object.insert("log_id".into(), r.log_id.clone().into());
    object.insert("sequence".into(), r.sequence.into());
    object
}

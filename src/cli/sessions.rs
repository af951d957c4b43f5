//! `sessiond sessions list|show|revoke`: ListSessions (every page),
//! GetSession with GetPrivileges, RevokeSessions — with `--dry-run`, which
//! counts the open sessions the same filters match and revokes nothing.

use serde_json::{Map, Value};

use super::Failure;
use super::connect::{Client, ConnectArgs};
use super::output::{self, Format, Rows};
use crate::pb;
use crate::pb::privilege_service_client::PrivilegeServiceClient;
use crate::pb::session_service_client::SessionServiceClient;
use crate::settings::Secret;

/// The page size asked of ListSessions; sessiond caps it.
const PAGE_SIZE: i32 = 500;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SessionsCommand {
    /// Lists sessions, newest first, every page (or up to --limit).
    List {
        #[command(flatten)]
        filters: Filters,
        /// `open` or `ended`; default: both.
        #[arg(long, value_parser = ["open", "ended"])]
        state: Option<String>,
        /// Print at most this many sessions.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Shows one session by its public id, with its privileges. Like every
    /// call naming a session, this counts as the session's activity.
    Show {
        /// The session's public id.
        session_id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revokes the open sessions matching every filter given (at least
    /// one); with --dry-run, counts them and revokes nothing.
    #[command(group = clap::ArgGroup::new("filter").multiple(true).required(true).args(["user", "kind", "session"]))]
    Revoke {
        #[command(flatten)]
        filters: Filters,
        /// Revoke only these sessions (public ids); may be repeated.
        #[arg(long = "session", value_name = "SESSION_ID")]
        session: Vec<String>,
        /// Count and list what would be revoked; revoke nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Filters of ListSessions and RevokeSessions.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Only this user's sessions.
    #[arg(long)]
    pub user: Option<String>,
    /// Only sessions of this kind (`web_user`, `method_call`, …).
    #[arg(long, value_parser = output::parse_kind)]
    pub kind: Option<pb::SessionKind>,
}

impl Filters {
    fn user(&self) -> String {
        self.user.clone().unwrap_or_default()
    }
    fn kind(&self) -> i32 {
        self.kind.unwrap_or(pb::SessionKind::Unspecified).into()
    }
}

const COLUMNS: [&str; 7] = ["session_id", "kind", "user_id", "state", "last_active_at", "expires_at", "end_reason"];

pub async fn run(command: SessionsCommand, key: Option<Secret>) -> Result<(), Failure> {
    match command {
        SessionsCommand::List { filters, state, limit, connect } => {
            let state = match state.as_deref() {
                Some("open") => pb::SessionState::Open,
                Some("ended") => pb::SessionState::Ended,
                _ => pb::SessionState::Unspecified,
            };
            let client = connect.connect(key).await?;
            let mut rows = Rows::new(connect.output, &COLUMNS);
            for session in list(client, &filters, state, limit).await? {
                rows.push(output::session(&session))?;
            }
            rows.finish()
        }
        SessionsCommand::Show { session_id, connect } => show(connect, key, session_id).await,
        SessionsCommand::Revoke { filters, session, dry_run, connect } => {
            revoke(connect, key, filters, session, dry_run).await
        }
    }
}

/// Every session the filters match, page after page, up to `limit`.
async fn list(
    client: Client,
    filters: &Filters,
    state: pb::SessionState,
    limit: Option<usize>,
) -> Result<Vec<pb::Session>, Failure> {
    let mut sessions_api = SessionServiceClient::new(client);
    let mut sessions = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListSessionsRequest {
            user_id: filters.user(),
            kind: filters.kind(),
            state: state.into(),
            page_size: PAGE_SIZE,
            page_token,
        };
        let page = sessions_api.list_sessions(request).await?.into_inner();
        sessions.extend(page.sessions);
        if let Some(limit) = limit.filter(|limit| sessions.len() >= *limit) {
            sessions.truncate(limit);
            return Ok(sessions);
        }
        if page.next_page_token.is_empty() {
            return Ok(sessions);
        }
        page_token = page.next_page_token;
    }
}

async fn show(connect: ConnectArgs, key: Option<Secret>, session_id: String) -> Result<(), Failure> {
    let client = connect.connect(key).await?;
    let reference =
        || Some(pb::SessionRef { r#ref: Some(pb::session_ref::Ref::SessionId(session_id.clone())), min_sequence: 0 });
    let session = SessionServiceClient::new(client.clone())
        .get_session(pb::GetSessionRequest { session: reference() })
        .await?
        .into_inner()
        .session
        .ok_or_else(|| Failure::Other("sessiond answered no session".into()))?;
    let mut object = output::session(&session);
    if session.state == i32::from(pb::SessionState::Open) {
        let privileges = PrivilegeServiceClient::new(client)
            .get_privileges(pb::GetPrivilegesRequest { session: reference() })
            .await?
            .into_inner();
        object.insert("roles".into(), privileges.roles.into());
        object.insert("privileges".into(), privileges.privileges.into());
        let promotions: Vec<Value> = privileges
            .promotions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "promotion_id": p.promotion_id,
                    "privilege": p.privilege,
                    "expires_at": output::time(p.expires_at.as_ref()),
                })
            })
            .collect();
        object.insert("promotions".into(), promotions.into());
    }
    match connect.output {
        Format::Json => output::line(&Value::Object(object)),
        Format::Table => {
            let width = object.keys().map(|k| k.len()).max().unwrap_or(0);
            for (field, value) in &object {
                let value = match (field.as_str(), value) {
                    ("promotions", Value::Array(items)) => items
                        .iter()
                        .map(|p| {
                            format!("{} until {}", output::cell(p.get("privilege")), output::cell(p.get("expires_at")))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => output::cell(Some(value)),
                };
                output::text(&output::aligned(&[field.clone(), value], &[width, 0]))?;
            }
            Ok(())
        }
    }
}

async fn revoke(
    connect: ConnectArgs,
    key: Option<Secret>,
    filters: Filters,
    session_ids: Vec<String>,
    dry_run: bool,
) -> Result<(), Failure> {
    let client = connect.connect(key).await?;
    let (ids, sequence) = if dry_run {
        let open = list(client, &filters, pb::SessionState::Open, None).await?;
        let ids: Vec<String> = open
            .into_iter()
            .map(|s| s.session_id)
            .filter(|id| session_ids.is_empty() || session_ids.contains(id))
            .collect();
        (ids, None)
    } else {
        let request = pb::RevokeSessionsRequest { user_id: filters.user(), kind: filters.kind(), session_ids };
        let answer = SessionServiceClient::new(client).revoke_sessions(request).await?.into_inner();
        (answer.session_ids, Some(answer.sequence))
    };
    match connect.output {
        Format::Json => {
            let mut object = Map::new();
            object.insert("dry_run".into(), dry_run.into());
            object.insert(if dry_run { "matching" } else { "revoked" }.into(), ids.len().into());
            object.insert("session_ids".into(), ids.into());
            if let Some(sequence) = sequence {
                object.insert("sequence".into(), sequence.into());
            }
            output::line(&Value::Object(object))
        }
        Format::Table => {
            for id in &ids {
                output::text(id)?;
            }
            let count = ids.len();
            let noun = if count == 1 { "session" } else { "sessions" };
            if dry_run {
                output::text(&format!("dry run: {count} open {noun} would be revoked"))
            } else {
                output::text(&format!("revoked {count} {noun}"))
            }
        }
    }
}

//! `sessiond events watch`: WatchSessions, one line per event as it
//! comes, until interrupted or the stream ends. `--after SEQ` resumes
//! after a sequence number seen before, missing nothing.

use serde_json::{Map, Value};

use super::Failure;
use super::connect::ConnectArgs;
use super::output::{self, Format};
use crate::pb;
use crate::pb::session_service_client::SessionServiceClient;
use crate::settings::Secret;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventsCommand {
    /// Prints session events as they happen, until interrupted.
    Watch {
        /// Only this session's events (its public id).
        #[arg(long)]
        session: Option<String>,
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Only sessions of this kind (`web_user`, …).
        #[arg(long, value_parser = output::parse_kind)]
        kind: Option<pb::SessionKind>,
        /// Replay the retained events after this sequence number first
        /// (0: every retained event); default: from now on.
        #[arg(long)]
        after: Option<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

const COLUMNS: [&str; 7] = ["sequence", "at", "type", "session_id", "user_id", "kind", "end_reason"];
const WIDTHS: [usize; 7] = [8, 24, 18, 26, 12, 12, 0];

pub async fn run(command: EventsCommand, key: Option<Secret>) -> Result<(), Failure> {
    let EventsCommand::Watch { session, user, kind, after, connect } = command;
    let client = connect.connect(key).await?;
    let request = pb::WatchSessionsRequest {
        session_id: session.unwrap_or_default(),
        user_id: user.unwrap_or_default(),
        kind: kind.unwrap_or(pb::SessionKind::Unspecified).into(),
        after_sequence: after,
    };
    let mut events = SessionServiceClient::new(client).watch_sessions(request).await?.into_inner();
    if connect.output == Format::Table {
        let header: Vec<String> = COLUMNS.iter().map(|c| c.to_uppercase()).collect();
        output::text(&output::aligned(&header, &WIDTHS))?;
    }
    while let Some(event) = events.message().await? {
        let object = event_object(&event);
        match connect.output {
            Format::Json => output::line(&Value::Object(object))?,
            Format::Table => {
                let row: Vec<String> = COLUMNS.iter().map(|c| output::cell(object.get(*c))).collect();
                output::text(&output::aligned(&row, &WIDTHS))?;
            }
        }
    }
    Ok(())
}

fn event_object(e: &pb::WatchSessionsResponse) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("sequence".into(), e.sequence.into());
    object.insert("at".into(), output::time(e.at.as_ref()));
    object.insert("type".into(), output::event_name(e.r#type).into());
    object.insert("session_id".into(), e.session_id.clone().into());
    object.insert("user_id".into(), e.user_id.clone().into());
    object.insert("kind".into(), output::kind_name(e.kind).into());
    object.insert("end_reason".into(), output::end_reason_name(e.end_reason));
    object
}

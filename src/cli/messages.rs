//! `sessiond messages post|follow`: Post one message to a channel, and
//! Subscribe to channels, one line per message as it comes until
//! interrupted, the stream ends (a `session:` channel's session ended) or
//! sessiond cuts it off. `--after SEQ` resumes after a sequence number seen
//! before, missing nothing that is still kept.

use std::io::Read as _;

use prost_types::value::Kind as ValueKind;
use serde_json::{Map, Value};

use super::Failure;
use super::connect::ConnectArgs;
use super::output::{self, Format};
use crate::grpc::proto_value;
use crate::pb;
use crate::pb::message_service_client::MessageServiceClient;
use crate::settings::Secret;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum MessagesCommand {
    /// Posts one message to a channel: prints its sequence (0 for a local
    /// message) and how many subscribers of that sessiond it reached.
    Post {
        /// The channel: a name of the tenant's own (`chat/room-42`),
        /// `session:SESSION_ID` or `user:USER_ID`.
        channel: String,
        /// The payload: any JSON value (`'{"text": "hi"}'`, `42`, `null`),
        /// or `-` to read it from standard input.
        json: String,
        /// `global` (every subscriber on every replica; numbered and kept
        /// for replay) or `local` (this sessiond's subscribers only).
        #[arg(long, value_enum, default_value = "global")]
        scope: Scope,
        /// The payload's type name, for subscribers to tell messages apart
        /// (`chat.Line`).
        #[arg(long = "type", value_name = "NAME")]
        type_name: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Prints the messages posted to one or more channels as they come,
    /// until interrupted or a followed session ends.
    Follow {
        /// The channels to follow (1 to --message-max-channels, each once).
        #[arg(required = true, value_name = "CHANNEL")]
        channels: Vec<String>,
        /// On every channel named, replay the kept messages after this
        /// sequence number first (0: every kept message); default: from now
        /// on.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// How far a posted message reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    Local,
    Global,
}

impl From<Scope> for pb::MessageScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Local => Self::Local,
            Scope::Global => Self::Global,
        }
    }
}

const COLUMNS: [&str; 5] = ["channel", "sequence", "posted_at", "type", "payload"];
const WIDTHS: [usize; 5] = [20, 8, 24, 14, 0];

pub async fn run(command: MessagesCommand, key: Option<Secret>) -> Result<(), Failure> {
    match command {
        MessagesCommand::Post { channel, json, scope, type_name, connect } => {
            let payload = proto_value(parse_payload(&json)?);
            let client = connect.connect(key).await?;
            let request = pb::PostRequest {
                channel,
                payload: Some(payload),
                type_name: type_name.unwrap_or_default(),
                scope: pb::MessageScope::from(scope).into(),
            };
            let posted = MessageServiceClient::new(client).post(request).await?.into_inner();
            let mut object = Map::new();
            object.insert("sequence".into(), posted.sequence.into());
            object.insert("local_deliveries".into(), posted.local_deliveries.into());
            let mut rows = output::Rows::new(connect.output, &["sequence", "local_deliveries"]);
            rows.push(object)?;
            rows.finish()
        }
        MessagesCommand::Follow { channels, after, connect } => follow(channels, after, &connect, key).await,
    }
}

async fn follow(
    channels: Vec<String>,
    after: Option<u64>,
    connect: &ConnectArgs,
    key: Option<Secret>,
) -> Result<(), Failure> {
    let client = connect.connect(key).await?;
    let request = pb::SubscribeRequest {
        channels: channels
            .into_iter()
            .map(|channel| pb::ChannelSubscription { channel, after_sequence: after })
            .collect(),
    };
    let mut items = MessageServiceClient::new(client).subscribe(request).await?.into_inner();
    while let Some(answer) = items.message().await? {
        let Some(item) = answer.item else { continue };
        let object = item_object(item);
        match connect.output {
            Format::Json => output::line(&Value::Object(object))?,
            Format::Table if object["item"] == "subscribed" => {
                // The header says the subscription is in place.
                let header: Vec<String> = COLUMNS.iter().map(|c| c.to_uppercase()).collect();
                output::text(&output::aligned(&header, &WIDTHS))?;
            }
            Format::Table => output::text(&output::aligned(&table_row(&object), &WIDTHS))?,
        }
    }
    Ok(())
}

/// The payload given on the command line (or standard input), as JSON.
/// Its text is never echoed: only where it stops being JSON.
fn parse_payload(json: &str) -> Result<Value, Failure> {
    let text = if json == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|err| Failure::Other(format!("reading the payload from standard input: {err}")))?;
        text
    } else {
        json.to_owned()
    };
    serde_json::from_str(&text).map_err(|err| {
        Failure::Usage(format!("the payload is not valid JSON (line {}, column {})", err.line(), err.column()))
    })
}

/// One item of a subscription as one JSON object, `item` saying which:
/// `subscribed`, `message` or `session_ended`.
fn item_object(item: pb::subscribe_response::Item) -> Map<String, Value> {
    use pb::subscribe_response::Item;
    let mut object = Map::new();
    match item {
        Item::Subscribed(subscribed) => {
            object.insert("item".into(), "subscribed".into());
            object.insert("channels".into(), subscribed.channels.into());
        }
        Item::Message(m) => {
            object.insert("item".into(), "message".into());
            object.insert("channel".into(), m.channel.into());
            object.insert("sequence".into(), m.sequence.into());
            object.insert("posted_at".into(), output::time(m.posted_at.as_ref()));
            object.insert("scope".into(), scope_name(m.scope));
            object.insert("type_name".into(), m.type_name.into());
            object.insert("payload".into(), m.payload.map(json_value).unwrap_or(Value::Null));
        }
        Item::SessionEnded(e) => {
            object.insert("item".into(), "session_ended".into());
            object.insert("channel".into(), e.channel.into());
            object.insert("session_id".into(), e.session_id.into());
            object.insert("end_reason".into(), output::end_reason_name(e.end_reason));
            object.insert("final".into(), e.ends_subscription.into());
        }
    }
    object
}

/// A message or a session's end as a table row: a session's end shows
/// `session_ended` as its type and what ended as its payload.
fn table_row(object: &Map<String, Value>) -> Vec<String> {
    if object["item"] == "session_ended" {
        let mut ended = object.clone();
        ended.remove("item");
        ended.remove("channel");
        let channel = output::cell(object.get("channel"));
        return vec![
            channel,
            "-".into(),
            "-".into(),
            "session_ended".into(),
            output::escape(&Value::Object(ended).to_string()),
        ];
    }
    let payload = object.get("payload").map(Value::to_string).unwrap_or_default();
    vec![
        output::cell(object.get("channel")),
        output::cell(object.get("sequence")),
        output::cell(object.get("posted_at")),
        output::cell(object.get("type_name")),
        output::escape(&payload),
    ]
}

fn scope_name(scope: i32) -> Value {
    match pb::MessageScope::try_from(scope) {
        Ok(pb::MessageScope::Local) => "local".into(),
        Ok(pb::MessageScope::Global) => "global".into(),
        Ok(pb::MessageScope::Unspecified) => Value::Null,
        Err(_) => scope.to_string().into(),
    }
}

/// A `google.protobuf.Value` as JSON; a number without a fraction is
/// written as an integer (`3`, not `3.0`), one JSON cannot hold as null.
fn json_value(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(ValueKind::NullValue(_)) => Value::Null,
        Some(ValueKind::BoolValue(b)) => b.into(),
        Some(ValueKind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 2f64.powi(53) => {
            // Exact: an integral f64 below 2^53 is an i64.
            Value::from(n as i64)
        }
        Some(ValueKind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(ValueKind::StringValue(s)) => s.into(),
        Some(ValueKind::ListValue(list)) => Value::Array(list.values.into_iter().map(json_value).collect()),
        Some(ValueKind::StructValue(s)) => {
            Value::Object(s.fields.into_iter().map(|(k, v)| (k, json_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_with_integers_kept_integral() {
        let payload = serde_json::json!({"text": "hi", "n": 3, "ratio": 0.5, "tags": [null, true]});
        assert_eq!(json_value(proto_value(payload.clone())), payload);
        assert_eq!(json_value(proto_value(serde_json::json!(-7))).to_string(), "-7");
    }

    #[test]
    fn a_payload_that_is_not_json_is_a_usage_error_that_does_not_echo_it() {
        let failure = parse_payload("{\"secret\": ").expect_err("not JSON");
        assert!(matches!(failure, Failure::Usage(ref text) if !text.contains("secret")), "{failure}");
    }
}

//! Conversions between wire messages and domain values. Requests are parsed
//! here, once: each parser destructures its message completely, so a field
//! added to the proto breaks the build until it is handled.

use std::collections::BTreeMap;
use std::time::Duration;

use prost_types::value::Kind;

use super::pb;
use crate::clock::UnixMillis;
use crate::domain::{
    EndReason, Event, EventType, InvalidInput, Labels, LogLevel, LogRecord, Promotion, SessionId, SessionKind,
    StorageLimits, StorageMap, Token, UnixMicros, Violations,
};
use crate::service::lifecycle::{SessionStatus, Timeout};
use crate::service::{Opened, SessionRef};

/// Deepest nesting accepted in a storage value.
const MAX_VALUE_DEPTH: usize = 32;

pub fn timestamp(at: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.0.div_euclid(1000), nanos: (at.0.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn parse_timestamp(at: &prost_types::Timestamp, field: &str) -> Result<UnixMillis, InvalidInput> {
    if !(0..1_000_000_000).contains(&at.nanos) || !(0..=253_402_300_799).contains(&at.seconds) {
        return Err(InvalidInput::new(field, "must be a valid timestamp between 1970 and 9999"));
    }
    Ok(UnixMillis(at.seconds * 1000 + i64::from(at.nanos) / 1_000_000))
}

/// A client's time for a log entry, kept to the microsecond.
pub fn parse_client_time(at: &prost_types::Timestamp, field: &str) -> Result<UnixMicros, InvalidInput> {
    let millis = parse_timestamp(at, field)?;
    Ok(UnixMicros(millis.0 / 1000 * 1_000_000 + i64::from(at.nanos) / 1000))
}

pub fn micros_timestamp(at: UnixMicros) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.0.div_euclid(1_000_000), nanos: (at.0.rem_euclid(1_000_000) * 1000) as i32 }
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

pub fn parse_duration(d: &prost_types::Duration, field: &str) -> Result<Duration, InvalidInput> {
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        return Err(InvalidInput::new(field, "must be a non-negative duration"));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// An optional timeout: unset means the default, zero means none; one
/// given is between a second and `max`.
pub fn parse_timeout(d: Option<prost_types::Duration>, field: &str, max: Duration) -> Result<Timeout, InvalidInput> {
    match d {
        None => Ok(Timeout::Default),
        Some(d) => match parse_duration(&d, field)? {
            d if d.is_zero() => Ok(Timeout::Never),
            d if d > max => Err(InvalidInput::new(field, format!("must be at most {}s", max.as_secs()))),
            d if d < Duration::from_secs(1) => {
                Err(InvalidInput::new(field, "must be at least one second, or zero for none"))
            }
            d => Ok(Timeout::After(d)),
        },
    }
}

/// The session a request names; `field` is where the reference sits.
pub fn parse_ref(session: Option<pb::SessionRef>, field: &str) -> Result<SessionRef, InvalidInput> {
    let pb::SessionRef { r#ref, min_sequence } =
        session.ok_or_else(|| InvalidInput::new(field, "name a session by token or session_id"))?;
    let named = match r#ref {
        // The field's full name is spelt out only for an answer that names it.
        Some(pb::session_ref::Ref::Token(token)) => Token::parse_owned(token, "token")
            .map(SessionRef::token)
            .map_err(|e| InvalidInput::new(format!("{field}.token"), e.description)),
        Some(pb::session_ref::Ref::SessionId(id)) => SessionId::parse(&id, "session_id")
            .map(SessionRef::id)
            .map_err(|e| InvalidInput::new(format!("{field}.session_id"), e.description)),
        None => Err(InvalidInput::new(field, "name a session by token or session_id")),
    };
    named.map(|named| named.with_min_sequence(min_sequence))
}

pub fn parse_kind(kind: i32, field: &str, required: bool) -> Result<Option<SessionKind>, InvalidInput> {
    use pb::SessionKind as K;
    let kind = match K::try_from(kind) {
        Ok(K::Unspecified) if !required => return Ok(None),
        Ok(K::Unspecified) | Err(_) => return Err(InvalidInput::new(field, "must be a session kind")),
        Ok(K::MethodCall) => SessionKind::MethodCall,
        Ok(K::WebCall) => SessionKind::WebCall,
        Ok(K::MethodStream) => SessionKind::MethodStream,
        Ok(K::Streaming) => SessionKind::Streaming,
        Ok(K::FutureCall) => SessionKind::FutureCall,
        Ok(K::Internal) => SessionKind::Internal,
        Ok(K::WebUser) => SessionKind::WebUser,
        Ok(K::RemoteUser) => SessionKind::RemoteUser,
        Ok(K::StoredProcedure) => SessionKind::StoredProcedure,
        Ok(K::Standalone) => SessionKind::Standalone,
    };
    Ok(Some(kind))
}

impl From<SessionKind> for pb::SessionKind {
    fn from(kind: SessionKind) -> Self {
        match kind {
            SessionKind::MethodCall => Self::MethodCall,
            SessionKind::WebCall => Self::WebCall,
            SessionKind::MethodStream => Self::MethodStream,
            SessionKind::Streaming => Self::Streaming,
            SessionKind::FutureCall => Self::FutureCall,
            SessionKind::Internal => Self::Internal,
            SessionKind::WebUser => Self::WebUser,
            SessionKind::RemoteUser => Self::RemoteUser,
            SessionKind::StoredProcedure => Self::StoredProcedure,
            SessionKind::Standalone => Self::Standalone,
        }
    }
}

impl From<EndReason> for pb::EndReason {
    fn from(reason: EndReason) -> Self {
        match reason {
            EndReason::Closed => Self::Closed,
            EndReason::Failed => Self::Failed,
            EndReason::IdleTimeout => Self::IdleTimeout,
            EndReason::LifetimeReached => Self::LifetimeReached,
            EndReason::Revoked => Self::Revoked,
            EndReason::ServerShutdown => Self::ServerShutdown,
            EndReason::ServerCrashed => Self::ServerCrashed,
        }
    }
}

impl From<EventType> for pb::EventType {
    fn from(event: EventType) -> Self {
        match event {
            EventType::Created => Self::Created,
            EventType::Closed => Self::Closed,
            EventType::Expired => Self::Expired,
            EventType::Revoked => Self::Revoked,
            EventType::PrivilegesChanged => Self::PrivilegesChanged,
            EventType::StorageChanged => Self::StorageChanged,
        }
    }
}

impl From<LogLevel> for pb::LogLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => Self::Debug,
            LogLevel::Info => Self::Info,
            LogLevel::Warning => Self::Warning,
            LogLevel::Error => Self::Error,
            LogLevel::Fatal => Self::Fatal,
        }
    }
}

pub fn parse_level(level: i32, field: &str, required: bool) -> Result<Option<LogLevel>, InvalidInput> {
    match pb::LogLevel::try_from(level) {
        Ok(pb::LogLevel::Unspecified) if !required => Ok(None),
        Ok(pb::LogLevel::Unspecified) | Err(_) => Err(InvalidInput::new(field, "must be a log level")),
        Ok(level) => Ok(LogLevel::from_number(level as i64)),
    }
}

/// Page size when a request leaves it zero.
const DEFAULT_PAGE_SIZE: usize = 100;

/// A requested page size: zero means the default; the service caps it.
pub fn page_size(requested: i32) -> Result<usize, InvalidInput> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(InvalidInput::new("page_size", "must not be negative")),
        n => Ok(n as usize),
    }
}

/// An optional text field: empty means not given.
pub fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub fn session(status: SessionStatus) -> pb::Session {
    let SessionStatus { session, last_active_at, expires_at, duration: elapsed, time_left } = status;
    pb::Session {
        session_id: session.id.into_string(),
        kind: pb::SessionKind::from(session.kind).into(),
        user_id: session.user_id.unwrap_or_default(),
        labels: Some(labels(session.labels)),
        created_at: Some(timestamp(session.created_at)),
        last_active_at: Some(timestamp(last_active_at)),
        expires_at: expires_at.map(timestamp),
        idle_timeout: session.idle_timeout.map(duration),
        lifetime: session.lifetime.map(duration),
        state: if session.end.is_some() { pb::SessionState::Ended } else { pb::SessionState::Open }.into(),
        end_reason: session.end.as_ref().map_or(pb::EndReason::Unspecified, |e| e.reason.into()).into(),
        ended_at: session.end.as_ref().map(|e| timestamp(e.at)),
        duration: Some(duration(elapsed)),
        time_left: time_left.map(duration),
        trusted: session.trusted,
    }
}

/// An open session's answer, as of the call that found it open.
/// [`session`] for an open session answers the same, from the whole
/// session; this one reads a cached record in place.
pub fn open_session(opened: Opened) -> pb::Session {
    let expires_at = opened.expires_at();
    let Opened { record, now } = opened;
    let timing = record.timing();
    pb::Session {
        session_id: record.id().as_str().to_owned(),
        kind: pb::SessionKind::from(record.kind()).into(),
        user_id: record.user_id().unwrap_or_default().to_owned(),
        labels: Some(labels(record.labels())),
        created_at: Some(timestamp(timing.created_at)),
        last_active_at: Some(timestamp(now)),
        expires_at: expires_at.map(timestamp),
        idle_timeout: timing.idle_timeout.map(duration),
        lifetime: timing.lifetime.map(duration),
        state: pb::SessionState::Open.into(),
        end_reason: pb::EndReason::Unspecified.into(),
        ended_at: None,
        duration: Some(duration(now.since(timing.created_at))),
        time_left: expires_at.map(|at| duration(at.since(now))),
        trusted: record.trusted(),
    }
}

fn labels(labels: Labels) -> pb::SessionLabels {
    let Labels { endpoint, method, future_call, client_address, user_agent } = labels;
    pb::SessionLabels { endpoint, method, future_call, client_address, user_agent }
}

/// Labels, each at most `max_bytes` of text.
pub fn parse_labels(labels: Option<pb::SessionLabels>, max_bytes: usize, violations: &mut Violations) -> Labels {
    let pb::SessionLabels { endpoint, method, future_call, client_address, user_agent } = labels.unwrap_or_default();
    for (value, field) in [
        (&endpoint, "labels.endpoint"),
        (&method, "labels.method"),
        (&future_call, "labels.future_call"),
        (&client_address, "labels.client_address"),
        (&user_agent, "labels.user_agent"),
    ] {
        violations.text(value, field, max_bytes);
    }
    Labels { endpoint, method, future_call, client_address, user_agent }
}

pub fn event(event: Event) -> pb::WatchSessionsResponse {
    let Event { sequence, event } = event;
    pb::WatchSessionsResponse {
        sequence,
        r#type: pb::EventType::from(event.event_type).into(),
        session_id: event.session_id.as_str().to_owned(),
        user_id: event.user_id.unwrap_or_default(),
        kind: pb::SessionKind::from(event.kind).into(),
        end_reason: event.end_reason.map_or(pb::EndReason::Unspecified, Into::into).into(),
        at: Some(timestamp(event.at)),
    }
}

pub fn promotion(p: Promotion) -> pb::Promotion {
    pb::Promotion {
        promotion_id: p.id.as_str().to_owned(),
        privilege: p.privilege,
        expires_at: Some(timestamp(p.expires_at)),
    }
}

pub fn log_record(r: LogRecord) -> pb::LogRecord {
    let LogRecord { entry_id: _, position: _, sequence, log_id, session_id, user_id, kind, endpoint, entry } = r;
    pb::LogRecord {
        log_id: log_id.map(|id| id.as_str().to_owned()).unwrap_or_default(),
        session_id: session_id.as_str().to_owned(),
        user_id: user_id.unwrap_or_default(),
        kind: pb::SessionKind::from(kind).into(),
        level: pb::LogLevel::from(entry.level).into(),
        message: entry.message,
        exception: entry.exception.unwrap_or_default(),
        stack_trace: entry.stack_trace.unwrap_or_default(),
        client_time: entry.client_time.map(micros_timestamp),
        logged_at: Some(timestamp(entry.logged_at)),
        sequence,
        endpoint,
    }
}

/// A storage map from the wire: at most `max_keys` entries, each key
/// checked, each value one JSON (and every store) can hold and within the
/// size limit. Entries are named `field[key]`.
pub fn parse_storage(
    values: std::collections::HashMap<String, prost_types::Value>,
    field: &str,
    limits: &StorageLimits,
    violations: &mut Violations,
) -> StorageMap {
    let mut map = StorageMap::new();
    if !violations.count(values.len(), field, limits.max_keys) {
        return map;
    }
    for (key, value) in values {
        let Some(entry_field) = limits.entry_field(&key, field, violations) else { continue };
        match json_value(value, 0) {
            Ok(value) => {
                limits.check_value(&value, &entry_field, violations);
                map.insert(key, value);
            }
            Err(why) => violations.push(InvalidInput::new(entry_field, why)),
        }
    }
    map
}

/// A message payload or other free value: checked as a storage value is
/// (depth, finite numbers, no NUL), and at most `max_bytes` as JSON.
pub fn parse_value(
    value: prost_types::Value,
    field: &str,
    max_bytes: usize,
) -> Result<serde_json::Value, InvalidInput> {
    let value = json_value(value, 0).map_err(|why| InvalidInput::new(field, why))?;
    let bytes = crate::domain::storage::value_bytes(&value);
    if bytes > max_bytes {
        return Err(InvalidInput::new(field, format!("must be at most {max_bytes} bytes as JSON, not {bytes}")));
    }
    Ok(value)
}

fn json_value(value: prost_types::Value, depth: usize) -> Result<serde_json::Value, &'static str> {
    if depth > MAX_VALUE_DEPTH {
        return Err("value is nested too deeply");
    }
    // Postgres' jsonb holds no NUL character, so no store takes one.
    let text = |s: String| if s.contains('\0') { Err("value must not contain NUL characters") } else { Ok(s) };
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(n).map(serde_json::Value::Number).ok_or("numbers must be finite")?
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(text(s)?),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values.into_iter().map(|v| json_value(v, depth + 1)).collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| Ok((text(k)?, json_value(v, depth + 1)?)))
                .collect::<Result<_, &'static str>>()?,
        ),
    })
}

/// A stored value for the wire. Integers beyond 2^53 lose precision, as
/// they do in `google.protobuf.Value` itself.
pub fn proto_value(value: serde_json::Value) -> prost_types::Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.into_iter().map(proto_value).collect() })
        }
        serde_json::Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields.into_iter().map(|(k, v)| (k, proto_value(v))).collect::<BTreeMap<_, _>>(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn proto_storage(values: StorageMap) -> std::collections::HashMap<String, prost_types::Value> {
    values.into_iter().map(|(k, v)| (k, proto_value(v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Record;
    use crate::store::fixtures::{T0, session as new_session};

    #[test]
    fn an_open_session_is_answered_alike_from_its_record_and_whole() {
        let mut session = new_session(SessionKind::WebUser, Some("ålice"), T0);
        session.labels.endpoint = "/cart".to_owned();
        session.labels.user_agent = "curl/8".to_owned();
        session.idle_timeout = Some(Duration::from_secs(600));
        session.lifetime = Some(Duration::from_secs(3_600));
        let now = T0 + Duration::from_secs(90);
        let expires_at = session.expires_at(now);
        let status = SessionStatus {
            session: session.clone(),
            last_active_at: now,
            expires_at,
            duration: now.since(session.created_at),
            time_left: expires_at.map(|at| at.since(now)),
        };
        let opened = Opened { record: Record::whole(session), now };
        assert_eq!(open_session(opened), self::session(status));
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        for ms in [0, 1, 999, 1_700_000_000_123] {
            assert_eq!(parse_timestamp(&timestamp(UnixMillis(ms)), "t").unwrap(), UnixMillis(ms));
        }
    }

    #[test]
    fn client_times_round_trip_at_microsecond_precision() {
        for (seconds, nanos) in [(0, 0), (1, 1_000), (1_700_000_000, 123_456_789), (253_402_300_799, 999_999_000)] {
            let at = prost_types::Timestamp { seconds, nanos };
            let micros = parse_client_time(&at, "t").unwrap();
            assert_eq!(micros_timestamp(micros), prost_types::Timestamp { seconds, nanos: nanos / 1000 * 1000 });
        }
    }

    #[test]
    fn structured_values_round_trip() {
        let json = serde_json::json!({"a": [1.5, "x", null, true], "b": {"c": 2.0}});
        assert_eq!(json_value(proto_value(json.clone()), 0).unwrap(), json);
    }

    #[test]
    fn nul_characters_in_string_values_and_their_keys_are_refused() {
        let nul = prost_types::Value { kind: Some(Kind::StringValue("a\0b".into())) };
        assert!(json_value(nul.clone(), 0).is_err());
        let nested = prost_types::Value { kind: Some(Kind::ListValue(prost_types::ListValue { values: vec![nul] })) };
        assert!(json_value(nested, 0).is_err());
        let key = prost_types::Value {
            kind: Some(Kind::StructValue(prost_types::Struct {
                fields: BTreeMap::from([("k\0".to_owned(), prost_types::Value::default())]),
            })),
        };
        assert!(json_value(key, 0).is_err());
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let nan = prost_types::Value { kind: Some(Kind::NumberValue(f64::NAN)) };
        assert!(json_value(nan, 0).is_err());
    }

    #[test]
    fn a_missing_session_reference_names_the_field() {
        assert_eq!(parse_ref(None, "session").unwrap_err().field, "session");
    }
}

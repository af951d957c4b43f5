//! What the admin commands print: aligned tables for people, one JSON
//! object per line for scripts, and the names of the API's enums and
//! times as both show them.
//!
//! A table cell shows control characters escaped (`\n`, `\u{1b}`), so a
//! log message cannot break the table's lines or drive the terminal; JSON
//! escapes them by itself.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Failure;
use crate::pb;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns under a header.
    Table,
    /// One JSON object per line.
    Json,
}

/// Rows printed as one aligned table, or as JSON lines.
pub struct Rows {
    format: Format,
    columns: Vec<&'static str>,
    cells: Vec<Vec<String>>,
}

impl Rows {
    pub fn new(format: Format, columns: &[&'static str]) -> Self {
        Self { format, columns: columns.to_vec(), cells: Vec::new() }
    }

    /// One row: `object` is the JSON line; the table shows the values of
    /// its keys named by the columns (lower case).
    pub fn push(&mut self, object: Map<String, Value>) -> Result<(), Failure> {
        match self.format {
            Format::Json => line(&Value::Object(object)),
            Format::Table => {
                let row = self.columns.iter().map(|column| cell(object.get(&column.to_lowercase()))).collect();
                self.cells.push(row);
                Ok(())
            }
        }
    }

    /// Prints the table (JSON lines are printed as they are pushed).
    pub fn finish(self) -> Result<(), Failure> {
        if self.format == Format::Json {
            return Ok(());
        }
        let mut widths: Vec<usize> = self.columns.iter().map(|column| column.chars().count()).collect();
        for row in &self.cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        let mut out = std::io::stdout().lock();
        for row in std::iter::once(&header).chain(&self.cells) {
            let text = aligned(row, &widths);
            writeln!(out, "{text}").map_err(stdout_gone)?;
        }
        Ok(())
    }
}

/// One table row padded to `widths`, without trailing spaces.
pub fn aligned(row: &[String], widths: &[usize]) -> String {
    let mut text = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        text.push_str(cell);
        if i + 1 < row.len() {
            text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count())));
        }
    }
    text.trim_end().to_owned()
}

/// Prints `value` as one line of JSON and flushes it, so that a reader of
/// a stream sees each line as it comes.
pub fn line(value: &Value) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").and_then(|()| out.flush()).map_err(stdout_gone)
}

/// Prints one line of text and flushes it.
pub fn text(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(stdout_gone)
}

fn stdout_gone(err: std::io::Error) -> Failure {
    Failure::Other(format!("writing to standard output: {err}"))
}

/// A JSON value as a table cell: strings as they are (control characters
/// escaped), lists joined by commas, nothing as `-`.
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => escape(s),
        Some(Value::Array(items)) if items.is_empty() => "-".into(),
        Some(Value::Array(items)) => items.iter().map(|item| cell(Some(item))).collect::<Vec<_>>().join(","),
        Some(other) => escape(&other.to_string()),
    }
}

/// `s` with control characters escaped.
pub fn escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] }).collect()
}

/// An RFC 3339 time in UTC, to the millisecond; `None` for no time.
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> Value {
    let Some(t) = timestamp else { return Value::Null };
    let Ok(seconds) = u64::try_from(t.seconds) else { return Value::Null };
    let at = UNIX_EPOCH + Duration::new(seconds, u32::try_from(t.nanos).unwrap_or(0));
    Value::String(humantime::format_rfc3339_millis(at).to_string())
}

/// A duration in seconds, as humantime writes it (`1h 30m`).
pub fn duration(d: Option<&prost_types::Duration>) -> Value {
    match d {
        Some(d) if d.seconds > 0 || d.nanos > 0 => {
            let whole = Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0));
            Value::String(humantime::format_duration(whole).to_string())
        }
        _ => Value::Null,
    }
}

/// A time given on the command line: an RFC 3339 time
/// (`2026-01-31T12:00:00Z`) or a duration before now (`15m`).
pub fn parse_time(text: &str) -> Result<prost_types::Timestamp, String> {
    let at = match humantime::parse_duration(text) {
        Ok(ago) => SystemTime::now().checked_sub(ago).ok_or("too long ago")?,
        Err(_) => humantime::parse_rfc3339_weak(text)
            .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration such as 15m"))?,
    };
    Ok(prost_types::Timestamp::from(at))
}

/// The enum's short name, lower case: `SESSION_KIND_WEB_USER` is `web_user`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

pub fn kind_name(kind: i32) -> String {
    pb::SessionKind::try_from(kind)
        .map(|k| short(k.as_str_name(), "SESSION_KIND_"))
        .unwrap_or_else(|_| kind.to_string())
}

pub fn state_name(state: i32) -> String {
    pb::SessionState::try_from(state)
        .map(|s| short(s.as_str_name(), "SESSION_STATE_"))
        .unwrap_or_else(|_| state.to_string())
}

pub fn end_reason_name(reason: i32) -> Value {
    match pb::EndReason::try_from(reason) {
        Ok(pb::EndReason::Unspecified) => Value::Null,
        Ok(r) => Value::String(short(r.as_str_name(), "END_REASON_")),
        Err(_) => Value::String(reason.to_string()),
    }
}

pub fn level_name(level: i32) -> String {
    pb::LogLevel::try_from(level).map(|l| short(l.as_str_name(), "LOG_LEVEL_")).unwrap_or_else(|_| level.to_string())
}

pub fn event_name(event: i32) -> String {
    pb::EventType::try_from(event).map(|e| short(e.as_str_name(), "EVENT_TYPE_")).unwrap_or_else(|_| event.to_string())
}

/// A kind named on the command line (`web_user`, any case); sessiond
/// itself refuses an unknown one.
pub fn parse_kind(text: &str) -> Result<pb::SessionKind, String> {
    pb::SessionKind::from_str_name(&format!("SESSION_KIND_{}", text.to_uppercase()))
        .filter(|kind| *kind != pb::SessionKind::Unspecified)
        .ok_or_else(|| format!("{text:?} is no session kind (web_user, web_call, method_call, …)"))
}

/// A log level named on the command line (`error`, any case).
pub fn parse_level(text: &str) -> Result<pb::LogLevel, String> {
    pb::LogLevel::from_str_name(&format!("LOG_LEVEL_{}", text.to_uppercase()))
        .filter(|level| *level != pb::LogLevel::Unspecified)
        .ok_or_else(|| format!("{text:?} is no log level (debug, info, warning, error, fatal)"))
}

/// A session as one JSON object: every field of the API's `Session`.
pub fn session(s: &pb::Session) -> Map<String, Value> {
    let labels = s.labels.as_ref();
    let label = |f: fn(&pb::SessionLabels) -> &String| labels.map(f).filter(|v| !v.is_empty()).cloned();
    let mut object = Map::new();
    object.insert("session_id".into(), s.session_id.clone().into());
    object.insert("kind".into(), kind_name(s.kind).into());
    object.insert("user_id".into(), s.user_id.clone().into());
    object.insert("state".into(), state_name(s.state).into());
    object.insert("end_reason".into(), end_reason_name(s.end_reason));
    object.insert("created_at".into(), time(s.created_at.as_ref()));
    object.insert("last_active_at".into(), time(s.last_active_at.as_ref()));
    object.insert("expires_at".into(), time(s.expires_at.as_ref()));
    object.insert("ended_at".into(), time(s.ended_at.as_ref()));
    object.insert("idle_timeout".into(), duration(s.idle_timeout.as_ref()));
    object.insert("lifetime".into(), duration(s.lifetime.as_ref()));
    object.insert("endpoint".into(), label(|l| &l.endpoint).into());
    object.insert("method".into(), label(|l| &l.method).into());
    object.insert("trusted".into(), s.trusted.into());
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_aligned_without_trailing_spaces() {
        let widths = [5, 3];
        assert_eq!(aligned(&["ab".into(), "c".into()], &widths), "ab     c");
        assert_eq!(aligned(&["abcde".into(), "".into()], &widths), "abcde");
    }

    #[test]
    fn control_characters_are_escaped_in_cells() {
        assert_eq!(cell(Some(&Value::String("a\nb\u{1b}[31m".into()))), "a\\nb\\u{1b}[31m");
        assert_eq!(cell(None), "-");
    }

    #[test]
    fn kinds_and_levels_are_named_as_on_the_command_line() {
        assert_eq!(parse_kind("web_user"), Ok(pb::SessionKind::WebUser));
        assert_eq!(kind_name(pb::SessionKind::WebUser.into()), "web_user");
        assert!(parse_kind("unspecified").is_err());
        assert_eq!(parse_level("ERROR"), Ok(pb::LogLevel::Error));
    }
}

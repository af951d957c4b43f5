//! Repeated failures logged once per interval, with a count: an outage
//! that fails thousands of calls writes a handful of lines, not thousands.
//!
//! A log line of a failure names its [`Cause`]: what tells failures apart
//! for an operator (a failed call's gRPC code and ErrorInfo reason, an
//! internal failure's kind), never the method or the session. The first
//! failure of a cause is logged at once, as it comes. Failures of the same
//! cause within the interval (`--log-repeat-interval`) after it are only
//! counted. The count is logged as `repeated = N` on one line: by the next
//! failure once the interval has passed, or, when none comes, by the
//! periodic [`flush`] (run by [`super::init`]) at most a second after the
//! interval ended. That line opens the next interval, so a lasting outage
//! logs one line per cause per interval. A cause with no failure for a
//! whole interval is forgotten: its next failure is a first one again.
//!
//! Only log lines are throttled: metrics count every failure. Until
//! [`set_interval`] is called (by `telemetry::init`), and with a zero
//! interval, every failure is logged.
//!
//! The cost: nothing for what does not fail; one atomic load for a failure
//! with the throttle off; otherwise one lock of a small map keyed by a
//! fixed-size `Copy` key, with no allocation for a failure only counted.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::Level;

use crate::service::Error;

/// The longest a count waits for [`flush`] once its interval has ended.
const MAX_FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// The interval in milliseconds; 0: not throttled.
static INTERVAL_MS: AtomicU64 = AtomicU64::new(0);

static WINDOWS: LazyLock<Mutex<Windows>> = LazyLock::new(|| Mutex::new(Windows::default()));

/// Throttles repeated failures from now on, `interval` apart; a zero
/// interval logs every failure.
pub fn set_interval(interval: Duration) {
    INTERVAL_MS.store(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

fn interval() -> Option<Duration> {
    let ms = INTERVAL_MS.load(Ordering::Relaxed);
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// How often [`flush`] should run for `interval`.
pub fn flush_period(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(10), MAX_FLUSH_PERIOD)
}

/// A service error's kind, for the causes of failures that are no call's
/// (a sweep, the event feed).
pub fn error_kind(err: &crate::service::Error) -> &'static str {
    match err {
        Error::Unavailable(_) => "unavailable",
        Error::StoreFull(_) => "full",
        Error::Internal(_) => "internal",
        _ => "refused",
    }
}

/// A store error's kind, in the words of [`error_kind`].
pub fn store_error_kind(err: &crate::store::StoreError) -> &'static str {
    use crate::store::StoreError;
    match err {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Full(_) => "full",
        StoreError::Internal(_) => "internal",
        _ => "refused",
    }
}

/// What one kind of failure line is about: the line (its level and
/// message) and what caused it. Fixed-size and `Copy`, so counting a
/// failure allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cause {
    level: Level,
    /// The message of the line.
    line: &'static str,
    /// The first part of the cause: a gRPC code, or an error's kind.
    kind: &'static str,
    /// An ErrorInfo reason, or empty.
    reason: Reason,
}

impl Cause {
    /// Failures logged at `level` with message `line`, of kind `kind`.
    pub fn new(level: Level, line: &'static str, kind: &'static str) -> Self {
        Self { level, line, kind, reason: Reason::EMPTY }
    }

    /// As [`new`](Self::new), told apart further by an ErrorInfo reason
    /// (cut after [`Reason::MAX`] bytes, which no sessiond reason reaches).
    pub fn with_reason(level: Level, line: &'static str, kind: &'static str, reason: &str) -> Self {
        Self { level, line, kind, reason: Reason::new(reason) }
    }
}

/// Written as `KIND/REASON`, or `KIND` alone: the `cause` field of a line.
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason.as_str() {
            "" => f.write_str(self.kind),
            reason => write!(f, "{}/{reason}", self.kind),
        }
    }
}

/// An ErrorInfo reason kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Reason {
    len: u8,
    bytes: [u8; Reason::MAX],
}

impl Reason {
    const MAX: usize = 48;
    const EMPTY: Reason = Reason { len: 0, bytes: [0; Reason::MAX] };

    fn new(text: &str) -> Self {
        let mut len = text.len().min(Self::MAX);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        // `len` is at most MAX, 48.
        Self { len: len as u8, bytes }
    }

    fn as_str(&self) -> &str {
        // Cut at a character boundary of a `str` in `new`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A failure to log now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// How many failures of the same cause were counted without a line
    /// since its last one; `None` when none were (and no `repeated` field
    /// is written).
    pub repeated: Option<u64>,
}

/// Whether a failure of `cause` is logged now; `None`: it was counted.
#[must_use]
pub fn admit(cause: Cause) -> Option<Admitted> {
    let Some(interval) = interval() else { return Some(Admitted { repeated: None }) };
    lock().admit(cause, Instant::now(), interval)
}

/// Logs the counts whose interval has ended, one line per cause, and
/// forgets the causes quiet for a whole interval.
pub fn flush() {
    let Some(interval) = interval() else { return };
    let due = lock().due(Instant::now(), Some(interval));
    due.into_iter().for_each(log_count);
}

/// Logs every count not logged yet, whatever its interval: at shutdown.
pub fn flush_all() {
    let due = lock().due(Instant::now(), None);
    due.into_iter().for_each(log_count);
}

fn log_count((cause, repeated): (Cause, u64)) {
    let line = cause.line;
    match cause.level {
        Level::ERROR => tracing::error!(cause = %cause, repeated, "{line}"),
        Level::WARN => tracing::warn!(cause = %cause, repeated, "{line}"),
        Level::INFO => tracing::info!(cause = %cause, repeated, "{line}"),
        Level::DEBUG => tracing::debug!(cause = %cause, repeated, "{line}"),
        _ => tracing::trace!(cause = %cause, repeated, "{line}"),
    }
}

fn lock() -> MutexGuard<'static, Windows> {
    // Every change to the map is one step: a panic elsewhere leaves it whole.
    WINDOWS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The open interval of every cause that failed lately.
#[derive(Debug, Default)]
struct Windows(HashMap<Cause, Window>);

#[derive(Debug)]
struct Window {
    opened: Instant,
    /// Failures counted, not logged, since it opened.
    counted: u64,
}

impl Windows {
    fn admit(&mut self, cause: Cause, now: Instant, interval: Duration) -> Option<Admitted> {
        match self.0.entry(cause) {
            Entry::Vacant(vacant) => {
                vacant.insert(Window { opened: now, counted: 0 });
                Some(Admitted { repeated: None })
            }
            Entry::Occupied(mut occupied) => {
                let window = occupied.get_mut();
                if now.saturating_duration_since(window.opened) < interval {
                    window.counted += 1;
                    return None;
                }
                let counted = std::mem::take(&mut window.counted);
                window.opened = now;
                Some(Admitted { repeated: (counted > 0).then_some(counted) })
            }
        }
    }

    /// The counts to log now: of the windows `interval` old (of all with
    /// `None`). Windows with a count open again; those without close.
    fn due(&mut self, now: Instant, interval: Option<Duration>) -> Vec<(Cause, u64)> {
        let mut due = Vec::new();
        self.0.retain(|cause, window| {
            if interval.is_some_and(|interval| now.saturating_duration_since(window.opened) < interval) {
                return true;
            }
            if window.counted == 0 {
                return false;
            }
            due.push((*cause, std::mem::take(&mut window.counted)));
            window.opened = now;
            true
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn unavailable() -> Cause {
        Cause::with_reason(Level::WARN, "call ended with an error", "UNAVAILABLE", "STORE_UNAVAILABLE")
    }

    fn logged(repeated: Option<u64>) -> Option<Admitted> {
        Some(Admitted { repeated })
    }

    #[test]
    fn the_first_failure_is_logged_and_the_next_ones_within_the_interval_are_counted() {
        let (mut windows, start) = (Windows::default(), Instant::now());
        assert_eq!(windows.admit(unavailable(), start, INTERVAL), logged(None));
        for n in 1..=100 {
            assert_eq!(windows.admit(unavailable(), start + Duration::from_millis(n * 99), INTERVAL), None);
        }
        assert_eq!(windows.admit(unavailable(), start + INTERVAL, INTERVAL), logged(Some(100)));
        assert_eq!(windows.admit(unavailable(), start + INTERVAL + Duration::from_secs(1), INTERVAL), None);
    }

    #[test]
    fn causes_are_counted_apart() {
        let (mut windows, now) = (Windows::default(), Instant::now());
        let full = Cause::with_reason(Level::WARN, "call ended with an error", "RESOURCE_EXHAUSTED", "STORE_FULL");
        let chain = Cause::with_reason(Level::ERROR, "call failed", "UNAVAILABLE", "STORE_UNAVAILABLE");
        for cause in [unavailable(), full, chain] {
            assert_eq!(windows.admit(cause, now, INTERVAL), logged(None), "{cause}");
            assert_eq!(windows.admit(cause, now, INTERVAL), None, "{cause}");
        }
    }

    #[test]
    fn a_flush_logs_counts_whose_interval_ended_and_forgets_quiet_causes() {
        let (mut windows, start) = (Windows::default(), Instant::now());
        let quiet = Cause::new(Level::WARN, "sweep failed", "unavailable");
        let _ = windows.admit(quiet, start, INTERVAL);
        let _ = windows.admit(unavailable(), start, INTERVAL);
        let _ = windows.admit(unavailable(), start + Duration::from_secs(1), INTERVAL);
        assert_eq!(windows.due(start + Duration::from_secs(9), Some(INTERVAL)), []);

        let later = start + INTERVAL;
        assert_eq!(windows.due(later, Some(INTERVAL)), [(unavailable(), 1)]);
        assert_eq!(windows.admit(quiet, later, INTERVAL), logged(None), "a quiet cause starts afresh");
        assert_eq!(windows.admit(unavailable(), later, INTERVAL), None, "the flushed line opened an interval");
        assert_eq!(windows.due(later, None), [(unavailable(), 1)]);
    }

    #[test]
    fn a_cause_reads_as_its_code_and_reason() {
        assert_eq!(unavailable().to_string(), "UNAVAILABLE/STORE_UNAVAILABLE");
        assert_eq!(Cause::new(Level::WARN, "sweep failed", "unavailable").to_string(), "unavailable");
        let long = "R".repeat(100);
        assert_eq!(Cause::with_reason(Level::INFO, "x", "NOT_FOUND", &long).to_string().len(), "NOT_FOUND/".len() + 48);
    }
}

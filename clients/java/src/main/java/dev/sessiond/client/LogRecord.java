package dev.sessiond.client;

import dev.sessiond.v1.LogLevel;
import dev.sessiond.v1.SessionKind;
import java.time.Instant;

/** A stored entry of a kept session log; sequence is its number in that log. */
public record LogRecord(
    String logId,
    String sessionId,
    String userId,
    SessionKind kind,
    LogLevel level,
    String message,
    String exception,
    String stackTrace,
    Instant clientTime,
    Instant loggedAt,
    long sequence) {

  static LogRecord from(dev.sessiond.v1.LogRecord r) {
    return new LogRecord(r.getLogId(), r.getSessionId(), r.getUserId(), r.getKind(), r.getLevel(), r.getMessage(),
        r.getException(), r.getStackTrace(), Model.instant(r.hasClientTime(), r.getClientTime()),
        Model.instant(r.hasLoggedAt(), r.getLoggedAt()), r.getSequence());
  }
}

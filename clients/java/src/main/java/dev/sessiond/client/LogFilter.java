package dev.sessiond.client;

import dev.sessiond.v1.LogLevel;
import dev.sessiond.v1.QueryLogsRequest;
import dev.sessiond.v1.SessionKind;
import java.time.Instant;

/** Which kept log entries queryLogs answers; every filter set must match. */
public final class LogFilter {
  final QueryLogsRequest.Builder request = QueryLogsRequest.newBuilder();

  /** Entries of this session. */
  public LogFilter sessionId(String sessionId) {
    request.setSessionId(sessionId);
    return this;
  }

  /** Entries of this user's sessions. */
  public LogFilter userId(String userId) {
    request.setUserId(userId);
    return this;
  }

  /** Entries of sessions of this kind. */
  public LogFilter kind(SessionKind kind) {
    request.setKind(kind);
    return this;
  }

  /** Entries logged at or after start and before end. */
  public LogFilter between(Instant start, Instant end) {
    request.setStartTime(Model.timestamp(start)).setEndTime(Model.timestamp(end));
    return this;
  }

  /** Entries of at least this level. */
  public LogFilter minLevel(LogLevel level) {
    request.setMinLevel(level);
    return this;
  }

  /** Entries of failed sessions only. */
  public LogFilter failedOnly() {
    request.setFailedOnly(true);
    return this;
  }

  /** Entries of slow sessions only. */
  public LogFilter slowOnly() {
    request.setSlowOnly(true);
    return this;
  }

  /** At most this many per page. */
  public LogFilter pageSize(int size) {
    request.setPageSize(size);
    return this;
  }

  /** The page after the one that answered this token. */
  public LogFilter pageToken(String token) {
    request.setPageToken(token);
    return this;
  }
}

package dev.sessiond.client;

import dev.sessiond.v1.LogLevel;
import java.time.Instant;

/** One entry to log; a null time is sessiond's time. */
public record LogEntry(LogLevel level, String message, String exception, String stackTrace, Instant time) {

  /** An entry of level with message. */
  public static LogEntry of(LogLevel level, String message) {
    return new LogEntry(level, message, "", "", null);
  }

  /** An info entry. */
  public static LogEntry info(String message) {
    return of(LogLevel.LOG_LEVEL_INFO, message);
  }

  dev.sessiond.v1.LogEntry proto() {
    var entry = dev.sessiond.v1.LogEntry.newBuilder().setLevel(level).setMessage(message)
        .setException(exception == null ? "" : exception).setStackTrace(stackTrace == null ? "" : stackTrace);
    if (time != null) {
      entry.setClientTime(Model.timestamp(time));
    }
    return entry.build();
  }
}

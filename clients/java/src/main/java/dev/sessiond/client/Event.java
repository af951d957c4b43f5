package dev.sessiond.client;

import dev.sessiond.v1.EndReason;
import dev.sessiond.v1.EventType;
import dev.sessiond.v1.SessionKind;
import java.time.Instant;

/** One session event of watchSessions. */
public record Event(
    long sequence, EventType type, String sessionId, String userId, SessionKind kind, EndReason endReason, Instant at) {

  static Event from(dev.sessiond.v1.WatchSessionsResponse e) {
    return new Event(e.getSequence(), e.getType(), e.getSessionId(), e.getUserId(), e.getKind(), e.getEndReason(),
        Model.instant(e.hasAt(), e.getAt()));
  }
}

package dev.sessiond.client;

import dev.sessiond.v1.EndReason;
import dev.sessiond.v1.SessionKind;
import dev.sessiond.v1.SessionLabels;
import dev.sessiond.v1.SessionState;
import java.time.Duration;
import java.time.Instant;

/** A session as sessiond knows it; unset times and durations are null. */
public record Session(
    String id,
    SessionKind kind,
    String userId,
    SessionLabels labels,
    Instant createdAt,
    Instant lastActiveAt,
    Instant expiresAt,
    Instant endedAt,
    Duration idleTimeout,
    Duration lifetime,
    Duration duration,
    Duration timeLeft,
    SessionState state,
    EndReason endReason,
    boolean trusted) {

  static Session from(dev.sessiond.v1.Session s) {
    return new Session(
        s.getSessionId(),
        s.getKind(),
        s.getUserId(),
        s.getLabels(),
        Model.instant(s.hasCreatedAt(), s.getCreatedAt()),
        Model.instant(s.hasLastActiveAt(), s.getLastActiveAt()),
        Model.instant(s.hasExpiresAt(), s.getExpiresAt()),
        Model.instant(s.hasEndedAt(), s.getEndedAt()),
        Model.duration(s.hasIdleTimeout(), s.getIdleTimeout()),
        Model.duration(s.hasLifetime(), s.getLifetime()),
        Model.duration(s.hasDuration(), s.getDuration()),
        Model.duration(s.hasTimeLeft(), s.getTimeLeft()),
        s.getState(),
        s.getEndReason(),
        s.getTrusted());
  }
}

package dev.sessiond.client;

import dev.sessiond.v1.SessionKind;
import dev.sessiond.v1.WatchSessionsRequest;

/**
 * Which events watchSessions streams. Without {@link #afterSequence}: events
 * from now on; 0: every retained event; n: those after event n.
 */
public final class WatchFilter {
  final WatchSessionsRequest.Builder request = WatchSessionsRequest.newBuilder();

  /** Events of this session. */
  public WatchFilter sessionId(String sessionId) {
    request.setSessionId(sessionId);
    return this;
  }

  /** Events of this user's sessions. */
  public WatchFilter userId(String userId) {
    request.setUserId(userId);
    return this;
  }

  /** Events of sessions of this kind. */
  public WatchFilter kind(SessionKind kind) {
    request.setKind(kind);
    return this;
  }

  /** Resume after this event (the last sequence seen). */
  public WatchFilter afterSequence(long sequence) {
    request.setAfterSequence(sequence);
    return this;
  }
}

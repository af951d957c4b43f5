package dev.sessiond.client;

import dev.sessiond.v1.SessionRef;

/**
 * Names a session: by its secret token ({@link #token}) or its public id
 * ({@link #id}).
 */
public final class Ref {
  private final SessionRef proto;

  private Ref(SessionRef proto) {
    this.proto = proto;
  }

  /** The session given this token by createSession. */
  public static Ref token(String token) {
    return new Ref(SessionRef.newBuilder().setToken(token).build());
  }

  /** The session with this public id. */
  public static Ref id(String sessionId) {
    return new Ref(SessionRef.newBuilder().setSessionId(sessionId).build());
  }

  /**
   * The same session, answered only in a state that reflects every change up
   * to the event {@code sequence} a write answered (read your writes on any
   * replica).
   */
  public Ref after(long sequence) {
    return new Ref(proto.toBuilder().setMinSequence(sequence).build());
  }

  SessionRef proto() {
    return proto;
  }
}

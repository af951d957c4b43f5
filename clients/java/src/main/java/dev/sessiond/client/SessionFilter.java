package dev.sessiond.client;

import dev.sessiond.v1.ListSessionsRequest;
import dev.sessiond.v1.SessionKind;
import dev.sessiond.v1.SessionState;

/** Which sessions listSessions answers; every filter set must match. */
public final class SessionFilter {
  final ListSessionsRequest.Builder request = ListSessionsRequest.newBuilder();

  /** Sessions of this user. */
  public SessionFilter userId(String userId) {
    request.setUserId(userId);
    return this;
  }

  /** Sessions of this kind. */
  public SessionFilter kind(SessionKind kind) {
    request.setKind(kind);
    return this;
  }

  /** Sessions in this state. */
  public SessionFilter state(SessionState state) {
    request.setState(state);
    return this;
  }

  /** At most this many per page (default 100, capped by the server). */
  public SessionFilter pageSize(int size) {
    request.setPageSize(size);
    return this;
  }

  /** The page after the one that answered this token. */
  public SessionFilter pageToken(String token) {
    request.setPageToken(token);
    return this;
  }
}

package dev.sessiond.client;

import dev.sessiond.v1.RevokeSessionsRequest;
import dev.sessiond.v1.SessionKind;
import java.util.List;

/** Which open sessions revokeSessions ends; at least one filter. */
public final class RevokeFilter {
  final RevokeSessionsRequest.Builder request = RevokeSessionsRequest.newBuilder();

  /** Sessions of this user. */
  public RevokeFilter userId(String userId) {
    request.setUserId(userId);
    return this;
  }

  /** Sessions of this kind. */
  public RevokeFilter kind(SessionKind kind) {
    request.setKind(kind);
    return this;
  }

  /** Only these sessions. */
  public RevokeFilter sessionIds(String... ids) {
    request.addAllSessionIds(List.of(ids));
    return this;
  }
}

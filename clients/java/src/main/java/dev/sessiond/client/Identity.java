package dev.sessiond.client;

import dev.sessiond.v1.SessionKind;
import java.time.Instant;
import java.util.List;

/**
 * authenticate's answer: whose session the token is, and for each privilege
 * asked (in order) whether it holds it.
 */
public record Identity(
    String sessionId,
    String userId,
    String tenant,
    SessionKind kind,
    List<String> roles,
    Instant expiresAt,
    List<String> privileges,
    List<Boolean> granted,
    boolean allGranted,
    boolean trusted) {

  /** Whether privilege was asked and is held (names are case-insensitive). */
  public boolean holds(String privilege) {
    for (int i = 0; i < privileges.size() && i < granted.size(); i++) {
      if (privileges.get(i).equalsIgnoreCase(privilege)) {
        return granted.get(i);
      }
    }
    return false;
  }
}

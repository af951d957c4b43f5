package dev.sessiond.client;

import dev.sessiond.v1.CreateSessionRequest;
import dev.sessiond.v1.SessionKind;
import dev.sessiond.v1.SessionLabels;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/** What createSession starts: {@code NewSession.of(kind).userId("alice").roles("Manager")}. */
public final class NewSession {
  private final CreateSessionRequest.Builder request = CreateSessionRequest.newBuilder();

  private NewSession(SessionKind kind) {
    request.setKind(kind);
  }

  /** A session of kind (required). */
  public static NewSession of(SessionKind kind) {
    return new NewSession(kind);
  }

  /** The user the session acts for. */
  public NewSession userId(String userId) {
    request.setUserId(userId);
    return this;
  }

  /** Roles granted from the start. */
  public NewSession roles(String... roles) {
    request.addAllRoles(List.of(roles));
    return this;
  }

  /** Privileges granted from the start. */
  public NewSession privileges(String... privileges) {
    request.addAllPrivileges(List.of(privileges));
    return this;
  }

  /** The sliding idle timeout; unset: the kind's default, zero: none. */
  public NewSession idleTimeout(Duration timeout) {
    request.setIdleTimeout(Model.duration(timeout));
    return this;
  }

  /** The absolute lifetime; unset: the kind's default, zero: none. */
  public NewSession lifetime(Duration lifetime) {
    request.setLifetime(Model.duration(lifetime));
    return this;
  }

  /** Initial storage values (see {@link Values}). */
  public NewSession storage(Map<String, ?> values) {
    request.putAllStorage(Values.toValues(values));
    return this;
  }

  /** Descriptive labels (endpoint, method, client address, ...). */
  public NewSession labels(SessionLabels labels) {
    request.setLabels(labels);
    return this;
  }

  /** Holds every privilege (STORED_PROCEDURE and STANDALONE only). */
  public NewSession trusted(boolean trusted) {
    request.setTrusted(trusted);
    return this;
  }

  /** An idempotency key (a random UUID): a retry answers the first create. */
  public NewSession requestId(String requestId) {
    request.setRequestId(requestId);
    return this;
  }

  CreateSessionRequest proto() {
    return request.build();
  }
}

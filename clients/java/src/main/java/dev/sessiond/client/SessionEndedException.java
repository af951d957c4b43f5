package dev.sessiond.client;

/**
 * The session has ended (closed, expired or revoked): UNAUTHENTICATED from
 * authenticate, FAILED_PRECONDITION from other calls.
 */
public class SessionEndedException extends LoginRequiredException {
  private static final long serialVersionUID = 1L;

  SessionEndedException(Failure failure) {
    super(failure);
  }

  /**
   * Why it ended: closed, failed, idle_timeout, lifetime_reached, revoked,
   * server_shutdown or server_crashed.
   */
  public String endReason() {
    return metadata().getOrDefault("end_reason", "");
  }
}

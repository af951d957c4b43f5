package dev.sessiond.client;

/** The user must sign in again: the token is missing, malformed, unknown, or its session has ended; {@link #reason()} tells which. Subclassed by {@link SessionNotFoundException} and {@link SessionEndedException}. */
public class LoginRequiredException extends SessiondException {
  private static final long serialVersionUID = 1L;

  LoginRequiredException(Failure failure) {
    super(failure);
  }
}

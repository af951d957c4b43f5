package dev.sessiond.client;

/** sessiond or its store could not be reached; the call may be retried. */
public class UnavailableException extends SessiondException {
  private static final long serialVersionUID = 1L;

  UnavailableException(Failure failure) {
    super(failure);
  }
}

package dev.sessiond.client;

/** The calling service's own credentials failed (API_KEY_MISSING, API_KEY_INVALID, CLIENT_CERTIFICATE_UNKNOWN), not the user's token. */
public class UnauthenticatedException extends SessiondException {
  private static final long serialVersionUID = 1L;

  UnauthenticatedException(Failure failure) {
    super(failure);
  }
}

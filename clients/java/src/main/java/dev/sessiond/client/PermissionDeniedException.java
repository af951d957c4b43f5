package dev.sessiond.client;

/** The caller's API key may not make this call (e.g. an admin call with a service key). */
public class PermissionDeniedException extends SessiondException {
  private static final long serialVersionUID = 1L;

  PermissionDeniedException(Failure failure) {
    super(failure);
  }
}

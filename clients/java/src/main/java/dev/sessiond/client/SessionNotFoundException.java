package dev.sessiond.client;

/** No session has that token or id in the caller's tenant (UNAUTHENTICATED from authenticate, NOT_FOUND from other calls). */
public class SessionNotFoundException extends LoginRequiredException {
  private static final long serialVersionUID = 1L;

  SessionNotFoundException(Failure failure) {
    super(failure);
  }
}

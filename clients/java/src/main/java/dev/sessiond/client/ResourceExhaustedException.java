package dev.sessiond.client;

/** A limit was reached: a full session storage, too many calls. */
public class ResourceExhaustedException extends SessiondException {
  private static final long serialVersionUID = 1L;

  ResourceExhaustedException(Failure failure) {
    super(failure);
  }
}

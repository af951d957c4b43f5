package dev.sessiond.client;

/** The call's deadline passed before its answer. */
public class DeadlineExceededException extends SessiondException {
  private static final long serialVersionUID = 1L;

  DeadlineExceededException(Failure failure) {
    super(failure);
  }
}

package dev.sessiond.client;

/**
 * A storage write named an expected version that is no longer current, or
 * updateStorage ran out of attempts.
 */
public class VersionConflictException extends SessiondException {
  private static final long serialVersionUID = 1L;

  VersionConflictException(Failure failure) {
    super(failure);
  }

  /** The storage's version when the write was refused. */
  public long currentVersion() {
    try {
      return Long.parseUnsignedLong(metadata().getOrDefault("current_version", "0"));
    } catch (NumberFormatException e) {
      return 0;
    }
  }
}

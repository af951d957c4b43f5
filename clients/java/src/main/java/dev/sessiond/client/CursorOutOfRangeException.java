package dev.sessiond.client;

/**
 * OUT_OF_RANGE for a subscription's afterSequence: reason CURSOR_EXPIRED
 * (messages after it are no longer kept: resynchronise, then subscribe after
 * {@link #latestSequence}) or CURSOR_AHEAD (beyond the channel's last message).
 */
public class CursorOutOfRangeException extends SessiondException {
  private static final long serialVersionUID = 1L;

  CursorOutOfRangeException(Failure failure) {
    super(failure);
  }

  /** Whether messages after the cursor are no longer kept (CURSOR_EXPIRED). */
  public boolean expired() {
    return reason().equals("CURSOR_EXPIRED");
  }

  /** The channel whose cursor was refused. */
  public String channel() {
    return metadata().getOrDefault("channel", "");
  }

  /** The oldest sequence the channel keeps. */
  public long oldestSequence() {
    return number("oldest_sequence");
  }

  /** The channel's last sequence. */
  public long latestSequence() {
    return number("latest_sequence");
  }

  private long number(String key) {
    try {
      return Long.parseUnsignedLong(metadata().getOrDefault(key, "0"));
    } catch (NumberFormatException e) {
      return 0;
    }
  }
}

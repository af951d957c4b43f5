package dev.sessiond.client;

/**
 * A subscription fell too far behind and was cut off (RESOURCE_EXHAUSTED,
 * SUBSCRIBER_TOO_SLOW); subscribe again after the last sequence received.
 */
public class SubscriberTooSlowException extends ResourceExhaustedException {
  private static final long serialVersionUID = 1L;

  SubscriberTooSlowException(Failure failure) {
    super(failure);
  }
}

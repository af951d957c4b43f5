package dev.sessiond.client;

import dev.sessiond.v1.EndReason;
import dev.sessiond.v1.MessageScope;
import dev.sessiond.v1.SubscribeResponse;
import java.time.Instant;

/** One item of a {@link Subscription}: a {@link Message} or a {@link SessionEnd}. */
public sealed interface SubscriptionItem {
  /**
   * A message posted to a followed channel.
   *
   * @param channel the channel it was posted to
   * @param sequence its number in the channel, for resuming with afterSequence; 0 for a local message
   * @param payload the payload as posted, as {@link Values#fromValue} gives it (numbers as Double)
   * @param typeName the type name as posted (empty when none was given)
   * @param postedAt when sessiond accepted the post (millisecond precision); null when unset
   * @param scope LOCAL or GLOBAL
   */
  record Message(String channel, long sequence, Object payload, String typeName, Instant postedAt,
      MessageScope scope) implements SubscriptionItem {}

  /**
   * A session of a followed {@code session:} or {@code user:} channel ended.
   *
   * @param channel the followed channel it concerns
   * @param sessionId the session that ended
   * @param endReason how it ended
   * @param last whether the subscription ends with it (a {@code session:} channel)
   */
  record SessionEnd(String channel, String sessionId, EndReason endReason, boolean last)
      implements SubscriptionItem {}

  /** The item an answer carries; null for one not surfaced ({@code subscribed}). */
  static SubscriptionItem from(SubscribeResponse answer) {
    return switch (answer.getItemCase()) {
      case MESSAGE -> {
        var m = answer.getMessage();
        Instant at = m.hasPostedAt()
            ? Instant.ofEpochSecond(m.getPostedAt().getSeconds(), m.getPostedAt().getNanos())
            : null;
        yield new Message(m.getChannel(), m.getSequence(), Values.fromValue(m.getPayload()), m.getTypeName(), at,
            m.getScope());
      }
      case SESSION_ENDED -> {
        var e = answer.getSessionEnded();
        yield new SessionEnd(e.getChannel(), e.getSessionId(), e.getEndReason(), e.getEndsSubscription());
      }
      default -> null;
    };
  }
}

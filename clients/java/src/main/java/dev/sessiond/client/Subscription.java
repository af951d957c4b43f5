package dev.sessiond.client;

import dev.sessiond.v1.SubscribeResponse;
import io.grpc.Context;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

/**
 * An open Subscribe stream: iterate it for {@link SubscriptionItem}s.
 * {@link SessiondClient#subscribe} returns it once sessiond has put the
 * subscription in place. {@code hasNext()} is false after a last {@link
 * SubscriptionItem.SessionEnd} (a {@code session:} channel's session ended)
 * and after {@link #close}; a subscription sessiond ends throws its {@link
 * SessiondException} ({@link SubscriberTooSlowException}, …).
 */
public final class Subscription implements Iterator<SubscriptionItem>, AutoCloseable {
  private final Context.CancellableContext context;
  private final Iterator<SubscribeResponse> answers;
  private final List<String> channels;
  private SubscriptionItem next;
  private volatile boolean closed;

  Subscription(Context.CancellableContext context, Iterator<SubscribeResponse> answers) {
    this.context = context;
    this.answers = answers;
    try {
      this.channels = List.copyOf(answers.next().getSubscribed().getChannelsList());
    } catch (RuntimeException e) {
      context.cancel(null);
      throw SessiondException.from(e);
    }
  }

  /** The channels followed, as named. */
  public List<String> channels() {
    return channels;
  }

  @Override
  public boolean hasNext() {
    try {
      while (next == null && !closed && answers.hasNext()) {
        next = SubscriptionItem.from(answers.next());
      }
    } catch (RuntimeException e) {
      if (closed) {
        return false;
      }
      throw SessiondException.from(e);
    }
    return next != null;
  }

  @Override
  public SubscriptionItem next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the subscription has ended");
    }
    SubscriptionItem item = next;
    next = null;
    return item;
  }

  /** Cancels the stream; {@code hasNext()} is false from then on. */
  @Override
  public void close() {
    closed = true;
    context.cancel(null);
  }
}

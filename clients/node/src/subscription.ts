/**
 * An open Subscribe stream. `client.subscribe` resolves to one only once
 * sessiond has answered the stream's first item, `subscribed`: from then on
 * every message posted to its channels reaches it. `for await` over it
 * yields `Message` and `SessionEnd` items; the loop ends after a final
 * `SessionEnd` (a `session:` channel's session ended) and after `close()`;
 * leaving the loop early (`break`, `return`, a throw) closes it. A refusal
 * or a cut-off rejects with its `SessiondError` (`CursorExpired`,
 * `SubscriberTooSlow`, …).
 */

import { status as Code, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';

import { fromServiceError } from './errors.js';
import type { SubscribeResponse } from './gen/sessiond/v1/messages.js';
import { type SubscriptionItem, subscriptionItem } from './types.js';

function typed(error: unknown): unknown {
  return (error as ServiceError).code === undefined ? error : fromServiceError(error as ServiceError);
}

export class Subscription implements AsyncIterable<SubscriptionItem> {
  /** The channels followed, as named in the request. */
  readonly channels: string[];
  private closed = false;

  private constructor(
    private readonly stream: ClientReadableStream<SubscribeResponse>,
    private readonly answers: AsyncIterator<SubscribeResponse>,
    channels: string[],
  ) {
    this.channels = channels;
  }

  /** Opens the subscription on `stream`: resolves once its `subscribed` item arrived. */
  static async open(stream: ClientReadableStream<SubscribeResponse>): Promise<Subscription> {
    const answers = stream[Symbol.asyncIterator]() as AsyncIterator<SubscribeResponse>;
    let first: IteratorResult<SubscribeResponse>;
    try {
      first = await answers.next();
    } catch (error) {
      stream.cancel();
      throw typed(error);
    }
    return new Subscription(stream, answers, first.done ? [] : (first.value.subscribed?.channels ?? []));
  }

  /** The next item; undefined once the subscription has ended or was closed. */
  async next(): Promise<SubscriptionItem | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      let answer: IteratorResult<SubscribeResponse>;
      try {
        answer = await this.answers.next();
      } catch (error) {
        if (this.closed && (error as ServiceError).code === Code.CANCELLED) return undefined;
        throw typed(error);
      }
      if (answer.done) return undefined;
      const item = subscriptionItem(answer.value);
      if (item !== undefined) return item;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SubscriptionItem> {
    try {
      for (let item = await this.next(); item !== undefined; item = await this.next()) yield item;
    } finally {
      this.close();
    }
  }

  /** Cancels the stream; iterating afterwards ends at once. */
  close(): void {
    this.closed = true;
    this.stream.cancel();
  }
}

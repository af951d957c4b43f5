// Messages through the client: post, subscribe, replay, a session channel's end, refusals.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import { type Client, CursorAhead, InvalidArgument, type Message, SessionNotFound } from '@sessiond/client';

import { type Server, startSessiond } from './server.js';

let server: Server;
let client: Client;

before(async () => {
  server = await startSessiond();
  client = server.client();
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** A channel no other test follows. */
const channelName = () => `test/${randomUUID().slice(0, 12)}`;

test('a subscriber receives a post as plain values', async () => {
  const channel = channelName();
  const subscription = await client.subscribe(channel);
  assert.deepEqual(subscription.channels, [channel]);
  const payload = { from: 'alice', text: 'hello', n: 3, ratio: 0.5, tags: ['a', null, true] };
  assert.deepEqual(await client.post(channel, payload, { typeName: 'chat.Line' }), { sequence: 1, localDeliveries: 1 });
  const message = (await subscription.next()) as Message;
  assert.deepEqual(
    [message.type, message.channel, message.sequence, message.payload, message.typeName, message.scope],
    ['message', channel, 1, payload, 'chat.Line', 'global'],
  );
  assert.ok(message.postedAt instanceof Date);
  subscription.close();
  assert.equal(await subscription.next(), undefined); // closed: the iteration ends
});

test('local messages are not numbered, and any JSON value is a payload', async () => {
  const channel = channelName();
  const subscription = await client.subscribe([channel]);
  assert.equal((await client.post(channel, null, { scope: 'local' })).sequence, 0);
  assert.equal((await client.post(channel, 'two', { scope: 'local' })).sequence, 0);
  assert.equal((await client.post(channel, [1, 2])).sequence, 1);
  const received: [number, unknown, string | undefined][] = [];
  for await (const item of subscription) {
    assert.equal(item.type, 'message');
    if (item.type === 'message') received.push([item.sequence, item.payload, item.scope]);
    if (received.length === 3) break; // leaving the loop closes the subscription
  }
  assert.deepEqual(received, [[0, null, 'local'], [0, 'two', 'local'], [1, [1, 2], 'global']]);
});

test('afterSequence replays the kept messages, then live ones', async () => {
  const [channel, other] = [channelName(), channelName()];
  for (const n of [1, 2, 3]) await client.post(channel, n);
  const subscription = await client.subscribe([channel, other], { afterSequence: { [channel]: 1 } });
  assert.deepEqual(subscription.channels, [channel, other]);
  const replayed = [(await subscription.next()) as Message, (await subscription.next()) as Message];
  await client.post(other, 'live');
  const live = (await subscription.next()) as Message;
  subscription.close();
  assert.deepEqual(replayed.map((m) => [m.sequence, m.payload]), [[2, 2], [3, 3]]);
  assert.deepEqual([live.channel, live.sequence, live.payload], [other, 1, 'live']);
});

test('a cursor beyond the last message is CursorAhead', async () => {
  const channel = channelName();
  await client.post(channel, 'only');
  await assert.rejects(client.subscribe(channel, { afterSequence: 5 }), (error: unknown) => {
    assert.ok(error instanceof CursorAhead);
    assert.deepEqual([error.channel, error.oldestSequence, error.latestSequence], [channel, 1, 1]);
    return true;
  });
});

test('a session channel ends with a final sessionEnd when the session closes', async () => {
  const created = await client.createSession('web_user', { userId: `u-${randomUUID().slice(0, 8)}` });
  const { sessionId, userId } = created.session;
  const userSubscription = await client.subscribe(`user:${userId}`);
  const subscription = await client.subscribe(`session:${sessionId}`);
  await client.post(`session:${sessionId}`, { kick: true });
  assert.deepEqual(((await subscription.next()) as Message).payload, { kick: true });
  await client.closeSession(created.token);
  const items = [];
  for await (const item of subscription) items.push(item); // ends by itself after the final item
  assert.deepEqual(items, [
    { type: 'sessionEnd', channel: `session:${sessionId}`, sessionId, endReason: 'closed', final: true },
  ]);
  assert.deepEqual(await userSubscription.next(), {
    type: 'sessionEnd', channel: `user:${userId}`, sessionId, endReason: 'closed', final: false,
  });
  userSubscription.close();
});

test('refusals are typed', async () => {
  await assert.rejects(client.post('no-such-kind:x', 1), (error: unknown) => {
    assert.ok(error instanceof InvalidArgument);
    assert.equal(error.violations[0]?.field, 'channel');
    return true;
  });
  await assert.rejects(client.subscribe(`session:${'0'.repeat(32)}`), SessionNotFound);
});

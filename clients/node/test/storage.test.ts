// Storage through the client: values as JavaScript, compare-and-set under contention.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { type Client, type JsonValue, VersionConflict } from '@sessiond/client';

import { type Server, startSessiond } from './server.js';

const WORKERS = 4;
const INCREMENTS = 25;

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

const increment = (values: Record<string, JsonValue>) => {
  values.counter = ((values.counter as number | undefined) ?? 0) + 1;
};

test('values round-trip as JavaScript', async () => {
  const { token } = await client.createSession('web_user', { userId: 'vera' });
  const values = {
    cart: { items: ['book', 'pen'], total: 12.5, paid: false, note: null },
    count: 3,
    empty: {},
    list: [],
  };
  const written = await client.putStorage(token, values);
  const stored = await client.getStorage(token);
  assert.deepEqual(stored, { values, version: written.version });
  assert.deepEqual((await client.getStorage(token, ['count'])).values, { count: 3 });
  const deleted = await client.deleteStorage(token, ['list'], { expectedVersion: written.version });
  assert.equal(deleted.version, written.version + 1);
  const cleared = await client.clearStorage(token);
  assert.deepEqual((await client.getStorage(token)).values, {});
  assert.equal(cleared.version, deleted.version + 1);
});

test('concurrent workers, each on its own connection, increment a counter without losing an update', async () => {
  const { token } = await client.createSession('web_user', { userId: 'conny' });
  const workers = Array.from({ length: WORKERS }, () => server.client());
  try {
    await Promise.all(
      workers.map(async (worker) => {
        for (let i = 0; i < INCREMENTS; i++) await worker.updateStorage(token, increment, { keys: ['counter'], attempts: 100 });
      }),
    );
  } finally {
    for (const worker of workers) worker.close();
  }
  assert.deepEqual((await client.getStorage(token)).values, { counter: WORKERS * INCREMENTS });
});

test('updateStorage gives up after its attempts with the current version', async () => {
  const { token } = await client.createSession('web_user', { userId: 'gus', storage: { n: 0 } });
  let calls = 0;
  const meddling = async (values: Record<string, JsonValue>) => {
    calls++;
    await client.putStorage(token, { n: (values.n as number) + 100 }); // another writer, every time
    values.n = (values.n as number) + 1;
  };
  const conflict = await client.updateStorage(token, meddling, { attempts: 3 }).then(
    () => assert.fail('every attempt conflicts'),
    (error: unknown) => error,
  );
  assert.equal(calls, 3);
  const stored = await client.getStorage(token);
  assert.ok(conflict instanceof VersionConflict);
  assert.equal(conflict.currentVersion, stored.version);
  assert.deepEqual(stored.values, { n: 300 });
});

test('updateStorage writes nothing when fn changes nothing, and deletes what it removes', async () => {
  const { token } = await client.createSession('web_user', { userId: 'hal', storage: { a: 1, b: 2 } });
  const { version } = await client.getStorage(token);
  assert.equal((await client.updateStorage(token, () => {})).version, version);
  const updated = await client.updateStorage(token, (values) => ({ a: values.a }));
  assert.deepEqual(updated, { values: { a: 1 }, version: version + 1 });
  assert.deepEqual((await client.getStorage(token)).values, { a: 1 });
});

test('a write at a stale version is a VersionConflict with the current version', async () => {
  const { token } = await client.createSession('web_user', { userId: 'ivy' });
  const first = await client.putStorage(token, { a: 1 });
  await client.putStorage(token, { a: 2 });
  await assert.rejects(client.putStorage(token, { a: 3 }, { expectedVersion: first.version }), (error: unknown) => {
    assert.ok(error instanceof VersionConflict);
    assert.deepEqual([error.reason, error.currentVersion], ['VERSION_CONFLICT', first.version + 1]);
    return true;
  });
});

// Each error class, produced for real by a sessiond.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as pause } from 'node:timers/promises';

import {
  Client,
  Code,
  DeadlineExceeded,
  InvalidArgument,
  LoginRequired,
  PermissionDenied,
  ResourceExhausted,
  SessionEnded,
  SessiondError,
  SessionNotFound,
  Unauthenticated,
  Unavailable,
} from '@sessiond/client';

import { type Server, STORAGE_MAX_KEYS, freePort, startSessiond } from './server.js';

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

/** The error a promise rejects with, checked to be an instance of `type`. */
async function failure<E extends SessiondError>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  const error = await promise.then(
    () => assert.fail(`expected a ${type.name}`),
    (error: unknown) => error,
  );
  assert.ok(error instanceof type, `expected a ${type.name}, got ${String(error)}`);
  return error;
}

test('every token the user cannot use is LoginRequired with its reason', async () => {
  for (const [token, reason] of [['', 'TOKEN_MISSING'], ['not-a-token', 'TOKEN_MALFORMED']]) {
    const error = await failure(client.authenticate(token), LoginRequired);
    assert.equal(error.constructor, LoginRequired);
    assert.deepEqual([error.code, error.reason], [Code.UNAUTHENTICATED, reason]);
  }

  const created = await client.createSession('web_user', { userId: 'olga' });
  const forged = created.token.slice(0, -4) + (created.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.equal((await failure(client.authenticate(forged), SessionNotFound)).reason, 'SESSION_NOT_FOUND');

  await client.closeSession(created.token);
  const closed = await failure(client.authenticate(created.token), SessionEnded);
  assert.deepEqual([closed.reason, closed.endReason], ['SESSION_CLOSED', 'closed']);

  const revoked = await client.createSession('web_user', { userId: 'oscar' });
  await client.revokeSessions({ sessionIds: [revoked.session.sessionId] });
  const ended = await failure(client.authenticate(revoked.token), SessionEnded);
  assert.deepEqual([ended.reason, ended.endReason], ['SESSION_REVOKED', 'revoked']);

  const short = await client.createSession('web_call', { idleTimeoutMs: 1000 }); // the shortest there is
  await pause(1500); // real time must pass: the server runs on its own clock
  const expired = await failure(client.authenticate(short.token), SessionEnded);
  assert.deepEqual([expired.reason, expired.endReason], ['SESSION_EXPIRED', 'idle_timeout']);
});

test('other calls reject with the same classes under their own codes', async () => {
  const globex = server.client('globex');
  const other = await globex.createSession('web_user');
  globex.close();
  const unknown = await failure(client.getSession(other.session), SessionNotFound);
  assert.equal(unknown.code, Code.NOT_FOUND);

  const { token } = await client.createSession('web_user', { userId: 'pia' });
  await client.closeSession(token);
  const ended = await failure(client.putStorage(token, { a: 1 }), SessionEnded);
  assert.deepEqual([ended.code, ended.endReason], [Code.FAILED_PRECONDITION, 'closed']);
});

test('a service key may not query logs', async () => {
  assert.equal((await failure(client.queryLogs(), PermissionDenied)).reason, 'ADMIN_ROLE_REQUIRED');
});

test('a missing or unknown API key is Unauthenticated, not LoginRequired', async () => {
  const anonymous = new Client(server.address);
  const wrong = new Client(server.address, { apiKey: 'sdk_wrong' });
  try {
    assert.equal((await failure(anonymous.authenticate('whatever'), Unauthenticated)).reason, 'API_KEY_MISSING');
    const invalid = await failure(wrong.createSession('web_user'), Unauthenticated);
    assert.equal(invalid.reason, 'API_KEY_INVALID');
    assert.ok(!(invalid instanceof LoginRequired));
  } finally {
    anonymous.close();
    wrong.close();
  }
});

test('an invalid request names its fields', async () => {
  const { token } = await client.createSession('web_user', { userId: 'quinn' });
  const invalid = await failure(client.authenticate(token, ['viewSales', 'noSuchPrivilege']), InvalidArgument);
  assert.deepEqual(invalid.violations.map((v) => v.field), ['privileges[1]']);
  const tooShort = await failure(client.createSession('web_user', { idleTimeoutMs: 500 }), InvalidArgument);
  assert.deepEqual(tooShort.violations.map((v) => v.field), ['idle_timeout']);
});

test('a full session is ResourceExhausted', async () => {
  const { token } = await client.createSession('web_user', { userId: 'rita' });
  await client.putStorage(token, Object.fromEntries(Array.from({ length: STORAGE_MAX_KEYS }, (_, i) => [`key${i}`, i])));
  await failure(client.putStorage(token, { 'one-more': 1 }), ResourceExhausted);
});

test('no server is Unavailable', async () => {
  const nowhere = new Client(`127.0.0.1:${await freePort()}`, { timeoutMs: 5000 });
  try {
    await failure(nowhere.getSession('token'), Unavailable);
  } finally {
    nowhere.close();
  }
});

test('a server that cannot answer in time is DeadlineExceeded', async () => {
  const quick = server.client('acme', { timeoutMs: 300 });
  try {
    const { token } = await quick.createSession('web_user', { userId: 'sam' }); // connected
    const late = await server.stopped(() => failure(quick.authenticate(token), DeadlineExceeded));
    assert.equal(late.code, Code.DEADLINE_EXCEEDED);
    assert.equal((await quick.withTimeout(5000).authenticate(token)).userId, 'sam'); // answers again
  } finally {
    quick.close();
  }
});

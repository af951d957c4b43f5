// sessiond as a Node.js client sees it: @grpc/grpc-js and the proto loaded
// at run time, against a fresh sessiond that requires API keys (see
// sessiond-server.js).
//
// The session tests walk one part of a session's life each, on a session
// of their own, with the service key: creation, logging, privileges,
// storage with compare-and-set, and closing. Errors are read the way
// clients are told to: the status code, then the google.rpc.ErrorInfo in
// the `grpc-status-details-bin` trailer. The API key tests check who may
// call what. The last test stops sessiond and expects a clean exit.
//
// Run by tests/node/run.sh; by hand, from tests/node after `npm ci`:
// `node --test flow.test.js` (SESSIOND_BIN names another binary).

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';

import { connect, describe as describeError, errorInfo, fromValues, grpc, toValues, unary } from './sessiond-client.js';
import { TENANT, startSessiond } from './sessiond-server.js';

let server;
// Clients by API key: the service's, the admin's, none and an unknown one.
let service;
let admin;
let anonymous;
let stranger;
let anyTestFailed = false;

before(async () => {
  server = await startSessiond();
  service = connect(server.address, server.keys.service);
  admin = connect(server.address, server.keys.admin);
  anonymous = connect(server.address);
  stranger = connect(server.address, 'sdk_notAKeyThisServerKnows0000000000000000000');
});

afterEach((t) => {
  if (!t.passed) anyTestFailed = true;
});

after(async () => {
  for (const clients of [service, admin, anonymous, stranger]) clients?.close();
  if (server === undefined) return;
  if (anyTestFailed) {
    process.stderr.write(`---- sessiond log (last 40 lines) ----\n${server.logTail()}\n--------------------------------------\n`);
  }
  await server.cleanUp();
});

/** Awaits a call that must fail and answers its error. */
async function failure(call) {
  let response;
  try {
    response = await call;
  } catch (error) {
    if (error.code === undefined) throw error; // not a gRPC failure
    return error;
  }
  const answer = JSON.stringify(response);
  assert.fail(`expected the call to fail, it answered ${answer.length > 200 ? `${answer.slice(0, 200)}…` : answer}`);
}

/** Asserts that `error` has status `code` (a grpc.status name). */
function assertCode(error, code) {
  assert.equal(grpc.status[error.code], code, `expected ${code}, got ${describeError(error)}`);
}

/** A fresh WEB_USER session for alice, a Manager, with a cart in storage. */
function createWebUser() {
  return unary(service.sessions, 'CreateSession', {
    kind: 'SESSION_KIND_WEB_USER',
    userId: 'alice',
    idleTimeout: { seconds: 1800 },
    roles: ['Manager'],
    storage: toValues({
      cart: { items: ['book', 'pen'], total: 12.5, gift: true },
      theme: 'dark',
    }),
  });
}

const byToken = (created) => ({ token: created.token });

describe('a session, through the service key', () => {
  test('CreateSession answers a token and the session as asked', async () => {
    const created = await createWebUser();
    const { session } = created;
    assert.ok(created.token && session.sessionId);
    assert.notEqual(created.token, session.sessionId);
    assert.equal(session.kind, 'SESSION_KIND_WEB_USER');
    assert.equal(session.userId, 'alice');
    assert.equal(session.idleTimeout.seconds, '1800');
    assert.equal(session.state, 'SESSION_STATE_OPEN');
    assert.equal(session.trusted, false);
    assert.ok(session.createdAt && session.expiresAt);

    const lookedUp = await unary(service.sessions, 'GetSession', { session: { sessionId: session.sessionId } });
    assert.equal(lookedUp.session.sessionId, session.sessionId);

    const stored = await unary(service.storage, 'GetStorage', { session: byToken(created) });
    assert.deepEqual(fromValues(stored.values), {
      cart: { items: ['book', 'pen'], total: 12.5, gift: true },
      theme: 'dark',
    });
  });

  test('Log stores every entry at info or above', async () => {
    const created = await createWebUser();
    const answer = await unary(service.logs, 'Log', {
      session: byToken(created),
      entries: [
        { level: 'LOG_LEVEL_INFO', message: 'cart opened' },
        { level: 'LOG_LEVEL_WARNING', message: 'price lookup took 900 ms' },
      ],
    });
    assert.equal(answer.accepted, 2);
  });

  test('a Manager holds viewBasic through the privileges its role includes', async () => {
    const created = await createWebUser();
    const has = async (privilege) =>
      (await unary(service.privileges, 'HasPrivilege', { session: byToken(created), privilege })).granted;
    // Manager holds editSales, which includes viewSales, which includes viewBasic.
    assert.equal(await has('viewBasic'), true);
    assert.equal(await has('VIEWBASIC'), true, 'privilege names are case-insensitive');
    assert.equal(await has('admin'), false);
  });

  test('PutStorage applies at the expected version and aborts on a stale one', async () => {
    const session = byToken(await createWebUser());
    const { version } = await unary(service.storage, 'GetStorage', { session });

    const put = await unary(service.storage, 'PutStorage', {
      session,
      values: toValues({ cart: { items: ['book'], total: 9.5 } }),
      expectedVersion: version,
    });
    assert.equal(BigInt(put.version), BigInt(version) + 1n);

    const stale = await failure(
      unary(service.storage, 'PutStorage', {
        session,
        values: toValues({ cart: { items: [], total: 0 } }),
        expectedVersion: version,
      }),
    );
    assertCode(stale, 'ABORTED');
    const info = errorInfo(stale);
    assert.equal(info.reason, 'VERSION_CONFLICT');
    assert.equal(info.metadata.current_version, put.version);

    const now = await unary(service.storage, 'GetStorage', { session, keys: ['cart'] });
    assert.equal(now.version, put.version);
    assert.deepEqual(fromValues(now.values), { cart: { items: ['book'], total: 9.5 } });
  });

  test('a closed session refuses calls with SESSION_CLOSED', async () => {
    const created = await createWebUser();
    const session = byToken(created);
    const closed = await unary(service.sessions, 'CloseSession', { session });
    assert.equal(closed.sessionId, created.session.sessionId);
    assert.equal(closed.endReason, 'END_REASON_CLOSED');

    const refused = await failure(unary(service.sessions, 'GetSession', { session }));
    assertCode(refused, 'FAILED_PRECONDITION');
    assert.deepEqual(errorInfo(refused), {
      reason: 'SESSION_CLOSED',
      domain: 'sessiond.dev',
      metadata: { end_reason: 'closed' },
    });

    const again = await unary(service.sessions, 'CloseSession', { session });
    assert.deepEqual(again, closed, 'closing again answers as the first close did');
  });
});

describe('API keys', () => {
  test('the health check needs no key', async () => {
    const answer = await unary(anonymous.health, 'Check', {});
    assert.equal(answer.status, 'SERVING');
  });

  test('a call without a key is UNAUTHENTICATED', async () => {
    const error = await failure(unary(anonymous.sessions, 'CreateSession', { kind: 'SESSION_KIND_WEB_CALL' }));
    assertCode(error, 'UNAUTHENTICATED');
  });

  test('a call with a key the server does not know is UNAUTHENTICATED and does not echo it', async () => {
    const error = await failure(unary(stranger.sessions, 'CreateSession', { kind: 'SESSION_KIND_WEB_CALL' }));
    assertCode(error, 'UNAUTHENTICATED');
    assert.ok(!error.details.includes('sdk_notAKey'), `the answer repeats the key: ${error.details}`);
  });

  test('a service key may not query logs: PERMISSION_DENIED', async () => {
    const error = await failure(unary(service.logs, 'QueryLogs', {}));
    assertCode(error, 'PERMISSION_DENIED');
  });

  test(`the admin key queries the logs of the service key's sessions in tenant ${TENANT}`, async () => {
    const created = await createWebUser();
    const session = byToken(created);
    await unary(service.logs, 'Log', { session, entries: [{ level: 'LOG_LEVEL_INFO', message: 'cart opened' }] });
    const closed = await unary(service.sessions, 'CloseSession', { session });
    assert.ok(closed.logId, 'every log is kept (SESSIOND_SESSION_LOG_KEEP_ALL)');

    const found = await unary(admin.logs, 'QueryLogs', { sessionId: created.session.sessionId });
    assert.deepEqual(
      found.records.map((record) => [record.logId, record.level, record.message]),
      [[closed.logId, 'LOG_LEVEL_INFO', 'cart opened']],
    );
  });
});

test('sessiond stops cleanly on SIGTERM', async () => {
  const { code, signal } = await server.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
});

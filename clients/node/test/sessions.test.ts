// Sessions, privileges, logs, events and tenants through the client.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { type Client, SessionEnded, SessionNotFound } from '@sessiond/client';

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

test('authenticate answers who, and each privilege asked in order', async () => {
  const created = await client.createSession('web_user', {
    userId: 'ann', roles: ['Viewer'], idleTimeoutMs: 30 * 60_000, lifetimeMs: 3_600_000,
  });
  const { session } = created;
  assert.deepEqual(
    [session.kind, session.userId, session.state, session.idleTimeoutMs, session.lifetimeMs],
    ['web_user', 'ann', 'open', 1_800_000, 3_600_000],
  );
  const who = await client.authenticate(created.token, ['viewBasic', 'editSales']);
  assert.deepEqual(
    [who.sessionId, who.userId, who.tenant, who.kind, who.roles, who.granted, who.allGranted],
    [session.sessionId, 'ann', 'acme', 'web_user', ['viewer'], { viewBasic: true, editSales: false }, false],
  );
  assert.ok(who.expiresAt! > new Date());
  assert.ok((await client.authenticate(created.token)).allGranted); // nothing asked
});

test('sessions are named by token or id, and listed', async () => {
  const created = await client.createSession('web_user', { userId: 'bea' });
  const byId = await client.getSession({ sessionId: created.session.sessionId });
  assert.equal(byId.sessionId, (await client.getSession(created.token)).sessionId);
  assert.ok((await client.touchSession(byId))! > new Date());
  const page = await client.listSessions({ userId: 'bea' });
  assert.deepEqual(page.sessions.map((s) => s.sessionId), [created.session.sessionId]);
  assert.equal((await client.closeSession(created.session, { error: 'boom' })).endReason, 'failed');
  await assert.rejects(client.getSession(created.token), SessionEnded);
  assert.equal((await client.listSessions({ userId: 'bea', state: 'ended' })).sessions[0].endReason, 'failed');
});

test('privileges are set, checked, promoted and demoted', async () => {
  const { token } = await client.createSession('web_user', { userId: 'cid', privileges: ['viewBasic'] });
  assert.ok(await client.hasPrivilege(token, 'viewBasic'));
  assert.ok(!(await client.hasPrivilege(token, 'editSales')));
  assert.deepEqual(await client.setPrivileges(token, { roles: ['Manager'] }), ['editsales', 'viewbasic', 'viewsales']);
  assert.deepEqual(await client.checkPrivileges(token, ['admin', 'viewSales'], 'any'), {
    granted: true,
    held: { admin: false, viewSales: true },
  });
  assert.ok(!(await client.checkPrivileges(token, ['admin', 'viewSales'])).granted);
  const promotion = await client.promote(token, 'admin', 5 * 60_000);
  assert.ok(await client.hasPrivilege(token, 'admin'));
  const held = await client.getPrivileges(token);
  assert.deepEqual([held.promotions.map((p) => p.promotionId), held.roles], [[promotion.promotionId], ['manager']]);
  assert.ok((await client.demote(token, promotion.promotionId)) > 0);
  assert.ok(!(await client.hasPrivilege(token, 'admin')));
  assert.ok((await client.clearPrivileges(token)) > 0);
  assert.deepEqual((await client.getPrivileges(token)).privileges, []);
});

test('logs are written, and queried with an admin key', async () => {
  const { token } = await client.createSession('web_call', { userId: 'dora' });
  const at = new Date('2026-01-02T03:04:05.123Z');
  assert.equal(await client.log(token, ['cart opened', { message: 'price lookup slow', level: 'warning', clientTime: at }]), 2);
  const { sessionId } = await client.closeSession(token);
  const admin = server.client('acme-admin');
  try {
    const { records } = await admin.queryLogs({ sessionId });
    assert.deepEqual(records.map((r) => [r.level, r.message]), [['info', 'cart opened'], ['warning', 'price lookup slow']]);
    assert.deepEqual([records[1].clientTime, records[0].userId], [at, 'dora']);
    const warnings = await admin.queryLogs({ sessionId, minLevel: 'warning' });
    assert.deepEqual(warnings.records.map((r) => r.message), ['price lookup slow']);
  } finally {
    admin.close();
  }
});

test('watchSessions streams the events of a user', async () => {
  const first = await client.createSession('web_user', { userId: 'eve' });
  const events = client.watchSessions({ userId: 'eve', afterSequence: first.sequence - 1, timeoutMs: 10_000 });
  const next = async () => (await events.next()).value!;
  assert.equal((await next()).type, 'created');
  await client.putStorage(first.token, { a: 1 });
  await client.closeSession(first.token);
  assert.deepEqual([(await next()).type, (await next()).type], ['storage_changed', 'closed']);
  await events.return(undefined);
});

test("another tenant's key does not see the session", async () => {
  const created = await client.createSession('web_user', { userId: 'gail' });
  const other = server.client('globex');
  try {
    await assert.rejects(other.authenticate(created.token), SessionNotFound);
    await assert.rejects(other.getSession(created.session), SessionNotFound);
    assert.deepEqual((await other.listSessions({ userId: 'gail' })).sessions, []);
    const own = await other.createSession('web_user', { userId: 'gail' });
    assert.equal((await other.authenticate(own.token)).tenant, 'globex');
  } finally {
    other.close();
  }
  assert.equal((await client.authenticate(created.token)).tenant, 'acme');
});

// The web-login flow of examples/web-login.ts and the Express middleware example, against sessiond.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';

import express from 'express';

import { type Client, LoginRequired, SessionEnded } from '@sessiond/client';

import { sessiond } from '../examples/express-middleware.js';
import { addToCart, main, signIn, signOut } from '../examples/web-login.js';
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

test('a user signs in, fills a cart, and after signing out must sign in again', async () => {
  const token = await signIn(client, 'alice');
  assert.deepEqual(await addToCart(client, token, 'book'), ['book']);
  assert.deepEqual(await addToCart(client, token, 'pen'), ['book', 'pen']);
  assert.deepEqual((await client.getStorage(token)).values, { cart: ['book', 'pen'] });
  const { sessionId } = await client.getSession(token);
  await signOut(client, token);

  const ended = await addToCart(client, token, 'lamp').then(
    () => assert.fail('a closed session must not be used'),
    (error: unknown) => error,
  );
  assert.ok(ended instanceof SessionEnded && ended instanceof LoginRequired);
  assert.deepEqual([ended.reason, ended.endReason], ['SESSION_CLOSED', 'closed']);

  const admin = server.client('acme-admin');
  const { records } = await admin.queryLogs({ sessionId });
  admin.close();
  assert.deepEqual(records.map((r) => r.message), ['alice added book to the cart', 'alice added pen to the cart']);
});

test('the example runs as a program', async (t) => {
  const printed: unknown[][] = [];
  t.mock.method(console, 'log', (...args: unknown[]) => printed.push(args));
  await main(server.address, server.keys.acme);
  assert.deepEqual(printed, [[['book'], ['book', 'pen']], ['sign in again:', 'SESSION_CLOSED']]);
});

test('a session without the privilege may not add to the cart', async () => {
  const { token } = await client.createSession('web_user', { userId: 'victor', roles: ['Viewer'], storage: { cart: [] } });
  await assert.rejects(addToCart(client, token, 'book'), /forbidden: editSales/);
  assert.deepEqual((await client.getStorage(token)).values, { cart: [] });
});

test('the Express middleware puts the identity on the request and answers 401 or a redirect to sign in again', async () => {
  const app = express();
  app.get('/hello', sessiond(client, ['viewSales']), (req, res) => {
    res.type('text').send(`hello ${req.identity!.userId}`);
  });
  app.get('/shop', sessiond(client, [], { signInUrl: '/sign-in' }), (req, res) => {
    res.type('text').send(`shop for ${req.identity!.userId}`);
  });
  const listener = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => listener.once('listening', resolve));
  const base = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const answer = await fetch(base + path, { headers, redirect: 'manual' });
    return [answer.status, answer.status === 302 ? answer.headers.get('location') : await answer.text()];
  };
  try {
    const { token } = await client.createSession('web_user', { userId: 'wanda', roles: ['Manager'] });
    const viewer = (await client.createSession('web_user', { userId: 'walt', roles: ['Viewer'] })).token;
    assert.deepEqual(await get('/hello', { cookie: `theme=dark; session=${token}` }), [200, 'hello wanda']);
    assert.deepEqual(await get('/hello', { authorization: `Bearer ${token}` }), [200, 'hello wanda']);
    assert.deepEqual(await get('/hello', { cookie: `session=${viewer}` }), [403, 'forbidden']);
    assert.deepEqual(await get('/hello'), [401, 'sign in again (TOKEN_MISSING)']);
    assert.deepEqual(await get('/hello', { cookie: 'session=nonsense' }), [401, 'sign in again (TOKEN_MALFORMED)']);
    assert.deepEqual(await get('/shop', { cookie: `session=${viewer}` }), [200, 'shop for walt']);
    await client.closeSession(token);
    assert.deepEqual(await get('/hello', { cookie: `session=${token}` }), [401, 'sign in again (SESSION_CLOSED)']);
    assert.deepEqual(await get('/shop', { cookie: `session=${token}` }), [302, '/sign-in']);
  } finally {
    listener.close();
  }
});

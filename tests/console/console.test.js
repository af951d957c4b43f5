// The web console in headless Chromium (Debian's chromium driven by
// playwright-core), against a fresh sessiond with API keys and the console
// on (see ../node/sessiond-server.js). Data is made through the gRPC API
// with the Node.js client, and what the console does is checked there too;
// on Postgres through another replica sharing the database.
//
// Screenshots of every page go to $SESSIOND_CONSOLE_SCREENSHOTS (default: a
// temporary directory) and are listed at the end.
//
// Run by tests/console/run.sh, which installs the browser and packages.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';

import { connect, fromValue, toValues, unary } from '../node/sessiond-client.js';
import { startSessiond } from '../node/sessiond-server.js';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const SHOTS = process.env.SESSIOND_CONSOLE_SCREENSHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-console-'));
fs.mkdirSync(SHOTS, { recursive: true });
const shots = [];

// What a log message and a storage value hold: markup that would run or
// show if the console did not escape it.
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script><b>bold</b>';

// With a Postgres database (SESSIOND_CONSOLE_DATABASE_URL), two replicas
// share it: the console is served by one, and the API calls go to the other.
const DATABASE_URL = process.env.SESSIOND_CONSOLE_DATABASE_URL;

let server;
let apiServer;
let service;
let browser;
let base;
let anyTestFailed = false;

before(async () => {
  server = await startSessiond({ console: true, databaseUrl: DATABASE_URL });
  apiServer = DATABASE_URL ? await startSessiond({ databaseUrl: DATABASE_URL }) : server;
  base = `http://${server.consoleAddress}`;
  service = connect(apiServer.address, apiServer.keys.service);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
});

afterEach((t) => {
  if (!t.passed) anyTestFailed = true;
});

after(async () => {
  if (anyTestFailed) process.stderr.write(`---- sessiond log ----\n${server?.logTail()}\n----------------------\n`);
  await browser?.close();
  service?.close();
  if (apiServer !== server) await apiServer?.cleanUp();
  await server?.cleanUp();
  process.stdout.write(`Screenshots (${shots.length}) in ${SHOTS}:\n${shots.map((s) => `  ${s}\n`).join('')}`);
});

async function shoot(page, name) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/** A page in a new browser context, signed in with the admin key. */
async function signedIn(options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  await page.getByLabel('Admin API key').fill(server.keys.admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/sessions`);
  return page;
}

function create(userId, extra = {}) {
  return unary(service.sessions, 'CreateSession', { kind: 'SESSION_KIND_WEB_USER', userId, ...extra });
}

const byId = (created) => ({ sessionId: created.session.sessionId });

describe('signing in', () => {
  test('a visit without a key is sent to the sign-in form and shown no session', async () => {
    const created = await create('nobody-sees-me');
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/sessions`);
    assert.equal(page.url(), `${base}/login`);
    await page.getByLabel('Admin API key').waitFor();
    assert.ok(!(await page.content()).includes(created.session.sessionId));
    await shoot(page, 'sign-in');
    for (const url of ['/sessions', `/sessions/${created.session.sessionId}`, '/logs', '/live']) {
      const answer = await page.request.get(`${base}${url}`, { maxRedirects: 0 });
      assert.equal(answer.status(), 303, url);
      assert.equal(answer.headers().location, '/login', url);
    }
    for (const url of ['/live/figures', '/live/events', '/logs/follow']) {
      assert.equal((await page.request.get(`${base}${url}`)).status(), 401, url);
    }
    const revoke = await page.request.post(`${base}/sessions/${created.session.sessionId}/revoke`, { maxRedirects: 0 });
    assert.equal(revoke.status(), 401);
    await unary(service.sessions, 'GetSession', { session: byId(created) });
    await context.close();
  });

  test('an unknown key and a service key are refused', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    await page.getByLabel('Admin API key').fill('sdk_notAKeyThisServerKnows0000000000000000000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'unknown API key' }).waitFor();
    assert.ok(!(await page.content()).includes('sdk_notAKey'), 'the page repeats the key');
    await page.getByLabel('Admin API key').fill(server.keys.service);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'the console needs an admin key' }).waitFor();
    assert.deepEqual(await context.cookies(), []);
    await context.close();
  });

  test('the key is kept in an HttpOnly, SameSite=Strict cookie, never in a URL', async () => {
    const page = await signedIn();
    const [cookie] = await page.context().cookies();
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.ok(!page.url().includes(server.keys.admin));
    assert.ok(!(await page.content()).includes(server.keys.admin));
    assert.equal(await page.evaluate(() => document.cookie), '');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${base}/login`);
    await page.goto(`${base}/sessions`);
    assert.equal(page.url(), `${base}/login`);
    await page.context().close();
  });
});

describe('sessions', () => {
  test('the table is searched by user and paged', async () => {
    const user = `pager-${Date.now()}`;
    const made = [];
    for (let i = 0; i < 30; i += 1) made.push((await create(user)).session.sessionId);
    const page = await signedIn();
    await page.getByLabel('User id').fill(user);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/user=/);
    const rows = page.locator('table.sessions tbody tr');
    assert.equal(await rows.count(), 25);
    await shoot(page, 'sessions');
    const first = await rows.locator('td:first-child').allTextContents();
    await page.getByRole('link', { name: 'Next page' }).click();
    await page.waitForURL(/after=/);
    assert.equal(await rows.count(), 5);
    const second = await rows.locator('td:first-child').allTextContents();
    assert.deepEqual(new Set([...first, ...second]), new Set(made));
    assert.equal(await page.getByRole('link', { name: 'Next page' }).count(), 0);
    await page.getByLabel('Kind').selectOption('web_call');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('No sessions match.').waitFor();
    await page.context().close();
  });

  test('input the API refuses is refused with its message', async () => {
    const page = await signedIn();
    const answer = await page.goto(`${base}/sessions?id=not-a-session-id`);
    assert.equal(answer.status(), 400);
    await page.getByRole('alert').filter({ hasText: 'InvalidArgument: invalid session_id' }).waitFor();
    await page.getByRole('alert').filter({ hasText: 'session_id: must be' }).waitFor();
    const unknown = await page.goto(`${base}/sessions/${'0'.repeat(32)}`);
    assert.equal(unknown.status(), 404);
    await page.getByRole('alert').filter({ hasText: 'NotFound: session not found' }).waitFor();
    await page.context().close();
  });

  test('a session page shows storage, privileges, log and timeline, markup as text', async () => {
    const created = await create('mallory', {
      roles: ['Manager'],
      storage: toValues({ note: HOSTILE, cart: { items: ['book'], total: 12.5 } }),
    });
    const session = byId(created);
    await unary(service.privileges, 'Promote', { session, privilege: 'editSales', duration: { seconds: 600 } });
    await unary(service.logs, 'Log', {
      session,
      entries: [
        { level: 'LOG_LEVEL_INFO', message: 'cart opened' },
        { level: 'LOG_LEVEL_ERROR', message: HOSTILE, exception: 'PaymentError: <em>declined</em>', stackTrace: 'at pay (shop.js:1)\nat main (shop.js:9)' },
      ],
    });
    await unary(service.sessions, 'CloseSession', { session, error: 'payment failed' });

    const page = await signedIn();
    await page.goto(`${base}/sessions?id=${created.session.sessionId}`);
    await page.waitForURL(`${base}/sessions/${created.session.sessionId}`);
    const storage = await page.getByLabel('Storage as JSON').textContent();
    assert.deepEqual(JSON.parse(storage), { note: HOSTILE, cart: { items: ['book'], total: 12.5 } });
    await page.getByText(HOSTILE, { exact: true }).first().waitFor();
    await page.getByText('PaymentError: <em>declined</em>').waitFor();
    await page.getByText('Stack trace').click();
    await page.getByText('at main (shop.js:9)', { exact: false }).waitFor();
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('main b, main img, main em, main script').count(), 0);
    const text = await page.locator('main').textContent();
    for (const expected of ['manager', 'editsales', 'ended: failed', 'payment failed', 'created', 'closed', 'cart opened', 'error']) {
      assert.ok(text.includes(expected), `the session page shows ${expected}`);
    }
    await shoot(page, 'session');
    await page.context().close();
  });

  test('a revoke from the table, confirmed, takes effect through the API', async () => {
    const user = `victim-${Date.now()}`;
    const created = await create(user);
    const page = await signedIn();
    await page.goto(`${base}/sessions?user=${user}`);
    await page.getByRole('link', { name: `Revoke session ${created.session.sessionId}` }).click();
    await page.getByRole('heading', { name: 'Revoke session' }).waitFor();
    await shoot(page, 'revoke');
    // Until confirmed, nothing happened.
    await unary(service.sessions, 'GetSession', { session: byId(created) });
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.waitForURL(`${base}/sessions/${created.session.sessionId}`);
    await page.getByText('ended: revoked').first().waitFor();
    const refused = await unary(service.sessions, 'GetSession', { session: byId(created) }).then(
      () => assert.fail('the revoked session still answers'),
      (error) => error,
    );
    assert.equal(refused.details, 'session has ended: revoked');
    await page.context().close();
  });

  test('a revoke without the form token, or from another site, is refused', async () => {
    const created = await create(`csrf-${Date.now()}`);
    const page = await signedIn();
    const url = `${base}/sessions/${created.session.sessionId}/revoke`;
    const forged = await page.request.post(url, { form: { csrf: 'guessed' }, maxRedirects: 0 });
    assert.equal(forged.status(), 403);
    await page.goto(url);
    const token = await page.locator('input[name=csrf]').first().inputValue();
    const elsewhere = await page.request.post(url, {
      form: { csrf: token },
      headers: { origin: 'https://elsewhere.example' },
      maxRedirects: 0,
    });
    assert.equal(elsewhere.status(), 403);
    await unary(service.sessions, 'GetSession', { session: byId(created) });
    await page.context().close();
  });
});

describe('logs', () => {
  test('logs are searched by level and user, and followed live', async () => {
    const user = `logger-${Date.now()}`;
    const logged = async (level, message) => {
      const created = await create(user);
      await unary(service.logs, 'Log', { session: byId(created), entries: [{ level, message }] });
      await unary(service.sessions, 'CloseSession', { session: byId(created) });
    };
    await logged('LOG_LEVEL_INFO', 'just info');
    await logged('LOG_LEVEL_ERROR', `first failure ${HOSTILE}`);
    const page = await signedIn();
    await page.goto(`${base}/logs`);
    await page.getByLabel('Minimum level').selectOption('error');
    await page.getByLabel('User id').fill(user);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/level=error/);
    const rows = page.locator('table.logs tbody tr');
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.locator('td.message > div').first().textContent(), `first failure ${HOSTILE}`);
    await page.getByRole('button', { name: 'Follow new entries' }).click();
    await page.getByRole('status').filter({ hasText: 'Following' }).waitFor();
    await logged('LOG_LEVEL_INFO', 'not an error');
    await logged('LOG_LEVEL_FATAL', `second failure ${HOSTILE}`);
    await rows.nth(1).waitFor({ timeout: 10_000 });
    assert.equal(await rows.nth(1).locator('td.message > div').first().textContent(), `second failure ${HOSTILE}`);
    assert.equal(await rows.count(), 2);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await shoot(page, 'logs');

    const bad = await page.goto(`${base}/logs?from=yesterday`);
    assert.equal(bad.status(), 400);
    await page.getByRole('alert').filter({ hasText: 'start_time' }).waitFor();
    await page.context().close();
  });
});

describe('logs by endpoint', () => {
  test('logs are searched by endpoint, each entry showing its session\'s endpoint', async () => {
    const user = `endpoint-${Date.now()}`;
    for (const endpoint of ['checkout', 'health']) {
      const created = await create(user, { labels: { endpoint } });
      await unary(service.logs, 'Log', {
        session: byId(created),
        entries: [{ level: 'LOG_LEVEL_ERROR', message: `at ${endpoint}` }],
      });
      await unary(service.sessions, 'CloseSession', { session: byId(created) });
    }
    const page = await signedIn();
    await page.goto(`${base}/logs?user=${user}`);
    const rows = page.locator('table.logs tbody tr');
    assert.equal(await rows.count(), 2);
    await page.getByLabel('Endpoint').fill('checkout');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/endpoint=checkout/);
    assert.equal(await rows.count(), 1);
    assert.equal(await rows.first().locator('td.message > div').first().textContent(), 'at checkout');
    assert.equal(await rows.first().locator('td[data-label="Endpoint"]').textContent(), 'checkout');
    await page.context().close();
  });
});

describe('logs of open sessions', () => {
  test('an open session logged continuously shows its entries at once, followed live', async () => {
    const user = `open-${Date.now()}`;
    const created = await create(user);
    const page = await signedIn();
    await page.goto(`${base}/logs?user=${user}`);
    await page.getByRole('button', { name: 'Follow new entries' }).click();
    await page.getByRole('status').filter({ hasText: 'Following' }).waitFor();
    await unary(service.logs, 'Log', {
      session: byId(created),
      entries: [{ level: 'LOG_LEVEL_ERROR', message: `while open ${HOSTILE}`, exception: 'Boom' }],
    });
    const rows = page.locator('table.logs tbody tr');
    await rows.first().waitFor({ timeout: 10_000 });
    assert.equal(await rows.first().locator('td.message > div').first().textContent(), `while open ${HOSTILE}`);
    await page.goto(`${base}/sessions/${created.session.sessionId}`);
    await page.getByText(`while open ${HOSTILE}`, { exact: true }).waitFor();
    assert.ok((await page.locator('main').textContent()).includes('open'));
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    await page.context().close();
  });
});

describe('live', () => {
  test('live events arrive as they happen, beside the figures', async () => {
    const page = await signedIn();
    await page.goto(`${base}/live`);
    await page.getByRole('status').filter({ hasText: 'Following events' }).waitFor();
    assert.ok(/^\d+\.\d+\.\d+/.test(await page.locator('#server-version').textContent()));
    assert.ok((await page.locator('#server-store').textContent()).startsWith(DATABASE_URL ? 'postgres' : 'embedded'));
    const created = await create(`live-${Date.now()}`);
    const row = page.locator('table.events tbody tr').filter({ hasText: created.session.sessionId.slice(0, 12) });
    await row.waitFor({ timeout: 10_000 });
    assert.ok((await row.textContent()).includes('created'));
    await page.locator('#calls-per-second').filter({ hasNotText: '—' }).waitFor({ timeout: 10_000 });
    const open = Number(await page.locator('#open-sessions').textContent());
    assert.ok(open >= 1, `open sessions: ${open}`);
    await shoot(page, 'live');
    await page.context().close();
  });
});

describe('keyboard', () => {
  test('signing in and revoking work with the keyboard alone', async () => {
    const created = await create(`keys-${Date.now()}`);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    // The key field has the focus on arrival. Browsers apply autofocus on a
    // rendering step that may come after the load event, so wait for it.
    await page.waitForFunction(() => document.activeElement?.id === 'key', null, { timeout: 10_000 });
    await page.keyboard.type(server.keys.admin);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/sessions`);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
    await page.goto(`${base}/sessions/${created.session.sessionId}/revoke`);
    let focused = '';
    for (let i = 0; i < 12 && focused !== 'Revoke'; i += 1) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement.textContent);
    }
    assert.equal(focused, 'Revoke', 'the Revoke button is reached with Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/sessions/${created.session.sessionId}`);
    await assert.rejects(unary(service.sessions, 'GetSession', { session: byId(created) }), /revoked/);
    await context.close();
  });
});

describe('narrow screens', () => {
  test('every page fits a phone-wide screen', async () => {
    const page = await signedIn({ viewport: { width: 360, height: 740 } });
    for (const [name, url] of [['sessions', '/sessions'], ['logs', '/logs'], ['live', '/live']]) {
      await page.goto(`${base}${url}`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${url} is ${overflow}px wider than the screen`);
      await shoot(page, `narrow-${name}`);
    }
    await page.context().close();
  });
});

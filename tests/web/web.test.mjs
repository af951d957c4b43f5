// sessiond's HTTP faces as curl and a browser see them. One sessiond, with
// API keys and one CORS origin allowed, serves:
//
// - curl: the Connect protocol's unary form with JSON on HTTP/1.1 (the
//   README's commands), its error bodies and the bad-input set;
// - a page in headless Chromium (Debian's, driven by playwright-core),
//   loaded from the allowed origin: gRPC-Web calls, a WatchSessions stream
//   and Connect JSON calls, with errors carrying their google.rpc details;
//   the same page from another origin is refused by CORS.
//
// tests/web/run.sh installs the packages, generates the page's code and
// bundles it before running this file with node's test runner.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as pause } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '../..');
const BINARY = process.env.SESSIOND_BIN || path.join(REPO_ROOT, 'target/debug/sessiond');
const CHROMIUM = process.env.SESSIOND_CHROMIUM || '/usr/bin/chromium';
// The flags the browser runs with: no sandbox (CI runs as root), no GPU,
// nothing fetched in the background.
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const READY_WITHIN_MS = 10_000;
const MAX_REQUEST_BYTES = 65_536;

/** A loopback port that nothing listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A new API key and its hash, from `sessiond hash-key --generate`. */
function generateApiKey() {
  const printed = execFileSync(BINARY, ['hash-key', '--generate'], { env: cleanEnv(), encoding: 'utf8' });
  const field = (name) => printed.match(new RegExp(`^${name}:\\s*(\\S+)\\s*$`, 'm'))[1];
  return { key: field('key'), hash: field('hash') };
}

/** The environment without any SESSIOND_* setting. */
function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('SESSIOND_')));
}

/** Serves page/ on a free loopback port: one origin. */
async function servePage() {
  const files = { '/': 'index.html', '/index.html': 'index.html', '/app.js': 'app.js' };
  const types = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8' };
  const server = http.createServer((request, response) => {
    const file = files[new URL(request.url, 'http://page').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': types[file.split('.').pop()] });
    response.end(fs.readFileSync(path.join(HERE, 'page', file)));
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-web-'));
let sessiond;
let base;
let key;
let allowed;
let refused;
let browser;
let exited;

before(async () => {
  allowed = await servePage();
  refused = await servePage();
  // The page watches its session by id, which a service key needs leave for.
  const service = generateApiKey();
  key = service.key;
  const keysFile = path.join(home, 'api-keys.yaml');
  fs.writeFileSync(keysFile, `keys:\n  - {name: web, tenant: acme, role: service, hash: "${service.hash}", allow: [session_ids]}\n`, { mode: 0o600 });
  const address = `127.0.0.1:${await freePort()}`;
  base = `http://${address}`;
  const log = fs.openSync(path.join(home, 'sessiond.log'), 'w');
  sessiond = spawn(BINARY, ['--listen', address, '--data-dir', path.join(home, 'data')], {
    env: {
      ...cleanEnv(),
      SESSIOND_API_KEYS_FILE: keysFile,
      SESSIOND_ROLES_FILE: path.join(REPO_ROOT, 'config/roles.yaml'),
      SESSIOND_CORS_ALLOWED_ORIGINS: allowed.origin,
      SESSIOND_MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
    },
    stdio: ['ignore', log, log],
  });
  exited = new Promise((resolve) => sessiond.once('exit', resolve));
  // Ready when health answers SERVING over the JSON face itself.
  const deadline = Date.now() + READY_WITHIN_MS;
  for (;;) {
    try {
      const answer = await fetch(`${base}/grpc.health.v1.Health/Check`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      if ((await answer.json()).status === 'SERVING') break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`sessiond did not serve within ${READY_WITHIN_MS} ms`);
    await pause(50);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
});

after(async () => {
  await browser?.close();
  if (sessiond && sessiond.exitCode === null) {
    sessiond.kill('SIGTERM');
    await exited;
  }
  await allowed?.close();
  await refused?.close();
  if (process.exitCode) {
    console.error(fs.readFileSync(path.join(home, 'sessiond.log'), 'utf8').split('\n').slice(-40).join('\n'));
  }
  fs.rmSync(home, { recursive: true, force: true });
});

/** `curl` with `args`; answers the HTTP status and the body as JSON. */
function curl(pathName, args) {
  const out = execFileSync('curl', ['-sS', '-w', '\n%{http_code}', ...args, `${base}${pathName}`], { encoding: 'utf8' });
  const cut = out.lastIndexOf('\n');
  const body = out.slice(0, cut);
  return { status: Number(out.slice(cut + 1)), body: body ? JSON.parse(body) : null };
}

/** A Connect JSON call with the API key, by curl. */
function call(pathName, body, extra = []) {
  return curl(pathName, [
    '-H', 'Content-Type: application/json',
    '-H', `Authorization: Bearer ${key}`,
    ...extra,
    '-d', typeof body === 'string' ? body : JSON.stringify(body),
  ]);
}

/** The `debug` form of the detail of `type` in a Connect error. */
function detail(error, type) {
  return error.details?.find((d) => d.type === type)?.debug;
}

describe('curl: the Connect protocol with JSON over HTTP/1.1', () => {
  test('the web-login flow', () => {
    const created = call('/sessiond.v1.SessionService/CreateSession', {
      kind: 'SESSION_KIND_WEB_USER', userId: 'alice', idleTimeout: '1800s', roles: ['Manager'],
      storage: { cart: { items: ['book', 'pen'], total: 12.5 } },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const session = { token: created.body.token };
    const has = call('/sessiond.v1.PrivilegeService/HasPrivilege', { session, privilege: 'viewBasic' });
    assert.deepEqual([has.status, has.body], [200, { granted: true }]);
    // The one call a request handler makes, served like every other.
    const who = call('/sessiond.v1.SessionService/Authenticate', { token: session.token, privileges: ['viewSales', 'admin'] });
    assert.equal(who.status, 200, JSON.stringify(who.body));
    assert.deepEqual([who.body.userId, who.body.granted], ['alice', [true, false]]);
    const storage = call('/sessiond.v1.StorageService/GetStorage', { session });
    assert.deepEqual(storage.body.values.cart, { items: ['book', 'pen'], total: 12.5 });
    const closed = call('/sessiond.v1.SessionService/CloseSession', { session });
    assert.equal(closed.body.endReason, 'END_REASON_CLOSED');
    const after = call('/sessiond.v1.SessionService/GetSession', { session });
    assert.equal(after.status, 400);
    assert.equal(after.body.code, 'failed_precondition');
    assert.equal(detail(after.body, 'google.rpc.ErrorInfo').reason, 'SESSION_CLOSED');
    assert.match(after.body.details[0].value, /^[A-Za-z0-9+/]+$/, 'value is base64 without padding');
  });

  test('bad input gets clear codes', () => {
    const create = '/sessiond.v1.SessionService/CreateSession';
    const unknownField = call(create, { kind: 'SESSION_KIND_WEB_USER', userName: 'alice' });
    assert.deepEqual([unknownField.status, unknownField.body.code], [400, 'invalid_argument']);
    assert.equal(detail(unknownField.body, 'google.rpc.BadRequest').fieldViolations[0].field, 'userName');
    const badEnum = call(create, { kind: 'SESSION_KIND_ROBOT' });
    assert.equal(detail(badEnum.body, 'google.rpc.BadRequest').fieldViolations[0].field, 'kind');
    const malformed = call(create, '{"kind": ');
    assert.equal(detail(malformed.body, 'google.rpc.ErrorInfo').reason, 'MALFORMED_REQUEST');
    const missing = call(create, { userId: 'alice' });
    assert.equal(detail(missing.body, 'google.rpc.BadRequest').fieldViolations[0].field, 'kind');
    const oversized = call(create, { kind: 'SESSION_KIND_WEB_USER', userId: 'x'.repeat(MAX_REQUEST_BYTES) });
    assert.deepEqual([oversized.status, oversized.body.code], [400, 'out_of_range']);
    const textPlain = curl(create, ['-H', 'Content-Type: text/plain', '-d', '{}']);
    assert.equal(textPlain.status, 415);
    const noKey = curl(create, ['-H', 'Content-Type: application/json', '-d', '{"kind": "SESSION_KIND_WEB_USER"}']);
    assert.deepEqual([noKey.status, noKey.body.code], [401, 'unauthenticated']);
  });
});

describe('a browser page', () => {
  async function runFlow(origin) {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/index.html`);
      await page.waitForFunction(() => typeof window.sessiondFlow === 'function');
      return await page.evaluate(([url, apiKey]) => window.sessiondFlow(url, apiKey), [base, key]);
    } finally {
      await page.close();
    }
  }

  test('calls by gRPC-Web and Connect JSON from an allowed origin, a watch stream included', async () => {
    const seen = await runFlow(allowed.origin);
    assert.equal(seen.failed, undefined, JSON.stringify(seen));
    assert.equal(seen.userId, 'alice');
    assert.equal(seen.granted, true);
    assert.equal(seen.jsonUserId, 'alice');
    assert.deepEqual(seen.events, ['CREATED', 'CLOSED']);
    for (const face of ['grpcWebClosed', 'connectJsonClosed']) {
      assert.equal(seen[face].code, 'FailedPrecondition', `${face}: ${JSON.stringify(seen[face])}`);
      assert.ok(seen[face].details.includes('google.rpc.ErrorInfo'), `${face}: ${JSON.stringify(seen[face])}`);
    }
  });

  test('is refused from an origin CORS does not allow', async () => {
    const seen = await runFlow(refused.origin);
    assert.ok(seen.failed, `refused: ${JSON.stringify(seen)}`);
    assert.match(seen.failed.message, /fetch/i, JSON.stringify(seen));
  });
});

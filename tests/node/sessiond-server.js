// A throwaway sessiond for the Node.js client test, requiring API keys.
//
// `startSessiond()` makes two API keys with `sessiond hash-key --generate`
// (one with role service, one admin, both of tenant acme), writes their
// hashes to an API keys file, and starts $SESSIOND_BIN (default
// target/debug/sessiond) on a free loopback port with a fresh data dir,
// config/roles.yaml and that keys file. It answers once grpc.health.v1
// Check says SERVING, polled for at most READY_WITHIN_MS: no fixed sleeps.
// The server's log goes to a file, shown by `logTail()`.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';

import { REPO_ROOT, connect, grpc, unary } from './sessiond-client.js';

// How long a fresh sessiond may take to answer its health check.
const READY_WITHIN_MS = 10_000;
// How long sessiond may take to stop after SIGTERM.
const STOP_WITHIN_MS = 10_000;

/** The tenant both keys belong to. */
export const TENANT = 'acme';

/** The binary to start: $SESSIOND_BIN, or cargo's debug build. */
export function sessiondBinary() {
  const binary = process.env.SESSIOND_BIN || path.join(REPO_ROOT, 'target/debug/sessiond');
  if (!fs.statSync(binary, { throwIfNoEntry: false })?.isFile()) {
    throw new Error(`no sessiond binary at ${binary}: run \`cargo build\` first`);
  }
  return binary;
}

/**
 * A new API key and its hash, from `sessiond hash-key --generate`, which
 * prints `key:  sdk_...` and `hash: sha256:...`.
 */
export function generateApiKey(binary, cwd) {
  const printed = execFileSync(binary, ['hash-key', '--generate'], { cwd, env: serverEnv({}), encoding: 'utf8' });
  const field = (name) => {
    const match = printed.match(new RegExp(`^${name}:\\s*(\\S+)\\s*$`, 'm'));
    if (!match) throw new Error(`no "${name}:" line in the output of sessiond hash-key --generate:\n${printed}`);
    return match[1];
  };
  return { key: field('key'), hash: field('hash') };
}

/** The process environment without any SESSIOND_* setting, plus `settings`. */
function serverEnv(settings) {
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('SESSIOND_'));
  return { ...Object.fromEntries(inherited), ...settings };
}

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

/**
 * Starts sessiond with API keys and waits until it serves. Answers
 * `{address, keys: {service, admin}, stop(), logTail(), cleanUp()}`; with
 * `{console: true}` also serves the web console, at `consoleAddress`; with
 * `{databaseUrl}` stores in that Postgres database.
 */
export async function startSessiond({ console: withConsole = false, databaseUrl } = {}) {
  const binary = sessiondBinary();
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-node-'));
  const keys = { service: generateApiKey(binary, home), admin: generateApiKey(binary, home) };
  const keysFile = path.join(home, 'api-keys.yaml');
  fs.writeFileSync(
    keysFile,
    [
      'keys:',
      `  - {name: node-client, tenant: ${TENANT}, role: service, hash: "${keys.service.hash}", allow: [change_privileges, session_ids]}`,
      `  - {name: node-admin, tenant: ${TENANT}, role: admin, hash: "${keys.admin.hash}"}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );

  const address = `127.0.0.1:${await freePort()}`;
  const logPath = path.join(home, 'sessiond.log');
  const log = fs.openSync(logPath, 'w');
  const consoleAddress = withConsole ? `127.0.0.1:${await freePort()}` : undefined;
  const args = ['--listen', address, '--data-dir', path.join(home, 'data')];
  if (consoleAddress) args.push('--console-listen', consoleAddress);
  const child = spawn(binary, args, {
    cwd: home,
    env: serverEnv({
      SESSIOND_API_KEYS_FILE: keysFile,
      SESSIOND_ROLES_FILE: path.join(REPO_ROOT, 'config/roles.yaml'),
      // Every closed session's log is kept, so that QueryLogs finds it.
      SESSIOND_SESSION_LOG_KEEP_ALL: 'true',
      ...(databaseUrl ? { SESSIOND_DATABASE_URL: databaseUrl } : {}),
    }),
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // Could not be started at all (e.g. not executable): no 'exit' follows.
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
  });
  let running = true;
  exited.then(() => {
    running = false;
  });

  const server = {
    address,
    consoleAddress,
    keys: { service: keys.service.key, admin: keys.admin.key },

    /** Sends SIGTERM and answers how sessiond exited: `{code, signal}`. */
    async stop() {
      if (!running) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_WITHIN_MS);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },

    /** The last lines sessiond logged, for failure reports. */
    logTail(lines = 40) {
      try {
        return fs.readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '(no log)';
      }
    },

    /** Stops sessiond if it still runs and removes its data dir and log. */
    async cleanUp() {
      await server.stop();
      fs.rmSync(home, { recursive: true, force: true });
    },
  };

  try {
    await waitUntilServing(address, () => running);
  } catch (error) {
    process.stderr.write(`---- sessiond log (last 40 lines) ----\n${server.logTail()}\n--------------------------------------\n`);
    await server.cleanUp();
    throw error;
  }
  return server;
}

/**
 * Resolves once `address` answers health Check (without an API key) with
 * SERVING. Rejects after READY_WITHIN_MS, or as soon as `isRunning()` says
 * the server has exited.
 */
async function waitUntilServing(address, isRunning) {
  const clients = connect(address);
  const giveUpAt = Date.now() + READY_WITHIN_MS;
  // Wait for the channel to connect rather than failing at once while the
  // port is still closed: each attempt then takes up to its deadline.
  const waitForReady = new grpc.Metadata({ waitForReady: true });
  try {
    while (Date.now() < giveUpAt) {
      if (!isRunning()) throw new Error(`sessiond exited before serving on ${address}`);
      const deadline = Math.min(Date.now() + 500, giveUpAt);
      try {
        const answer = await unary(clients.health, 'Check', {}, { deadline, metadata: waitForReady });
        if (answer.status === 'SERVING') return;
        await pause(50); // up but not serving yet: ask again shortly
      } catch (error) {
        if (error.code !== grpc.status.UNAVAILABLE && error.code !== grpc.status.DEADLINE_EXCEEDED) throw error;
      }
    }
    throw new Error(`sessiond was not serving on ${address} within ${READY_WITHIN_MS / 1000} s`);
  } finally {
    clients.close();
  }
}

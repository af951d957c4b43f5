// A real sessiond for the client's tests, with API keys of two tenants.
//
// `startSessiond()` makes three API keys with `sessiond hash-key --generate`
// (tenant acme: a service key and an admin key; tenant globex: a service
// key), writes their hashes to an API keys file, and starts $SESSIOND_BIN
// (default target/debug/sessiond) on a free loopback port with a fresh data
// dir, config/roles.yaml, every closed session's log kept and at most
// STORAGE_MAX_KEYS keys per session. It answers once a call gets any answer
// but UNAVAILABLE.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { Client, type SessiondClientOptions, SessiondError, Unavailable } from '@sessiond/client';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const STORAGE_MAX_KEYS = 16;
const READY_WITHIN_MS = 10_000;

export type KeyName = 'acme' | 'acme-admin' | 'globex';

export interface Server {
  address: string;
  keys: Record<KeyName, string>;
  client(key?: KeyName, overrides?: SessiondClientOptions): Client;
  /** Runs `body` with the server process stopped (SIGSTOP), continuing it (SIGCONT) after. */
  stopped<T>(body: () => Promise<T>): Promise<T>;
  stop(): Promise<void>;
}

function serverEnv(settings: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('SESSIOND_'));
  return { ...Object.fromEntries(inherited), ...settings };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function generateKey(binary: string): { key: string; hash: string } {
  const printed = execFileSync(binary, ['hash-key', '--generate'], { env: serverEnv({}), encoding: 'utf8' });
  const field = (name: string) => printed.match(new RegExp(`^${name}:\\s*(\\S+)\\s*$`, 'm'))![1];
  return { key: field('key'), hash: field('hash') };
}

/**
 * `options.args` are further command-line arguments; `options.entries`
 * further lines of the API keys file; `options.client` the client options
 * the readiness probe and `server.client()` use (e.g. `tls`).
 */
export async function startSessiond(
  options: { args?: string[]; entries?: string[]; client?: SessiondClientOptions } = {},
): Promise<Server> {
  const binary = path.resolve(process.env.SESSIOND_BIN || path.join(REPO_ROOT, 'target/debug/sessiond'));
  if (!fs.statSync(binary, { throwIfNoEntry: false })?.isFile()) {
    throw new Error(`no sessiond binary at ${binary}: run \`cargo build\` first`);
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-node-client-'));
  const keys = {} as Record<KeyName, string>;
  const lines = ['keys:'];
  for (const [name, tenant, role] of [['acme', 'acme', 'service'], ['acme-admin', 'acme', 'admin'], ['globex', 'globex', 'service']] as const) {
    const { key, hash } = generateKey(binary);
    keys[name] = key;
    // Service keys are allowed what the tests do beyond a login flow.
    const allow = role === 'service' ? ', allow: [change_privileges, session_ids]' : '';
    lines.push(`  - {name: ${name}, tenant: ${tenant}, role: ${role}, hash: "${hash}"${allow}}`);
  }
  for (const entry of options.entries ?? []) lines.push(`  - ${entry}`);
  const keysFile = path.join(home, 'api-keys.yaml');
  fs.writeFileSync(keysFile, lines.join('\n') + '\n', { mode: 0o600 });
  const address = `127.0.0.1:${await freePort()}`;
  const logPath = path.join(home, 'sessiond.log');
  const log = fs.openSync(logPath, 'w');
  const child = spawn(binary, ['--listen', address, '--data-dir', path.join(home, 'data'), ...(options.args ?? [])], {
    cwd: home,
    env: serverEnv({
      SESSIOND_API_KEYS_FILE: keysFile,
      SESSIOND_ROLES_FILE: path.join(REPO_ROOT, 'config/roles.yaml'),
      SESSIOND_SESSION_LOG_KEEP_ALL: 'true',
      SESSIOND_STORAGE_MAX_KEYS: String(STORAGE_MAX_KEYS),
    }),
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  let running = true;
  const exited = new Promise<void>((resolve) => child.once('exit', () => { running = false; resolve(); }));

  const server: Server = {
    address,
    keys,
    client: (key = 'acme', overrides = {}) => new Client(address, { apiKey: keys[key], ...options.client, ...overrides }),
    async stopped(body) {
      child.kill('SIGSTOP');
      await untilStopped(child.pid!);
      try {
        return await body();
      } finally {
        child.kill('SIGCONT');
      }
    },
    async stop() {
      if (running) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(home, { recursive: true, force: true });
    },
  };

  const probe = server.client('acme', { timeoutMs: 500 });
  try {
    for (const giveUpAt = Date.now() + READY_WITHIN_MS; ; await pause(50)) {
      if (!running) throw new Error(`sessiond exited before serving:\n${fs.readFileSync(logPath, 'utf8')}`);
      if (Date.now() > giveUpAt) throw new Error(`sessiond was not serving on ${address} within ${READY_WITHIN_MS} ms`);
      try {
        await probe.getSession({ sessionId: '00000000' });
      } catch (error) {
        if (error instanceof Unavailable) continue;
        if (error instanceof SessiondError) break;
        throw error;
      }
    }
  } catch (error) {
    await server.stop();
    throw error;
  } finally {
    probe.close();
  }
  return server;
}

/**
 * Resolves once every thread of process `pid` is stopped. SIGSTOP takes
 * effect when one of the process's threads next runs and takes it, then
 * stops the others: on a busy machine that thread may wait for a CPU while
 * the others answer the next call.
 */
async function untilStopped(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const states = fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
      try {
        // `tid (comm) state …`: the name may hold spaces, so read after its `)`.
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 1).trim().split(' ')[0];
      } catch {
        return 'T'; // a thread that exited
      }
    });
    if (states.every((state) => state === 'T' || state === 't')) return;
    await pause(1);
  }
  throw new Error(`sessiond (pid ${pid}) did not stop within 10 s of SIGSTOP`);
}

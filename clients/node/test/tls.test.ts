// TLS and mutual TLS: a sessiond serving TLS with a client CA, certificates made by openssl.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Client, Unauthenticated, Unavailable } from '@sessiond/client';

import { type Server, startSessiond } from './server.js';

// The certificate names 127.0.0.1 and localhost; TLS's server name must be a host name.
const channelOptions = { 'grpc.ssl_target_name_override': 'localhost' };
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

let certs: string;
let server: Server;
const file = (name: string) => path.join(certs, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certs, stdio: 'pipe' });
}

/** `name`.crt and `name`.key, signed by the CA. */
function certificate(name: string, usage: string, extra = ''): void {
  fs.writeFileSync(file(`${name}.ext`), `extendedKeyUsage=${usage}\n${extra}`);
  openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

before(async () => {
  certs = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-node-certs-'));
  openssl('req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=test CA');
  certificate('server', 'serverAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  certificate('client', 'clientAuth');
  certificate('stranger', 'clientAuth');
  const der = new X509Certificate(fs.readFileSync(file('client.crt'))).raw;
  const robot = `{name: robot, tenant: robots, role: service, cert_sha256: "${createHash('sha256').update(der).digest('hex')}"}`;
  server = await startSessiond({
    args: ['--tls-cert', file('server.crt'), '--tls-key', file('server.key'), '--tls-client-ca', file('ca.crt')],
    entries: [robot],
    client: { tls: { caFile: file('ca.crt') }, channelOptions },
  });
});

after(async () => {
  await server?.stop();
  if (certs) fs.rmSync(certs, { recursive: true, force: true });
});

test('an API key over TLS checked against a CA file', async () => {
  const client = new Client(server.address, { apiKey: server.keys.acme, tls: { caFile: file('ca.crt') }, channelOptions });
  try {
    const { token } = await client.createSession('web_user', { userId: 'tina' });
    assert.equal((await client.authenticate(token)).tenant, 'acme');
  } finally {
    client.close();
  }
});

test("a client certificate is the caller's credential", async () => {
  const robot = new Client(server.address, {
    tls: { caFile: file('ca.crt'), certFile: file('client.crt'), keyFile: file('client.key') },
    channelOptions,
  });
  const stranger = new Client(server.address, {
    tls: { caFile: file('ca.crt'), certFile: file('stranger.crt'), keyFile: file('stranger.key') },
    channelOptions,
  });
  try {
    const { token } = await robot.createSession('web_user', { userId: 'rob' });
    assert.equal((await robot.authenticate(token)).tenant, 'robots');
    await assert.rejects(stranger.createSession('web_user'), (error: unknown) => {
      assert.ok(error instanceof Unauthenticated);
      assert.equal(error.reason, 'CLIENT_CERTIFICATE_UNKNOWN');
      return true;
    });
  } finally {
    robot.close();
    stranger.close();
  }
});

test('a server the client cannot verify, or plaintext, is Unavailable', async () => {
  const systemRoots = new Client(server.address, { apiKey: server.keys.acme, tls: true, timeoutMs: 5000, channelOptions });
  const plaintext = new Client(server.address, { apiKey: server.keys.acme, timeoutMs: 5000 });
  try {
    await assert.rejects(systemRoots.createSession('web_user'), Unavailable);
    await assert.rejects(plaintext.createSession('web_user'), Unavailable);
  } finally {
    systemRoots.close();
    plaintext.close();
  }
});

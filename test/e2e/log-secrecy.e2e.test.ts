/**
 * No secret reaches a log: a real sipledger at log level debug, with the SIP message trace on,
 * serves SIPp registrations with known passwords (right and wrong, REGISTER over UDP and TCP); its
 * whole output is then searched for the passwords, their HA1 and HA1b, the admin token, and every
 * Authorization header value SIPp sent.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const USERS = [
  { username: 'alice', password: 'Al1ce-p4ss-UNIQUE-7731' },
  { username: 'bob', password: 'B0b-p4ss-UNIQUE-9182' },
];
const WRONG = 'Wr0ng-p4ss-UNIQUE-5547';
const TOKEN = 'Adm1n-t0ken-UNIQUE-2290';

let server: RunningSipledger;
const authorizations: string[] = [];
let output = '';

beforeAll(async () => {
  server = await startSipledger(
    baseConfig({
      backends: { local: { type: 'memory', users: USERS } },
      logging: { level: 'debug', sipTrace: true },
      admin: { address: '127.0.0.1', port: 0, token: TOKEN },
    }),
  );
  const attempts: Array<{ user: string; password: string; transport: 'u1' | 't1'; ok: boolean }> = [
    { user: 'alice', password: USERS[0]!.password, transport: 'u1', ok: true },
    { user: 'bob', password: USERS[1]!.password, transport: 't1', ok: true },
    { user: 'alice', password: WRONG, transport: 'u1', ok: false },
    { user: 'nobody', password: WRONG, transport: 'u1', ok: false },
  ];
  for (const a of attempts) {
    const r = await runSipp({
      scenario: 'register.xml',
      // With port 0 in the configuration, UDP and TCP listen on different ports.
      target: `127.0.0.1:${a.transport === 't1' ? server.ports['tcp'] : server.ports['udp']}`,
      transport: a.transport,
      keys: { user: a.user, domain: 'example.com', contact: '127.0.0.1:5070', expires: '600' },
      auth: { user: a.user, password: a.password },
      timeoutMs: 4000,
    });
    expect(r.successful, `${a.user} over ${a.transport}: ${r.errors.slice(0, 400)}`).toBe(a.ok ? 1 : 0);
    for (const m of r.messages.matchAll(/^\s*(?:Proxy-)?Authorization:\s*(.+)$/gim)) authorizations.push(m[1]!.trim());
  }
  const res = await fetch(`${server.adminUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(await server.stop('SIGTERM')).toBe(0);
  output = server.output.join('\n');
});

afterAll(async () => {
  await server?.kill();
  if (server) removeDir(server.dir);
});

describe('log secrecy', () => {
  it('the run produced a full debug log, SIP trace included', () => {
    expect(server.output.length).toBeGreaterThan(20);
    expect(output).toMatch(/"level":20/);
    expect(output).toContain('REGISTER sip:example.com');
    // The digests SIPp sent: two successful registrations and two failures (and any retransmission).
    expect(authorizations.length).toBeGreaterThanOrEqual(4);
  });

  it('contains none of the passwords, HA1 or HA1b values, nor the admin token', () => {
    const secrets = [WRONG, TOKEN];
    for (const u of USERS) {
      secrets.push(u.password, md5(`${u.username}:example.com:${u.password}`), md5(`${u.username}@example.com:example.com:${u.password}`));
    }
    secrets.push(md5(`alice:example.com:${WRONG}`), md5(`nobody:example.com:${WRONG}`));
    for (const s of secrets) {
      expect(output.includes(s), `secret ${s.slice(0, 4)}... appears in the log`).toBe(false);
      expect(output.toLowerCase().includes(s.toLowerCase())).toBe(false);
    }
  });

  it('contains no Authorization header value, nor any digest response', () => {
    for (const value of authorizations) {
      expect(output.includes(value)).toBe(false);
      const response = /response="?([0-9a-f]{32,64})"?/i.exec(value)?.[1];
      expect(response).toBeDefined();
      expect(output.includes(response!), `digest response ${response!.slice(0, 6)}... appears in the log`).toBe(false);
    }
  });
});

/**
 * `sipledger ban list|add|rm`, run in-process against a file log in a temporary directory: bans are
 * events in the log (read back by a fresh projection and enforced by the guard); bad input is a usage
 * error; and while a running process holds the file log, the command goes through its admin API
 * (served here by the /bans handler over a real loopback HTTP server).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { banCommand } from '../../src/cli/commands/ban.js';
import { FileLog } from '../../src/backends/log/file-log.js';
import type { SipledgerEvent } from '../../src/core/log/events.js';
import { handleBansRequest, manualBanAdded, parseDuration, FOREVER } from '../../src/core/security/ban-admin.js';
import { BruteForceGuard } from '../../src/core/security/brute-force-guard.js';
import { BansProjection } from '../../src/projections/bans.js';

const logger = pino({ level: 'silent' });

let dir: string;
let configFile: string;
let logDir: string;

async function writeConfig(adminPort: number, token?: string): Promise<void> {
  await writeFile(
    configFile,
    [
      'domains: [{ domain: example.com, backend: local }]',
      'backends: { local: { type: memory, users: [] } }',
      `log: { type: file, dir: ${JSON.stringify(logDir)} }`,
      `admin: { address: 127.0.0.1, port: ${adminPort}${token ? `, token: ${token}` : ''} }`,
      '',
    ].join('\n'),
  );
}

async function ban(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  });
  try {
    const code = await banCommand.run([...argv, '-c', configFile]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

async function readLog(): Promise<SipledgerEvent[]> {
  const log = await FileLog.open({ dir: logDir, logger });
  const events: SipledgerEvent[] = [];
  try {
    for await (const { event } of log.read('start')) events.push(event);
  } finally {
    await log.close();
  }
  return events;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'sipledger-ban-'));
  configFile = path.join(dir, 'sipledger.yaml');
  logDir = path.join(dir, 'log');
  await writeConfig(1);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sipledger ban, on the event log', () => {
  it('add writes a ban.added event that a fresh projection and the guard enforce; list shows it; rm lifts it', async () => {
    const added = await ban('add', 'ip', '::ffff:203.0.113.7', '--for', '10m', '--reason', 'scanner from abuse report');
    expect(added).toMatchObject({ code: 0, err: '' });
    expect(added.out).toMatch(/^banned ip 203\.0\.113\.7 until \d{4}-\d\d-\d\dT/);
    expect((await ban('add', 'user', 'mallory@Example.COM', '--for', 'forever')).code).toBe(0);
    expect((await ban('add', 'ip', '198.51.100.0/24')).code).toBe(0);

    const events = await readLog();
    expect(events.map((e) => e.type)).toEqual(['ban.added', 'ban.added', 'ban.added']);
    expect(events[0]).toMatchObject({ scope: 'ip', value: '203.0.113.7', reason: 'scanner from abuse report' });
    const first = events[0] as Extract<SipledgerEvent, { type: 'ban.added' }>;
    expect(first.until - first.time).toBe(600_000);
    expect(events[1]).toMatchObject({ scope: 'user', value: 'mallory@example.com', until: FOREVER });
    // Default duration: one hour.
    const third = events[2] as Extract<SipledgerEvent, { type: 'ban.added' }>;
    expect(third.until - third.time).toBe(3_600_000);

    // As a restarted instance would: replay into the projection, ask the guard.
    const bans = new BansProjection();
    for (const e of events) bans.apply(e);
    const guard = new BruteForceGuard({ bans });
    const now = Date.now();
    expect(guard.check({ ip: '203.0.113.7', now })).toMatchObject({ banned: true, scope: 'ip' });
    expect(guard.check({ ip: '198.51.100.42', now })).toMatchObject({ banned: true, value: '198.51.100.0/24' });
    expect(guard.check({ ip: '192.0.2.1', user: 'mallory@example.com', now })).toMatchObject({ banned: true, scope: 'user' });
    expect(guard.check({ ip: '192.0.2.1', user: 'alice@example.com', now })).toEqual({ banned: false });

    const list = await ban('list');
    expect(list.code).toBe(0);
    const lines = list.out.trim().split('\n');
    expect(lines[0]).toMatch(/^SCOPE\s+VALUE\s+UNTIL\s+REASON$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual(['ip 203.0.113.7', 'ip 198.51.100.0/24', 'user mallory@example.com']);
    expect(lines[3]).toContain('forever');
    const json = JSON.parse((await ban('list', '--json')).out) as Array<{ value: string; until: string | null }>;
    expect(json.map((b) => b.value)).toEqual(['203.0.113.7', '198.51.100.0/24', 'mallory@example.com']);
    expect(json[2]!.until).toBeNull();

    const lifted = await ban('rm', 'ip', '203.0.113.7');
    expect(lifted).toMatchObject({ code: 0, out: 'lifted the ban of ip 203.0.113.7\n' });
    expect((await ban('rm', 'ip', '203.0.113.7')).out).toBe('lifted the ban of ip 203.0.113.7 (none was in force)\n');
    expect((await ban('list')).out).not.toContain('203.0.113.7');
    expect((await readLog()).filter((e) => e.type === 'ban.removed')).toHaveLength(2);
  });

  it('says so when there are no bans', async () => {
    expect(await ban('list')).toMatchObject({ code: 0, out: 'no bans in force\n' });
  });

  it('refuses bad input with exit code 2 and writes nothing to the log', async () => {
    for (const argv of [
      ['add', 'ip', 'not-an-address'],
      ['add', 'ip', '10.0.0.0/33'],
      ['add', 'host', '192.0.2.1'],
      ['add', 'user', 'alice'],
      ['add', 'ip', '192.0.2.1', '--for', '5 fortnights'],
      ['add', 'ip'],
      ['rm', 'ip', '192.0.2.1', '--for', '1h'],
      ['list', 'extra'],
      ['block', 'ip', '192.0.2.1'],
      [],
      ['add', 'ip', '192.0.2.1', '--bogus'],
    ]) {
      const r = await ban(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(/^sipledger ban: .+\nUsage: sipledger ban list/);
    }
    expect(await readLog()).toEqual([]);
  });

  it('parses durations', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('90s')).toBe(90);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('2h')).toBe(7200);
    expect(parseDuration('1.5d')).toBe(129_600);
    expect(parseDuration('forever')).toBe('forever');
    for (const bad of ['', '0', '-5m', '5y', 'm', '1h30m']) expect(parseDuration(bad), bad).toBeUndefined();
  });
});

describe('sipledger ban, while a running process holds the file log', () => {
  let server: Server | undefined;
  let held: FileLog | undefined;

  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
    await held?.close();
    held = undefined;
  });

  /** The running process: it holds the log and serves /bans from its projection. */
  async function runningInstance(token?: string): Promise<{ bans: BansProjection; requests: string[] }> {
    held = await FileLog.open({ dir: logDir, logger });
    const log = held;
    const bans = new BansProjection();
    for await (const { event } of log.read('start')) bans.apply(event);
    const requests: string[] = [];
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        requests.push(`${req.method} ${req.url}`);
        if (token && req.headers.authorization !== `Bearer ${token}`) {
          res.writeHead(401).end('{"error":"unauthorized"}');
          return;
        }
        const url = new URL(req.url ?? '/', 'http://admin');
        if (url.pathname !== '/bans') {
          res.writeHead(404).end('{"error":"not found"}');
          return;
        }
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          res.writeHead(400).end('{"error":"bad JSON"}');
          return;
        }
        void handleBansRequest(req.method ?? 'GET', url.searchParams, body, {
          bans,
          now: Date.now(),
          append: async (events) => {
            await log.append(events);
            for (const e of events) bans.apply(e);
          },
        }).then((r) => res.writeHead(r.status, { 'content-type': 'application/json' }).end(JSON.stringify(r.body)));
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    await writeConfig((server.address() as AddressInfo).port, token);
    return { bans, requests };
  }

  it('adds, lists and lifts through the admin API, and the running process enforces the ban at once', async () => {
    const running = await runningInstance('s3cret-token');
    const added = await ban('add', 'ip', '203.0.113.9', '--for', '2h', '--reason', 'manual');
    expect(added).toMatchObject({ code: 0, err: '' });
    expect(added.out).toMatch(/^banned ip 203\.0\.113\.9 until /);
    expect(running.bans.banned('ip', '203.0.113.9', Date.now())).toMatchObject({ reason: 'manual' });
    const list = await ban('list');
    expect(list.out).toMatch(/\nip\s+203\.0\.113\.9\s+\S+\s+manual\n$/);
    expect(await ban('rm', 'ip', '203.0.113.9')).toMatchObject({ code: 0, out: 'lifted the ban of ip 203.0.113.9\n' });
    expect((await ban('rm', 'ip', '203.0.113.9')).out).toContain('(none was in force)');
    expect(running.bans.banned('ip', '203.0.113.9', Date.now())).toBeUndefined();
    expect(running.requests.map((r) => r.split('?')[0])).toEqual(['POST /bans', 'GET /bans', 'DELETE /bans', 'DELETE /bans']);
    await held!.close();
    held = undefined;
    expect((await readLog()).map((e) => e.type)).toEqual(['ban.added', 'ban.removed', 'ban.removed']);
  });

  it('reports a refusal of the admin API with exit code 1, naming the status', async () => {
    await runningInstance('s3cret-token');
    await writeConfig((server!.address() as AddressInfo).port, 'wrong-token');
    const r = await ban('add', 'ip', '203.0.113.9');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/held by a running sipledger; its admin API answered 401 .*unauthorized \(ADMIN_REFUSED\)/);
  });

  it('reports an admin API that does not answer with exit code 1', async () => {
    held = await FileLog.open({ dir: logDir, logger });
    // A port nobody listens on: bind one, note it, close it.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await writeConfig(port);
    const r = await ban('list');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/admin API at http:\/\/127\.0\.0\.1:\d+\/bans did not answer.*\(ADMIN_UNREACHABLE\)/);
  });
});

describe('the /bans admin handler', () => {
  const deps = (bans = new BansProjection(), appended: SipledgerEvent[] = []) => ({
    bans,
    now: 1_000_000,
    instance: 'edge-1',
    append: async (events: readonly SipledgerEvent[]) => {
      appended.push(...events);
      for (const e of events) bans.apply(e);
    },
  });

  it('refuses malformed bodies and values with 400, other methods with 405, and appends nothing', async () => {
    const appended: SipledgerEvent[] = [];
    const d = deps(new BansProjection(), appended);
    for (const body of [null, [], 'x', { scope: 'ip' }, { scope: 'ip', value: 'x' }, { scope: 'net', value: '10.0.0.1' }, { scope: 'ip', value: '10.0.0.1', seconds: '1h' }, { scope: 'ip', value: '10.0.0.1', seconds: -1 }, { scope: 'ip', value: '10.0.0.1', until: 5 }]) {
      expect((await handleBansRequest('POST', new URLSearchParams(), body, d)).status, JSON.stringify(body)).toBe(400);
    }
    expect((await handleBansRequest('DELETE', new URLSearchParams('scope=ip&value=nope'), undefined, d)).status).toBe(400);
    expect((await handleBansRequest('PUT', new URLSearchParams(), undefined, d)).status).toBe(405);
    expect(appended).toEqual([]);
  });

  it('records the instance in the events it appends', async () => {
    const appended: SipledgerEvent[] = [];
    const r = await handleBansRequest('POST', new URLSearchParams(), { scope: 'user', value: 'eve@Example.com', seconds: 60 }, deps(new BansProjection(), appended));
    expect(r).toEqual({ status: 201, body: { ban: { scope: 'user', value: 'eve@example.com', until: 1_060_000, reason: 'added by an operator', since: 1_000_000 } } });
    expect(appended[0]).toMatchObject({ type: 'ban.added', instance: 'edge-1' });
    expect(manualBanAdded({ scope: 'ip', value: '192.0.2.1', seconds: 1e30 }, 0)).toMatchObject({ ok: true, event: { until: FOREVER } });
  });
});

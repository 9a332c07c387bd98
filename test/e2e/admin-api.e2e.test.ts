/**
 * The admin HTTP API of a real sipledger process: health, readiness, Prometheus metrics after SIPp
 * traffic, the location and audit views, and the bearer token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

let server: RunningSipledger;

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`${server.adminUrl}${path}`, { headers });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w)) && (want.length > 0 || have.length === 0)) return Number(m[3]);
  }
  return undefined;
}

beforeAll(async () => {
  server = await startSipledger(baseConfig({ admin: { address: '127.0.0.1', port: 0, token: 'admin-token-for-tests' } }));
  const ok = await runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${server.sipPort}`,
    keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5070', expires: '600' },
    auth: { user: 'alice', password: 'alice-secret' },
    timeoutMs: 5000,
  });
  expect(ok.successful).toBe(1);
  const bad = await runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${server.sipPort}`,
    keys: { user: 'bob', domain: 'example.com', contact: '127.0.0.1:5071', expires: '600' },
    auth: { user: 'bob', password: 'wrong' },
    timeoutMs: 3000,
  });
  expect(bad.successful).toBe(0);
});

afterAll(async () => {
  await server?.kill();
  if (server) removeDir(server.dir);
});

const auth = { authorization: 'Bearer admin-token-for-tests' };

describe('admin API', () => {
  it('refuses every path without the configured bearer token, and a wrong token', async () => {
    for (const p of ['/health', '/metrics', '/location', '/audit']) {
      const r = await get(p);
      expect(r.status).toBe(401);
    }
    expect((await get('/health', { authorization: 'Bearer nope' })).status).toBe(401);
    expect((await get('/health', auth)).status).toBe(200);
  });

  it('/health and /ready answer once the projections have caught up', async () => {
    const h = await get('/health', auth);
    expect(JSON.parse(h.body)).toMatchObject({ status: 'ok' });
    const r = await get('/ready', auth);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ ready: true, appliedEvents: 3 });
  });

  it('/metrics counts requests, responses, auth outcomes by cause and domain, contacts and lag', async () => {
    const r = await get('/metrics', auth);
    expect(r.status).toBe(200);
    expect(r.type).toContain('text/plain');
    const m = r.body;
    expect(sample(m, 'sipledger_requests_total', { method: 'REGISTER' })).toBe(4);
    expect(sample(m, 'sipledger_responses_total', { method: 'REGISTER', code: '401' })).toBe(3);
    expect(sample(m, 'sipledger_responses_total', { method: 'REGISTER', code: '200' })).toBe(1);
    expect(sample(m, 'sipledger_auth_events_total', { result: 'failed', cause: 'bad_password', domain: 'example.com' })).toBe(1);
    expect(sample(m, 'sipledger_auth_events_total', { result: 'ok', cause: '', domain: 'example.com' })).toBe(1);
    expect(sample(m, 'sipledger_contact_events_total', { type: 'contact.bound', domain: 'example.com' })).toBe(1);
    expect(sample(m, 'sipledger_registrations_total')).toBe(1);
    expect(sample(m, 'sipledger_live_contacts')).toBe(1);
    expect(sample(m, 'sipledger_registered_aors')).toBe(1);
    expect(sample(m, 'sipledger_ready')).toBe(1);
    expect(sample(m, 'sipledger_projection_lag_bytes')).toBe(0);
    expect(sample(m, 'sipledger_log_bytes')).toBeGreaterThan(0);
    expect(sample(m, 'sipledger_backend_users', { backend: 'local' })).toBe(4); // alice, bob, carol, dave
    expect(sample(m, 'sipledger_retransmissions_absorbed_total')).toBeGreaterThanOrEqual(0);
    // The four REGISTERs and their answers went through the transport; nothing was dropped.
    expect(sample(m, 'sipledger_transport_events_total', { event: 'messagesReceived' })).toBeGreaterThanOrEqual(4);
    expect(sample(m, 'sipledger_transport_events_total', { event: 'messagesSent' })).toBeGreaterThanOrEqual(4);
    expect(sample(m, 'sipledger_transport_events_total', { event: 'udpBacklogDrops' })).toBe(0);
    expect(sample(m, 'sipledger_connections_open')).toBe(0);
    // Every sample line belongs to a declared metric.
    const declared = new Set([...m.matchAll(/^# TYPE (\S+) (counter|gauge|histogram)$/gm)].map((x) => x[1]));
    for (const line of m.split('\n').filter((l) => l && !l.startsWith('#'))) {
      const name = line.split(/[{ ]/)[0]!;
      expect(declared.has(name) || declared.has(name.replace(/_(bucket|sum|count)$/, ''))).toBe(true);
    }
    // Latency histograms: the backend lookups and the durable appends behind the 200 OK.
    expect(m).toMatch(/^sipledger_backend_latency_seconds_count\{backend="local"\} [1-9]/m);
    expect(m).toMatch(/^sipledger_log_append_latency_seconds_bucket\{le="\+Inf"\} [1-9]/m);
  });

  it('/location lists the binding, for everyone or one AOR, now or at a past time', async () => {
    const all = JSON.parse((await get('/location', auth)).body) as { aors: Array<{ aor: string; bindings: Array<{ uri: string }> }> };
    expect(all.aors.map((a) => a.aor)).toEqual(['sip:alice@example.com']);
    expect(all.aors[0]!.bindings[0]!.uri).toBe('sip:alice@127.0.0.1:5070');
    const one = JSON.parse((await get('/location?aor=sip:bob@example.com', auth)).body) as { aors: Array<{ bindings: unknown[] }> };
    expect(one.aors[0]!.bindings).toEqual([]);
    const past = JSON.parse((await get('/location?at=2000-01-01T00:00:00Z', auth)).body) as { aors: unknown[] };
    expect(past.aors).toEqual([]);
    expect((await get('/location?at=soon', auth)).status).toBe(400);
  });

  it('/audit lists the failed attempt and filters it', async () => {
    const a = JSON.parse((await get('/audit', auth)).body) as { total: number; failures: Array<{ user: string; cause: string }> };
    expect(a.total).toBe(1);
    expect(a.failures[0]).toMatchObject({ user: 'bob', cause: 'bad_password' });
    expect(JSON.parse((await get('/audit?user=alice', auth)).body).total).toBe(0);
    expect((await get('/audit?cause=nonsense', auth)).status).toBe(400);
    expect((await get('/audit?since=whenever', auth)).status).toBe(400);
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    expect((await get('/nope', auth)).status).toBe(404);
    const res = await fetch(`${server.adminUrl}/location`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(405);
  });
});

describe('admin API off loopback', () => {
  it('refuses to start without a token when bound to a non-loopback address: exit 2, key named, no socket opened', async () => {
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'sipledger-admin-'));
    const file = `${dir}/sipledger.yaml`;
    const YAML = (await import('yaml')).default;
    (await import('node:fs')).writeFileSync(file, YAML.stringify(baseConfig({ admin: { address: '0.0.0.0', port: 0 } })));
    try {
      const r = await runCli(['start', '-c', file], { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('admin.token');
      expect(r.stdout).not.toContain('sipledger started');
      const check = await runCli(['config', 'check', file]);
      expect(check.code).toBe(2);
      expect(check.stderr).toContain('admin.token: required when the admin API listens on 0.0.0.0');
    } finally {
      removeDir(dir);
    }
  });
});

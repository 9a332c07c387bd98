/**
 * The read-side tools against a real log written by a real sipledger process driven by SIPp:
 * location show (now and at a past time), audit failed, log inspect/verify/tail, rebuild.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli } from '../support/cli.js';
import { baseConfig, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

let server: RunningSipledger;
let beforeRegistration: number;
let afterAlice: number;

async function register(user: string, password: string, contactPort: number): Promise<number> {
  const r = await runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${server.sipPort}`,
    keys: { user, domain: 'example.com', contact: `127.0.0.1:${contactPort}`, expires: '600' },
    auth: { user, password },
    timeoutMs: 5000,
  });
  return r.successful;
}

const cli = (...args: string[]) => runCli([...args, '-c', server.configFile], { cwd: server.dir });

beforeAll(async () => {
  server = await startSipledger(baseConfig());
  beforeRegistration = Date.now();
  await new Promise((r) => setTimeout(r, 20));
  expect(await register('alice', 'alice-secret', 5070)).toBe(1);
  afterAlice = Date.now();
  await new Promise((r) => setTimeout(r, 20));
  expect(await register('bob', 'not-bobs-password', 5071)).toBe(0);
});

afterAll(async () => {
  await server?.kill();
  if (server) removeDir(server.dir);
});

describe('sipledger location show', () => {
  it('lists the binding SIPp registered, read from the log while sipledger runs', async () => {
    const r = await cli('location', 'show');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/sip:alice@example\.com\s+<sip:alice@127\.0\.0\.1:5070>\s+\d+\s+1\s+udp:127\.0\.0\.1:\d+\s+sipp-test/);
    expect(r.stdout).not.toContain('bob@');
    expect(r.stdout).toContain('1 binding(s), 1 AOR(s)');
  });

  it('answers for one AOR as JSON', async () => {
    const r = await cli('location', 'show', 'alice@example.com', '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { aors: Array<{ aor: string; bindings: Array<{ uri: string }> }> };
    expect(doc.aors).toHaveLength(1);
    expect(doc.aors[0]!.aor).toBe('sip:alice@example.com');
    expect(doc.aors[0]!.bindings.map((b) => b.uri)).toEqual(['sip:alice@127.0.0.1:5070']);
  });

  it('shows the table as it was at a past time: empty before the registration, alice after it', async () => {
    const before = await cli('location', 'show', '--at', new Date(beforeRegistration).toISOString());
    expect(before.code).toBe(0);
    expect(before.stdout).toContain('no live bindings');
    const after = await cli('location', 'show', '--at', String(afterAlice), '--json');
    expect(JSON.parse(after.stdout).aors[0].aor).toBe('sip:alice@example.com');
    // After the binding's 600 s expiry it is gone again, though no event said so.
    const later = await cli('location', 'show', 'alice@example.com', '--at', new Date(afterAlice + 601_000).toISOString());
    expect(later.stdout).toContain('no live bindings for sip:alice@example.com');
  });

  it('refuses a malformed time or AOR with exit code 2', async () => {
    const badTime = await cli('location', 'show', '--at', 'yesterday-ish');
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toContain('--at');
    const badAor = await cli('location', 'show', 'not an aor');
    expect(badAor.code).toBe(2);
    // A time of day is today, local time: before the registration nothing was bound.
    const d = new Date(beforeRegistration - 60_000);
    const atClock = await cli('location', 'show', '--at', `${d.getHours()}:${String(d.getMinutes()).padStart(2, '0')}`);
    expect(atClock.code).toBe(0);
    expect(atClock.stdout).toContain('no live bindings');
    expect((await cli('location', 'show', '--at', '25:00')).code).toBe(2);
    const noSub = await cli('location');
    expect(noSub.code).toBe(2);
  });
});

describe('sipledger audit failed', () => {
  it('lists the wrong password as bad_password for bob, with a summary', async () => {
    const r = await cli('audit', 'failed');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/bob\s+example\.com\s+REGISTER\s+udp:127\.0\.0\.1:\d+\s+bad_password/);
    expect(r.stdout).toContain('by cause: bad_password 1');
    expect(r.stdout).not.toMatch(/alice\s+example\.com\s+REGISTER/);
  });

  it('filters by user, IP and cause, and prints JSON', async () => {
    const byUser = JSON.parse((await cli('audit', 'failed', '--user', 'bob', '--json')).stdout) as { total: number; failures: Array<{ user: string; cause: string; ip: string }> };
    expect(byUser.total).toBe(1);
    expect(byUser.failures[0]).toMatchObject({ user: 'bob', cause: 'bad_password', ip: '127.0.0.1' });
    expect(JSON.parse((await cli('audit', 'failed', '--user', 'alice', '--json')).stdout).total).toBe(0);
    expect(JSON.parse((await cli('audit', 'failed', '--ip', '127.0.0.1', '--cause', 'bad_password', '--json')).stdout).total).toBe(1);
    expect(JSON.parse((await cli('audit', 'failed', '--cause', 'unknown_user', '--json')).stdout).total).toBe(0);
    expect(JSON.parse((await cli('audit', 'failed', '--since', new Date(Date.now() + 60_000).toISOString(), '--json')).stdout).total).toBe(0);
  });

  it('refuses an unknown cause with exit code 2, naming the causes', async () => {
    const r = await cli('audit', 'failed', '--cause', 'wrong');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad_password');
  });
});

describe('sipledger log inspect and tail', () => {
  it('prints every record with its offset, time and type', async () => {
    const r = await cli('log', 'inspect');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/).filter(Boolean)[2])).toEqual(['auth.succeeded', 'contact.bound', 'auth.failed']);
    expect(lines[0]!.trim().startsWith('0 ')).toBe(true);
    const json = (await cli('log', 'inspect', '--json', '--type', 'contact.bound')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { offset: number; type: string; aor: string });
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ type: 'contact.bound', aor: 'sip:alice@example.com' });
    const from = await cli('log', 'inspect', '--from', String(json[0]!.offset), '--limit', '1');
    expect(from.stdout.trim().split('\n')).toHaveLength(1);
    expect(from.stdout).toContain('contact.bound');
  });

  it('tail prints the last records, then follows new ones until SIGTERM (exit 0)', async () => {
    const tail = startCli(['log', 'tail', '-n', '1', '-c', server.configFile], { cwd: server.dir });
    await tail.waitFor('auth.failed');
    expect(tail.stdout()).not.toContain('contact.bound');
    expect(await register('carol', 'carol-secret', 5072)).toBe(1);
    await tail.waitFor(/contact\.bound\s+sip:carol@example\.com/);
    expect(await tail.stop('SIGTERM')).toBe(0);
  });
});

describe('sipledger log verify and rebuild (sipledger stopped)', () => {
  let logDir: string;
  let segment: string;

  beforeAll(async () => {
    expect(await server.stop('SIGTERM')).toBe(0);
    logDir = path.join(server.dir, 'data', 'log');
    segment = path.join(logDir, readdirSync(logDir).find((f) => f.endsWith('.seg'))!);
  });

  it('verify reports an intact log and exits 0', async () => {
    const r = await cli('log', 'verify');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('records: 5');
    expect(r.stdout).toContain('ok: every acknowledged record is intact');
  });

  it('rebuild writes a fresh snapshot and logs rate and ETA when not on a terminal', async () => {
    const snapshot = path.join(server.dir, 'data', 'snapshots', 'ledger-snapshot.json');
    const r = await cli('rebuild');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('rebuilt from 5 events');
    expect(r.stdout).toContain('live bindings: 2 for 2 AOR(s)');
    const progress = r.stderr
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['msg'] === 'rebuild progress');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress[progress.length - 1]).toMatchObject({ percent: 100, events: 5 });
    expect(progress[progress.length - 1]).toHaveProperty('ratePerSecond');
    expect(progress[progress.length - 1]).toHaveProperty('etaSeconds');
    const snap = JSON.parse(readFileSync(snapshot, 'utf8')) as { position: Record<string, number> };
    expect(snap.position['0']).toBe(statSync(segment).size);
    expect(existsSync(`${snapshot}.previous`)).toBe(true);
  });

  it('rebuild draws a progress bar on a terminal (forced here with --progress bar)', async () => {
    const r = await cli('rebuild', '--progress', 'bar');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\r\[#{30}\] 100\.0%\s+5 events\s+\d+\/s\s+ETA 0s/);
    expect(r.stderr).not.toContain('rebuild progress');
  });

  it('rebuild refuses while sipledger holds the log: exit 1, naming the process', async () => {
    const again = await startSipledger(baseConfig(), { dir: server.dir });
    try {
      const r = await cli('rebuild');
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`held by process ${again.child.pid}`);
    } finally {
      expect(await again.stop('SIGTERM')).toBe(0);
    }
  });

  it('verify finds a flipped byte in the middle of the log, names its offset, reads on past it, and exits 1', async () => {
    const inspect = (await cli('log', 'inspect', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l) as { offset: number });
    const victim = inspect[2]!.offset;
    const original = readFileSync(segment);
    const damaged = Buffer.from(original);
    damaged[victim + 20] = damaged[victim + 20]! ^ 0xff;
    writeFileSync(segment, damaged);
    try {
      const r = await cli('log', 'verify');
      expect(r.code).toBe(1);
      expect(r.stdout).toContain(`CORRUPT at offset ${victim}`);
      // The records after the damaged one are still found.
      expect(r.stdout).toContain('records: 4');
      const loc = await cli('location', 'show');
      expect(loc.stderr).toContain(`corrupt region`);
      expect(loc.stdout).toContain('sip:carol@example.com');
    } finally {
      writeFileSync(segment, original);
    }
  });

  it('verify reports a torn tail (never acknowledged) without failing: exit 0', async () => {
    const original = readFileSync(segment);
    writeFileSync(segment, Buffer.concat([original, Buffer.from([0x40, 0, 0, 0, 1, 2, 3, 4, 0x7b])]));
    try {
      const r = await cli('log', 'verify', '--json');
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout) as { ok: boolean; records: number; problems: Array<{ kind: string; offset: number; bytes: number }> };
      expect(report.ok).toBe(true);
      expect(report.records).toBe(5);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'torn-tail', offset: original.length, bytes: 9 })]);
      const text = await cli('log', 'verify');
      expect(text.stdout).toContain(`TORN-TAIL at offset ${original.length}`);
    } finally {
      writeFileSync(segment, original);
    }
  });

  it('verify and inspect report a directory that holds no log with exit code 1', async () => {
    const r = await runCli(['log', 'verify', '--dir', path.join(server.dir, 'nowhere')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no event log');
  });
});

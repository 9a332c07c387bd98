/**
 * The file log's disk fills up (a 2 MiB tmpfs): a REGISTER whose binding cannot be written is
 * answered 503, never 200; once space returns registrations succeed again without a restart, and a
 * restart afterwards reads the log cleanly with every acknowledged binding.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, freePort, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { SipUdpClient, answerChallenge, buildRequest } from '../support/sip-udp-client.js';

let dir: string;
let mnt: string;
let mounted = false;
let sl: RunningSipledger | undefined;
let c: SipUdpClient;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sipledger-diskfull-'));
  mnt = path.join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  mounted = true;
  c = await SipUdpClient.open();
});
afterAll(async () => {
  c?.close();
  await sl?.stop();
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(dir, { recursive: true, force: true });
});

async function register(user: string, password: string): Promise<number | undefined> {
  const req = (auth?: string): string =>
    buildRequest({ method: 'REGISTER', uri: 'sip:example.com', from: `<sip:${user}@example.com>`, to: `<sip:${user}@example.com>`, contact: `<sip:${user}@${c.viaHost}>`, headers: ['Expires: 600', ...(auth ? [`Authorization: ${auth}`] : [])] }, c.viaHost);
  const ch = await c.request(req(), sl!.sipPort);
  if (ch?.status !== 401) return ch?.status;
  const r = await c.request(req(answerChallenge(ch.response!.get('www-authenticate')!, { username: user, password, method: 'REGISTER', uri: 'sip:example.com' })), sl!.sipPort, 15_000);
  return r?.status;
}

function fill(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

describe('file log on a full disk', () => {
  it('answers 503 while the disk is full, recovers when space returns, and restarts cleanly with every acknowledged binding', async () => {
    const port = await freePort();
    const users = Array.from({ length: 60 }, (_, i) => ({ username: `u${i}`, password: `pw-${i}` }));
    const config = baseConfig(
      {
        backends: { local: { type: 'memory', users } },
        log: { type: 'file', dir: path.join(mnt, 'log'), fsync: 'batch' },
        snapshots: { dir: path.join(dir, 'snapshots'), every: 0 },
      },
      port,
    );
    sl = await startSipledger(config, { dir });
    const acked: string[] = [];
    let next = 0;
    const registerNext = async (): Promise<number | undefined> => {
      const u = users[next++]!;
      const status = await register(u.username, u.password);
      if (status === 200) acked.push(`sip:${u.username}@example.com`);
      return status;
    };
    expect(await registerNext()).toBe(200);

    // Fill the disk; the log's last page may still hold a few records, so register until one fails.
    const filler = path.join(mnt, 'filler');
    fill(filler);
    const whileFull: Array<number | undefined> = [];
    for (let i = 0; i < 25 && !whileFull.some((s) => s !== 200); i++) whileFull.push(await registerNext());
    console.log(`REGISTERs with the log's disk full answered ${whileFull.join(', ')}`);
    expect(whileFull[whileFull.length - 1]).toBe(503);

    rmSync(filler);
    let back: number | undefined;
    for (let i = 0; i < 10 && back !== 200; i++) {
      back = await registerNext();
      if (back !== 200) await new Promise((r) => setTimeout(r, 500));
    }
    expect(back).toBe(200);
    for (let i = 0; i < 5; i++) expect(await registerNext()).toBe(200);

    // A crash, then a restart: the log reads cleanly and holds every acknowledged binding.
    await sl.kill();
    sl = await startSipledger(config, { dir });
    const loc = (await (await fetch(`${sl.adminUrl}/location`)).json()) as { aors: Array<{ aor: string }> };
    const present = new Set(loc.aors.map((a) => a.aor));
    expect(acked.filter((a) => !present.has(a))).toEqual([]);
    expect(sl.output.filter((l) => /"level":(50|60)/.test(l))).toEqual([]);
  }, 60_000);
});

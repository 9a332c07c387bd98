import { appendFile, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { FileLog } from '../../src/backends/log/file-log.js';
import { Ledger } from '../../src/core/log/ledger.js';
import { LogError, type LogRecord } from '../../src/core/log/event-log.js';
import { bound, T0 } from '../support/log-fixtures.js';

const silent = pino({ level: 'silent' });
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'sipledger-filelog-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A pino logger whose lines are kept for assertions. */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function readAll(log: FileLog): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of log.read('start')) out.push(r);
  return out;
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.seg')).sort();
}

describe('FileLog on disk', () => {
  it('group commit: appends that arrive together share writes and fsyncs', async () => {
    const log = await FileLog.open({ dir: await tempDir(), logger: silent });
    await Promise.all(Array.from({ length: 200 }, (_, i) => log.append([bound(`u${i}`, i, T0)])));
    expect(log.stats.appends).toBe(200);
    expect(log.stats.events).toBe(200);
    expect(log.stats.groups).toBeLessThan(200);
    await log.close();
  });

  it('group commit: appends made by separate callbacks of one turn of the event loop share a group', async () => {
    const log = await FileLog.open({ dir: await tempDir(), logger: silent });
    // Two immediates queued together run in the same check phase, as datagrams and database replies
    // that arrive together run in the same poll phase: each append is its own callback. (Two
    // zero-delay timers would not always do: each setTimeout reads the clock, and on a busy machine
    // a millisecond passing between them puts their callbacks in different turns of the loop.)
    const appended = await new Promise<Array<Promise<unknown>>>((resolve) => {
      const out: Array<Promise<unknown>> = [];
      setImmediate(() => out.push(log.append([bound('a', 1, T0)])));
      setImmediate(() => {
        out.push(log.append([bound('b', 2, T0)]));
        resolve(out);
      });
    });
    await Promise.all(appended);
    expect(log.stats.appends).toBe(2);
    expect(log.stats.groups).toBe(1);
    await log.close();
  });

  it('fsync=always commits each append on its own', async () => {
    const log = await FileLog.open({ dir: await tempDir(), fsync: 'always', logger: silent });
    await Promise.all(Array.from({ length: 10 }, (_, i) => log.append([bound(`u${i}`, i, T0)])));
    expect(log.stats.groups).toBe(10);
    await log.close();
  });

  it('deferrable appends made apart wait for company: one group, in order, read back once they resolve', async () => {
    // A linger far longer than a busy machine can stall between two turns of the event loop.
    const log = await FileLog.open({ dir: await tempDir(), lingerMs: 1000, logger: silent });
    const first = log.append([bound('a', 1, T0)], { deferrable: true });
    // A later turn of the event loop: without the linger this would be a group of its own.
    const second = await new Promise<Promise<unknown>>((resolve) => setTimeout(() => resolve(log.append([bound('b', 2, T0)], { deferrable: true })), 5));
    await Promise.all([first, second]);
    expect(log.stats.appends).toBe(2);
    expect(log.stats.groups).toBe(1);
    expect((await readAll(log)).map((r) => (r.event as { aor?: string }).aor)).toEqual(['sip:a@example.com', 'sip:b@example.com']);
    await log.close();
  });

  it('an append that someone waits on starts its group at once and takes lingering deferrable appends along', async () => {
    // A linger far longer than the test's time limit: the second append is what lets both resolve.
    const log = await FileLog.open({ dir: await tempDir(), lingerMs: 60_000, logger: silent });
    const deferred = log.append([bound('a', 1, T0)], { deferrable: true });
    const urgent = await new Promise<Promise<unknown>>((resolve) => setImmediate(() => resolve(log.append([bound('b', 2, T0)]))));
    await Promise.all([deferred, urgent]);
    expect(log.stats.groups).toBe(1);
    expect((await readAll(log)).map((r) => (r.event as { aor?: string }).aor)).toEqual(['sip:a@example.com', 'sip:b@example.com']);
    await log.close();
  });

  it('close writes deferrable appends that are still lingering, and they are there after reopening', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, lingerMs: 60_000, logger: silent });
    const deferred = log.append([bound('a', 1, T0)], { deferrable: true });
    await log.close();
    await deferred;
    const reopened = await FileLog.open({ dir, logger: silent });
    expect((await readAll(reopened)).map((r) => r.event.type)).toEqual(['contact.bound']);
    await reopened.close();
  });

  it('lingerMs 0 writes a deferrable append in the next group like any other', async () => {
    const log = await FileLog.open({ dir: await tempDir(), lingerMs: 0, logger: silent });
    await log.append([bound('a', 1, T0)], { deferrable: true });
    await new Promise((r) => setTimeout(r, 5));
    await log.append([bound('b', 2, T0)], { deferrable: true });
    expect(log.stats.groups).toBe(2);
    await log.close();
  });

  it('every policy keeps what it acknowledged, in order, across large groups and segment roll-overs', async () => {
    for (const fsync of ['batch', 'always', 'none'] as const) {
      const dir = await tempDir();
      const log = await FileLog.open({ dir, fsync, segmentBytes: 20_000, logger: silent });
      // Bursts of concurrent appends of one to three events: groups of well over a hundred frames.
      const positions: number[] = [];
      for (let burst = 0; burst < 3; burst++) {
        const results = await Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const n = burst * 100 + i;
            return log.append(Array.from({ length: (n % 3) + 1 }, (_, k) => bound(`u${n}`, k, T0)));
          }),
        );
        for (const r of results) positions.push(r.position['0']!);
      }
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
      expect((await segmentFiles(dir)).length).toBeGreaterThan(2);
      await log.close();
      const again = await FileLog.open({ dir, fsync, segmentBytes: 20_000, logger: silent });
      const expected = Array.from({ length: 300 }, (_, n) => Array.from({ length: (n % 3) + 1 }, () => `sip:u${n}@example.com`)).flat();
      const records = await readAll(again);
      expect(records.map((r) => (r.event as { aor?: string }).aor), fsync).toEqual(expected);
      expect(records[records.length - 1]!.position).toEqual(await again.end());
      await again.close();
    }
  });

  it('refuses an unknown fsync policy with a clear error', async () => {
    const err = await FileLog.open({ dir: await tempDir(), fsync: 'sometimes' as never, logger: silent }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogError);
    expect((err as Error).message).toMatch(/fsync must be always, batch or none/);
  });

  it('cuts a torn tail on open, says how many bytes, and keeps every whole record', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, logger: silent });
    await log.append([bound('alice', 1, T0), bound('bob', 2, T0)]);
    const identity = log.identity;
    await log.close();
    const [seg] = await segmentFiles(dir);
    const file = path.join(dir, seg!);
    const whole = (await stat(file)).size;
    // A third record cut short by a crash in the middle of its write.
    const frame = Buffer.alloc(8 + 100);
    frame.writeUInt32LE(100, 0);
    await appendFile(file, frame.subarray(0, 50));

    const { logger, lines } = capturingLogger();
    const again = await FileLog.open({ dir, logger });
    expect(lines.find((l) => l.msg === 'log tail was torn or corrupt: cut 50 bytes')).toMatchObject({ bytesCut: 50, keptBytes: whole });
    expect((await stat(file)).size).toBe(whole);
    expect((await readAll(again)).map((r) => r.event.type)).toEqual(['contact.bound', 'contact.bound']);
    // Snapshots taken before the cut can no longer be trusted.
    expect(again.identity).not.toBe(identity);
    await again.append([bound('carol', 3, T0)]);
    expect(await readAll(again)).toHaveLength(3);
    await again.close();
  });

  it('cuts a last record whose CRC does not match', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, logger: silent });
    await log.append([bound('alice', 1, T0)]);
    await log.append([bound('bob', 2, T0)]);
    await log.close();
    const file = path.join(dir, (await segmentFiles(dir))[0]!);
    const buf = await readFile(file);
    buf[buf.length - 3] = buf[buf.length - 3]! ^ 0xff;
    await writeFile(file, buf);
    const again = await FileLog.open({ dir, logger: silent });
    expect((await readAll(again)).map((r) => (r.event as { aor?: string }).aor)).toEqual(['sip:alice@example.com']);
    await again.close();
  });

  it('reports corruption inside the log as LOG_CORRUPT instead of returning garbage', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, segmentBytes: 600, logger: silent });
    for (let i = 0; i < 6; i++) await log.append([bound('alice', i, T0)]);
    await log.close();
    const files = await segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    const first = path.join(dir, files[0]!);
    const buf = await readFile(first);
    buf[20] = buf[20]! ^ 0xff;
    await writeFile(first, buf);
    const again = await FileLog.open({ dir, segmentBytes: 600, logger: silent });
    const err = await readAll(again).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LOG_CORRUPT', retriable: false });
    await again.close();
  });

  it('rolls segments at segmentBytes and reads across them', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, segmentBytes: 1000, logger: silent });
    for (let i = 0; i < 20; i++) await log.append([bound(`u${i}`, i, T0)]);
    expect((await segmentFiles(dir)).length).toBeGreaterThan(5);
    expect((await readAll(log)).map((r) => (r.event as { aor?: string }).aor)).toEqual(Array.from({ length: 20 }, (_, i) => `sip:u${i}@example.com`));
    await log.close();
  });

  it('a segment that does not follow on from the one before is set aside, not read as part of the log', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, logger: silent });
    await log.append([bound('alice', 1, T0)]);
    await log.close();
    await writeFile(path.join(dir, `${String(999_999).padStart(20, '0')}.seg`), 'junk');
    const again = await FileLog.open({ dir, logger: silent });
    expect(await readAll(again)).toHaveLength(1);
    expect((await readdir(dir)).some((f) => f.includes('.orphan-'))).toBe(true);
    await again.close();
  });

  it('one writer at a time: a second open is refused, a stale lock from a dead process is taken over', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, logger: silent });
    await expect(FileLog.open({ dir, logger: silent })).rejects.toMatchObject({ code: 'LOG_LOCKED' });
    await log.close();
    await writeFile(path.join(dir, 'LOCK'), '999999999');
    const again = await FileLog.open({ dir, logger: silent });
    await again.close();
  });

  it('an empty or missing last segment after a crash during roll-over opens cleanly', async () => {
    const dir = await tempDir();
    const log = await FileLog.open({ dir, segmentBytes: 500, logger: silent });
    for (let i = 0; i < 3; i++) await log.append([bound('alice', i, T0)]);
    await log.close();
    const files = await segmentFiles(dir);
    await truncate(path.join(dir, files[files.length - 1]!), 0);
    const again = await FileLog.open({ dir, segmentBytes: 500, logger: silent });
    await again.append([bound('bob', 9, T0)]);
    expect((await readAll(again)).map((r) => (r.event as { aor?: string }).aor)).toContain('sip:bob@example.com');
    await again.close();
  });
});

describe('Ledger over FileLog', () => {
  it('a restarted ledger has every binding it acknowledged, from the log alone and from a snapshot', async () => {
    const dir = await tempDir();
    const snapshotDir = path.join(dir, 'snapshots');
    const open = async (): Promise<Ledger> =>
      Ledger.open({ log: await FileLog.open({ dir: path.join(dir, 'log'), logger: silent }), snapshotDir, logger: silent });
    const first = await open();
    await Promise.all(Array.from({ length: 50 }, (_, i) => first.append([bound(`u${i}`, i, T0)])));
    await first.snapshot();
    await first.append([bound('late', 1, T0)]);
    await first.close();

    const second = await open();
    expect(second.appliedCount).toBe(1);
    expect(second.location.count(T0)).toBe(51);
    await second.close();

    await rm(snapshotDir, { recursive: true });
    const third = await open();
    expect(third.appliedCount).toBe(51);
    expect(third.location.aors(T0)).toHaveLength(51);
    await third.close();
  });
});

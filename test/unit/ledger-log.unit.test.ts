import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { contactRemoved, type SipledgerEvent } from '../../src/core/log/events.js';
import { Ledger } from '../../src/core/log/ledger.js';
import { MemoryLog } from '../../src/core/log/memory-log.js';
import { LogError } from '../../src/core/log/event-log.js';
import { bound, failure, oneOfEach, T0 } from '../support/log-fixtures.js';

const logger = pino({ level: 'silent' });
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'sipledger-ledger-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('Ledger over a memory log', () => {
  it('append resolves with the projection already showing the new binding (read your writes)', async () => {
    const ledger = await Ledger.open({ log: new MemoryLog(), logger });
    expect(ledger.ready).toBe(true);
    const seen: SipledgerEvent[] = [];
    ledger.onEvent((e) => seen.push(e));
    await ledger.append([bound('alice', 1, T0)]);
    expect(ledger.location.bindings('sip:alice@example.com', T0).length).toBe(1);
    expect(seen.map((e) => e.type)).toEqual(['contact.bound']);
    await ledger.close();
  });

  it('rejects an event that fails its schema with a non-retriable LogError and appends nothing', async () => {
    const log = new MemoryLog();
    const ledger = await Ledger.open({ log, logger });
    const bad = { ...bound('alice', 1, T0), q: 7 };
    const err = await ledger.append([bound('bob', 1, T0), bad]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogError);
    expect(err).toMatchObject({ code: 'LOG_INVALID_EVENT', retriable: false });
    expect((await log.end())['0']).toBe(0);
    await ledger.close();
  });

  it('rebuilds every projection from the log on open', async () => {
    const log = new MemoryLog();
    await log.append([...oneOfEach(), failure('carol', '203.0.113.5', 'unknown_user', T0 + 5), bound('dave', 4, T0)]);
    const ledger = await Ledger.open({ log, logger });
    // oneOfEach binds and then removes alice's contact; dave's stays.
    expect(ledger.location.aors(T0 + 3000)).toEqual(['sip:dave@example.com']);
    expect(ledger.audit.countByCause({ since: T0 })).toEqual([
      { key: 'bad_password', count: 1 },
      { key: 'malformed', count: 1 },
      { key: 'unknown_user', count: 1 },
    ]);
    expect(ledger.calls.get('call-1')).toMatchObject({ state: 'ended', status: 200, endedBy: 'caller' });
    expect(ledger.calls.get('call-2')).toMatchObject({ state: 'failed', status: 486 });
    await ledger.close();
  });

  it('answers "bindings of alice at 14:03" by replaying up to that time', async () => {
    const ledger = await Ledger.open({ log: new MemoryLog(), logger });
    const a = bound('alice', 1, T0);
    await ledger.append([a]);
    await ledger.append([bound('alice', 2, T0 + 2 * 60_000)]);
    await ledger.append([contactRemoved({ aor: a.aor, uri: a.uri, callId: a.callId, cseq: 9, reason: 'unregistered' }, { time: T0 + 5 * 60_000 })]);
    const at1403 = await ledger.locationAt(T0 + 3 * 60_000);
    expect(at1403.bindings(a.aor, T0 + 3 * 60_000)).toHaveLength(2);
    expect(ledger.location.bindings(a.aor, T0 + 6 * 60_000)).toHaveLength(1);
    await ledger.close();
  });

  it('restores a snapshot and replays only the tail after it', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const first = await Ledger.open({ log, logger, snapshotDir: dir });
    for (let i = 0; i < 10; i++) await first.append([bound(`u${i}`, i, T0)]);
    await first.snapshot();
    await first.append([bound('late', 99, T0)]);
    const second = await Ledger.open({ log, logger, snapshotDir: dir });
    expect(second.appliedCount).toBe(1);
    expect(second.location.aors(T0)).toEqual(first.location.aors(T0));
    expect(second.location.count(T0)).toBe(11);
  });

  it('writes a snapshot of the state at its position while events keep applying, and restores it', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const first = await Ledger.open({ log, logger, snapshotDir: dir });
    // Enough bindings for the snapshot to take several turns of the event loop to write.
    for (let i = 0; i < 3000; i += 100) await first.append(Array.from({ length: 100 }, (_, k) => bound(`u${i + k}`, 1, T0)));
    const writing = first.snapshot();
    // Applied while the snapshot is being written: a refresh of u0 and a new binding.
    await first.append([bound('u0', 1, T0 + 1000, { cseq: 50 }), bound('late', 1, T0 + 1000)]);
    await writing;
    const saved = JSON.parse(await readFile(path.join(dir, 'ledger-snapshot.json'), 'utf8')) as {
      projections: { location: { state: { bindings: Array<{ aor: string; cseq: number }> } } };
    };
    const bindings = saved.projections.location.state.bindings;
    expect(bindings).toHaveLength(3000);
    expect(bindings.find((b) => b.aor === 'sip:u0@example.com')?.cseq).toBe(bound('u0', 1, T0).cseq);
    expect(bindings.some((b) => b.aor === 'sip:late@example.com')).toBe(false);
    // The tail after the snapshot's position brings the two later events back.
    const second = await Ledger.open({ log, logger, snapshotDir: dir });
    expect(second.appliedCount).toBe(2);
    expect(second.location.count(T0 + 1000)).toBe(first.location.count(T0 + 1000));
    expect(second.location.bindings('sip:late@example.com', T0 + 1000)).toHaveLength(1);
    expect(second.location.bindings('sip:u0@example.com', T0 + 1000).map((b) => b.cseq)).toEqual([50]);
    await first.close();
    await second.close();
  });

  it('ignores a snapshot from an older projection version, from another log, or that is garbage', async () => {
    const dir = await tempDir();
    const log = new MemoryLog();
    const first = await Ledger.open({ log, logger, snapshotDir: dir });
    await first.append([bound('alice', 1, T0), bound('bob', 1, T0)]);
    await first.snapshot();
    const file = path.join(dir, 'ledger-snapshot.json');
    const snap = JSON.parse(await readFile(file, 'utf8'));

    // A state written by version 0 of the location rules must not be trusted, even though it claims more.
    snap.projections.location.version = 0;
    snap.projections.location.state.bindings.push({ ...bound('mallory', 1, T0), boundAt: T0, updatedAt: T0 });
    await writeFile(file, JSON.stringify(snap));
    const second = await Ledger.open({ log, logger, snapshotDir: dir });
    expect(second.appliedCount).toBe(2);
    expect(second.location.aors(T0)).toEqual(['sip:alice@example.com', 'sip:bob@example.com']);

    await first.snapshot();
    const other = await Ledger.open({ log: new MemoryLog(), logger, snapshotDir: dir });
    expect(other.location.count(T0)).toBe(0);

    await writeFile(file, '{"format":1,');
    const third = await Ledger.open({ log, logger, snapshotDir: dir });
    expect(third.location.count(T0)).toBe(2);
  });

  it('keeps applying after an event a projection cannot handle', async () => {
    const log = new MemoryLog();
    log.appendRaw({ type: 'contact.bound', version: 1, id: 'x', time: T0 }); // no aor, no expiresAt
    await log.append([bound('alice', 1, T0)]);
    const ledger = await Ledger.open({ log, logger });
    expect(ledger.location.aors(T0)).toEqual(['sip:alice@example.com']);
    await ledger.close();
  });
});

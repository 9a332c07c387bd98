/**
 * Damage in the middle of the last segment is not a torn tail: the records after it were
 * acknowledged and must survive a restart. Only the damaged bytes are taken out (and kept aside).
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { FileLog } from '../../src/backends/log/file-log.js';
import { bound, T0 } from '../support/log-fixtures.js';

const silent = pino({ level: 'silent' });
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function readAors(log: FileLog): Promise<string[]> {
  const out: string[] = [];
  for await (const r of log.read('start')) if (r.event.type === 'contact.bound') out.push(r.event.aor);
  return out;
}

describe('file log repair', () => {
  it('keeps the intact records that follow a damaged one, and saves the damaged bytes aside', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sl-repair-'));
    dirs.push(dir);
    const log = await FileLog.open({ dir, logger: silent });
    await log.append([bound('alice', 1, T0)]);
    await log.append([bound('bob', 2, T0)]);
    await log.append([bound('carol', 3, T0)]);
    await log.close();
    const seg = (await readdir(dir)).find((f) => f.endsWith('.seg'))!;
    const file = path.join(dir, seg);
    const bytes = await readFile(file);
    // Flip one byte inside bob's record (the middle one).
    const at = bytes.indexOf('sip:bob@example.com');
    expect(at).toBeGreaterThan(0);
    bytes[at + 4] = bytes[at + 4]! ^ 0xff;
    await writeFile(file, bytes);

    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const again = await FileLog.open({ dir, logger });
    expect(await readAors(again)).toEqual(['sip:alice@example.com', 'sip:carol@example.com']);
    expect(lines.some((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('kept the intact records after them'))).toBe(true);
    expect((await readdir(dir)).some((f) => f.includes('.damaged-'))).toBe(true);
    // The repaired log takes new appends after the surviving records.
    await again.append([bound('dave', 4, T0)]);
    expect(await readAors(again)).toEqual(['sip:alice@example.com', 'sip:carol@example.com', 'sip:dave@example.com']);
    await again.close();
  });

  it('still cuts a torn tail (garbage with no intact record after it)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sl-repair-'));
    dirs.push(dir);
    const log = await FileLog.open({ dir, logger: silent });
    await log.append([bound('alice', 1, T0)]);
    await log.close();
    const seg = (await readdir(dir)).find((f) => f.endsWith('.seg'))!;
    const file = path.join(dir, seg);
    const bytes = await readFile(file);
    await writeFile(file, Buffer.concat([bytes, Buffer.from([0x40, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7])]));
    const again = await FileLog.open({ dir, logger: silent });
    expect(await readAors(again)).toEqual(['sip:alice@example.com']);
    expect((await readdir(dir)).some((f) => f.includes('.damaged-'))).toBe(false);
    await again.close();
  });
});

import { describe, expect, it } from 'vitest';
import { writeJsonInSlices } from '../../src/core/log/json-slices.js';

async function text(value: unknown, pieceChars: number): Promise<{ text: string; pieces: number; returned: number }> {
  const pieces: string[] = [];
  const returned = await writeJsonInSlices(value, async (p) => void pieces.push(p), pieceChars);
  return { text: pieces.join(''), pieces: pieces.length, returned };
}

describe('writeJsonInSlices', () => {
  const records = Array.from({ length: 500 }, (_, i) => ({
    aor: `sip:user${i}@example.com`,
    contact: `<sip:user${i}@192.0.2.${i % 250}:5060>;expires=3600`,
    q: i % 2 === 0 ? 1 : 0.5,
    callId: `c${i}@☎ "quoted" \\ back`,
    absent: undefined,
    path: i % 3 === 0 ? ['<sip:edge.example.com;lr>'] : undefined,
    since: new Date(Date.UTC(2026, 11, 7, 12, 0, i % 60)),
  }));
  const values: unknown[] = [
    {},
    [],
    'plain',
    42,
    null,
    { format: 1, nothing: undefined, fn: () => 1, list: [1, undefined, () => 2, 'x'], nested: { empty: {}, none: [] } },
    { projections: { location: { version: 2, state: { bindings: records, newestTime: 5, sinceSweep: 0 } }, audit: { totals: { failed: { bad_password: 3 } } } } },
    { grid: Array.from({ length: 100 }, (_, i) => Array.from({ length: 80 }, (_, j) => i * j)) },
  ];

  it('writes the text JSON.stringify writes, whatever the piece size', async () => {
    for (const value of values) {
      for (const pieceChars of [1, 64, 4096, 1 << 20]) {
        const r = await text(value, pieceChars);
        expect(r.text).toBe(JSON.stringify(value));
        expect(r.returned).toBe(r.text.length);
      }
    }
  });

  it('hands large values over in several pieces, letting the event loop run between them', async () => {
    const value = values[6];
    let turns = 0;
    let running = true;
    const tick = (): void => {
      turns++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const r = await text(value, 8 * 1024);
    running = false;
    expect(r.pieces).toBeGreaterThan(5);
    // Other callbacks ran while the text was being written, not just after it.
    expect(turns).toBeGreaterThanOrEqual(r.pieces - 1);
  });

  it('refuses a value with no JSON text, like JSON.stringify', async () => {
    await expect(writeJsonInSlices(undefined, async () => undefined)).rejects.toThrow(TypeError);
    await expect(writeJsonInSlices({ n: 1n }, async () => undefined)).rejects.toThrow(TypeError);
  });
});

import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { warmUp } from '../../src/warmup.js';

const LIMITS = { maxMessageBytes: 16384, maxHeaders: 128, maxLineLength: 8192 };

function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { logger: pino({ level: 'trace' }, stream), lines };
}

describe('warmUp', () => {
  for (const fileLog of [true, false]) {
    it(`completes every simulated registration (401, then 200) and call (407, relayed, 200, ACK, BYE) over loopback UDP, ${fileLog ? 'on a file log it removes afterwards' : 'on an in-memory log'}, writing no log line`, async () => {
      const { logger, lines } = capturingLogger();
      const tmpDir = mkdtempSync(path.join(tmpdir(), 'warm-up-test-'));
      const r = await warmUp({ registrations: 300, calls: 100, limits: LIMITS, fileLog, tmpDir, logger });
      expect(r.registrations).toBe(300);
      expect(r.calls).toBe(100);
      expect(r.ms).toBeGreaterThan(0);
      // Its private instance's debug lines would be about made-up phones.
      expect(lines).toEqual([]);
      expect(readdirSync(tmpDir)).toEqual([]);
      rmSync(tmpDir, { recursive: true });
    });
  }

  it('does nothing when asked for no registrations', async () => {
    const { logger } = capturingLogger();
    expect(await warmUp({ registrations: 0, calls: 0, limits: LIMITS, fileLog: true, logger })).toEqual({ registrations: 0, calls: 0, ms: 0 });
  });
});

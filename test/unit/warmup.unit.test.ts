import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { warmUp } from '../../src/core/warmup.js';

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
  it('completes every simulated registration (401, then 200) through the request path, writing no log line', async () => {
    const { logger, lines } = capturingLogger();
    const r = await warmUp({ registrations: 300, logger });
    expect(r.registrations).toBe(300);
    expect(r.ms).toBeGreaterThan(0);
    // Its private instance's debug lines would be about made-up phones.
    expect(lines).toEqual([]);
  });

  it('does nothing when asked for no registrations', async () => {
    const { logger } = capturingLogger();
    expect(await warmUp({ registrations: 0, logger })).toEqual({ registrations: 0, ms: 0 });
  });
});

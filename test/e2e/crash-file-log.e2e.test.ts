import { describe, expect, it } from 'vitest';
import { runCrashTest } from '../stress/crash-harness.js';

describe('crash safety with the file log (fsync=batch)', () => {
  it('sipledger killed with SIGKILL 3 times under SIPp registration load loses no binding SIPp saw acknowledged', async () => {
    const r = await runCrashTest({ kills: 3, log: { type: 'file' }, rate: 150, upMs: [1500, 3500], onEvent: (m) => console.log(m) });
    console.log(`kills ${r.kills}, registrations offered ${r.registersOffered}, acknowledged ${r.acknowledged}, lost ${r.lost}, bindings after restart ${r.presentAfter}`);
    expect(r.acknowledged).toBeGreaterThan(100);
    expect(r.lostBindings).toEqual([]);
    expect(r.lost).toBe(0);
    expect(r.presentAfter).toBeGreaterThanOrEqual(r.acknowledged);
  }, 60_000);
});

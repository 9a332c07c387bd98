/**
 * A carrier's RADIUS pair under SIPp registration load: the primary FreeRADIUS is killed mid-run and
 * every registration still succeeds through the secondary; when the secondary goes silent too,
 * REGISTER is answered 503 with Retry-After, never a challenge.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFreeRadius, type FreeRadius } from '../support/freeradius.js';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

describe('RADIUS outage during a SIPp run', () => {
  let primary: FreeRadius;
  let secondary: FreeRadius;
  let proxy: RunningSipledger;

  beforeAll(async () => {
    primary = await startFreeRadius();
    secondary = await startFreeRadius();
    proxy = await startSipledger(
      baseConfig(
        {
          auth: { secret: 'test-secret-0123456789abcdef', lookupTimeoutMs: 3000 },
          backends: {
            carrier: {
              type: 'radius',
              servers: [
                { host: primary.host, port: primary.port, secret: primary.secret },
                { host: secondary.host, port: secondary.port, secret: secondary.secret },
              ],
              timeoutMs: 600,
              retries: 0,
              deadTimeMs: 30_000,
            },
          },
          domains: [{ domain: 'example.com', backend: 'carrier' }],
        },
        await freePort(),
      ),
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    if (proxy) removeDir(proxy.dir);
    await primary?.stop();
    await secondary?.stop();
  });

  it('fails over to the secondary when the primary is killed mid-run: every registration succeeds', async () => {
    const run = runSipp({
      scenario: 'register.xml',
      target: `127.0.0.1:${proxy.sipPort}`,
      keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
      auth: { user: 'alice', password: 'alice-secret' },
      calls: 40,
      rate: 10,
      timeoutMs: 30_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    await primary.stop();
    const r = await run;
    expect(r.failed, r.errors).toBe(0);
    expect(r.successful).toBe(40);
    expect(secondary.log()).toMatch(/Login OK/);
  }, 60_000);

  it('answers 503 with Retry-After when both servers are silent, never a second challenge', async () => {
    secondary.pause();
    try {
      const r = await runSipp({
        scenario: 'register.xml',
        target: `127.0.0.1:${proxy.sipPort}`,
        keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
        auth: { user: 'alice', password: 'alice-secret' },
        timeoutMs: 15_000,
      });
      expect(r.code).not.toBe(0);
      expect(r.messages).toMatch(/SIP\/2\.0 503[^\n]*\n[\s\S]*?Retry-After: \d+/);
      expect((r.messages.match(/SIP\/2\.0 401/g) ?? []).length).toBe(1);
    } finally {
      secondary.resume();
    }
  }, 40_000);
});

import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BackendUnavailableError } from '../../src/core/auth/backend.js';
import { createRadiusBackend, type RadiusBackend, type RadiusBackendOptions } from '../../src/backends/auth/radius/backend.js';
import { registerDigest } from '../support/digest.js';
import { freeUdpPort, startFreeRadius, type FreeRadius } from '../support/freeradius.js';

const logger = pino({ level: 'silent' });
const budget = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(20_000) });
const alice = () => registerDigest('alice', { password: 'alice-secret' });
const loginsOk = (server: FreeRadius): number => server.log().split('\n').filter((l) => l.includes('Login OK')).length;

describe('RADIUS verifier with two servers: failover, dead servers, silence', () => {
  let primary: FreeRadius;
  let secondary: FreeRadius;
  const backends: RadiusBackend[] = [];

  const backend = (servers: FreeRadius[] | RadiusBackendOptions['servers'], extra: Partial<RadiusBackendOptions> = {}): RadiusBackend => {
    const list = servers.map((s) => ({ host: s.host, port: s.port, secret: s.secret }));
    const created = createRadiusBackend({ name: 'radius-pair', servers: list, timeoutMs: 600, retries: 1, deadTimeMs: 60_000, logger, ...extra });
    backends.push(created);
    return created;
  };

  beforeAll(async () => {
    [primary, secondary] = await Promise.all([startFreeRadius(), startFreeRadius()]);
  });

  afterEach(async () => {
    primary.resume();
    secondary.resume();
    await Promise.all(backends.splice(0).map((b) => b.close()));
  });

  afterAll(async () => {
    await Promise.all([primary?.stop(), secondary?.stop()]);
  });

  it('uses the primary while it answers', async () => {
    const pair = backend([primary, secondary]);
    const before = [loginsOk(primary), loginsOk(secondary)];
    expect((await pair.verify(alice(), budget())).result).toBe('accept');
    expect(pair.stats.failovers).toBe(0);
    expect([loginsOk(primary), loginsOk(secondary)]).toEqual([before[0]! + 1, before[1]]);
  });

  it('fails over from a primary port nobody listens on to the live secondary', async () => {
    const deadPort = await freeUdpPort();
    const pair = backend([{ host: '127.0.0.1', port: deadPort, secret: 'testing123-sip' }, { host: secondary.host, port: secondary.port, secret: secondary.secret }]);
    const result = await pair.verify(alice(), budget());
    expect(result.result).toBe('accept');
    expect(pair.stats).toMatchObject({ failovers: 1, timeouts: 2, retransmissions: 1 });
    expect(pair.health().map((h) => h.state)).toEqual(['dead', 'alive']);
  });

  it('fails over from a hung (SIGSTOPped) primary, then skips it while it is dead', async () => {
    const pair = backend([primary, secondary]);
    primary.pause();
    expect((await pair.verify(alice(), budget())).result).toBe('accept');
    expect(pair.stats).toMatchObject({ failovers: 1, timeouts: 2 });
    // Within the dead time the primary is not tried at all: no further timeouts.
    const rejected = await pair.verify(registerDigest('alice', { password: 'wrong' }), budget());
    expect(rejected.result).toBe('reject');
    expect(pair.stats).toMatchObject({ failovers: 1, timeouts: 2 });
  });

  it('probes a dead primary with Status-Server after the dead time and uses it again once it answers', async () => {
    const pair = backend([primary, secondary], { deadTimeMs: 200 });
    primary.pause();
    expect((await pair.verify(alice(), budget())).result).toBe('accept');
    expect(pair.health()[0]!.state).toBe('dead');
    primary.resume();
    // Requests keep flowing to the secondary; once the dead time is over, each one may start a
    // background probe of the primary until it answers.
    await vi.waitFor(
      async () => {
        expect((await pair.verify(alice(), budget())).result).toBe('accept');
        expect(pair.health()[0]!.state).toBe('alive');
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(pair.stats.probes).toBeGreaterThan(0);
    const before = loginsOk(primary);
    expect((await pair.verify(alice(), budget())).result).toBe('accept');
    expect(loginsOk(primary)).toBe(before + 1);
  });

  it('throws BackendUnavailableError after a bounded number of attempts when every server is silent, then fails fast', async () => {
    const pair = backend([primary, secondary]);
    primary.pause();
    secondary.pause();
    const first = pair.verify(alice(), budget());
    await expect(first).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(first).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', retriable: true });
    // Two servers x (1 transmission + 1 retransmission), nothing more.
    expect(pair.stats).toMatchObject({ requests: 1, timeouts: 4, retransmissions: 2, failovers: 1 });
    expect(pair.health().map((h) => h.state)).toEqual(['dead', 'dead']);
    // While both are dead nothing is sent: the framework can answer 503 at once.
    await expect(pair.verify(alice(), budget())).rejects.toThrow(/every RADIUS server is marked dead/);
    expect(pair.stats).toMatchObject({ requests: 2, timeouts: 4 });
  });

  it('with every server dead and the dead time over, waits for the probe and recovers', async () => {
    const pair = backend([primary, secondary], { deadTimeMs: 100 });
    primary.pause();
    secondary.pause();
    await expect(pair.verify(alice(), budget())).rejects.toBeInstanceOf(BackendUnavailableError);
    secondary.resume();
    await vi.waitFor(async () => expect((await pair.verify(alice(), budget())).result).toBe('accept'), { timeout: 10_000, interval: 150 });
    expect(pair.health()[1]!.state).toBe('alive');
  });

  it('does not delay requests to a healthy backend while another backend waits on a hung server', async () => {
    const stuck = backend([primary], { timeoutMs: 5_000, retries: 0, name: 'radius-stuck' });
    const healthy = backend([secondary], { name: 'radius-healthy' });
    primary.pause();
    let stuckSettled = 0;
    const stuckRequests = Array.from({ length: 16 }, () =>
      stuck.verify(alice(), budget()).finally(() => {
        stuckSettled += 1;
      }),
    );
    const healthyResults = await Promise.all(Array.from({ length: 32 }, () => healthy.verify(alice(), budget())));
    expect(healthyResults.every((r) => r.result === 'accept')).toBe(true);
    expect(stuckSettled).toBe(0);
    primary.resume();
    const stuckResults = await Promise.allSettled(stuckRequests);
    // Once resumed, the server works through its backlog; nothing can ever turn into a reject.
    for (const r of stuckResults) {
      if (r.status === 'fulfilled') expect(r.value.result).toBe('accept');
      else expect(r.reason).toBeInstanceOf(BackendUnavailableError);
    }
  });

  it('gives up when the lookup budget runs out while the server is silent', async () => {
    const pair = backend([primary], { timeoutMs: 10_000, retries: 0 });
    primary.pause();
    const controller = new AbortController();
    const pending = pair.verify(alice(), { signal: controller.signal });
    controller.abort(new Error('lookup budget'));
    await expect(pending).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', cause: new Error('lookup budget') });
    // Abandoned for lack of time, not found silent: the server is not marked dead.
    expect(pair.health()[0]!.state).toBe('alive');
  });
});

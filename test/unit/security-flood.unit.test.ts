/**
 * The flood limiter with a fake clock (times are arguments): the limit per source, isolation between
 * sources, recovery, logging once per interval, exemptions, bounded memory.
 */
import { describe, expect, it } from 'vitest';
import { FloodLimiter, type FloodDecision } from '../../src/core/security/flood-limiter.js';
import { DEFAULT_FLOOD, securityConfigFrom, type FloodConfig } from '../../src/core/security/config.js';
import { FakeClock } from '../support/fake-clock.js';

function limiter(overrides: Partial<FloodConfig> = {}): FloodLimiter {
  return new FloodLimiter(securityConfigFrom({ flood: { exempt: [], ...overrides } }).flood);
}

describe('flood limiter', () => {
  it('serves 100 requests in a 2 s window from one source and drops the rest of its burst', () => {
    const f = limiter();
    const clock = new FakeClock();
    clock.now = 1_000_000;
    const results: boolean[] = [];
    for (let i = 0; i < 150; i++) results.push(f.allow('203.0.113.1', clock.now));
    expect(results.filter(Boolean)).toHaveLength(100);
    expect(results.slice(0, 100).every(Boolean)).toBe(true);
    expect(results.slice(100).some(Boolean)).toBe(false);
    expect(f.stats.allowed).toBe(100);
    expect(f.stats.dropped).toBe(50);
  });

  it('limits a flooding source while another source keeps being served', () => {
    const f = limiter();
    const clock = new FakeClock();
    clock.now = 5_000_000;
    let floodServed = 0;
    let honestServed = 0;
    // 10 s: the flooder sends 1000 requests a second, the honest phone one every 100 ms.
    for (let ms = 0; ms < 10_000; ms++) {
      clock.advance(1);
      if (f.allow('198.51.100.66', clock.now)) floodServed++;
      if (ms % 100 === 0 && f.allow('192.0.2.20', clock.now)) honestServed++;
    }
    expect(honestServed).toBe(100);
    // Only its first burst got through: counting its dropped requests keeps a flooder blocked.
    expect(floodServed).toBe(100);
    expect(f.stats.dropped).toBe(10_000 - 100);
  });

  it('serves a source again once its rate falls below the limit', () => {
    const f = limiter({ requests: 10, windowSeconds: 1 });
    const t = 10_000_000;
    for (let i = 0; i < 50; i++) f.allow('203.0.113.2', t + i);
    expect(f.allow('203.0.113.2', t + 100)).toBe(false);
    // Two windows of silence: the sliding estimate is back to zero.
    expect(f.allow('203.0.113.2', t + 2000)).toBe(true);
    // A steady 5 requests a second is well within 10 per second.
    let served = 0;
    for (let i = 0; i < 50; i++) if (f.allow('203.0.113.2', t + 2200 + i * 200)) served++;
    expect(served).toBe(50);
  });

  it('weighs the previous window by its overlap with the sliding window', () => {
    const f = limiter({ requests: 10, windowSeconds: 1 });
    // 10 requests at the end of window 0.
    for (let i = 0; i < 10; i++) expect(f.allow('203.0.113.3', 999)).toBe(true);
    // At 1.5 s, half of window 0 still overlaps: estimate 10 * 0.5 + current. Five more fit.
    const got = Array.from({ length: 7 }, () => f.allow('203.0.113.3', 1500));
    expect(got).toEqual([true, true, true, true, true, false, false]);
  });

  it('asks for a log line once per interval per source, with the count dropped since the last one', () => {
    const f = limiter({ requests: 1, windowSeconds: 1, logIntervalSeconds: 10 });
    const decisions: Array<{ at: number; d: FloodDecision }> = [];
    for (let ms = 0; ms <= 25_000; ms += 100) {
      for (const ip of ['203.0.113.4', '203.0.113.5']) {
        const d = f.admit(ip, 1_000_000 + ms);
        if (!d.allowed && d.log) decisions.push({ at: ms, d });
      }
    }
    const logged = decisions.filter((x) => x.d.allowed === false);
    // Each source: at its first drop, then 10 s and 20 s later.
    expect(logged.map((x) => x.at)).toEqual([100, 100, 10_100, 10_100, 20_100, 20_100]);
    const second = logged[2]!.d;
    expect(second.allowed).toBe(false);
    // 100 requests in those 10 s, all dropped (the flooder never slowed down).
    if (!second.allowed) expect(second.droppedSinceLog).toBe(100);
  });

  it('never limits exempt sources (trusted gateways), IPv4 and IPv6, mapped spellings included', () => {
    const f = limiter({ requests: 1, windowSeconds: 10, exempt: ['192.0.2.0/24', '2001:db8:1::/48'] });
    for (let i = 0; i < 1000; i++) {
      expect(f.allow('192.0.2.200', i)).toBe(true);
      expect(f.allow('::ffff:192.0.2.201', i)).toBe(true);
      expect(f.allow('2001:db8:1:ffff::9', i)).toBe(true);
    }
    expect(f.stats.tracked).toBe(0);
    expect(f.allow('2001:db8:2::9', 0)).toBe(true);
    expect(f.allow('2001:db8:2::9', 0)).toBe(false);
  });

  it('exempts loopback by default', () => {
    const f = new FloodLimiter(DEFAULT_FLOOD);
    for (let i = 0; i < 1000; i++) expect(f.allow('127.0.0.1', 0)).toBe(true);
  });

  it('treats spellings of one IPv6 host as one source', () => {
    const f = limiter({ requests: 2, windowSeconds: 10 });
    expect(f.allow('2001:db8::1', 0)).toBe(true);
    expect(f.allow('2001:0db8:0000::0001', 0)).toBe(true);
    expect(f.allow('2001:DB8::1', 0)).toBe(false);
    expect(f.stats.tracked).toBe(1);
  });

  it('disabled: everything passes and nothing is tracked', () => {
    const f = limiter({ enabled: false, requests: 1 });
    for (let i = 0; i < 100; i++) expect(f.allow('203.0.113.9', 0)).toBe(true);
    expect(f.stats.tracked).toBe(0);
  });

  it('stays within maxTracked sources under 1,000,000 distinct addresses, and a real flooder stays limited through it', () => {
    const f = limiter({ requests: 100, windowSeconds: 2, maxTracked: 10_000 });
    let t = 50_000_000;
    let flooderServed = 0;
    for (let i = 0; i < 1_000_000; i++) {
      // One spoofed address per request, 1000 requests per millisecond of fake time.
      if (i % 1000 === 0) t++;
      f.allow(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, t);
      if (i % 100 === 0 && f.allow('203.0.113.99', t)) flooderServed++;
      if (f.stats.tracked > 10_000) throw new Error(`tracked ${f.stats.tracked} sources`);
    }
    // Two generations of at most 5,000: between one and two of them are held.
    expect(f.stats.tracked).toBeGreaterThanOrEqual(5_000);
    expect(f.stats.tracked).toBeLessThanOrEqual(10_000);
    expect(f.stats.evicted).toBeGreaterThanOrEqual(1_000_000 - 10_000);
    // 10,000 requests over 1 s of fake time: only its first window's worth was served.
    expect(flooderServed).toBe(100);
  });
});

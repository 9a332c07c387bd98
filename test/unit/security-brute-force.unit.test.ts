/**
 * The brute-force guard against a ban projection, with time given by the events (a fake clock):
 * thresholds and windows, NAT weighting, which causes count, ban expiry and removal, exactly one ban
 * event per crossing, several instances sharing a log, bounded memory.
 */
import { describe, expect, it } from 'vitest';
import {
  authFailed,
  authSucceeded,
  banRemoved,
  type AuthFailureCause,
  type BanAddedEvent,
  type SipledgerEvent,
} from '../../src/core/log/events.js';
import { BruteForceGuard } from '../../src/core/security/brute-force-guard.js';
import { DEFAULT_BRUTE_FORCE, securityConfigFrom, type BruteForceConfig } from '../../src/core/security/config.js';
import { BansProjection } from '../../src/projections/bans.js';
import { T0 } from '../support/log-fixtures.js';

const S = 1000;
const REALM = 'example.com';

function failed(user: string | undefined, ip: string, time: number, cause: AuthFailureCause = 'bad_password', instance?: string): SipledgerEvent {
  return authFailed(
    {
      ...(user !== undefined ? { user } : {}),
      realm: REALM,
      domain: REALM,
      method: 'REGISTER',
      source: { address: ip, port: 5060, transport: 'udp' },
      algorithm: 'MD5',
      cause,
    },
    { time, ...(instance !== undefined ? { instance } : {}) },
  );
}

function succeeded(user: string, ip: string, time: number): SipledgerEvent {
  return authSucceeded(
    { user, realm: REALM, domain: REALM, method: 'REGISTER', source: { address: ip, port: 5060, transport: 'udp' }, algorithm: 'MD5' },
    { time },
  );
}

/**
 * A single instance with its log: every event reaches the projection and the guard; the bans the
 * guard produces are appended and come back through the same path, as Ledger.onEvent delivers them.
 */
class Harness {
  readonly bans = new BansProjection();
  readonly guard: BruteForceGuard;
  readonly produced: BanAddedEvent[] = [];
  readonly log: SipledgerEvent[] = [];

  constructor(config: BruteForceConfig = DEFAULT_BRUTE_FORCE, instance?: string) {
    this.guard = new BruteForceGuard({ config, bans: this.bans, ...(instance !== undefined ? { instance } : {}) });
  }

  feed(event: SipledgerEvent): BanAddedEvent[] {
    this.log.push(event);
    this.bans.apply(event);
    const out = this.guard.observe(event);
    this.produced.push(...out);
    for (const b of out) this.feed(b);
    return out;
  }
}

function config(overrides: Parameters<typeof securityConfigFrom>[0] = {}): BruteForceConfig {
  return securityConfigFrom(overrides).bruteForce;
}

describe('brute-force guard: thresholds and windows', () => {
  it('bans a source address at its 20th failure within 60 s, for 600 s, with the 403 action', () => {
    const h = new Harness();
    for (let i = 0; i < 19; i++) {
      expect(h.feed(failed(`u${i}`, '203.0.113.7', T0 + i * S, 'unknown_user'))).toEqual([]);
    }
    expect(h.guard.check({ ip: '203.0.113.7', now: T0 + 19 * S })).toEqual({ banned: false });
    const out = h.feed(failed('u19', '203.0.113.7', T0 + 19 * S, 'unknown_user'));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ type: 'ban.added', scope: 'ip', value: '203.0.113.7', until: T0 + 19 * S + 600 * S, time: T0 + 19 * S });
    expect(out[0]!.reason).toMatch(/^20 failed authentications in 60 s/);
    expect(h.guard.check({ ip: '203.0.113.7', now: T0 + 20 * S })).toEqual({
      banned: true,
      scope: 'ip',
      value: '203.0.113.7',
      until: T0 + 619 * S,
      action: 'reject',
    });
    // Another address is not touched.
    expect(h.guard.check({ ip: '203.0.113.8', now: T0 + 20 * S })).toEqual({ banned: false });
  });

  it('does not ban failures spread wider than the window', () => {
    const h = new Harness();
    // 40 failures, one every 3.5 s: at most 18 fall in any 60 s window.
    for (let i = 0; i < 40; i++) h.feed(failed(`u${i}`, '203.0.113.7', T0 + i * 3500, 'unknown_user'));
    expect(h.produced).toEqual([]);
    expect(h.guard.check({ ip: '203.0.113.7', now: T0 + 200 * S })).toEqual({ banned: false });
  });

  it('counts failures exactly at the window edge out, just inside in', () => {
    const cfg = config({ bruteForce: { ip: { failures: 3, windowSeconds: 10, banSeconds: 60 }, user: { failures: 0 } } });
    const edge = new Harness(cfg);
    edge.feed(failed('a', '198.51.100.1', T0));
    edge.feed(failed('a', '198.51.100.1', T0 + 5 * S));
    // T0 is exactly 10 s before: out of the window (t > now - window).
    expect(edge.feed(failed('a', '198.51.100.1', T0 + 10 * S))).toEqual([]);
    const inside = new Harness(cfg);
    inside.feed(failed('a', '198.51.100.1', T0));
    inside.feed(failed('a', '198.51.100.1', T0 + 5 * S));
    expect(inside.feed(failed('a', '198.51.100.1', T0 + 10 * S - 1))).toHaveLength(1);
  });

  it('bans a user at its 10th bad password within 300 s, from several addresses, without banning any address', () => {
    const h = new Harness();
    for (let i = 0; i < 9; i++) h.feed(failed('alice', `198.51.100.${i + 1}`, T0 + i * 20 * S));
    const out = h.feed(failed('alice', '198.51.100.99', T0 + 200 * S));
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ scope: 'user', value: 'alice@example.com', until: T0 + 500 * S });
    expect(h.guard.check({ ip: '198.51.100.99', user: 'alice@example.com', now: T0 + 201 * S })).toMatchObject({ banned: true, scope: 'user' });
    expect(h.guard.check({ ip: '198.51.100.99', user: 'bob@example.com', now: T0 + 201 * S })).toEqual({ banned: false });
    expect(h.guard.check({ ip: '198.51.100.99', now: T0 + 201 * S })).toEqual({ banned: false });
    // The realm is case-insensitive in the lookup.
    expect(h.guard.check({ ip: '192.0.2.1', user: 'alice@EXAMPLE.com', now: T0 + 201 * S })).toMatchObject({ banned: true });
  });

  it('a success of the user forgets its earlier failures (typos), but not the address count', () => {
    const cfg = config({ bruteForce: { ip: { failures: 0 }, user: { failures: 3, windowSeconds: 300, banSeconds: 60 } } });
    const h = new Harness(cfg);
    h.feed(failed('alice', '192.0.2.5', T0));
    h.feed(failed('alice', '192.0.2.5', T0 + S));
    h.feed(succeeded('alice', '192.0.2.5', T0 + 2 * S));
    expect(h.feed(failed('alice', '192.0.2.5', T0 + 3 * S))).toEqual([]);
    expect(h.feed(failed('alice', '192.0.2.5', T0 + 4 * S))).toEqual([]);
    expect(h.feed(failed('alice', '192.0.2.5', T0 + 5 * S))).toHaveLength(1);
  });

  it('drop as the configured action is what check answers', () => {
    const h = new Harness(config({ bruteForce: { action: 'drop', ip: { failures: 1 } } }));
    h.feed(failed('x', '203.0.113.50', T0, 'unknown_user'));
    expect(h.guard.check({ ip: '203.0.113.50', now: T0 + 1 })).toMatchObject({ banned: true, action: 'drop' });
  });
});

describe('brute-force guard: what counts', () => {
  it('never counts stale nonces, replayed nonces, identity or realm mismatches or backend outages', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 2 }, user: { failures: 2 } } }));
    const causes: AuthFailureCause[] = ['stale_nonce', 'nonce_reused', 'identity_mismatch', 'realm_mismatch', 'backend_unavailable'];
    let t = T0;
    for (let round = 0; round < 10; round++) for (const c of causes) h.feed(failed('alice', '192.0.2.9', (t += S), c));
    expect(h.produced).toEqual([]);
    expect(h.guard.stats.failuresCounted).toBe(0);
    expect(h.guard.stats.failuresIgnored).toBe(50);
    // Two bad passwords do.
    h.feed(failed('alice', '192.0.2.9', (t += S)));
    expect(h.feed(failed('alice', '192.0.2.9', (t += S))).map((e) => e.scope).sort()).toEqual(['ip', 'user']);
  });

  it('counts unknown users and malformed credentials against the address only: there is no account to protect', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 100 }, user: { failures: 2 } } }));
    for (let i = 0; i < 10; i++) h.feed(failed('ghost', '192.0.2.9', T0 + i * S, 'unknown_user'));
    for (let i = 0; i < 10; i++) h.feed(failed(undefined, '192.0.2.9', T0 + (10 + i) * S, 'malformed'));
    expect(h.produced).toEqual([]);
    expect(h.guard.tracked.users).toBe(0);
    expect(h.guard.tracked.ips).toBe(1);
  });

  it('a failure without a realm counts against the address only', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 3 }, user: { failures: 1 } } }));
    const noRealm = (t: number): SipledgerEvent => ({ ...failed('alice', '192.0.2.30', t), realm: '' }) as SipledgerEvent;
    expect(h.feed(noRealm(T0))).toEqual([]);
    expect(h.feed(noRealm(T0 + 1))).toEqual([]);
    expect(h.feed(noRealm(T0 + 2)).map((b) => b.scope)).toEqual(['ip']);
  });

  it('the counted causes are configurable', () => {
    const h = new Harness(config({ bruteForce: { causes: ['nonce_reused'], ip: { failures: 2 }, user: { failures: 0 } } }));
    h.feed(failed('a', '192.0.2.9', T0, 'bad_password'));
    h.feed(failed('a', '192.0.2.9', T0 + 1, 'nonce_reused'));
    expect(h.feed(failed('a', '192.0.2.9', T0 + 2, 'nonce_reused'))).toHaveLength(1);
  });

  it('never bans an exempt address, whatever it sends, and ignores bans of it in check', () => {
    const h = new Harness(config({ bruteForce: { exempt: ['10.0.0.0/8'], ip: { failures: 2 }, user: { failures: 0 } } }));
    for (let i = 0; i < 50; i++) h.feed(failed(`u${i}`, '10.1.2.3', T0 + i, 'unknown_user'));
    expect(h.produced).toEqual([]);
    h.bans.apply({ ...h.log[0]!, type: 'ban.added', scope: 'ip', value: '10.1.2.3', until: T0 + 3600 * S, reason: 'by hand' } as SipledgerEvent);
    expect(h.guard.check({ ip: '10.1.2.3', now: T0 + S })).toEqual({ banned: false });
  });

  it('disabled: no automatic bans, but bans in the log are still enforced', () => {
    const h = new Harness(config({ bruteForce: { enabled: false, ip: { failures: 1 } } }));
    h.feed(failed('a', '203.0.113.1', T0, 'unknown_user'));
    expect(h.produced).toEqual([]);
    h.feed({ ...h.log[0]!, type: 'ban.added', id: crypto.randomUUID(), scope: 'ip', value: '203.0.113.1', until: T0 + 60 * S, reason: 'by hand' } as SipledgerEvent);
    expect(h.guard.check({ ip: '203.0.113.1', now: T0 + S })).toMatchObject({ banned: true, scope: 'ip' });
  });
});

describe('brute-force guard: NAT awareness', () => {
  it('an office address with 50 users authenticating and one phone failing all day is not banned; the phone’s user is', () => {
    const h = new Harness();
    const office = '198.51.100.10';
    let t = T0;
    for (let i = 0; i < 50; i++) h.feed(succeeded(`staff${i}`, office, (t += 100)));
    // The phone with the wrong password retries every 2 s for an hour, while the staff re-register
    // every 10 minutes (well inside the NAT window).
    const start = t;
    for (let k = 0; t < start + 3600 * S; k++) {
      t += 2 * S;
      h.feed(failed('lobby-phone', office, t));
      if (k % 300 === 0) for (let i = 0; i < 50; i++) h.feed(succeeded(`staff${i}`, office, t));
    }
    expect(h.produced.filter((b) => b.scope === 'ip')).toEqual([]);
    expect(h.guard.check({ ip: office, user: `staff7@${REALM}`, now: t })).toEqual({ banned: false });
    // The phone's own account is banned (repeatedly, one ban per crossing after each ban ends).
    const userBans = h.produced.filter((b) => b.scope === 'user');
    expect(userBans.length).toBeGreaterThan(0);
    expect(userBans.every((b) => b.value === `lobby-phone@${REALM}`)).toBe(true);
  });

  it('a scanner with no successes from its address is banned at the base threshold', () => {
    const h = new Harness();
    for (let i = 0; i < 20; i++) h.feed(failed(`user${i}`, '203.0.113.66', T0 + i * 100, 'unknown_user'));
    expect(h.produced).toHaveLength(1);
    expect(h.produced[0]).toMatchObject({ scope: 'ip', value: '203.0.113.66' });
  });

  it('raises the IP threshold by the number of distinct users seen succeeding, up to the cap, within the NAT window', () => {
    const cfg = config({ bruteForce: { ip: { failures: 5, windowSeconds: 60 }, user: { failures: 0 }, nat: { windowSeconds: 600, perUser: 1, maxMultiplier: 3 } } });
    const ip = '198.51.100.20';
    const run = (successes: number, failures: number, gap = 0): number => {
      const h = new Harness(cfg);
      for (let i = 0; i < successes; i++) h.feed(succeeded(`s${i}`, ip, T0 + i));
      const t0 = T0 + 1000 + gap;
      for (let i = 0; i < failures; i++) {
        if (h.feed(failed(`f${i}`, ip, t0 + i * 10, 'unknown_user')).length) return i + 1;
      }
      return -1;
    };
    expect(run(0, 100)).toBe(5);
    expect(run(1, 100)).toBe(10);
    expect(run(2, 100)).toBe(15);
    // Capped at 3x however many users succeed.
    expect(run(50, 100)).toBe(15);
    // Successes older than the NAT window no longer count.
    expect(run(50, 100, 600 * S)).toBe(5);
  });

  it('the ban reason says the threshold was raised for users behind the address', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 2 }, user: { failures: 0 } } }));
    h.feed(succeeded('alice', '198.51.100.30', T0));
    h.feed(succeeded('bob', '198.51.100.30', T0 + 1));
    for (let i = 0; i < 6; i++) h.feed(failed('x', '198.51.100.30', T0 + 10 + i, 'unknown_user'));
    expect(h.produced).toHaveLength(1);
    expect(h.produced[0]!.reason).toBe('6 failed authentications in 60 s; threshold raised to 6 for 2 user(s) authenticated from this address');
  });

  it('successes over IPv4-mapped and plain spellings of one address are one address', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 2 }, user: { failures: 0 } } }));
    h.feed(succeeded('alice', '::ffff:198.51.100.40', T0));
    // One user behind it doubles the threshold to 4, whichever spelling the failures come with.
    const spellings = ['198.51.100.40', '::ffff:198.51.100.40', '::FFFF:c633:6428', '198.51.100.40'];
    const bannedAt = spellings.findIndex((ip, i) => h.feed(failed('x', ip, T0 + 1 + i, 'unknown_user')).length > 0);
    expect(bannedAt).toBe(3);
    expect(h.produced).toHaveLength(1);
    expect(h.produced[0]!.value).toBe('198.51.100.40');
  });
});

describe('brute-force guard: ban lifecycle', () => {
  it('produces exactly one ban per crossing: failures while banned are not counted, and a new crossing after expiry bans again', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 5, windowSeconds: 60, banSeconds: 120 }, user: { failures: 0 } } }));
    const ip = '203.0.113.80';
    // A scanner that keeps going at 10 failures a second for 5 minutes: its failures only reach us
    // (as events from other instances, or before the ban reached them) and must not pile up bans.
    for (let i = 0; i < 3000; i++) h.feed(failed(`u${i}`, ip, T0 + i * 100, 'unknown_user'));
    const times = h.produced.map((b) => b.time - T0);
    // Banned at the 5th failure (400 ms), then again after each 120 s ban ends, 5 failures later.
    expect(times).toEqual([400, 120_400 + 400, 240_800 + 400]);
    expect(h.produced.every((b) => b.until === b.time + 120 * S)).toBe(true);
  });

  it('a ban ends on time: banned until `until`, free from then on', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 1, banSeconds: 30 } } }));
    h.feed(failed('x', '203.0.113.90', T0, 'unknown_user'));
    expect(h.guard.check({ ip: '203.0.113.90', now: T0 + 30 * S - 1 }).banned).toBe(true);
    expect(h.guard.check({ ip: '203.0.113.90', now: T0 + 30 * S }).banned).toBe(false);
  });

  it('a ban lifted by an operator (ban.removed) ends at once and counting starts afresh', () => {
    const h = new Harness(config({ bruteForce: { ip: { failures: 3 }, user: { failures: 0 } } }));
    const ip = '203.0.113.91';
    for (let i = 0; i < 3; i++) h.feed(failed('x', ip, T0 + i, 'unknown_user'));
    expect(h.produced).toHaveLength(1);
    h.feed(banRemoved({ scope: 'ip', value: ip }, { time: T0 + S }));
    expect(h.guard.check({ ip, now: T0 + S + 1 })).toEqual({ banned: false });
    // The failures before the lift do not count again.
    h.feed(failed('x', ip, T0 + 2 * S, 'unknown_user'));
    h.feed(failed('x', ip, T0 + 2 * S + 1, 'unknown_user'));
    expect(h.produced).toHaveLength(1);
    h.feed(failed('x', ip, T0 + 2 * S + 2, 'unknown_user'));
    expect(h.produced).toHaveLength(2);
  });

  it('check refuses at once, before the log delivers the ban back to the projection', () => {
    const bans = new BansProjection();
    const guard = new BruteForceGuard({ config: config({ bruteForce: { ip: { failures: 2 } } }), bans });
    guard.observe(failed('x', '203.0.113.92', T0, 'unknown_user'));
    const out = guard.observe(failed('x', '203.0.113.92', T0 + 1, 'unknown_user'));
    expect(out).toHaveLength(1);
    // Not applied to the projection (the append is in flight): still refused.
    expect(bans.banned('ip', '203.0.113.92', T0 + 2)).toBeUndefined();
    expect(guard.check({ ip: '203.0.113.92', now: T0 + 2 })).toMatchObject({ banned: true });
    // A third failure in the meantime does not produce a second ban.
    expect(guard.observe(failed('x', '203.0.113.92', T0 + 3, 'unknown_user'))).toEqual([]);
  });

  it('a ban written by another process (the CLI, another instance) is enforced through the projection, prefixes included', () => {
    const h = new Harness();
    h.feed({ ...failed('x', '192.0.2.1', T0), type: 'ban.added', id: crypto.randomUUID(), scope: 'ip', value: '203.0.113.0/24', until: T0 + 60 * S, reason: 'abuse report' } as SipledgerEvent);
    expect(h.guard.check({ ip: '203.0.113.200', now: T0 + S })).toMatchObject({ banned: true, scope: 'ip', value: '203.0.113.0/24' });
    expect(h.guard.check({ ip: '203.0.114.1', now: T0 + S })).toEqual({ banned: false });
  });
});

describe('brute-force guard: several instances sharing a log', () => {
  it('counts every instance’s failures, but only the instance that saw the crossing failure writes the ban', () => {
    const cfg = config({ bruteForce: { ip: { failures: 4 }, user: { failures: 0 } } });
    const a = new Harness(cfg, 'a');
    const b = new Harness(cfg, 'b');
    const shared: SipledgerEvent[] = [];
    const deliver = (e: SipledgerEvent): void => {
      shared.push(e);
      for (const h of [a, b]) {
        h.bans.apply(e);
        for (const ban of h.guard.observe(e)) deliver(ban);
      }
    };
    // The scanner alternates between the two instances: 2 failures on each reach the threshold of 4.
    deliver(failed('x', '203.0.113.5', T0, 'unknown_user', 'a'));
    deliver(failed('x', '203.0.113.5', T0 + 1, 'unknown_user', 'b'));
    deliver(failed('x', '203.0.113.5', T0 + 2, 'unknown_user', 'a'));
    deliver(failed('x', '203.0.113.5', T0 + 3, 'unknown_user', 'b'));
    const bans = shared.filter((e) => e.type === 'ban.added');
    expect(bans).toHaveLength(1);
    expect(bans[0]!.instance).toBe('b');
    for (const h of [a, b]) expect(h.guard.check({ ip: '203.0.113.5', now: T0 + 10 }).banned).toBe(true);
  });
});

describe('brute-force guard: bounded memory', () => {
  it('holds at most maxTracked addresses and users under a spray of 200,000 distinct ones', () => {
    const h = new Harness(config({ bruteForce: { maxTracked: 1000 } }));
    for (let i = 0; i < 200_000; i++) {
      const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      h.guard.observe(failed(`user${i}`, ip, T0 + i));
      if (i % 4 === 0) h.guard.observe(succeeded(`user${i}`, ip, T0 + i));
    }
    const tracked = h.guard.tracked;
    expect(tracked.ips).toBeLessThanOrEqual(1000);
    expect(tracked.users).toBeLessThanOrEqual(1000);
    expect(tracked.successSources).toBeLessThanOrEqual(1000);
    expect(h.guard.stats.evicted).toBeGreaterThan(190_000);
  });

  it('keeps a busy attacker tracked while a spray of one-off addresses is evicted around it', () => {
    const h = new Harness(config({ bruteForce: { maxTracked: 100, ip: { failures: 20, windowSeconds: 60 }, user: { failures: 0 } } }));
    let t = T0;
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 50; j++) h.feed(failed('x', `10.9.${i}.${j}`, (t += 1), 'unknown_user'));
      h.feed(failed('x', '203.0.113.77', (t += 1), 'unknown_user'));
    }
    expect(h.produced.map((b) => b.value)).toEqual(['203.0.113.77']);
  });
});

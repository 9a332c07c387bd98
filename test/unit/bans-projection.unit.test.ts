/**
 * The bans projection: what is in force at a given time, canonical values, prefixes, removal,
 * purging; and DESIGN.md contract 1: replaying the log gives the live state, a snapshot plus the
 * tail gives it too.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { authFailed, banAdded, banRemoved, type BanScope, type SipledgerEvent } from '../../src/core/log/events.js';
import { MemoryLog } from '../../src/core/log/memory-log.js';
import { BansProjection } from '../../src/projections/bans.js';
import { T0 } from '../support/log-fixtures.js';

const MIN = 60_000;

function project(events: SipledgerEvent[]): BansProjection {
  const p = new BansProjection();
  for (const e of events) p.apply(e);
  return p;
}

describe('bans projection', () => {
  it('answers which bans are in force at a time: until is exclusive', () => {
    const p = project([
      banAdded({ scope: 'ip', value: '203.0.113.7', until: T0 + 10 * MIN, reason: '20 failures' }, { time: T0 }),
      banAdded({ scope: 'user', value: 'bob@example.com', until: T0 + 5 * MIN, reason: 'admin' }, { time: T0 + 1, instance: 'edge-1' }),
    ]);
    expect(p.banned('ip', '203.0.113.7', T0 + 10 * MIN - 1)).toMatchObject({ scope: 'ip', value: '203.0.113.7', since: T0, reason: '20 failures' });
    expect(p.banned('ip', '203.0.113.7', T0 + 10 * MIN)).toBeUndefined();
    expect(p.banned('user', 'bob@example.com', T0 + MIN)).toMatchObject({ instance: 'edge-1' });
    expect(p.active(T0 + MIN).map((b) => b.value)).toEqual(['bob@example.com', '203.0.113.7']);
    expect(p.active(T0 + 6 * MIN).map((b) => b.value)).toEqual(['203.0.113.7']);
    expect(p.count(T0 + 11 * MIN)).toBe(0);
    // get() finds the recorded ban whether or not it is still in force.
    expect(p.get('ip', '203.0.113.7')).toMatchObject({ until: T0 + 10 * MIN });
    expect(p.get('ip', '203.0.113.8')).toBeUndefined();
  });

  it('one ban per address or user whatever the spelling; the newest ban.added wins; ban.removed lifts it', () => {
    const p = project([
      banAdded({ scope: 'ip', value: '::ffff:203.0.113.7', until: T0 + 60 * MIN, reason: 'first' }, { time: T0 }),
      banAdded({ scope: 'ip', value: '203.0.113.7', until: T0 + 2 * MIN, reason: 'shortened' }, { time: T0 + MIN }),
      banAdded({ scope: 'user', value: 'alice@Example.com', until: T0 + 60 * MIN, reason: 'x' }, { time: T0 }),
      banAdded({ scope: 'ip', value: '2001:DB8::0:1', until: T0 + 60 * MIN, reason: 'v6' }, { time: T0 }),
    ]);
    expect(p.size).toBe(3);
    expect(p.banned('ip', '203.0.113.7', T0 + 3 * MIN)).toBeUndefined();
    expect(p.banned('ip', '::ffff:203.0.113.7', T0 + MIN)).toMatchObject({ reason: 'shortened' });
    expect(p.banned('user', 'alice@example.COM', T0)).toMatchObject({ value: 'alice@example.com' });
    expect(p.banned('ip', '2001:db8::1', T0)).toMatchObject({ value: '2001:db8::1' });
    p.apply(banRemoved({ scope: 'user', value: 'alice@EXAMPLE.com' }, { time: T0 + 2 }));
    expect(p.banned('user', 'alice@example.com', T0 + 3)).toBeUndefined();
  });

  it('a prefix ban bans every address inside it; lifting an address does not lift the prefix', () => {
    const p = project([
      banAdded({ scope: 'ip', value: '198.51.100.0/24', until: T0 + 10 * MIN, reason: 'abuse report' }, { time: T0 }),
      banAdded({ scope: 'ip', value: '2001:db8:bad::/48', until: T0 + 10 * MIN, reason: 'abuse report' }, { time: T0 }),
    ]);
    expect(p.banned('ip', '198.51.100.200', T0 + 1)).toMatchObject({ value: '198.51.100.0/24' });
    expect(p.banned('ip', '::ffff:198.51.100.1', T0 + 1)).toMatchObject({ value: '198.51.100.0/24' });
    expect(p.banned('ip', '198.51.101.1', T0 + 1)).toBeUndefined();
    expect(p.banned('ip', '2001:db8:bad:1::1', T0 + 1)).toBeDefined();
    p.apply(banRemoved({ scope: 'ip', value: '198.51.100.200' }, { time: T0 + 2 }));
    expect(p.banned('ip', '198.51.100.200', T0 + 3)).toBeDefined();
    p.apply(banRemoved({ scope: 'ip', value: '198.51.100.9/24' }, { time: T0 + 4 }));
    expect(p.banned('ip', '198.51.100.200', T0 + 5)).toBeUndefined();
  });

  it('ignores values that name nothing a request could match and events of other types', () => {
    const p = project([
      banAdded({ scope: 'ip', value: 'not-an-address', until: T0 + MIN, reason: 'x' }, { time: T0 }),
      banAdded({ scope: 'user', value: 'no-realm', until: T0 + MIN, reason: 'x' }, { time: T0 }),
      authFailed(
        { realm: 'example.com', domain: 'example.com', method: 'REGISTER', source: { address: '192.0.2.1', port: 5060, transport: 'udp' }, algorithm: 'MD5', cause: 'malformed' },
        { time: T0 },
      ),
    ]);
    expect(p.size).toBe(0);
  });

  it('purges bans that ended long before the newest event, keeping memory to what is in force', () => {
    const p = new BansProjection();
    // 30,000 bans of one minute each, one per second of log time (a scanner farm).
    for (let i = 0; i < 30_000; i++) {
      p.apply(banAdded({ scope: 'ip', value: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, until: T0 + i * 1000 + MIN, reason: 'x' }, { time: T0 + i * 1000 }));
    }
    // Those in force or ended within the 10-minute margin, plus what accumulated since the last purge.
    expect(p.size).toBeLessThan(3000);
    expect(p.count(T0 + 29_999 * 1000)).toBe(60);
  });

  it('restore refuses a malformed snapshot and keeps nothing of it', () => {
    const p = new BansProjection();
    expect(() => p.restore(null)).toThrow(TypeError);
    expect(() => p.restore({ bans: [{ scope: 'ip', value: '010.0.0.1', until: 1, since: 0, reason: '' }], newestTime: 0, purgeAt: 1024 })).toThrow(/malformed ban/);
    expect(() => p.restore({ bans: [], newestTime: 'x', purgeAt: 1 })).toThrow(TypeError);
  });
});

describe('bans projection: replay equals live (DESIGN.md contract 1)', () => {
  const scopes: BanScope[] = ['ip', 'user'];
  const values: Record<BanScope, string[]> = {
    ip: ['203.0.113.7', '::ffff:203.0.113.7', '2001:db8::1', '198.51.100.0/24', '198.51.100.5'],
    user: ['alice@example.com', 'alice@EXAMPLE.com', 'bob@example.com'],
  };
  const arbEvent = fc
    .record({
      scope: fc.constantFrom(...scopes),
      pick: fc.nat(),
      add: fc.boolean(),
      ttl: fc.integer({ min: -5, max: 30 }),
      gap: fc.integer({ min: 0, max: 5 }),
    })
    .map((r) => (time: number): SipledgerEvent => {
      const list = values[r.scope];
      const value = list[r.pick % list.length]!;
      return r.add
        ? banAdded({ scope: r.scope, value, until: Math.max(0, time + r.ttl * MIN), reason: 'generated' }, { time })
        : banRemoved({ scope: r.scope, value }, { time });
    });

  it('a fresh projection replaying the log, and a snapshot restored then fed the tail, equal the live one', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(arbEvent, fc.integer({ min: 0, max: 3 * MIN })), { maxLength: 60 }), fc.nat(), async (steps, cut) => {
        const log = new MemoryLog();
        const live = new BansProjection();
        let t = T0;
        const events: SipledgerEvent[] = [];
        for (const [make, gap] of steps) {
          t += gap;
          const e = make(t);
          events.push(e);
          live.apply(e);
        }
        await log.append(events);
        const replayed = new BansProjection();
        for await (const { event } of log.read('start')) replayed.apply(event);
        expect(replayed.toSnapshot()).toEqual(live.toSnapshot());

        const at = events.length === 0 ? 0 : cut % (events.length + 1);
        const head = new BansProjection();
        for (const e of events.slice(0, at)) head.apply(e);
        const restored = new BansProjection();
        restored.restore(JSON.parse(JSON.stringify(head.toSnapshot())));
        for (const e of events.slice(at)) restored.apply(e);
        expect(restored.toSnapshot()).toEqual(live.toSnapshot());
        for (const q of [T0, t - MIN, t, t + 10 * MIN]) {
          expect(replayed.active(q)).toEqual(live.active(q));
          expect(restored.active(q)).toEqual(live.active(q));
          for (const s of scopes) for (const v of values[s]) expect(replayed.banned(s, v, q)).toEqual(live.banned(s, v, q));
        }
        await log.close();
      }),
      { numRuns: 150 },
    );
  });
});

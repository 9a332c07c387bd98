import { describe, expect, it } from 'vitest';
import pino from 'pino';
import {
  banAdded,
  banRemoved,
  canonicalAor,
  contactExpired,
  contactRefreshed,
  CURRENT_VERSION,
  EVENT_TYPES,
  partitionKey,
} from '../../src/core/log/events.js';
import { MemoryLog } from '../../src/core/log/memory-log.js';
import { Ledger } from '../../src/core/log/ledger.js';
import { EventSchemas, eventSchemas, UpcasterRegistry, decodeEvent } from '../../src/core/log/schemas.js';
import { bound, oneOfEach, T0 } from '../support/log-fixtures.js';

const logger = pino({ level: 'silent' });

describe('event schemas', () => {
  it('has a schema for the current version of every event type', () => {
    const schemas = eventSchemas();
    for (const type of EVENT_TYPES) expect(schemas.has(type, CURRENT_VERSION[type]), type).toBe(true);
    expect(schemas.list()).toHaveLength(EVENT_TYPES.length);
  });

  it('accepts every event the constructors build', () => {
    const events = [
      ...oneOfEach(),
      contactExpired({ aor: 'sip:alice@example.com', uri: 'sip:alice@10.0.0.1' }, { time: T0 }),
      banAdded({ scope: 'ip', value: '203.0.113.9', until: T0 + 60_000, reason: 'brute force' }, { time: T0 }),
      banRemoved({ scope: 'ip', value: '203.0.113.9' }, { time: T0 + 1 }),
    ];
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(EVENT_TYPES));
    for (const e of events) expect(eventSchemas().validate(e), e.type).toEqual({ ok: true, errors: [] });
  });

  it('rejects events with a missing field, an unknown field, a bad cause or a non-canonical AOR', () => {
    const e = bound('alice', 1, T0);
    const { callId: _c, ...noCallId } = e;
    const s = eventSchemas();
    expect(s.validate(noCallId).ok).toBe(false);
    expect(s.validate({ ...e, colour: 'blue' }).ok).toBe(false);
    expect(s.validate({ ...e, aor: 'sip:alice@EXAMPLE.com' }).ok).toBe(false);
    expect(s.validate({ ...e, q: 1.5 }).ok).toBe(false);
    const failed = oneOfEach()[4]!;
    expect(s.validate({ ...failed, cause: 'typo' }).errors.join()).toMatch(/cause/);
    expect(s.validate({ type: 'contact.bound', version: 99 }).errors).toEqual(['no schema for contact.bound v99']);
    expect(s.validate('nope').ok).toBe(false);
  });

  it('loads schemas from a directory given explicitly', () => {
    const s = new EventSchemas(new URL('../../schemas/events', import.meta.url).pathname);
    expect(s.validate(bound('bob', 2, T0)).ok).toBe(true);
  });
});

describe('makeEvent', () => {
  it('puts the envelope after the payload, lets it win over same-named fields, and leaves the payload alone', () => {
    const from = bound('alice', 1, T0);
    const payload = { ...from, instance: 'payload-instance' };
    const e = contactRefreshed(payload, { time: T0 + 5, id: '00000000-0000-4000-8000-000000000001', instance: 'b' });
    expect(e).toMatchObject({ type: 'contact.refreshed', version: 1, id: '00000000-0000-4000-8000-000000000001', time: T0 + 5, instance: 'b' });
    expect(payload.type).toBe('contact.bound');
    // The stored JSON keeps the field order of `{ ...payload, ...envelope }`.
    expect(Object.keys(e)).toEqual(Object.keys({ ...payload, ...{ type: 1, version: 1, id: 1, time: 1, instance: 1 } }));
    const fresh = banRemoved({ scope: 'ip', value: '203.0.113.9' }, { time: T0 });
    expect(Object.keys(fresh)).toEqual(['scope', 'value', 'type', 'version', 'id', 'time']);
    expect(fresh.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });
});

describe('canonicalAor', () => {
  it('lowercases the domain, keeps the user, drops port and parameters', () => {
    expect(canonicalAor('sip:Alice@Example.COM:5060;transport=tcp')).toBe('sip:Alice@example.com');
    expect(canonicalAor('<sips:bob@example.com>')).toBe('sip:bob@example.com');
    expect(canonicalAor('tel:+15551234')).toBeNull();
    expect(canonicalAor('sip:example.com')).toBeNull();
  });
});

describe('partitionKey', () => {
  it('keys registrations by AOR and auth by user@realm', () => {
    const [b, , , ok] = oneOfEach();
    expect(partitionKey(b!)).toBe('sip:alice@example.com');
    expect(partitionKey(ok!)).toBe('alice@example.com');
  });
});

describe('upcasting', () => {
  // A hypothetical v2 of contact.removed that renamed `reason` to `cause`: records written as v1 are
  // still read, as v2, by code that only knows v2.
  const registry = new UpcasterRegistry().register('contact.removed', 1, (e) => {
    const { reason, ...rest } = e;
    return { ...rest, version: 2, cause: reason };
  });

  it('turns an old record into the newest version on read from a log', async () => {
    const log = new MemoryLog({ upcasters: registry });
    const v1 = oneOfEach()[2]!;
    log.appendRaw(v1);
    const read = [];
    for await (const r of log.read('start')) read.push(r.event);
    expect(read[0]).toMatchObject({ type: 'contact.removed', version: 2, cause: 'unregistered' });
    expect(read[0]).not.toHaveProperty('reason');
  });

  it('leaves current and unknown versions alone and refuses a step that skips versions', () => {
    expect(decodeEvent({ type: 'contact.removed', version: 2, x: 1 }, registry)).toEqual({ type: 'contact.removed', version: 2, x: 1 });
    const bad = new UpcasterRegistry().register('call.ended', 1, (e) => ({ ...e, version: 3 }));
    expect(() => decodeEvent({ type: 'call.ended', version: 1 }, bad)).toThrow(/must produce v2/);
    expect(() => registry.register('contact.removed', 1, (e) => e)).toThrow(/already registered/);
    expect(() => decodeEvent(42)).toThrow(TypeError);
  });

  it('a ledger ignores event types it does not know instead of failing', async () => {
    const log = new MemoryLog();
    log.appendRaw({ type: 'presence.published', version: 1, id: 'x', time: T0 });
    await log.append([bound('alice', 1, T0)]);
    const ledger = await Ledger.open({ log, logger });
    expect(ledger.location.count(T0)).toBe(1);
    await ledger.close();
  });
});

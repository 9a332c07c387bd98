/**
 * The registrar's decision, given bindings, when a REGISTER arrives, then events or a rejection
 * (RFC 3261 s10.3).
 */
import { describe, expect, it } from 'vitest';
import { decideRegister, contactsForResponse, DEFAULT_REGISTRAR, type BindingView, type RegisterInput } from '../../src/core/registrar/registrar.js';
import { parseNameAddr } from '../../src/core/sip/name-addr.js';

const NOW = 1_800_000_000_000;
const AOR = 'sip:alice@example.com';
const source = { address: '192.0.2.10', port: 5060, transport: 'udp' as const };

function when(contacts: string[] | '*', extra: Partial<RegisterInput> = {}): RegisterInput {
  return {
    aor: AOR,
    contacts: contacts === '*' ? '*' : contacts.map(parseNameAddr),
    expiresHeader: undefined,
    callId: 'call-1',
    cseq: 10,
    source,
    now: NOW,
    ...extra,
  };
}

function given(...bindings: Array<Partial<BindingView> & { uri: string }>): BindingView[] {
  return bindings.map((b) => ({
    contact: `<${b.uri}>`,
    expiresAt: NOW + 60_000,
    q: 1,
    callId: 'call-1',
    cseq: 5,
    ...b,
  }));
}

describe('registrar decision', () => {
  it('binds a new contact with the Expires header and records it as contact.bound', () => {
    const d = decideRegister(when(['<sip:alice@192.0.2.10:5060>'], { expiresHeader: 600 }), [], DEFAULT_REGISTRAR);
    expect(d.kind).toBe('accept');
    if (d.kind !== 'accept') return;
    expect(d.events).toHaveLength(1);
    expect(d.events[0]).toMatchObject({ type: 'contact.bound', aor: AOR, uri: 'sip:alice@192.0.2.10:5060', expiresAt: NOW + 600_000, q: 1, cseq: 10 });
    expect(contactsForResponse(d.bindings, NOW)).toEqual(['<sip:alice@192.0.2.10:5060>;expires=600']);
  });

  it('takes the Contact expires parameter over the Expires header, and the default when neither says', () => {
    const a = decideRegister(when(['<sip:a@h>;expires=120'], { expiresHeader: 600 }), [], DEFAULT_REGISTRAR);
    const b = decideRegister(when(['<sip:a@h>']), [], DEFAULT_REGISTRAR);
    expect(a.kind === 'accept' && a.events[0]).toMatchObject({ expiresAt: NOW + 120_000 });
    expect(b.kind === 'accept' && b.events[0]).toMatchObject({ expiresAt: NOW + DEFAULT_REGISTRAR.defaultExpires * 1000 });
  });

  it('keeps the Contact exactly as registered, parameters included, but not its expires', () => {
    const d = decideRegister(when(['"Alice" <sip:alice@h:5062;transport=tcp;ob>;+sip.instance="<urn:uuid:1>";reg-id=1;expires=300']), [], DEFAULT_REGISTRAR);
    expect(d.kind === 'accept' && d.events[0]).toMatchObject({
      contact: '"Alice" <sip:alice@h:5062;transport=tcp;ob>;+sip.instance="<urn:uuid:1>";reg-id=1',
      instanceId: '<urn:uuid:1>',
      regId: 1,
    });
  });

  it('refreshes an existing binding (contact.refreshed) and lists every binding in the answer', () => {
    const d = decideRegister(when(['<sip:alice@h1>'], { expiresHeader: 300 }), given({ uri: 'sip:alice@h1' }, { uri: 'sip:alice@h2', q: 0.5 }), DEFAULT_REGISTRAR);
    expect(d.kind).toBe('accept');
    if (d.kind !== 'accept') return;
    expect(d.events.map((e) => e.type)).toEqual(['contact.refreshed']);
    expect(contactsForResponse(d.bindings, NOW)).toEqual(['<sip:alice@h1>;expires=300', '<sip:alice@h2>;expires=60']);
  });

  it('removes a binding with expires 0', () => {
    const d = decideRegister(when(['<sip:alice@h1>;expires=0']), given({ uri: 'sip:alice@h1' }), DEFAULT_REGISTRAR);
    expect(d.kind === 'accept' && d.events).toEqual([expect.objectContaining({ type: 'contact.removed', uri: 'sip:alice@h1', reason: 'unregistered' })]);
  });

  it('removes every binding for Contact: * with Expires: 0', () => {
    const d = decideRegister(when('*', { expiresHeader: 0 }), given({ uri: 'sip:alice@h1', callId: 'other' }, { uri: 'sip:alice@h2', callId: 'other' }), DEFAULT_REGISTRAR);
    expect(d.kind === 'accept' && d.events.map((e) => e.type)).toEqual(['contact.removed', 'contact.removed']);
    expect(d.kind === 'accept' && d.bindings).toEqual([]);
  });

  it('rejects Contact: * without Expires: 0 with 400', () => {
    const d = decideRegister(when('*', { expiresHeader: 3600 }), [], DEFAULT_REGISTRAR);
    expect(d).toMatchObject({ kind: 'reject', status: 400 });
  });

  it('rejects an interval below the minimum with 423 and Min-Expires', () => {
    const d = decideRegister(when(['<sip:a@h>'], { expiresHeader: 10 }), [], DEFAULT_REGISTRAR);
    expect(d).toEqual({ kind: 'reject', status: 423, reason: 'Interval Too Brief', headers: [['Min-Expires', String(DEFAULT_REGISTRAR.minExpires)]] });
  });

  it('shortens an interval above the maximum to the maximum', () => {
    const d = decideRegister(when(['<sip:a@h>'], { expiresHeader: 86_400 }), [], DEFAULT_REGISTRAR);
    expect(d.kind === 'accept' && d.events[0]).toMatchObject({ expiresAt: NOW + DEFAULT_REGISTRAR.maxExpires * 1000 });
  });

  it('rejects an out-of-order CSeq on the same Call-ID with 400', () => {
    const d = decideRegister(when(['<sip:alice@h1>'], { cseq: 5 }), given({ uri: 'sip:alice@h1', cseq: 5 }), DEFAULT_REGISTRAR);
    expect(d).toMatchObject({ kind: 'reject', status: 400 });
  });

  it('accepts a lower CSeq from a new Call-ID (the phone rebooted)', () => {
    const d = decideRegister(when(['<sip:alice@h1>'], { cseq: 1, callId: 'new' }), given({ uri: 'sip:alice@h1', cseq: 99 }), DEFAULT_REGISTRAR);
    expect(d.kind).toBe('accept');
  });

  it('answers a REGISTER without Contact with the current bindings and no events (a query)', () => {
    const d = decideRegister(when([]), given({ uri: 'sip:alice@h1' }), DEFAULT_REGISTRAR);
    expect(d).toMatchObject({ kind: 'accept', events: [] });
    expect(d.kind === 'accept' && d.bindings).toHaveLength(1);
  });

  it('refuses more contacts than max contacts per AOR', () => {
    const contacts = Array.from({ length: 3 }, (_, i) => `<sip:alice@h${i}>`);
    const d = decideRegister(when(contacts), [], { ...DEFAULT_REGISTRAR, maxContacts: 2 });
    expect(d).toMatchObject({ kind: 'reject', status: 503 });
  });

  it('ignores expired bindings when deciding', () => {
    const d = decideRegister(when(['<sip:alice@h1>'], { cseq: 1 }), given({ uri: 'sip:alice@h1', cseq: 99, expiresAt: NOW - 1 }), DEFAULT_REGISTRAR);
    expect(d.kind === 'accept' && d.events[0]).toMatchObject({ type: 'contact.bound' });
  });

  it('replaces the URI of an RFC 5626 instance that re-registers from a new address', () => {
    const d = decideRegister(
      when(['<sip:alice@new>;+sip.instance="<urn:uuid:1>";reg-id=1'], { callId: 'c2' }),
      given({ uri: 'sip:alice@old', instanceId: '<urn:uuid:1>', regId: 1 }),
      DEFAULT_REGISTRAR,
    );
    expect(d.kind === 'accept' && d.events.map((e) => e.type)).toEqual(['contact.removed', 'contact.bound']);
  });
});

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDigestChallenge, parseAuthParams, parseDigestChallenge, parseDigestCredentials, quote } from '../../src/core/auth/index.js';

const REQUIRED = 'username="alice", realm="example.com", nonce="abc", uri="sip:example.com", response="0123456789abcdef0123456789abcdef"';

function parsed(value: string) {
  const r = parseDigestCredentials(value);
  if (!r.ok) throw new Error(`expected credentials to parse: ${r.reason}`);
  return r.credentials;
}

describe('parseDigestCredentials', () => {
  it('reads a credential as a Grandstream phone sends it, folded over lines', () => {
    const c = parsed(
      'Digest username="10", realm="192.168.1.15", algorithm=MD5,\r\n\turi="sip:192.168.1.15", nonce="462791f06aa9b37a34fd11b1adc58c5a9df7c95b",\r\n response="be9e8d46b8dcd522f22301e1f2b3287c"',
    );
    expect(c).toMatchObject({
      username: '10',
      realm: '192.168.1.15',
      algorithm: 'MD5',
      uri: 'sip:192.168.1.15',
      nonce: '462791f06aa9b37a34fd11b1adc58c5a9df7c95b',
      response: 'be9e8d46b8dcd522f22301e1f2b3287c',
    });
    expect(c.qop).toBeUndefined();
  });

  it('tolerates spacing, unquoted or quoted values, parameter-name case, empty list elements and a lower-case scheme', () => {
    const c = parsed(`  digest   USERNAME = "alice" ,REALM="example.com",, Nonce="abc",uri="sip:example.com", Response="0123456789abcdef0123456789abcdef", QOP="auth", NC=00000001, cnonce=xyz, Algorithm=sha-256,`);
    expect(c).toMatchObject({ username: 'alice', realm: 'example.com', nonce: 'abc', qop: 'auth', nc: '00000001', cnonce: 'xyz', algorithm: 'sha-256' });
    expect(c.params.get('response')).toBe('0123456789abcdef0123456789abcdef');
  });

  it('unescapes quoted-pairs in quoted values', () => {
    const c = parsed(`Digest username="a\\"b\\\\c", realm="example.com", nonce="abc", uri="sip:example.com", response="00"`);
    expect(c.username).toBe('a"b\\c');
  });

  it('decodes an RFC 7616 username* ext-value and rejects it next to username', () => {
    const c = parsed(`Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", uri="u", response="00"`);
    expect(c.username).toBe('J\u00e4s\u00f8n Doe');
    const both = parseDigestCredentials(`Digest username="a", username*=UTF-8''b, realm="r", nonce="n", uri="u", response="00"`);
    expect(both).toMatchObject({ ok: false, reason: expect.stringMatching(/username\*/) });
  });

  it.each([
    ['a duplicated parameter', `Digest ${REQUIRED}, response="ffff"`, /duplicate parameter response/],
    ['a duplicated parameter differing only in case', `Digest ${REQUIRED}, Realm="evil.com"`, /duplicate parameter realm/],
    ['a missing username', 'Digest realm="r", nonce="n", uri="u", response="00"', /missing username/],
    ['a missing response', 'Digest username="a", realm="r", nonce="n", uri="u"', /missing response/],
    ['an unterminated quote', 'Digest username="alice, realm="r"', /unterminated|expected ","/],
    ['a parameter without value', `Digest ${REQUIRED}, qop`, /no value/],
    ['two parameters without a comma', 'Digest username="a" realm="r"', /expected ","/],
    ['garbage', 'Digest ===', /unexpected character/],
    ['an empty value', '', /missing authentication scheme/],
    ['a line break inside a quoted value', 'Digest username="ali\r\nce", realm="r", nonce="n", uri="u", response="00"', /unterminated/],
  ])('rejects %s with a reason instead of throwing', (_name, value, reason) => {
    const r = parseDigestCredentials(value);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('reports another scheme so callers can leave it for the next hop', () => {
    expect(parseDigestCredentials('Basic YWxhZGRpbjpvcGVuc2VzYW1l')).toMatchObject({ ok: false, scheme: 'Basic' });
    expect(parseDigestCredentials('Bearer abc.def')).toMatchObject({ ok: false, scheme: 'Bearer' });
  });

  it('rejects values too long to be a credential', () => {
    const r = parseDigestCredentials(`Digest ${REQUIRED}, opaque="${'x'.repeat(10_000)}"`);
    expect(r).toMatchObject({ ok: false, reason: 'credentials too long' });
  });

  it('never throws, whatever the input (fuzzed)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const r = parseDigestCredentials(s);
        expect(typeof r.ok).toBe('boolean');
        const withPrefix = parseDigestCredentials(`Digest ${s}`);
        expect(typeof withPrefix.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('reads back every value it was given, whatever characters the quoted values hold (fuzzed)', () => {
    const safe = fc.string({ maxLength: 40 }).filter((s) => !/[\r\n]/.test(s));
    fc.assert(
      fc.property(safe, safe, safe, (username, realm, uri) => {
        const value = `Digest username=${quote(username)}, realm=${quote(realm)}, nonce="n", uri=${quote(uri)}, response="00"`;
        const c = parsed(value);
        expect([c.username, c.realm, c.uri]).toEqual([username, realm, uri]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('challenges', () => {
  it('formats a challenge with quoted realm, nonce and qop, token algorithm, and stale only when set', () => {
    expect(formatDigestChallenge({ realm: 'example.com', nonce: 'abc', algorithm: 'MD5', qop: ['auth'] })).toBe(
      'Digest realm="example.com", nonce="abc", qop="auth", algorithm=MD5',
    );
    expect(formatDigestChallenge({ realm: 'example.com', nonce: 'abc', algorithm: 'SHA-256', qop: ['auth'], stale: true })).toBe(
      'Digest realm="example.com", nonce="abc", qop="auth", algorithm=SHA-256, stale=true',
    );
  });

  it('parses what it formats', () => {
    const value = formatDigestChallenge({ realm: 'we"ird\\realm', nonce: 'n-1_2', algorithm: 'SHA-512-256', qop: ['auth', 'auth-int'], stale: true, opaque: 'o' });
    const r = parseDigestChallenge(value);
    expect(r).toMatchObject({ ok: true, challenge: { realm: 'we"ird\\realm', nonce: 'n-1_2', algorithm: 'SHA-512-256', qop: ['auth', 'auth-int'], stale: true, opaque: 'o' } });
  });

  it('reads the challenges OpenSER sent in seed 000 (no qop, no algorithm)', () => {
    const r = parseDigestChallenge('Digest realm="192.168.1.15",\r\n nonce="462791f06aa9b37a34fd11b1adc58c5a9df7c95b"');
    expect(r).toMatchObject({ ok: true, challenge: { realm: '192.168.1.15', qop: [], stale: false } });
  });

  it('gives the scheme and parameters of any auth-param list', () => {
    const r = parseAuthParams('Custom a=1, B="two"');
    expect(r.ok && r.scheme).toBe('Custom');
    expect(r.ok && [...r.params]).toEqual([
      ['a', '1'],
      ['b', 'two'],
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import {
  computeHa1,
  computeResponse,
  digestHash,
  DIGEST_ALGORITHMS,
  normalizeAlgorithm,
  sessionHa1,
  strongestFirst,
  parseDigestCredentials,
} from '../../src/core/auth/index.js';

describe('digest computation', () => {
  it('reproduces the RFC 2617 s3.5 example (MD5, qop=auth)', () => {
    const ha1 = computeHa1({ algorithm: 'MD5', username: 'Mufasa', realm: 'testrealm@host.com', password: 'Circle Of Life' });
    const response = computeResponse({
      algorithm: 'MD5',
      ha1,
      nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093',
      method: 'GET',
      uri: '/dir/index.html',
      qop: 'auth',
      nc: '00000001',
      cnonce: '0a4f113b',
    });
    expect(response).toBe('6629fae49393a05397450978507c4ef1');
  });

  // RFC 7616 s3.9.1: the same request answered with MD5 and with SHA-256.
  const rfc7616 = {
    username: 'Mufasa',
    realm: 'http-auth@example.org',
    password: 'Circle of Life',
    method: 'GET',
    uri: '/dir/index.html',
    nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
    nc: '00000001',
    cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
    qop: 'auth' as const,
  };

  it.each([
    ['MD5', '8ca523f5e9506fed4657c9700eebdbec'],
    ['SHA-256', '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1'],
  ] as const)('reproduces the RFC 7616 s3.9.1 example with %s', (algorithm, expected) => {
    const ha1 = computeHa1({ algorithm, username: rfc7616.username, realm: rfc7616.realm, password: rfc7616.password });
    expect(computeResponse({ algorithm, ha1, ...rfc7616 })).toBe(expected);
  });

  it('computes SHA-512-256 as FIPS 180-4 SHA-512/256 and builds the RFC 7616 s3.9.2 response from it', () => {
    // The published s3.9.2 response is disputed (RFC errata 4897), so the primitive is pinned to the
    // FIPS 180-4 example and the response to the RFC 7616 s3.4.1 formula over it.
    expect(digestHash('SHA-512-256', 'abc')).toBe('53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23');
    const user = 'J\u00e4s\u00f8n Doe';
    const ha1 = computeHa1({ algorithm: 'SHA-512-256', username: user, realm: 'api@example.org', password: 'Secret, or not?' });
    expect(ha1).toBe(digestHash('SHA-512-256', Buffer.from(`${user}:api@example.org:Secret, or not?`, 'utf8')));
    const params = {
      nonce: '5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK',
      nc: '00000001',
      cnonce: 'NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v',
    };
    const response = computeResponse({ algorithm: 'SHA-512-256', ha1, method: 'GET', uri: '/doe.json', qop: 'auth', ...params });
    const ha2 = digestHash('SHA-512-256', 'GET:/doe.json');
    expect(response).toBe(digestHash('SHA-512-256', `${ha1}:${params.nonce}:${params.nc}:${params.cnonce}:auth:${ha2}`));
    expect(response).toHaveLength(64);
  });

  it('reproduces the responses a Grandstream phone sent OpenSER without qop (RFC 2069 style, seed 000)', () => {
    // Captured REGISTER and INVITE from user 10, password abc10, realm 192.168.1.15.
    const register = parseDigestCredentials(
      'Digest username="10", realm="192.168.1.15", algorithm=MD5,\r\n uri="sip:192.168.1.15", nonce="462791f06aa9b37a34fd11b1adc58c5a9df7c95b",\r\n response="be9e8d46b8dcd522f22301e1f2b3287c"',
    );
    const invite = parseDigestCredentials(
      'Digest username="10", realm="192.168.1.15",\r\n algorithm=MD5, uri="sip:11@192.168.1.15",\r\n nonce="462b927d2ab8368b1771ed4268c47ca585413f95",\r\n response="90761772224a8a43df0f31b7437181f3"',
    );
    expect(register.ok && invite.ok).toBe(true);
    const ha1 = computeHa1({ algorithm: 'MD5', username: '10', realm: '192.168.1.15', password: 'abc10' });
    for (const [parsed, method] of [
      [register, 'REGISTER'],
      [invite, 'INVITE'],
    ] as const) {
      if (!parsed.ok) throw new Error(parsed.reason);
      const c = parsed.credentials;
      expect(computeResponse({ algorithm: 'MD5', ha1, nonce: c.nonce, method, uri: c.uri })).toBe(c.response);
    }
  });

  it('binds the -sess HA1 to nonce and cnonce over the hex HA1 (RFC 7616 s3.4.2)', () => {
    const base = digestHash('MD5', 'alice:example.com:secret');
    const sess = computeHa1({ algorithm: 'MD5-sess', username: 'alice', realm: 'example.com', password: 'secret', nonce: 'n1', cnonce: 'c1' });
    expect(sess).toBe(digestHash('MD5', `${base}:n1:c1`));
    expect(sessionHa1('MD5-sess', base.toUpperCase(), 'n1', 'c1')).toBe(sess);
    expect(sessionHa1('MD5', base, 'n1', 'c1')).toBe(base);
    const sha = computeHa1({ algorithm: 'SHA-256-sess', username: 'alice', realm: 'example.com', password: 'secret', nonce: 'n1', cnonce: 'c1' });
    expect(sha).toBe(digestHash('SHA-256', `${digestHash('SHA-256', 'alice:example.com:secret')}:n1:c1`));
    expect(() => computeHa1({ algorithm: 'SHA-512-256-sess', username: 'a', realm: 'r', password: 'p' })).toThrow(/cnonce/);
  });

  it('includes H(body) in A2 for qop=auth-int, so a changed body changes the response', () => {
    const ha1 = computeHa1({ algorithm: 'SHA-256', username: 'alice', realm: 'example.com', password: 'secret' });
    const common = { algorithm: 'SHA-256' as const, ha1, nonce: 'n', method: 'INVITE', uri: 'sip:bob@example.com', nc: '00000001', cnonce: 'c' };
    const sdp = 'v=0\r\n';
    const withBody = computeResponse({ ...common, qop: 'auth-int', body: Buffer.from(sdp) });
    const a2 = `INVITE:sip:bob@example.com:${digestHash('SHA-256', sdp)}`;
    expect(withBody).toBe(digestHash('SHA-256', `${ha1}:n:00000001:c:auth-int:${digestHash('SHA-256', a2)}`));
    expect(computeResponse({ ...common, qop: 'auth-int', bodyDigest: digestHash('SHA-256', sdp) })).toBe(withBody);
    expect(computeResponse({ ...common, qop: 'auth-int', body: 'v=1\r\n' })).not.toBe(withBody);
    expect(computeResponse({ ...common, qop: 'auth' })).not.toBe(withBody);
  });

  it('names algorithms case-insensitively, defaults to MD5 and orders them strongest first', () => {
    expect(normalizeAlgorithm(undefined)).toBe('MD5');
    expect(normalizeAlgorithm('md5-SESS')).toBe('MD5-sess');
    expect(normalizeAlgorithm('sha-512-256')).toBe('SHA-512-256');
    expect(normalizeAlgorithm('SHA-1')).toBeUndefined();
    expect(strongestFirst(['MD5', 'SHA-256', 'MD5', 'SHA-512-256'])).toEqual(['SHA-512-256', 'SHA-256', 'MD5']);
    expect(DIGEST_ALGORITHMS[0]).toBe('SHA-512-256');
    expect(DIGEST_ALGORITHMS.at(-1)).toBe('MD5-sess');
  });
});

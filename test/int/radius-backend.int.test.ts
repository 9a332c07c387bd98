import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../src/core/auth/backend.js';
import { createRadiusBackend, type RadiusBackend } from '../../src/backends/auth/radius/backend.js';
import { md5, registerDigest } from '../support/digest.js';
import { startFreeRadius, type FreeRadius } from '../support/freeradius.js';

const logger = pino({ level: 'silent' });
const budget = (): { signal: AbortSignal } => ({ signal: AbortSignal.timeout(10_000) });

describe('RADIUS digest verifier against FreeRADIUS 3.2 rlm_digest', () => {
  let server: FreeRadius;
  let backend: RadiusBackend;

  beforeAll(async () => {
    server = await startFreeRadius();
    backend = createRadiusBackend({
      name: 'radius-test',
      servers: [{ host: server.host, port: server.port, secret: server.secret }],
      logger,
    });
  });

  afterAll(async () => {
    await backend?.close();
    await server?.stop();
  });

  it('offers only the algorithms rlm_digest can check', () => {
    expect(backend.kind).toBe('verifier');
    expect(backend.algorithms).toEqual(['MD5', 'MD5-sess']);
  });

  it('accepts alice with the right password and returns her SIP-AVPs in every Kamailio syntax plus Reply-Message', async () => {
    const result = await backend.verify(registerDigest('alice', { password: 'alice-secret' }), budget());
    expect(result).toEqual({
      result: 'accept',
      attributes: {
        rpid: '<sip:+15550001@example.com>',
        class: 3,
        email: 'alice@example.com',
        '#100': 'gold',
        '#101': -7,
        'Reply-Message': 'welcome alice',
      },
    });
  });

  it('accepts alice without qop (RFC 2069 compatibility digest)', async () => {
    const result = await backend.verify(registerDigest('alice', { password: 'alice-secret' }, { qop: undefined }), budget());
    expect(result.result).toBe('accept');
  });

  it('accepts alice with qop=auth-int when the body digest matches', async () => {
    const body = 'v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\n';
    const request = registerDigest('alice', { password: 'alice-secret' }, { qop: 'auth-int', body, method: 'INVITE', uri: 'sip:bob@example.com' });
    expect((await backend.verify(request, budget())).result).toBe('accept');
    const tampered = { ...request, bodyDigest: md5(`${body}tampered`) };
    expect((await backend.verify(tampered, budget())).result).toBe('reject');
  });

  it('rejects alice with a wrong password and loads none of her attributes', async () => {
    const result = await backend.verify(registerDigest('alice', { password: 'wrong' }), budget());
    expect(result.result).toBe('reject');
    expect(result).not.toHaveProperty('attributes');
  });

  it('rejects a subscriber the server does not know', async () => {
    const result = await backend.verify(registerDigest('mallory', { password: 'anything' }), budget());
    expect(result.result).toBe('reject');
  });

  it('accepts bob, stored only as HA1, with MD5 and with MD5-sess', async () => {
    const ha1 = md5('bob:example.com:bob-secret');
    const plain = await backend.verify(registerDigest('bob', { ha1 }), budget());
    expect(plain).toEqual({ result: 'accept', attributes: { email: 'bob@example.com' } });
    const sess = await backend.verify(registerDigest('bob', { ha1 }, { algorithm: 'MD5-sess' }), budget());
    expect(sess.result).toBe('accept');
    const wrong = await backend.verify(registerDigest('bob', { password: 'not-bob-secret' }, { algorithm: 'MD5-sess' }), budget());
    expect(wrong.result).toBe('reject');
  });

  it('accepts carol only for her own SIP identity (Sip-Uri-User check item)', async () => {
    const own = registerDigest('carol', { password: 'carol-secret' });
    expect((await backend.verify(own, budget())).result).toBe('accept');
    expect((await backend.verify({ ...registerDigest('carol', { password: 'carol-secret' }), sipUriUser: 'alice' }, budget())).result).toBe('reject');
  });

  it('rejects locally, without asking the server, what rlm_digest cannot check', async () => {
    const before = backend.stats.requests;
    const good = registerDigest('alice', { password: 'alice-secret' });
    expect(await backend.verify({ ...good, algorithm: 'SHA-256' }, budget())).toMatchObject({ result: 'reject' });
    expect(await backend.verify({ ...good, response: 'not-hex' }, budget())).toMatchObject({ result: 'reject' });
    expect(await backend.verify({ ...good, nonce: 'n'.repeat(300) }, budget())).toMatchObject({ result: 'reject' });
    expect(backend.stats.requests).toBe(before);
  });

  it('answers 64 concurrent requests, each with its own correct outcome', async () => {
    const cases = Array.from({ length: 64 }, (_, i) => {
      if (i % 4 === 0) return { request: registerDigest('alice', { password: 'wrong' }), expected: 'reject' as const };
      if (i % 4 === 1) return { request: registerDigest('bob', { ha1: md5('bob:example.com:bob-secret') }), expected: 'accept' as const, email: 'bob@example.com' };
      if (i % 4 === 2) return { request: registerDigest('carol', { password: 'carol-secret' }), expected: 'accept' as const, email: 'carol@example.com' };
      return { request: registerDigest('alice', { password: 'alice-secret' }), expected: 'accept' as const, email: 'alice@example.com' };
    });
    const results = await Promise.all(cases.map((c) => backend.verify(c.request, budget())));
    results.forEach((result, i) => {
      const c = cases[i]!;
      expect(result.result, `request ${i}`).toBe(c.expected);
      if (result.result === 'accept') expect(result.attributes.email, `request ${i}`).toBe(c.email);
    });
  });

  it('never accepts with a wrong shared secret: the server drops the request, the backend is unavailable', async () => {
    const wrongSecret = createRadiusBackend({
      name: 'radius-wrong-secret',
      servers: [{ host: server.host, port: server.port, secret: 'not-the-secret' }],
      timeoutMs: 300,
      retries: 1,
      logger,
    });
    try {
      const outcome = wrongSecret.verify(registerDigest('alice', { password: 'alice-secret' }), budget());
      await expect(outcome).rejects.toBeInstanceOf(BackendUnavailableError);
      await expect(outcome).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE', retriable: true, backend: 'radius-wrong-secret' });
      expect(wrongSecret.stats).toMatchObject({ requests: 1, timeouts: 2, retransmissions: 1 });
      expect(wrongSecret.health()[0]!.state).toBe('dead');
    } finally {
      await wrongSecret.close();
    }
  });

  it('turns an exhausted lookup budget into BackendUnavailableError carrying the abort reason', async () => {
    const controller = new AbortController();
    const reason = new Error('budget');
    controller.abort(reason);
    await expect(backend.verify(registerDigest('alice', { password: 'alice-secret' }), { signal: controller.signal })).rejects.toMatchObject({
      code: 'BACKEND_UNAVAILABLE',
      cause: reason,
    });
  });

  it('leaves the server alive and its log free of passwords', async () => {
    expect(backend.health()).toEqual([{ host: server.host, port: server.port, state: 'alive' }]);
    const log = server.log();
    expect(log).toMatch(/Login OK: \[alice@example.com\]/);
    expect(log).not.toMatch(/alice-secret/);
  });
});

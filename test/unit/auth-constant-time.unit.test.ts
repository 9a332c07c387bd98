/**
 * Digest responses and nonce signatures are compared with crypto.timingSafeEqual, never with ===,
 * so response time does not reveal how many leading characters of a guess were right.
 */
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';

const spy = vi.hoisted(() => ({ calls: [] as Array<[Buffer, Buffer]> }));

vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      spy.calls.push([Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const { MemoryBackend } = await import('../../src/backends/auth/memory.js');
const { DigestAuthenticator, answerDigestChallenge } = await import('../../src/core/auth/index.js');

describe('constant-time comparison', () => {
  it('compares the nonce signature and the digest response with timingSafeEqual, for right and wrong answers alike', async () => {
    const auth = new DigestAuthenticator({
      secret: 'test secret: thirty-two bytes ok',
      logger: pino({ level: 'silent' }),
      domains: [{ domain: 'example.com', backend: new MemoryBackend({ name: 'mem', users: [{ username: 'alice', domain: 'example.com', password: 'alice-secret' }] }) }],
    });
    const req = {
      method: 'REGISTER',
      requestUri: 'sip:example.com',
      body: Buffer.alloc(0),
      identity: { user: 'alice', domain: 'example.com' },
      source: { address: '127.0.0.1', port: 5060, transport: 'udp' as const },
    };
    for (const [password, outcome] of [
      ['alice-secret', 'ok'],
      ['wrong', 'bad_password'],
    ] as const) {
      const challenge = (await auth.authenticate({ ...req, credentials: [] })).reply!.headers[0]![1];
      const credential = answerDigestChallenge({ challenge, username: 'alice', password, method: 'REGISTER', uri: req.requestUri });
      const sent = /response="([0-9a-f]+)"/.exec(credential)![1]!;
      spy.calls.length = 0;
      const result = await auth.authenticate({ ...req, credentials: [credential] });
      expect(result.outcome).toBe(outcome);
      // One call checks the nonce's MAC (16 bytes), one the response (32 hex characters).
      expect(spy.calls.map(([a]) => a.length).sort((x, y) => x - y)).toEqual([16, 32]);
      const responseCall = spy.calls.find(([a]) => a.length === 32)!;
      expect(responseCall[1].toString('latin1')).toBe(sent);
    }
  });
});

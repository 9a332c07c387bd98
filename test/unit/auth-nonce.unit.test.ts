import { describe, expect, it } from 'vitest';
import { AuthConfigError, NonceCodec, NonceCountTracker } from '../../src/core/auth/index.js';

const SECRET = 'a cluster-wide secret of enough length';

function codecAt(start: number, options: Partial<ConstructorParameters<typeof NonceCodec>[0]> = {}) {
  const clock = { now: start };
  const codec = new NonceCodec({ secret: SECRET, clock: () => clock.now, ...options });
  return { codec, clock };
}

describe('NonceCodec', () => {
  it('accepts its own nonce for the realm it was issued for, and tells when it was issued', () => {
    const { codec } = codecAt(1_700_000_000_000);
    const nonce = codec.issue('example.com');
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{52}$/);
    expect(codec.verify(nonce, 'example.com')).toEqual({ status: 'valid', issuedAt: 1_700_000_000_000 });
    expect(codec.verify(nonce, 'EXAMPLE.com')).toMatchObject({ status: 'valid' });
  });

  it('issues a different nonce every time, even within the same millisecond', () => {
    const { codec } = codecAt(1_700_000_000_000);
    const nonces = new Set(Array.from({ length: 1000 }, () => codec.issue('example.com')));
    expect(nonces.size).toBe(1000);
  });

  it('calls a nonce expired once lifetime and drift have passed, and valid up to then', () => {
    const { codec, clock } = codecAt(1_000_000, { lifetimeMs: 30_000, clockDriftMs: 1_000 });
    const nonce = codec.issue('example.com');
    clock.now += 31_000;
    expect(codec.verify(nonce, 'example.com').status).toBe('valid');
    clock.now += 1;
    expect(codec.verify(nonce, 'example.com')).toEqual({ status: 'expired', issuedAt: 1_000_000 });
  });

  it('accepts a nonce from a peer whose clock runs a little ahead, but not one from far in the future', () => {
    const peer = codecAt(1_000_500).codec;
    const ahead = codecAt(1_005_000).codec;
    const { codec } = codecAt(1_000_000, { clockDriftMs: 1_000 });
    expect(codec.verify(peer.issue('example.com'), 'example.com').status).toBe('valid');
    expect(codec.verify(ahead.issue('example.com'), 'example.com')).toEqual({ status: 'forged', reason: 'issued in the future' });
  });

  it('accepts nonces issued by another instance sharing the secret (a cluster)', () => {
    const a = codecAt(1_000_000).codec;
    const b = codecAt(1_000_000).codec;
    expect(b.verify(a.issue('example.com'), 'example.com').status).toBe('valid');
  });

  it('calls forged a nonce signed under another secret, for another realm, tampered with, or not ours at all', () => {
    const { codec } = codecAt(1_000_000);
    const other = new NonceCodec({ secret: 'another secret, also long enough', clock: () => 1_000_000 });
    const nonce = codec.issue('example.com');
    expect(codec.verify(other.issue('example.com'), 'example.com')).toEqual({ status: 'forged', reason: 'bad signature' });
    expect(codec.verify(nonce, 'example.org')).toEqual({ status: 'forged', reason: 'bad signature' });
    // Every single-character change is caught.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < nonce.length; i++) {
      const replacement = alphabet[(alphabet.indexOf(nonce[i]!) + 1) % alphabet.length]!;
      const tampered = nonce.slice(0, i) + replacement + nonce.slice(i + 1);
      expect(codec.verify(tampered, 'example.com').status).toBe('forged');
    }
    expect(codec.verify('462791f06aa9b37a34fd11b1adc58c5a9df7c95b', 'example.com')).toEqual({ status: 'forged', reason: 'not a sipledger nonce' });
    expect(codec.verify('', 'example.com').status).toBe('forged');
    expect(codec.verify(`${nonce}"`, 'example.com').status).toBe('forged');
  });

  it('never calls a forged nonce expired, however old its claimed time stamp', () => {
    const { codec, clock } = codecAt(1_000_000);
    const other = new NonceCodec({ secret: 'another secret, also long enough', clock: () => 1_000_000 });
    const foreign = other.issue('example.com');
    clock.now += 3_600_000;
    expect(codec.verify(foreign, 'example.com').status).toBe('forged');
  });

  it('refuses a secret shorter than 16 bytes and nonsensical lifetimes, naming the key', () => {
    expect(() => new NonceCodec({ secret: 'short' })).toThrow(AuthConfigError);
    expect(() => new NonceCodec({ secret: 'short' })).toThrow(/secret: must be at least 16 bytes/);
    expect(() => new NonceCodec({ secret: SECRET, lifetimeMs: 0 })).toThrow(/nonceLifetimeMs/);
    expect(() => new NonceCodec({ secret: SECRET, clockDriftMs: -1 })).toThrow(/clockDriftMs/);
    expect(new NonceCodec({ secret: Buffer.alloc(16, 7) }).lifetimeMs).toBe(30_000);
  });
});

describe('NonceCountTracker', () => {
  it('accepts increasing counts and rejects a count seen before', () => {
    const t = new NonceCountTracker();
    expect(t.check('n1', 1, 0)).toBe('fresh');
    expect(t.check('n1', 2, 0)).toBe('fresh');
    expect(t.check('n1', 2, 0)).toBe('replayed');
    expect(t.check('n1', 1, 0)).toBe('replayed');
    expect(t.check('n2', 1, 0)).toBe('fresh');
  });

  it('accepts counts arriving out of order within the window, once each', () => {
    const t = new NonceCountTracker({ window: 8 });
    expect(t.check('n', 5, 0)).toBe('fresh');
    expect(t.check('n', 3, 0)).toBe('fresh');
    expect(t.check('n', 4, 0)).toBe('fresh');
    expect(t.check('n', 3, 0)).toBe('replayed');
    expect(t.check('n', 12, 0)).toBe('fresh');
    // 12 - 8 = 4 is outside the window of 8 below 12: it can no longer be told from a replay.
    expect(t.check('n', 4, 0)).toBe('replayed');
    expect(t.check('n', 6, 0)).toBe('fresh');
    expect(t.check('n', 6, 0)).toBe('replayed');
    // A jump further than the window starts a clean bitmap.
    expect(t.check('n', 100, 0)).toBe('fresh');
    expect(t.check('n', 99, 0)).toBe('fresh');
    expect(t.check('n', 100, 0)).toBe('replayed');
  });

  it('remembers at most maxNonces, forgetting the least recently used, and says a forgotten nonce may have been seen', () => {
    const t = new NonceCountTracker({ maxNonces: 2 });
    expect(t.check('a', 1, 100)).toBe('fresh');
    expect(t.check('b', 1, 200)).toBe('fresh');
    expect(t.check('a', 2, 100)).toBe('fresh'); // a is now the most recently used
    expect(t.check('c', 1, 300)).toBe('fresh'); // evicts b (issued at 200)
    expect(t.size).toBe(2);
    // b's counts are gone: it cannot be accepted again as if new.
    expect(t.check('b', 1, 200)).toBe('forgotten');
    // An unknown nonce issued no later than the newest forgotten one may have been seen.
    expect(t.check('d', 1, 150)).toBe('forgotten');
    // One issued after every forgotten nonce cannot have been seen.
    expect(t.check('e', 1, 250)).toBe('fresh');
    expect(t.size).toBe(2);
  });

  it('keeps memory bounded under a flood of nonces', () => {
    const t = new NonceCountTracker({ maxNonces: 100 });
    for (let i = 0; i < 10_000; i++) t.check(`n${i}`, 1, i);
    expect(t.size).toBe(100);
    expect(t.check('n9999', 1, 9999)).toBe('replayed');
    expect(t.check('n0', 2, 0)).toBe('forgotten');
  });

  it('refuses windows and sizes it cannot honour', () => {
    expect(() => new NonceCountTracker({ window: 0 })).toThrow(RangeError);
    expect(() => new NonceCountTracker({ window: 2048 })).toThrow(RangeError);
    expect(() => new NonceCountTracker({ maxNonces: 0 })).toThrow(RangeError);
  });
});

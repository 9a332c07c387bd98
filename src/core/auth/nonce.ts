/**
 * Stateless, signed nonces.
 *
 * A nonce is `base64url(version | issuedAt | random | mac)`:
 *   - version: 1 byte (1)
 *   - issuedAt: 8 bytes, milliseconds since the epoch, big-endian
 *   - random: 14 bytes from the CSPRNG (crypto.randomBytes), never Math.random()
 *   - mac: the first 16 bytes of HMAC-SHA256(secret, version | issuedAt | random | realm)
 *
 * RFC 7616 s3.3 suggests exactly this shape ("time-stamp H(time-stamp ":" ETag ":" secret-data)"):
 * the server needs no state to tell its own nonces from forged ones, and every instance of a cluster
 * configured with the same secret accepts the others' nonces. Binding the realm stops a nonce issued
 * for one served domain from being answered in another. Freshness (replay) is tracked separately by
 * {@link NonceCountTracker}.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthConfigError } from './errors.js';

const VERSION = 1;
// 1 + 8 + 14 + 16 = 39 bytes, a multiple of 3: the base64url form has no padding bits, so exactly
// one string encodes each nonce (replay tracking is keyed by the string).
const RANDOM_BYTES = 14;
const MAC_BYTES = 16;
const PAYLOAD_BYTES = 1 + 8 + RANDOM_BYTES;
const NONCE_BYTES = PAYLOAD_BYTES + MAC_BYTES;
/** base64url of 39 bytes, without padding. */
const NONCE_LENGTH = (NONCE_BYTES / 3) * 4;
const NONCE_SHAPE = /^[A-Za-z0-9_-]+$/;

/** Shortest secret accepted: 128 bits, the strength of the truncated MAC. */
export const MIN_SECRET_BYTES = 16;

export type NonceVerdict =
  | { readonly status: 'valid'; readonly issuedAt: number }
  /** Signed by us (or a peer sharing the secret) but older than the lifetime: answer stale=true. */
  | { readonly status: 'expired'; readonly issuedAt: number }
  /** Not ours: bad encoding, bad MAC, another realm, or a time stamp from the future. Never stale. */
  | { readonly status: 'forged'; readonly reason: string };

export interface NonceCodecOptions {
  readonly secret: string | Buffer;
  /** How long a nonce may be answered, in milliseconds. Default 30 000. */
  readonly lifetimeMs?: number;
  /** Allowance for clocks of cluster peers that disagree slightly, in milliseconds. Default 1 000. */
  readonly clockDriftMs?: number;
  readonly clock?: () => number;
}

/**
 * Random bytes are drawn from the CSPRNG in blocks and handed out once each: one randomBytes call
 * per 256 challenges instead of one per challenge (the call, not the entropy, is what costs).
 */
const RANDOM_BLOCK = RANDOM_BYTES * 256;
let randomPool = Buffer.alloc(0);
let randomAt = 0;

function takeRandom(target: Buffer, offset: number): void {
  if (randomAt + RANDOM_BYTES > randomPool.length) {
    randomPool = randomBytes(RANDOM_BLOCK);
    randomAt = 0;
  }
  randomPool.copy(target, offset, randomAt, randomAt + RANDOM_BYTES);
  // Used bytes are wiped so that no copy of a past nonce's randomness lingers in the pool.
  randomPool.fill(0, randomAt, randomAt + RANDOM_BYTES);
  randomAt += RANDOM_BYTES;
}

export class NonceCodec {
  readonly lifetimeMs: number;
  readonly clockDriftMs: number;
  readonly #key: Buffer;
  readonly #clock: () => number;

  constructor(options: NonceCodecOptions) {
    const key = typeof options.secret === 'string' ? Buffer.from(options.secret, 'utf8') : Buffer.from(options.secret);
    if (key.length < MIN_SECRET_BYTES) {
      throw new AuthConfigError('secret', `must be at least ${MIN_SECRET_BYTES} bytes (got ${key.length})`);
    }
    this.lifetimeMs = options.lifetimeMs ?? 30_000;
    this.clockDriftMs = options.clockDriftMs ?? 1_000;
    if (!Number.isFinite(this.lifetimeMs) || this.lifetimeMs <= 0) {
      throw new AuthConfigError('nonceLifetimeMs', 'must be a positive number of milliseconds');
    }
    if (!Number.isFinite(this.clockDriftMs) || this.clockDriftMs < 0) {
      throw new AuthConfigError('clockDriftMs', 'must be zero or a positive number of milliseconds');
    }
    this.#key = key;
    this.#clock = options.clock ?? Date.now;
  }

  /** A fresh nonce for `realm`, stamped with the current time. */
  issue(realm: string): string {
    // One buffer for the whole nonce: payload, then its MAC written behind it.
    const nonce = Buffer.allocUnsafe(NONCE_BYTES);
    nonce.writeUInt8(VERSION, 0);
    // The 64-bit big-endian time stamp as two 32-bit halves: no BigInt per challenge.
    const t = Math.max(0, Math.floor(this.#clock()));
    nonce.writeUInt32BE(Math.floor(t / 0x1_0000_0000), 1);
    nonce.writeUInt32BE(t >>> 0, 5);
    takeRandom(nonce, 9);
    const payload = nonce.subarray(0, PAYLOAD_BYTES);
    this.#mac(payload, realm).copy(nonce, PAYLOAD_BYTES);
    return nonce.toString('base64url');
  }

  /** Checks a nonce presented for `realm`. Pure apart from reading the clock. */
  verify(nonce: string, realm: string): NonceVerdict {
    if (nonce.length !== NONCE_LENGTH || !NONCE_SHAPE.test(nonce)) return { status: 'forged', reason: 'not a sipledger nonce' };
    const raw = Buffer.from(nonce, 'base64url');
    // Only the canonical encoding is ours: a second spelling of the same bytes would be a second
    // key for nonce-count tracking.
    if (raw.length !== NONCE_BYTES || raw.readUInt8(0) !== VERSION || raw.toString('base64url') !== nonce) {
      return { status: 'forged', reason: 'not a sipledger nonce' };
    }
    const payload = raw.subarray(0, PAYLOAD_BYTES);
    const expected = this.#mac(payload, realm);
    if (!timingSafeEqual(expected, raw.subarray(PAYLOAD_BYTES))) return { status: 'forged', reason: 'bad signature' };
    const issuedAt = raw.readUInt32BE(1) * 0x1_0000_0000 + raw.readUInt32BE(5);
    const now = this.#clock();
    if (issuedAt > now + this.clockDriftMs) return { status: 'forged', reason: 'issued in the future' };
    if (now - issuedAt > this.lifetimeMs + this.clockDriftMs) return { status: 'expired', issuedAt };
    return { status: 'valid', issuedAt };
  }

  #mac(payload: Buffer, realm: string): Buffer {
    return createHmac('sha256', this.#key).update(payload).update(realm.toLowerCase(), 'utf8').digest().subarray(0, MAC_BYTES);
  }
}

import { randomFillSync } from 'node:crypto';

/**
 * Random identifiers for SIP (branch parameters, tags) drawn from one pool of CSPRNG bytes refilled
 * 4 KiB at a time. A crypto call per identifier is a getrandom system call each: for a relayed call,
 * which creates a branch per forwarded request, that was about 5% of the proxy's CPU.
 */
const POOL = Buffer.alloc(4096);
let at = POOL.length;

function take(bytes: number): number {
  if (at + bytes > POOL.length) {
    randomFillSync(POOL);
    at = 0;
  }
  const start = at;
  at += bytes;
  return start;
}

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  const start = take(bytes);
  return POOL.toString('hex', start, start + bytes);
}

/** `bytes` random bytes as base64url (no padding). */
export function randomBase64url(bytes: number): string {
  const start = take(bytes);
  return POOL.toString('base64url', start, start + bytes);
}

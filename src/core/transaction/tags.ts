import { randomFillSync } from 'node:crypto';

/**
 * To tags for locally generated responses: 64 random bits each (RFC 3261 s19.3 asks for at least 32
 * bits of randomness). Drawn from a pool refilled 512 tags at a time, because one crypto call per
 * transaction costs more than the rest of a stateless answer.
 */
const POOL = Buffer.alloc(8 * 512);
let offset = POOL.length;

export function poolTag(): string {
  if (offset >= POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const tag = POOL.toString('hex', offset, offset + 8);
  offset += 8;
  return tag;
}

/**
 * Branches and tags drawn from the pooled CSPRNG bytes: the right shape, and no repeats across
 * several refills of the pool.
 */
import { describe, expect, it } from 'vitest';
import { newBranch, newTag } from '../../src/core/sip/response.js';
import { randomBase64url, randomHex } from '../../src/core/sip/random-pool.js';

describe('pooled random identifiers', () => {
  it('branches carry the magic cookie and 80 random bits; tags 64 bits as hex', () => {
    expect(newBranch()).toMatch(/^z9hG4bK[A-Za-z0-9_-]{14}$/);
    expect(newTag()).toMatch(/^[0-9a-f]{16}$/);
    expect(randomHex(3)).toMatch(/^[0-9a-f]{6}$/);
    expect(randomBase64url(3)).toMatch(/^[A-Za-z0-9_-]{4}$/);
  });

  it('never repeats an identifier across refills of the pool, mixing sizes', () => {
    const seen = new Set<string>();
    // 4 KiB per refill: 5,000 branches (10 bytes) and 5,000 tags (8 bytes) take about 22 refills.
    for (let i = 0; i < 5000; i++) {
      seen.add(newBranch());
      seen.add(newTag());
    }
    expect(seen.size).toBe(10_000);
  });
});

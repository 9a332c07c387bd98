/**
 * Nonce-count replay protection (RFC 7616 s3.4: "The nc value is the hexadecimal count of the number
 * of requests (including the current request) that the client has sent with the nonce value in this
 * request ... The purpose of this directive is to allow the server to detect request replays by
 * maintaining its own copy of this count").
 *
 * Memory is bounded like Kamailio's nc array: at most `maxNonces` nonces are remembered, least
 * recently used forgotten first, and each nonce keeps only a sliding window of `window` counts
 * (a bitmap below the highest count seen). A count is accepted once: a count seen before, or one
 * that fell below the window, is a replay. Counts may arrive out of order within the window (UDP,
 * parallel transactions from one phone).
 *
 * A nonce that was forgotten while still within its lifetime cannot be told apart from a replay of
 * it, so {@link NonceCountTracker.check} answers `forgotten` and the framework asks the phone, with
 * stale=true, to start over with a fresh nonce. To know a nonce may have been forgotten without
 * remembering it, the tracker keeps the latest issue time of any forgotten nonce: unknown nonces
 * issued no later than that may have been seen before.
 */
import { detach } from '../sip/detach.js';

export type NonceCountVerdict = 'fresh' | 'replayed' | 'forgotten';

interface Entry {
  highest: number;
  /** Bit i set: count (highest - i) was seen. Bit 0 is always the highest itself. */
  seen: bigint;
  readonly issuedAt: number;
}

export interface NonceCountTrackerOptions {
  /** Nonces remembered at once. Default 65 536. */
  readonly maxNonces?: number;
  /** Counts remembered per nonce below the highest one seen. Default 64, at most 1 024. */
  readonly window?: number;
}

export class NonceCountTracker {
  readonly maxNonces: number;
  readonly window: number;
  readonly #entries = new Map<string, Entry>();
  readonly #mask: bigint;
  #forgottenUpTo = -Infinity;

  constructor(options: NonceCountTrackerOptions = {}) {
    this.maxNonces = options.maxNonces ?? 65_536;
    this.window = options.window ?? 64;
    if (!Number.isInteger(this.maxNonces) || this.maxNonces < 1) throw new RangeError('maxNonces must be a positive integer');
    if (!Number.isInteger(this.window) || this.window < 1 || this.window > 1024) throw new RangeError('window must be an integer in 1..1024');
    this.#mask = (1n << BigInt(this.window)) - 1n;
  }

  /** Number of nonces currently remembered (for metrics and tests). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Records `nc` for `nonce` and says whether it is new. Synchronous, so two concurrent requests with
   * the same nonce and count cannot both be accepted.
   */
  check(nonce: string, nc: number, issuedAt: number): NonceCountVerdict {
    const entry = this.#entries.get(nonce);
    if (entry === undefined) {
      if (issuedAt <= this.#forgottenUpTo) return 'forgotten';
      this.#insert(nonce, { highest: nc, seen: 1n, issuedAt });
      return 'fresh';
    }
    // Refresh the LRU position: Map iteration order is insertion order.
    this.#entries.delete(nonce);
    this.#entries.set(nonce, entry);
    if (nc > entry.highest) {
      const shift = nc - entry.highest;
      entry.seen = shift >= this.window ? 1n : ((entry.seen << BigInt(shift)) | 1n) & this.#mask;
      entry.highest = nc;
      return 'fresh';
    }
    const offset = entry.highest - nc;
    if (offset >= this.window) return 'replayed';
    const bit = 1n << BigInt(offset);
    if ((entry.seen & bit) !== 0n) return 'replayed';
    entry.seen |= bit;
    return 'fresh';
  }

  #insert(nonce: string, entry: Entry): void {
    while (this.#entries.size >= this.maxNonces) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      const evicted = this.#entries.get(oldest.value)!;
      this.#entries.delete(oldest.value);
      if (evicted.issuedAt > this.#forgottenUpTo) this.#forgottenUpTo = evicted.issuedAt;
    }
    // Kept for the nonce's lifetime: a copy, not a view onto the request that carried it.
    this.#entries.set(detach(nonce), entry);
  }
}

/**
 * Compact records of finished transactions: what the transaction layer keeps of a transaction that
 * does nothing but absorb copies until a timer ends it (timers J, L, M, I, K and D; ADR 0003),
 * instead of the transaction object with its messages and whatever its user holds through it.
 *
 * Every record of one table has the same lifetime, so insertion order is expiry order: the layer's
 * one sweeping timer advances a generation counter in steps of T1/5, and each table drops its
 * oldest records whose lifetime has passed. A record lives between its lifetime and its lifetime
 * plus one step.
 */
export interface TimedRecord {
  /** The generation the record was made in. */
  generation: number;
}

export class RecordTable<V extends TimedRecord> {
  readonly #records = new Map<string, V>();

  /**
   * @param lifetime generations a record lives (its timer divided by the step, rounded up)
   * @param cap most records; beyond it the oldest is forgotten early
   */
  constructor(
    readonly lifetime: number,
    private readonly cap: number,
  ) {}

  get size(): number {
    return this.#records.size;
  }

  get(key: string): V | undefined {
    return this.#records.get(key);
  }

  has(key: string): boolean {
    return this.#records.has(key);
  }

  /**
   * Adds a record under `key` (a string of its own: it is kept for the record's lifetime). Returns
   * true when the table was full and its oldest record was forgotten to make room.
   */
  add(key: string, record: V): boolean {
    let evicted = false;
    if (this.#records.size >= this.cap) {
      const oldest = this.#records.keys().next();
      if (!oldest.done) {
        this.#records.delete(oldest.value);
        evicted = true;
      }
    }
    this.#records.set(key, record);
    return evicted;
  }

  delete(key: string): void {
    this.#records.delete(key);
  }

  clear(): void {
    this.#records.clear();
  }

  /** Whether a record of `made` has outlived its lifetime by generation `now`. */
  expired(made: number, now: number): boolean {
    return now - made > this.lifetime;
  }

  /** Drops the records that have outlived their lifetime by generation `now`. */
  sweep(now: number): void {
    for (const [key, record] of this.#records) {
      if (!this.expired(record.generation, now)) break;
      this.#records.delete(key);
    }
  }
}

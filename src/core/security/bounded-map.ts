/**
 * A map that holds at most `capacity` entries, forgetting those not used for longest: an
 * approximate LRU in two generations. New and used entries live in the young generation; when it is
 * full, it becomes the old one and the previous old generation is dropped whole. An entry used at
 * least once per generation (a flooder, an attacker) is never dropped; entries seen once (a spray
 * of spoofed addresses) go first.
 *
 * Why not one Map with delete-and-reinsert on every use (the textbook JavaScript LRU): V8 rehashes
 * a Map that keeps deleting and re-adding, and at 10,000 entries that pattern costs tens of
 * microseconds per request; here every operation is a plain lookup or insertion.
 */
export class BoundedMap<V> {
  readonly #half: number;
  #young = new Map<string, V>();
  #old = new Map<string, V>();
  /** Entries dropped to stay within capacity. */
  evicted = 0;

  constructor(readonly capacity: number) {
    this.#half = Math.max(1, Math.ceil(capacity / 2));
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  /** The value, marking it as used. */
  get(key: string): V | undefined {
    const v = this.#young.get(key);
    if (v !== undefined) return v;
    const o = this.#old.get(key);
    if (o !== undefined) {
      this.#old.delete(key);
      this.#insert(key, o);
    }
    return o;
  }

  set(key: string, value: V): void {
    if (this.#young.has(key)) {
      this.#young.set(key, value);
      return;
    }
    this.#old.delete(key);
    this.#insert(key, value);
  }

  delete(key: string): boolean {
    return this.#young.delete(key) || this.#old.delete(key);
  }

  clear(): void {
    this.#young = new Map();
    this.#old = new Map();
  }

  *values(): IterableIterator<V> {
    yield* this.#old.values();
    yield* this.#young.values();
  }

  #insert(key: string, value: V): void {
    if (this.#young.size >= this.#half) {
      this.evicted += this.#old.size;
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(key, value);
  }
}

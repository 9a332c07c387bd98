/**
 * Deadlines of in-flight backend calls that all get the same budget: they expire in the order they
 * began, so one timer, set for the oldest, serves all of them (instead of a timer, a timeout promise
 * and a Promise.race per call).
 */
export interface Deadline {
  readonly at: number;
  readonly onExpire: () => void;
}

export class Deadlines {
  readonly #ms: number;
  readonly #pending = new Set<Deadline>();
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number) {
    this.#ms = ms;
  }

  /** Starts a budget of `ms`; `onExpire` runs once it has passed unless remove() came first. */
  add(onExpire: () => void): Deadline {
    const d: Deadline = { at: Date.now() + this.#ms, onExpire };
    this.#pending.add(d);
    // A timer already set is for an older deadline; when it fires it re-arms for the next one.
    if (this.#timer === undefined) this.#arm(this.#ms);
    return d;
  }

  /** The call ended in time. The shared timer stays: it finds nothing due and is not re-armed. */
  remove(d: Deadline): void {
    this.#pending.delete(d);
  }

  get size(): number {
    return this.#pending.size;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(ms)));
  }

  #fire(): void {
    this.#timer = undefined;
    const now = Date.now();
    for (const d of this.#pending) {
      if (d.at > now) {
        this.#arm(d.at - now);
        return;
      }
      this.#pending.delete(d);
      d.onExpire();
    }
  }
}

/**
 * One registration at a time per address of record, with a bounded queue.
 *
 * Each REGISTER for an AOR is decided against the bindings the previous one left (RFC 3261 s10.3
 * steps 6-8: Call-ID/CSeq ordering, contact limits, removal), so the decisions of one AOR are taken
 * in arrival order, each after the previous one's events are durable. A holder's work is bounded by
 * the event log's append deadline, but arrivals are not: a phone in a loop, or a peer with valid
 * credentials flooding one AOR, would otherwise queue without bound, each waiter keeping its request
 * and transaction alive, and each decided long after its phone stopped waiting. The queue per AOR
 * is therefore capped; an arrival beyond the cap is refused at once (the caller answers 503 with
 * Retry-After), and other AORs are not affected.
 */
export type AorLockOutcome = 'done' | 'full';

export class AorLocks {
  /** AOR -> waiters, oldest first. An entry exists while the AOR is held. */
  readonly #held = new Map<string, Array<() => void>>();

  /** @param maxWaiting most requests waiting for one AOR while another holds it */
  constructor(readonly maxWaiting: number) {}

  /** Runs `fn` once no other registration of `aor` runs; 'full' (and `fn` not run) when too many wait. */
  async run(aor: string, fn: () => Promise<void>): Promise<AorLockOutcome> {
    let waiters = this.#held.get(aor);
    if (waiters === undefined) {
      waiters = [];
      this.#held.set(aor, waiters);
    } else {
      if (waiters.length >= this.maxWaiting) return 'full';
      const queue = waiters;
      await new Promise<void>((resolve) => queue.push(resolve));
    }
    try {
      await fn();
    } finally {
      // Hand the AOR to the next waiter directly, or release it.
      const next = waiters.shift();
      if (next !== undefined) next();
      else this.#held.delete(aor);
    }
    return 'done';
  }

  /** AORs held right now (for metrics and tests). */
  get heldCount(): number {
    return this.#held.size;
  }

  /** Requests waiting, over all AORs. */
  get waitingCount(): number {
    let n = 0;
    for (const w of this.#held.values()) n += w.length;
    return n;
  }
}

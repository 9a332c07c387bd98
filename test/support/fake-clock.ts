/**
 * A manual clock for unit tests: timers fire only when the test advances time, in due order
 * (ties in the order they were set). Implements the transaction layer's `Timers` seam.
 */
export class FakeClock {
  now = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; seq: number; fn: () => void }>();

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.pending.set(id, { at: this.now + Math.max(0, ms), seq: id, fn });
    return id;
  };

  clearTimeout = (handle: unknown): void => {
    this.pending.delete(handle as number);
  };

  /** Timers still waiting. */
  get size(): number {
    return this.pending.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due (including ones set meanwhile). */
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      let next: { id: number; at: number; seq: number; fn: () => void } | undefined;
      for (const [id, t] of this.pending) {
        if (t.at > until) continue;
        if (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq)) next = { id, ...t };
      }
      if (!next) break;
      this.pending.delete(next.id);
      this.now = next.at;
      next.fn();
    }
    this.now = until;
  }
}

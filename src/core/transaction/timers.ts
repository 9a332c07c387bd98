/** RFC 3261 s17 timer values (Table 4), in milliseconds. */
export interface TimerConfig {
  /** RTT estimate; retransmissions start here. Default 500. */
  t1: number;
  /** Maximum retransmission interval for non-INVITE requests and INVITE responses. Default 4000. */
  t2: number;
  /** Maximum time a message stays in the network. Default 5000. */
  t4: number;
}

export const DEFAULT_TIMERS: Readonly<TimerConfig> = Object.freeze({ t1: 500, t2: 4000, t4: 5000 });

/** The clock seam: production uses Node's timers, unit tests a fake clock. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * A set of named timers owned by one transaction, so that terminating the transaction clears
 * every timer it started (bounded memory: nothing outlives its transaction).
 */
export class TimerSet {
  private readonly handles = new Map<string, unknown>();

  constructor(private readonly timers: Timers) {}

  start(name: string, ms: number, fn: () => void): void {
    this.stop(name);
    const h = this.timers.setTimeout(() => {
      this.handles.delete(name);
      fn();
    }, ms);
    this.handles.set(name, h);
  }

  stop(name: string): void {
    const h = this.handles.get(name);
    if (h !== undefined) {
      this.timers.clearTimeout(h);
      this.handles.delete(name);
    }
  }

  has(name: string): boolean {
    return this.handles.has(name);
  }

  clear(): void {
    for (const h of this.handles.values()) this.timers.clearTimeout(h);
    this.handles.clear();
  }
}

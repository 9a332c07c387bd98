/**
 * Recent calls and their outcome, from call.* events. Bounded: the oldest calls are forgotten first.
 */
import type { SipledgerEvent, Source } from '../core/log/events.js';
import type { Projection } from '../core/log/projection.js';

export type CallState = 'attempted' | 'routed' | 'answered' | 'failed' | 'ended';

export interface CallRecord {
  readonly callId: string;
  readonly state: CallState;
  readonly from?: string;
  readonly to?: string;
  readonly requestUri?: string;
  readonly source?: Source;
  readonly attemptedAt?: number;
  readonly targets?: readonly string[];
  readonly routedAt?: number;
  /** The final status relayed: 2xx when answered, 3xx-6xx when failed. */
  readonly status?: number;
  readonly reason?: string;
  readonly answeredAt?: number;
  readonly failedAt?: number;
  readonly endedAt?: number;
  readonly endedBy?: string;
  /** Time of the last event about this call. */
  readonly updatedAt: number;
}

export interface CallsProjectionOptions {
  /** How many calls to remember. Default 10,000. */
  readonly capacity?: number;
}

export class CallsProjection implements Projection {
  readonly name = 'calls';
  readonly version = 1;
  readonly #capacity: number;
  /** Insertion order is first-seen order; eviction takes the oldest. */
  #calls = new Map<string, CallRecord>();

  constructor(opts: CallsProjectionOptions = {}) {
    this.#capacity = Math.max(1, opts.capacity ?? 10_000);
  }

  #update(callId: string, time: number, change: Partial<CallRecord> & { state?: CallState }): void {
    const previous = this.#calls.get(callId);
    const state = previous && change.state && !this.#advances(previous.state, change.state) ? previous.state : change.state;
    const next: CallRecord = {
      ...(previous ?? { callId, state: 'attempted' }),
      ...change,
      state: state ?? previous?.state ?? 'attempted',
      updatedAt: time,
    };
    this.#calls.set(callId, next);
    if (!previous && this.#calls.size > this.#capacity) {
      const oldest = this.#calls.keys().next();
      if (!oldest.done) this.#calls.delete(oldest.value);
    }
  }

  /** Events from several instances may arrive out of order; a call never goes back to an earlier state. */
  #advances(from: CallState, to: CallState): boolean {
    const rank: Record<CallState, number> = { attempted: 0, routed: 1, answered: 2, failed: 2, ended: 3 };
    return rank[to] >= rank[from];
  }

  apply(event: SipledgerEvent): void {
    switch (event.type) {
      case 'call.attempted':
        this.#update(event.callId, event.time, {
          state: 'attempted',
          from: event.from,
          to: event.to,
          requestUri: event.requestUri,
          source: event.source,
          attemptedAt: event.time,
        });
        break;
      case 'call.routed':
        this.#update(event.callId, event.time, { state: 'routed', targets: event.targets, routedAt: event.time });
        break;
      case 'call.answered':
        this.#update(event.callId, event.time, { state: 'answered', status: event.status, answeredAt: event.time });
        break;
      case 'call.failed':
        this.#update(event.callId, event.time, {
          state: 'failed',
          status: event.status,
          failedAt: event.time,
          ...(event.reason !== undefined && { reason: event.reason }),
        });
        break;
      case 'call.ended':
        this.#update(event.callId, event.time, {
          state: 'ended',
          endedAt: event.time,
          ...(event.by !== undefined && { endedBy: event.by }),
        });
        break;
      default:
        break;
    }
  }

  get(callId: string): CallRecord | undefined {
    return this.#calls.get(callId);
  }

  /** The most recently started calls first, at most `limit` (default 100). */
  recent(limit = 100): CallRecord[] {
    const all = [...this.#calls.values()];
    return all.slice(Math.max(0, all.length - limit)).reverse();
  }

  /** Calls answered and not yet ended. */
  active(): CallRecord[] {
    return [...this.#calls.values()].filter((c) => c.state === 'answered');
  }

  get size(): number {
    return this.#calls.size;
  }

  truncate(): void {
    this.#calls = new Map();
  }

  toSnapshot(): { capacity: number; calls: CallRecord[] } {
    return { capacity: this.#capacity, calls: [...this.#calls.values()] };
  }

  restore(state: unknown): void {
    const s = state as { capacity?: unknown; calls?: unknown } | null;
    if (!s || !Array.isArray(s.calls)) throw new TypeError('malformed calls snapshot');
    if (s.capacity !== this.#capacity) throw new TypeError('calls snapshot was taken with another capacity');
    this.truncate();
    for (const c of s.calls as CallRecord[]) this.#calls.set(c.callId, c);
  }
}

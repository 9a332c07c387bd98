import { randomUUID } from 'node:crypto';
import type { SipledgerEvent } from './events.js';
import {
  LogError,
  type AppendResult,
  type EventLog,
  type LogPosition,
  type LogRecord,
  type ReadOptions,
  type Subscription,
  type TailHandler,
  type TailOptions,
} from './event-log.js';
import { decodeEvent, defaultUpcasters, type UpcasterRegistry } from './schemas.js';

export interface MemoryLogOptions {
  readonly upcasters?: UpcasterRegistry;
}

/**
 * An EventLog in process memory, for unit tests and tools. Durable for as long as the process lives.
 * Events are stored as JSON text so that a reader never shares objects with the writer, as with a
 * real log. One partition, "0"; the cursor is the index of the next event.
 */
export class MemoryLog implements EventLog {
  readonly identity = `memory:${randomUUID()}`;
  readonly #records: string[] = [];
  readonly #tails = new Set<(from: number) => void>();
  readonly #upcasters: UpcasterRegistry;
  #closed = false;

  constructor(opts: MemoryLogOptions = {}) {
    this.#upcasters = opts.upcasters ?? defaultUpcasters;
  }

  /** Stores a record exactly as given, bypassing validation: for tests of old versions. */
  appendRaw(record: object): void {
    this.#records.push(JSON.stringify(record));
    for (const wake of this.#tails) wake(this.#records.length);
  }

  async append(events: readonly SipledgerEvent[]): Promise<AppendResult> {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    for (const e of events) this.#records.push(JSON.stringify(e));
    for (const wake of this.#tails) wake(this.#records.length);
    return { position: { '0': this.#records.length } };
  }

  #record(i: number): LogRecord {
    return { position: { '0': i + 1 }, event: decodeEvent(JSON.parse(this.#records[i]!), this.#upcasters) };
  }

  async *read(from: LogPosition | 'start', opts: ReadOptions = {}): AsyncIterable<LogRecord> {
    const end = this.#records.length;
    let i = from === 'start' ? 0 : (from['0'] ?? 0);
    let n = 0;
    while (i < end && (opts.limit === undefined || n < opts.limit)) {
      if (opts.signal?.aborted) return;
      yield this.#record(i);
      i++;
      n++;
    }
  }

  tail(from: LogPosition | 'start', handler: TailHandler, _opts?: TailOptions): Subscription {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    let next = from === 'start' ? 0 : (from['0'] ?? 0);
    let open = true;
    let draining: Promise<void> | null = null;
    const drain = (): void => {
      if (draining) return;
      // Deliver synchronously where the handler is synchronous, so a local append's records are
      // applied before that append resolves (the single-writer promise in EventLog.tail).
      const run = (): void | Promise<void> => {
        while (open && next < this.#records.length) {
          const r = handler(this.#record(next++));
          if (r instanceof Promise) return r.then(run);
        }
      };
      const r = run();
      if (r instanceof Promise) {
        draining = r.then(
          () => {
            draining = null;
            if (open && next < this.#records.length) drain();
          },
          () => {
            // A failing handler stops the subscription; the handler owns reporting its error.
            open = false;
            draining = null;
          },
        );
      }
    };
    this.#tails.add(drain);
    drain();
    return {
      close: async () => {
        open = false;
        this.#tails.delete(drain);
        await draining;
      },
    };
  }

  async end(): Promise<LogPosition> {
    return { '0': this.#records.length };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#tails.clear();
  }
}

/**
 * The plug point between sipledger and where its events are stored: a local file (FileLog), Apache
 * Kafka (KafkaLog) or memory (MemoryLog, for unit tests). One contract suite runs against all three.
 */
import type { SipledgerEvent } from './events.js';

/**
 * A read cursor: for each partition, the offset of the next record to read. Everything before it has
 * been read. Logs with a single total order (memory, file) use one partition, "0". Treat it as opaque:
 * it is plain JSON so it can be stored in a snapshot, and compared only with the helpers below.
 */
export type LogPosition = { readonly [partition: string]: number };

export const START: LogPosition = Object.freeze({});

export interface LogRecord {
  /** The cursor just after this record: reading from it yields the records that follow. */
  readonly position: LogPosition;
  readonly event: SipledgerEvent;
}

export interface ReadOptions {
  /** Stop after this many records. */
  readonly limit?: number;
  readonly signal?: AbortSignal;
}

export interface AppendOptions {
  /**
   * Nothing waits on this batch before answering anyone (an audit record of a call step, an
   * authentication outcome whose answer is already sent): a log may hold it back briefly so that it
   * shares a durable write with the batches around it. The promise is unchanged: append still
   * resolves once the batch is durable and not before, and batches keep their order.
   */
  readonly deferrable?: boolean;
}

export interface AppendResult {
  /** A cursor that covers this batch (partial for partitioned logs: only the partitions written). */
  readonly position: LogPosition;
}

/**
 * Receives every record from the cursor on, in log order per partition; awaited before the next.
 * Each record's position is the whole cursor after it (every partition, starting from `from`).
 */
export type TailHandler = (record: LogRecord) => void | Promise<void>;

export interface TailOptions {
  /**
   * Called once if the subscription stops because the log cannot be read (corruption, broker gone
   * for good). Without it the error is only logged.
   */
  readonly onError?: (err: LogError) => void;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface EventLog {
  /** Stable name of this log's storage (a file log's id, a Kafka topic), stored with snapshots. */
  readonly identity: string;
  /**
   * Appends a batch. Resolves when the batch is durable under the log's policy; rejects with a
   * LogError when it is not, in which case nothing may be assumed about the batch.
   */
  append(events: readonly SipledgerEvent[], opts?: AppendOptions): Promise<AppendResult>;
  /** The records from a cursor up to the end as it was when the read began, then stops. */
  read(from: LogPosition | 'start', opts?: ReadOptions): AsyncIterable<LogRecord>;
  /**
   * Delivers the records from a cursor on, then every record appended later, by this process or by
   * another writer sharing the log, until the subscription is closed. A local append's records are
   * delivered before that append resolves on logs with a single writer (memory, file).
   */
  tail(from: LogPosition | 'start', handler: TailHandler, opts?: TailOptions): Subscription;
  /** The cursor at the end of the log now: what a reader must reach to be caught up. */
  end(): Promise<LogPosition>;
  close(): Promise<void>;
}

/** True when cursor `a` has reached `b` in every partition `b` names. */
export function covers(a: LogPosition, b: LogPosition): boolean {
  for (const p in b) {
    if ((a[p] ?? 0) < b[p]!) return false;
  }
  return true;
}

/** The cursor that has reached both. */
export function mergePositions(a: LogPosition, b: LogPosition): LogPosition {
  const out: Record<string, number> = { ...a };
  for (const [p, offset] of Object.entries(b)) {
    if ((out[p] ?? 0) < offset) out[p] = offset;
  }
  return out;
}

/** Accepts only what a LogPosition can be (for snapshots read from disk). */
export function isLogPosition(value: unknown): value is LogPosition {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  return Object.values(value).every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0);
}

export type LogErrorCode =
  | 'LOG_CLOSED'
  | 'LOG_IO'
  | 'LOG_LOCKED'
  | 'LOG_CORRUPT'
  | 'LOG_INVALID_EVENT'
  | 'LOG_RECORD_TOO_LARGE'
  | 'LOG_BROKER_UNAVAILABLE'
  | 'LOG_SNAPSHOT';

/** An infrastructure failure of a log. `retriable` says whether trying again may succeed. */
export class LogError extends Error {
  constructor(
    readonly code: LogErrorCode,
    message: string,
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LogError';
  }
}

/**
 * KafkaLog: the shared log of a multi-instance sipledger (DESIGN.md, "Scaling out"), on kafkajs.
 *
 * - Durability: appends resolve after the broker acknowledged them with acks=all from an idempotent
 *   producer (no duplicates on retry, order kept per partition). Appends that arrive while a send is
 *   in flight are sent together (group commit), one produce request for many appends.
 * - Order: events are keyed and partitioned by AOR (user@realm for auth events, Call-ID for calls),
 *   with Kafka's default (murmur2) partitioner, so one user's events stay in order. There is no order
 *   across partitions. A LogPosition is the vector of next offsets per partition.
 * - Reading: every instance consumes the whole topic from the beginning (or from a snapshot's
 *   offsets) with its own consumer group, up to the end offsets captured when it started, before it
 *   serves; then it follows the topic. Consumer offsets are not committed: the position lives in the
 *   ledger's snapshot.
 * - Topic: used when it exists or is auto-created by the broker. Production topics want a fixed
 *   partition count (changing it re-maps AORs to partitions), replication >= 3, min.insync.replicas
 *   >= 2, cleanup.policy=delete and a retention longer than anything live in the projections (the
 *   longest registration, the longest ban, the audit window): see docs/deployment.md. Compaction is
 *   wrong for this topic: records are keyed by AOR, so it would keep one binding of a phone with many.
 * - Retention: records older than the topic's retention are gone. {@link KafkaLog.earliest} says where
 *   the topic now begins, so a reader holding a position from before it (an old snapshot) can tell
 *   that events are missing instead of silently skipping them.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, Partitioners, logLevel, type Admin, type Consumer, type LogEntry, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import {
  LogError,
  type AppendOptions,
  type AppendResult,
  type EventLog,
  type LogPosition,
  type LogRecord,
  type ReadOptions,
  type Subscription,
  type TailHandler,
  type TailOptions,
} from '../../core/log/event-log.js';
import { partitionKey, type SipledgerEvent } from '../../core/log/events.js';
import { decodeEvent, defaultUpcasters, type UpcasterRegistry } from '../../core/log/schemas.js';

export interface KafkaLogConfig {
  readonly brokers: string[];
  readonly topic: string;
  readonly clientId?: string;
  /**
   * How long a deferrable append (AppendOptions.deferrable) may wait for company before it is sent,
   * in ms. Default 10; 0 sends it with the next produce request like any other append.
   */
  readonly lingerMs?: number;
}

export interface KafkaLogOptions extends KafkaLogConfig {
  readonly logger: Logger;
  readonly upcasters?: UpcasterRegistry;
  /** Prefix of the throwaway consumer group ids. Default `sipledger-<clientId>`. */
  readonly groupIdPrefix?: string;
  /** How long a fetch waits for new records: the latency of seeing other instances' events. Default 100 ms. */
  readonly maxWaitTimeInMs?: number;
}

interface PendingAppend {
  readonly events: readonly SipledgerEvent[];
  readonly deferrable: boolean;
  readonly resolve: (r: AppendResult) => void;
  readonly reject: (e: unknown) => void;
}

function brokerError(message: string, cause: unknown): LogError {
  // kafkajs reports spent retries as a non-retriable error whose cause is what actually failed (a
  // closed connection, no leader): whether trying again later may succeed is that cause's answer.
  let root = cause as { retriable?: boolean; cause?: unknown } | null;
  for (let depth = 0; root?.cause && depth < 8; depth++) root = root.cause as typeof root;
  const retriable = root?.retriable ?? true;
  return new LogError('LOG_BROKER_UNAVAILABLE', `${message}: ${(cause as Error)?.message ?? String(cause)}`, retriable, { cause });
}

function kafkaLogCreator(logger: Logger) {
  return () =>
    ({ level, log }: LogEntry) => {
      const { message, ...extra } = log;
      if (level === logLevel.ERROR) logger.error(extra, `kafka: ${message}`);
      else if (level === logLevel.WARN) logger.warn(extra, `kafka: ${message}`);
      else logger.debug(extra, `kafka: ${message}`);
    };
}

export class KafkaLog implements EventLog {
  readonly identity: string;
  readonly #kafka: Kafka;
  readonly #producer: Producer;
  readonly #admin: Admin;
  readonly #topic: string;
  readonly #logger: Logger;
  readonly #upcasters: UpcasterRegistry;
  readonly #groupPrefix: string;
  readonly #maxWait: number;
  readonly #partitionOf: (key: string) => number;
  readonly #consumers = new Set<Consumer>();
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #closed = false;
  readonly #lingerMs: number;
  /** Armed while every append in #pending is deferrable and nothing is being sent. */
  #lingerTimer: NodeJS.Timeout | undefined;

  private constructor(opts: KafkaLogOptions, kafka: Kafka, producer: Producer, admin: Admin, partitions: number[]) {
    this.#kafka = kafka;
    this.#producer = producer;
    this.#admin = admin;
    this.#topic = opts.topic;
    this.#lingerMs = Math.max(0, opts.lingerMs ?? 10);
    this.identity = `kafka:${opts.topic}`;
    this.#logger = opts.logger;
    this.#upcasters = opts.upcasters ?? defaultUpcasters;
    this.#groupPrefix = opts.groupIdPrefix ?? `sipledger-${opts.clientId ?? 'log'}`;
    this.#maxWait = opts.maxWaitTimeInMs ?? 100;
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = partitions.map((partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [], isr: [] }));
    this.#partitionOf = (key) => partitioner({ topic: opts.topic, partitionMetadata, message: { key, value: null } });
  }

  /** Connects the producer and learns the topic's partitions (auto-creating the topic if the broker does). */
  static async open(opts: KafkaLogOptions): Promise<KafkaLog> {
    if (!opts.brokers.length) throw new LogError('LOG_BROKER_UNAVAILABLE', 'no Kafka brokers configured', false);
    if (!opts.topic) throw new LogError('LOG_BROKER_UNAVAILABLE', 'no Kafka topic configured', false);
    const kafka = new Kafka({
      clientId: opts.clientId ?? 'sipledger',
      brokers: opts.brokers,
      logLevel: logLevel.WARN,
      logCreator: kafkaLogCreator(opts.logger.child({ component: 'kafka' })),
      retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    // acks=all is required by, and set with, every send; idempotence needs at most one request in flight
    // per connection to keep order across retries in kafkajs. Retries are bounded (kafkajs warns about
    // it) so that an append against a dead cluster fails in bounded time and the REGISTER gets a 5xx
    // instead of hanging; a phone that retries may then write an event twice, which the projections
    // absorb (a binding is keyed, a duplicate refresh changes nothing).
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    const admin = kafka.admin();
    try {
      await producer.connect();
      await admin.connect();
      const partitions = await KafkaLog.#partitions(admin, opts.topic);
      opts.logger.info({ topic: opts.topic, partitions: partitions.length }, 'kafka log open');
      return new KafkaLog(opts, kafka, producer, admin, partitions);
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      throw err instanceof LogError ? err : brokerError(`cannot open Kafka topic ${opts.topic}`, err);
    }
  }

  static async #partitions(admin: Admin, topic: string): Promise<number[]> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
        const ids = (topics[0]?.partitions ?? []).map((p) => p.partitionId).sort((a, b) => a - b);
        if (ids.length > 0) return ids;
      } catch (err) {
        // The first metadata request for a missing topic triggers auto-creation; leaders follow shortly.
        lastError = err;
      }
      await new Promise((r) => setTimeout(r, 100 + attempt * 50));
    }
    throw brokerError(`topic ${topic} has no partitions`, lastError ?? new Error('no partitions'));
  }

  // ---------------------------------------------------------------------------------------- append

  append(events: readonly SipledgerEvent[], opts?: AppendOptions): Promise<AppendResult> {
    if (this.#closed) return Promise.reject(new LogError('LOG_CLOSED', 'log is closed', false));
    if (events.length === 0) return Promise.resolve({ position: {} });
    const deferrable = opts?.deferrable === true && this.#lingerMs > 0;
    return new Promise((resolve, reject) => {
      this.#pending.push({ events, deferrable, resolve, reject });
      if (this.#flushing) return;
      // A deferrable append waits up to lingerMs for others to share its produce request; any other
      // append is sent at once and takes the waiting ones along, in order.
      if (deferrable) this.#lingerTimer ??= setTimeout(this.#sendLingering, this.#lingerMs);
      else this.#sendLingering();
    });
  }

  /** Starts sending what is pending (lingering deferrable appends included), unless a send is under way. */
  readonly #sendLingering = (): void => {
    if (this.#lingerTimer !== undefined) {
      clearTimeout(this.#lingerTimer);
      this.#lingerTimer = undefined;
    }
    if (!this.#flushing && this.#pending.length > 0) this.#flushing = this.#flushLoop();
  };

  async #flushLoop(): Promise<void> {
    try {
      // The first batch goes at once (an append someone waits on, or a linger that ended).
      let first = true;
      while (this.#pending.length > 0) {
        // Every append that came in while a batch was sent is deferrable: they linger, unless the log closes.
        if (!first && !this.#closed && !this.#pending.some((a) => !a.deferrable)) {
          this.#lingerTimer ??= setTimeout(this.#sendLingering, this.#lingerMs);
          break;
        }
        first = false;
        await this.#send(this.#pending.splice(0));
      }
    } finally {
      this.#flushing = null;
    }
  }

  async #send(group: PendingAppend[]): Promise<void> {
    // Per partition, the index each append's last message has in that partition's batch.
    const counts = new Map<number, number>();
    const lastIndex: Array<Map<number, number>> = [];
    const messages = [];
    for (const a of group) {
      const mine = new Map<number, number>();
      for (const e of a.events) {
        const key = partitionKey(e) ?? e.id;
        const partition = this.#partitionOf(key);
        const n = counts.get(partition) ?? 0;
        counts.set(partition, n + 1);
        mine.set(partition, n);
        messages.push({ key, value: JSON.stringify(e), partition, headers: { type: e.type } });
      }
      lastIndex.push(mine);
    }
    let metadata;
    try {
      metadata = await this.#producer.send({ topic: this.#topic, acks: -1, messages });
    } catch (err) {
      const error = brokerError(`append to ${this.#topic} failed`, err);
      for (const a of group) a.reject(error);
      return;
    }
    const base = new Map<number, number>();
    for (const m of metadata) base.set(m.partition, Number(m.baseOffset ?? m.offset ?? 0));
    group.forEach((a, i) => {
      const position: Record<string, number> = {};
      for (const [partition, index] of lastIndex[i]!) position[String(partition)] = (base.get(partition) ?? 0) + index + 1;
      a.resolve({ position });
    });
  }

  // ------------------------------------------------------------------------------------------ read

  async end(): Promise<LogPosition> {
    try {
      const offsets = await this.#admin.fetchTopicOffsets(this.#topic);
      return Object.fromEntries(offsets.map((o) => [String(o.partition), Number(o.high)]));
    } catch (err) {
      throw brokerError(`cannot read the end offsets of ${this.#topic}`, err);
    }
  }

  /**
   * Where the topic begins now, per partition: the first offset retention has not deleted. A cursor
   * that does not cover it points at records that no longer exist.
   */
  async earliest(): Promise<LogPosition> {
    try {
      const offsets = await this.#admin.fetchTopicOffsets(this.#topic);
      return Object.fromEntries(offsets.map((o) => [String(o.partition), Number(o.low)]));
    } catch (err) {
      throw brokerError(`cannot read the earliest offsets of ${this.#topic}`, err);
    }
  }

  /**
   * The partitions where `from` points before the topic's beginning, and how many records between
   * them retention deleted. Reading from there continues at the earliest record, so a reader that
   * needs every event (a snapshot's projections) must check first; this logs the loss either way.
   */
  async #warnIfTruncated(from: LogPosition | 'start'): Promise<void> {
    if (from === 'start') return;
    let earliest: LogPosition;
    try {
      earliest = await this.earliest();
    } catch {
      return; // the read itself will report the broker
    }
    const lost: Record<string, number> = {};
    for (const [p, low] of Object.entries(earliest)) {
      const at = from[p] ?? 0;
      if (at < low) lost[p] = low - at;
    }
    if (Object.keys(lost).length > 0) {
      this.#logger.warn(
        { topic: this.#topic, lost, earliest },
        'reading from a position the topic no longer holds: retention deleted records after it; continuing at the earliest',
      );
    }
  }

  /**
   * Runs a consumer with its own group from `from` (earliest where `from` names no offset), calling
   * `onRecord` in order per partition. Returns the consumer for disconnecting.
   */
  async #consume(
    from: LogPosition | 'start',
    onRecord: (partition: number, offset: number, event: SipledgerEvent) => Promise<void> | void,
    onCrash: (err: unknown) => void,
  ): Promise<Consumer> {
    await this.#warnIfTruncated(from);
    const consumer = this.#kafka.consumer({
      groupId: `${this.#groupPrefix}-${randomUUID()}`,
      maxWaitTimeInMs: this.#maxWait,
      allowAutoTopicCreation: true,
      retry: { retries: 8 },
    });
    this.#consumers.add(consumer);
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) onCrash(e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [this.#topic], fromBeginning: true });
    // The next offset to deliver, per partition. No offsets are committed, so a consumer that kafkajs
    // restarts after a retriable failure (the brokers were unreachable for a while) would begin again
    // at the earliest record: on every join it is sent back here instead, and records below it are
    // dropped, so nothing is applied twice and nothing is skipped.
    const next: Record<string, number> = from === 'start' ? {} : { ...from };
    const seekAll = (): void => {
      for (const [partition, offset] of Object.entries(next)) {
        consumer.seek({ topic: this.#topic, partition: Number(partition), offset: String(offset) });
      }
    };
    let joins = 0;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      // Called during the join, before the first fetch of the new generation.
      if (joins++ > 0) {
        this.#logger.warn({ topic: this.#topic, position: next }, 'kafka consumer rejoined; resuming where it stopped');
        seekAll();
      }
    });
    // run() creates the consumer group synchronously, so the seeks below are in place before the
    // first fetch; records below `next` are dropped as well, in case a fetch was already under way.
    const running = consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const offset = Number(message.offset);
        const p = String(partition);
        if (offset < (next[p] ?? 0)) return;
        let event: SipledgerEvent;
        try {
          event = decodeEvent(JSON.parse(message.value?.toString('utf8') ?? 'null'), this.#upcasters);
        } catch (err) {
          // One undecodable record written by someone else must not stop every instance. It is
          // passed on as a type no projection handles, so readers still move past its offset.
          this.#logger.error({ err, partition, offset }, 'kafka record is not an event; skipped');
          event = { type: 'log.undecodable', version: 1, id: `${partition}:${offset}`, time: 0 } as unknown as SipledgerEvent;
        }
        await onRecord(partition, offset, event);
        next[p] = offset + 1;
      },
    });
    seekAll();
    await running;
    return consumer;
  }

  async #stop(consumer: Consumer): Promise<void> {
    this.#consumers.delete(consumer);
    await consumer.disconnect().catch((err: unknown) => this.#logger.warn({ err }, 'kafka consumer did not disconnect cleanly'));
  }

  async *read(from: LogPosition | 'start', opts: ReadOptions = {}): AsyncIterable<LogRecord> {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    const end = await this.end();
    const cursor: Record<string, number> = from === 'start' ? {} : { ...from };
    const remaining = (): boolean => Object.entries(end).some(([p, high]) => (cursor[p] ?? 0) < high);
    if (!remaining()) return;

    // A bounded hand-over queue between the consumer and this generator: the consumer waits while full.
    const queue: Array<LogRecord | Error> = [];
    const signal: { wake?: () => void; space?: () => void } = {};
    const notify = (): void => {
      signal.wake?.();
      delete signal.wake;
    };
    const seen: Record<string, number> = { ...cursor };
    const consumer = await this.#consume(
      from,
      async (partition, offset, event) => {
        const p = String(partition);
        if (offset >= (end[p] ?? 0)) return; // beyond the end captured at start
        seen[p] = offset + 1;
        queue.push({ position: { ...seen }, event });
        notify();
        while (queue.length > 1000) await new Promise<void>((r) => (signal.space = r));
      },
      (err) => {
        queue.push(brokerError('kafka consumer stopped', err));
        notify();
      },
    );
    try {
      let n = 0;
      while (remaining()) {
        if (opts.signal?.aborted) return;
        const item = queue.shift();
        if (!item) {
          await new Promise<void>((r) => (signal.wake = r));
          continue;
        }
        signal.space?.();
        delete signal.space;
        if (item instanceof Error) throw item;
        Object.assign(cursor, item.position);
        if (opts.limit !== undefined && n >= opts.limit) return;
        n++;
        yield { position: { ...cursor }, event: item.event };
      }
    } finally {
      signal.space?.();
      await this.#stop(consumer);
    }
  }

  /**
   * Follows the topic from `from`. The subscription's `live` resolves when the consumer has joined its
   * group and is fetching: until then nothing, not even this instance's own appends, is delivered.
   */
  tail(from: LogPosition | 'start', handler: TailHandler, opts: TailOptions = {}): Subscription & { readonly live: Promise<void> } {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'log is closed', false);
    const cursor: Record<string, number> = from === 'start' ? {} : { ...from };
    let open = true;
    const fail = (err: unknown): void => {
      if (!open) return;
      open = false;
      const error = err instanceof LogError ? err : brokerError('kafka tail stopped', err);
      this.#logger.error({ err: error }, 'kafka tail stopped');
      opts.onError?.(error);
    };
    const started = this.#consume(
      from,
      async (partition, offset, event) => {
        if (!open) return;
        cursor[String(partition)] = offset + 1;
        try {
          await handler({ position: { ...cursor }, event });
        } catch (err) {
          this.#logger.error({ err, partition, offset }, 'log tail handler failed');
        }
      },
      fail,
    ).catch((err: unknown) => {
      fail(err);
      return undefined;
    });
    return {
      // consumer.run() resolves once the consumer has joined its group (seconds on a fresh group:
      // group.initial.rebalance.delay.ms); from then on records reach the handler as they arrive.
      live: started.then(() => undefined),
      close: async () => {
        open = false;
        const consumer = await started;
        if (consumer) await this.#stop(consumer);
      },
    } satisfies Subscription & { live: Promise<void> };
  }

  /** Waits for queued appends, then disconnects the producer, the admin client and every consumer. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Deferrable appends still lingering are sent now.
    this.#sendLingering();
    while (this.#flushing) await this.#flushing;
    await Promise.all([...this.#consumers].map((c) => this.#stop(c)));
    await this.#producer.disconnect().catch(() => undefined);
    await this.#admin.disconnect().catch(() => undefined);
  }
}

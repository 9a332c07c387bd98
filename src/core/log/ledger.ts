/**
 * The ledger: an EventLog plus the projections rebuilt from it, behind the one call the registrar and
 * router make, `append`, which resolves only when the events are durable under the log's policy and
 * the local projections already reflect them (DESIGN.md, contracts 2 and 3).
 *
 * Every event reaches the projections through one ordered stream, the log's tail: an instance's own
 * appends and those of other instances sharing a Kafka topic are applied the same way, so "read your
 * writes" means waiting until the tail has passed the position the append returned.
 */
import { mkdir, open as openFile, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { AuditProjection, type AuditProjectionOptions } from '../../projections/audit.js';
import { BansProjection } from '../../projections/bans.js';
import { CallsProjection, type CallsProjectionOptions } from '../../projections/calls.js';
import { LocationProjection } from '../../projections/location.js';
import {
  covers,
  isLogPosition,
  LogError,
  START,
  type AppendOptions,
  type EventLog,
  type LogPosition,
  type LogRecord,
  type Subscription,
} from './event-log.js';
import type { SipledgerEvent } from './events.js';
import { writeJsonInSlices } from './json-slices.js';
import type { Projection } from './projection.js';
import { eventSchemas } from './schemas.js';

export type { Binding } from '../../projections/location.js';
export { LocationProjection, AuditProjection, CallsProjection, BansProjection };

export interface LedgerOptions {
  /** The log; the ledger owns it from now on and closes it in close(). */
  readonly log: EventLog;
  /** Where snapshots are kept. Without it, every start replays the whole log. */
  readonly snapshotDir?: string;
  readonly logger: Logger;
  /** Used only to time snapshots and for logging; projections never read it. */
  readonly clock?: () => number;
  /** Check every appended event against its JSON Schema (default true). */
  readonly validate?: boolean;
  /** Write a snapshot after this many applied events (default 100,000; 0 disables). Needs snapshotDir. */
  readonly snapshotEvery?: number;
  /** How long append waits for the log's stream to deliver its own events (default 10 s). */
  readonly appendTimeoutMs?: number;
  readonly audit?: AuditProjectionOptions;
  readonly calls?: CallsProjectionOptions;
}

/** Called for each event applied, local or written by another instance. */
export type EventListener = (event: SipledgerEvent, position: LogPosition) => void;

interface SnapshotFile {
  readonly format: 1;
  readonly identity: string;
  readonly position: LogPosition;
  readonly takenAt: number;
  readonly projections: Record<string, { version: number; state: unknown }>;
}

const SNAPSHOT_FILE = 'ledger-snapshot.json';

/** Where a log with retention begins now (KafkaLog.earliest); undefined for logs that keep everything. */
function earliestOf(log: EventLog): Promise<LogPosition> | undefined {
  const withRetention = log as EventLog & { earliest?: () => Promise<LogPosition> };
  return typeof withRetention.earliest === 'function' ? withRetention.earliest() : undefined;
}

interface Waiter {
  readonly position: LogPosition;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export class Ledger {
  readonly location: LocationProjection;
  readonly audit: AuditProjection;
  readonly calls: CallsProjection;
  /** Bans in force (brute-force guard and operators), shared by every instance on the log. */
  readonly bans: BansProjection;
  readonly #projections: readonly Projection[];
  readonly #log: EventLog;
  readonly #logger: Logger;
  readonly #clock: () => number;
  readonly #snapshotDir: string | undefined;
  readonly #validate: boolean;
  readonly #snapshotEvery: number;
  readonly #appendTimeoutMs: number;
  #position: LogPosition = START;
  #ready = false;
  #closed = false;
  #subscription: Subscription | undefined;
  #waiters: Waiter[] = [];
  readonly #listeners = new Set<EventListener>();
  #sinceSnapshot = 0;
  #snapshotting: Promise<void> | undefined;
  #applied = 0;
  #tailError: LogError | undefined;

  private constructor(opts: LedgerOptions) {
    this.#log = opts.log;
    this.#logger = opts.logger;
    this.#clock = opts.clock ?? Date.now;
    this.#snapshotDir = opts.snapshotDir;
    this.#validate = opts.validate ?? true;
    this.#snapshotEvery = opts.snapshotEvery ?? 100_000;
    this.#appendTimeoutMs = opts.appendTimeoutMs ?? 10_000;
    this.location = new LocationProjection();
    this.audit = new AuditProjection(opts.audit);
    this.calls = new CallsProjection(opts.calls);
    this.bans = new BansProjection();
    this.#projections = [this.location, this.audit, this.calls, this.bans];
  }

  /**
   * Restores the newest usable snapshot, replays the log from its position to the end the log had
   * when opening began, then keeps following the log. Resolves once caught up.
   */
  static async open(opts: LedgerOptions): Promise<Ledger> {
    const ledger = new Ledger(opts);
    await ledger.#start();
    return ledger;
  }

  /**
   * True once the projections have caught up with the log as it was at open, and for as long as they
   * keep following it: a ledger whose tail stopped serves an ever older view and must not be ready.
   */
  get ready(): boolean {
    return this.#ready && this.#tailError === undefined;
  }

  /** The cursor of the last event applied to the projections. */
  get position(): LogPosition {
    return this.#position;
  }

  /** How many events were applied since open (replay included). */
  get appliedCount(): number {
    return this.#applied;
  }

  async #start(): Promise<void> {
    const started = this.#clock();
    const from = await this.#loadSnapshot();
    const end = await this.#log.end();
    let replayed = 0;
    const caughtUp = this.#waitFor(end);
    let failed: (err: LogError) => void = () => undefined;
    const failure = new Promise<never>((_, reject) => (failed = reject));
    this.#subscription = this.#log.tail(
      from,
      (record) => {
        if (!this.#ready) replayed++;
        this.#apply(record);
      },
      {
        onError: (err) => {
          this.#logger.error({ err }, 'ledger stopped following the log');
          this.#tailError = err;
          failed(err);
          for (const w of this.#waiters.splice(0)) w.reject(err);
        },
      },
    );
    // With nothing to replay, `caughtUp` holds at once; a log whose reader takes time to start (a Kafka
    // consumer joining its group) says when it is following, and only then is this instance ready to
    // see other instances' events and its own appends without that delay.
    const live = (this.#subscription as Subscription & { live?: Promise<void> }).live;
    try {
      await Promise.race([Promise.all([caughtUp, live]), failure]);
    } catch (err) {
      await this.#subscription.close().catch(() => undefined);
      throw err;
    }
    this.#ready = true;
    this.#logger.info(
      { replayed, liveBindings: this.location.count(this.#clock()), ms: this.#clock() - started, log: this.#log.identity },
      'ledger caught up with the log',
    );
  }

  #apply(record: LogRecord): void {
    const { event } = record;
    for (const p of this.#projections) {
      try {
        p.apply(event);
      } catch (err) {
        // An event this code cannot apply (a malformed or newer record) must not stop the ledger or
        // turn a restart into a crash loop; the log keeps it for a newer version to read.
        this.#logger.error({ err, projection: p.name, type: event.type, id: event.id }, 'event not applied');
      }
    }
    // Tail positions are whole cursors (EventLog.tail), so the newest one is where the ledger stands.
    this.#position = record.position;
    this.#applied++;
    for (const listener of this.#listeners) {
      try {
        listener(event, this.#position);
      } catch (err) {
        this.#logger.error({ err }, 'event listener failed');
      }
    }
    if (this.#waiters.length > 0) {
      const still: Waiter[] = [];
      for (const w of this.#waiters) {
        if (covers(this.#position, w.position)) w.resolve();
        else still.push(w);
      }
      this.#waiters = still;
    }
    if (this.#ready && this.#snapshotDir && this.#snapshotEvery > 0 && ++this.#sinceSnapshot >= this.#snapshotEvery) {
      this.#sinceSnapshot = 0;
      this.snapshot().catch((err: unknown) => this.#logger.warn({ err }, 'periodic snapshot failed'));
    }
  }

  #waitFor(position: LogPosition): Promise<void> {
    if (covers(this.#position, position)) return Promise.resolve();
    if (this.#tailError) return Promise.reject(this.#tailError);
    return new Promise((resolve, reject) => this.#waiters.push({ position, resolve, reject }));
  }

  /**
   * Appends events and resolves when they are durable and applied to this ledger's projections.
   * Rejects with a LogError: LOG_INVALID_EVENT (not retriable) when an event fails its schema, or the
   * log's own error when the append was not made durable. `opts.deferrable` lets the log hold the
   * batch back briefly to share a write (EventLog.append).
   */
  async append(events: readonly SipledgerEvent[], opts?: AppendOptions): Promise<void> {
    if (this.#closed) throw new LogError('LOG_CLOSED', 'ledger is closed', false);
    if (events.length === 0) return;
    if (this.#validate) {
      const schemas = eventSchemas();
      for (const e of events) {
        const result = schemas.validate(e);
        if (!result.ok) throw new LogError('LOG_INVALID_EVENT', `invalid event: ${result.errors.join('; ')}`, false);
      }
    }
    const { position } = await this.#log.append(events, opts);
    const applied = this.#waitFor(position);
    if (covers(this.#position, position)) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LogError(
              'LOG_IO',
              `events are durable but were not delivered back by the log within ${this.#appendTimeoutMs} ms`,
              true,
            ),
          ),
        this.#appendTimeoutMs,
      );
    });
    try {
      await Promise.race([applied, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Registers a listener for every applied event; returns a function that removes it. */
  onEvent(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The location table as it was at `time` ("bindings of alice at 14:03"): replays the log from the
   * start, applying only events that happened at or before `time`, into a fresh projection. Query the
   * result with the same `time`.
   */
  async locationAt(time: number): Promise<LocationProjection> {
    const projection = new LocationProjection();
    for await (const { event } of this.#log.read('start')) {
      if (event.time <= time) projection.apply(event);
    }
    return projection;
  }

  /** Writes projection state and its log position, atomically, to snapshotDir. No-op without one. */
  async snapshot(): Promise<void> {
    if (!this.#snapshotDir) return;
    if (this.#snapshotting) return this.#snapshotting;
    this.#snapshotting = this.#writeSnapshot(this.#snapshotDir).finally(() => (this.#snapshotting = undefined));
    return this.#snapshotting;
  }

  async #writeSnapshot(dir: string): Promise<void> {
    // State and position are captured in the same tick, so they agree. The states hold records that
    // later events replace rather than modify, so the text written from them below, in slices with
    // the event loop free in between, is still the state at that position.
    const file: SnapshotFile = {
      format: 1,
      identity: this.#log.identity,
      position: this.#position,
      takenAt: this.#clock(),
      projections: Object.fromEntries(this.#projections.map((p) => [p.name, { version: p.version, state: p.toSnapshot() }])),
    };
    let chars = 0;
    try {
      await mkdir(dir, { recursive: true });
      const target = path.join(dir, SNAPSHOT_FILE);
      const tmp = `${target}.${process.pid}.tmp`;
      const fh = await openFile(tmp, 'w');
      try {
        chars = await writeJsonInSlices(file, (piece) => fh.writeFile(piece));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, target);
      const dh = await openFile(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      throw new LogError('LOG_SNAPSHOT', `could not write snapshot in ${dir}`, true, { cause: err });
    }
    this.#logger.info({ dir, bytes: chars, position: file.position }, 'snapshot written');
  }

  /** Restores the snapshot if it can be trusted; returns where replay starts. */
  async #loadSnapshot(): Promise<LogPosition | 'start'> {
    if (!this.#snapshotDir) return 'start';
    const file = path.join(this.#snapshotDir, SNAPSHOT_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#logger.warn({ err, file }, 'snapshot unreadable, replaying the whole log');
      return 'start';
    }
    const reject = (why: string): 'start' => {
      for (const p of this.#projections) p.truncate();
      this.#logger.warn({ file, why }, 'snapshot ignored, replaying the whole log');
      return 'start';
    };
    let snap: SnapshotFile;
    try {
      snap = JSON.parse(text) as SnapshotFile;
    } catch {
      return reject('not valid JSON');
    }
    if (snap?.format !== 1 || !isLogPosition(snap.position) || typeof snap.projections !== 'object' || snap.projections === null) {
      return reject('unknown snapshot format');
    }
    if (snap.identity !== this.#log.identity) return reject(`taken from another log (${String(snap.identity)})`);
    // A snapshot ahead of the log means the log lost its tail (a cut torn write, or fsync=none after a
    // power loss): its state includes events that no longer exist.
    if (!covers(await this.#log.end(), snap.position)) return reject('snapshot is ahead of the log');
    // A log with retention (Kafka) may have deleted records after the snapshot's position: applying
    // what follows on top of the snapshot would leave a hole. Replaying what the log still holds gives
    // the state every newly started instance has.
    const earliest = await earliestOf(this.#log);
    if (earliest && !covers(snap.position, earliest)) return reject('the log no longer holds the events that follow it (retention)');
    for (const p of this.#projections) {
      const entry = snap.projections[p.name];
      if (!entry || entry.version !== p.version) return reject(`${p.name} projection version changed`);
      try {
        p.restore(entry.state);
      } catch (err) {
        return reject(`${p.name}: ${(err as Error).message}`);
      }
    }
    this.#position = snap.position;
    this.#logger.info({ file, position: snap.position, takenAt: snap.takenAt }, 'snapshot restored');
    return snap.position;
  }

  /** Stops following the log and closes it. Pending appends' waits are abandoned. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#snapshotting?.catch(() => undefined);
    await this.#subscription?.close();
    await this.#log.close();
  }
}

/**
 * Bounded statement execution on a mysql2 pool.
 *
 * Three promises, kept here so the credential store stays about credentials:
 * - every statement is answered, one way or the other, within the time budget: a stopped server,
 *   a half-open socket or a server that stopped answering (SIGSTOP, a lock, a slow disk) turns into a
 *   rejection, never a hang. A connection that overran the budget is destroyed, because mysql2 keeps
 *   a timed-out statement at the head of that connection's queue and the next request would wait
 *   behind it;
 * - a connection that the server dropped while it sat in the pool (restart, KILL CONNECTION,
 *   wait_timeout, a NAT forgetting the flow) does not lose the request: the statement is read-only
 *   and idempotent, so it is sent once more on a fresh connection inside the same budget;
 * - values only ever travel as bound parameters of server-side prepared statements, so a username
 *   is data, whatever characters it holds. Each connection prepares a statement on its first use and
 *   then executes it by id.
 *
 * The per-request cost matters (one statement per REGISTER): the driver's callback API is used, not
 * its promise wrapper (which captures a stack trace per statement), prepared statements are kept per
 * connection (no prepare step, statement text or cache key per request), and one timer watches all
 * deadlines instead of one timer per statement.
 */
import type { Logger } from 'pino';
import type { Pool as CorePool, PoolConnection as CorePoolConnection, PrepareStatementInfo } from 'mysql2';
import type { Pool } from 'mysql2/promise';
import { createPool } from 'mysql2/promise';
import type { ResolvedConnection } from './mysql-config.js';

/** Bound parameter values. */
export type SqlValue = string | number | null;

/** The budget ran out or the caller aborted; the statement's answer, if any, is discarded. */
export class StatementDeadlineError extends Error {
  constructor(
    readonly reason: 'timeout' | 'aborted',
    readonly afterMs: number,
  ) {
    super(reason === 'timeout' ? `no answer from MySQL within ${afterMs} ms` : 'lookup aborted by the caller');
    this.name = 'StatementDeadlineError';
  }
}

/** MariaDB's ER_CONNECTION_KILLED: our connection was the victim of KILL CONNECTION. */
const ER_CONNECTION_KILLED = 1927;
/** The statement id is not (any more) prepared on this connection. */
const ER_UNKNOWN_STMT_HANDLER = 1243;
const DROPPED_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'ECONNRESET',
  'EPIPE',
  'ER_SERVER_SHUTDOWN',
  'ER_CONNECTION_KILLED',
  'ECONNREFUSED',
]);

interface MysqlErrorShape {
  code?: unknown;
  errno?: unknown;
  fatal?: unknown;
  sqlMessage?: unknown;
  message?: unknown;
}

function shape(err: unknown): MysqlErrorShape {
  return typeof err === 'object' && err !== null ? (err as MysqlErrorShape) : {};
}

/**
 * True when the error means "this connection is gone", as opposed to "the server answered with an
 * error". Only then is a retry on another connection both safe and useful.
 */
export function isDroppedConnection(err: unknown): boolean {
  const e = shape(err);
  if (e.errno === ER_CONNECTION_KILLED) return true;
  if (typeof e.code === 'string' && DROPPED_CODES.has(e.code)) return true;
  return e.fatal === true;
}

/** A short, secret-free description of a driver error for logs and error messages. */
export function describeMysqlError(err: unknown): string {
  if (err instanceof StatementDeadlineError) return err.message;
  const e = shape(err);
  const code = typeof e.code === 'string' ? e.code : typeof e.errno === 'number' ? `errno ${e.errno}` : 'error';
  const text = typeof e.sqlMessage === 'string' ? e.sqlMessage : typeof e.message === 'string' ? e.message : String(err);
  return `${code}: ${text}`;
}

export interface PoolSettings {
  connection: ResolvedConnection;
  poolSize: number;
  /** Also the connect timeout and the server-side statement limit. */
  statementTimeoutMs: number;
  logger: Logger;
  /**
   * Rows as arrays of cells in select-list order instead of objects keyed by column name: what a
   * {@link BoundedExecutor} needs (its statements run without per-statement options).
   */
  rowsAsArray?: boolean;
}

/**
 * Creates the pool. Each new connection gets a server-side statement limit equal to the client-side
 * budget (MariaDB `max_statement_time`, MySQL `max_execution_time`), so a statement this process has
 * given up on also stops using the server's CPU.
 */
export function createBoundedPool(s: PoolSettings): Pool {
  const pool = createPool({
    host: s.connection.host,
    port: s.connection.port,
    user: s.connection.user,
    password: s.connection.password,
    database: s.connection.database,
    connectionLimit: s.poolSize,
    maxIdle: s.poolSize,
    idleTimeout: 60_000,
    queueLimit: 0,
    waitForConnections: true,
    connectTimeout: s.statementTimeoutMs,
    enableKeepAlive: true,
    keepAliveInitialDelay: 10_000,
    charset: 'utf8mb4',
    dateStrings: true,
    supportBigNumbers: true,
    // Columns of type BLOB/BINARY come back as Buffers; we turn them into strings ourselves.
    multipleStatements: false,
    rowsAsArray: s.rowsAsArray ?? false,
  });
  const seconds = (s.statementTimeoutMs / 1000).toFixed(3);
  pool.pool.on('connection', (core) => {
    // A connection that dies while idle emits 'error' once for the pool and may emit again later;
    // without a listener of our own the second emission would be an uncaught exception.
    core.on('error', (err: unknown) => s.logger.debug({ err: describeMysqlError(err) }, 'mysql connection closed'));
    core.query(`SET SESSION max_statement_time = ${seconds}`, (err: unknown) => {
      if (!err) return;
      core.query(`SET SESSION max_execution_time = ${Math.ceil(s.statementTimeoutMs)}`, () => undefined);
    });
  });
  return pool;
}

export interface BoundedExecutor {
  /** Statements sent to the server (retries included, session set-up excluded). */
  readonly sent: () => number;
  /**
   * Runs a statement within `budgetMs`, or sooner when `signal` aborts or `callerDeadline`
   * (`performance.now()` clock) comes first: the caller's budget is then enforced by the same timer.
   */
  execute(sql: string, values: readonly SqlValue[], budgetMs: number, signal?: AbortSignal, callerDeadline?: number): Promise<unknown[][]>;
}

/**
 * One execute() call, retry included. Lives in the deadline queue until it settles.
 *
 * The driver is used through its callback API: its promise wrapper captures a stack trace per
 * statement (for error messages we never show) and adds two promises, which was a measurable share of
 * the CPU a lookup costs. The callbacks are created once per call and reused by the retry.
 */
class Job {
  settled = false;
  retried = false;
  conn: CorePoolConnection | undefined = undefined;
  readonly onConnection: (err: unknown, c: CorePoolConnection) => void;
  readonly onResult: (err: unknown, rows: unknown) => void;
  readonly onPrepared: (err: unknown, stmt: PrepareStatementInfo) => void;
  readonly onAbort: () => void;

  constructor(
    readonly ex: Executor,
    readonly sql: string,
    readonly values: SqlValue[],
    readonly deadline: number,
    readonly budgetMs: number,
    readonly signal: AbortSignal | undefined,
    readonly resolve: (rows: unknown[][]) => void,
    readonly reject: (err: unknown) => void,
  ) {
    this.onConnection = (err, c) => this.connected(err, c);
    this.onResult = (err, rows) => this.answered(err, rows);
    this.onPrepared = (err, stmt) => this.prepared(err, stmt);
    this.onAbort = () => this.giveUp(new StatementDeadlineError('aborted', this.budgetMs));
  }

  start(): void {
    this.ex.pool.getConnection(this.onConnection);
  }

  connected(err: unknown, c: CorePoolConnection): void {
    if (this.settled) {
      // We gave up while waiting for it; it is healthy, so it goes back to the pool.
      if (!err) c.release();
      return;
    }
    if (err) {
      this.failed(err);
      return;
    }
    this.conn = c;
    const stmt = this.ex.prepared.get(c)?.get(this.sql);
    if (stmt !== undefined) {
      this.send(stmt);
      return;
    }
    try {
      c.prepare(this.sql, this.onPrepared);
    } catch (e) {
      this.answered(e, undefined);
    }
  }

  prepared(err: unknown, stmt: PrepareStatementInfo): void {
    const c = this.conn;
    if (this.settled || c === undefined) return;
    if (err) {
      this.answered(err, undefined);
      return;
    }
    let statements = this.ex.prepared.get(c);
    if (statements === undefined) this.ex.prepared.set(c, (statements = new Map()));
    statements.set(this.sql, stmt);
    this.send(stmt);
  }

  send(stmt: PrepareStatementInfo): void {
    this.ex.sent += 1;
    try {
      stmt.execute(this.values, this.onResult);
    } catch (e) {
      this.answered(e, undefined);
    }
  }

  answered(err: unknown, rows: unknown): void {
    const c = this.conn;
    if (this.settled || c === undefined) return;
    this.conn = undefined;
    if (err) {
      if (shape(err).fatal === true) c.destroy();
      else {
        // The server forgot the statement (it is prepared again on the next use of this connection).
        if (shape(err).errno === ER_UNKNOWN_STMT_HANDLER) this.ex.prepared.get(c)?.delete(this.sql);
        c.release();
      }
      this.failed(err);
      return;
    }
    c.release();
    this.finish();
    this.resolve(rows as unknown[][]);
  }

  failed(err: unknown): void {
    const again = isDroppedConnection(err) || shape(err).errno === ER_UNKNOWN_STMT_HANDLER;
    if (!this.retried && !(err instanceof StatementDeadlineError) && again && performance.now() < this.deadline) {
      this.retried = true;
      this.ex.logger.debug({ err: describeMysqlError(err) }, 'mysql connection dropped, sending the statement once more');
      this.start();
      return;
    }
    this.finish();
    this.reject(err);
  }

  giveUp(reason: StatementDeadlineError): void {
    if (this.settled) return;
    // The connection may still be busy with our statement: never hand it to the next request.
    const c = this.conn;
    this.conn = undefined;
    c?.destroy();
    this.finish();
    this.reject(reason);
  }

  finish(): void {
    this.settled = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.ex.settled();
  }
}

/**
 * The executor's state. Deadlines are kept in a queue watched by a single timer instead of a timer
 * per statement: with one budget for every statement, queue order is deadline order, and the timer
 * only fires when the oldest statement still waiting has run out of time (or, in steady traffic, once
 * per budget to drop the answered ones). A caller's other budget is handled too: the sweep looks at
 * every waiting statement and re-arms for the earliest deadline.
 */
class Executor {
  sent = 0;
  /**
   * Server-side prepared statements per connection, prepared on the connection's first use of the SQL
   * and then executed by id: no statement text, cache key or prepare step per request. A connection
   * that is replaced takes its statements with it.
   */
  readonly prepared = new WeakMap<CorePoolConnection, Map<string, PrepareStatementInfo>>();
  /** Jobs in start order; answered ones are dropped from the head as they settle, or by the sweep. */
  private queue: Array<Job | undefined> = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined = undefined;
  private armedFor = Infinity;
  private sweeping = false;
  private readonly onTimer = (): void => this.sweep();

  constructor(
    readonly pool: CorePool,
    readonly logger: Logger,
  ) {}

  add(job: Job): void {
    this.queue.push(job);
    if (job.deadline < this.armedFor) this.arm(job.deadline);
  }

  /** A job settled: drop answered jobs from the head so that the queue stays as short as what is in flight. */
  settled(): void {
    if (this.sweeping) return;
    const q = this.queue;
    while (this.head < q.length && q[this.head]!.settled) q[this.head++] = undefined;
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
      // Nothing in flight: no timer left behind to keep the process alive.
      if (this.timer !== undefined) {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.armedFor = Infinity;
      }
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      this.queue = q.slice(this.head);
      this.head = 0;
    }
  }

  private arm(deadline: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedFor = deadline;
    // Whole milliseconds: Node keeps a timer list per distinct duration.
    this.timer = setTimeout(this.onTimer, Math.max(1, Math.ceil(deadline - performance.now())));
  }

  private sweep(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    let next = Infinity;
    // The queue stays as it is while we walk it; rejections run their handlers later (microtasks).
    this.sweeping = true;
    const q = this.queue;
    for (let i = this.head; i < q.length; i += 1) {
      const job = q[i];
      if (job === undefined || job.settled) continue;
      if (job.deadline <= now) job.giveUp(new StatementDeadlineError('timeout', job.budgetMs));
      else if (job.deadline < next) next = job.deadline;
    }
    this.sweeping = false;
    this.settled();
    if (next !== Infinity) this.arm(next);
  }
}

export function createBoundedExecutor(pool: Pool, logger: Logger): BoundedExecutor {
  // The callback pool under the promise wrapper: same connections, same settings.
  const ex = new Executor(pool.pool, logger);
  return {
    sent: () => ex.sent,
    execute(sql, values, budgetMs, signal, callerDeadline) {
      return new Promise<unknown[][]>((resolve, reject) => {
        const own = performance.now() + budgetMs;
        const deadline = callerDeadline !== undefined && callerDeadline < own ? callerDeadline : own;
        const job = new Job(ex, sql, values as SqlValue[], deadline, budgetMs, signal, resolve, reject);
        if (signal?.aborted) {
          job.settled = true;
          reject(new StatementDeadlineError('aborted', budgetMs));
          return;
        }
        signal?.addEventListener('abort', job.onAbort, { once: true });
        ex.add(job);
        job.start();
      });
    },
  };
}

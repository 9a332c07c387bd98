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
 * - values only ever travel as bound parameters of server-side prepared statements (`execute`),
 *   so a username is data, whatever characters it holds.
 */
import type { Logger } from 'pino';
import type { FieldPacket, Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
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
  execute(sql: string, values: readonly SqlValue[], budgetMs: number, signal?: AbortSignal): Promise<unknown[][]>;
}

export function createBoundedExecutor(pool: Pool, logger: Logger): BoundedExecutor {
  let sent = 0;

  function attempt(sql: string, values: readonly SqlValue[], deadline: number, budgetMs: number, signal?: AbortSignal): Promise<unknown[][]> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let conn: PoolConnection | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const giveUp = (reason: StatementDeadlineError): void =>
        finish(() => {
          // The connection may still be busy with our statement: never hand it to the next request.
          conn?.destroy();
          reject(reason);
        });
      const timer = setTimeout(() => giveUp(new StatementDeadlineError('timeout', budgetMs)), Math.max(0, deadline - performance.now()));
      const onAbort = (): void => giveUp(new StatementDeadlineError('aborted', budgetMs));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });

      pool.getConnection().then(
        (c) => {
          if (settled) {
            // We gave up while waiting for it; it is healthy, so it goes back to the pool.
            c.release();
            return;
          }
          conn = c;
          sent += 1;
          c.execute<RowDataPacket[][]>({ sql, values: values as SqlValue[], rowsAsArray: true }).then(
            ([rows]: [RowDataPacket[][], FieldPacket[]]) =>
              finish(() => {
                c.release();
                // rowsAsArray: each row is an array of cells in select-list order.
                resolve(rows as unknown as unknown[][]);
              }),
            (err: unknown) =>
              finish(() => {
                if (shape(err).fatal === true) c.destroy();
                else c.release();
                reject(err);
              }),
          );
        },
        (err: unknown) => finish(() => reject(err)),
      );
    });
  }

  return {
    sent: () => sent,
    async execute(sql, values, budgetMs, signal) {
      const deadline = performance.now() + budgetMs;
      try {
        return await attempt(sql, values, deadline, budgetMs, signal);
      } catch (err) {
        if (err instanceof StatementDeadlineError || !isDroppedConnection(err) || performance.now() >= deadline) throw err;
        logger.debug({ err: describeMysqlError(err) }, 'mysql connection dropped, sending the statement once more');
        return await attempt(sql, values, deadline, budgetMs, signal);
      }
    },
  };
}

/**
 * MariaDB for tests.
 *
 * - createTestDatabase(): a uniquely named database on the machine's shared MariaDB
 *   (127.0.0.1:3306, root, no password), dropped by `drop()`.
 * - startPrivateMariadb(): a private mariadbd with its own datadir under a temp dir and a free
 *   loopback port, for tests that stop, kill, pause or restart the server. The shared instance is
 *   never stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { freePort } from './ports.js';

const execFileP = promisify(execFile);

export const SHARED = { host: '127.0.0.1', port: 3306, user: 'root', password: '' } as const;

export interface ConnectionInfo {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface TestDatabase {
  readonly name: string;
  readonly connection: ConnectionInfo;
  /** mysql://root@127.0.0.1:PORT/NAME */
  readonly url: string;
  /** Runs SQL as root in this database; several statements separated by ';' are allowed. */
  sql<T = unknown>(statement: string, values?: unknown[]): Promise<T>;
  /** Runs a .sql file (as the mysql client would) in this database. */
  sqlFile(file: string): Promise<void>;
  drop(): Promise<void>;
}

function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 64);
}

async function rootConnection(host: string, port: number, database?: string): Promise<mysql.Connection> {
  return mysql.createConnection({
    host,
    port,
    user: 'root',
    password: '',
    multipleStatements: true,
    charset: 'utf8mb4',
    ...(database !== undefined ? { database } : {}),
  });
}

/** Creates a uniquely named database (utf8mb4 unless told otherwise) and returns handles to it. */
export async function createTestDatabase(
  prefix = 'sltest',
  opts: { charset?: string; host?: string; port?: number } = {},
): Promise<TestDatabase> {
  const host = opts.host ?? SHARED.host;
  const port = opts.port ?? SHARED.port;
  const name = uniqueName(prefix);
  const admin = await rootConnection(host, port);
  try {
    await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET ${opts.charset ?? 'utf8mb4'}`);
  } finally {
    await admin.end();
  }
  const conn = await rootConnection(host, port, name);
  let dropped = false;
  return {
    name,
    connection: { host, port, user: 'root', password: '', database: name },
    url: `mysql://root@${host}:${port}/${name}`,
    async sql<T>(statement: string, values?: unknown[]): Promise<T> {
      const [rows] = await conn.query(statement, values);
      return rows as T;
    },
    async sqlFile(file: string): Promise<void> {
      await conn.query(await readFile(file, 'utf8'));
    },
    async drop(): Promise<void> {
      if (dropped) return;
      dropped = true;
      try {
        await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await conn.end().catch(() => undefined);
      }
    },
  };
}

/** Creates a MySQL account limited to one database (for tools such as kamctl that need a password). */
export async function createTestUser(db: TestDatabase): Promise<{ user: string; password: string; drop(): Promise<void> }> {
  const user = uniqueName('slu').slice(0, 32);
  const password = randomBytes(12).toString('hex');
  await db.sql(`CREATE USER ?@'127.0.0.1' IDENTIFIED BY ?`, [user, password]);
  await db.sql(`GRANT ALL ON \`${db.name}\`.* TO ?@'127.0.0.1'`, [user]);
  return {
    user,
    password,
    async drop() {
      await db.sql(`DROP USER IF EXISTS ?@'127.0.0.1'`, [user]);
    },
  };
}

export interface PrivateMariadb {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly baseDir: string;
  /** Process id of the running server, or undefined while stopped. */
  readonly pid: number | undefined;
  /** Starts (or restarts) the server on the same port and datadir; resolves once it answers. */
  start(): Promise<void>;
  /** SIGTERM and wait for a clean shutdown (or SIGKILL: a crash). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** SIGSTOP: the server keeps its sockets but answers nothing (a hung database). */
  pause(): void;
  resume(): void;
  /** Stops the server and removes the temp dir. */
  destroy(): Promise<void>;
  /** A uniquely named database on this server. */
  createDatabase(prefix?: string): Promise<TestDatabase>;
}

/**
 * Initialises a datadir under a temp dir and starts mariadbd on a free loopback port
 * (same flags as /work/shared/bench/db/mariadb.sh, smaller buffers).
 */
export async function startPrivateMariadb(): Promise<PrivateMariadb> {
  const baseDir = await mkdtemp(path.join(os.tmpdir(), 'sl-mariadb-'));
  const dataDir = path.join(baseDir, 'data');
  const me = os.userInfo().username;
  await execFileP('mariadb-install-db', [
    '--no-defaults',
    `--user=${me}`,
    `--datadir=${dataDir}`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ]);

  let port = 0;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const killOnExit = (): void => {
    child?.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  async function launch(): Promise<void> {
    const p = spawn(
      '/usr/sbin/mariadbd',
      [
        '--no-defaults',
        `--user=${me}`,
        `--datadir=${dataDir}`,
        `--socket=${path.join(baseDir, 'mysqld.sock')}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--pid-file=${path.join(baseDir, 'mysqld.pid')}`,
        `--log-error=${path.join(baseDir, 'mysqld.log')}`,
        '--skip-name-resolve',
        '--skip-log-bin',
        '--innodb-buffer-pool-size=16M',
        '--max-connections=100',
      ],
      { stdio: 'ignore' },
    );
    child = p;
    let gone = false;
    exited = new Promise((resolve) => p.once('exit', () => resolve()));
    void exited.then(() => {
      gone = true;
      if (child === p) child = undefined;
    });
    for (let i = 0; i < 300; i += 1) {
      if (gone) throw new Error(`mariadbd exited during start-up; see ${path.join(baseDir, 'mysqld.log')}`);
      try {
        const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password: '', connectTimeout: 1000 });
        await c.end();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    p.kill('SIGKILL');
    throw new Error('mariadbd did not answer within 30 s');
  }

  const server: PrivateMariadb = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    baseDir,
    get pid() {
      return child?.pid;
    },
    async start() {
      if (child !== undefined) return;
      await launch();
    },
    async stop(signal = 'SIGTERM') {
      const c = child;
      if (c === undefined) return;
      c.kill('SIGCONT');
      c.kill(signal);
      await exited;
    },
    pause() {
      const c = child;
      if (c?.pid === undefined) throw new Error('no running mariadbd to pause');
      c.kill('SIGSTOP');
      // Signal delivery is asynchronous: return only once the kernel shows the process stopped, so
      // the next query cannot be answered by a server that had not stopped yet.
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        const stat = readFileSync(`/proc/${c.pid}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T') return;
      }
      throw new Error(`mariadbd ${c.pid} did not stop within 2 s of SIGSTOP`);
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async destroy() {
      await server.stop('SIGKILL');
      process.removeListener('exit', killOnExit);
      await rm(baseDir, { recursive: true, force: true });
    },
    async createDatabase(prefix = 'sltest') {
      return createTestDatabase(prefix, { host: '127.0.0.1', port });
    },
  };

  // A port that was free a moment ago may be taken by the time mariadbd binds it: try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    port = await freePort();
    try {
      await launch();
      return server;
    } catch (err) {
      lastError = err;
      await server.stop('SIGKILL');
    }
  }
  await rm(baseDir, { recursive: true, force: true });
  throw lastError;
}

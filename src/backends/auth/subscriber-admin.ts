/**
 * Subscriber management on a Kamailio-schema `subscriber` table, with the semantics of
 * `kamctl add / rm / passwd / show`, so that rows written here and rows written by kamctl are
 * interchangeable:
 *
 * - add: refuses an existing subscriber or a name already used as an alias (dbaliases); stores
 *   ha1 = MD5(user:domain:password) and ha1b = MD5(user@domain:domain:password) (the realm is the
 *   domain, as kamctl assumes); the clear-text password only when asked (kamctl
 *   STORE_PLAINTEXT_PW), '' otherwise.
 * - rm: deletes the subscriber and the aliases that point at it (kamctl also revokes ACL groups
 *   and removes contacts; sipledger's location lives in its event log, not in this database).
 * - passwd: rewrites ha1, ha1b and password together, so a stale clear-text password never
 *   survives a change.
 * - show: every column except the secrets, which are reported as present or absent. Unlike kamctl,
 *   a password or HA1 never reaches a terminal or a log.
 *
 * Expected outcomes (exists, not found, invalid input) are values; a database failure is thrown as
 * SubscriberAdminError with `code`, `retriable` and `cause`.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { pino } from 'pino';
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { positiveInteger, quoteIdentifier, resolveConnection, type MysqlConnectionOptions } from './mysql-config.js';
import { createBoundedPool, describeMysqlError } from './mysql-exec.js';

export interface SubscriberAdminOptions extends MysqlConnectionOptions {
  /** Default 'subscriber'. */
  table?: string;
  /** Same keys and defaults as the MySQL backend: username, domain, password, ha1, ha1b. */
  columns?: { user?: string; domain?: string; password?: string; ha1?: string; ha1b?: string };
  /** Default 'dbaliases' (as kamctl); false: aliases are neither checked nor removed. A missing table is skipped. */
  aliasTable?: string | false;
  /** Default 10000: the most one statement may take. */
  queryTimeoutMs?: number;
  logger?: Logger;
}

export interface SubscriberId {
  user: string;
  domain: string;
}

export interface PasswordInput extends SubscriberId {
  password: string;
  /** Also keep the clear-text password (needed only with calculateHa1: true). Default false. */
  storePlaintextPassword?: boolean;
}

export type AdminFailureReason = 'exists' | 'alias_exists' | 'not_found' | 'invalid';

export type AdminResult = { readonly ok: true } | { readonly ok: false; readonly reason: AdminFailureReason; readonly message: string };

export interface SubscriberSummary {
  readonly user: string;
  readonly domain: string;
  /** True when the clear-text password column is filled. */
  readonly plaintextPasswordStored: boolean;
}

export interface SubscriberDetails extends SubscriberSummary {
  readonly ha1Stored: boolean;
  readonly ha1bStored: boolean;
  /** Every other column of the row (id, and whatever the site added: rpid, email_address, ...). */
  readonly columns: Readonly<Record<string, string | number | null>>;
}

export interface SubscriberAdmin {
  addUser(input: PasswordInput): Promise<AdminResult>;
  removeUser(id: SubscriberId): Promise<AdminResult>;
  setPassword(input: PasswordInput): Promise<AdminResult>;
  listUsers(filter?: { domain?: string }): Promise<SubscriberSummary[]>;
  showUser(id: SubscriberId): Promise<SubscriberDetails | null>;
  close(): Promise<void>;
}

/** A database failure while managing subscribers. */
export class SubscriberAdminError extends Error {
  readonly code = 'SUBSCRIBER_DB_ERROR';
  constructor(
    message: string,
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SubscriberAdminError';
  }
}

const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');

/** HA1 as kamctl computes it: MD5(user:realm:password), the realm being the domain. */
export function computeHa1(user: string, realm: string, password: string): string {
  return md5(`${user}:${realm}:${password}`);
}

/** HA1b as kamctl computes it: MD5(user@domain:realm:password). */
export function computeHa1b(user: string, domain: string, password: string, realm: string = domain): string {
  return md5(`${user}@${domain}:${realm}:${password}`);
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const ER_DUP_ENTRY = 1062;
const ER_DATA_TOO_LONG = 1406;
const ER_NO_SUCH_TABLE = 1146;

function invalid(message: string): AdminResult {
  return { ok: false, reason: 'invalid', message };
}

function checkId(id: SubscriberId): AdminResult | undefined {
  if (typeof id.user !== 'string' || id.user === '') return invalid('user must be a non-empty string');
  if (typeof id.domain !== 'string' || id.domain === '') return invalid('domain must be a non-empty string');
  if (CONTROL.test(id.user) || CONTROL.test(id.domain)) return invalid('user and domain must not contain control characters');
  return undefined;
}

function checkPassword(input: PasswordInput): AdminResult | undefined {
  const bad = checkId(input);
  if (bad) return bad;
  if (typeof input.password !== 'string' || input.password === '') return invalid('password must be a non-empty string');
  return undefined;
}

function errno(err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { errno?: unknown }).errno : undefined;
}

const sameDomain = (a: unknown, b: string): boolean => typeof a === 'string' && a.toLowerCase() === b.toLowerCase();

function cell(v: unknown): string | number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'number') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return String(v);
}

export function createSubscriberAdmin(opts: SubscriberAdminOptions): SubscriberAdmin {
  const logger = opts.logger ?? pino({ level: 'silent' });
  const connection = resolveConnection(opts);
  const table = quoteIdentifier('table', opts.table ?? 'subscriber', true);
  const names = {
    user: opts.columns?.user ?? 'username',
    domain: opts.columns?.domain ?? 'domain',
    password: opts.columns?.password ?? 'password',
    ha1: opts.columns?.ha1 ?? 'ha1',
    ha1b: opts.columns?.ha1b ?? 'ha1b',
  };
  const c = {
    user: quoteIdentifier('columns.user', names.user),
    domain: quoteIdentifier('columns.domain', names.domain),
    password: quoteIdentifier('columns.password', names.password),
    ha1: quoteIdentifier('columns.ha1', names.ha1),
    ha1b: quoteIdentifier('columns.ha1b', names.ha1b),
  };
  const aliasTable = opts.aliasTable === false ? undefined : quoteIdentifier('aliasTable', opts.aliasTable ?? 'dbaliases', true);
  const timeoutMs = positiveInteger('queryTimeoutMs', opts.queryTimeoutMs, 10_000);
  const pool: Pool = createBoundedPool({ connection, poolSize: 2, statementTimeoutMs: timeoutMs, logger });

  /** Runs fn on one connection inside a transaction; database errors become SubscriberAdminError. */
  async function transaction<T>(what: string, fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    let conn: PoolConnection | undefined;
    try {
      conn = await pool.getConnection();
      await conn.beginTransaction();
      const result = await fn(conn);
      await conn.commit();
      return result;
    } catch (err) {
      await conn?.rollback().catch(() => undefined);
      if (err instanceof SubscriberAdminError) throw err;
      const fatal = typeof err === 'object' && err !== null && (err as { fatal?: unknown }).fatal === true;
      throw new SubscriberAdminError(`${what}: ${describeMysqlError(err)}`, fatal, { cause: err });
    } finally {
      conn?.release();
    }
  }

  /** Ids of rows whose user matches exactly (the table's collation may match more loosely). */
  async function findIds(conn: PoolConnection, id: SubscriberId, lock: boolean): Promise<number[]> {
    const [rows] = await conn.execute<RowDataPacket[]>(
      `SELECT \`id\`, ${c.user} AS u, ${c.domain} AS d FROM ${table} WHERE ${c.user} = ? AND ${c.domain} = ?${lock ? ' FOR UPDATE' : ''}`,
      [id.user, id.domain],
    );
    return rows.filter((r) => r['u'] === id.user && sameDomain(r['d'], id.domain)).map((r) => Number(r['id']));
  }

  async function aliasIds(conn: PoolConnection, sql: string, id: SubscriberId, userKey: string, domainKey: string): Promise<number[] | undefined> {
    try {
      const [rows] = await conn.execute<RowDataPacket[]>(sql, [id.user, id.domain]);
      return rows.filter((r) => r[userKey] === id.user && sameDomain(r[domainKey], id.domain)).map((r) => Number(r['id']));
    } catch (err) {
      if (errno(err) === ER_NO_SUCH_TABLE) return undefined;
      throw err;
    }
  }

  function secrets(input: PasswordInput): [string, string, string] {
    return [
      computeHa1(input.user, input.domain, input.password),
      computeHa1b(input.user, input.domain, input.password),
      input.storePlaintextPassword === true ? input.password : '',
    ];
  }

  function tooLong(err: unknown): AdminResult | undefined {
    if (errno(err) === ER_DATA_TOO_LONG) {
      return invalid('a value is longer than its column allows (Kamailio schema: username and domain 64 characters, password 64)');
    }
    return undefined;
  }

  return {
    async addUser(input) {
      const bad = checkPassword(input);
      if (bad) return bad;
      return transaction('add subscriber', async (conn): Promise<AdminResult> => {
        if ((await findIds(conn, input, true)).length > 0) {
          return { ok: false, reason: 'exists', message: `subscriber ${input.user}@${input.domain} already exists` };
        }
        if (aliasTable !== undefined) {
          const ids = await aliasIds(
            conn,
            `SELECT \`id\`, \`alias_username\`, \`alias_domain\` FROM ${aliasTable} WHERE \`alias_username\` = ? AND \`alias_domain\` = ?`,
            input,
            'alias_username',
            'alias_domain',
          );
          if (ids !== undefined && ids.length > 0) {
            return { ok: false, reason: 'alias_exists', message: `${input.user}@${input.domain} is already an alias` };
          }
        }
        try {
          await conn.execute(
            `INSERT INTO ${table} (${c.user}, ${c.domain}, ${c.ha1}, ${c.ha1b}, ${c.password}) VALUES (?, ?, ?, ?, ?)`,
            [input.user, input.domain, ...secrets(input)],
          );
        } catch (err) {
          if (errno(err) === ER_DUP_ENTRY) {
            // The unique key follows the table's collation: 'Alice' collides with 'alice'.
            return { ok: false, reason: 'exists', message: `a subscriber equal to ${input.user}@${input.domain} under the table's collation already exists` };
          }
          const long = tooLong(err);
          if (long) return long;
          throw err;
        }
        logger.info({ user: input.user, domain: input.domain, plaintext: input.storePlaintextPassword === true }, 'subscriber added');
        return { ok: true };
      });
    },

    async removeUser(id) {
      const bad = checkId(id);
      if (bad) return bad;
      return transaction('remove subscriber', async (conn): Promise<AdminResult> => {
        const ids = await findIds(conn, id, true);
        if (ids.length === 0) return { ok: false, reason: 'not_found', message: `no subscriber ${id.user}@${id.domain}` };
        if (aliasTable !== undefined) {
          const aliases = await aliasIds(
            conn,
            `SELECT \`id\`, \`username\`, \`domain\` FROM ${aliasTable} WHERE \`username\` = ? AND \`domain\` = ?`,
            id,
            'username',
            'domain',
          );
          for (const a of aliases ?? []) await conn.execute(`DELETE FROM ${aliasTable} WHERE \`id\` = ?`, [a]);
        }
        for (const i of ids) await conn.execute(`DELETE FROM ${table} WHERE \`id\` = ?`, [i]);
        logger.info({ user: id.user, domain: id.domain }, 'subscriber removed');
        return { ok: true };
      });
    },

    async setPassword(input) {
      const bad = checkPassword(input);
      if (bad) return bad;
      return transaction('change password', async (conn): Promise<AdminResult> => {
        const ids = await findIds(conn, input, true);
        if (ids.length === 0) return { ok: false, reason: 'not_found', message: `no subscriber ${input.user}@${input.domain}` };
        const [ha1, ha1b, plain] = secrets(input);
        for (const i of ids) {
          try {
            await conn.execute<ResultSetHeader>(`UPDATE ${table} SET ${c.ha1} = ?, ${c.ha1b} = ?, ${c.password} = ? WHERE \`id\` = ?`, [ha1, ha1b, plain, i]);
          } catch (err) {
            const long = tooLong(err);
            if (long) return long;
            throw err;
          }
        }
        logger.info({ user: input.user, domain: input.domain, plaintext: input.storePlaintextPassword === true }, 'subscriber password changed');
        return { ok: true };
      });
    },

    async listUsers(filter = {}) {
      return transaction('list subscribers', async (conn) => {
        const where = filter.domain !== undefined ? ` WHERE ${c.domain} = ?` : '';
        const [rows] = await conn.execute<RowDataPacket[]>(
          `SELECT ${c.user} AS u, ${c.domain} AS d, ${c.password} <> '' AS p FROM ${table}${where} ORDER BY ${c.domain}, ${c.user}`,
          filter.domain !== undefined ? [filter.domain] : [],
        );
        return rows
          .filter((r) => filter.domain === undefined || sameDomain(r['d'], filter.domain))
          .map((r) => ({ user: String(cell(r['u'])), domain: String(cell(r['d'])), plaintextPasswordStored: Number(r['p']) === 1 }));
      });
    },

    async showUser(id) {
      if (checkId(id) !== undefined) return null;
      return transaction('show subscriber', async (conn) => {
        const [rows] = await conn.execute<RowDataPacket[]>(`SELECT * FROM ${table} WHERE ${c.user} = ? AND ${c.domain} = ?`, [id.user, id.domain]);
        const row = rows.find((r) => r[names.user] === id.user && sameDomain(r[names.domain], id.domain));
        if (row === undefined) return null;
        const filled = (k: string): boolean => {
          const v = cell(row[k]);
          return v !== null && v !== '';
        };
        const columns: Record<string, string | number | null> = {};
        const hidden = new Set([names.user, names.domain, names.password, names.ha1, names.ha1b]);
        for (const [k, v] of Object.entries(row)) if (!hidden.has(k)) columns[k] = cell(v);
        return {
          user: String(cell(row[names.user])),
          domain: String(cell(row[names.domain])),
          plaintextPasswordStored: filled(names.password),
          ha1Stored: filled(names.ha1),
          ha1bStored: filled(names.ha1b),
          columns,
        };
      });
    },

    async close() {
      await pool.end();
    },
  };
}

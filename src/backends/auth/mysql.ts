/**
 * MySQL/MariaDB credential store, a drop-in for the Kamailio/OpenSER `subscriber` table (auth_db),
 * with the optional `uri` (uri_db) and `dbaliases` (alias_db) tables.
 *
 * One authentication costs exactly one statement: the secret column(s) and every load_credentials
 * column come back in the same row. Identity checks and alias lookups cost one statement each, and
 * only when the corresponding table is configured.
 *
 * Matching rules (see docs/backends/mysql.md):
 * - usernames match exactly. MySQL's default collations are case-, accent- and trailing-space-
 *   insensitive, so the row the index finds is compared again here; `Alice`, `alice ` and `alicé`
 *   are three other users than `alice`.
 * - domains are host names and match case-insensitively (RFC 3261 19.1.4: hostnames compare
 *   case-insensitively).
 */
import type { Logger } from 'pino';
import type { Pool } from 'mysql2/promise';
import {
  BackendUnavailableError,
  type AttributeValue,
  type Attributes,
  type CredentialQuery,
  type CredentialStore,
  type Credentials,
  type IdentityTable,
  type LookupOptions,
} from '../../core/auth/backend.js';
import { MysqlConfigError, positiveInteger, quoteIdentifier, resolveConnection } from './mysql-config.js';
import { createBoundedExecutor, createBoundedPool, describeMysqlError, StatementDeadlineError, type BoundedExecutor } from './mysql-exec.js';

export { MysqlConfigError } from './mysql-config.js';

export interface MysqlBackendOptions {
  name: string;
  /** mysql://user:pass@host:port/db (either url or host/port/user/password/database). */
  url?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** Default 'subscriber'. */
  table?: string;
  /** Kamailio auth_db defaults: username, domain, password, ha1, ha1b. */
  columns?: { user?: string; domain?: string; password?: string; ha1?: string; ha1b?: string };
  /** Default true: the realm must match the domain column. */
  useDomain?: boolean;
  /** true: read the plain password column; false (default): read the ha1 and ha1b columns. */
  calculateHa1?: boolean;
  /** Attribute name -> column, loaded in the same statement (Kamailio load_credentials). */
  loadCredentials?: Record<string, string>;
  /** Default false; 'uri' enables uri_db-style identity checks. */
  uriTable?: string | false;
  /** Default false; 'dbaliases' enables alias lookups. */
  aliasTable?: string | false;
  /** Default 2000: the most one lookup may take, connection set-up and one retry included. */
  queryTimeoutMs?: number;
  /** Default 10. */
  poolSize?: number;
  /** Positive cache lifetime; default 0 (off). */
  cacheTtlMs?: number;
  logger: Logger;
}

export interface MysqlBackendStats {
  /** Statements sent to the server, retries included. A cached answer sends none. */
  readonly queries: number;
  /** Lookups answered from the positive cache. */
  readonly cacheHits: number;
}

export interface MysqlBackend extends CredentialStore, IdentityTable {
  readonly stats: MysqlBackendStats;
  ownsIdentity(auth: { user: string; domain: string }, sip: { user: string; domain: string }, options: LookupOptions): Promise<boolean | null>;
  resolveAlias(alias: { user: string; domain: string }, options: LookupOptions): Promise<{ user: string; domain: string } | null>;
}

/** Cache entries kept at most; the oldest go first. Bounds memory whatever the caller sends. */
const CACHE_MAX_ENTRIES = 10_000;
const ER_CANT_AGGREGATE_2COLLATIONS = 1267;
const beyondLatin1 = (v: string): boolean => [...v].some((ch) => (ch.codePointAt(0) ?? 0) > 0xff);
const errnoOf = (err: unknown): unknown => (typeof err === 'object' && err !== null ? (err as { errno?: unknown }).errno : undefined);
const ATTRIBUTE_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/;

interface CacheEntry {
  readonly expires: number;
  readonly credentials: Credentials;
}

function sameDomain(a: string, b: string): boolean {
  return a === b || a.toLowerCase() === b.toLowerCase();
}

function cellToString(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  return String(v);
}

function cellToAttribute(v: unknown): AttributeValue | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  return cellToString(v);
}

/** A secret cell: empty means "not set" (kamctl writes '' for a password it was told not to keep). */
function secret(v: unknown, hex: boolean): string | undefined {
  const s = cellToString(v);
  if (s === undefined || s === '') return undefined;
  // kamctl writes lower-case hex; a hand-written upper-case HA1 is the same digest.
  return hex ? s.trim().toLowerCase() : s;
}

export function createMysqlBackend(opts: MysqlBackendOptions): MysqlBackend {
  if (typeof opts.name !== 'string' || opts.name === '') throw new MysqlConfigError('name', 'a backend name is required');
  const name = opts.name;
  // The composition root binds the backend name to the logger it passes, as for every backend.
  const logger = opts.logger;
  const connection = resolveConnection(opts);
  const table = quoteIdentifier('table', opts.table ?? 'subscriber', true);
  const cols = {
    user: quoteIdentifier('columns.user', opts.columns?.user ?? 'username'),
    domain: quoteIdentifier('columns.domain', opts.columns?.domain ?? 'domain'),
    password: quoteIdentifier('columns.password', opts.columns?.password ?? 'password'),
    ha1: quoteIdentifier('columns.ha1', opts.columns?.ha1 ?? 'ha1'),
    ha1b: quoteIdentifier('columns.ha1b', opts.columns?.ha1b ?? 'ha1b'),
  };
  const useDomain = opts.useDomain ?? true;
  const calculateHa1 = opts.calculateHa1 ?? false;
  const timeoutMs = positiveInteger('queryTimeoutMs', opts.queryTimeoutMs, 2000);
  const poolSize = positiveInteger('poolSize', opts.poolSize, 10);
  const cacheTtlMs = positiveInteger('cacheTtlMs', opts.cacheTtlMs, 0, 0);

  const extra: Array<{ attribute: string; column: string }> = [];
  for (const [attribute, column] of Object.entries(opts.loadCredentials ?? {})) {
    if (!ATTRIBUTE_NAME.test(attribute)) {
      throw new MysqlConfigError(`loadCredentials.${attribute}`, 'attribute names are letters, digits, _ . : - (at most 64)');
    }
    extra.push({ attribute, column: quoteIdentifier(`loadCredentials.${attribute}`, column) });
  }

  // The statement is built once; per request only the bound values change.
  // Selected positions: 0 user, 1 domain, 2.. secrets, then load_credentials columns.
  const secretCols = calculateHa1 ? [cols.password] : [cols.ha1, cols.ha1b];
  const selectList = [cols.user, cols.domain, ...secretCols, ...extra.map((e) => e.column)].join(', ');
  const lookupSql = useDomain
    ? `SELECT ${selectList} FROM ${table} WHERE ${cols.user} = ? AND ${cols.domain} = ?`
    : `SELECT ${selectList} FROM ${table} WHERE ${cols.user} = ?`;

  // Kamailio's uri table: (username, domain) is the auth id, uri_user a SIP user it may use.
  const uriSql =
    opts.uriTable === undefined || opts.uriTable === false
      ? undefined
      : useDomain
        ? `SELECT \`uri_user\` FROM ${quoteIdentifier('uriTable', opts.uriTable, true)} WHERE \`username\` = ? AND \`domain\` = ?`
        : `SELECT \`uri_user\` FROM ${quoteIdentifier('uriTable', opts.uriTable, true)} WHERE \`username\` = ?`;
  const aliasTable = opts.aliasTable === undefined || opts.aliasTable === false ? undefined : quoteIdentifier('aliasTable', opts.aliasTable, true);
  const aliasSql =
    aliasTable === undefined
      ? undefined
      : useDomain
        ? `SELECT \`alias_username\`, \`alias_domain\`, \`username\`, \`domain\` FROM ${aliasTable} WHERE \`alias_username\` = ? AND \`alias_domain\` = ? ORDER BY \`id\``
        : `SELECT \`alias_username\`, \`alias_domain\`, \`username\`, \`domain\` FROM ${aliasTable} WHERE \`alias_username\` = ? ORDER BY \`id\``;

  const pool: Pool = createBoundedPool({ connection, poolSize, statementTimeoutMs: timeoutMs, logger, rowsAsArray: true });
  const exec: BoundedExecutor = createBoundedExecutor(pool, logger);
  const cache = new Map<string, CacheEntry>();
  let cacheHits = 0;
  let closed = false;
  let lastFailureLog = 0;
  let suppressedFailures = 0;

  async function run(what: string, sql: string, values: string[], options: LookupOptions): Promise<unknown[][]> {
    if (closed) throw new BackendUnavailableError(name, 'backend is closed');
    try {
      // With a deadline the executor's own timer enforces the caller's budget too (no signal listener).
      return options.deadline !== undefined ? await exec.execute(sql, values, timeoutMs, undefined, options.deadline) : await exec.execute(sql, values, timeoutMs, options.signal);
    } catch (err) {
      // Kamailio databases are Latin-1 by default (kamdbctl). MySQL refuses to compare a Latin-1 column
      // with a value it cannot convert (ER_CANT_AGGREGATE_2COLLATIONS) instead of answering "no row".
      // A name with characters the column cannot hold cannot be in the table: that is "no rows".
      // The same error for a Latin-1-only value is a configuration problem and stays one.
      if (errnoOf(err) === ER_CANT_AGGREGATE_2COLLATIONS && values.some(beyondLatin1)) return [];
      const detail = describeMysqlError(err);
      // Never the bound values: they are user-supplied, and the statement carries no secret anyway.
      // During an outage every request fails the same way: one line per second, with a count.
      const now = Date.now();
      if (now - lastFailureLog >= 1000) {
        logger.warn({ what, err: detail, timeout: err instanceof StatementDeadlineError, suppressed: suppressedFailures }, 'mysql auth backend unavailable');
        lastFailureLog = now;
        suppressedFailures = 0;
      } else {
        suppressedFailures += 1;
      }
      throw new BackendUnavailableError(name, `${what}: ${detail}`, { cause: err });
    }
  }

  /**
   * The row for exactly this user (the collation may have matched others). With use_domain off several
   * domains may hold the name; the realm's own row is preferred, else the first.
   */
  function pickRow(rows: unknown[][], query: CredentialQuery): unknown[] | undefined {
    let first: unknown[] | undefined;
    for (const r of rows) {
      if (cellToString(r[0]) !== query.username) continue;
      if (sameDomain(cellToString(r[1]) ?? '', query.domain)) return r;
      first ??= r;
    }
    return useDomain ? undefined : first;
  }

  const firstExtra = 2 + secretCols.length;
  function rowToCredentials(row: unknown[]): Credentials | null {
    const attributes: Attributes = {};
    for (let i = 0; i < extra.length; i += 1) {
      const v = cellToAttribute(row[firstExtra + i]);
      if (v !== undefined) attributes[extra[i]!.attribute] = v;
    }
    if (calculateHa1) {
      const password = secret(row[2], false);
      return password === undefined ? null : { password, attributes };
    }
    const ha1 = secret(row[2], true);
    const ha1b = secret(row[3], true);
    if (ha1 === undefined) return ha1b === undefined ? null : { ha1b, attributes };
    return ha1b === undefined ? { ha1, attributes } : { ha1, ha1b, attributes };
  }

  const backend: MysqlBackend = {
    kind: 'store',
    name,
    get stats(): MysqlBackendStats {
      return { queries: exec.sent(), cacheHits };
    },

    async lookup(query: CredentialQuery, options: LookupOptions): Promise<Credentials | null> {
      const key = cacheTtlMs > 0 ? `${query.username}\u0000${query.domain.toLowerCase()}` : '';
      if (cacheTtlMs > 0) {
        const hit = cache.get(key);
        if (hit !== undefined) {
          if (hit.expires > Date.now()) {
            cacheHits += 1;
            return hit.credentials;
          }
          cache.delete(key);
        }
      }
      const rows = await run('subscriber lookup', lookupSql, useDomain ? [query.username, query.domain] : [query.username], options);
      const row = pickRow(rows, query);
      if (row === undefined) return null;
      const credentials = rowToCredentials(row);
      if (credentials === null) {
        logger.warn(
          { user: query.username, domain: query.domain, column: calculateHa1 ? 'password' : 'ha1/ha1b' },
          'subscriber row has no usable secret; treated as unknown user',
        );
        return null;
      }
      Object.freeze(credentials.attributes);
      Object.freeze(credentials);
      if (cacheTtlMs > 0) {
        if (cache.size >= CACHE_MAX_ENTRIES) {
          const oldest = cache.keys().next();
          if (!oldest.done) cache.delete(oldest.value);
        }
        cache.set(key, { expires: Date.now() + cacheTtlMs, credentials });
      }
      return credentials;
    },

    async ownsIdentity(auth, sip, options): Promise<boolean | null> {
      if (uriSql === undefined) return null;
      const rows = await run('uri lookup', uriSql, useDomain ? [auth.user, auth.domain] : [auth.user], options);
      if (rows.length === 0) return null;
      // The uri table lists SIP users inside the subscriber's own domain; it cannot grant another domain.
      if (!sameDomain(sip.domain, auth.domain)) return false;
      // The table widens what an auth id may use; it never takes away the subscriber's own name.
      if (sip.user === auth.user) return true;
      return rows.some((r) => cellToString(r[0]) === sip.user);
    },

    async resolveAlias(alias, options): Promise<{ user: string; domain: string } | null> {
      if (aliasSql === undefined) return null;
      const rows = await run('alias lookup', aliasSql, useDomain ? [alias.user, alias.domain] : [alias.user], options);
      const row = rows.find((r) => cellToString(r[0]) === alias.user && (!useDomain || sameDomain(cellToString(r[1]) ?? '', alias.domain)));
      if (row === undefined) return null;
      return { user: cellToString(row[2]) ?? '', domain: cellToString(row[3]) ?? '' };
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      cache.clear();
      await pool.end();
    },
  };
  return backend;
}

/**
 * Connection settings and SQL identifiers shared by the MySQL credential store and the subscriber
 * administration library. Everything here is checked once, when the backend is created, so that a
 * bad configuration fails at start-up with a message naming the key, not on the first REGISTER.
 */

/** A configuration value that cannot work. Thrown at creation time only. */
export class MysqlConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly retriable = false;
  constructor(
    /** The configuration key at fault, e.g. `columns.ha1` or `url`. */
    readonly key: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${key}: ${message}`, options);
    this.name = 'MysqlConfigError';
  }
}

export interface MysqlConnectionOptions {
  url?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
}

export interface ResolvedConnection {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

/**
 * Merges `url` (mysql://user:pass@host:port/db) with the discrete fields. A discrete field given
 * alongside the URL wins, so a password can come from a secret file while the rest is a URL.
 */
export function resolveConnection(opts: MysqlConnectionOptions): ResolvedConnection {
  let fromUrl: Partial<ResolvedConnection> = {};
  if (opts.url !== undefined) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      // The URL may carry a password: neither the input nor the parser's error (which quotes it) is kept.
      throw new MysqlConfigError('url', 'not a valid URL (expected mysql://user:password@host:port/database)');
    }
    if (u.protocol !== 'mysql:' && u.protocol !== 'mariadb:') {
      throw new MysqlConfigError('url', `scheme must be mysql: or mariadb:, got ${u.protocol}`);
    }
    const db = decodeURIComponent(u.pathname.replace(/^\//, ''));
    fromUrl = {
      host: u.hostname.replace(/^\[|\]$/g, '') || undefined,
      port: u.port ? Number(u.port) : undefined,
      user: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      database: db || undefined,
    };
  }
  const host = opts.host ?? fromUrl.host ?? '127.0.0.1';
  const port = opts.port ?? fromUrl.port ?? 3306;
  const user = opts.user ?? fromUrl.user ?? 'root';
  const password = opts.password ?? fromUrl.password ?? '';
  const database = opts.database ?? fromUrl.database;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MysqlConfigError(opts.port !== undefined ? 'port' : 'url', `port must be an integer 1-65535, got ${String(port)}`);
  }
  if (database === undefined || database === '') {
    throw new MysqlConfigError('database', 'a database name is required (in `database` or in the path of `url`)');
  }
  return { host, port, user, password, database };
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,63}$/;

/**
 * Quotes a table or column name for interpolation into SQL text. Names come from the configuration,
 * never from a request, and are restricted to plain identifiers so that quoting cannot be escaped;
 * every value from a request travels as a bound parameter instead.
 * A table may be qualified with its database (`kamailio.subscriber`).
 */
export function quoteIdentifier(key: string, name: string, allowQualified = false): string {
  const parts = allowQualified ? name.split('.') : [name];
  if (parts.length > 2 || parts.some((p) => !IDENTIFIER.test(p))) {
    throw new MysqlConfigError(
      key,
      `"${name}" is not a plain SQL identifier (letters, digits, _ and $, at most 64 characters${allowQualified ? ', optionally database.table' : ''})`,
    );
  }
  return parts.map((p) => `\`${p}\``).join('.');
}

export function positiveInteger(key: string, value: number | undefined, fallback: number, min = 1): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min) {
    throw new MysqlConfigError(key, `must be an integer >= ${min}, got ${String(value)}`);
  }
  return v;
}

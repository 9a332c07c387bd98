/**
 * In-memory credential store: subscribers listed in the configuration file (password, HA1 or HA1b,
 * attributes, uri-table entries) and aliases, replaced atomically by {@link MemoryBackend.reload}
 * on SIGHUP without a restart.
 *
 * Matching rules, the same as the MySQL store's: usernames match exactly; domains are host names and
 * match case-insensitively (RFC 3261 s19.1.4).
 */
import {
  BackendUnavailableError,
  type Attributes,
  type CredentialQuery,
  type CredentialStore,
  type Credentials,
  type IdentityTable,
  type LookupOptions,
} from '../../core/auth/backend.js';
import { AuthConfigError } from '../../core/auth/errors.js';

export interface MemoryUser {
  /** The digest username (auth id), matched exactly. */
  readonly username: string;
  /** The domain (realm) the subscriber belongs to, matched case-insensitively. */
  readonly domain: string;
  /** Clear-text password: works with every algorithm. */
  readonly password?: string;
  /** Hex MD5(username:realm:password): MD5 and MD5-sess only. */
  readonly ha1?: string;
  /** Hex MD5(username@domain:realm:password), for phones that send user@domain as the username. */
  readonly ha1b?: string;
  /** Loaded with the credentials (AVPs), e.g. { rpid: 'sip:+15550001@example.com' }. */
  readonly attributes?: Attributes;
  /**
   * The uri table: further SIP AORs (`user@domain`, optionally `sip:`-prefixed) this auth id may use
   * in To (REGISTER) or From. Its own AOR is always allowed.
   */
  readonly identities?: readonly string[];
}

export interface MemoryAlias {
  /** `user@domain` (optionally `sip:`-prefixed) that is an alias... */
  readonly alias: string;
  /** ...of this canonical AOR. */
  readonly target: string;
}

export interface MemoryBackendOptions {
  /** Instance name from the configuration, used in logs, metrics and events. */
  readonly name: string;
  readonly users: readonly MemoryUser[];
  readonly aliases?: readonly MemoryAlias[];
}

interface Aor {
  readonly user: string;
  readonly domain: string;
}

interface Tables {
  readonly users: ReadonlyMap<string, { readonly credentials: Credentials; readonly identities: ReadonlySet<string> | undefined }>;
  readonly aliases: ReadonlyMap<string, Aor>;
}

const HA1 = /^[0-9a-fA-F]{32}$/;

function domainKey(domain: string): string {
  const d = domain.trim().toLowerCase();
  return d.endsWith('.') ? d.slice(0, -1) : d;
}

function userKey(user: string, domain: string): string {
  return `${user}\u0000${domainKey(domain)}`;
}

/** Parses `user@domain` or `sip:user@domain` (no parameters); undefined when it is not that shape. */
function parseAor(value: string): Aor | undefined {
  const text = value.trim().replace(/^sips?:/i, '');
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1 || /[\s;?<>]/.test(text)) return undefined;
  return { user: text.slice(0, at), domain: domainKey(text.slice(at + 1)) };
}

function copyAttributes(attributes: Attributes | undefined, key: string): Attributes {
  const out: Attributes = {};
  for (const [name, value] of Object.entries(attributes ?? {})) {
    const ok = (v: unknown): boolean => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
    if (Array.isArray(value) ? !value.every(ok) : !ok(value)) {
      throw new AuthConfigError(`${key}.attributes.${name}`, 'must be a string, a number or a list of them');
    }
    out[name] = Array.isArray(value) ? Object.freeze([...value]) as typeof value : value;
  }
  return Object.freeze(out);
}

/** Validates a whole configuration before any of it is used, so a bad reload changes nothing. */
function buildTables(users: readonly MemoryUser[], aliases: readonly MemoryAlias[]): Tables {
  if (!Array.isArray(users)) throw new AuthConfigError('users', 'must be a list');
  if (!Array.isArray(aliases)) throw new AuthConfigError('aliases', 'must be a list');
  const userTable = new Map<string, { credentials: Credentials; identities: ReadonlySet<string> | undefined }>();
  users.forEach((u, i) => {
    const key = `users[${i}]`;
    if (typeof u?.username !== 'string' || u.username === '' || /[\s:]/.test(u.username)) {
      throw new AuthConfigError(`${key}.username`, 'must be a non-empty string without spaces or colons');
    }
    if (typeof u.domain !== 'string' || domainKey(u.domain) === '') throw new AuthConfigError(`${key}.domain`, 'must be a non-empty host name');
    if (u.password === undefined && u.ha1 === undefined && u.ha1b === undefined) {
      throw new AuthConfigError(key, `user ${u.username}@${u.domain} needs password, ha1 or ha1b`);
    }
    if (u.password !== undefined && typeof u.password !== 'string') throw new AuthConfigError(`${key}.password`, 'must be a string');
    for (const field of ['ha1', 'ha1b'] as const) {
      const v = u[field];
      if (v !== undefined && (typeof v !== 'string' || !HA1.test(v))) throw new AuthConfigError(`${key}.${field}`, 'must be 32 hexadecimal digits (an MD5 HA1)');
    }
    const k = userKey(u.username, u.domain);
    if (userTable.has(k)) throw new AuthConfigError(`${key}.username`, `${u.username}@${domainKey(u.domain)} is listed twice`);
    let identities: Set<string> | undefined;
    if (u.identities !== undefined) {
      if (!Array.isArray(u.identities)) throw new AuthConfigError(`${key}.identities`, 'must be a list of user@domain');
      identities = new Set();
      const list: readonly unknown[] = u.identities;
      list.forEach((id, j) => {
        const aor = typeof id === 'string' ? parseAor(id) : undefined;
        if (aor === undefined) throw new AuthConfigError(`${key}.identities[${j}]`, 'must be user@domain');
        identities!.add(userKey(aor.user, aor.domain));
      });
    }
    const credentials: Credentials = Object.freeze({
      ...(u.password !== undefined ? { password: u.password } : {}),
      ...(u.ha1 !== undefined ? { ha1: u.ha1.toLowerCase() } : {}),
      ...(u.ha1b !== undefined ? { ha1b: u.ha1b.toLowerCase() } : {}),
      attributes: copyAttributes(u.attributes, key),
    });
    userTable.set(k, { credentials, identities });
  });
  const aliasTable = new Map<string, Aor>();
  aliases.forEach((a, i) => {
    const alias = typeof a?.alias === 'string' ? parseAor(a.alias) : undefined;
    const target = typeof a?.target === 'string' ? parseAor(a.target) : undefined;
    if (alias === undefined) throw new AuthConfigError(`aliases[${i}].alias`, 'must be user@domain');
    if (target === undefined) throw new AuthConfigError(`aliases[${i}].target`, 'must be user@domain');
    const k = userKey(alias.user, alias.domain);
    if (aliasTable.has(k)) throw new AuthConfigError(`aliases[${i}].alias`, `${alias.user}@${alias.domain} is listed twice`);
    aliasTable.set(k, target);
  });
  return { users: userTable, aliases: aliasTable };
}

export class MemoryBackend implements CredentialStore, IdentityTable {
  readonly kind = 'store' as const;
  readonly name: string;
  #tables: Tables;
  #closed = false;

  constructor(options: MemoryBackendOptions) {
    if (typeof options.name !== 'string' || options.name === '') throw new AuthConfigError('name', 'must be a non-empty string');
    this.name = options.name;
    this.#tables = buildTables(options.users, options.aliases ?? []);
  }

  /** Number of subscribers loaded. */
  get size(): number {
    return this.#tables.users.size;
  }

  /**
   * Replaces every user and alias at once (SIGHUP). The new lists are validated first: on an
   * {@link AuthConfigError} nothing changes. Requests already in flight keep the answer they got.
   */
  reload(users: readonly MemoryUser[], aliases: readonly MemoryAlias[] = []): void {
    this.#tables = buildTables(users, aliases);
  }

  async lookup(query: CredentialQuery, options: LookupOptions): Promise<Credentials | null> {
    this.#ready(options);
    return this.#tables.users.get(userKey(query.username, query.domain))?.credentials ?? null;
  }

  async ownsIdentity(auth: Aor, sip: Aor, options: LookupOptions): Promise<boolean | null> {
    this.#ready(options);
    const entry = this.#tables.users.get(userKey(auth.user, auth.domain));
    if (entry?.identities === undefined || entry.identities.size === 0) return null;
    // The table widens what an auth id may use; it never takes away the subscriber's own name.
    if (sip.user === auth.user && domainKey(sip.domain) === domainKey(auth.domain)) return true;
    return entry.identities.has(userKey(sip.user, sip.domain));
  }

  async resolveAlias(alias: Aor, options: LookupOptions): Promise<Aor | null> {
    this.#ready(options);
    const target = this.#tables.aliases.get(userKey(alias.user, alias.domain));
    return target === undefined ? null : { user: target.user, domain: target.domain };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #ready(options: LookupOptions): void {
    if (this.#closed) throw new BackendUnavailableError(this.name, 'backend is closed');
    // The clock when the caller gave a deadline: reading the signal would create it for nothing.
    const aborted = options.deadline !== undefined ? performance.now() >= options.deadline : options.signal.aborted;
    if (aborted) throw new BackendUnavailableError(this.name, 'lookup aborted', { cause: options.signal.reason });
  }
}

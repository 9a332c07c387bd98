import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackendUnavailableError } from '../../src/core/auth/backend.js';
import { createMysqlBackend, MysqlConfigError, type MysqlBackend, type MysqlBackendOptions } from '../../src/backends/auth/mysql.js';
import { createTestDatabase, type TestDatabase } from '../support/mariadb.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const logger = pino({ level: 'silent' });
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');
const signal = (): AbortSignal => new AbortController().signal;
const opts = (): { signal: AbortSignal } => ({ signal: signal() });

/** An RFC 2617 digest response (qop=auth) from an HA1, as a phone computes it. */
function response(ha1: string, nonce: string, method: string, uri: string): string {
  return md5(`${ha1}:${nonce}:00000001:c0ffee:auth:${md5(`${method}:${uri}`)}`);
}

let db: TestDatabase;
const open: MysqlBackend[] = [];

function backend(extra: Partial<MysqlBackendOptions> = {}): MysqlBackend {
  const b = createMysqlBackend({ name: 'db', url: db.url, logger, ...extra });
  open.push(b);
  return b;
}

async function insert(user: string, domain: string, password: string, extra: Record<string, string> = {}): Promise<void> {
  const cols = ['username', 'domain', 'password', 'ha1', 'ha1b', ...Object.keys(extra)];
  const vals = [user, domain, password, md5(`${user}:${domain}:${password}`), md5(`${user}@${domain}:${domain}:${password}`), ...Object.values(extra)];
  await db.sql(`INSERT INTO subscriber (${cols.map((c) => `\`${c}\``).join(',')}) VALUES (${cols.map(() => '?').join(',')})`, vals);
}

beforeAll(async () => {
  db = await createTestDatabase('slmysql');
  for (const f of ['standard', 'auth_db', 'uri_db', 'alias_db']) await db.sqlFile(path.join(root, 'schemas', 'sql', `${f}-create.sql`));
  // Site-specific columns, as the OpenSER 1.x schema in the seed documents had them.
  await db.sql('ALTER TABLE subscriber ADD COLUMN rpid VARCHAR(128) NULL, ADD COLUMN email_address VARCHAR(128) NULL, ADD COLUMN credit INT NULL');
  await insert('alice', 'example.test', 'alice-secret', { rpid: 'sip:+15551000@example.test', email_address: 'alice@example.test', credit: '42' });
  await insert('bob', 'example.test', 'bob-secret');
  await insert('bob', 'other.test', 'bob-other');
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

afterAll(async () => {
  await db?.drop();
});

describe('MySQL credential store: subscriber lookup', () => {
  it('returns ha1 and ha1b by default, and a phone response computed from the password matches', async () => {
    const b = backend();
    const c = await b.lookup({ username: 'alice', domain: 'example.test' }, opts());
    expect(c).not.toBeNull();
    expect(c!.password).toBeUndefined();
    expect(c!.ha1).toBe(md5('alice:example.test:alice-secret'));
    expect(c!.ha1b).toBe(md5('alice@example.test:example.test:alice-secret'));
    const phone = response(md5('alice:example.test:alice-secret'), 'n1', 'REGISTER', 'sip:example.test');
    expect(response(c!.ha1!, 'n1', 'REGISTER', 'sip:example.test')).toBe(phone);
  });

  it('returns the clear-text password, and only it, with calculateHa1', async () => {
    const c = await backend({ calculateHa1: true }).lookup({ username: 'bob', domain: 'example.test' }, opts());
    expect(c).toEqual({ password: 'bob-secret', attributes: {} });
  });

  it('answers null for an unknown user and for a known user in another domain', async () => {
    const b = backend();
    expect(await b.lookup({ username: 'carol', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: 'alice', domain: 'other.test' }, opts())).toBeNull();
  });

  it('matches the domain case-insensitively, as host names compare', async () => {
    const c = await backend({ calculateHa1: true }).lookup({ username: 'bob', domain: 'OTHER.Test' }, opts());
    expect(c?.password).toBe('bob-other');
  });

  it('with useDomain off finds a user by name alone and prefers the row of the realm', async () => {
    const b = backend({ useDomain: false, calculateHa1: true });
    expect((await b.lookup({ username: 'alice', domain: 'elsewhere.test' }, opts()))?.password).toBe('alice-secret');
    expect((await b.lookup({ username: 'bob', domain: 'other.test' }, opts()))?.password).toBe('bob-other');
    expect((await b.lookup({ username: 'bob', domain: 'example.test' }, opts()))?.password).toBe('bob-secret');
  });

  it('loads load_credentials columns as attributes in the same single statement', async () => {
    const b = backend({ loadCredentials: { rpid: 'rpid', email: 'email_address', credit: 'credit' } });
    const c = await b.lookup({ username: 'alice', domain: 'example.test' }, opts());
    expect(c?.attributes).toEqual({ rpid: 'sip:+15551000@example.test', email: 'alice@example.test', credit: 42 });
    expect(b.stats.queries).toBe(1);
    // NULL columns are absent attributes, not empty strings.
    const bob = await b.lookup({ username: 'bob', domain: 'example.test' }, opts());
    expect(bob?.attributes).toEqual({});
    expect(b.stats.queries).toBe(2);
  });

  it('treats a row without the configured secret as no usable subscriber', async () => {
    await db.sql("INSERT INTO subscriber (username, domain, password) VALUES ('legacy', 'example.test', 'plain-only')");
    expect(await backend().lookup({ username: 'legacy', domain: 'example.test' }, opts())).toBeNull();
    expect((await backend({ calculateHa1: true }).lookup({ username: 'legacy', domain: 'example.test' }, opts()))?.password).toBe('plain-only');
  });

  it('reads a custom table with custom column names', async () => {
    await db.sql(
      'CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, login VARCHAR(64), realm VARCHAR(64), secret VARCHAR(64), h1 VARCHAR(64), h1b VARCHAR(64))',
    );
    await db.sql("INSERT INTO accounts (login, realm, secret, h1, h1b) VALUES ('dave', 'example.test', 'pw', 'AABBCCDDEEFF00112233445566778899', '')");
    const cols = { user: 'login', domain: 'realm', password: 'secret', ha1: 'h1', ha1b: 'h1b' };
    const c = await backend({ table: 'accounts', columns: cols }).lookup({ username: 'dave', domain: 'example.test' }, opts());
    // Upper-case hex written by hand is the same digest; an empty ha1b is absent.
    expect(c).toEqual({ ha1: 'aabbccddeeff00112233445566778899', attributes: {} });
    const p = await backend({ table: 'accounts', columns: cols, calculateHa1: true }).lookup({ username: 'dave', domain: 'example.test' }, opts());
    expect(p?.password).toBe('pw');
  });
});

describe('MySQL credential store: usernames are data', () => {
  const tricky = [
    "o'brien",
    'a"b',
    'back\\slash',
    '100%',
    '%',
    '_',
    "' OR '1'='1",
    'x; DROP TABLE subscriber; --',
    'josé',
    '日本語',
    '😀emoji',
  ];

  beforeAll(async () => {
    for (const u of tricky) await insert(u, 'example.test', `pw-${u}`);
  });

  it.each(tricky)('finds exactly the subscriber named %j', async (u) => {
    const c = await backend({ calculateHa1: true }).lookup({ username: u, domain: 'example.test' }, opts());
    expect(c?.password).toBe(`pw-${u}`);
  });

  it('does not treat % or _ as wildcards, nor quotes as SQL', async () => {
    const b = backend({ calculateHa1: true });
    expect(await b.lookup({ username: 'al%', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: 'alic_', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: "' OR 1=1 -- ", domain: 'example.test' }, opts())).toBeNull();
    expect(await db.sql<unknown[]>('SELECT 1 FROM subscriber LIMIT 1')).toHaveLength(1);
  });

  it('matches usernames exactly, not by the case-, accent- and space-blind default collation', async () => {
    const b = backend({ calculateHa1: true });
    expect(await b.lookup({ username: 'ALICE', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: 'alice ', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: 'jose', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.lookup({ username: 'JOSÉ', domain: 'example.test' }, opts())).toBeNull();
  });

  it('answers null for a 200-character name that cannot exist in a VARCHAR(64) column', async () => {
    const long = 'u'.repeat(200);
    expect(await backend().lookup({ username: long, domain: 'example.test' }, opts())).toBeNull();
  });

  it('finds a 200-character name where the column is wide enough', async () => {
    await db.sql('CREATE TABLE wide LIKE subscriber');
    await db.sql('ALTER TABLE wide MODIFY username VARCHAR(255) NOT NULL DEFAULT ""');
    const long = `${'ü'.repeat(100)}${"'%".repeat(50)}`;
    expect(long).toHaveLength(200);
    await db.sql("INSERT INTO wide (username, domain, password) VALUES (?, 'example.test', 'long-pw')", [long]);
    const c = await backend({ table: 'wide', calculateHa1: true }).lookup({ username: long, domain: 'example.test' }, opts());
    expect(c?.password).toBe('long-pw');
    expect(await backend({ table: 'wide', calculateHa1: true }).lookup({ username: long.slice(0, 199), domain: 'example.test' }, opts())).toBeNull();
  });

  it('looks up unicode names in a Latin-1 Kamailio database without an error', async () => {
    const latin = await createTestDatabase('sllatin', { charset: 'latin1' });
    try {
      for (const f of ['standard', 'auth_db']) await latin.sqlFile(`/usr/share/kamailio/mysql/${f}-create.sql`);
      await latin.sql("INSERT INTO subscriber (username, domain, password) VALUES ('josé', 'example.test', 'latin-pw')");
      const b = createMysqlBackend({ name: 'latin', url: latin.url, logger, calculateHa1: true });
      open.push(b);
      expect((await b.lookup({ username: 'josé', domain: 'example.test' }, opts()))?.password).toBe('latin-pw');
      expect(await b.lookup({ username: '日本語', domain: 'example.test' }, opts())).toBeNull();
    } finally {
      await latin.drop();
    }
  });
});

describe('MySQL credential store: uri and dbaliases tables', () => {
  beforeAll(async () => {
    await db.sql(
      "INSERT INTO uri (username, domain, uri_user) VALUES ('alice', 'example.test', 'sales'), ('alice', 'example.test', 'support'), ('bob', 'other.test', 'helpdesk')",
    );
    await db.sql(
      "INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('1000', 'example.test', 'alice', 'example.test'), ('info', 'example.test', 'bob', 'other.test')",
    );
  });

  it('says whether an auth id may use a SIP identity listed in the uri table', async () => {
    const b = backend({ uriTable: 'uri' });
    const alice = { user: 'alice', domain: 'example.test' };
    expect(await b.ownsIdentity(alice, { user: 'sales', domain: 'example.test' }, opts())).toBe(true);
    expect(await b.ownsIdentity(alice, { user: 'support', domain: 'EXAMPLE.test' }, opts())).toBe(true);
    expect(await b.ownsIdentity(alice, { user: 'alice', domain: 'example.test' }, opts())).toBe(true);
    expect(await b.ownsIdentity(alice, { user: 'bob', domain: 'example.test' }, opts())).toBe(false);
    expect(await b.ownsIdentity(alice, { user: 'Sales', domain: 'example.test' }, opts())).toBe(false);
    // The table lists users inside the subscriber's own domain.
    expect(await b.ownsIdentity(alice, { user: 'sales', domain: 'other.test' }, opts())).toBe(false);
    // No rows for the auth id: the framework's default rule decides.
    expect(await b.ownsIdentity({ user: 'bob', domain: 'example.test' }, { user: 'bob', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.ownsIdentity({ user: 'bob', domain: 'other.test' }, { user: 'helpdesk', domain: 'other.test' }, opts())).toBe(true);
  });

  it('leaves identity checks to the framework when no uri table is configured', async () => {
    const b = backend();
    expect(await b.ownsIdentity({ user: 'alice', domain: 'example.test' }, { user: 'sales', domain: 'example.test' }, opts())).toBeNull();
    expect(b.stats.queries).toBe(0);
  });

  it('resolves an alias to its canonical AOR through dbaliases', async () => {
    const b = backend({ aliasTable: 'dbaliases' });
    expect(await b.resolveAlias({ user: '1000', domain: 'example.test' }, opts())).toEqual({ user: 'alice', domain: 'example.test' });
    expect(await b.resolveAlias({ user: 'info', domain: 'example.test' }, opts())).toEqual({ user: 'bob', domain: 'other.test' });
    expect(await b.resolveAlias({ user: '1000', domain: 'other.test' }, opts())).toBeNull();
    expect(await b.resolveAlias({ user: 'alice', domain: 'example.test' }, opts())).toBeNull();
    expect(await b.resolveAlias({ user: 'INFO', domain: 'example.test' }, opts())).toBeNull();
    expect(await backend().resolveAlias({ user: '1000', domain: 'example.test' }, opts())).toBeNull();
  });
});

describe('MySQL credential store: statements, cache and configuration', () => {
  it('sends exactly one statement per authentication', async () => {
    const b = backend({ loadCredentials: { rpid: 'rpid' } });
    for (let i = 0; i < 25; i += 1) await b.lookup({ username: i % 2 ? 'alice' : 'nobody', domain: 'example.test' }, opts());
    expect(b.stats.queries).toBe(25);
  });

  it('serves repeated lookups from the positive cache when a TTL is set, and never caches a miss', async () => {
    const b = backend({ cacheTtlMs: 60_000 });
    const first = await b.lookup({ username: 'alice', domain: 'example.test' }, opts());
    const second = await b.lookup({ username: 'alice', domain: 'example.test' }, opts());
    expect(second).toEqual(first);
    expect(b.stats).toEqual({ queries: 1, cacheHits: 1 });
    await b.lookup({ username: 'ghost', domain: 'example.test' }, opts());
    await db.sql("INSERT INTO subscriber (username, domain, ha1) VALUES ('ghost', 'example.test', ?)", [md5('ghost:example.test:boo')]);
    expect((await b.lookup({ username: 'ghost', domain: 'example.test' }, opts()))?.ha1).toBe(md5('ghost:example.test:boo'));
    expect(b.stats.queries).toBe(3);
  });

  it('sees a password change at once with the cache off (the default)', async () => {
    const b = backend({ calculateHa1: true });
    await db.sql("INSERT INTO subscriber (username, domain, password) VALUES ('erin', 'example.test', 'one')");
    expect((await b.lookup({ username: 'erin', domain: 'example.test' }, opts()))?.password).toBe('one');
    await db.sql("UPDATE subscriber SET password = 'two' WHERE username = 'erin'");
    expect((await b.lookup({ username: 'erin', domain: 'example.test' }, opts()))?.password).toBe('two');
  });

  it('rejects a bad configuration at creation, naming the key', () => {
    const bad: Array<[Partial<MysqlBackendOptions>, string]> = [
      [{ table: 'subscriber; DROP TABLE x' }, 'table'],
      [{ columns: { ha1: 'ha1`' } }, 'columns.ha1'],
      [{ loadCredentials: { rpid: 'rpid, password' } }, 'loadCredentials.rpid'],
      [{ loadCredentials: { 'bad name': 'rpid' } }, 'loadCredentials.bad name'],
      [{ queryTimeoutMs: 0 }, 'queryTimeoutMs'],
      [{ poolSize: 1.5 }, 'poolSize'],
      [{ url: 'http://127.0.0.1/db' }, 'url'],
      [{ url: 'mysql://127.0.0.1:3306' }, 'database'],
    ];
    for (const [o, key] of bad) {
      let thrown: unknown;
      try {
        createMysqlBackend({ name: 'x', url: db.url, logger, ...o });
      } catch (err) {
        thrown = err;
      }
      expect(thrown, key).toBeInstanceOf(MysqlConfigError);
      expect((thrown as MysqlConfigError).key).toBe(key);
    }
  });

  it('never puts the URL password in a configuration error', () => {
    let thrown: unknown;
    try {
      createMysqlBackend({ name: 'x', url: 'mysql://u:s3cr3t-pw@[bad', logger });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(MysqlConfigError);
    expect(String((thrown as Error).message)).not.toContain('s3cr3t-pw');
    expect(JSON.stringify(thrown)).not.toContain('s3cr3t-pw');
  });

  it('reports a missing table or column as backend_unavailable, with a code and the cause', async () => {
    const b = backend({ table: 'no_such_table' });
    const err = await b.lookup({ username: 'alice', domain: 'example.test' }, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as BackendUnavailableError).code).toBe('BACKEND_UNAVAILABLE');
    expect((err as BackendUnavailableError).backend).toBe('db');
    expect((err as Error).message).toContain('ER_NO_SUCH_TABLE');
    expect((err as Error).cause).toBeDefined();
    const c = backend({ loadCredentials: { x: 'no_such_column' } });
    await expect(c.lookup({ username: 'alice', domain: 'example.test' }, opts())).rejects.toBeInstanceOf(BackendUnavailableError);
  });

  it('reports wrong database credentials as backend_unavailable without leaking the password', async () => {
    const b = backend({ url: undefined, host: '127.0.0.1', port: 3306, user: 'no_such_user', password: 'hunter2-secret', database: db.name });
    const err = await b.lookup({ username: 'alice', domain: 'example.test' }, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).not.toContain('hunter2-secret');
  });

  it('never writes a password, an HA1 or a database password to the log, even at debug level', async () => {
    const lines: string[] = [];
    const capture = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const cases: Array<Partial<MysqlBackendOptions>> = [
      { calculateHa1: true },
      {},
      { table: 'no_such_table' },
      { url: undefined, host: '127.0.0.1', port: 3306, user: 'no_such_user', password: 'db-pass-XYZ', database: db.name },
    ];
    for (const c of cases) {
      const b = backend({ logger: capture, ...c });
      await b.lookup({ username: 'alice', domain: 'example.test' }, opts()).catch(() => undefined);
      await b.lookup({ username: 'legacy', domain: 'example.test' }, opts()).catch(() => undefined);
    }
    expect(lines.length).toBeGreaterThan(0);
    const text = lines.join('');
    for (const secret of ['alice-secret', 'plain-only', md5('alice:example.test:alice-secret'), 'db-pass-XYZ']) expect(text).not.toContain(secret);
  });

  it('rejects lookups after close', async () => {
    const b = createMysqlBackend({ name: 'db', url: db.url, logger });
    await b.close();
    await expect(b.lookup({ username: 'alice', domain: 'example.test' }, opts())).rejects.toBeInstanceOf(BackendUnavailableError);
  });

  it('rejects at once when the caller has already aborted', async () => {
    const b = backend();
    const ac = new AbortController();
    ac.abort();
    await expect(b.lookup({ username: 'alice', domain: 'example.test' }, { signal: ac.signal })).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(b.stats.queries).toBe(0);
  });
});

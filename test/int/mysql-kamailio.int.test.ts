/**
 * Drop-in compatibility with a Kamailio database: tables created by Kamailio's own schema scripts
 * (kamailio-mysql-modules, /usr/share/kamailio/mysql), subscribers written by the real `kamctl`,
 * and sipledger's DDL and subscriber administration producing the same tables and rows.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMysqlBackend } from '../../src/backends/auth/mysql.js';
import { createSubscriberAdmin } from '../../src/backends/auth/subscriber-admin.js';
import { createTestDatabase, createTestUser, type TestDatabase } from '../support/mariadb.js';

const execFileP = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const KAMAILIO_SQL = '/usr/share/kamailio/mysql';
const MODULES = ['standard', 'auth_db', 'uri_db', 'alias_db'];
const logger = pino({ level: 'silent' });
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');
const opts = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });

/** RFC 2617 response for qop=auth, computed the way a phone does from its password. */
function phoneResponse(user: string, realm: string, password: string, method: string, uri: string, nonce: string): string {
  return md5(`${md5(`${user}:${realm}:${password}`)}:${nonce}:00000001:abcdef:auth:${md5(`${method}:${uri}`)}`);
}
function serverResponse(ha1: string, method: string, uri: string, nonce: string): string {
  return md5(`${ha1}:${nonce}:00000001:abcdef:auth:${md5(`${method}:${uri}`)}`);
}

let kam: TestDatabase;
let ours: TestDatabase;
let kamUser: { user: string; password: string; drop(): Promise<void> };

/** Runs the real kamctl against the Kamailio-schema test database. */
async function kamctl(env: Record<string, string>, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('kamctl', args, {
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin:/usr/sbin:/sbin',
      HOME: '/nonexistent',
      DBENGINE: 'MYSQL',
      DBHOST: '127.0.0.1',
      DBPORT: '3306',
      DBNAME: kam.name,
      DBRWUSER: kamUser.user,
      DBRWPW: kamUser.password,
      DBROUSER: kamUser.user,
      DBROPW: kamUser.password,
      ...env,
    },
    timeout: 20_000,
  });
  return stdout;
}

beforeAll(async () => {
  // kamdbctl creates Kamailio databases in Latin-1 by default.
  kam = await createTestDatabase('slkam', { charset: 'latin1' });
  ours = await createTestDatabase('slours', { charset: 'latin1' });
  for (const m of MODULES) await kam.sqlFile(path.join(KAMAILIO_SQL, `${m}-create.sql`));
  for (const m of MODULES) await ours.sqlFile(path.join(root, 'schemas', 'sql', `${m}-create.sql`));
  kamUser = await createTestUser(kam);
});

afterAll(async () => {
  await kamUser?.drop();
  await kam?.drop();
  await ours?.drop();
});

describe("sipledger's DDL against Kamailio's schema scripts", () => {
  async function describeSchema(db: TestDatabase): Promise<unknown> {
    const columns = await db.sql(
      `SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, CHARACTER_SET_NAME
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION`,
      [db.name],
    );
    const indexes = await db.sql(
      `SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
      [db.name],
    );
    const versions = await db.sql('SELECT table_name, table_version FROM version ORDER BY table_name');
    return { columns, indexes, versions };
  }

  it('creates the same tables, columns, types, defaults, indexes and version rows', async () => {
    const k = await describeSchema(kam);
    const o = await describeSchema(ours);
    expect(o).toEqual(k);
    expect((k as { versions: unknown[] }).versions).toEqual([
      { table_name: 'dbaliases', table_version: 1 },
      { table_name: 'subscriber', table_version: 7 },
      { table_name: 'uri', table_version: 1 },
      { table_name: 'version', table_version: 1 },
    ]);
  });

  it('runs harmlessly on a database that already has the Kamailio schema', async () => {
    const before = await describeSchema(kam);
    for (const m of MODULES) await kam.sqlFile(path.join(root, 'schemas', 'sql', `${m}-create.sql`));
    expect(await describeSchema(kam)).toEqual(before);
  });
});

describe('subscribers written by kamctl', () => {
  beforeAll(async () => {
    // kamctl's default keeps the clear-text password as well (STORE_PLAINTEXT_PW=1). kamctl pastes
    // passwords into SQL text and word-splits them, so only quote- and space-free ones survive it.
    await kamctl({ SIP_DOMAIN: 'example.test' }, 'add', 'alice', "pa%ss-word");
    await kamctl({ SIP_DOMAIN: 'example.test', STORE_PLAINTEXT_PW: '0' }, 'add', 'bob@other.test', 'bob-pw');
    await kamctl({ SIP_DOMAIN: 'example.test', STORE_PLAINTEXT_PW: '0' }, 'add', '1001', 'first');
    await kamctl({ SIP_DOMAIN: 'example.test', STORE_PLAINTEXT_PW: '0' }, 'passwd', '1001', 'second');
    await kam.sql("INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('sales', 'example.test', 'alice', 'example.test')");
    await kam.sql("INSERT INTO uri (username, domain, uri_user) VALUES ('alice', 'example.test', 'reception')");
  });

  it('authenticate a REGISTER from the HA1 kamctl stored (calculateHa1 off, the default)', async () => {
    const b = createMysqlBackend({ name: 'kam', url: kam.url, logger });
    try {
      const c = await b.lookup({ username: 'alice', domain: 'example.test' }, opts());
      const nonce = 'nonce-1';
      expect(serverResponse(c!.ha1!, 'REGISTER', 'sip:example.test', nonce)).toBe(
        phoneResponse('alice', 'example.test', "pa%ss-word", 'REGISTER', 'sip:example.test', nonce),
      );
      // ha1b: the phone sends user@domain as its digest username.
      expect(serverResponse(c!.ha1b!, 'REGISTER', 'sip:example.test', nonce)).toBe(
        phoneResponse('alice@example.test', 'example.test', "pa%ss-word", 'REGISTER', 'sip:example.test', nonce),
      );
      expect(c!.password).toBeUndefined();
      expect(b.stats.queries).toBe(1);
    } finally {
      await b.close();
    }
  });

  it('authenticate an INVITE after kamctl passwd, and reject the old password', async () => {
    const b = createMysqlBackend({ name: 'kam', url: kam.url, logger });
    try {
      const c = await b.lookup({ username: '1001', domain: 'example.test' }, opts());
      const good = phoneResponse('1001', 'example.test', 'second', 'INVITE', 'sip:alice@example.test', 'n2');
      const old = phoneResponse('1001', 'example.test', 'first', 'INVITE', 'sip:alice@example.test', 'n2');
      expect(serverResponse(c!.ha1!, 'INVITE', 'sip:alice@example.test', 'n2')).toBe(good);
      expect(serverResponse(c!.ha1!, 'INVITE', 'sip:alice@example.test', 'n2')).not.toBe(old);
    } finally {
      await b.close();
    }
  });

  it('read the clear-text password kamctl kept, and none where it was told not to keep it', async () => {
    const b = createMysqlBackend({ name: 'kam', url: kam.url, logger, calculateHa1: true });
    try {
      expect((await b.lookup({ username: 'alice', domain: 'example.test' }, opts()))?.password).toBe("pa%ss-word");
      expect(await b.lookup({ username: 'bob', domain: 'other.test' }, opts())).toBeNull();
    } finally {
      await b.close();
    }
  });

  it('resolve aliases and uri rows of the Kamailio tables', async () => {
    const b = createMysqlBackend({ name: 'kam', url: kam.url, logger, uriTable: 'uri', aliasTable: 'dbaliases' });
    try {
      expect(await b.resolveAlias({ user: 'sales', domain: 'example.test' }, opts())).toEqual({ user: 'alice', domain: 'example.test' });
      expect(await b.ownsIdentity({ user: 'alice', domain: 'example.test' }, { user: 'reception', domain: 'example.test' }, opts())).toBe(true);
      expect(await b.ownsIdentity({ user: 'alice', domain: 'example.test' }, { user: '1001', domain: 'example.test' }, opts())).toBe(false);
    } finally {
      await b.close();
    }
  });
});

describe('sipledger subscriber administration and kamctl write the same rows', () => {
  it('stores byte-identical ha1, ha1b and password columns, and kamctl sees the user', async () => {
    const admin = createSubscriberAdmin({ url: kam.url });
    try {
      await kamctl({ SIP_DOMAIN: 'twin.test', STORE_PLAINTEXT_PW: '1' }, 'add', 'k-twin', 'Tw1n-pass');
      expect(await admin.addUser({ user: 's-twin', domain: 'twin.test', password: 'Tw1n-pass', storePlaintextPassword: true })).toEqual({ ok: true });
      await kamctl({ SIP_DOMAIN: 'twin.test', STORE_PLAINTEXT_PW: '0' }, 'add', 'k-hash', 'hash only');
      expect(await admin.addUser({ user: 's-hash', domain: 'twin.test', password: 'hash only' })).toEqual({ ok: true });

      const rows = await kam.sql<Array<{ username: string; password: string; ha1: string; ha1b: string }>>(
        "SELECT username, password, ha1, ha1b FROM subscriber WHERE domain = 'twin.test' ORDER BY username",
      );
      const byUser = new Map(rows.map((r) => [r.username, r]));
      const kt = byUser.get('k-twin')!;
      const st = byUser.get('s-twin')!;
      expect(st.password).toBe(kt.password);
      expect(st.ha1).toBe(md5('s-twin:twin.test:Tw1n-pass'));
      expect(kt.ha1).toBe(md5('k-twin:twin.test:Tw1n-pass'));
      expect(st.ha1b).toBe(md5('s-twin@twin.test:twin.test:Tw1n-pass'));
      expect(kt.ha1b).toBe(md5('k-twin@twin.test:twin.test:Tw1n-pass'));
      expect(byUser.get('s-hash')!.password).toBe('');
      expect(byUser.get('k-hash')!.password).toBe('');

      // kamctl refuses to add what sipledger added, as it would its own.
      const again = await kamctl({ SIP_DOMAIN: 'twin.test' }, 'add', 's-twin', 'x').then(
        () => 'added',
        (err: { stdout?: string }) => err.stdout ?? 'failed',
      );
      expect(again).toContain('already exists');
      const shown = await kamctl({ SIP_DOMAIN: 'twin.test' }, 'show', 's-twin');
      expect(shown).toContain(md5('s-twin:twin.test:Tw1n-pass'));
      // And sipledger refuses to add what kamctl added.
      expect(await admin.addUser({ user: 'k-twin', domain: 'twin.test', password: 'y' })).toMatchObject({ ok: false, reason: 'exists' });
    } finally {
      await admin.close();
    }
  });
});

import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createMysqlBackend } from '../../src/backends/auth/mysql.js';
import {
  computeHa1,
  computeHa1b,
  createSubscriberAdmin,
  SubscriberAdminError,
  type SubscriberAdmin,
} from '../../src/backends/auth/subscriber-admin.js';
import { createTestDatabase, type TestDatabase } from '../support/mariadb.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');
const opts = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });

let db: TestDatabase;
let admin: SubscriberAdmin;

beforeAll(async () => {
  db = await createTestDatabase('sladmin');
  for (const f of ['standard', 'auth_db', 'uri_db', 'alias_db']) await db.sqlFile(path.join(root, 'schemas', 'sql', `${f}-create.sql`));
  await db.sql('ALTER TABLE subscriber ADD COLUMN email_address VARCHAR(128) NULL');
  admin = createSubscriberAdmin({ url: db.url, logger: pino({ level: 'silent' }) });
});

afterAll(async () => {
  await admin?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.sql('DELETE FROM subscriber; DELETE FROM dbaliases');
});

type Row = { username: string; domain: string; password: string; ha1: string; ha1b: string };
const rows = (): Promise<Row[]> => db.sql<Row[]>('SELECT username, domain, password, ha1, ha1b FROM subscriber ORDER BY id');

describe('subscriber administration (kamctl add / rm / passwd / show)', () => {
  it('computes HA1 and HA1b as kamctl does', () => {
    expect(computeHa1('alice', 'example.test', 'pw')).toBe(md5('alice:example.test:pw'));
    expect(computeHa1b('alice', 'example.test', 'pw')).toBe(md5('alice@example.test:example.test:pw'));
  });

  it('add stores ha1 and ha1b, and no clear-text password unless asked', async () => {
    expect(await admin.addUser({ user: 'alice', domain: 'example.test', password: 's3cret' })).toEqual({ ok: true });
    expect(await admin.addUser({ user: 'bob', domain: 'example.test', password: 'b0b', storePlaintextPassword: true })).toEqual({ ok: true });
    expect(await rows()).toEqual([
      { username: 'alice', domain: 'example.test', password: '', ha1: md5('alice:example.test:s3cret'), ha1b: md5('alice@example.test:example.test:s3cret') },
      { username: 'bob', domain: 'example.test', password: 'b0b', ha1: md5('bob:example.test:b0b'), ha1b: md5('bob@example.test:example.test:b0b') },
    ]);
  });

  it('add refuses an existing subscriber, one equal under the collation, and a name that is an alias', async () => {
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'x' });
    expect(await admin.addUser({ user: 'alice', domain: 'example.test', password: 'y' })).toMatchObject({ ok: false, reason: 'exists' });
    expect(await admin.addUser({ user: 'ALICE', domain: 'example.test', password: 'y' })).toMatchObject({ ok: false, reason: 'exists' });
    await db.sql("INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('sales', 'example.test', 'alice', 'example.test')");
    expect(await admin.addUser({ user: 'sales', domain: 'example.test', password: 'y' })).toMatchObject({ ok: false, reason: 'alias_exists' });
    expect(await admin.addUser({ user: 'sales', domain: 'other.test', password: 'y' })).toEqual({ ok: true });
    expect((await rows()).map((r) => r.ha1)).toEqual([md5('alice:example.test:x'), md5('sales:other.test:y')]);
  });

  it('add answers invalid input with a reason instead of writing it', async () => {
    const cases = [
      { user: '', domain: 'example.test', password: 'x' },
      { user: 'a', domain: '', password: 'x' },
      { user: 'a', domain: 'example.test', password: '' },
      { user: 'a\r\nb', domain: 'example.test', password: 'x' },
      { user: 'u'.repeat(200), domain: 'example.test', password: 'x' },
    ];
    for (const c of cases) expect(await admin.addUser(c)).toMatchObject({ ok: false, reason: 'invalid' });
    expect(await rows()).toEqual([]);
  });

  it('stores names with quotes, %, _ and unicode as they are, and the backend authenticates them', async () => {
    const names = ["o'brien", '100%', 'a_b', 'josé', '日本語', "x'); DROP TABLE subscriber; --"];
    for (const user of names) expect(await admin.addUser({ user, domain: 'example.test', password: `pw ${user}` })).toEqual({ ok: true });
    const b = createMysqlBackend({ name: 'db', url: db.url, logger: pino({ level: 'silent' }) });
    try {
      for (const user of names) {
        const c = await b.lookup({ username: user, domain: 'example.test' }, opts());
        expect(c?.ha1).toBe(md5(`${user}:example.test:pw ${user}`));
      }
    } finally {
      await b.close();
    }
  });

  it('passwd rewrites ha1, ha1b and password together', async () => {
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'old', storePlaintextPassword: true });
    expect(await admin.setPassword({ user: 'alice', domain: 'example.test', password: 'new' })).toEqual({ ok: true });
    expect(await rows()).toEqual([
      { username: 'alice', domain: 'example.test', password: '', ha1: md5('alice:example.test:new'), ha1b: md5('alice@example.test:example.test:new') },
    ]);
    expect(await admin.setPassword({ user: 'alice', domain: 'example.test', password: 'newer', storePlaintextPassword: true })).toEqual({ ok: true });
    expect((await rows())[0]?.password).toBe('newer');
  });

  it('passwd and rm answer not_found for a missing subscriber, matching names exactly', async () => {
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'pw' });
    expect(await admin.setPassword({ user: 'bob', domain: 'example.test', password: 'x' })).toMatchObject({ ok: false, reason: 'not_found' });
    expect(await admin.setPassword({ user: 'ALICE', domain: 'example.test', password: 'x' })).toMatchObject({ ok: false, reason: 'not_found' });
    expect(await admin.removeUser({ user: 'alice ', domain: 'example.test' })).toMatchObject({ ok: false, reason: 'not_found' });
    expect((await rows())[0]?.ha1).toBe(md5('alice:example.test:pw'));
  });

  it('rm deletes the subscriber and the aliases that point at it, and nothing else', async () => {
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'pw' });
    await admin.addUser({ user: 'bob', domain: 'example.test', password: 'pw' });
    await db.sql(
      "INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('sales', 'example.test', 'alice', 'example.test'), ('info', 'example.test', 'bob', 'example.test')",
    );
    expect(await admin.removeUser({ user: 'alice', domain: 'EXAMPLE.test' })).toEqual({ ok: true });
    expect((await rows()).map((r) => r.username)).toEqual(['bob']);
    expect(await db.sql('SELECT alias_username FROM dbaliases')).toEqual([{ alias_username: 'info' }]);
  });

  it('list shows users and whether a clear-text password is stored, optionally for one domain', async () => {
    await admin.addUser({ user: 'bob', domain: 'example.test', password: 'pw', storePlaintextPassword: true });
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'pw' });
    await admin.addUser({ user: 'carol', domain: 'other.test', password: 'pw' });
    expect(await admin.listUsers()).toEqual([
      { user: 'alice', domain: 'example.test', plaintextPasswordStored: false },
      { user: 'bob', domain: 'example.test', plaintextPasswordStored: true },
      { user: 'carol', domain: 'other.test', plaintextPasswordStored: false },
    ]);
    expect(await admin.listUsers({ domain: 'other.test' })).toEqual([{ user: 'carol', domain: 'other.test', plaintextPasswordStored: false }]);
  });

  it('show gives every column but never a secret', async () => {
    await admin.addUser({ user: 'alice', domain: 'example.test', password: 'top-secret', storePlaintextPassword: true });
    await db.sql("UPDATE subscriber SET email_address = 'alice@example.test'");
    const shown = await admin.showUser({ user: 'alice', domain: 'example.test' });
    expect(shown).toMatchObject({
      user: 'alice',
      domain: 'example.test',
      plaintextPasswordStored: true,
      ha1Stored: true,
      ha1bStored: true,
      columns: { email_address: 'alice@example.test' },
    });
    expect(Object.keys(shown!.columns).sort()).toEqual(['email_address', 'id']);
    const text = JSON.stringify(shown);
    expect(text).not.toContain('top-secret');
    expect(text).not.toContain(md5('alice:example.test:top-secret'));
    expect(await admin.showUser({ user: 'nobody', domain: 'example.test' })).toBeNull();
  });

  it('works without an aliases table when told so, or when the table is missing', async () => {
    const noAlias = createSubscriberAdmin({ url: db.url, aliasTable: 'no_such_aliases' });
    try {
      expect(await noAlias.addUser({ user: 'dave', domain: 'example.test', password: 'pw' })).toEqual({ ok: true });
      expect(await noAlias.removeUser({ user: 'dave', domain: 'example.test' })).toEqual({ ok: true });
    } finally {
      await noAlias.close();
    }
  });

  it('throws SubscriberAdminError with a code and cause when the database fails', async () => {
    const broken = createSubscriberAdmin({ url: db.url, table: 'no_such_table' });
    try {
      const err = await broken.addUser({ user: 'x', domain: 'example.test', password: 'pw' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SubscriberAdminError);
      expect((err as SubscriberAdminError).code).toBe('SUBSCRIBER_DB_ERROR');
      expect((err as SubscriberAdminError).retriable).toBe(false);
      expect((err as Error).cause).toBeDefined();
      expect((err as Error).message).not.toContain('pw');
    } finally {
      await broken.close();
    }
  });
});

/**
 * `sipledger users` run as a process on a Kamailio-schema subscriber table in MariaDB, with kamctl's
 * semantics. Passwords come on standard input or as an argument and never appear in the output.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/mariadb.js';
import { ROOT, removeDir } from '../support/sipledger-process.js';

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

describe('users on a MySQL subscriber table (kamctl semantics)', () => {
  let db: TestDatabase;
  let dir: string;
  let config: string;
  const users = (args: string[], input?: string) => runCli(['users', ...args, '-c', config, '--backend', 'db'], { cwd: dir, ...(input !== undefined ? { input } : {}) });

  beforeAll(async () => {
    db = await createTestDatabase('slcli');
    for (const f of ['standard', 'auth_db', 'alias_db']) await db.sqlFile(path.join(ROOT, 'schemas', 'sql', `${f}-create.sql`));
    dir = mkdtempSync(path.join(tmpdir(), 'sipledger-users-db-'));
    config = path.join(dir, 'sipledger.yaml');
    writeFileSync(
      config,
      YAML.stringify({
        domains: [{ domain: 'example.com', backend: 'db' }, { domain: 'lab.test', backend: 'mem' }],
        backends: {
          db: { type: 'mysql', host: db.connection.host, port: db.connection.port, user: db.connection.user, database: db.name },
          mem: { type: 'memory', users: [] },
        },
        log: { type: 'file', dir: './data/log' },
      }),
    );
  });
  afterAll(async () => {
    await db?.drop();
    if (dir) removeDir(dir);
  });

  it('add writes ha1 and ha1b as kamctl does, with no clear-text password', async () => {
    const r = await users(['add', 'alice'], 'alice-db-secret\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = await db.sql<Array<{ username: string; domain: string; password: string; ha1: string; ha1b: string }>>('SELECT username, domain, password, ha1, ha1b FROM subscriber');
    expect(rows).toEqual([
      { username: 'alice', domain: 'example.com', password: '', ha1: md5('alice:example.com:alice-db-secret'), ha1b: md5('alice@example.com:example.com:alice-db-secret') },
    ]);
    const dup = await users(['add', 'alice'], 'x\n');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain('already exists');
  });

  it('the backend is chosen from the domain when --backend is absent', async () => {
    const r = await runCli(['users', 'add', 'bob@example.com', '--plaintext', '-c', config], { cwd: dir, input: 'bob-db-secret\n' });
    expect(r.code).toBe(0);
    const rows = await db.sql<Array<{ password: string }>>("SELECT password FROM subscriber WHERE username = 'bob'");
    expect(rows[0]!.password).toBe('bob-db-secret');
  });

  it('list and show never print a secret', async () => {
    const list = await users(['list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/alice\s+example\.com\s+no/);
    expect(list.stdout).toMatch(/bob\s+example\.com\s+yes/);
    const show = await users(['show', 'alice', '--json']);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ user: 'alice', domain: 'example.com', ha1Stored: true, ha1bStored: true, plaintextPasswordStored: false });
    expect(show.stdout + list.stdout).not.toContain(md5('alice:example.com:alice-db-secret'));
    expect(show.stdout + list.stdout).not.toContain('bob-db-secret');
  });

  it('passwd rewrites the hashes; rm removes the subscriber and its aliases; unknown users are exit 1', async () => {
    expect((await users(['passwd', 'alice', 'changed-secret'])).code).toBe(0);
    const rows = await db.sql<Array<{ ha1: string }>>("SELECT ha1 FROM subscriber WHERE username = 'alice'");
    expect(rows[0]!.ha1).toBe(md5('alice:example.com:changed-secret'));
    await db.sql("INSERT INTO dbaliases (alias_username, alias_domain, username, domain) VALUES ('al', 'example.com', 'alice', 'example.com')");
    expect((await users(['rm', 'alice'])).code).toBe(0);
    expect(await db.sql('SELECT id FROM dbaliases')).toEqual([]);
    expect((await users(['rm', 'alice'])).code).toBe(1);
    expect((await users(['passwd', 'alice'], 'x\n')).code).toBe(1);
  });

  it('an unreachable database is a runtime failure: exit 1 with the reason', async () => {
    const bad = path.join(dir, 'unreachable.yaml');
    writeFileSync(
      bad,
      YAML.stringify({
        domains: [{ domain: 'example.com', backend: 'db' }],
        backends: { db: { type: 'mysql', host: '127.0.0.1', port: 1, user: 'root', database: 'nothing', queryTimeoutMs: 2000 } },
      }),
    );
    const r = await runCli(['users', 'list', '-c', bad], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ECONNREFUSED|connect/i);
  });

  it('a RADIUS backend has no users to manage here: exit 2', async () => {
    const radius = path.join(dir, 'radius.yaml');
    writeFileSync(
      radius,
      YAML.stringify({ domains: [{ domain: 'example.com', backend: 'r' }], backends: { r: { type: 'radius', servers: [{ host: '127.0.0.1', secret: 's' }] } } }),
    );
    const r = await runCli(['users', 'list', '--backend', 'r', '-c', radius], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('RADIUS');
  });
});

/**
 * `sipledger users` run as a process on a memory backend's users file. Passwords come on standard
 * input and never appear in the output or, as clear text, in the file.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { removeDir } from '../support/sipledger-process.js';

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

describe('users on a memory backend (users file)', () => {
  let dir: string;
  let config: string;
  const usersFile = (): string => path.join(dir, 'users.yaml');
  const users = (...args: string[]) => runCli(['users', ...args, '-c', config], { cwd: dir });

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sipledger-users-'));
    config = path.join(dir, 'sipledger.yaml');
    writeFileSync(
      config,
      YAML.stringify({
        domains: [{ domain: 'example.com', backend: 'local', realm: 'Example Realm' }],
        backends: { local: { type: 'memory', users: [{ username: 'admin', password: 'inline-secret' }], usersFile: 'users.yaml' } },
        log: { type: 'file', dir: './data/log' },
      }),
    );
    writeFileSync(usersFile(), '# office phones\nusers:\n  - username: alice\n    password: alice-secret # desk phone\n');
  });
  afterAll(() => removeDir(dir));

  it('add reads the password from standard input and writes the users file', async () => {
    const r = await runCli(['users', 'add', 'carol', '-c', config], { cwd: dir, input: 'carol-secret\n' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added carol@example.com');
    const text = readFileSync(usersFile(), 'utf8');
    expect(text).toContain('# office phones');
    expect(text).toContain('# desk phone');
    const doc = YAML.parse(text) as { users: Array<Record<string, string>> };
    expect(doc.users[1]).toEqual({
      username: 'carol',
      ha1: md5('carol:Example Realm:carol-secret'),
      ha1b: md5('carol@example.com:Example Realm:carol-secret'),
    });
    expect(text).not.toContain('carol-secret');
    expect(r.stdout + r.stderr).not.toContain(md5('carol:Example Realm:carol-secret'));
  });

  it('add refuses an existing user with exit 1; an inline user is read-only', async () => {
    const again = await runCli(['users', 'add', 'carol', '-c', config], { cwd: dir, input: 'x\n' });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
    const inline = await runCli(['users', 'passwd', 'admin', '-c', config], { cwd: dir, input: 'x\n' });
    expect(inline.code).toBe(1);
    expect(inline.stderr).toContain('inline');
  });

  it('list shows every user with where it comes from and which credentials it has, never their values', async () => {
    const r = await users('list');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/admin\s+example\.com\s+configuration\s+password/);
    expect(r.stdout).toMatch(/alice\s+example\.com\s+users\.yaml\s+password/);
    expect(r.stdout).toMatch(/carol\s+example\.com\s+users\.yaml\s+ha1,ha1b/);
    expect(r.stdout).not.toMatch(/secret|[0-9a-f]{32}/);
    const json = JSON.parse((await users('list', '--json')).stdout) as Array<{ username: string }>;
    expect(json.map((u) => u.username)).toEqual(['admin', 'alice', 'carol']);
  });

  it('show prints one user; an unknown user is exit 1', async () => {
    const r = await users('show', 'carol@example.com');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('credentials: ha1, ha1b');
    expect(r.stdout).not.toMatch(/[0-9a-f]{32}/);
    expect((await users('show', 'zed')).code).toBe(1);
  });

  it('passwd replaces every stored credential; --plaintext stores the clear text instead', async () => {
    const r = await runCli(['users', 'passwd', 'alice', '--plaintext', '-c', config], { cwd: dir, input: 'new-alice\n' });
    expect(r.code).toBe(0);
    const doc = YAML.parse(readFileSync(usersFile(), 'utf8')) as { users: Array<Record<string, string>> };
    expect(doc.users[0]).toEqual({ username: 'alice', password: 'new-alice' });
    const back = await runCli(['users', 'passwd', 'alice', '-c', config], { cwd: dir, input: 'newer-alice\n' });
    expect(back.code).toBe(0);
    const doc2 = YAML.parse(readFileSync(usersFile(), 'utf8')) as { users: Array<Record<string, string>> };
    expect(doc2.users[0]).toEqual({ username: 'alice', ha1: md5('alice:Example Realm:newer-alice'), ha1b: md5('alice@example.com:Example Realm:newer-alice') });
  });

  it('rm removes the user; removing again is exit 1', async () => {
    expect((await users('rm', 'carol')).code).toBe(0);
    expect((YAML.parse(readFileSync(usersFile(), 'utf8')) as { users: Array<{ username: string }> }).users.map((u) => u.username)).toEqual(['alice']);
    expect((await users('rm', 'carol')).code).toBe(1);
  });

  it('usage errors exit 2: no subcommand, no user, an unknown backend, an empty password', async () => {
    expect((await users()).code).toBe(2);
    expect((await users('add')).code).toBe(2);
    expect((await users('list', '--backend', 'nope')).code).toBe(2);
    expect((await runCli(['users', 'add', 'erin', '-c', config], { cwd: dir, input: '' })).code).toBe(2);
  });

  it('add creates a missing users file readable by its owner only', async () => {
    const fresh = path.join(dir, 'fresh.yaml');
    writeFileSync(fresh, YAML.stringify({ domains: [{ domain: 'example.com', backend: 'local' }], backends: { local: { type: 'memory', usersFile: 'fresh-users.yaml' } } }));
    const r = await runCli(['users', 'add', 'erin', '-c', fresh], { cwd: dir, input: 'erin-secret\n' });
    expect(r.code).toBe(0);
    const file = path.join(dir, 'fresh-users.yaml');
    expect(statSync(file).mode & 0o077).toBe(0);
    expect((YAML.parse(readFileSync(file, 'utf8')) as { users: Array<{ username: string }> }).users.map((u) => u.username)).toEqual(['erin']);
  });

  it('a backend without usersFile cannot be edited: exit 1 with the key to add', async () => {
    const other = path.join(dir, 'inline-only.yaml');
    writeFileSync(other, YAML.stringify({ domains: [{ domain: 'example.com', backend: 'local' }], backends: { local: { type: 'memory', users: [] } } }));
    const r = await runCli(['users', 'add', 'erin', 'pw', '-c', other], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('usersFile');
  });
});

/**
 * `sipledger start` as an operator runs it: a bad configuration is refused before any socket
 * opens; SIGTERM stops cleanly (exit 0, snapshot written) and a restart still knows the binding;
 * SIGHUP reloads the users file; a SIP port in use is a clear failure with exit code 1.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { baseConfig, freePort, removeDir, startSipledger, type RunningSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function register(server: RunningSipledger, user: string, password: string, contactPort: number): Promise<number> {
  return runSipp({
    scenario: 'register.xml',
    target: `127.0.0.1:${server.sipPort}`,
    keys: { user, domain: 'example.com', contact: `127.0.0.1:${contactPort}`, expires: '3600' },
    auth: { user, password },
    timeoutMs: 5000,
  }).then((r) => r.successful);
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sipledger-start-'));
  cleanup.push(() => removeDir(dir));
  return dir;
}

describe('sipledger start', () => {
  it('SIGTERM after a registration exits 0 with a snapshot; the restarted process still has the binding', async () => {
    const first = await startSipledger(baseConfig());
    cleanup.push(() => removeDir(first.dir));
    cleanup.push(() => first.kill());
    expect(await register(first, 'alice', 'alice-secret', 5070)).toBe(1);
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.output.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
    expect(existsSync(path.join(first.dir, 'data', 'snapshots', 'ledger-snapshot.json'))).toBe(true);
    // The warm-up's simulated phones registered through a private copy of the request path: none
    // of them is in the log, which holds alice's registration alone.
    const firstStart = JSON.parse(first.output.find((l) => l.includes('"msg":"sipledger started"'))!) as Record<string, unknown>;
    expect(firstStart['warmUp']).toEqual({ registrations: 500, calls: 100, ms: expect.any(Number) });
    const inspected = await runCli(['log', 'inspect', '-c', first.configFile, '--json'], { cwd: first.dir });
    expect(inspected.code).toBe(0);
    const events = inspected.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; aor?: string });
    expect(events.filter((e) => e.type.startsWith('contact.')).map((e) => e.aor)).toEqual(['sip:alice@example.com']);
    expect(events.filter((e) => e.type.startsWith('call.'))).toEqual([]);
    expect(inspected.stdout).not.toContain('warmup.invalid');

    const second = await startSipledger(baseConfig(), { dir: first.dir });
    cleanup.push(() => second.kill());
    const started = await second.waitForLog((l) => l['msg'] === 'sipledger started');
    expect(started['contacts']).toBe(1);
    // listen[].ioThread unset: every listener's datagrams stay on the main thread.
    expect(started['ioThread']).toEqual([]);
    const loc = (await (await fetch(`${second.adminUrl}/location`)).json()) as { aors: Array<{ aor: string; bindings: Array<{ uri: string }> }> };
    expect(loc.aors).toEqual([expect.objectContaining({ aor: 'sip:alice@example.com' })]);
    expect(loc.aors[0]!.bindings.map((b) => b.uri)).toEqual(['sip:alice@127.0.0.1:5070']);
    expect(await second.stop('SIGTERM')).toBe(0);
  });

  it('SIGHUP reloads the users file: a user added to it can register without a restart', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'users.yaml'), YAML.stringify({ users: [{ username: 'alice', password: 'alice-secret' }] }));
    const server = await startSipledger(baseConfig({ backends: { local: { type: 'memory', usersFile: 'users.yaml' } } }), { dir });
    cleanup.push(() => server.kill());
    expect(await register(server, 'dave', 'dave-secret', 5073)).toBe(0);
    // The operator's way: the users command edits the file; --reload sends SIGHUP to the log's holder.
    const add = await runCli(['users', 'add', 'dave', '-c', server.configFile, '--reload'], { cwd: dir, input: 'dave-secret\n' });
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(add.stdout).toContain(`sent SIGHUP to sipledger (pid ${server.child.pid})`);
    await server.waitForLog((l) => l['msg'] === 'in-memory users reloaded');
    expect(await register(server, 'dave', 'dave-secret', 5073)).toBe(1);
    expect(await register(server, 'alice', 'alice-secret', 5070)).toBe(1);
  });

  it('SIGHUP with a broken users file keeps the previous users', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'users.yaml'), YAML.stringify({ users: [{ username: 'alice', password: 'alice-secret' }] }));
    const server = await startSipledger(baseConfig({ backends: { local: { type: 'memory', usersFile: 'users.yaml' } } }), { dir });
    cleanup.push(() => server.kill());
    writeFileSync(path.join(dir, 'users.yaml'), 'users: [ { username: alice\n');
    server.child.kill('SIGHUP');
    await server.waitForLog((l) => l['msg'] === 'in-memory users not reloaded; keeping the previous list');
    expect(await register(server, 'alice', 'alice-secret', 5070)).toBe(1);
  });

  it('an invalid configuration names the key path, exits 2 and opens no socket', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = path.join(dir, 'bad.yaml');
    const config = baseConfig({ registrar: { maxExpires: 'soon' }, domains: [{ domain: 'example.com', backend: 'nowhere' }] }, port);
    writeFileSync(file, YAML.stringify(config));
    const r = await runCli(['start', '-c', file], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('registrar.maxExpires');
    expect(r.stdout).not.toContain('sipledger started');
    expect(existsSync(path.join(dir, 'data'))).toBe(false);
    const check = await runCli(['config', 'check', file]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('registrar.maxExpires');
  });

  it('a SIP port already in use is reported and exits 1', async () => {
    const dir = tempDir();
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const file = path.join(dir, 'sipledger.yaml');
    writeFileSync(file, YAML.stringify(baseConfig({}, port)));
    const r = await runCli(['start', '-c', file], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('could not start');
    expect(r.stderr).toContain(`cannot listen on tcp:127.0.0.1:${port}`);
    expect(r.stderr).toContain('EADDRINUSE');
  });

  it('usage errors exit 2 with a hint', async () => {
    const r = await runCli(['start', '--log-level', 'loud']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--log-level');
    const p = await runCli(['start', '--sip-port', 'abc']);
    expect(p.code).toBe(2);
  });
});

/**
 * The README's quick start, as a new user runs it: `sipledger start` with no configuration in an
 * empty directory, a phone (SIPp) registering alice with the password the banner prints, the
 * binding seen by `sipledger location show` and the admin API, and Ctrl-C stopping it cleanly.
 * Only the ports differ from the README (5060 and 8080 may be taken on a test machine).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, startCli, type CliProcess } from '../support/cli.js';
import { baseConfig, freePort, removeDir, startSipledger } from '../support/sipledger-process.js';
import { runSipp } from '../support/sipp.js';

const dir = mkdtempSync(path.join(tmpdir(), 'sipledger-quickstart-'));
let proc: CliProcess | undefined;

afterAll(async () => {
  await proc?.stop('SIGKILL');
  removeDir(dir);
});

describe('quick start', () => {
  it('starts on the embedded defaults, registers alice, shows the binding, stops on Ctrl-C', async () => {
    const sipPort = await freePort();
    const adminPort = await freePort();
    proc = startCli(['start', '--sip-port', String(sipPort), '--admin-port', String(adminPort)], { cwd: dir });
    await proc.waitFor('"msg":"sipledger started"', 20_000);
    await new Promise((r) => setTimeout(r, 100));
    const banner = proc.stderr();
    expect(banner).toContain('sipledger is running (quick start)');
    expect(banner).toContain(`registrar/proxy: 127.0.0.1:${sipPort} (UDP and TCP), domain sipledger.test`);
    expect(banner).toContain('alice / alice-secret');
    expect(banner).toContain(`sipsak -U -x 3600 -C sip:alice@127.0.0.1:5070 -s sip:alice@sipledger.test -a alice-secret -u alice -p 127.0.0.1:${sipPort}`);
    expect(existsSync(path.join(dir, 'data', 'log', 'LOG_ID'))).toBe(true);

    const r = await runSipp({
      scenario: 'register.xml',
      target: `127.0.0.1:${sipPort}`,
      keys: { user: 'alice', domain: 'sipledger.test', contact: '127.0.0.1:5070', expires: '3600' },
      auth: { user: 'alice', password: 'alice-secret' },
      timeoutMs: 5000,
    });
    expect(r.successful).toBe(1);
    expect(r.messages).toMatch(/SIP\/2\.0 200 OK[\s\S]*Contact: <sip:alice@127\.0\.0\.1:5070>;expires=\d+/);

    const loc = await runCli(['location', 'show'], { cwd: dir });
    expect(loc.code).toBe(0);
    expect(loc.stdout).toMatch(/sip:alice@sipledger\.test\s+<sip:alice@127\.0\.0\.1:5070>/);
    const api = (await (await fetch(`http://127.0.0.1:${adminPort}/location`)).json()) as { aors: Array<{ aor: string }> };
    expect(api.aors.map((a) => a.aor)).toEqual(['sip:alice@sipledger.test']);

    expect(await proc.stop('SIGINT')).toBe(0);
    expect(proc.stdout()).toContain('"msg":"stopped"');
  });

  it("registers with the banner's sipsak command (on a domain that resolves without a hosts entry)", async () => {
    const server = await startSipledger(baseConfig({ domains: [{ domain: 'localhost', backend: 'local' }] }));
    try {
      const args = ['-U', '-x', '3600', '-C', 'sip:alice@127.0.0.1:5070', '-s', 'sip:alice@localhost', '-a', 'alice-secret', '-u', 'alice', '-p', `127.0.0.1:${server.sipPort}`, '-vv'];
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn('sipsak', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let text = '';
        child.stdout.on('data', (b: Buffer) => (text += b.toString()));
        child.stderr.on('data', (b: Buffer) => (text += b.toString()));
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        child.once('exit', (code) => {
          clearTimeout(t);
          resolve({ code, text });
        });
      });
      expect(out.text).toContain('All usrloc tests completed successful');
      expect(out.code).toBe(0);
      const loc = await runCli(['location', 'show', 'alice@localhost', '-c', server.configFile], { cwd: server.dir });
      expect(loc.stdout).toMatch(/sip:alice@localhost\s+<?sip:alice@127\.0\.0\.1:5070>?\s+\d+\s+1\s+udp:127\.0\.0\.1:\d+\s+sipsak/);
    } finally {
      await server.kill();
      removeDir(server.dir);
    }
  });

  it('prints the command list with --help, and exit code 2 with no command at all', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    for (const c of ['start', 'config', 'users', 'location', 'audit', 'log', 'rebuild']) expect(help.stdout).toMatch(new RegExp(`^  ${c}\\s+\\S`, 'm'));
    const none = await runCli([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain('Usage: sipledger <command>');
  });
});

/**
 * Abuse resistance wired into the real process: a password-guessing source is banned after the
 * configured number of failures, the ban is an event that survives a restart and is managed with
 * `sipledger ban`, and a relay to a protected destination is refused with 473.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BIN, baseConfig, freePort, removeDir, startSipledger } from '../support/sipledger-process.js';
import { runSipp, startSippServer } from '../support/sipp.js';

const exec = promisify(execFile);

describe('abuse resistance through the real proxy', () => {
  it('bans a source after repeated bad passwords, keeps the ban across a restart, and lifts it with sipledger ban rm', async () => {
    const port = await freePort();
    // A fixed admin port: `sipledger ban` reaches the running process through it.
    const config = baseConfig(
      { security: { bruteForce: { ip: { failures: 3, windowSeconds: 60, banSeconds: 600 }, user: { failures: 0 } } }, admin: { address: '127.0.0.1', port: await freePort() } },
      port,
    );
    const first = await startSipledger(config);
    const guess = () =>
      runSipp({
        scenario: 'auth-register-wrong-password.xml',
        target: `127.0.0.1:${port}`,
        keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
        auth: { user: 'alice', password: 'guess' },
      });
    try {
      for (let i = 0; i < 3; i++) expect((await guess()).code).toBe(0);
      // The ban is appended asynchronously after the third failure; wait until it is in force.
      let banned = false;
      for (let i = 0; i < 50 && !banned; i++) {
        const bans = (await (await fetch(`${first.adminUrl}/bans`)).json()) as { bans: Array<{ scope: string; value: string }> };
        banned = bans.bans.some((b) => b.scope === 'ip' && b.value === '127.0.0.1');
        if (!banned) await new Promise((r) => setTimeout(r, 100));
      }
      expect(banned).toBe(true);
      const refused = await guess();
      expect(refused.code).not.toBe(0);
      expect(refused.messages).toMatch(/SIP\/2\.0 403 Forbidden \(banned\)/);
    } finally {
      await first.stop();
    }
    // The ban is in the log: a restarted process still enforces it, and the CLI lists it.
    const second = await startSipledger(config, { dir: first.dir });
    try {
      const refused = await guess();
      expect(refused.messages).toMatch(/SIP\/2\.0 403 Forbidden \(banned\)/);
      const list = await exec(process.execPath, [BIN, 'ban', 'list', '-c', second.configFile], { cwd: second.dir });
      expect(list.stdout).toMatch(/127\.0\.0\.1/);
      await exec(process.execPath, [BIN, 'ban', 'rm', 'ip', '127.0.0.1', '-c', second.configFile], { cwd: second.dir });
      const ok = await runSipp({
        scenario: 'register.xml',
        target: `127.0.0.1:${port}`,
        keys: { user: 'alice', domain: 'example.com', contact: '127.0.0.1:5999', expires: '300' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(ok.code, ok.errors).toBe(0);
    } finally {
      await second.stop();
      removeDir(first.dir);
    }
  }, 90_000);

  it('refuses to relay a call to a protected destination with 473 unless the caller is allowed', async () => {
    const uas = await startSippServer({ scenario: 'uas.xml' });
    const port = await freePort();
    const proxy = await startSipledger(
      baseConfig(
        { security: { destinations: { protected: [{ name: 'gateway', addresses: ['127.0.0.1'], ports: [uas.port], allowUsers: ['bob@example.com'] }] } } },
        port,
      ),
    );
    try {
      const reg = await runSipp({
        scenario: 'register.xml',
        target: `127.0.0.1:${port}`,
        keys: { user: 'carol', domain: 'example.com', contact: `127.0.0.1:${uas.port}`, expires: '300' },
        auth: { user: 'carol', password: 'carol-secret' },
      });
      expect(reg.code, reg.errors).toBe(0);
      const call = await runSipp({
        scenario: 'call.xml',
        target: `127.0.0.1:${port}`,
        keys: { caller: 'alice', callee: 'carol', domain: 'example.com' },
        auth: { user: 'alice', password: 'alice-secret' },
      });
      expect(call.code).not.toBe(0);
      expect(call.messages).toMatch(/SIP\/2\.0 473 Filtered Destination/);
      const allowed = await runSipp({
        scenario: 'call.xml',
        target: `127.0.0.1:${port}`,
        keys: { caller: 'bob', callee: 'carol', domain: 'example.com' },
        auth: { user: 'bob', password: 'bob-secret' },
      });
      expect(allowed.code, allowed.errors).toBe(0);
    } finally {
      await uas.stop();
      await proxy.stop();
      removeDir(proxy.dir);
    }
  }, 60_000);
});

/**
 * Every command explains itself: `--help` and `help COMMAND` print usage with options and exit
 * codes and exit 0; unknown commands and options exit 2 and say what was wrong.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/sipledger-process.js';
import { runCli } from '../support/cli.js';

const COMMANDS = ['start', 'config', 'users', 'location', 'audit', 'log', 'rebuild'];

describe('sipledger help', () => {
  it.each(COMMANDS)('%s --help prints its usage, its exit codes, and exits 0', async (c) => {
    const r = await runCli([c, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: sipledger ${c}`, 'm'));
    expect(r.stdout).toMatch(/Exit codes?:|exits 0/);
    const viaHelp = await runCli(['help', c]);
    expect(viaHelp.stdout).toBe(r.stdout);
    // docs/cli.md carries the same text.
    expect(readFileSync(path.join(ROOT, 'docs', 'cli.md'), 'utf8')).toContain(r.stdout);
  });

  it('an unknown command exits 2 and lists the commands', async () => {
    const r = await runCli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    expect(r.stderr).toContain('location');
  });

  it('an unknown option exits 2, names it, and points at --help', async () => {
    const r = await runCli(['audit', 'failed', '--colour']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown option --colour');
    expect(r.stderr).toContain("sipledger audit --help");
  });

  it('--version prints the version', async () => {
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

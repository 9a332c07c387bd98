/**
 * DESIGN.md contract 2: "A crash never loses an acknowledged binding". A child process appends
 * registrations through Ledger + FileLog under load and is killed with SIGKILL at random moments;
 * after each kill the location projection rebuilt from the log (and the snapshots the child wrote)
 * holds every registration whose append had resolved.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { FileLog } from '../../src/backends/log/file-log.js';
import { Ledger } from '../../src/core/log/ledger.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const writerScript = path.join(root, 'test', 'support', 'log-crash-writer.ts');
const CRASH_T0 = Date.UTC(2024, 0, 1);
const ROUNDS = 5;

interface RunResult {
  acknowledged: Array<{ aor: string; uri: string }>;
  readyCount: number;
  stderr: string;
}

/** Starts the writer, lets it run for `runMs` once it is acknowledging appends, then SIGKILLs it. */
function runAndKill(logDir: string, snapshotDir: string, runId: number, runMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', writerScript, logDir, snapshotDir, String(runId)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acknowledged: Array<{ aor: string; uri: string }> = [];
    let readyCount = -1;
    let stderr = '';
    let buffered = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const [kind, a, b] = line.split(' ');
        if (kind === 'ok') {
          acknowledged.push({ aor: a!, uri: b! });
          // Under load, from the first acknowledgement on: the kill lands while appends are in flight.
          timer ??= setTimeout(() => child.kill('SIGKILL'), runMs);
        } else if (kind === 'ready') readyCount = Number(a);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      // A line cut by the kill was not a whole report: it does not count.
      if (signal !== 'SIGKILL') reject(new Error(`writer exited with ${code ?? signal}: ${stderr}`));
      else resolve({ acknowledged, readyCount, stderr });
    });
  });
}

describe('crash safety of Ledger over FileLog', () => {
  it(`kill -9 under load ${ROUNDS} times: every acknowledged registration is in the rebuilt location table`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sipledger-crash-'));
    const logDir = path.join(dir, 'log');
    const snapshotDir = path.join(dir, 'snapshots');
    const logger = pino({ level: 'silent' });
    const acknowledged = new Map<string, string>();
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const runMs = 50 + Math.floor(Math.random() * 1000);
        const result = await runAndKill(logDir, snapshotDir, round, runMs);
        expect(result.readyCount, result.stderr).toBeGreaterThanOrEqual(acknowledged.size);
        expect(result.acknowledged.length, `round ${round} wrote nothing: ${result.stderr}`).toBeGreaterThan(0);
        for (const { aor, uri } of result.acknowledged) acknowledged.set(aor, uri);

        // Rebuild as a restarted sipledger would: newest snapshot, then the log after it.
        const ledger = await Ledger.open({ log: await FileLog.open({ dir: logDir, logger }), snapshotDir, logger, snapshotEvery: 0 });
        try {
          const missing: string[] = [];
          for (const [aor, uri] of acknowledged) {
            if (!ledger.location.bindings(aor, CRASH_T0).some((b) => b.uri === uri)) missing.push(aor);
          }
          expect(missing, `round ${round}: ${missing.length} acknowledged registrations lost`).toEqual([]);
        } finally {
          await ledger.close();
        }
      }
      expect(acknowledged.size).toBeGreaterThan(ROUNDS * 10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

/**
 * Runs SIPp (Debian's sip-tester) as the SIP peer of end-to-end tests, and collects what it saw.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT, freePort } from './sipledger-process.js';

export const SIPP_SCENARIOS = path.join(ROOT, 'test', 'fixtures', 'sipp');

export function sippAvailable(): boolean {
  return spawnSync('sipp', ['-v'], { stdio: 'ignore' }).error === undefined;
}

export interface SippOptions {
  /** Scenario file name under test/fixtures/sipp, or an absolute path. */
  readonly scenario: string;
  /** host:port of the proxy. */
  readonly target: string;
  readonly transport?: 'u1' | 'un' | 't1' | 'tn';
  /** Local port (a free one when absent). */
  readonly localPort?: number;
  /** Number of calls (-m); default 1. */
  readonly calls?: number;
  /** Calls per second (-r). */
  readonly rate?: number;
  /** Injection file rows (field0;field1;...), written to a temp CSV in SEQUENTIAL mode. */
  readonly inf?: readonly string[];
  /** -key name value pairs. */
  readonly keys?: Record<string, string>;
  /** -s service (Request-URI user). */
  readonly service?: string;
  readonly auth?: { user: string; password: string };
  /** Retransmission loss rate in percent (-lost). */
  readonly lost?: number;
  readonly timeoutMs?: number;
  readonly extraArgs?: readonly string[];
}

export interface SippResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Every message SIPp sent and received (-trace_msg). */
  readonly messages: string;
  readonly errors: string;
  readonly successful: number;
  readonly failed: number;
  /** The final screen's statistics CSV row (-trace_stat), when asked for. */
  readonly dir: string;
}

function buildArgs(o: SippOptions, dir: string, localPort: number): string[] {
  const scenario = path.isAbsolute(o.scenario) ? o.scenario : path.join(SIPP_SCENARIOS, o.scenario);
  const args = [
    o.target,
    '-sf', scenario,
    '-i', '127.0.0.1',
    '-p', String(localPort),
    '-t', o.transport ?? 'u1',
    '-m', String(o.calls ?? 1),
    '-nostdin',
    '-trace_msg', '-message_file', path.join(dir, 'messages.log'),
    '-trace_err', '-error_file', path.join(dir, 'errors.log'),
    '-trace_stat', '-stf', path.join(dir, 'stats.csv'),
    '-timeout', `${Math.ceil((o.timeoutMs ?? 20_000) / 1000)}s`,
    '-timeout_error',
    '-max_recv_loops', '1000',
  ];
  if (o.rate !== undefined) args.push('-r', String(o.rate));
  if (o.service) args.push('-s', o.service);
  if (o.auth) args.push('-au', o.auth.user, '-ap', o.auth.password);
  if (o.lost !== undefined) args.push('-lost', String(o.lost));
  if (o.inf) {
    const csv = path.join(dir, 'inf.csv');
    writeFileSync(csv, ['SEQUENTIAL', ...o.inf].join('\n') + '\n');
    args.push('-inf', csv);
  }
  for (const [k, v] of Object.entries(o.keys ?? {})) args.push('-key', k, v);
  args.push(...(o.extraArgs ?? []));
  return args;
}

function readIf(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

function countsFromStats(dir: string): { successful: number; failed: number } {
  const file = readdirSync(dir).find((f) => f.startsWith('stats'));
  if (!file) return { successful: 0, failed: 0 };
  const lines = readFileSync(path.join(dir, file), 'utf8').trim().split('\n');
  if (lines.length < 2) return { successful: 0, failed: 0 };
  const head = lines[0]!.split(';');
  const last = lines[lines.length - 1]!.split(';');
  const col = (name: string): number => Number(last[head.indexOf(name)] ?? 0);
  return { successful: col('SuccessfulCall(C)'), failed: col('FailedCall(C)') };
}

/** Runs SIPp to completion. */
export async function runSipp(o: SippOptions): Promise<SippResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sipp-'));
  const localPort = o.localPort ?? (await freePort());
  const child = spawn('sipp', buildArgs(o, dir, localPort), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const guard = setTimeout(() => child.kill('SIGKILL'), (o.timeoutMs ?? 20_000) + 15_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(guard);
  return {
    code,
    stdout,
    stderr,
    messages: readIf(path.join(dir, 'messages.log')),
    errors: readIf(path.join(dir, 'errors.log')),
    ...countsFromStats(dir),
    dir,
  };
}

export interface SippServer {
  readonly port: number;
  readonly child: ChildProcess;
  readonly dir: string;
  stop(): Promise<SippResult>;
}

/** Starts a SIPp UAS (or any scenario that waits for requests) in the background. */
export async function startSippServer(o: Omit<SippOptions, 'target'> & { target?: string }): Promise<SippServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sipp-uas-'));
  const port = o.localPort ?? (await freePort());
  const args = buildArgs({ ...o, target: o.target ?? '127.0.0.1:1' }, dir, port);
  // A server scenario has no target: drop the first positional argument.
  if (!o.target) args.shift();
  const child = spawn('sipp', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  // Give SIPp a moment to bind its socket.
  await new Promise((r) => setTimeout(r, 200));
  return {
    port,
    child,
    dir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGUSR1'); // SIPp: dump and exit
        const t = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      const code = await exited;
      return {
        code,
        stdout,
        stderr,
        messages: readIf(path.join(dir, 'messages.log')),
        errors: readIf(path.join(dir, 'errors.log')),
        ...countsFromStats(dir),
        dir,
      };
    },
  };
}

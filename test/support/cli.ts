/**
 * Runs the built `sipledger` binary (dist/src/cli/main.js) as a process, as an operator would,
 * and collects its exit code and output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './sipledger-process.js';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  readonly cwd?: string;
  readonly env?: Record<string, string>;
  /** Written to standard input, which is then closed. */
  readonly input?: string;
  readonly timeoutMs?: number;
}

export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sipledger ${args.join(' ')} did not finish in time; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface CliProcess {
  readonly child: ChildProcess;
  /** Everything printed on stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout contains `text` (or matches it). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal and resolves the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running command (log tail) in the background. */
export function startCli(args: readonly string[], opts: CliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor(text, timeoutMs = 15_000) {
      const seen = (): boolean => (typeof text === 'string' ? out.includes(text) : text.test(out));
      if (seen()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${String(text)}; stdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const check = (): void => {
          if (seen()) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

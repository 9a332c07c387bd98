/**
 * Starts the real sipledger binary (dist/src/cli/main.js, built by the global setup) as a child
 * process on loopback with a generated configuration, and tells a test where it listens.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
export { freePort } from './ports.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

export interface RunningSipledger {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly configFile: string;
  /** Bound SIP port (the same number for UDP and TCP when both are configured with port 0 → first UDP). */
  readonly sipPort: number;
  readonly ports: Record<string, number>;
  readonly adminUrl: string | undefined;
  /** Every line the process printed (JSON log lines and others). */
  readonly output: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  kill(): Promise<void>;
  /** Resolves the first log line (parsed) satisfying the predicate. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export interface StartOptions {
  /** A directory to reuse (restart tests); a new temp dir when absent. */
  readonly dir?: string;
  /** Extra environment variables. */
  readonly env?: Record<string, string>;
  readonly timeoutMs?: number;
}

/** A free UDP+TCP port on 127.0.0.1, found by binding both. */
/** Writes `config` (an object; paths relative to the temp dir) and starts sipledger with it. */
export async function startSipledger(config: Record<string, unknown>, opts: StartOptions = {}): Promise<RunningSipledger> {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'sipledger-test-'));
  const configFile = path.join(dir, 'sipledger.yaml');
  writeFileSync(configFile, YAML.stringify(config));
  const child = spawn(process.execPath, [BIN, 'start', '-c', configFile], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const onData = (buf: Buffer): void => {
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line) continue;
      output.push(line);
      for (const l of listeners) l(line);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (line: string): boolean => {
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          if (pred(obj)) {
            resolve(obj);
            return true;
          }
        } catch {
          /* not JSON */
        }
        return false;
      };
      for (const l of output) if (check(l)) return;
      const timer = setTimeout(() => {
        listeners.delete(listener);
        reject(new Error(`timed out waiting for a log line; output so far:\n${output.slice(-20).join('\n')}`));
      }, timeoutMs);
      const listener = (line: string): void => {
        if (check(line)) {
          clearTimeout(timer);
          listeners.delete(listener);
        }
      };
      listeners.add(listener);
      void exited.then((code) => {
        if (listeners.has(listener)) {
          clearTimeout(timer);
          listeners.delete(listener);
          reject(new Error(`sipledger exited (${code}) before the expected log line:\n${output.slice(-20).join('\n')}`));
        }
      });
    });

  const started = await waitForLog((l) => l['msg'] === 'sipledger started', opts.timeoutMs ?? 20_000);
  const ports: Record<string, number> = {};
  for (const spec of started['listen'] as string[]) {
    const [transport, ...rest] = spec.split(':');
    ports[transport!] ??= Number(rest[rest.length - 1]);
  }
  const sipPort = ports['udp'] ?? ports['tcp'] ?? ports['tls']!;
  return {
    child,
    dir,
    configFile,
    sipPort,
    ports,
    adminUrl: started['admin'] as string | undefined,
    output,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A configuration with one domain, in-memory users and a file log in the test directory. */
export function baseConfig(overrides: Record<string, unknown> = {}, port = 0): Record<string, unknown> {
  return {
    listen: [
      { transport: 'udp', address: '127.0.0.1', port },
      { transport: 'tcp', address: '127.0.0.1', port },
    ],
    domains: [{ domain: 'example.com', backend: 'local' }],
    backends: {
      local: {
        type: 'memory',
        users: [
          { username: 'alice', password: 'alice-secret' },
          { username: 'bob', password: 'bob-secret' },
          { username: 'carol', password: 'carol-secret' },
          { username: 'dave', password: 'dave-secret' },
        ],
      },
    },
    auth: { secret: 'test-secret-0123456789abcdef', nonceLifetime: 30 },
    log: { type: 'file', dir: './data/log', fsync: 'batch' },
    admin: { address: '127.0.0.1', port: 0 },
    logging: { level: 'info' },
    // The warm-up runs in every test start, shorter than the default (5,000 and 1,000) to keep the suite quick.
    warmUp: { registrations: 500, calls: 100 },
    ...overrides,
  };
}

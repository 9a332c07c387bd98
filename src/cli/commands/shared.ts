import path from 'node:path';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { pino, type Logger } from 'pino';
import { ConfigError, configFromObject, loadConfig, packageRoot, type ConfigProblem, type SipledgerConfig } from '../../config/config.js';
import { UsageError } from '../args.js';
import { LogDirError } from '../log-reader.js';
import { isLoopback } from '../../admin/server.js';

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
/** The command ran and failed: a refused change, a damaged log, an unreachable database. */
export const EXIT_FAILURE = 1;
/** The command line or the configuration is wrong; nothing was done. */
export const EXIT_USAGE = 2;

/**
 * The configuration named by -c, or the embedded quick-start configuration with its data
 * directory under the current directory.
 */
export function configFor(file: string | undefined): SipledgerConfig {
  if (file) return loadConfig(file);
  const embedded = path.join(packageRoot(), 'examples', 'quickstart.yaml');
  return configFromObject(YAML.parse(readFileSync(embedded, 'utf8')), embedded, process.cwd());
}

/** Prints a configuration error the way every command does, and returns exit code 2. */
export function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    return EXIT_USAGE;
  }
  throw err;
}

/** A failure a command reports in one line and exit code 1 (not a bug: no stack trace). */
export class CommandFailure extends Error {
  readonly code = 'COMMAND_FAILED';
  readonly retriable = false;
}

/**
 * Runs a command body and turns the errors every command can meet into a message and an exit
 * code: usage and configuration errors 2, operational failures 1.
 */
export async function guard(command: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sipledger ${command}: ${err.message}\nRun 'sipledger ${command} --help' for usage.\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof CommandFailure || err instanceof LogDirError) {
      process.stderr.write(`sipledger ${command}: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    const e = err as { message?: string; code?: unknown };
    process.stderr.write(`sipledger ${command}: ${e.message ?? String(err)}${typeof e.code === 'string' ? ` (${e.code})` : ''}\n`);
    return EXIT_FAILURE;
  }
}

/** A logger for the tools: warnings and errors on stderr, as JSON like the server's. */
export function toolLogger(level = 'warn'): Logger {
  return pino({ level, base: { name: 'sipledger' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/**
 * A point in time given on the command line: an ISO date, epoch milliseconds, a time of day today
 * (`14:03`, local time), or a duration ago (`90s`, `15m`, `1h`, `2d`).
 */
export function parseTime(text: string, now: number, option: string): number {
  const t = text.trim();
  const ago = /^(\d+)\s*(s|m|h|d)$/.exec(t);
  if (ago) return now - Number(ago[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd'];
  if (/^\d{10,}$/.test(t)) return Number(t);
  // A time of day: today, local time ("where was alice at 14:03?").
  const clock = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(t);
  if (clock && Number(clock[1]) < 24 && Number(clock[2]) < 60 && Number(clock[3] ?? 0) < 60) {
    const d = new Date(now);
    d.setHours(Number(clock[1]), Number(clock[2]), Number(clock[3] ?? 0), 0);
    return d.getTime();
  }
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) throw new UsageError(`${option}: '${text}' is neither a date (2024-05-01T14:03:00Z), a time today (14:03), epoch milliseconds, nor a duration (15m, 1h, 2d)`);
  return ms;
}

/** A positive integer option. */
export function parseCount(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} must be a whole number, not '${text}'`);
  return Number(text);
}

/** Left-aligned columns, two spaces apart, with a header row. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function out(text: string): void {
  process.stdout.write(text);
}

/**
 * Checks that need the whole configuration and that the schema cannot express, made before any
 * socket opens (start) and by `config check`.
 */
export function operationalProblems(config: SipledgerConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (config.admin.enabled && !isLoopback(config.admin.address) && config.admin.token === undefined) {
    problems.push({ path: 'admin.token', message: `required when the admin API listens on ${config.admin.address} (not loopback)` });
  }
  for (const [name, b] of Object.entries(config.backends)) {
    if (b.type === 'memory' && b.usersFile !== undefined) {
      const file = path.resolve(config.baseDir, b.usersFile);
      try {
        const doc = YAML.parse(readFileSync(file, 'utf8')) as unknown;
        const users = (doc as { users?: unknown } | null)?.users;
        if (doc !== null && (typeof doc !== 'object' || (users !== undefined && !Array.isArray(users)))) {
          problems.push({ path: `backends.${name}.usersFile`, message: `${file}: expected a mapping with a 'users:' list` });
        }
      } catch (err) {
        problems.push({ path: `backends.${name}.usersFile`, message: `${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split('\n')[0]}` });
      }
    }
  }
  return problems;
}

/** Throws ConfigError listing the operational problems, if any. */
export function checkOperational(config: SipledgerConfig, file: string): void {
  const problems = operationalProblems(config);
  if (problems.length) throw new ConfigError(file, problems);
}

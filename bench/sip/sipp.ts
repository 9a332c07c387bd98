/**
 * Runs one SIPp client scenario to completion and reads what it measured: calls created, succeeded
 * and failed, retransmissions, and every response-time distribution (RTD) sample from -trace_rtt.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { percentile, startChild, type Child } from './procs.js';
import { HERE } from './systems.js';

export const SCENARIOS = path.join(HERE, 'scenarios');

export interface SippResult {
  readonly created: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly retransmissions: number;
  readonly wallSeconds: number;
  readonly exitCode: number | null;
  /** RTD name -> sorted samples in ms. */
  readonly rtd: Record<string, number[]>;
  readonly output: string[];
}

export interface SippRun {
  readonly sipp: string;
  readonly scenario: string;
  readonly target: { host: string; port: number };
  readonly localPort: number;
  readonly inf: string;
  readonly rate: number;
  readonly calls: number;
  readonly dir: string;
  readonly keys?: Record<string, string>;
  /** Hard stop, seconds. */
  readonly timeoutSeconds: number;
  readonly extra?: string[];
}

export async function runSipp(run: SippRun): Promise<SippResult> {
  mkdirSync(run.dir, { recursive: true });
  const stat = path.join(run.dir, 'stat.csv');
  const args = [
    `${run.target.host}:${run.target.port}`,
    '-sf', path.join(SCENARIOS, run.scenario),
    '-inf', run.inf,
    '-i', '127.0.0.1',
    '-p', String(run.localPort),
    '-r', String(run.rate),
    '-m', String(run.calls),
    '-nostdin',
    '-trace_stat', '-stf', stat, '-fd', '1',
    '-trace_rtt', '-rtt_freq', '1',
    '-timeout', `${run.timeoutSeconds}s`,
    '-timeout_error',
  ];
  for (const [k, v] of Object.entries(run.keys ?? {})) args.push('-key', k, v);
  args.push(...(run.extra ?? []));
  const started = Date.now();
  const child = startChild(run.sipp, args, { cwd: run.dir });
  const exitCode = await child.exited;
  const wallSeconds = (Date.now() - started) / 1000;
  const last = lastStat(stat);
  const rtd: Record<string, number[]> = {};
  for (const f of readdirSync(run.dir)) {
    if (!f.endsWith('_rtt.csv')) continue;
    for (const line of readFileSync(path.join(run.dir, f), 'utf8').split('\n')) {
      // Date_ms;response_time_ms;rtd_no
      const parts = line.split(';');
      if (parts.length < 3) continue;
      const ms = Number(parts[1]);
      const name = parts[2]!.trim();
      if (!Number.isFinite(ms) || !name || name === 'rtd_no') continue;
      (rtd[name] ??= []).push(ms);
    }
  }
  for (const k of Object.keys(rtd)) rtd[k]!.sort((a, b) => a - b);
  return {
    created: last['TotalCallCreated'] ?? 0,
    succeeded: last['SuccessfulCall(C)'] ?? 0,
    failed: last['FailedCall(C)'] ?? 0,
    retransmissions: last['Retransmissions(C)'] ?? 0,
    wallSeconds,
    exitCode,
    rtd,
    output: child.output,
  };
}

/** Starts the callee UAS (uas.xml) and leaves it running. */
export function startUas(sipp: string, port: number, dir: string): Child {
  mkdirSync(dir, { recursive: true });
  return startChild(sipp, ['-sf', path.join(SCENARIOS, 'uas.xml'), '-i', '127.0.0.1', '-p', String(port), '-t', 'u1', '-nostdin'], { cwd: dir });
}

function lastStat(file: string): Record<string, number> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return {};
  }
  const lines = text.split('\n').filter((l) => l.trim());
  if (lines.length < 2) return {};
  const head = lines[0]!.split(';');
  const row = lines[lines.length - 1]!.split(';');
  const out: Record<string, number> = {};
  head.forEach((h, i) => {
    const n = Number(row[i]);
    if (h && Number.isFinite(n)) out[h] = n;
  });
  return out;
}

export function p(samples: readonly number[] | undefined, q: number): number {
  return samples && samples.length ? percentile(samples, q) : NaN;
}

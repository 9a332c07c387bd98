/**
 * `npm run bench`: sipledger's micro-benchmarks, one after the other, each in its own process (so
 * that one's heap and JIT state do not colour the next). The side-by-side SIP benchmark against
 * Kamailio is separate: `npm run bench:sip`.
 *
 *   node --import tsx bench/run.ts [--only sip,log,register-path,...] [--skip radius,...]
 *
 * Benchmarks that need a service (MySQL on 127.0.0.1:3306, FreeRADIUS) report their own failure and
 * the others still run; the exit code is non-zero when any failed.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Bench {
  readonly name: string;
  readonly file: string;
  readonly args?: string[];
  readonly nodeArgs?: string[];
  readonly what: string;
}

const BENCHES: Bench[] = [
  { name: 'sip', file: 'sip-bench.ts', what: 'SIP message layer: parse, change, serialise' },
  { name: 'register-path', file: 'register-path-bench.ts', what: 'REGISTER hot path in one process: CPU per registration' },
  { name: 'memory', file: 'register-path-bench.ts', args: ['--memory'], nodeArgs: ['--expose-gc'], what: 'bytes per live registration and per transaction in flight, 100k contacts' },
  { name: 'worker-offload', file: 'worker-offload-bench.ts', what: 'nonce and digest crypto against a worker-thread round trip' },
  { name: 'log', file: 'log-bench.ts', what: 'event log: append, rebuild, start-to-lookup, memory per contact' },
  { name: 'snapshot', file: 'snapshot-stall-bench.ts', what: 'how long a ledger snapshot of 100k bindings holds the event loop' },
  { name: 'mysql', file: 'mysql-bench.ts', what: 'MySQL credential store lookups (needs MariaDB on 127.0.0.1:3306)' },
  { name: 'radius', file: 'radius-bench.ts', what: 'RADIUS verifier against FreeRADIUS' },
];

const { values } = parseArgs({ options: { only: { type: 'string' }, skip: { type: 'string' } } });
const only = values.only?.split(',').map((s) => s.trim());
const skip = new Set(values.skip?.split(',').map((s) => s.trim()) ?? []);
const unknown = [...(only ?? []), ...skip].filter((n) => !BENCHES.some((b) => b.name === n));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(2);
}

const failed: string[] = [];
for (const b of BENCHES) {
  if ((only && !only.includes(b.name)) || skip.has(b.name)) continue;
  console.log(`\n=== ${b.name}: ${b.what}`);
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [...(b.nodeArgs ?? []), '--import', 'tsx', path.join(here, b.file), ...(b.args ?? [])], { stdio: 'inherit' });
    child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) failed.push(`${b.name} (exit ${code})`);
}
if (failed.length) {
  console.error(`\nfailed: ${failed.join(', ')}`);
  process.exit(1);
}

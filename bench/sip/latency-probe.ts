/**
 * Where a registration's response time goes: SIPp's register-auth scenario at a few fixed rates,
 * interleaved over rounds, printing the challenge, auth and whole-registration response-time
 * percentiles per run and the median p99 per system and rate at the end. Systems: sipledger with
 * the file log at an fsync mode (`batch`, `none`, `always`), sipledger variants with their own
 * node arguments in place of the service's NODE_OPTIONS (`--node-options LABEL=ARGS`, file log at batch), Kamailio (`kam1`, `kam0`).
 * Every system first registers every user at --warm-rate for --warm-seconds (a cold Node process
 * runs its first seconds many times slower while the JIT settles).
 *
 *   npx tsx bench/sip/latency-probe.ts [--rates 500,1000] [--seconds 10] [--rounds 3]
 *       [--variants batch,kam1] [--node-options small=--max-semi-space-size=16]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPrivateMariadb } from '../../test/support/mariadb.js';
import { findTool } from './procs.js';
import { generateUsers, provisionKamailioSchema } from './provision.js';
import { p, runSipp } from './sipp.js';
import { DEFAULT_BIN, freePort, startKamailioSystem, startSipledgerSystem, type SystemUnderTest } from './systems.js';

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '500,1000' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    variants: { type: 'string', default: 'batch,kam1' },
    'node-options': { type: 'string', multiple: true },
    'warm-rate': { type: 'string', default: '500' },
    'warm-seconds': { type: 'string', default: '20' },
    users: { type: 'string', default: '5000' },
    bin: { type: 'string', default: DEFAULT_BIN },
  },
});
const sipp = findTool('sipp');
const kamailio = findTool('kamailio', ['/usr/sbin/kamailio']);
if (!sipp) throw new Error('needs sipp (apt-get install sip-tester)');
const workDir = mkdtempSync(path.join(tmpdir(), 'sipledger-latency-'));
const db = await startPrivateMariadb();
const systems: SystemUnderTest[] = [];
const p99s = new Map<string, number[]>();
let n = 0;
/** Collections per run, from --trace-gc output when a variant passes that flag. */
const GC_LINE = /(Scavenge|Mark-Compact|Mark-Sweep)[^\n]*?-> ([\d.]+) \([\d.]+\) MB, ([\d.]+) \/ [\d.]+ ms/g;
const gc = new Map<string, { scavenges: number; majors: number; pauseMs: number; longestMs: number; heapMb: number }>();
function watchGc(sys: SystemUnderTest): void {
  const seen = { scavenges: 0, majors: 0, pauseMs: 0, longestMs: 0, heapMb: 0 };
  gc.set(sys.name, seen);
  sys.child.proc.stdout?.on('data', (buf: Buffer) => {
    if (process.env['PROBE_GC_LINES']) for (const l of buf.toString('latin1').split('\n')) if (/Mark|Scav/.test(l)) console.log(`    ${sys.name}: ${l.trim()}`);
    for (const m of buf.toString('latin1').matchAll(GC_LINE)) {
      if (m[1] === 'Scavenge') seen.scavenges++;
      else seen.majors++;
      const ms = Number(m[3]);
      seen.pauseMs += ms;
      seen.longestMs = Math.max(seen.longestMs, ms);
      seen.heapMb = Number(m[2]);
    }
  });
}
const files = generateUsers(path.join(workDir, 'data'), Number(args.users), 10);

async function run(sys: SystemUnderTest, rate: number, seconds: number, report: boolean): Promise<void> {
  const calls = Math.round(rate * seconds);
  const r = await runSipp({
    sipp: sipp!,
    scenario: 'register-auth.xml',
    target: { host: '127.0.0.1', port: sys.port },
    localPort: await freePort(),
    inf: files.regUsers,
    rate,
    calls,
    dir: path.join(workDir, 'runs', String(++n)),
    keys: { contact_hostport: '127.0.0.1:5099' },
    timeoutSeconds: 60 + seconds * 2,
    extra: ['-max_retrans', '5'],
  });
  const q = (k: string): string => ['50', '90', '99'].map((x) => p(r.rtd[k], Number(x))).join('/');
  console.log(
    `${report ? '' : 'warm-up '}${sys.name.padEnd(10)} ${String(rate).padStart(5)}/s ok ${r.succeeded}/${calls} retrans ${r.retransmissions}  challenge ${q('challenge')}  auth ${q('auth')}  register ${q('register')} ms (p50/p90/p99)`,
  );
  const g = gc.get(sys.name);
  if (g && g.scavenges + g.majors > 0) {
    console.log(
      `    gc: ${g.scavenges} scavenges, ${g.majors} mark-compacts, pause ${g.pauseMs.toFixed(0)} ms in all, longest ${g.longestMs.toFixed(1)} ms, heap after ${g.heapMb} MB`,
    );
    Object.assign(g, { scavenges: 0, majors: 0, pauseMs: 0, longestMs: 0 });
  }
  if (report) {
    const key = `${sys.name} ${rate}/s`;
    p99s.set(key, [...(p99s.get(key) ?? []), p(r.rtd['register'], 99)]);
  }
}

try {
  await provisionKamailioSchema(db.port, files.users);
  for (const v of args.variants!.split(',').filter(Boolean)) {
    if (v === 'kam1' || v === 'kam0') {
      if (!kamailio) continue;
      systems.push(await startKamailioSystem({ workDir, kamailio, dbPort: db.port, dbMode: v === 'kam1' ? 1 : 0, workers: 4, shmMb: 256 }));
    } else {
      systems.push(
        await startSipledgerSystem({ workDir, bin: args.bin!, dbPort: db.port, name: v, configOverrides: { log: { type: 'file', dir: './log', fsync: v } } }),
      );
    }
  }
  for (const spec of args['node-options'] ?? []) {
    const label = spec.slice(0, spec.indexOf('='));
    // Given as node's own arguments (some V8 flags are refused in NODE_OPTIONS), instead of the service's NODE_OPTIONS.
    const nodeArgs = spec.slice(label.length + 1).split(' ').filter(Boolean);
    systems.push(await startSipledgerSystem({ workDir, bin: args.bin!, dbPort: db.port, name: label, nodeArgs, env: { NODE_OPTIONS: '' } }));
  }
  for (const sys of systems) watchGc(sys);
  for (const sys of systems) await run(sys, Number(args['warm-rate']), Number(args['warm-seconds']), false);
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const rate of args.rates!.split(',').map(Number)) {
      for (const sys of systems) await run(sys, rate, Number(args.seconds), true);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log('\nregistration p99 ms per round, and median:');
  for (const [key, xs] of p99s) console.log(`  ${key.padEnd(20)} ${xs.join(' ').padEnd(30)} median ${median(xs)}`);
} finally {
  for (const s of systems) await s.stop();
  await db.stop();
  rmSync(workDir, { recursive: true, force: true });
}

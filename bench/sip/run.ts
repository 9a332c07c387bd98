/**
 * Side-by-side SIP benchmark: sipledger against Kamailio 5.6 on this machine, in the same run.
 *
 *   npm run bench:sip -- [--quick] [--rounds 3] [--users 10000] [--systems sipledger,sipledger-cache,sipledger-io,sipledger-main,kam-db0,kam-db1,kam-db3]
 *                        [--fixed-seconds 15] [--step-seconds 10] [--warm-seconds 35] [--settle-seconds 35] [--reg-rate 500] [--call-rate 150]
 *                        [--reg-ladder 250,500,750,...] [--call-ladder 100,200,300,...] [--no-calls] [--no-reg]
 *                        (an empty ladder, e.g. --reg-ladder '', leaves that ladder out)
 *                        [--no-ladder] [--bin dist/src/cli/main.js] [--ab LABEL=PATH/main.js ...] [--ab-io-thread | --ab-main-thread] [--node-arg=--cpu-prof] [--workers 4]
 *                        [--keep] [--json FILE]
 *
 * Defaults: sipledger, kam-db0 and kam-db1; 3 rounds, 15 s fixed-rate runs, 10 s ladder steps,
 * 35 s of warm-up registrations per system (--quick: 1 round, 6 s, 4 s, 10 s: about 5 minutes).
 *
 * What it does:
 *  1. a private MariaDB (own datadir, free loopback port) with the Kamailio schema and N generated
 *     subscribers (plain password for Kamailio's reference config, HA1 for sipledger);
 *  2. sipledger (the built binary, MySQL backend on that subscriber table, file log fsync=batch) and
 *     Kamailio with the reference configuration in usrloc db_mode 0 (memory) and db_mode 1
 *     (write-through), each on its own loopback port; a SIPp UAS for the callees;
 *  3. a warm-up per system: callee registrations, then registrations at 500/s for --warm-seconds and
 *     a few seconds of calls. 35 s reaches the steady state: a cold Node process runs its first
 *     seconds several times slower while the JIT settles, and a completed transaction is kept 32 s
 *     (timer J), so the heap grows for 32 s before old objects start to die (Kamailio's shared
 *     memory fills the same way);
 *  4. per round, systems interleaved (A B C A B C):
 *     - fixed rate: authenticated REGISTER at --reg-rate and authenticated calls at --call-rate;
 *       server CPU (utime+stime of the whole process tree, /proc/PID/stat) and MariaDB CPU per
 *       registration or call, response-time percentiles from SIPp's RTDs;
 *     - ladder: increasing rates, each step --step-seconds long, every system at each step before
 *       the next step; a system's figure is the highest rate with 0 failed calls, no retransmission
 *       blow-up (retransmissions <= 5% of calls) and SIPp keeping the rate;
 *     - p99 at half of Kamailio db_mode 1's ladder figure (the persistent opponent), after
 *       --settle-seconds at that rate (35 s) to leave the ladder's overload behind, and at half of
 *       db_mode 0's, every system at that same rate;
 *  5. medians over rounds and ratios (sipledger / Kamailio).
 *
 * Figures move by +-30% between runs on a shared machine: compare systems within one run. To compare
 * two builds of sipledger, give each with --ab (e.g. --ab base=/tmp/base/dist/src/cli/main.js
 * --ab new=dist/src/cli/main.js --systems ''): each runs as system sipledger-LABEL (with its UDP listener
 * on an I/O thread under --ab-io-thread, on the main thread under --ab-main-thread, as the build's
 * default otherwise), interleaved with the others like any system.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPrivateMariadb, type PrivateMariadb } from '../../test/support/mariadb.js';
import { cpuSecondsBetween, findTool, median, sleep, treeTicks, type Child } from './procs.js';
import { generateUsers, provisionKamailioSchema, type UserFiles } from './provision.js';
import { p, runSipp, startUas, type SippResult } from './sipp.js';
import { DEFAULT_BIN, freePort, startKamailioSystem, startSipledgerSystem, type SystemUnderTest } from './systems.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    users: { type: 'string', default: '10000' },
    callees: { type: 'string', default: '1000' },
    systems: { type: 'string', default: 'sipledger,kam-db0,kam-db1' },
    'fixed-seconds': { type: 'string' },
    'step-seconds': { type: 'string' },
    'warm-seconds': { type: 'string' },
    'settle-seconds': { type: 'string' },
    'reg-rate': { type: 'string', default: '500' },
    'call-rate': { type: 'string', default: '150' },
    'reg-ladder': { type: 'string', default: '250,500,750,1000,1500,2000,2500,3000,4000,5000,6500,8000,10000' },
    'call-ladder': { type: 'string', default: '100,200,300,450,600,900,1200,1500,1800,2400' },
    'no-calls': { type: 'boolean', default: false },
    'no-reg': { type: 'boolean', default: false },
    'no-ladder': { type: 'boolean', default: false },
    bin: { type: 'string', default: DEFAULT_BIN },
    ab: { type: 'string', multiple: true },
    'ab-io-thread': { type: 'boolean', default: false },
    'ab-main-thread': { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true },
    workers: { type: 'string', default: '4' },
    keep: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help) {
  const text = (await import('node:fs')).readFileSync(new URL(import.meta.url), 'utf8');
  process.stdout.write(/\/\*\*([\s\S]*?)\*\//.exec(text)![1]!.replace(/^ \* ?/gm, '') + '\n');
  process.exit(0);
}

const quick = args.quick;
const rounds = Number(args.rounds ?? (quick ? 1 : 3));
const fixedSeconds = Number(args['fixed-seconds'] ?? (quick ? 6 : 15));
const stepSeconds = Number(args['step-seconds'] ?? (quick ? 4 : 10));
const warmSeconds = Number(args['warm-seconds'] ?? (quick ? 10 : 35));
const settleSeconds = Number(args['settle-seconds'] ?? (quick ? 5 : 35));
const regRate = Number(args['reg-rate']);
const callRate = Number(args['call-rate']);
// An empty ladder ('') leaves that ladder out (e.g. a call ladder alone with --reg-ladder '').
const ladderOf = (spec: string): number[] => spec.split(',').filter((r) => r.trim() !== '').map(Number);
const regLadder = ladderOf(args['reg-ladder']!);
const callLadder = ladderOf(args['call-ladder']!);
for (const rate of [...regLadder, ...callLadder]) {
  if (!Number.isFinite(rate) || rate <= 0) {
    console.error(`--reg-ladder / --call-ladder: ${rate} is not a rate (comma-separated positive numbers)`);
    process.exit(2);
  }
}
const wanted = args.systems!.split(',').map((s) => s.trim()).filter((s) => s !== '');
/** Extra sipledger builds, each its own system (--ab LABEL=PATH). */
const builds = new Map<string, string>();
for (const spec of args.ab ?? []) {
  const m = /^([A-Za-z0-9_-]+)=(.+)$/.exec(spec);
  if (!m) {
    console.error(`--ab ${spec}: expected LABEL=PATH/main.js (label of letters, digits, - or _)`);
    process.exit(2);
  }
  if (!existsSync(m[2]!)) {
    console.error(`--ab ${spec}: ${m[2]} does not exist`);
    process.exit(2);
  }
  builds.set(`sipledger-${m[1]}`, m[2]!);
  wanted.push(`sipledger-${m[1]}`);
}
const withCalls = !args['no-calls'];
const withLadder = !args['no-ladder'];

// ---- what is installed ----------------------------------------------------------------------------
const sipp = findTool('sipp');
const kamailio = findTool('kamailio', ['/usr/sbin/kamailio']);
const mariadbd = findTool('mariadbd', ['/usr/sbin/mariadbd']);
const kamMysql = ['/usr/lib/x86_64-linux-gnu/kamailio/modules/db_mysql.so', '/usr/lib/kamailio/modules/db_mysql.so', '/usr/local/lib64/kamailio/modules/db_mysql.so'].some((f) => existsSync(f));
if (!sipp) {
  console.error('SIPp is not installed: it drives every scenario. Install it with\n  sudo apt-get install sip-tester   (Debian/Ubuntu; the binary is sipp)');
  process.exit(2);
}
if (!mariadbd || !findTool('mariadb-install-db')) {
  console.error('MariaDB is not installed: the benchmark runs a private server for the subscriber table. Install it with\n  sudo apt-get install mariadb-server');
  process.exit(2);
}
if (!existsSync(args.bin!)) {
  console.error(`sipledger is not built (${args.bin} missing). Run\n  npm run build`);
  process.exit(2);
}
let systems = wanted;
if (!kamailio || !kamMysql) {
  console.error(
    `Kamailio${kamailio ? "'s MySQL module" : ''} is not installed: running sipledger alone, without the comparison. Install it with\n` +
      '  sudo apt-get install kamailio kamailio-mysql-modules',
  );
  systems = systems.filter((s) => s.startsWith('sipledger'));
}

// ---- set-up ----------------------------------------------------------------------------------------
const workDir = mkdtempSync(path.join(tmpdir(), 'sipledger-sipbench-'));
const log = (msg: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
const startedAt = Date.now();
let db: PrivateMariadb | undefined;
let uas: Child | undefined;
const running: SystemUnderTest[] = [];
let runCounter = 0;
/** Where load users' bindings point; nothing is ever sent there. */
const LOAD_CONTACT = '127.0.0.1:5099';

interface Measure {
  readonly system: string;
  readonly round: number;
  readonly phase: string;
  readonly rate: number;
  readonly result: SippResult;
  readonly serverCpu: number;
  readonly dbCpu: number;
  readonly passed: boolean;
}
const measures: Measure[] = [];

async function measure(sys: SystemUnderTest, files: UserFiles, kind: 'register' | 'call', rate: number, seconds: number, phase: string, round: number): Promise<Measure> {
  const localPort = await freePort();
  const calls = Math.max(1, Math.round(rate * seconds));
  const dir = path.join(workDir, 'runs', `${String(++runCounter).padStart(4, '0')}-${sys.name}-${phase}-${rate}`);
  const cpu0 = treeTicks(sys.pid);
  const db0 = treeTicks(db!.pid!);
  const result = await runSipp({
    sipp: sipp!,
    scenario: kind === 'register' ? 'register-auth.xml' : 'call-auth.xml',
    target: { host: '127.0.0.1', port: sys.port },
    localPort,
    inf: kind === 'register' ? files.regUsers : files.calls,
    rate,
    calls,
    dir,
    // One contact per user for the whole run: each registration refreshes its binding, as a phone's
    // re-registration does, instead of adding one per SIPp run (sipledger caps contacts per AOR at 10).
    ...(kind === 'register' ? { keys: { contact_hostport: LOAD_CONTACT } } : {}),
    timeoutSeconds: Math.ceil(seconds * 2 + 30),
    // Up to 3 * rate calls in flight before SIPp holds back new ones (its default): keep it.
    extra: ['-max_retrans', '5'],
  });
  const serverCpu = cpuSecondsBetween(cpu0, treeTicks(sys.pid));
  const dbCpu = cpuSecondsBetween(db0, treeTicks(db!.pid!));
  // SIPp kept the rate when the run did not stretch (the last calls' own duration and SIPp's
  // start-up allowed for); a server that is too slow shows up as failures or retransmissions.
  const keptRate = result.wallSeconds <= seconds * 1.15 + 4;
  const passed = result.failed === 0 && result.succeeded === calls && result.retransmissions <= 0.05 * calls && keptRate;
  const m: Measure = { system: sys.name, round, phase, rate, result, serverCpu, dbCpu, passed };
  measures.push(m);
  const rtdName = kind === 'register' ? 'register' : 'call_setup';
  log(
    `${phase.padEnd(14)} ${sys.name.padEnd(9)} ${String(rate).padStart(6)}/s  ok ${result.succeeded}/${calls} failed ${result.failed} retrans ${result.retransmissions}` +
      `  cpu ${((serverCpu / Math.max(1, result.succeeded)) * 1000).toFixed(3)} ms (db ${((dbCpu / Math.max(1, result.succeeded)) * 1000).toFixed(3)} ms)` +
      `  p50 ${p(result.rtd[rtdName], 50)} p99 ${p(result.rtd[rtdName], 99)} ms  wall ${result.wallSeconds.toFixed(1)}s${passed ? '' : '  FAIL'}`,
  );
  if (!passed) await sleep(3000); // let retransmissions and queues drain before the next step
  return m;
}

try {
  log(`work dir ${workDir}; systems ${systems.join(', ')}; rounds ${rounds}; fixed ${fixedSeconds}s; ladder steps ${stepSeconds}s`);
  db = await startPrivateMariadb();
  log(`private MariaDB pid ${db.pid} port ${db.port}`);
  const files = generateUsers(path.join(workDir, 'data'), Number(args.users), Number(args.callees));
  await provisionKamailioSchema(db.port, files.users);
  log(`${files.users.length} subscribers provisioned`);

  for (const name of systems) {
    const build = builds.get(name);
    if (build !== undefined) {
      running.push(
        await startSipledgerSystem({ workDir, bin: build, dbPort: db.port, nodeArgs: args['node-arg'] ?? [], name, ...(args['ab-io-thread'] ? { ioThread: true } : args['ab-main-thread'] ? { ioThread: false } : {}) }),
      );
    } else if (name === 'sipledger' || name === 'sipledger-cache' || name === 'sipledger-io' || name === 'sipledger-main') {
      // sipledger-cache: the MySQL backend's positive credential cache on (cacheTtlMs 60 s); Kamailio's
      // reference config has none, so the plain variant is the like-for-like one. sipledger-io and
      // sipledger-main: the UDP listener's datagrams received and sent on an I/O thread, or on the
      // main thread (listen[].ioThread true or false; sipledger itself runs with the default, the
      // main thread).
      running.push(
        await startSipledgerSystem({
          workDir,
          bin: args.bin!,
          dbPort: db.port,
          nodeArgs: args['node-arg'] ?? [],
          name,
          ...(name === 'sipledger-cache' ? { cacheTtlMs: 60_000 } : {}),
          ...(name === 'sipledger-io' ? { ioThread: true } : name === 'sipledger-main' ? { ioThread: false } : {}),
        }),
      );
    } else {
      const m = /^kam-db([013])$/.exec(name);
      if (!m) throw new Error(`unknown system ${name} (sipledger, sipledger-cache, sipledger-io, sipledger-main, kam-db0, kam-db1, kam-db3)`);
      running.push(await startKamailioSystem({ workDir, kamailio: kamailio!, dbPort: db.port, dbMode: Number(m[1]) as 0 | 1 | 3, workers: Number(args.workers), shmMb: 256 }));
    }
    log(`${running[running.length - 1]!.description} on 127.0.0.1:${running[running.length - 1]!.port}`);
  }

  // Callees point at one SIPp UAS; warm-up lets JITs, pools and caches settle before anything counts.
  const uasPort = await freePort();
  uas = startUas(sipp, uasPort, path.join(workDir, 'uas'));
  await sleep(500);
  for (const sys of running) {
    const dir = path.join(workDir, 'runs', `warm-${sys.name}`);
    const callees = await runSipp({
      sipp, scenario: 'register-auth.xml', target: { host: '127.0.0.1', port: sys.port }, localPort: await freePort(),
      inf: files.callees, rate: 500, calls: Number(args.callees), dir: dir + '-callees', keys: { contact_hostport: `127.0.0.1:${uasPort}` }, timeoutSeconds: 60,
    });
    if (callees.succeeded !== Number(args.callees)) throw new Error(`${sys.name}: callee registration failed (${callees.succeeded}/${args.callees}):\n${callees.output.slice(-15).join('\n')}`);
    await measure(sys, files, 'register', 500, warmSeconds, 'warm-up', 0);
    if (withCalls) await measure(sys, files, 'call', 200, 3, 'warm-up', 0);
  }

  for (let round = 1; round <= rounds; round++) {
    log(`---- round ${round}/${rounds}`);
    if (!args['no-reg']) for (const sys of running) await measure(sys, files, 'register', regRate, fixedSeconds, 'fixed-reg', round);
    if (withCalls) for (const sys of running) await measure(sys, files, 'call', callRate, fixedSeconds, 'fixed-call', round);
    if (withLadder) {
      for (const [kind, ladder] of [['register', regLadder], ...(withCalls ? [['call', callLadder]] : [])] as Array<['register' | 'call', number[]]>) {
        const climbing = new Set(running.map((s) => s.name));
        for (const rate of ladder) {
          if (climbing.size === 0) break;
          for (const sys of running) {
            if (!climbing.has(sys.name)) continue;
            const m = await measure(sys, files, kind, rate, stepSeconds, `ladder-${kind === 'register' ? 'reg' : 'call'}`, round);
            if (!m.passed) climbing.delete(sys.name);
          }
        }
      }
      // p99 at half of Kamailio's highest registration rate of this round, every system at that
      // rate: half of db_mode 1's (the like-for-like opponent), then half of db_mode 0's.
      const done = new Set<number>();
      for (const ref of ['kam-db1', 'kam-db0']) {
        const max = ladderMax(ref, 'ladder-reg', round);
        if (max === undefined) continue;
        const half = Math.round(max / 2);
        if (done.has(half)) continue;
        done.add(half);
        for (const sys of running) {
          // The ladder ends by overloading every system; a Node process then still holds the
          // overload's transactions (kept 32 s) and collects them over the next seconds. Steady
          // state at the rate is what the target compares, so each system first runs at it for
          // --settle-seconds, not counted (db_mode 1's reference; at db_mode 0's both persistent
          // systems are overloaded anyway).
          if (ref === 'kam-db1' && settleSeconds > 0) await measure(sys, files, 'register', half, settleSeconds, `settle-${ref}`, round);
          await measure(sys, files, 'register', half, fixedSeconds, `half-${ref}`, round);
        }
      }
    }
  }
} finally {
  for (const s of running) await s.stop().catch(() => undefined);
  await uas?.stop().catch(() => undefined);
  await db?.destroy().catch(() => undefined);
  if (!args.keep) rmSync(workDir, { recursive: true, force: true });
}

function ladderMax(system: string, phase: string, round: number): number | undefined {
  const steps = measures.filter((m) => m.system === system && m.phase === phase && m.round === round);
  let best: number | undefined;
  for (const m of steps.sort((a, b) => a.rate - b.rate)) {
    if (!m.passed) break;
    best = m.rate;
  }
  return best;
}

// ---- report ------------------------------------------------------------------------------------
const names = running.map((s) => s.name);
const perRound = (fn: (round: number, system: string) => number | undefined): Record<string, number[]> => {
  const out: Record<string, number[]> = {};
  for (const s of names) {
    out[s] = [];
    for (let r = 1; r <= rounds; r++) {
      const v = fn(r, s);
      if (v !== undefined && Number.isFinite(v)) out[s]!.push(v);
    }
  }
  return out;
};
const fixed = (phase: string, fn: (m: Measure) => number) => (round: number, system: string) => {
  const m = measures.find((x) => x.phase === phase && x.round === round && x.system === system);
  return m ? fn(m) : undefined;
};
const perTx = (cpu: (m: Measure) => number) => (m: Measure) => (m.result.succeeded > 0 ? (cpu(m) / m.result.succeeded) * 1000 : NaN);

interface Row {
  readonly metric: string;
  readonly values: Record<string, number[]>;
  readonly better: 'higher' | 'lower';
  readonly digits: number;
}
const rows: Row[] = [
  { metric: `REGISTER ${regRate}/s: server CPU ms per registration`, values: perRound(fixed('fixed-reg', perTx((m) => m.serverCpu))), better: 'lower', digits: 3 },
  { metric: `REGISTER ${regRate}/s: MariaDB CPU ms per registration`, values: perRound(fixed('fixed-reg', perTx((m) => m.dbCpu))), better: 'lower', digits: 3 },
  { metric: `REGISTER ${regRate}/s: server + MariaDB CPU ms per registration`, values: perRound(fixed('fixed-reg', perTx((m) => m.serverCpu + m.dbCpu))), better: 'lower', digits: 3 },
  { metric: `REGISTER ${regRate}/s: p50 ms (challenge + auth)`, values: perRound(fixed('fixed-reg', (m) => p(m.result.rtd['register'], 50))), better: 'lower', digits: 0 },
  { metric: `REGISTER ${regRate}/s: p99 ms (challenge + auth)`, values: perRound(fixed('fixed-reg', (m) => p(m.result.rtd['register'], 99))), better: 'lower', digits: 0 },
];
if (withCalls) {
  rows.push(
    { metric: `calls ${callRate}/s: server CPU ms per call`, values: perRound(fixed('fixed-call', perTx((m) => m.serverCpu))), better: 'lower', digits: 3 },
    { metric: `calls ${callRate}/s: MariaDB CPU ms per call`, values: perRound(fixed('fixed-call', perTx((m) => m.dbCpu))), better: 'lower', digits: 3 },
    { metric: `calls ${callRate}/s: server + MariaDB CPU ms per call`, values: perRound(fixed('fixed-call', perTx((m) => m.serverCpu + m.dbCpu))), better: 'lower', digits: 3 },
    { metric: `calls ${callRate}/s: p99 ms call setup`, values: perRound(fixed('fixed-call', (m) => p(m.result.rtd['call_setup'], 99))), better: 'lower', digits: 0 },
  );
}
if (withLadder) {
  rows.push({ metric: 'REGISTER/s max at 0 failures (ladder)', values: perRound((r, s) => ladderMax(s, 'ladder-reg', r) ?? 0), better: 'higher', digits: 0 });
  if (withCalls) rows.push({ metric: 'call setups/s max at 0 failures (ladder)', values: perRound((r, s) => ladderMax(s, 'ladder-call', r) ?? 0), better: 'higher', digits: 0 });
  for (const ref of ['kam-db1', 'kam-db0']) {
    const halfRates = [...new Set(measures.filter((m) => m.phase === `half-${ref}` && m.system === ref).map((m) => m.rate))];
    if (halfRates.length > 0) {
      rows.push({ metric: `REGISTER at half of ${ref} max (${halfRates.join(', ')}/s by round): p99 ms`, values: perRound(fixed(`half-${ref}`, (m) => p(m.result.rtd['register'], 99))), better: 'lower', digits: 0 });
    }
  }
}

const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');
const kams = names.filter((n) => n.startsWith('kam'));
const ours = names.filter((n) => n.startsWith('sipledger'));
const pairs = ours.flatMap((o) => kams.map((k) => [o, k] as const));
const header = ['metric (median of rounds; per-round values in brackets)', ...names, ...pairs.map(([o, k]) => `${o} / ${k}`)];
const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
for (const row of rows) {
  const cells = names.map((n) => {
    const xs = row.values[n] ?? [];
    return `${fmt(median(xs), row.digits)}${xs.length > 1 ? ` (${xs.map((x) => fmt(x, row.digits)).join(', ')})` : ''}`;
  });
  const ratios = pairs.map(([o, k]) => {
    const a = median(row.values[o] ?? []);
    const b = median(row.values[k] ?? []);
    return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}x` : '-';
  });
  lines.push(`| ${[row.metric, ...cells, ...ratios].join(' | ')} |`);
}
const minutes = ((Date.now() - startedAt) / 60000).toFixed(1);
console.log('');
console.log(`## Side-by-side results (${new Date().toISOString().slice(0, 16)}Z, node ${process.version}, ${rounds} round(s), fixed ${fixedSeconds}s, ladder steps ${stepSeconds}s, ${args.users} subscribers, run took ${minutes} min)`);
console.log('');
console.log(lines.join('\n'));
console.log('');
console.log('Ratios: sipledger / Kamailio; for CPU and latency lower is better, for rates higher is better.');
if (args.json) {
  writeFileSync(
    args.json,
    JSON.stringify(
      { rounds, fixedSeconds, stepSeconds, users: Number(args.users), systems: names, rows, measures: measures.map((m) => ({ ...m, result: { ...m.result, rtd: undefined, output: undefined } })) },
      null,
      2,
    ),
  );
}

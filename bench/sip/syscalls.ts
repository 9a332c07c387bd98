/**
 * System calls, context switches and CPU per authenticated registration, of the real processes at a
 * fixed rate: one or more sipledger builds (A/B) against Kamailio, interleaved per round.
 *
 *   npx tsx bench/sip/syscalls.ts [--bin A=/tmp/wt-a/dist/src/cli/main.js] [--bin B=...]
 *                                    [--kam 1] [--rate 500] [--seconds 10] [--rounds 3] [--users 10000]
 *                                    [--trace] [--no-count] [--keep]
 *
 * Per run (SIPp's register-auth scenario at --rate for --seconds, same injection file for all):
 *  - CPU: utime+stime of the server's process tree (/proc/PID/stat), per registration;
 *  - context switches: voluntary and involuntary, summed over every thread of the tree
 *    (/proc/PID/task/TID/status), per registration;
 *  - system calls: `perf stat` on the syscalls tracepoints of the tree's pids (counted in the kernel,
 *    no measurable overhead), per registration, the main thread apart from the other threads
 *    (--per-thread). Without --no-count the CPU figure comes from the same run; perf stat's in-kernel
 *    counting costs a few percent at most and the same for every system.
 *  - --trace: one extra run per system under `perf trace -s` for the full per-thread table of every
 *    system call (slower, for finding what to count; its CPU is not reported).
 *
 * --env LABEL:KEY=VALUE sets an environment variable for one build (e.g. UV_USE_IO_URING=1).
 * --kam N adds Kamailio usrloc db_mode N (0, 1 or 3; 'none' for no Kamailio). Labels name the
 * sipledger builds in the output; without --bin, the current dist/src/cli/main.js is 'sipledger'.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPrivateMariadb, type PrivateMariadb } from '../../test/support/mariadb.js';
import { CLK_TCK, cpuSecondsBetween, findTool, median, processTree, sleep, treeTicks } from './procs.js';
import { generateUsers, provisionKamailioSchema } from './provision.js';
import { p, runSipp } from './sipp.js';
import { DEFAULT_BIN, freePort, startKamailioSystem, startSipledgerSystem, type SystemUnderTest } from './systems.js';

const { values: args } = parseArgs({
  options: {
    bin: { type: 'string', multiple: true },
    kam: { type: 'string', default: '1' },
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    users: { type: 'string', default: '10000' },
    trace: { type: 'boolean', default: false },
    'no-count': { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true },
    env: { type: 'string', multiple: true },
    keep: { type: 'boolean', default: false },
  },
});

const rate = Number(args.rate);
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const sipp = findTool('sipp');
const kamailio = findTool('kamailio', ['/usr/sbin/kamailio']);
const perf = findTool('perf');
if (!sipp || !perf) throw new Error('needs sipp (sip-tester) and perf (linux-perf)');
const bins = (args.bin ?? [`sipledger=${DEFAULT_BIN}`]).map((b) => {
  const i = b.indexOf('=');
  return i > 0 ? { label: b.slice(0, i), bin: b.slice(i + 1) } : { label: 'sipledger', bin: b };
});
for (const b of bins) if (!existsSync(b.bin)) throw new Error(`${b.bin} missing`);

/** System calls counted one by one; everything is also counted in raw_syscalls:sys_enter. */
const SYSCALLS = [
  'recvmsg', 'recvfrom', 'recvmmsg', 'sendmsg', 'sendto', 'sendmmsg', 'epoll_wait', 'epoll_pwait', 'epoll_ctl',
  'futex', 'read', 'write', 'writev', 'pwritev', 'pwrite64', 'fdatasync', 'poll', 'select', 'ioctl', 'madvise',
  'mprotect', 'mmap', 'munmap', 'getpid', 'clock_gettime', 'getrandom', 'semop', 'semtimedop', 'kill', 'wait4',
];
const TRACEPOINTS = '/sys/kernel/tracing/events/syscalls';
if (!args['no-count'] && !existsSync(TRACEPOINTS)) {
  console.error(`${TRACEPOINTS} is missing: counting system calls needs tracefs (as root: mount -t tracefs nodev /sys/kernel/tracing), or pass --no-count`);
  process.exit(2);
}
const availableTracepoints = new Set(
  args['no-count'] ? [] : readdirSync(TRACEPOINTS).filter((n) => n.startsWith('sys_enter_')).map((n) => n.slice('sys_enter_'.length)),
);
const counted = SYSCALLS.filter((s) => availableTracepoints.has(s));
const EVENTS = ['raw_syscalls:sys_enter', 'context-switches', ...counted.map((s) => `syscalls:sys_enter_${s}`)];

const workDir = mkdtempSync(path.join(tmpdir(), 'sipledger-syscalls-'));
const log = (msg: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
let db: PrivateMariadb | undefined;
const running: SystemUnderTest[] = [];
const LOAD_CONTACT = '127.0.0.1:5099';

/** /proc/PID/task/TID directories of every thread of every process in the tree. */
function treeThreads(root: number): Array<{ tid: number; dir: string }> {
  const out: Array<{ tid: number; dir: string }> = [];
  for (const pid of processTree(root)) {
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) out.push({ tid: Number(tid), dir: `/proc/${pid}/task/${tid}` });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Voluntary and involuntary context switches of every thread of every process in the tree. */
function ctxSwitches(root: number): { vol: number; invol: number } {
  let vol = 0;
  let invol = 0;
  for (const { dir } of treeThreads(root)) {
    try {
      const s = readFileSync(`${dir}/status`, 'utf8');
      vol += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0);
      invol += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return { vol, invol };
}

/** utime and stime in ticks of every thread of the tree, keyed by tid, with the root's own thread marked. */
function threadTicks(root: number): Map<number, { user: number; sys: number; main: boolean }> {
  const out = new Map<number, { user: number; sys: number; main: boolean }>();
  for (const { tid, dir } of treeThreads(root)) {
    try {
      const text = readFileSync(`${dir}/stat`, 'utf8');
      const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { user: Number(rest[11]), sys: Number(rest[12]), main: tid === root });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** CPU ms split into user/system time of the root's thread and of all other threads, between two samples. */
function splitMs(before: ReturnType<typeof threadTicks>, after: ReturnType<typeof threadTicks>): { mainUser: number; mainSys: number; otherUser: number; otherSys: number } {
  const r = { mainUser: 0, mainSys: 0, otherUser: 0, otherSys: 0 };
  for (const [tid, t] of after) {
    const b = before.get(tid) ?? { user: 0, sys: 0 };
    if (t.main) {
      r.mainUser += t.user - b.user;
      r.mainSys += t.sys - b.sys;
    } else {
      r.otherUser += t.user - b.user;
      r.otherSys += t.sys - b.sys;
    }
  }
  const ms = 1000 / CLK_TCK;
  return { mainUser: r.mainUser * ms, mainSys: r.mainSys * ms, otherUser: r.otherUser * ms, otherSys: r.otherSys * ms };
}

interface Counts {
  /** event -> count, summed over threads. */
  readonly all: Map<string, number>;
  /** event -> count on the threads named like the process's main thread (the root pid's tid). */
  readonly main: Map<string, number>;
}

function startPerfStat(root: number, file: string): { stop: () => Promise<Counts> } {
  const pids = processTree(root);
  const child = spawn(perf!, ['stat', '-x', ';', '--per-thread', '-e', EVENTS.join(','), '-p', pids.join(','), '-o', file], { stdio: 'ignore' });
  return {
    stop: async () => {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
      const all = new Map<string, number>();
      const main = new Map<string, number>();
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        // thread;count;unit;event;...   e.g.  node-12345;1234;;raw_syscalls:sys_enter;...
        const f = line.split(';');
        if (f.length < 4) continue;
        const n = Number(f[1]);
        if (!Number.isFinite(n)) continue;
        const ev = f[3]!.replace(/^syscalls:sys_enter_/, '').replace(/^raw_syscalls:sys_enter$/, 'ALL');
        all.set(ev, (all.get(ev) ?? 0) + n);
        const tid = Number(/-(\d+)$/.exec(f[0]!.trim())?.[1]);
        if (tid === root) main.set(ev, (main.get(ev) ?? 0) + n);
      }
      return { all, main };
    },
  };
}

/** Collections seen in each server's --trace-gc output (when that flag is passed with --node-arg). */
const gcSeen = new Map<string, { scavenges: number; majors: number; pauseMs: number; longestMs: number }>();
/** A --trace-gc line's pause: `..., 2.34 / 0.00 ms ` (the main thread's pause, then external time). */
const GC_PAUSE = /(Scavenge|Mark-Compact|Mark-Sweep)[^\n]*?MB, ([\d.]+) \/ [\d.]+ ms/g;
function watchGc(sys: SystemUnderTest): void {
  const seen = { scavenges: 0, majors: 0, pauseMs: 0, longestMs: 0 };
  gcSeen.set(sys.name, seen);
  sys.child.proc.stdout?.on('data', (buf: Buffer) => {
    const text = buf.toString('latin1');
    seen.scavenges += text.split('Scavenge').length - 1;
    seen.majors += text.split('Mark-Compact').length - 1 + text.split('Mark-Sweep').length - 1;
    for (const m of text.matchAll(GC_PAUSE)) {
      const ms = Number(m[2]);
      seen.pauseMs += ms;
      if (ms > seen.longestMs) seen.longestMs = ms;
    }
  });
}

interface Row {
  readonly system: string;
  readonly round: number;
  readonly ok: number;
  readonly failed: number;
  readonly retrans: number;
  readonly cpuMs: number;
  /** Challenge plus authorised REGISTER, ms (SIPp's RTDs). */
  readonly p50: number;
  readonly p99: number;
  readonly vol: number;
  readonly invol: number;
  /** ms per registration. */
  readonly split: ReturnType<typeof splitMs>;
  /** Collections per 1,000 registrations (with --node-arg=--trace-gc). */
  readonly scavenges: number;
  readonly majors: number;
  /** Main-thread GC pause, µs per registration, and the longest single pause in the run, ms. */
  readonly gcPauseUs: number;
  readonly gcLongestMs: number;
  readonly counts?: Counts;
}
const rows: Row[] = [];

async function measure(sys: SystemUnderTest, inf: string, round: number, mode: 'count' | 'trace'): Promise<void> {
  const dir = path.join(workDir, 'runs', `${round}-${sys.name}-${mode}`);
  const calls = Math.round(rate * seconds);
  const cpu0 = treeTicks(sys.pid);
  const cs0 = ctxSwitches(sys.pid);
  const th0 = threadTicks(sys.pid);
  const gcNone = { scavenges: 0, majors: 0, pauseMs: 0, longestMs: 0 };
  const gc0 = { ...(gcSeen.get(sys.name) ?? gcNone) };
  if (gcSeen.has(sys.name)) gcSeen.get(sys.name)!.longestMs = 0;
  let stopper: { stop: () => Promise<Counts> } | undefined;
  let tracer: ReturnType<typeof spawn> | undefined;
  if (mode === 'count' && !args['no-count']) stopper = startPerfStat(sys.pid, path.join(workDir, `perf-${round}-${sys.name}.txt`));
  if (mode === 'trace') {
    tracer = spawn(perf!, ['trace', '-s', '-p', processTree(sys.pid).join(','), '-o', path.join(workDir, `trace-${sys.name}.txt`)], { stdio: 'ignore' });
    await sleep(1500);
  }
  const result = await runSipp({
    sipp: sipp!, scenario: 'register-auth.xml', target: { host: '127.0.0.1', port: sys.port }, localPort: await freePort(),
    inf, rate, calls, dir, keys: { contact_hostport: LOAD_CONTACT }, timeoutSeconds: Math.ceil(seconds * 2 + 30), extra: ['-max_retrans', '5'],
  });
  const counts = await stopper?.stop();
  if (tracer) {
    tracer.kill('SIGINT');
    await new Promise((r) => tracer!.once('exit', r));
    log(`${sys.name}: perf trace -s in ${path.join(workDir, `trace-${sys.name}.txt`)} (${result.succeeded} registrations)`);
    return;
  }
  const cpu = cpuSecondsBetween(cpu0, treeTicks(sys.pid));
  const cs1 = ctxSwitches(sys.pid);
  const ok = Math.max(1, result.succeeded);
  const sp = splitMs(th0, threadTicks(sys.pid));
  const gc1 = gcSeen.get(sys.name) ?? gcNone;
  const split = { mainUser: sp.mainUser / ok, mainSys: sp.mainSys / ok, otherUser: sp.otherUser / ok, otherSys: sp.otherSys / ok };
  const row: Row = {
    system: sys.name, round, ok: result.succeeded, failed: result.failed, retrans: result.retransmissions,
    cpuMs: (cpu / ok) * 1000, p50: p(result.rtd['register'], 50), p99: p(result.rtd['register'], 99), vol: (cs1.vol - cs0.vol) / ok, invol: (cs1.invol - cs0.invol) / ok, split,
    scavenges: ((gc1.scavenges - gc0.scavenges) / ok) * 1000, majors: ((gc1.majors - gc0.majors) / ok) * 1000,
    gcPauseUs: ((gc1.pauseMs - gc0.pauseMs) / ok) * 1000, gcLongestMs: gc1.longestMs, ...(counts ? { counts } : {}),
  };
  rows.push(row);
  const sc = counts ? `  syscalls ${((counts.all.get('ALL') ?? 0) / ok).toFixed(1)} (main ${((counts.main.get('ALL') ?? 0) / ok).toFixed(1)})` : '';
  log(`r${round} ${sys.name.padEnd(12)} ok ${result.succeeded}/${calls} failed ${result.failed} retrans ${result.retransmissions}  cpu ${row.cpuMs.toFixed(3)} ms  p50/p99 ${row.p50}/${row.p99} ms  cs vol ${row.vol.toFixed(2)} invol ${row.invol.toFixed(2)}${sc}`);
}

try {
  db = await startPrivateMariadb();
  const files = generateUsers(path.join(workDir, 'data'), Number(args.users), 10);
  await provisionKamailioSchema(db.port, files.users);
  for (const b of bins) {
    const env: Record<string, string> = {};
    for (const e of args.env ?? []) {
      const m = /^([^:]+):([^=]+)=(.*)$/.exec(e);
      if (m && m[1] === b.label) env[m[2]!] = m[3]!;
    }
    running.push(await startSipledgerSystem({ workDir, bin: b.bin, dbPort: db.port, nodeArgs: args['node-arg'] ?? [], name: b.label, env }));
  }
  if (args.kam !== 'none') {
    if (!kamailio) throw new Error('kamailio not installed (--kam none to run without)');
    running.push(await startKamailioSystem({ workDir, kamailio, dbPort: db.port, dbMode: Number(args.kam) as 0 | 1 | 3, workers: 4, shmMb: 256 }));
  }
  for (const sys of running) if (sys.name !== `kam-db${args.kam}`) watchGc(sys);
  log(`systems: ${running.map((s) => `${s.name} pid ${s.pid}`).join(', ')}; ${rate}/s for ${seconds}s, ${rounds} rounds; work dir ${workDir}`);
  for (const sys of running) {
    // Warm-up: JIT, pools, prepared statements; not counted.
    await runSipp({
      sipp, scenario: 'register-auth.xml', target: { host: '127.0.0.1', port: sys.port }, localPort: await freePort(),
      inf: files.regUsers, rate: 1000, calls: 5000, dir: path.join(workDir, 'runs', `warm-${sys.name}`), keys: { contact_hostport: LOAD_CONTACT }, timeoutSeconds: 60,
    });
  }
  if (args.trace) for (const sys of running) await measure(sys, files.regUsers, 0, 'trace');
  for (let round = 1; round <= rounds; round++) {
    // Alternate the order each round so that no system always follows the same one.
    const order = round % 2 ? running : [...running].reverse();
    for (const sys of order) await measure(sys, files.regUsers, round, 'count');
  }
} finally {
  for (const s of running) await s.stop().catch(() => undefined);
  await db?.destroy().catch(() => undefined);
  if (!args.keep) rmSync(workDir, { recursive: true, force: true });
}

// ---- report: medians over rounds, per registration -------------------------------------------------
const names = running.map((s) => s.name);
const med = (sys: string, fn: (r: Row) => number | undefined): number => median(rows.filter((r) => r.system === sys).map(fn).filter((x): x is number => x !== undefined));
const line = (label: string, fn: (r: Row) => number | undefined, digits = 2): string =>
  `| ${label} | ${names.map((n) => { const v = med(n, fn); return Number.isFinite(v) ? v.toFixed(digits) : '-'; }).join(' | ')} |`;
const perReg = (r: Row, which: 'all' | 'main', ev: string): number | undefined => (r.counts ? (r.counts[which].get(ev) ?? 0) / Math.max(1, r.ok) : undefined);
const out = [
  `| per registration (median of ${rounds} rounds, ${rate}/s) | ${names.join(' | ')} |`,
  `|---|${names.map(() => '---').join('|')}|`,
  line('server CPU ms', (r) => r.cpuMs, 3),
  line('REGISTER p50 ms (challenge + auth)', (r) => r.p50, 0),
  line('REGISTER p99 ms (challenge + auth)', (r) => r.p99, 0),
  line('  root thread user', (r) => r.split.mainUser, 3),
  line('  root thread system', (r) => r.split.mainSys, 3),
  line('  other threads/processes user', (r) => r.split.otherUser, 3),
  line('  other threads/processes system', (r) => r.split.otherSys, 3),
  ...((args['node-arg'] ?? []).includes('--trace-gc')
    ? [
        line('scavenges per 1,000 registrations', (r) => r.scavenges, 1),
        line('mark-compacts per 1,000 registrations', (r) => r.majors, 2),
        line('GC pause on the main thread, µs per registration', (r) => r.gcPauseUs, 1),
        line('longest GC pause in a run, ms', (r) => r.gcLongestMs, 1),
      ]
    : []),
  line('context switches, voluntary', (r) => r.vol),
  line('context switches, involuntary', (r) => r.invol),
];
if (!args['no-count']) {
  out.push(line('system calls, all threads', (r) => perReg(r, 'all', 'ALL'), 1));
  out.push(line('system calls, main thread', (r) => perReg(r, 'main', 'ALL'), 1));
  out.push(line('context switches (perf), all threads', (r) => perReg(r, 'all', 'context-switches')));
  for (const s of counted) {
    const any = rows.some((r) => (r.counts?.all.get(s) ?? 0) / Math.max(1, r.ok) >= 0.05);
    if (any) out.push(line(`  ${s}, all threads`, (r) => perReg(r, 'all', s)));
  }
}
console.log('\n' + out.join('\n'));
if (!args['no-count']) {
  console.log('\nmain-thread share per system call (median):');
  for (const s of counted) {
    const vals = names.map((n) => med(n, (r) => perReg(r, 'main', s)));
    if (vals.some((v) => v >= 0.05)) console.log(`  ${s.padEnd(14)} ${names.map((n, i) => `${n} ${vals[i]!.toFixed(2)}`).join('  ')}`);
  }
}

/**
 * MySQL credential store benchmark: lookups/s, p50/p99 latency, CPU per lookup and statements per
 * lookup against a throw-away database with 10,000 Kamailio-schema subscribers on the local MariaDB.
 *
 *   node --import tsx bench/mysql-bench.ts [--subscribers 10000] [--lookups 40000] [--concurrency 1,8,32]
 *        [--rounds 1] [--impl name=path/to/mysql.ts,...]
 *
 * Every tenth lookup asks for a user that does not exist (a scanner's traffic). Figures move by
 * +-30% between runs on a shared machine: compare rows of one run, not runs.
 *
 * CPU per lookup is the time this process spent on its main thread (/proc/self/task/PID/stat,
 * 10 ms ticks) and in all its threads (process.cpuUsage), divided by the lookups: the figure that
 * survives other load on the machine, unlike lookups/s. `--impl` loads createMysqlBackend from
 * other copies of the backend (e.g. an older commit unpacked elsewhere) and runs them interleaved,
 * row by row, in the same process; `--rounds` repeats everything and adds a table of medians.
 * tsx wraps every named closure in a helper call, so compare copies compiled with tsc (as the built
 * binary is), e.g. `git archive` of both commits, `tsc` each, and `--impl old=A/mysql.js,new=B/mysql.js`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { MysqlBackend, MysqlBackendOptions } from '../src/backends/auth/mysql.js';
import { createTestDatabase } from '../test/support/mariadb.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '10000' },
    lookups: { type: 'string', default: '40000' },
    concurrency: { type: 'string', default: '1,8,32' },
    rounds: { type: 'string', default: '1' },
    impl: { type: 'string', default: `current=${path.join(root, 'src', 'backends', 'auth', 'mysql.ts')}` },
  },
});
const ROUNDS = Number(args.rounds);
const SUBSCRIBERS = Number(args.subscribers);
const LOOKUPS = Number(args.lookups);
const CONCURRENCY = String(args.concurrency).split(',').map(Number);
const DOMAIN = 'bench.test';
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

type CreateBackend = (opts: MysqlBackendOptions) => MysqlBackend;

interface Impl {
  name: string;
  create: CreateBackend;
}

async function loadImpls(spec: string): Promise<Impl[]> {
  const impls: Impl[] = [];
  for (const item of spec.split(',')) {
    const eq = item.indexOf('=');
    const name = eq < 0 ? `impl${impls.length + 1}` : item.slice(0, eq);
    const file = path.resolve(eq < 0 ? item : item.slice(eq + 1));
    const mod = (await import(pathToFileURL(file).href)) as { createMysqlBackend: CreateBackend };
    impls.push({ name, create: mod.createMysqlBackend });
  }
  return impls;
}

/** CPU microseconds of this process's main thread (utime + stime, clock ticks of 10 ms). */
function mainThreadCpuMicros(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at ") ".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the full line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

interface Row {
  impl: string;
  variant: string;
  concurrency: number;
  lookupsPerSecond: number;
  p50ms: number;
  p99ms: number;
  /** Main thread CPU per lookup, µs. */
  mainCpuUs: number;
  /** Whole process CPU per lookup (all threads), µs. */
  procCpuUs: number;
  queriesPerLookup: number;
  found: number;
}

async function run(impl: Impl, variant: string, extra: Partial<MysqlBackendOptions>, url: string, concurrency: number): Promise<Row> {
  const backend = impl.create({
    name: 'bench',
    url,
    logger: pino({ level: 'silent' }),
    poolSize: Math.max(1, Math.min(concurrency, 16)),
    loadCredentials: { rpid: 'rpid' },
    ...extra,
  });
  // One signal per lookup, as the framework gives them.
  const opts = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });
  const user = (i: number): string => (i % 10 === 9 ? `nobody${i}` : String(100000 + ((i * 7919) % SUBSCRIBERS)));
  // Warm-up: open the pool's connections and prepare the statement on each.
  await Promise.all(Array.from({ length: concurrency * 4 }, (_, i) => backend.lookup({ username: user(i), domain: DOMAIN }, opts())));
  const before = backend.stats.queries;
  const latencies = new Float64Array(LOOKUPS);
  let next = 0;
  let found = 0;
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuMicros();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= LOOKUPS) return;
        const t0 = performance.now();
        const c = await backend.lookup({ username: user(i), domain: DOMAIN }, opts());
        latencies[i] = performance.now() - t0;
        if (c !== null) found += 1;
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const mainCpu = mainThreadCpuMicros() - main0;
  const cpu = process.cpuUsage(cpu0);
  const queries = backend.stats.queries - before;
  await backend.close();
  latencies.sort();
  return {
    impl: impl.name,
    variant,
    concurrency,
    lookupsPerSecond: Math.round(LOOKUPS / elapsed),
    p50ms: Number(percentile(latencies, 50).toFixed(3)),
    p99ms: Number(percentile(latencies, 99).toFixed(3)),
    mainCpuUs: Number((mainCpu / LOOKUPS).toFixed(1)),
    procCpuUs: Number(((cpu.user + cpu.system) / LOOKUPS).toFixed(1)),
    queriesPerLookup: Number((queries / LOOKUPS).toFixed(3)),
    found,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function medians(rows: Row[]): Array<Record<string, string | number>> {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.impl}|${r.variant}|${r.concurrency}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => ({
    impl: g[0]!.impl,
    variant: g[0]!.variant,
    concurrency: g[0]!.concurrency,
    runs: g.length,
    lookupsPerSecond: Math.round(median(g.map((r) => r.lookupsPerSecond))),
    p50ms: Number(median(g.map((r) => r.p50ms)).toFixed(3)),
    p99ms: Number(median(g.map((r) => r.p99ms)).toFixed(3)),
    mainCpuUs: Number(median(g.map((r) => r.mainCpuUs)).toFixed(1)),
    procCpuUs: Number(median(g.map((r) => r.procCpuUs)).toFixed(1)),
  }));
}

async function main(): Promise<void> {
  const db = await createTestDatabase('slbench');
  try {
    for (const f of ['standard', 'auth_db']) await db.sqlFile(path.join(root, 'schemas', 'sql', `${f}-create.sql`));
    await db.sql('ALTER TABLE subscriber ADD COLUMN rpid VARCHAR(128) NULL');
    for (let from = 0; from < SUBSCRIBERS; from += 1000) {
      const batch: unknown[] = [];
      const n = Math.min(1000, SUBSCRIBERS - from);
      for (let i = from; i < from + n; i += 1) {
        const u = String(100000 + i);
        batch.push(u, DOMAIN, md5(`${u}:${DOMAIN}:pw${u}`), md5(`${u}@${DOMAIN}:${DOMAIN}:pw${u}`), `sip:+1555${u}@${DOMAIN}`);
      }
      await db.sql(`INSERT INTO subscriber (username, domain, ha1, ha1b, rpid) VALUES ${Array(n).fill('(?,?,?,?,?)').join(',')}`, batch);
    }
    console.log(`MariaDB 127.0.0.1:3306, ${SUBSCRIBERS} subscribers, ${LOOKUPS} lookups per row (10% unknown users), load_credentials rpid`);
    const impls = await loadImpls(String(args.impl));
    const rows: Row[] = [];
    const cases: Array<{ variant: string; extra: Partial<MysqlBackendOptions>; concurrency: number }> = [
      ...CONCURRENCY.map((c) => ({ variant: 'ha1, no cache', extra: {}, concurrency: c })),
      { variant: 'ha1, cache 60 s', extra: { cacheTtlMs: 60_000 }, concurrency: CONCURRENCY[CONCURRENCY.length - 1] ?? 1 },
    ];
    for (let round = 0; round < ROUNDS; round += 1) {
      for (const k of cases) {
        // Interleaved: every implementation at this case before the next case; the order alternates per round.
        const order = round % 2 === 0 ? impls : [...impls].reverse();
        for (const impl of order) rows.push(await run(impl, k.variant, k.extra, db.url, k.concurrency));
      }
    }
    console.table(rows);
    if (ROUNDS > 1) console.table(medians(rows));
  } finally {
    await db.drop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

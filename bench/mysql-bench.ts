/**
 * MySQL credential store benchmark: lookups/s, p50/p99 latency and statements per lookup against a
 * throw-away database with 10,000 Kamailio-schema subscribers on the local MariaDB.
 *
 *   node --import tsx bench/mysql-bench.ts [--subscribers 10000] [--lookups 40000] [--concurrency 1,8,32]
 *
 * Every tenth lookup asks for a user that does not exist (a scanner's traffic). Figures move by
 * +-30% between runs on a shared machine: compare rows of one run, not runs.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createMysqlBackend, type MysqlBackendOptions } from '../src/backends/auth/mysql.js';
import { createTestDatabase } from '../test/support/mariadb.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    subscribers: { type: 'string', default: '10000' },
    lookups: { type: 'string', default: '40000' },
    concurrency: { type: 'string', default: '1,8,32' },
  },
});
const SUBSCRIBERS = Number(args.subscribers);
const LOOKUPS = Number(args.lookups);
const CONCURRENCY = String(args.concurrency).split(',').map(Number);
const DOMAIN = 'bench.test';
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Row {
  variant: string;
  concurrency: number;
  lookupsPerSecond: number;
  p50ms: number;
  p99ms: number;
  queriesPerLookup: number;
  found: number;
}

async function run(variant: string, extra: Partial<MysqlBackendOptions>, url: string, concurrency: number): Promise<Row> {
  const backend = createMysqlBackend({
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
  const queries = backend.stats.queries - before;
  await backend.close();
  latencies.sort();
  return {
    variant,
    concurrency,
    lookupsPerSecond: Math.round(LOOKUPS / elapsed),
    p50ms: Number(percentile(latencies, 50).toFixed(3)),
    p99ms: Number(percentile(latencies, 99).toFixed(3)),
    queriesPerLookup: Number((queries / LOOKUPS).toFixed(3)),
    found,
  };
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
    const rows: Row[] = [];
    for (const c of CONCURRENCY) rows.push(await run('ha1, no cache', {}, db.url, c));
    rows.push(await run('ha1, cache 60 s', { cacheTtlMs: 60_000 }, db.url, CONCURRENCY[CONCURRENCY.length - 1] ?? 1));
    console.table(rows);
  } finally {
    await db.drop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

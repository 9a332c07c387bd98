/**
 * How long a snapshot holds the event loop: a ledger with N bindings (default 100,000) on a memory
 * log writes its snapshot while a 1 ms interval measures the event loop's delay; prints the
 * snapshot's wall time, its size and the longest and p99 event-loop delay meanwhile.
 *
 *   node --import tsx bench/snapshot-stall-bench.ts [--bindings 100000]
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { contactBound } from '../src/core/log/events.js';
import { Ledger } from '../src/core/log/ledger.js';
import { MemoryLog } from '../src/core/log/memory-log.js';

const { values: args } = parseArgs({ options: { bindings: { type: 'string', default: '100000' } } });
const n = Number(args.bindings);
const dir = await mkdtemp(path.join(tmpdir(), 'sipledger-snapbench-'));
const T0 = Date.UTC(2026, 11, 7, 12);
const ledger = await Ledger.open({ log: new MemoryLog(), logger: pino({ level: 'silent' }), snapshotDir: dir, snapshotEvery: 0 });
for (let i = 0; i < n; i += 500) {
  const batch = [];
  for (let k = i; k < Math.min(n, i + 500); k++) {
    const uri = `sip:user${k}@10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}:5060;transport=udp`;
    batch.push(
      contactBound(
        {
          aor: `sip:user${k}@example.com`,
          contact: `<${uri}>;expires=3600`,
          uri,
          expiresAt: T0 + 3_600_000,
          q: 1,
          callId: `reg-${k}-a84b4c76e66710@10.0.0.1`,
          cseq: 2,
          userAgent: 'Yealink SIP-T46S 66.86.0.15',
          source: { address: '10.0.0.1', port: 5060, transport: 'udp' },
        },
        { time: T0 },
      ),
    );
  }
  await ledger.append(batch);
}
for (let round = 0; round < 3; round++) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  await ledger.snapshot();
  const wall = performance.now() - t0;
  h.disable();
  const bytes = (await stat(path.join(dir, 'ledger-snapshot.json'))).size;
  console.log(
    `${n} bindings: snapshot ${(bytes / 1048576).toFixed(1)} MiB in ${wall.toFixed(0)} ms; event-loop delay meanwhile max ${(h.max / 1e6).toFixed(1)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms`,
  );
}
await ledger.close();
await rm(dir, { recursive: true, force: true });

/**
 * RADIUS verifier throughput and latency against a real FreeRADIUS 3.2 (rlm_digest) on loopback.
 *
 *   node --import tsx bench/radius-bench.ts [seconds-per-step=5]
 *
 * 1. Authentications/s, p50 and p99 with 1, 16 and 64 requests in flight (correct digests for alice).
 * 2. Isolation: the same 16-in-flight load on a healthy backend while another backend instance has
 *    64 requests waiting on a hung (SIGSTOPped) FreeRADIUS, then once more without it as a control;
 *    it must not slow down.
 *
 * The machine is shared: compare figures from one run, not across runs.
 */
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { createRadiusBackend, type RadiusBackend } from '../src/backends/auth/radius/backend.js';
import { registerDigest } from '../test/support/digest.js';
import { startFreeRadius, type FreeRadius } from '../test/support/freeradius.js';

const seconds = Number(process.argv[2] ?? 5);
const logger = pino({ level: 'silent' });

interface Step {
  label: string;
  inFlight: number;
  completed: number;
  failed: number;
  perSecond: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function load(label: string, backend: RadiusBackend, inFlight: number, durationMs: number): Promise<Step> {
  const latencies: number[] = [];
  let failed = 0;
  const end = performance.now() + durationMs;
  // Requests are prepared outside the timed section: only the RADIUS round trip is measured.
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const request = registerDigest('alice', { password: 'alice-secret' });
      const started = performance.now();
      try {
        const result = await backend.verify(request, { signal: AbortSignal.timeout(5_000) });
        if (result.result !== 'accept') failed += 1;
      } catch {
        failed += 1;
      }
      latencies.push(performance.now() - started);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    label,
    inFlight,
    completed: latencies.length,
    failed,
    perSecond: Math.round(latencies.length / elapsed),
    p50: Number(percentile(latencies, 50).toFixed(2)),
    p99: Number(percentile(latencies, 99).toFixed(2)),
  };
}

async function main(): Promise<void> {
  const servers: FreeRadius[] = [];
  const backends: RadiusBackend[] = [];
  try {
    const live = await startFreeRadius();
    servers.push(live);
    const hung = await startFreeRadius();
    servers.push(hung);
    const healthy = createRadiusBackend({ name: 'bench', servers: [{ host: live.host, port: live.port, secret: live.secret }], logger });
    backends.push(healthy);

    // Warm-up: JIT, socket creation, FreeRADIUS thread pool.
    await load('warm-up', healthy, 16, 1_000);

    const steps: Step[] = [];
    for (const inFlight of [1, 16, 64]) steps.push(await load('healthy server', healthy, inFlight, seconds * 1000));

    const stuck = createRadiusBackend({
      name: 'bench-stuck',
      servers: [{ host: hung.host, port: hung.port, secret: hung.secret }],
      timeoutMs: 60_000,
      retries: 0,
      logger,
    });
    backends.push(stuck);
    hung.pause();
    const waiting = Array.from({ length: 64 }, () =>
      stuck.verify(registerDigest('alice', { password: 'alice-secret' }), { signal: AbortSignal.timeout(120_000) }).catch(() => undefined),
    );
    steps.push(await load('healthy server, other backend with 64 waiting on a hung server', healthy, 16, seconds * 1000));
    hung.resume();
    await stuck.close();
    await Promise.all(waiting);
    // The same load again without the hung server: separates the effect from machine noise.
    steps.push(await load('healthy server (control, after)', healthy, 16, seconds * 1000));

    console.log(`RADIUS verifier against FreeRADIUS 3.2 on loopback, ${seconds} s per step, Node ${process.version}`);
    console.table(steps.map((s) => ({ scenario: s.label, 'in flight': s.inFlight, 'auths/s': s.perSecond, 'p50 ms': s.p50, 'p99 ms': s.p99, completed: s.completed, failed: s.failed })));
    console.log('client counters:', healthy.stats);
  } finally {
    await Promise.all(backends.map((b) => b.close()));
    await Promise.all(servers.map((s) => s.stop()));
  }
}

await main();

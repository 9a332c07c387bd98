/**
 * Event log benchmark:
 *   node --import tsx bench/log-bench.ts [--events 1000000] [--contacts 100000] [--only append,paced,rebuild,lookup]
 *     [--rate 500] [--seconds 10] [--batch 2] [--modes Ledger,Ledgervalidatefalse,FileLog,pacingonly]
 *
 * Prints:
 *  - append throughput with fsync=batch (FileLog alone, and through Ledger: schema check + projections),
 *    with CPU microseconds per append: the whole process and its main thread (where the event loop runs)
 *  - paced appends: `--rate` appends per second of `--batch` events each (a registration appends an
 *    auth outcome and a binding change), each built with makeEvent and appended through the Ledger
 *    (validate on and off) as a registrar does, for `--seconds`; CPU microseconds per append. At a
 *    moderate rate groups are small, so this is the per-append cost a live process pays.
 *  - rebuild rate: Ledger.open replaying a file log of N registration events, no snapshot
 *  - start-to-lookup: a fresh process that opens a snapshot of M live contacts and answers a lookup
 *  - heap bytes per live contact in the location projection
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { FileLog } from '../src/backends/log/file-log.js';
import { readFileSync } from 'node:fs';
import { authSucceeded, contactBound, contactRefreshed, type SipledgerEvent } from '../src/core/log/events.js';
import { Ledger } from '../src/core/log/ledger.js';
import { LocationProjection } from '../src/projections/location.js';

const startedAt = performance.timeOrigin;
const logger = pino({ level: 'warn' }, pino.destination(2));
const T0 = Date.UTC(2024, 0, 1);
const DAY = 24 * 3_600_000;

function registration(n: number, aors: number, time: number): SipledgerEvent {
  const k = n % aors;
  const user = `user${k}`;
  const uri = `sip:${user}@10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}:5060;transport=udp`;
  const payload = {
    aor: `sip:${user}@bench.example.com`,
    contact: `<${uri}>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-${String(k).padStart(12, '0')}>";reg-id=1`,
    uri,
    expiresAt: time + 10 * 365 * DAY,
    q: 1,
    callId: `${k}-reg@10.0.0.1`,
    cseq: Math.floor(n / aors) + 1,
    userAgent: 'Yealink SIP-T46S 66.86.0.15',
    source: { address: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`, port: 5060, transport: 'udp' as const },
    instanceId: `<urn:uuid:00000000-0000-1000-8000-${String(k).padStart(12, '0')}>`,
    regId: 1,
  };
  return n < aors ? contactBound(payload, { time }) : contactRefreshed(payload, { time });
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) total += (await stat(path.join(dir, f))).size;
  return total;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** CPU nanoseconds the main thread has run (its schedstat), to tell it from libuv's fsync threads. */
function mainThreadNs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return NaN;
  }
}

interface Cpu {
  readonly process: number;
  readonly main: number;
}

function cpuNow(): { usage: NodeJS.CpuUsage; mainNs: number } {
  return { usage: process.cpuUsage(), mainNs: mainThreadNs() };
}

/** Microseconds of CPU since `from`: the whole process, and its main thread alone. */
function cpuSince(from: { usage: NodeJS.CpuUsage; mainNs: number }): Cpu {
  const u = process.cpuUsage(from.usage);
  return { process: u.user + u.system, main: (mainThreadNs() - from.mainNs) / 1000 };
}

async function benchAppend(root: string): Promise<void> {
  const total = 200_000;
  const concurrency = 512;
  for (const mode of ['FileLog', 'Ledger'] as const) {
    const dir = path.join(root, `append-${mode}`);
    const log = await FileLog.open({ dir, fsync: 'batch', logger });
    const ledger = mode === 'Ledger' ? await Ledger.open({ log, logger }) : undefined;
    const events = Array.from({ length: total }, (_, i) => registration(i, total, T0 + i));
    let next = 0;
    const t = performance.now();
    const c0 = cpuNow();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const e = events[next++]!;
          if (ledger) await ledger.append([e]);
          else await log.append([e]);
        }
      }),
    );
    const cpu = cpuSince(c0);
    const s = (performance.now() - t) / 1000;
    const { groups } = log.stats;
    console.log(
      `append, fsync=batch, ${mode}: ${fmt(total / s)} events/s (${fmt(total)} single-event appends from ${concurrency} concurrent writers, ${fmt(groups)} group commits = ${fmt(groups)} fdatasyncs); CPU per append ${(cpu.process / total).toFixed(1)} us, main thread ${(cpu.main / total).toFixed(1)} us`,
    );
    if (ledger) await ledger.close();
    else await log.close();
  }
}

/** A registration's events: the auth outcome and the binding change, built as the router does. */
function registrationEvents(n: number, batch: number): SipledgerEvent[] {
  const time = Date.now();
  const k = n % 5000;
  const source = { address: `10.0.${(k >> 8) & 255}.${k & 255}`, port: 5060, transport: 'udp' as const };
  const out: SipledgerEvent[] = [
    authSucceeded(
      { user: `user${k}`, realm: 'bench.example.com', domain: 'bench.example.com', method: 'REGISTER', source, userAgent: 'Yealink SIP-T46S 66.86.0.15', algorithm: 'MD5', callId: `${n}-reg@10.0.0.1` },
      { time },
    ),
  ];
  for (let i = 1; i < batch; i++) {
    const uri = `sip:user${k}@${source.address}:5060;transport=udp`;
    out.push(
      contactRefreshed(
        { aor: `sip:user${k}@bench.example.com`, contact: `<${uri}>`, uri, expiresAt: time + 3_600_000, q: 1, callId: `${n}-reg@10.0.0.1`, cseq: n + i, userAgent: 'Yealink SIP-T46S 66.86.0.15', source },
        { time },
      ),
    );
  }
  return out;
}

/**
 * Appends at a fixed rate, each append in its own job like concurrent registrations, and reports the
 * CPU per append. The pacing (a timer every 10 ms, a setImmediate per append) costs the same in every
 * mode.
 */
async function benchPaced(root: string, rate: number, seconds: number, batch: number): Promise<void> {
  // 'pacing only' builds the events and resolves at once: the floor that the pacing itself costs.
  const modes = ['Ledger', 'Ledger validate:false', 'FileLog', 'pacing only'] as const;
  const wanted = process.argv.indexOf('--modes');
  const names = wanted >= 0 ? (process.argv[wanted + 1] ?? '').split(',') : undefined;
  for (const mode of modes.filter((m) => !names || names.includes(m.replace(/[^a-zA-Z]/g, '')))) {
    const dir = path.join(root, `paced-${mode.replace(/[^a-zA-Z]/g, '')}`);
    const log = await FileLog.open({ dir, fsync: 'batch', logger });
    const ledger = mode === 'FileLog' || mode === 'pacing only' ? undefined : await Ledger.open({ log, logger, validate: mode === 'Ledger' });
    const append = (events: SipledgerEvent[]): Promise<unknown> =>
      mode === 'pacing only' ? Promise.resolve() : ledger ? ledger.append(events) : log.append(events);
    // Warm-up: the JIT settles before the measured run.
    for (let i = 0; i < 2000; i++) await append(registrationEvents(i, batch));
    const total = Math.round(rate * seconds);
    const perTick = rate / 100;
    const groups0 = log.stats.groups;
    const c0 = cpuNow();
    const t0 = performance.now();
    let issued = 0;
    let done = 0;
    await new Promise<void>((resolve, reject) => {
      const tick = (): void => {
        const due = Math.min(total, Math.round(((performance.now() - t0) / 10 + 1) * perTick));
        // Each append in its own job, as requests arriving in separate datagrams are.
        for (; issued < due; issued++) {
          const n = issued;
          setImmediate(() =>
            append(registrationEvents(n, batch)).then(() => {
              if (++done === total) resolve();
            }, reject),
          );
        }
        if (issued < total) setTimeout(tick, 10);
      };
      tick();
    });
    const cpu = cpuSince(c0);
    const groups = log.stats.groups - groups0;
    console.log(
      `paced ${fmt(rate)} appends/s of ${batch} events, ${mode}: CPU per append ${(cpu.process / total).toFixed(1)} us, main thread ${(cpu.main / total).toFixed(1)} us (${fmt(total)} appends, ${groups > 0 ? (total / groups).toFixed(1) : '-'} appends per group commit)`,
    );
    if (ledger) await ledger.close();
    else await log.close();
  }
}

async function writeLog(dir: string, count: number, aors: number): Promise<void> {
  const log = await FileLog.open({ dir, fsync: 'none', logger });
  const batch = 5000;
  for (let i = 0; i < count; i += batch) {
    const events: SipledgerEvent[] = [];
    for (let j = i; j < Math.min(count, i + batch); j++) events.push(registration(j, aors, T0 + j));
    await log.append(events);
  }
  await log.close();
}

async function benchRebuild(root: string, count: number): Promise<void> {
  const dir = path.join(root, 'rebuild');
  const aors = 100_000;
  await writeLog(dir, count, aors);
  const bytes = await dirBytes(dir);

  const tRead = performance.now();
  const log = await FileLog.open({ dir, logger });
  let n = 0;
  for await (const _r of log.read('start')) n++;
  const readS = (performance.now() - tRead) / 1000;
  await log.close();

  const t = performance.now();
  const ledger = await Ledger.open({ log: await FileLog.open({ dir, logger }), logger });
  const s = (performance.now() - t) / 1000;
  console.log(
    `rebuild: ${fmt(ledger.appliedCount / s)} events/s into location+audit+calls (${fmt(ledger.appliedCount)} registration events, ${(bytes / 1e6).toFixed(0)} MB, ${s.toFixed(2)} s, ${fmt(ledger.location.count(T0))} live contacts); raw log read ${fmt(n / readS)} events/s`,
  );
  await ledger.close();
}

async function benchStartToLookup(root: string, contacts: number): Promise<void> {
  const logDir = path.join(root, 'lookup-log');
  const snapshotDir = path.join(root, 'lookup-snap');
  await writeLog(logDir, contacts, contacts);
  const ledger = await Ledger.open({ log: await FileLog.open({ dir: logDir, logger }), snapshotDir, logger });
  await ledger.snapshot();
  await ledger.close();
  const snapBytes = (await stat(path.join(snapshotDir, 'ledger-snapshot.json'))).size;

  const script = fileURLToPath(import.meta.url);
  const spawnedAt = performance.now();
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script, '--child-lookup', logDir, snapshotDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (text += c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`lookup child exited ${code}`))));
  });
  const result = JSON.parse(out) as { sinceProcessStart: number; spawnToServedOffset: number; found: number; bytesPerContact: number };
  const spawnToServed = result.spawnToServedOffset - spawnedAt;
  console.log(
    `start to first lookup with ${fmt(contacts)} live contacts via snapshot: ${(spawnToServed / 1000).toFixed(2)} s from spawn (${(result.sinceProcessStart / 1000).toFixed(2)} s since the process started; snapshot ${(snapBytes / 1e6).toFixed(0)} MB; lookup found ${result.found} binding)`,
  );
  console.log(`location projection memory: ${fmt(result.bytesPerContact)} heap bytes per live contact`);
}

async function childLookup(logDir: string, snapshotDir: string): Promise<void> {
  const ledger = await Ledger.open({ log: await FileLog.open({ dir: logDir, logger }), snapshotDir, logger, snapshotEvery: 0 });
  const found = ledger.location.bindings('sip:user4242@bench.example.com', T0).length;
  const servedAt = performance.now();
  const sinceProcessStart = servedAt;
  // Memory: rebuild the location projection alone from the snapshot and weigh the heap around it.
  const gc = (globalThis as { gc?: () => void }).gc;
  const state = ledger.location.toSnapshot();
  await ledger.close();
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const p = new LocationProjection();
  p.restore(structuredClone(state));
  gc?.();
  const after = process.memoryUsage().heapUsed;
  const live = p.count(T0);
  process.stdout.write(
    JSON.stringify({
      sinceProcessStart,
      // Convert to the parent's clock: both use the same wall clock through timeOrigin.
      spawnToServedOffset: startedAt + servedAt - parentOrigin(),
      found,
      // structuredClone's copy is freed by gc before `after` only if unreferenced: it is owned by p now.
      bytesPerContact: (after - before) / live,
    }),
  );
}

function parentOrigin(): number {
  return Number(process.env.SIPLEDGER_BENCH_PARENT_ORIGIN ?? startedAt);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child-lookup') {
    await childLookup(process.argv[3]!, process.argv[4]!);
    return;
  }
  process.env.SIPLEDGER_BENCH_PARENT_ORIGIN = String(performance.timeOrigin);
  const events = arg('events', 1_000_000);
  const contacts = arg('contacts', 100_000);
  const onlyAt = process.argv.indexOf('--only');
  const only = new Set(onlyAt >= 0 ? (process.argv[onlyAt + 1] ?? '').split(',') : ['append', 'paced', 'rebuild', 'lookup']);
  const root = await mkdtemp(path.join(tmpdir(), 'sipledger-bench-'));
  try {
    console.log(`sipledger event log benchmark (node ${process.version}, ${root})`);
    if (only.has('append')) await benchAppend(root);
    if (only.has('paced')) await benchPaced(root, arg('rate', 500), arg('seconds', 10), arg('batch', 2));
    if (only.has('rebuild')) await benchRebuild(root, events);
    if (only.has('lookup')) await benchStartToLookup(root, contacts);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();

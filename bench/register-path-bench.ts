/**
 * The REGISTER hot path in one process, without sockets: bytes -> parser -> transaction layer ->
 * router -> digest authenticator (memory backend) -> registrar -> ledger (file log, fsync=batch)
 * -> 200 OK serialised. Each simulated phone sends REGISTER, reads the 401's nonce, answers with
 * its digest and waits for the 200, with `--phones` phones in flight (so that group commit groups).
 *
 *   node --import tsx bench/register-path-bench.ts [--registrations 20000] [--phones 64] [--users 5000]
 *
 * Prints CPU microseconds per registration (two REGISTER transactions) of this process, measured
 * with process.cpuUsage, so that other load on a shared machine does not count; the simulated
 * phones' own work (building requests, three MD5s) is measured apart and subtracted.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { detach } from '../src/core/sip/detach.js';
import { MemoryBackend } from '../src/backends/auth/memory.js';
import { FileLog } from '../src/backends/log/file-log.js';
import { DigestAuthenticator } from '../src/core/auth/authenticator.js';
import { Ledger } from '../src/core/log/ledger.js';
import { Router, type RouterTransaction } from '../src/core/proxy/router.js';
import { parseMessage, serialize, type SipResponse, type Source } from '../src/core/sip/index.js';
import { TransactionLayer } from '../src/core/transaction/index.js';
import type { PreparedResponse } from '../src/core/transport/index.js';
import { privateRouter } from '../src/warmup.js';

const { values: args } = parseArgs({
  options: {
    registrations: { type: 'string', default: '20000' },
    phones: { type: 'string', default: '64' },
    users: { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '5000' },
    memory: { type: 'boolean', default: false },
    'heap-snapshot': { type: 'string' },
  },
});
const MEMORY = args.memory;
// Memory mode: every user registers once (100k distinct AORs by default), heap measured after GC.
const USERS = MEMORY && !process.argv.includes('--users') ? 100_000 : Number(args.users);
const TOTAL = MEMORY ? USERS : Number(args.registrations);
const PHONES = Number(args.phones);
const DOMAIN = 'bench.test';
const logger = pino({ level: 'silent' });
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

const dir = await mkdtemp(path.join(tmpdir(), 'sl-regpath-'));
const users = Array.from({ length: USERS }, (_, i) => ({ username: `u${i}`, domain: DOMAIN, password: `pw-${i}` }));
const authenticator = new DigestAuthenticator({
  secret: 'register-path-bench-secret-0123456789',
  logger,
  domains: [{ domain: DOMAIN, backend: new MemoryBackend({ name: 'mem', users }) }],
});
const ledger = await Ledger.open({ log: await FileLog.open({ dir: path.join(dir, 'log'), fsync: 'batch', logger }), logger });

/**
 * Where the layer's responses go: serialised as on the wire, then handed to the waiting phone. Like
 * the TransportManager, it can prepare a response once (what a completed transaction keeps).
 */
const waiting = new Map<string, (bytes: Buffer) => void>();
type BenchPrepared = PreparedResponse & { readonly callId: string };
const handTo = (callId: string, bytes: Buffer): void => {
  const w = waiting.get(callId);
  if (w) {
    waiting.delete(callId);
    w(bytes);
  }
};
const transport = {
  async send(): Promise<void> {},
  async sendResponse(res: SipResponse): Promise<void> {
    handTo(res.callId, serialize(res));
  },
  prepareResponse(res: SipResponse): PreparedResponse {
    // The Call-ID is what this bench routes by; copied, so that a kept record holds no view onto the
    // request's text (the real transport keeps only the bytes and the target).
    const p: BenchPrepared = { bytes: serialize(res), target: { transport: 'udp', address: '10.0.0.1', port: 5060 }, to: undefined, callId: detach(res.callId) };
    return p;
  },
  async sendPrepared(p: PreparedResponse): Promise<void> {
    handTo((p as BenchPrepared).callId, p.bytes);
  },
};
const local = { host: '127.0.0.1', port: 5060 };
const up: { router?: Router } = {};
const transactions = new TransactionLayer({
  transport,
  logger,
  // Every REGISTER transaction stays 32 s (timer J) to absorb retransmissions: room for all of them.
  maxTransactions: 1_000_000,
  ...(process.env['BENCH_T1'] ? { config: { t1: Number(process.env['BENCH_T1']) } } : {}),
  onRequest: (req, tx) => up.router!.handle(req, tx as RouterTransaction | undefined),
});
up.router = privateRouter({ transactions, sender: transport, authenticator, ledger, local, logger });

let clientNs = 0n;
let seq = 0;
let next = 0;
const source = (port: number): Source => ({ address: '10.0.0.1', port, transport: 'udp', local: { address: '127.0.0.1', port: 5060 } });

function request(user: string, port: number, callId: string, cseq: number, auth?: string): Buffer {
  const branch = `z9hG4bK${(seq++).toString(36)}x${port}`;
  return Buffer.from(
    `REGISTER sip:${DOMAIN} SIP/2.0\r\n` +
      `Via: SIP/2.0/UDP 10.0.0.1:${port};branch=${branch};rport\r\n` +
      `Max-Forwards: 70\r\nFrom: <sip:${user}@${DOMAIN}>;tag=${callId}\r\nTo: <sip:${user}@${DOMAIN}>\r\n` +
      `Call-ID: ${callId}\r\nCSeq: ${cseq} REGISTER\r\nContact: <sip:${user}@10.0.0.1:5060>\r\n` +
      (auth ? `Authorization: ${auth}\r\n` : '') +
      `Expires: 3600\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n`,
  );
}

function deliver(bytes: Buffer, port: number): Promise<Buffer> {
  const r = parseMessage(bytes);
  if (!r.ok) throw new Error(r.reason);
  r.message.source = source(port);
  return new Promise((resolve) => {
    waiting.set(r.message.callId, resolve);
    transactions.receive(r.message);
  });
}

async function phone(id: number, count: () => boolean): Promise<void> {
  const port = 10000 + id;
  while (count()) {
    const t0 = process.hrtime.bigint();
    const i = MEMORY ? next++ % USERS : (seq * 7 + id) % USERS;
    const user = `u${i}`;
    const callId = `c${seq}-${id}@bench`;
    const first = request(user, port, callId, 1);
    clientNs += process.hrtime.bigint() - t0;
    const challenge = (await deliver(first, port)).toString('latin1');
    const t1 = process.hrtime.bigint();
    const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
    if (!challenge.startsWith('SIP/2.0 401') || !nonce) throw new Error(`expected a 401 challenge, got ${challenge.slice(0, 40)}`);
    const uri = `sip:${DOMAIN}`;
    const cnonce = 'abcdef01';
    const ha1 = md5(`${user}:${DOMAIN}:pw-${i}`);
    const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`);
    const auth = `Digest username="${user}",realm="${DOMAIN}",nonce="${nonce}",uri="${uri}",response="${response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="${cnonce}"`;
    const second = request(user, port, callId, 2, auth);
    clientNs += process.hrtime.bigint() - t1;
    const ok = (await deliver(second, port)).toString('latin1');
    if (!ok.startsWith('SIP/2.0 200')) throw new Error(`expected 200, got ${ok.slice(0, 60)}`);
  }
}

async function runPhase(n: number): Promise<{ cpuUs: number; wallMs: number; clientUs: number }> {
  let left = n;
  const take = (): boolean => left-- > 0;
  clientNs = 0n;
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  await Promise.all(Array.from({ length: PHONES }, (_, id) => phone(id, take)));
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: cpu.user + cpu.system, wallMs: performance.now() - w0, clientUs: Number(clientNs / 1000n) };
}

async function heap(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('memory mode needs node --expose-gc');
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  // Buffers live outside the V8 heap (arrayBuffers): a retained slice can pin a whole pool slab.
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function memoryRun(): Promise<void> {
  const h0 = await heap();
  const r = await runPhase(TOTAL);
  const inFlight = transactions.stats.serverTransactions;
  const h1 = await heap();
  if (args['heap-snapshot']) (await import('node:v8')).writeHeapSnapshot(args['heap-snapshot']);
  // Ends every transaction (as timer J would 32 s later), leaving the bindings.
  transactions.close();
  const h2 = await heap();
  const live = ledger.location.count(Date.now());
  const kb = (n: number): string => (n / 1024).toFixed(0);
  console.log(
    `node ${process.version}; ${TOTAL} registrations of ${USERS} distinct users, ${PHONES} phones in flight, file log fsync=batch, memory backend\n` +
      `heap + buffers: before ${kb(h0)} KiB, with ${inFlight} server transactions alive ${kb(h1)} KiB, after they ended ${kb(h2)} KiB\n` +
      `bytes per transaction in flight (Completed, awaiting timer J): ${Math.round((h1 - h2) / inFlight)}\n` +
      `bytes per live registration (location + audit + nonce-count tracker, heap + buffers): ${Math.round((h2 - h0) / live)} (${live} live bindings)\n` +
      `rss ${kb(process.memoryUsage().rss)} KiB; ${Math.round((TOTAL / r.wallMs) * 1000)} registrations/s wall`,
  );
}

try {
  if (MEMORY) {
    await memoryRun();
    process.exitCode = 0;
  } else {
  await runPhase(Number(args.warmup));
  const r = await runPhase(TOTAL);
  const per = (r.cpuUs - r.clientUs) / TOTAL;
  const stats = ledger.location.count(Date.now());
  console.log(
    `node ${process.version}; ${TOTAL} registrations, ${PHONES} phones in flight, ${USERS} users, file log fsync=batch\n` +
      `server-side CPU per registration: ${per.toFixed(1)} us  (process ${(r.cpuUs / TOTAL).toFixed(1)} us incl. simulated phones ${(r.clientUs / TOTAL).toFixed(1)} us)\n` +
      `registrations per CPU-second: ${Math.round(1e6 / per).toLocaleString('en-US')}; wall ${Math.round((TOTAL / r.wallMs) * 1000).toLocaleString('en-US')}/s; live bindings ${stats}`,
  );
  }
} finally {
  transactions.close();
  await ledger.close();
  await rm(dir, { recursive: true, force: true });
}

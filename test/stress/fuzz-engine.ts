/**
 * A mutation fuzzer for sipledger's whole request path, in process: real SIP messages (the golden
 * fixtures, plus requests generated against the running instance so that some carry a valid digest
 * and reach the registrar and the proxy) are mutated and fed to the UDP listener exactly as datagrams
 * arrive from the network, so each one goes through the parser, the transport's Via stamping and
 * error answers, the transaction layer, the router, the authenticator, the registrar and the proxy
 * core.
 *
 * Invariants checked for every message:
 *  - nothing escapes: no uncaught exception, no unhandled rejection, no error logged by a safety net
 *    ("request handling failed", "message handler threw"...), which would be a bug turned into a 500;
 *  - every response sipledger sends parses back as a well-formed response (status 100-699, Via, From,
 *    To, Call-ID, CSeq), and every request it relays parses as a request;
 *  - nothing hangs: a server transaction that still awaits its final response `hangAfterMs` after
 *    its request arrived is a hang; an INVITE in Proceeding after 310 s, past the 300 s lifetime of
 *    the branch it waits for (timer C lets a proxy wait for a callee more than 3 minutes). Time the
 *    event loop stood still, measured by a ticker, does not count: a long GC or a descheduled
 *    process is not a transaction that never ends;
 *  - memory stays bounded: the heap after a forced GC at the end, against the heap after warm-up.
 *    Finished UDP non-INVITE server transactions linger 32 s (RFC 3261 Timer J), so at thousands
 *    of messages a second a hundred thousand of them are alive: with `drain`, both figures are taken
 *    with no transaction alive (the warm-up's transactions and the run's are waited out first), so
 *    the growth is what the run left behind; without it, the live transaction counts at both points
 *    are reported beside the figures.
 *
 * Speed: the feed is bounded by the live transaction cap (rate <= cap / 32 s) and by CPU, most of
 * which is sipledger's own request path. The harness does one parse per datagram sipledger sends
 * (its checks, taken at the UDP socket, so what is judged is exactly what goes on the wire), and the
 * sink reuses that parse instead of parsing the relayed request again.
 *
 * Reproducibility: the fed messages depend only on the seed (nonces aside). The sink's answers and
 * the ACKs to failed INVITEs draw from their own generators, since when they run depends on timing.
 *
 * The fuzzer keeps every packet on loopback: DNS answers come from a stand-in that knows only
 * loopback names, and requests relayed to any other address are delivered to a local sink instead.
 * The sink answers relayed requests (sometimes with mutated responses), which drives client
 * transactions and response selection too.
 */
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { startSipledger, type Sipledger } from '../../src/app.js';
import { configFromObject } from '../../src/config/config.js';
import { createResponse, parseMessage, serialize, type AnyMessage } from '../../src/core/sip/index.js';
import type { ServerTransaction } from '../../src/core/transaction/index.js';
import { digestResponse } from '../support/digest.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sip');

export interface FuzzOptions {
  /** Messages to feed. */
  readonly count: number;
  /** PRNG seed; the same seed gives the same mutations (timing aside). */
  readonly seed?: number;
  /** The event log: memory (the log grows with the run) or a file log in a temp dir (fsync none). */
  readonly log?: 'memory' | 'file';
  /** A server transaction still without a final response this long after its request is a hang. */
  readonly hangAfterMs?: number;
  /** Messages fed before the heap baseline is taken. */
  readonly warmup?: number;
  /**
   * Take both heap figures with no transaction alive: after warm-up, feeding waits until the
   * warm-up's transactions have ended (~32 s); at the end, until every transaction has ended (up to
   * 40 s).
   */
  readonly drain?: boolean;
  /**
   * Feeding pauses while more server transactions, or more client transactions, than this are
   * alive (UDP non-INVITE transactions linger 32 s after their final response, RFC 3261 Timer J/K
   * and timer D for INVITE client transactions), so the steady rate is at most about this / 32 s per
   * table. Default 100,000: below the transaction layer's own cap of 150,000 per table, so feeding
   * pauses before sipledger would answer 503.
   */
  readonly maxLiveTransactions?: number;
  /** Called about every `progressEvery` messages. */
  readonly onProgress?: (p: FuzzProgress) => void;
  readonly progressEvery?: number;
}

export interface FuzzProgress {
  readonly messages: number;
  readonly elapsedMs: number;
  readonly crashes: number;
  readonly hangs: number;
  readonly heapUsedBytes: number;
  readonly serverTransactions: number;
  readonly clientTransactions: number;
  /** Crash and hang descriptions found since the previous progress report. */
  readonly newFindings: string[];
}

export interface FuzzReport {
  readonly seed: number;
  readonly messages: number;
  /** Uncaught exceptions, unhandled rejections and errors logged by safety nets. */
  readonly crashes: number;
  readonly crashDetails: string[];
  readonly hangs: number;
  readonly hangDetails: string[];
  readonly responses: number;
  /** Responses that do not parse, other than the stateless answers below. */
  readonly malformedResponses: number;
  /** Stateless 400/505/513 answers to unparseable requests that do not parse themselves. */
  readonly malformedErrorAnswers: number;
  readonly errorAnswerDetails: string[];
  readonly relayedRequests: number;
  readonly malformedRelays: number;
  readonly badDetails: string[];
  readonly statuses: Record<string, number>;
  /** 5xx responses sent, by status and reason phrase (sipledger's own, and downstream answers relayed). */
  readonly serverErrors: Record<string, number>;
  readonly parsedInputs: number;
  readonly registrations: number;
  /** Heap after a forced GC once the warm-up was fed (and, with `drain`, its transactions ended). */
  readonly heapBaselineBytes: number;
  /** Server + client transactions alive when the baseline was taken. */
  readonly liveTransactionsAtBaseline: number;
  /** Heap after a forced GC right after the last message was fed, with the transactions still alive. */
  readonly heapFeedEndBytes: number;
  readonly liveTransactionsAtFeedEnd: number;
  /** Heap after a forced GC at the end (with `drain`, once every transaction ended). */
  readonly heapEndBytes: number;
  readonly heapGrowthBytes: number;
  readonly heapPeakBytes: number;
  /** Transactions alive when heapEndBytes was taken. */
  readonly liveServerTransactions: number;
  readonly liveClientTransactions: number;
  readonly durationMs: number;
  readonly messagesPerSecond: number;
  /** CPU time (user + system) of the whole process while feeding, without the baseline wait. */
  readonly cpuMs: number;
  /** Messages per CPU second: the rate on one otherwise idle core, when the cap does not bind. */
  readonly messagesPerCpuSecond: number;
}

// ---- PRNG -------------------------------------------------------------------------------------

/** xorshift32: small, fast, reproducible. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  pick<T>(arr: readonly T[]): T {
    return arr[this.int(arr.length)]!;
  }
  chance(p: number): boolean {
    return this.next() / 0x1_0000_0000 < p;
  }
}

// ---- mutations --------------------------------------------------------------------------------

const INTERESTING_BYTES = [0x00, 0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x3b, 0x2c, 0x3c, 0x3e, 0x22, 0x5c, 0x25, 0x40, 0x3d, 0xff, 0xc3, 0x7f, 0x30, 0x39];
const INTERESTING_VALUES = [
  '',
  ' ',
  '0',
  '-1',
  '4294967296',
  '99999999999999999999999999',
  '1e9',
  '0x7fffffff',
  '<sip:@>',
  '<>',
  'sip:',
  'sips:%00@[::1]:99999',
  '"unterminated',
  'a'.repeat(9000),
  ';;;;;;',
  ',,,,',
  '<sip:a@b>;tag=' + 'x'.repeat(300),
  'Digest ',
  'Digest username="alice", realm="example.com", nonce="", uri="", response=""',
  'Digest nonce=",,,,", response',
  'SIP/2.0/UDP',
  'SIP/2.0/UDP [::1',
  'SIP/2.0/UDP 127.0.0.1:0;branch=z9hG4bK',
  'SIP/2.0/TCP 127.0.0.1;rport=;received=',
  '\u00e9\u00e8\u4e2d\u6587',
  '%ff%fe%00',
  '1 INVITE',
  '2147483648 REGISTER',
  'INVITE',
];
const METHODS = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'REGISTER', 'OPTIONS', 'MESSAGE', 'SUBSCRIBE', 'NOTIFY', 'PRACK', 'UPDATE', 'REFER', 'INFO', 'FOO', 'invite', ''];

function lines(buf: Buffer): string[] {
  return buf.toString('latin1').split('\r\n');
}

function fromLines(ls: string[]): Buffer {
  return Buffer.from(ls.join('\r\n'), 'latin1');
}

type Mutation = (buf: Buffer, rng: Rng, seeds: readonly Buffer[]) => Buffer;

const MUTATIONS: Mutation[] = [
  // flip a byte
  (b, r) => {
    if (b.length === 0) return b;
    const c = Buffer.from(b);
    c[r.int(c.length)] = r.next() & 0xff;
    return c;
  },
  // insert interesting bytes
  (b, r) => {
    const at = r.int(b.length + 1);
    const n = 1 + r.int(4);
    const ins = Buffer.from(Array.from({ length: n }, () => r.pick(INTERESTING_BYTES)));
    return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
  },
  // delete a range
  (b, r) => {
    if (b.length < 2) return b;
    const at = r.int(b.length);
    const n = 1 + r.int(Math.min(64, b.length - at));
    return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
  },
  // truncate
  (b, r) => b.subarray(0, r.int(b.length + 1)),
  // duplicate a line
  (b, r) => {
    const ls = lines(b);
    const i = r.int(ls.length);
    ls.splice(i, 0, ls[i]!);
    return fromLines(ls);
  },
  // delete a line
  (b, r) => {
    const ls = lines(b);
    ls.splice(r.int(ls.length), 1);
    return fromLines(ls);
  },
  // swap two lines
  (b, r) => {
    const ls = lines(b);
    const i = r.int(ls.length);
    const j = r.int(ls.length);
    [ls[i], ls[j]] = [ls[j]!, ls[i]!];
    return fromLines(ls);
  },
  // replace a header value
  (b, r) => {
    const ls = lines(b);
    const i = 1 + r.int(Math.max(1, ls.length - 1));
    const l = ls[i];
    if (l === undefined) return b;
    const colon = l.indexOf(':');
    if (colon === -1) return b;
    ls[i] = `${l.slice(0, colon)}: ${r.pick(INTERESTING_VALUES)}`;
    return fromLines(ls);
  },
  // replace a number with a boundary number
  (b, r) => {
    const s = b.toString('latin1');
    const nums = [...s.matchAll(/\d+/g)];
    if (nums.length === 0) return b;
    const m = r.pick(nums);
    const v = r.pick(['0', '1', '65535', '65536', '4294967295', '4294967296', '-1', '00000000000000000070', '9'.repeat(30)]);
    return Buffer.from(s.slice(0, m.index) + v + s.slice(m.index! + m[0].length), 'latin1');
  },
  // splice in a header line from another seed
  (b, r, seeds) => {
    const ls = lines(b);
    const other = lines(r.pick(seeds));
    const donor = other[1 + r.int(Math.max(1, other.length - 1))] ?? '';
    ls.splice(1 + r.int(Math.max(1, ls.length - 1)), 0, donor);
    return fromLines(ls);
  },
  // repeat a line many times
  (b, r) => {
    const ls = lines(b);
    const i = 1 + r.int(Math.max(1, ls.length - 1));
    const l = ls[i] ?? 'Via: SIP/2.0/UDP 127.0.0.1';
    ls.splice(i, 0, ...Array.from({ length: 10 + r.int(300) }, () => l));
    return fromLines(ls);
  },
  // change the method (request line and CSeq independently)
  (b, r) => {
    const ls = lines(b);
    const m = r.pick(METHODS);
    if (r.chance(0.5)) ls[0] = ls[0]!.replace(/^\S*/, m);
    else {
      const i = ls.findIndex((l) => /^cseq\s*:/i.test(l));
      if (i !== -1) ls[i] = ls[i]!.replace(/\S+\s*$/, m);
    }
    return fromLines(ls);
  },
  // Content-Length lies
  (b, r) => {
    const s = b.toString('latin1');
    const v = r.pick(['0', '1', '5', '99999', '-5', 'abc', String(b.length)]);
    if (/content-length\s*:/i.test(s)) return Buffer.from(s.replace(/(content-length|^l)\s*:\s*\d*/im, `Content-Length: ${v}`), 'latin1');
    return Buffer.from(s.replace('\r\n\r\n', `\r\nContent-Length: ${v}\r\n\r\n`), 'latin1');
  },
  // change letter case of a random span
  (b, r) => {
    const c = Buffer.from(b);
    const at = r.int(c.length);
    for (let i = at; i < Math.min(c.length, at + 1 + r.int(40)); i++) {
      const x = c[i]!;
      if (x >= 0x61 && x <= 0x7a) c[i] = x - 32;
      else if (x >= 0x41 && x <= 0x5a) c[i] = x + 32;
    }
    return c;
  },
  // bare LF line ends, or folded header lines
  (b, r) => {
    const s = b.toString('latin1');
    if (r.chance(0.5)) return Buffer.from(s.replace(/\r\n/g, '\n'), 'latin1');
    return Buffer.from(s.replace(/, /g, ',\r\n '), 'latin1');
  },
];

export function mutate(buf: Buffer, rng: Rng, seeds: readonly Buffer[], rounds = 1 + rng.int(4)): Buffer {
  let out = buf;
  for (let i = 0; i < rounds; i++) out = rng.pick(MUTATIONS)(out, rng, seeds);
  // A UDP datagram cannot exceed 65507 bytes.
  return out.length > 65_000 ? out.subarray(0, 65_000) : out;
}

/** The golden fixtures (requests and responses). */
export function fixtureSeeds(): Buffer[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.sip'))
    .sort()
    .map((f) => readFileSync(path.join(FIXTURES, f)));
}

// ---- checks -----------------------------------------------------------------------------------

/** Parser limits for judging what sipledger sends: far above its own, so only form is judged. */
const CHECK_LIMITS = { maxMessageBytes: 1 << 20, maxHeaders: 10_000, maxLineLength: 1 << 20 };

/** Why a parsed message is not a well-formed response, or undefined. */
function messageResponseProblem(m: AnyMessage): string | undefined {
  if (m.isRequest) return 'a request where a response was expected';
  if (m.status < 100 || m.status > 699) return `status ${m.status}`;
  for (const h of ['via', 'from', 'to', 'call-id', 'cseq']) if (!m.has(h)) return `no ${h}`;
  return undefined;
}

/** Why a parsed relayed message is not a well-formed request, or undefined (responses pass). */
function requestProblem(m: AnyMessage): string | undefined {
  if (!m.isRequest) return undefined;
  for (const h of ['via', 'from', 'to', 'call-id', 'cseq', 'max-forwards']) if (!m.has(h)) return `relayed ${m.method} without ${h}`;
  return undefined;
}

/** Why a response is not well-formed, or undefined. */
export function responseProblem(bytes: Buffer): string | undefined {
  const r = parseMessage(bytes, CHECK_LIMITS);
  return r.ok ? messageResponseProblem(r.message) : `does not parse: ${r.reason}`;
}

/** Why a relayed request is not well-formed, or undefined. */
export function relayProblem(bytes: Buffer): string | undefined {
  if (bytes.length <= 4 && bytes.every((x) => x === 0x0d || x === 0x0a)) return undefined;
  const r = parseMessage(bytes, CHECK_LIMITS);
  return r.ok ? requestProblem(r.message) : `does not parse: ${r.reason}`;
}

// ---- the run ----------------------------------------------------------------------------------

const USERS = [
  { username: 'alice', password: 'alice-secret', domain: 'example.com' },
  { username: 'bob', password: 'bob-secret', domain: 'example.com' },
  { username: '10', password: 'ten-secret', domain: '192.168.1.15' },
  { username: '11', password: 'eleven-secret', domain: '192.168.1.15' },
];

function getGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  return gc ?? (() => undefined);
}

interface Internals {
  udp: dgram.Socket;
}

/**
 * The UDP listener's socket. The transport manager has no public handle on it; the fuzzer injects
 * datagrams as that socket's 'message' events so that the real receive path runs, with any source.
 */
function internals(app: Sipledger): Internals {
  const listeners = (app.transports as unknown as { listeners?: Array<{ udp?: dgram.Socket }> }).listeners;
  const udp = listeners?.find((l) => l.udp)?.udp;
  if (!udp) throw new Error('fuzz: cannot reach the UDP listener socket of the transport manager');
  const proxy = app.proxy as unknown as { opts?: { resolver?: { dns?: unknown } } };
  const resolver = proxy.opts?.resolver;
  if (!resolver || !('dns' in resolver)) throw new Error('fuzz: cannot reach the proxy resolver to keep DNS on loopback');
  const notFound = (name: string): Promise<never> => Promise.reject(Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' }));
  resolver.dns = {
    resolveSrv: (name: string) => notFound(name),
    lookup: (host: string) => (host === 'localhost' ? Promise.resolve([{ address: '127.0.0.1', family: 4 }]) : notFound(host)),
  };
  return { udp };
}

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const seed = opts.seed ?? (Date.now() & 0x7fffffff);
  const rng = new Rng(seed);
  const hangAfterMs = opts.hangAfterMs ?? 40_000;
  const warmup = opts.warmup ?? Math.min(5_000, Math.floor(opts.count / 10));
  const gc = getGc();
  const crashDetails: string[] = [];
  let crashes = 0;
  const crash = (what: string): void => {
    crashes++;
    if (crashDetails.length < 20) crashDetails.push(what.slice(0, 2000));
  };

  // Errors logged by the application's safety nets count as crashes: each is a bug caught late.
  const errorSink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const o = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string; stack?: string } };
          if ((o.level ?? 0) >= 50) crash(`logged error: ${o.msg} ${o.err?.stack ?? o.err?.message ?? ''}`);
        } catch {
          /* not JSON */
        }
      }
      cb();
    },
  });
  const logger = pino({ level: 'error' }, errorSink);
  const onUncaught = (err: Error): void => crash(`uncaught exception: ${err.stack ?? err.message}`);
  const onUnhandled = (reason: unknown): void => crash(`unhandled rejection: ${(reason as Error)?.stack ?? String(reason)}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);

  const dir = mkdtempSync(path.join(tmpdir(), 'sipledger-fuzz-'));
  const sink = dgram.createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  const sinkPort = sink.address().port;
  let sinkOpen = true;

  const config = configFromObject(
    {
      listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }],
      domains: [
        { domain: 'example.com', backend: 'local' },
        { domain: '192.168.1.15', backend: 'local' },
      ],
      backends: { local: { type: 'memory', users: USERS } },
      auth: { secret: 'fuzz-secret-0123456789abcdef', nonceLifetime: 30 },
      log: opts.log === 'file' ? { type: 'file', dir: path.join(dir, 'log'), fsync: 'none' } : { type: 'memory' },
      snapshots: { every: 0 },
      admin: { enabled: false },
      logging: { level: 'error' },
    },
    '<fuzz>',
    dir,
  );
  const app = await startSipledger(config, logger);
  const { udp } = internals(app);
  const sipPort = app.transports.listening()[0]!.port;

  const statuses: Record<string, number> = {};
  const serverErrors: Record<string, number> = {};
  const badDetails: string[] = [];
  let responses = 0;
  let malformedResponses = 0;
  let malformedErrorAnswers = 0;
  const errorAnswerDetails: string[] = [];
  let relayedRequests = 0;
  let malformedRelays = 0;
  let parsedInputs = 0;
  const bad = (what: string): void => {
    if (badDetails.length < 20) badDetails.push(what.slice(0, 1000));
  };
  const rinfo = { address: '127.0.0.1', family: 'IPv4' as const, port: sinkPort, size: 0 };
  // The fed stream draws from `rng` only, in feeding order; what runs when datagrams come back (the
  // sink's answers, ACKs to failed INVITEs) draws from generators of its own.
  const sinkRng = new Rng(seed ^ 0x5a5a5a5a);
  const ackRng = new Rng(seed ^ 0x3c3c3c3c);
  // Responses sent while an unparseable input is being injected are the transport's stateless
  // error answers (400/505/513 built from what could be read of the request).
  let injecting = false;
  let malformedBefore = 0;
  const inject = (buf: Buffer, from: Rng): void => {
    injecting = true;
    malformedBefore = app.transports.stats.malformed;
    try {
      // Sources spread over 127.0.0.0/8, as from many peers: the flood limit and bans apply per
      // source and would otherwise turn one busy fuzzer into a banned address answered 403.
      udp.emit('message', buf, { ...rinfo, address: `127.${from.int(4)}.${from.int(256)}.${1 + from.int(254)}`, size: buf.length });
    } finally {
      injecting = false;
    }
  };

  // Every datagram sipledger sends is judged where it leaves, on its UDP socket, so what is judged is
  // exactly what goes on the wire (a response without a usable Via is never sent): a response must
  // parse as a well-formed response, a request it relays as a well-formed request. Final failures
  // to INVITE are acknowledged, as a phone would, so INVITE server transactions complete instead of
  // retransmitting for 32 s. Datagrams for the sink keep their parse, which the sink reuses.
  const toSink: Array<{ bytes: Buffer; msg: AnyMessage | undefined }> = [];
  let toSinkHead = 0;
  const checkSent = (bytes: Buffer, port: number, address: string): void => {
    const r = parseMessage(bytes, CHECK_LIMITS);
    const msg = r.ok ? r.message : undefined;
    if (port === sinkPort && address === '127.0.0.1') {
      if (toSink.length - toSinkHead >= 10_000) toSinkHead++;
      toSink.push({ bytes, msg });
      if (toSinkHead > 10_000) {
        toSink.splice(0, toSinkHead);
        toSinkHead = 0;
      }
    }
    const isResponse = msg ? !msg.isRequest : bytes.subarray(0, 8).toString('latin1') === 'SIP/2.0 ';
    if (!isResponse) {
      relayedRequests++;
      const problem = r.ok ? requestProblem(r.message) : bytes.length <= 4 && bytes.every((x) => x === 0x0d || x === 0x0a) ? undefined : `does not parse: ${r.reason}`;
      if (problem) {
        malformedRelays++;
        bad(`relay ${problem}:\n${bytes.toString('latin1').slice(0, 600)}`);
      }
      return;
    }
    responses++;
    const status = msg && !msg.isRequest ? String(msg.status) : (/^SIP\/2\.0 (\d{3})/.exec(bytes.toString('latin1', 0, 16))?.[1] ?? 'unreadable');
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (msg && !msg.isRequest && msg.status >= 500 && msg.status < 600) {
      const key = `${msg.status} ${msg.reason.slice(0, 60)}`;
      if (serverErrors[key] !== undefined || Object.keys(serverErrors).length < 50) serverErrors[key] = (serverErrors[key] ?? 0) + 1;
    }
    const problem = r.ok ? messageResponseProblem(r.message) : `does not parse: ${r.reason}`;
    if (msg && !msg.isRequest && msg.status >= 300 && safe(() => msg.cseq().method) === 'INVITE') {
      const ack = ackFor(msg);
      if (ack) setImmediate(() => inject(ack, ackRng));
    }
    if (!problem) return;
    if (injecting && tm.stats.malformed > malformedBefore) {
      malformedErrorAnswers++;
      if (errorAnswerDetails.length < 20) errorAnswerDetails.push(`${status} answer to an unparseable request ${problem}:\n${bytes.toString('latin1').slice(0, 600)}`);
    } else {
      malformedResponses++;
      bad(`response ${problem}:\n${bytes.toString('latin1').slice(0, 600)}`);
    }
  };
  const tm = app.transports;
  const udpSend = udp.send.bind(udp) as (...args: unknown[]) => void;
  (udp as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]): void => {
    const [bytes, port, address] = args;
    if (Buffer.isBuffer(bytes) && typeof port === 'number' && typeof address === 'string') checkSent(bytes, port, address);
    else bad(`UDP send in an unexpected form: ${typeof bytes} ${typeof port} ${typeof address}`);
    udpSend(...args);
  };
  // Requests relayed to any address but loopback go to the sink instead.
  const origSend = tm.send.bind(tm);
  tm.send = (bytes: Buffer, dest: Parameters<typeof origSend>[1]) => {
    const local = dest.address.startsWith('127.') || dest.address === '::1';
    return origSend(bytes, local && dest.transport === 'udp' ? dest : { ...dest, address: '127.0.0.1', port: sinkPort, transport: 'udp' });
  };

  // The sink plays every downstream phone: it answers relayed requests, now and then with a mutated
  // response, and acknowledges nothing (the proxy's client transactions do that).
  const fixtures = fixtureSeeds();
  const sinkParse = (buf: Buffer): AnyMessage | undefined => {
    // Datagrams on loopback arrive in the order they were sent, or not at all.
    while (toSinkHead < toSink.length) {
      const e = toSink[toSinkHead++]!;
      if (e.bytes.length === buf.length && e.bytes.equals(buf)) return e.msg;
    }
    const r = parseMessage(buf);
    return r.ok ? r.message : undefined;
  };
  sink.on('message', (buf) => {
    const m = sinkParse(buf);
    if (toSinkHead > 10_000) {
      toSink.splice(0, toSinkHead);
      toSinkHead = 0;
    }
    if (!m || !m.isRequest || m.method === 'ACK') return;
    const req = m;
    const status = sinkRng.pick([180, 200, 200, 404, 486, 503, 603]);
    let out: Buffer;
    try {
      const res = createResponse(req, status, status === 200 && req.method === 'INVITE' ? { headers: [['Contact', `<sip:callee@127.0.0.1:${sinkPort}>`]] } : {});
      out = serialize(res);
    } catch {
      return;
    }
    const mutated = sinkRng.chance(0.2);
    if (mutated) out = mutate(out, sinkRng, fixtures, 1);
    sink.send(out, sipPort, '127.0.0.1');
    // After a provisional or a mutated answer, a proper final one, so every branch ends promptly;
    // sent twice, as a UAS retransmits it (Timer G), so one lost datagram does not leave it ringing.
    if (status === 180 || mutated) {
      try {
        const final = serialize(createResponse(req, 486));
        sink.send(final, sipPort, '127.0.0.1');
        setTimeout(() => sinkOpen && sink.send(final, sipPort, '127.0.0.1'), 500).unref();
      } catch {
        /* unbuildable */
      }
    }
  });

  // Hang watch: each new request's server transaction, checked once `hangAfterMs` has passed. Entries
  // are in arrival order; one still waiting at the head holds the queue, so answered entries behind
  // it are dropped whenever the queue has doubled (they would otherwise keep finished transactions
  // and their messages alive for up to 310 s).
  const watch: Array<{ tx: ServerTransaction; at: number; stalledAt: number; req: AnyMessage }> = [];
  // Time the event loop stood still (a long GC, or this process descheduled on a busy machine) is
  // not time sipledger had to answer: a 100 ms ticker sums how late it ran, and a request's wait is
  // counted without the stalls since it arrived. A transaction that never ends still shows.
  let stalledMs = 0;
  let lastTick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    stalledMs += Math.max(0, now - lastTick - 120);
    lastTick = now;
  }, 100);
  ticker.unref();
  let watchHead = 0;
  let watchCompactAt = 20_000;
  let hangs = 0;
  const hangDetails: string[] = [];
  const origReceive = app.transactions.receive.bind(app.transactions);
  app.transactions.receive = (msg: AnyMessage) => {
    parsedInputs++;
    origReceive(msg);
    if (msg.isRequest && msg.method !== 'ACK') {
      const tx = app.transactions.findServer(msg);
      if (tx) watch.push({ tx, at: Date.now(), stalledAt: stalledMs, req: msg });
    }
  };
  const stillWaiting = (tx: ServerTransaction): boolean => (tx as unknown as { awaitingFinal(): boolean }).awaitingFinal() && tx.state !== 'Terminated';
  const describe = (m: AnyMessage): string => (m.isRequest ? `${m.method} ${m.uri} Call-ID ${safe(() => m.callId)}` : '');
  const checkWatch = (all: boolean): void => {
    const now = Date.now();
    while (watchHead < watch.length) {
      const w = watch[watchHead]!;
      if (!stillWaiting(w.tx)) {
        watchHead++;
        continue;
      }
      // An INVITE waits for its callee as long as the relayed branch does: once any provisional
      // came back (a 180 relayed, or only a 100 absorbed by the proxy), RFC 3261 s16.6 step 11
      // lets it wait for timer C, more than 3 minutes, and sipledger ends such a branch at its
      // client transaction's 300 s lifetime. The final answer can be lost in between: datagrams are
      // lost on loopback too, when this process stalls and its receive buffer fills. So an INVITE
      // in Proceeding is a hang only after that lifetime; every other transaction after hangAfterMs.
      const limit = w.tx.isInvite && w.tx.state === 'Proceeding' ? Math.max(hangAfterMs, 310_000) : hangAfterMs;
      const waited = now - w.at - (stalledMs - w.stalledAt);
      if (!all && waited < limit) break;
      if (waited >= limit) {
        hangs++;
        if (hangDetails.length < 20) hangDetails.push(`${describe(w.req)} still ${w.tx.state} after ${now - w.at} ms (${stalledMs - w.stalledAt} ms of them with the event loop stalled)`);
        watchHead++;
        continue;
      }
      break;
    }
    if (watchHead > 10_000) {
      watch.splice(0, watchHead);
      watchHead = 0;
    }
    if (watch.length - watchHead > watchCompactAt) {
      let n = 0;
      for (let i = watchHead; i < watch.length; i++) if (stillWaiting(watch[i]!.tx)) watch[n++] = watch[i]!;
      watch.length = n;
      watchHead = 0;
      watchCompactAt = Math.max(20_000, 2 * n);
    }
  };

  // Generated seeds that pass authentication: a fresh nonce from the instance, a correct digest.
  let nc = 0;
  const generated = (): Buffer => {
    const user = rng.pick(USERS);
    const callId = `fuzz-${rng.next().toString(16)}@127.0.0.1`;
    const branch = `z9hG4bK${rng.next().toString(16)}${rng.next().toString(16)}`;
    const kind = rng.int(3);
    if (kind === 0 || kind === 1) {
      const method = kind === 0 ? 'REGISTER' : 'INVITE';
      const header = kind === 0 ? 'Authorization' : 'Proxy-Authorization';
      const challenge = app.authenticator.challenge(method, user.domain)!;
      const nonce = /nonce="([^"]+)"/.exec(challenge.headers[0]![1])![1]!;
      const target = kind === 0 ? `sip:${user.domain}` : `sip:${rng.pick(USERS.filter((u) => u.domain === user.domain)).username}@${user.domain}`;
      const cnonce = rng.next().toString(16);
      const count = (++nc).toString(16).padStart(8, '0');
      const response = digestResponse({ username: user.username, realm: user.domain, password: user.password, method, uri: target, nonce, qop: 'auth', nc: count, cnonce });
      const body = kind === 1 ? 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n' : '';
      return Buffer.from(
        [
          `${method} ${target} SIP/2.0`,
          `Via: SIP/2.0/UDP 127.0.0.1:${sinkPort};branch=${branch};rport`,
          'Max-Forwards: 70',
          `From: <sip:${user.username}@${user.domain}>;tag=${rng.next().toString(16)}`,
          `To: <sip:${kind === 0 ? user.username : target.slice(4)}${kind === 0 ? `@${user.domain}` : ''}>`,
          `Call-ID: ${callId}`,
          `CSeq: ${1 + rng.int(1000)} ${method}`,
          `Contact: <sip:${user.username}@127.0.0.1:${sinkPort}>`,
          ...(kind === 0 ? [`Expires: ${rng.pick(['0', '60', '3600', '7200'])}`] : []),
          `${header}: Digest username="${user.username}", realm="${user.domain}", nonce="${nonce}", uri="${target}", response="${response}", algorithm=MD5, qop=auth, nc=${count}, cnonce="${cnonce}"`,
          ...(body ? ['Content-Type: application/sdp'] : []),
          `Content-Length: ${body.length}`,
          '',
          body,
        ].join('\r\n'),
        'latin1',
      );
    }
    // An unauthenticated call from a foreign domain to a served user: relayed to the bindings.
    const to = rng.pick(USERS);
    return Buffer.from(
      [
        `INVITE sip:${to.username}@${to.domain} SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${sinkPort};branch=${branch};rport`,
        'Max-Forwards: 70',
        `From: <sip:stranger@example.net>;tag=${rng.next().toString(16)}`,
        `To: <sip:${to.username}@${to.domain}>`,
        `Call-ID: ${callId}`,
        'CSeq: 1 INVITE',
        `Contact: <sip:stranger@127.0.0.1:${sinkPort}>`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
      'latin1',
    );
  };

  // A few unmutated generated requests first, so that most users have bindings to relay calls to.
  for (let i = 0; i < 12; i++) inject(generated(), rng);
  await sleep(50);

  const started = Date.now();
  const cpuStarted = process.cpuUsage();
  // Time spent waiting for the warm-up's transactions to end, which is not feeding time.
  let baselineWaitMs = 0;
  let baselineWaitCpuUs = 0;
  let heapBaseline = 0;
  let liveAtBaseline = 0;
  let heapPeak = 0;
  const recent: Buffer[] = [];
  const progressEvery = opts.progressEvery ?? 100_000;
  const maxLive = opts.maxLiveTransactions ?? 100_000;
  const stats = app.transactions.stats;
  const live = (): number => stats.serverTransactions + stats.clientTransactions;
  let sent = 0;
  let reportedCrashes = 0;
  let reportedHangs = 0;
  try {
    while (sent < opts.count) {
      const batch = Math.min(200, opts.count - sent);
      for (let i = 0; i < batch; i++) {
        let msg: Buffer;
        const roll = rng.int(100);
        if (roll < 15) msg = generated();
        else if (roll < 25) msg = mutate(generated(), rng, fixtures, 1);
        else if (roll < 30 && recent.length > 0) msg = followUp(rng.pick(recent), rng);
        else msg = mutate(rng.pick(fixtures), rng, fixtures);
        if (roll < 25 && recent.length < 64) recent.push(msg);
        else if (roll < 25) recent[rng.int(recent.length)] = msg;
        inject(msg, rng);
      }
      sent += batch;
      await new Promise<void>((r) => setImmediate(r));
      checkWatch(false);
      while (stats.serverTransactions > maxLive || stats.clientTransactions > maxLive) {
        await sleep(5);
        checkWatch(false);
      }
      if (heapBaseline === 0 && sent >= warmup) {
        const waitFrom = Date.now();
        const waitCpuFrom = process.cpuUsage();
        await sleep(20);
        if (opts.drain) {
          const end = Date.now() + 40_000;
          while (Date.now() < end && live() > 0) {
            await sleep(200);
            checkWatch(false);
          }
        }
        baselineWaitMs = Date.now() - waitFrom;
        const waitCpu = process.cpuUsage(waitCpuFrom);
        baselineWaitCpuUs = waitCpu.user + waitCpu.system;
        gc();
        heapBaseline = process.memoryUsage().heapUsed;
        liveAtBaseline = live();
      }
      if (sent % 2_000 < batch) heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
      if (opts.onProgress && sent % progressEvery < batch) {
        opts.onProgress({
          messages: sent,
          elapsedMs: Date.now() - started - baselineWaitMs,
          crashes,
          hangs,
          heapUsedBytes: process.memoryUsage().heapUsed,
          serverTransactions: stats.serverTransactions,
          clientTransactions: stats.clientTransactions,
          newFindings: [...crashDetails.slice(reportedCrashes), ...hangDetails.slice(reportedHangs)],
        });
        reportedCrashes = crashDetails.length;
        reportedHangs = hangDetails.length;
      }
    }
    const durationMs = Date.now() - started - baselineWaitMs;
    const cpu = process.cpuUsage(cpuStarted);
    const cpuMs = (cpu.user + cpu.system - baselineWaitCpuUs) / 1000;
    gc();
    const heapFeedEnd = process.memoryUsage().heapUsed;
    const liveAtFeedEnd = live();
    // Let the last requests be answered, then look for any that never were.
    const deadline = Date.now() + hangAfterMs + 1_000;
    while (Date.now() < deadline) {
      checkWatch(false);
      if (watchHead >= watch.length) break;
      await sleep(100);
    }
    checkWatch(true);
    if (opts.drain) {
      const end = Date.now() + 40_000;
      while (Date.now() < end && live() > 0) await sleep(200);
    }
    // The harness's own queues hold messages and transactions: emptied so the end figure is sipledger's.
    watch.length = 0;
    watchHead = 0;
    toSink.length = 0;
    toSinkHead = 0;
    recent.length = 0;
    await sleep(50);
    gc();
    const heapEnd = process.memoryUsage().heapUsed;
    if (heapBaseline === 0) {
      heapBaseline = heapEnd;
      liveAtBaseline = live();
    }
    return {
      seed,
      messages: sent,
      crashes,
      crashDetails,
      hangs,
      hangDetails,
      responses,
      malformedResponses,
      malformedErrorAnswers,
      errorAnswerDetails,
      relayedRequests,
      malformedRelays,
      badDetails,
      statuses,
      serverErrors,
      parsedInputs,
      registrations: app.router.stats.registrations,
      heapBaselineBytes: heapBaseline,
      liveTransactionsAtBaseline: liveAtBaseline,
      heapFeedEndBytes: heapFeedEnd,
      liveTransactionsAtFeedEnd: liveAtFeedEnd,
      heapEndBytes: heapEnd,
      heapGrowthBytes: heapEnd - heapBaseline,
      heapPeakBytes: Math.max(heapPeak, heapFeedEnd, heapEnd),
      liveServerTransactions: app.transactions.stats.serverTransactions,
      liveClientTransactions: app.transactions.stats.clientTransactions,
      durationMs,
      cpuMs: Math.round(cpuMs),
      messagesPerCpuSecond: Math.round((sent / Math.max(1, cpuMs)) * 1000),
      messagesPerSecond: Math.round((sent / Math.max(1, durationMs)) * 1000),
    };
  } finally {
    clearInterval(ticker);
    await app.stop(0).catch((err: unknown) => crash(`stop failed: ${(err as Error).message}`));
    sinkOpen = false;
    sink.close();
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUnhandled);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A CANCEL, ACK, BYE or retransmission belonging to an earlier message (transaction matching). */
function followUp(prev: Buffer, rng: Rng): Buffer {
  const ls = lines(prev);
  const kind = rng.pick(['CANCEL', 'ACK', 'BYE', 'RETRANSMIT']);
  if (kind === 'RETRANSMIT') return prev;
  const first = ls[0] ?? '';
  const parts = first.split(' ');
  ls[0] = `${kind} ${parts[1] ?? 'sip:x'} SIP/2.0`;
  const out = ls
    .filter((l) => !/^(authorization|proxy-authorization|content-type)\s*:/i.test(l))
    .map((l) => (/^cseq\s*:/i.test(l) ? l.replace(/\S+\s*$/, kind) : l))
    .map((l) => (/^content-length\s*:/i.test(l) ? 'Content-Length: 0' : l));
  const blank = out.indexOf('');
  return fromLines(blank === -1 ? [...out, '', ''] : [...out.slice(0, blank), '', '']);
}

/** The ACK a phone sends for a failure response to its INVITE (RFC 3261 s17.1.1.3). */
function ackFor(res: AnyMessage): Buffer | undefined {
  try {
    const via = res.headers.find((h) => h.key === 'via')?.value.split(',')[0];
    const from = res.get('from');
    const to = res.get('to');
    if (!via || from === undefined || to === undefined) return undefined;
    return Buffer.from(
      [
        'ACK sip:ack@127.0.0.1 SIP/2.0',
        `Via: ${via}`,
        'Max-Forwards: 70',
        `From: ${from}`,
        `To: ${to}`,
        `Call-ID: ${res.callId}`,
        `CSeq: ${res.cseq().seq} ACK`,
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
      'latin1',
    );
  } catch {
    return undefined;
  }
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

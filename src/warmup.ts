/**
 * Warming the request path before the sockets open.
 *
 * A Node process runs its first seconds several times slower than later: V8 interprets each
 * function until it has run often enough to be compiled. A sipledger restarted under load (a
 * carrier's instance brought back, a site after a crash) meets its phones' registrations with
 * cold code, falls behind, and the phones' retransmissions prolong it (at 1,000 REGISTER/s from a
 * fresh start, p99 0.55-1.8 s and up to thousands of retransmissions, against tens of ms once
 * warm; ADR 0006).
 *
 * warmUp() runs simulated phones through a private instance of the same code: a UDP transport on
 * a loopback port of its own (the phones send real datagrams), the parser, the transaction layer,
 * the router, the digest authenticator (an in-memory backend of made-up users with a random
 * secret), the registrar, the proxy core (the phones call each other: INVITE challenged 407,
 * relayed with credentials to the callee phone, 200, ACK, BYE), the ledger with its projections,
 * on a file log in a temporary directory (fsync none) when the server's log is a file log, and
 * the response serialiser. Nothing of it is
 * shared with the server: no event in the server's log, no metric, no log line; it is closed and
 * removed afterwards (if it fails, the caller logs why and starts cold). What it cannot warm is
 * what needs the real backends: the MySQL and RADIUS clients, Kafka.
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { MemoryBackend } from './backends/auth/memory.js';
import { FileLog } from './backends/log/file-log.js';
import { DigestAuthenticator } from './core/auth/authenticator.js';
import { Ledger } from './core/log/ledger.js';
import { MemoryLog } from './core/log/memory-log.js';
import { ProxyCore, type ProxySender } from './core/proxy/proxy-core.js';
import { Resolver } from './core/proxy/resolver.js';
import { Router, type RouterLedger, type RouterTransaction } from './core/proxy/router.js';
import { DEFAULT_REGISTRAR } from './core/registrar/registrar.js';
import { createResponse, parseMessage, serialize, type ParseLimits } from './core/sip/index.js';
import { TransactionLayer } from './core/transaction/index.js';
import { TransportManager } from './core/transport/index.js';

export interface WarmUpResult {
  /** Registrations completed (each a REGISTER challenged 401, then answered and accepted 200). */
  readonly registrations: number;
  /** Calls completed (INVITE challenged 407, relayed with credentials, answered 200, ACK, BYE). */
  readonly calls: number;
  readonly ms: number;
}

export interface WarmUpOptions {
  readonly registrations: number;
  /** Calls after the registrations, between the simulated phones registered. */
  readonly calls: number;
  /** The server's message limits, for its private transport. */
  readonly limits: ParseLimits;
  /** Warm the file log too (the server's log is a file log), in a directory made under `tmpDir` (default the system's). */
  readonly fileLog: boolean;
  readonly tmpDir?: string;
  readonly logger: Logger;
}

const DOMAIN = 'warmup.invalid';
const USERS = 256;
const PHONES = 16;
/** A phone that got no answer in this long means the warm-up is broken, not slow. */
const ANSWER_TIMEOUT_MS = 10_000;
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

/**
 * A router with its proxy core over a transaction layer, for a private request path (the warm-up,
 * and the in-process benchmarks): registrar defaults, one local address, digest authentication only.
 */
export function privateRouter(opts: {
  transactions: TransactionLayer;
  sender: ProxySender;
  authenticator: DigestAuthenticator;
  ledger: RouterLedger;
  local: { host: string; port: number };
  logger: Logger;
}): Router {
  const { transactions, sender, authenticator, ledger, local, logger } = opts;
  const proxy = new ProxyCore({ transactions, sender, resolver: new Resolver(), local: () => local, logger });
  return new Router({
    auth: { servesDomain: (d) => authenticator.servesDomain(d), authenticate: (r) => authenticator.authenticate(r) },
    ledger,
    proxy,
    registrar: DEFAULT_REGISTRAR,
    localAddresses: () => [local],
    logger,
  });
}

/** Runs `registrations` simulated registrations, then `calls` calls, through a private request path; see the module comment. */
export async function warmUp(opts: WarmUpOptions): Promise<WarmUpResult> {
  const started = performance.now();
  if (opts.registrations <= 0 && opts.calls <= 0) return { registrations: 0, calls: 0, ms: 0 };
  // Its lines would be about made-up phones: a failure is reported by the caller.
  const logger = opts.logger.child({ module: 'warm-up' }, { level: 'silent' });
  const passwords = Array.from({ length: USERS }, () => randomBytes(9).toString('base64'));
  const authenticator = new DigestAuthenticator({
    secret: randomBytes(32),
    logger,
    domains: [{ domain: DOMAIN, backend: new MemoryBackend({ name: 'warm-up', users: passwords.map((password, i) => ({ username: `w${i}`, domain: DOMAIN, password })) }) }],
  });
  const dir = opts.fileLog ? await mkdtemp(path.join(opts.tmpDir ?? tmpdir(), 'sipledger-warm-up-')) : undefined;
  const closers: Array<() => Promise<void> | void> = [];
  try {
    const log = dir ? await FileLog.open({ dir, fsync: 'none', logger }) : new MemoryLog();
    const ledger = await Ledger.open({ log, logger, snapshotEvery: 0 });
    closers.unshift(() => ledger.close());
    const transports = await TransportManager.listen({ listen: [{ transport: 'udp', address: '127.0.0.1', port: 0 }], limits: opts.limits, logger });
    closers.unshift(() => transports.close());
    const server = transports.listening()[0]!;
    const local = { host: server.address, port: server.port };
    const up: { router?: Router } = {};
    const transactions = new TransactionLayer({
      transport: transports,
      logger,
      // Room for every transaction it makes: two per registration, three per call (INVITE twice, BYE).
      maxTransactions: opts.registrations * 2 + opts.calls * 3 + PHONES,
      onRequest: (req, tx) => up.router!.handle(req, tx as RouterTransaction | undefined),
    });
    closers.unshift(() => transactions.close());
    transports.onMessage((msg) => transactions.receive(msg));
    up.router = privateRouter({ transactions, sender: transports, authenticator, ledger, local, logger });

    // The simulated phones share one socket.
    const phones = dgram.createSocket('udp4');
    closers.unshift(() => new Promise<void>((resolve) => phones.close(() => resolve())));
    await new Promise<void>((resolve, reject) => {
      phones.once('error', reject);
      phones.bind(0, '127.0.0.1', () => {
        phones.off('error', reject);
        resolve();
      });
    });
    // A send the kernel refuses is an 'error' event (sends take no callback here); the phone that
    // sent it gets no answer and fails the warm-up by its timeout.
    phones.on('error', () => undefined);
    const phonePort = phones.address().port;
    // Answers go to the phone waiting on their Call-ID and CSeq; requests relayed by the proxy reach
    // the phone as a callee.
    const waiting = new Map<string, (text: string) => void>();
    const field = (text: string, name: string): string => {
      const at = text.indexOf(`\r\n${name}: `);
      if (at === -1) return '';
      const from = at + name.length + 4;
      return text.slice(from, text.indexOf('\r\n', from));
    };
    const toServer = (bytes: Buffer): void => phones.send(bytes, server.port, server.address);
    phones.on('message', (raw) => {
      const text = raw.toString('latin1');
      if (!text.startsWith('SIP/2.0 ')) return answerAsCallee(raw);
      const key = `${field(text, 'Call-ID')}|${field(text, 'CSeq')}`;
      const w = waiting.get(key);
      // Only final answers: a phone never waits on a provisional one here.
      if (w && !text.startsWith('SIP/2.0 1')) {
        waiting.delete(key);
        w(text);
      }
    });
    const answerAsCallee = (raw: Buffer): void => {
      const r = parseMessage(raw);
      if (!r.ok || !r.message.isRequest) return;
      const req = r.message;
      if (req.method !== 'INVITE' && req.method !== 'BYE') return;
      // RFC 3261 s12.1.1: a 2xx to INVITE copies the Record-Route and gives the callee's Contact.
      const headers: Array<[string, string]> =
        req.method === 'INVITE' ? [...req.getAll('record-route').map((v): [string, string] => ['Record-Route', v]), ['Contact', `<${req.uri.toString()}>`]] : [];
      toServer(serialize(createResponse(req, 200, { headers })));
    };
    let seq = 0;
    const branch = (): string => `z9hG4bK${(seq++).toString(36)}w`;
    const ask = (callId: string, cseq: string, bytes: Buffer): Promise<string> =>
      new Promise((resolve, reject) => {
        const key = `${callId}|${cseq}`;
        const timer = setTimeout(() => {
          waiting.delete(key);
          reject(new Error(`no answer to a warm-up ${cseq} within ${ANSWER_TIMEOUT_MS} ms`));
        }, ANSWER_TIMEOUT_MS);
        waiting.set(key, (text) => {
          clearTimeout(timer);
          resolve(text);
        });
        toServer(bytes);
      });
    const message = (startLine: string, headers: string[]): Buffer =>
      Buffer.from(`${startLine}\r\n${headers.join('\r\n')}\r\nMax-Forwards: 70\r\nUser-Agent: sipledger-warm-up\r\nContent-Length: 0\r\n\r\n`, 'latin1');
    const via = (b: string): string => `Via: SIP/2.0/UDP 127.0.0.1:${phonePort};branch=${b};rport`;
    const digest = (i: number, method: string, uri: string, challenge: string): string => {
      const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
      if (!nonce) throw new Error(`warm-up: expected a challenge, got ${challenge.slice(0, 40)}`);
      const user = `w${i}`;
      const cnonce = (seq & 0xffff).toString(16);
      const ha1 = md5(`${user}:${DOMAIN}:${passwords[i]}`);
      const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${md5(`${method}:${uri}`)}`);
      return `Digest username="${user}",realm="${DOMAIN}",nonce="${nonce}",uri="${uri}",response="${response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="${cnonce}"`;
    };
    const expect = (text: string, status: number, what: string): void => {
      if (!text.startsWith(`SIP/2.0 ${status} `)) throw new Error(`warm-up: expected ${status} to ${what}, got ${text.slice(0, 40)}`);
    };

    const registered: number[] = [];
    const register = async (i: number): Promise<void> => {
      const user = `w${i}`;
      const callId = `r${seq}@warm-up`;
      const uri = `sip:${DOMAIN}`;
      const head = (cseq: number): string[] => [
        via(branch()),
        `From: <sip:${user}@${DOMAIN}>;tag=${callId}`,
        `To: <sip:${user}@${DOMAIN}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:${user}@127.0.0.1:${phonePort}>`,
        'Expires: 3600',
      ];
      const challenge = await ask(callId, '1 REGISTER', message(`REGISTER ${uri} SIP/2.0`, head(1)));
      expect(challenge, 401, 'a REGISTER without credentials');
      const ok = await ask(callId, '2 REGISTER', message(`REGISTER ${uri} SIP/2.0`, [...head(2), `Authorization: ${digest(i, 'REGISTER', uri, challenge)}`]));
      expect(ok, 200, 'an answered challenge');
      registered.push(i);
    };
    /** INVITE -> 407 -> ACK, INVITE with credentials -> relayed to the callee -> 200 -> ACK, BYE -> 200. */
    const call = async (a: number, b: number): Promise<void> => {
      const callId = `c${seq}@warm-up`;
      const ruri = `sip:w${b}@${DOMAIN}`;
      const from = `From: <sip:w${a}@${DOMAIN}>;tag=f${callId}`;
      const base = [from, `Call-ID: ${callId}`];
      const inviteHead = (b: string, cseq: number): string[] => [via(b), ...base, `To: <${ruri}>`, `CSeq: ${cseq} INVITE`, `Contact: <sip:w${a}@127.0.0.1:${phonePort}>`];
      const first = branch();
      const challenge = await ask(callId, '1 INVITE', message(`INVITE ${ruri} SIP/2.0`, inviteHead(first, 1)));
      expect(challenge, 407, 'an INVITE without credentials');
      toServer(message(`ACK ${ruri} SIP/2.0`, [via(first), ...base, `To: ${field(challenge, 'To')}`, 'CSeq: 1 ACK']));
      const ok = await ask(callId, '2 INVITE', message(`INVITE ${ruri} SIP/2.0`, [...inviteHead(branch(), 2), `Proxy-Authorization: ${digest(a, 'INVITE', ruri, challenge)}`]));
      expect(ok, 200, 'an INVITE with credentials');
      // The dialog: the callee's Contact as the target, the Record-Route reversed as the route set.
      const target = /<([^>]+)>/.exec(field(ok, 'Contact'))?.[1] ?? ruri;
      const routes = [...ok.matchAll(/\r\nRecord-Route: ([^\r]+)/g)].map((m) => m[1]!).reverse();
      const inDialog = (cseq: string): string[] => [via(branch()), ...base, `To: ${field(ok, 'To')}`, `CSeq: ${cseq}`, ...routes.map((r) => `Route: ${r}`)];
      toServer(message(`ACK ${target} SIP/2.0`, inDialog('2 ACK')));
      expect(await ask(callId, '3 BYE', message(`BYE ${target} SIP/2.0`, inDialog('3 BYE'))), 200, 'a BYE');
    };

    let regsLeft = opts.registrations;
    let callsLeft = opts.calls;
    let registrations = 0;
    let calls = 0;
    const phone = async (id: number): Promise<void> => {
      while (regsLeft-- > 0) {
        await register((seq * 7 + id) % USERS);
        registrations++;
      }
      while (callsLeft-- > 0 && registered.length > 0) {
        const b = registered[(seq * 13 + id) % registered.length]!;
        await call((b + 1 + id) % USERS, b);
        calls++;
      }
    };
    await Promise.all(Array.from({ length: PHONES }, (_, id) => phone(id)));
    return { registrations, calls, ms: Math.round(performance.now() - started) };
  } finally {
    for (const close of closers) await Promise.resolve(close()).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

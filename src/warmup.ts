/**
 * Warming the request path before the sockets open.
 *
 * A Node process runs its first seconds several times slower than later: V8 interprets each
 * function until it has run often enough to be compiled. A sipledger restarted under load (a
 * carrier's instance brought back, a site after a crash) meets its phones' registrations with
 * cold code, falls behind, and the phones' retransmissions prolong it (at 1,000 REGISTER/s from a
 * fresh start, p99 680-890 ms and hundreds to thousands of retransmissions, against tens of ms
 * once warm; ADR 0006).
 *
 * warmUp() runs simulated phones through a private instance of the same code: a UDP transport on
 * a loopback port of its own (the phones send real datagrams), the parser, the transaction layer,
 * the router, the digest authenticator (an in-memory backend of made-up users with a random
 * secret), the registrar, the ledger with its projections, on a file log in a temporary directory
 * (fsync none) when the server's log is a file log, and the response serialiser. Nothing of it is
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
import { ProxyCore } from './core/proxy/proxy-core.js';
import { Resolver } from './core/proxy/resolver.js';
import { Router, type RouterTransaction } from './core/proxy/router.js';
import { DEFAULT_REGISTRAR } from './core/registrar/registrar.js';
import type { ParseLimits } from './core/sip/index.js';
import { TransactionLayer } from './core/transaction/index.js';
import { TransportManager } from './core/transport/index.js';

export interface WarmUpResult {
  /** Registrations completed (each a REGISTER challenged 401, then answered and accepted 200). */
  readonly registrations: number;
  readonly ms: number;
}

export interface WarmUpOptions {
  readonly registrations: number;
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

/** Registers simulated phones `registrations` times through a private request path; see the module comment. */
export async function warmUp(opts: WarmUpOptions): Promise<WarmUpResult> {
  const started = performance.now();
  if (opts.registrations <= 0) return { registrations: 0, ms: 0 };
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
      maxTransactions: opts.registrations * 2 + PHONES,
      onRequest: (req, tx) => up.router!.handle(req, tx as RouterTransaction | undefined),
    });
    closers.unshift(() => transactions.close());
    transports.onMessage((msg) => transactions.receive(msg));
    const proxy = new ProxyCore({ transactions, sender: transports, resolver: new Resolver(), local: () => local, logger });
    up.router = new Router({
      auth: { servesDomain: (d) => authenticator.servesDomain(d), authenticate: (r) => authenticator.authenticate(r) },
      ledger,
      proxy,
      registrar: DEFAULT_REGISTRAR,
      localAddresses: () => [local],
      logger,
    });

    // The phones share one socket; answers go to the phone waiting on their Call-ID.
    const phones = dgram.createSocket('udp4');
    closers.unshift(() => new Promise<void>((resolve) => phones.close(() => resolve())));
    await new Promise<void>((resolve, reject) => {
      phones.once('error', reject);
      phones.bind(0, '127.0.0.1', () => resolve());
    });
    const phonePort = phones.address().port;
    const waiting = new Map<string, (text: string) => void>();
    phones.on('message', (raw) => {
      const text = raw.toString('latin1');
      const at = text.indexOf('\r\nCall-ID: ');
      if (at === -1) return;
      const callId = text.slice(at + 11, text.indexOf('\r\n', at + 11));
      const w = waiting.get(callId);
      // Only final answers: a phone never waits on a provisional one here.
      if (w && !text.startsWith('SIP/2.0 1')) {
        waiting.delete(callId);
        w(text);
      }
    });
    let seq = 0;
    const ask = (callId: string, bytes: Buffer): Promise<string> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(callId);
          reject(new Error(`no answer to a warm-up REGISTER within ${ANSWER_TIMEOUT_MS} ms`));
        }, ANSWER_TIMEOUT_MS);
        waiting.set(callId, (text) => {
          clearTimeout(timer);
          resolve(text);
        });
        phones.send(bytes, server.port, server.address);
      });
    const request = (user: string, callId: string, cseq: number, auth?: string): Buffer =>
      Buffer.from(
        `REGISTER sip:${DOMAIN} SIP/2.0\r\n` +
          `Via: SIP/2.0/UDP 127.0.0.1:${phonePort};branch=z9hG4bK${(seq++).toString(36)}w;rport\r\n` +
          `Max-Forwards: 70\r\nFrom: <sip:${user}@${DOMAIN}>;tag=${callId}\r\nTo: <sip:${user}@${DOMAIN}>\r\n` +
          `Call-ID: ${callId}\r\nCSeq: ${cseq} REGISTER\r\nContact: <sip:${user}@127.0.0.1:${phonePort}>\r\n` +
          (auth ? `Authorization: ${auth}\r\n` : '') +
          `Expires: 3600\r\nUser-Agent: sipledger-warm-up\r\nContent-Length: 0\r\n\r\n`,
        'latin1',
      );

    let left = opts.registrations;
    let done = 0;
    const phone = async (id: number): Promise<void> => {
      while (left-- > 0) {
        const i = (seq * 7 + id) % USERS;
        const user = `w${i}`;
        const callId = `w${seq}-${id}@warm-up`;
        const challenge = await ask(callId, request(user, callId, 1));
        const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
        if (!challenge.startsWith('SIP/2.0 401') || !nonce) throw new Error(`warm-up: expected a 401 challenge, got ${challenge.slice(0, 40)}`);
        const uri = `sip:${DOMAIN}`;
        const cnonce = (seq & 0xffff).toString(16);
        const ha1 = md5(`${user}:${DOMAIN}:${passwords[i]}`);
        const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`);
        const auth = `Digest username="${user}",realm="${DOMAIN}",nonce="${nonce}",uri="${uri}",response="${response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="${cnonce}"`;
        const ok = await ask(callId, request(user, callId, 2, auth));
        if (!ok.startsWith('SIP/2.0 200')) throw new Error(`warm-up: expected 200 to an answered challenge, got ${ok.slice(0, 40)}`);
        done++;
      }
    };
    await Promise.all(Array.from({ length: PHONES }, (_, id) => phone(id)));
    return { registrations: done, ms: Math.round(performance.now() - started) };
  } finally {
    for (const close of closers) await Promise.resolve(close()).catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

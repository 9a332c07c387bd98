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
 * warmUp() runs simulated phones through a private instance of the same code: the parser, the
 * transaction layer, the router, the digest authenticator (an in-memory backend of made-up users
 * with a random secret), the registrar, the ledger with its projections (on an in-memory log) and
 * the response serialiser. Nothing of it is shared with the server: no socket, no event in the
 * server's log, no metric, no log line; it is dropped afterwards (if it fails, the caller logs why
 * and starts cold). What it cannot warm is what needs the real backends (the MySQL and RADIUS
 * clients, the file or Kafka log's writes).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { MemoryBackend } from '../backends/auth/memory.js';
import { DigestAuthenticator } from './auth/authenticator.js';
import { Ledger } from './log/ledger.js';
import { MemoryLog } from './log/memory-log.js';
import { ProxyCore } from './proxy/proxy-core.js';
import { Resolver } from './proxy/resolver.js';
import { Router, type RouterTransaction } from './proxy/router.js';
import { DEFAULT_REGISTRAR } from './registrar/registrar.js';
import { parseMessage, serialize, type SipResponse, type Source } from './sip/index.js';
import { detach } from './sip/detach.js';
import { TransactionLayer } from './transaction/index.js';
import type { PreparedResponse } from './transport/index.js';

export interface WarmUpResult {
  /** Registrations completed (each a REGISTER challenged 401, then answered and accepted 200). */
  readonly registrations: number;
  readonly ms: number;
}

const DOMAIN = 'warmup.invalid';
const USERS = 256;
const PHONES = 16;
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

/** Registers simulated phones `registrations` times through a private request path; see the module comment. */
export async function warmUp(opts: { registrations: number; logger: Logger }): Promise<WarmUpResult> {
  const started = performance.now();
  if (opts.registrations <= 0) return { registrations: 0, ms: 0 };
  // Warnings and errors of the private instance would be about made-up phones: keep them quiet
  // unless something fails outright (reported by the caller).
  const logger = opts.logger.child({ module: 'warm-up' }, { level: 'silent' });
  const passwords = Array.from({ length: USERS }, () => randomBytes(9).toString('base64'));
  const authenticator = new DigestAuthenticator({
    secret: randomBytes(32),
    logger,
    domains: [{ domain: DOMAIN, backend: new MemoryBackend({ name: 'warm-up', users: passwords.map((password, i) => ({ username: `w${i}`, domain: DOMAIN, password })) }) }],
  });
  const ledger = await Ledger.open({ log: new MemoryLog(), logger, snapshotEvery: 0 });

  const waiting = new Map<string, (bytes: Buffer) => void>();
  const handTo = (callId: string, bytes: Buffer): void => {
    const w = waiting.get(callId);
    if (w) {
      waiting.delete(callId);
      w(bytes);
    }
  };
  type Prepared = PreparedResponse & { readonly callId: string };
  const target = { transport: 'udp' as const, address: '192.0.2.1', port: 5060 };
  const transport = {
    async send(): Promise<void> {},
    async sendResponse(res: SipResponse): Promise<void> {
      handTo(res.callId, serialize(res));
    },
    prepareResponse(res: SipResponse): PreparedResponse {
      const p: Prepared = { bytes: serialize(res), target, to: undefined, callId: detach(res.callId) };
      return p;
    },
    async sendPrepared(p: PreparedResponse): Promise<void> {
      handTo((p as Prepared).callId, p.bytes);
    },
  };
  const local = { host: '127.0.0.1', port: 5060 };
  const up: { router?: Router } = {};
  const transactions = new TransactionLayer({
    transport,
    logger,
    maxTransactions: opts.registrations * 2 + PHONES,
    onRequest: (req, tx) => up.router!.handle(req, tx as RouterTransaction | undefined),
  });
  const proxy = new ProxyCore({ transactions, sender: transport, resolver: new Resolver(), local: () => local, logger });
  up.router = new Router({
    auth: { servesDomain: (d) => authenticator.servesDomain(d), authenticate: (r) => authenticator.authenticate(r) },
    ledger,
    proxy,
    registrar: DEFAULT_REGISTRAR,
    localAddresses: () => [local],
    logger,
  });

  let seq = 0;
  const deliver = (bytes: Buffer, port: number): Promise<Buffer> => {
    const r = parseMessage(bytes);
    if (!r.ok) throw new Error(`warm-up request did not parse: ${r.reason}`);
    const source: Source = { address: '192.0.2.1', port, transport: 'udp', local: { address: '127.0.0.1', port: 5060 } };
    r.message.source = source;
    return new Promise((resolve) => {
      waiting.set(r.message.callId, resolve);
      transactions.receive(r.message);
    });
  };
  const request = (user: string, port: number, callId: string, cseq: number, auth?: string): Buffer =>
    Buffer.from(
      `REGISTER sip:${DOMAIN} SIP/2.0\r\n` +
        `Via: SIP/2.0/UDP 192.0.2.1:${port};branch=z9hG4bK${(seq++).toString(36)}w${port};rport\r\n` +
        `Max-Forwards: 70\r\nFrom: <sip:${user}@${DOMAIN}>;tag=${callId}\r\nTo: <sip:${user}@${DOMAIN}>\r\n` +
        `Call-ID: ${callId}\r\nCSeq: ${cseq} REGISTER\r\nContact: <sip:${user}@192.0.2.1:${port}>\r\n` +
        (auth ? `Authorization: ${auth}\r\n` : '') +
        `Expires: 3600\r\nUser-Agent: sipledger-warm-up\r\nContent-Length: 0\r\n\r\n`,
    );

  let left = opts.registrations;
  let done = 0;
  const phone = async (id: number): Promise<void> => {
    const port = 10000 + id;
    while (left-- > 0) {
      const i = (seq * 7 + id) % USERS;
      const user = `w${i}`;
      const callId = `w${seq}-${id}@warm-up`;
      const challenge = (await deliver(request(user, port, callId, 1), port)).toString('latin1');
      const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
      if (!challenge.startsWith('SIP/2.0 401') || !nonce) throw new Error(`warm-up: expected a 401 challenge, got ${challenge.slice(0, 40)}`);
      const uri = `sip:${DOMAIN}`;
      const cnonce = (seq & 0xffff).toString(16);
      const ha1 = md5(`${user}:${DOMAIN}:${passwords[i]}`);
      const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${md5(`REGISTER:${uri}`)}`);
      const auth = `Digest username="${user}",realm="${DOMAIN}",nonce="${nonce}",uri="${uri}",response="${response}",algorithm=MD5,qop=auth,nc=00000001,cnonce="${cnonce}"`;
      const ok = (await deliver(request(user, port, callId, 2, auth), port)).toString('latin1');
      if (!ok.startsWith('SIP/2.0 200')) throw new Error(`warm-up: expected 200 to an answered challenge, got ${ok.slice(0, 40)}`);
      done++;
    }
  };
  try {
    await Promise.all(Array.from({ length: PHONES }, (_, id) => phone(id)));
  } finally {
    transactions.close();
    await ledger.close();
  }
  return { registrations: done, ms: Math.round(performance.now() - started) };
}

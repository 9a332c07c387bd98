/**
 * The router's per-AOR registration queue, with the authenticator, the ledger and the server
 * transaction replaced at their seams: a ledger whose appends complete when the test says, and
 * transactions that record what they were answered.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { AuthOk } from '../../src/core/auth/outcome.js';
import type { SipledgerEvent } from '../../src/core/log/events.js';
import type { ProxyCore } from '../../src/core/proxy/proxy-core.js';
import { Router, type RouterLedger, type RouterTransaction } from '../../src/core/proxy/router.js';
import { DEFAULT_REGISTRAR } from '../../src/core/registrar/registrar.js';
import { parseMessage, type SipRequest, type SipResponse } from '../../src/core/sip/index.js';

const OK: AuthOk = {
  outcome: 'ok',
  user: 'alice',
  realm: 'example.com',
  domain: 'example.com',
  algorithm: 'MD5',
  backend: 'test',
  attributes: {},
  consumed: [0],
  detail: 'authenticated',
};

let seq = 0;
function register(port: number): SipRequest {
  seq++;
  const text = [
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-queue-${seq}`,
    'Max-Forwards: 70',
    `From: <sip:alice@example.com>;tag=f${seq}`,
    'To: <sip:alice@example.com>',
    `Call-ID: queue-${seq}@127.0.0.1`,
    'CSeq: 1 REGISTER',
    `Contact: <sip:alice@127.0.0.1:${port}>`,
    'Authorization: Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="00000000000000000000000000000000"',
    'Expires: 600',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  const r = parseMessage(Buffer.from(text, 'latin1'));
  if (!r.ok || !r.message.isRequest) throw new Error('fixture does not parse');
  r.message.source = { transport: 'udp', address: '127.0.0.1', port: 5090, local: { address: '127.0.0.1', port: 5060 } };
  return r.message;
}

/** A server transaction that records its answers; `end()` makes it stop awaiting one. */
function transaction(request: SipRequest): RouterTransaction & { answers: SipResponse[]; end(): void } {
  let ended = false;
  const answers: SipResponse[] = [];
  return {
    request,
    isInvite: false,
    toTag: `t${seq}`,
    answers,
    reply(res: SipResponse) {
      answers.push(res);
      if (res.status >= 200) ended = true;
    },
    onCancel() {},
    awaitingFinal: () => !ended,
    end() {
      ended = true;
    },
  };
}

/** A ledger whose appends wait until released, one at a time, in order. */
function heldLedger(): RouterLedger & { appended: SipledgerEvent[][]; deferrable: boolean[]; releaseNext(): void } {
  const appended: SipledgerEvent[][] = [];
  const deferrable: boolean[] = [];
  const waiting: Array<() => void> = [];
  return {
    appended,
    deferrable,
    append(events, opts) {
      appended.push([...events]);
      deferrable.push(opts?.deferrable === true);
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    location: { bindings: () => [] },
    releaseNext() {
      waiting.shift()?.();
    },
  };
}

function router(ledger: RouterLedger, maxPendingPerAor: number): Router {
  return new Router({
    auth: { servesDomain: (d) => d === 'example.com', authenticate: async () => OK },
    ledger,
    proxy: {} as ProxyCore,
    registrar: DEFAULT_REGISTRAR,
    localAddresses: () => [{ host: '127.0.0.1', port: 5060 }],
    logger: pino({ level: 'silent' }),
    retryAfterSeconds: 7,
    maxPendingPerAor,
  });
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
const bindingEvents = (events: SipledgerEvent[][]): number => events.flat().filter((e) => e.type !== 'auth.succeeded').length;

describe('router: REGISTERs waiting for their AOR', () => {
  it('answers one beyond maxPendingPerAor with 503 and Retry-After at once, and decides the others in order', async () => {
    const ledger = heldLedger();
    const r = router(ledger, 1);
    const [a, b, c] = [register(7001), register(7002), register(7003)].map(transaction);
    r.handle(a!.request, a!);
    await settle();
    r.handle(b!.request, b!);
    r.handle(c!.request, c!);
    await settle();
    // a holds the AOR (its append is pending), b waits, c is one too many.
    expect(a!.answers).toEqual([]);
    expect(b!.answers).toEqual([]);
    expect(c!.answers.map((x) => x.status)).toEqual([503]);
    expect(c!.answers[0]!.get('retry-after')).toBe('7');
    expect(r.stats.aorQueueFull).toBe(1);
    expect(r.aorLocks.waitingCount).toBe(1);
    // Appended so far: a's authentication and binding, then c's successful authentication.
    expect(ledger.appended.map((events) => events[0]!.type)).toEqual(['auth.succeeded', 'auth.succeeded']);
    expect(bindingEvents([ledger.appended[0]!])).toBeGreaterThan(0);
    expect(bindingEvents([ledger.appended[1]!])).toBe(0);
    // The binding gates a's 200 OK and is written at once; c's record answers nobody and may wait.
    expect(ledger.deferrable).toEqual([false, true]);

    ledger.releaseNext(); // a's
    await settle();
    expect(a!.answers.map((x) => x.status)).toEqual([200]);
    ledger.releaseNext(); // c's authentication record
    ledger.releaseNext(); // b's
    await settle();
    expect(b!.answers.map((x) => x.status)).toEqual([200]);
    expect(r.stats.registrations).toBe(2);
    expect(r.aorLocks.heldCount).toBe(0);
  });

  it('does not decide a REGISTER whose transaction ended while it waited, but records its authentication', async () => {
    const ledger = heldLedger();
    const r = router(ledger, 8);
    const [a, b] = [register(7011), register(7012)].map(transaction);
    r.handle(a!.request, a!);
    await settle();
    r.handle(b!.request, b!);
    await settle();
    b!.end(); // dropped at the end of its lifetime: its phone has given up on it
    ledger.releaseNext();
    await settle();
    expect(a!.answers.map((x) => x.status)).toEqual([200]);
    expect(b!.answers).toEqual([]);
    expect(r.stats.staleRegistrations).toBe(1);
    expect(r.stats.registrations).toBe(1);
    // a's append carried its binding; b's only its successful authentication.
    expect(ledger.appended).toHaveLength(2);
    expect(bindingEvents([ledger.appended[0]!])).toBeGreaterThan(0);
    expect(ledger.appended[1]!.map((e) => e.type)).toEqual(['auth.succeeded']);
    expect(r.aorLocks.heldCount).toBe(0);
  });
});

/**
 * The stateful proxy engine (RFC 3261 s16) with fakes at its seams: a transaction layer that
 * records the requests it is asked to send and lets the test answer them, and a response sink.
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ProxyCore, type ClientDelegate, type Destination, type ProxyServerTransaction, type Target } from '../../src/core/proxy/proxy-core.js';
import { Resolver } from '../../src/core/proxy/resolver.js';
import { parseMessage, type SipRequest, type SipResponse, createResponse } from '../../src/core/sip/index.js';

const INVITE = [
  'INVITE sip:bob@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcaller1;rport=5060;received=192.0.2.1',
  'Max-Forwards: 70',
  'From: <sip:alice@example.com>;tag=a1',
  'To: <sip:bob@example.com>',
  'Call-ID: call-1@192.0.2.1',
  'CSeq: 2 INVITE',
  'Contact: <sip:alice@192.0.2.1:5060>',
  'Content-Length: 0',
  '',
  '',
].join('\r\n');

function request(text = INVITE): SipRequest {
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || !r.message.isRequest) throw new Error('bad fixture');
  const req = r.message as SipRequest;
  req.source = { address: '192.0.2.1', port: 5060, transport: 'udp', local: { address: '198.51.100.1', port: 5060 } };
  return req;
}

interface Sent {
  req: SipRequest;
  dest: Destination;
  delegate: ClientDelegate;
  cancelled: boolean;
}

function harness() {
  const sent: Sent[] = [];
  const upstream: SipResponse[] = [];
  let cancelCb: (() => void) | undefined;
  const core = new ProxyCore({
    transactions: {
      sendRequest(req, dest, delegate) {
        const s: Sent = { req, dest, delegate, cancelled: false };
        sent.push(s);
        return { cancel: () => (s.cancelled = true) };
      },
    },
    sender: { send: async () => undefined, sendResponse: async () => undefined },
    resolver: new Resolver(),
    local: () => ({ host: '198.51.100.1', port: 5060 }),
    logger: pino({ level: 'silent' }),
  });
  const req = request();
  const st: ProxyServerTransaction = {
    request: req,
    isInvite: true,
    reply: (res) => upstream.push(res),
    onCancel: (cb) => (cancelCb = () => cb(req)),
  };
  const flush = () => new Promise((r) => setTimeout(r, 10));
  const answer = (s: Sent, status: number) => {
    const res = createResponse(s.req, status);
    s.delegate.onResponse(res);
  };
  return { core, req, st, sent, upstream, flush, answer, cancel: () => cancelCb?.() };
}

const t = (uri: string, q = 1): Target => ({ uri, q });

describe('stateful proxy engine', () => {
  it('forwards with a new Request-URI, Max-Forwards decremented, Record-Route with lr and our Via on top', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5:5070')], { recordRoute: true });
    await h.flush();
    expect(h.sent).toHaveLength(1);
    const fwd = h.sent[0]!.req;
    expect(fwd.uri).toBe('sip:bob@203.0.113.5:5070');
    expect(fwd.get('max-forwards')).toBe('69');
    expect(fwd.getAll('record-route')).toEqual(['<sip:198.51.100.1:5060;lr>']);
    const vias = fwd.vias();
    expect(vias).toHaveLength(2);
    expect(vias[0]!.host).toBe('198.51.100.1');
    expect(vias[0]!.branch).toMatch(/^z9hG4bK/);
    expect(h.sent[0]!.dest).toEqual({ address: '203.0.113.5', port: 5070, transport: 'udp' });
    // The original request is untouched (each branch is a copy, s16.6 step 1).
    expect(h.req.get('max-forwards')).toBe('70');
  });

  it('forks in parallel to equal-q targets and passes the first 2xx up at once, cancelling the others', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5'), t('sip:bob@203.0.113.6')], { recordRoute: true });
    await h.flush();
    expect(h.sent).toHaveLength(2);
    expect(new Set(h.sent.map((s) => s.req.topVia()!.branch)).size).toBe(2);
    h.answer(h.sent[0]!, 180);
    h.answer(h.sent[1]!, 200);
    expect(h.upstream.map((r) => r.status)).toEqual([180, 200]);
    // Our Via is removed from what goes upstream (s16.7 step 3).
    expect(h.upstream[1]!.vias()).toHaveLength(1);
    expect(h.sent[0]!.cancelled).toBe(true);
  });

  it('tries lower-q targets only after every higher-q branch failed, then sends the best final response', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.7', 0.5), t('sip:bob@203.0.113.5', 1), t('sip:bob@203.0.113.6', 1)], { recordRoute: false });
    await h.flush();
    expect(h.sent.map((s) => s.req.uri)).toEqual(['sip:bob@203.0.113.5', 'sip:bob@203.0.113.6']);
    h.answer(h.sent[0]!, 486);
    h.answer(h.sent[1]!, 480);
    await h.flush();
    expect(h.sent.map((s) => s.req.uri)).toContain('sip:bob@203.0.113.7');
    expect(h.upstream).toHaveLength(0);
    h.answer(h.sent[2]!, 404);
    expect(h.upstream.map((r) => r.status)).toEqual([404]);
  });

  it('prefers a 6xx over everything and cancels the remaining branches', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5'), t('sip:bob@203.0.113.6')], { recordRoute: false });
    await h.flush();
    h.answer(h.sent[1]!, 180);
    h.answer(h.sent[0]!, 603);
    expect(h.sent[1]!.cancelled).toBe(true);
    h.answer(h.sent[1]!, 487);
    expect(h.upstream.at(-1)!.status).toBe(603);
  });

  it('turns a chosen 503 into 500 (s16.7 step 6) and a branch timeout into 408', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5')], { recordRoute: false });
    await h.flush();
    h.answer(h.sent[0]!, 503);
    expect(h.upstream[0]!.status).toBe(500);
    const h2 = harness();
    h2.core.relay(h2.st, h2.req, [t('sip:bob@203.0.113.5')], { recordRoute: false });
    await h2.flush();
    h2.sent[0]!.delegate.onTimeout();
    expect(h2.upstream[0]!.status).toBe(408);
  });

  it('on CANCEL from upstream, cancels ringing branches and gives up silent ones with 487', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5'), t('sip:bob@203.0.113.6')], { recordRoute: false });
    await h.flush();
    h.answer(h.sent[0]!, 180);
    h.cancel();
    expect(h.sent[0]!.cancelled).toBe(true);
    expect(h.upstream.map((r) => r.status)).toEqual([180]);
    h.answer(h.sent[0]!, 487);
    expect(h.upstream.map((r) => r.status)).toEqual([180, 487]);
  });

  it('aggregates the challenges of several 401/407 branches into one response (s16.7 step 7)', async () => {
    const h = harness();
    h.core.relay(h.st, h.req, [t('sip:bob@203.0.113.5'), t('sip:bob@203.0.113.6')], { recordRoute: false });
    await h.flush();
    for (const [i, realm] of [[0, 'a.example'], [1, 'b.example']] as const) {
      const res = createResponse(h.sent[i]!.req, 407, { headers: [['Proxy-Authenticate', `Digest realm="${realm}", nonce="n${i}"`]] });
      h.sent[i]!.delegate.onResponse(res);
    }
    expect(h.upstream).toHaveLength(1);
    expect(h.upstream[0]!.getAll('proxy-authenticate')).toHaveLength(2);
  });

  it('sends a request with a strict-router Route to that Route, moving the Request-URI to the end', async () => {
    const h = harness();
    const req = request(INVITE.replace('Max-Forwards: 70', 'Route: <sip:203.0.113.9:5060>\r\nMax-Forwards: 70'));
    h.core.relay({ ...h.st, request: req }, req, [t('sip:bob@203.0.113.5')], { recordRoute: false });
    await h.flush();
    const fwd = h.sent[0]!.req;
    expect(fwd.uri).toBe('sip:203.0.113.9:5060');
    expect(fwd.getAll('route')).toEqual(['<sip:bob@203.0.113.5>']);
    expect(h.sent[0]!.dest.address).toBe('203.0.113.9');
  });
});

import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { type SipRequest, type SipResponse, type Source, createResponse, parseMessage, serialize } from '../../src/core/sip/index.js';
import { type ServerTransaction, TransactionLayer } from '../../src/core/transaction/index.js';
import { FakeClock } from '../support/fake-clock.js';

const UDP: Source = { address: '192.0.2.10', port: 5060, transport: 'udp' };
const TCP: Source = { address: '192.0.2.10', port: 40000, transport: 'tcp', connectionId: 7 };

function request(method: string, opts: { branch?: string | null; cseq?: number; toTag?: string; source?: Source; cseqMethod?: string } = {}): SipRequest {
  const branch = opts.branch === undefined ? 'z9hG4bKabc123' : opts.branch;
  const via = `SIP/2.0/${(opts.source ?? UDP).transport.toUpperCase()} 192.0.2.10:5060${branch === null ? '' : `;branch=${branch}`}`;
  const text =
    `${method} sip:bob@example.com SIP/2.0\r\n` +
    `Via: ${via}\r\n` +
    'Max-Forwards: 70\r\n' +
    'From: Alice <sip:alice@example.com>;tag=fa1\r\n' +
    `To: Bob <sip:bob@example.com>${opts.toTag ? `;tag=${opts.toTag}` : ''}\r\n` +
    'Call-ID: call-1@192.0.2.10\r\n' +
    `CSeq: ${opts.cseq ?? 1} ${opts.cseqMethod ?? method}\r\n` +
    'Content-Length: 0\r\n\r\n';
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || !r.message.isRequest) throw new Error(`fixture does not parse: ${r.ok ? 'response' : r.reason}`);
  r.message.source = opts.source ?? UDP;
  return r.message;
}

interface Sent {
  res: SipResponse;
  to: Source | undefined;
  at: number;
}

function setup(extra: { maxServerTransactions?: number; maxCompletedTransactions?: number; tryingDelayMs?: number; onRequest?: (req: SipRequest, tx: ServerTransaction | undefined) => void } = {}) {
  const clock = new FakeClock();
  const sent: Sent[] = [];
  const delivered: Array<{ req: SipRequest; tx: ServerTransaction | undefined }> = [];
  const layer = new TransactionLayer({
    transport: {
      send: async () => undefined,
      sendResponse: async (res, to) => {
        sent.push({ res, to, at: clock.now });
      },
    },
    logger: pino({ level: 'silent' }),
    timers: clock,
    ...(extra.maxServerTransactions !== undefined ? { maxServerTransactions: extra.maxServerTransactions } : {}),
    ...(extra.maxCompletedTransactions !== undefined ? { maxCompletedTransactions: extra.maxCompletedTransactions } : {}),
    ...(extra.tryingDelayMs !== undefined ? { tryingDelayMs: extra.tryingDelayMs } : {}),
    onRequest: (req, tx) => {
      delivered.push({ req, tx });
      extra.onRequest?.(req, tx);
    },
  });
  return { clock, sent, delivered, layer };
}

describe('non-INVITE server transaction', () => {
  it('absorbs a retransmission while the application is still working, then repeats the final response', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('REGISTER'));
    expect(delivered).toHaveLength(1);
    const tx = delivered[0]!.tx!;
    expect(tx.state).toBe('Trying');

    // e.g. an authentication lookup in progress: the copy is absorbed silently
    layer.receive(request('REGISTER'));
    expect(delivered).toHaveLength(1);
    expect(sent).toHaveLength(0);

    const challenge = tx.replyStatus(401);
    expect(tx.state).toBe('Completed');
    expect(sent.map((s) => s.res)).toEqual([challenge]);

    clock.advance(1000);
    layer.receive(request('REGISTER'));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => s.res)).toEqual([challenge, challenge]);
    expect(layer.stats.retransmissionsAbsorbed).toBe(2);
  });

  it('lives 64*T1 in Completed over UDP (timer J), at most one step of T1/5 longer, and is then removed', () => {
    const { layer, delivered, clock, sent } = setup();
    layer.receive(request('OPTIONS'));
    const tx = delivered[0]!.tx!;
    const ok = tx.replyStatus(200);
    expect(layer.stats.serverTransactions).toBe(1);
    expect(tx.state).toBe('Completed');
    clock.advance(31_999);
    expect(layer.stats.serverTransactions).toBe(1);
    // still absorbed and answered with the same final response just before J
    layer.receive(request('OPTIONS'));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => s.res)).toEqual([ok, ok]);
    clock.advance(1 + 100);
    expect(layer.stats.serverTransactions).toBe(0);
    expect(tx.state).toBe('Terminated');
    expect(clock.size).toBe(0);
    // Only now is a copy of the request new again.
    layer.receive(request('OPTIONS'));
    expect(delivered).toHaveLength(2);
  });

  it('keeps one timer for all completed transactions, whatever their number', () => {
    const { layer, delivered, clock } = setup();
    for (let i = 0; i < 50; i++) {
      layer.receive(request('REGISTER', { branch: `z9hG4bKmany${i}` }));
      delivered[i]!.tx!.replyStatus(200);
      clock.advance(10);
    }
    expect(layer.stats.serverTransactions).toBe(50);
    expect(clock.size).toBe(1);
    clock.advance(32_200);
    expect(layer.stats.serverTransactions).toBe(0);
    expect(clock.size).toBe(0);
  });

  it('forgets the oldest completed transaction when the completed table is full, and counts it', () => {
    const { layer, delivered } = setup({ maxCompletedTransactions: 2 });
    for (let i = 0; i < 3; i++) {
      layer.receive(request('REGISTER', { branch: `z9hG4bKfull${i}` }));
      delivered[i]!.tx!.replyStatus(200);
    }
    expect(layer.stats.serverTransactions).toBe(2);
    expect(layer.stats.completedEvicted).toBe(1);
    // the first is new again; the third is still absorbed
    layer.receive(request('REGISTER', { branch: 'z9hG4bKfull0' }));
    expect(delivered).toHaveLength(4);
    layer.receive(request('REGISTER', { branch: 'z9hG4bKfull2' }));
    expect(delivered).toHaveLength(4);
  });

  it('ends at once over a reliable transport (timer J = 0) and answers on the request connection', () => {
    const { layer, delivered, sent, clock } = setup();
    layer.receive(request('REGISTER', { source: TCP }));
    delivered[0]!.tx!.replyStatus(200);
    expect(layer.stats.serverTransactions).toBe(0);
    expect(sent[0]!.to).toEqual(TCP);
    expect(clock.size).toBe(0);
  });

  it('repeats the latest provisional response in Proceeding and ignores responses after the final', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('SUBSCRIBE'));
    const tx = delivered[0]!.tx!;
    const ringing = tx.replyStatus(183);
    layer.receive(request('SUBSCRIBE'));
    expect(sent.map((s) => s.res)).toEqual([ringing, ringing]);
    const ok = tx.replyStatus(200);
    tx.replyStatus(500);
    expect(sent.map((s) => s.res)).toEqual([ringing, ringing, ok]);
  });

  it('keeps a stable To tag on every locally generated response', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('MESSAGE'));
    const tx = delivered[0]!.tx!;
    tx.replyStatus(202);
    expect(sent[0]!.res.to().params.get('tag')).toBe(tx.toTag);
  });

  it('tells transactions apart by method, branch and sent-by', () => {
    const { layer, delivered } = setup();
    layer.receive(request('REGISTER'));
    layer.receive(request('OPTIONS', { cseqMethod: 'OPTIONS' }));
    layer.receive(request('REGISTER', { branch: 'z9hG4bKother' }));
    expect(delivered).toHaveLength(3);
  });

  it('answers 500 when the request handler throws', () => {
    const { layer, sent } = setup({
      onRequest: () => {
        throw new Error('boom');
      },
    });
    layer.receive(request('REGISTER'));
    expect(sent.map((s) => s.res.status)).toEqual([500]);
  });
});

describe('INVITE server transaction', () => {
  it('sends 100 Trying itself when the application is silent for 200 ms', () => {
    const { layer, sent, clock } = setup();
    layer.receive(request('INVITE'));
    clock.advance(199);
    expect(sent).toHaveLength(0);
    clock.advance(1);
    expect(sent.map((s) => s.res.status)).toEqual([100]);
    expect(sent[0]!.res.to().params.get('tag')).toBeUndefined();
  });

  it('sends no 100 Trying when the application answers within 200 ms', () => {
    const { layer, sent, clock, delivered } = setup();
    layer.receive(request('INVITE'));
    delivered[0]!.tx!.replyStatus(407);
    clock.advance(1000);
    expect(sent.map((s) => s.res.status).filter((s) => s === 100)).toEqual([]);
  });

  it('answers a retransmission before the application replied with 100 Trying, without delivering it again', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('INVITE'));
    clock.advance(50);
    layer.receive(request('INVITE'));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => [s.res.status, s.at])).toEqual([[100, 50]]);
    clock.advance(500);
    expect(sent).toHaveLength(1);
  });

  it('retransmits a non-2xx final response over UDP with timer G doubling to T2, until timer H', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('INVITE'));
    const busy = delivered[0]!.tx!.replyStatus(486);
    clock.advance(64 * 500 + 1);
    const times = sent.filter((s) => s.res === busy).map((s) => s.at);
    expect(times).toEqual([0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    expect(delivered[0]!.tx!.state).toBe('Terminated');
    expect(layer.stats.ackTimeouts).toBe(1);
    expect(layer.stats.serverTransactions).toBe(0);
    expect(clock.size).toBe(0);
  });

  it('absorbs the ACK for a non-2xx response (Confirmed), stops timer G and ends after T4', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('INVITE'));
    const tx = delivered[0]!.tx!;
    tx.replyStatus(486);
    clock.advance(600); // one retransmission
    layer.receive(request('ACK', { toTag: tx.toTag }));
    expect(delivered).toHaveLength(1);
    expect(tx.state).toBe('Confirmed');
    const count = sent.length;
    clock.advance(2000);
    // Timer I is a compact record now: copies of the ACK and the INVITE are absorbed, a CANCEL gets 200
    layer.receive(request('ACK', { toTag: tx.toTag }));
    layer.receive(request('INVITE'));
    expect(delivered).toHaveLength(1);
    expect(sent).toHaveLength(count);
    layer.receive(request('CANCEL'));
    expect(sent.map((s) => `${s.res.status} ${s.res.cseq().method}`).slice(count)).toEqual(['200 CANCEL']);
    expect(sent[count]!.res.to().params.get('tag')).toBe(tx.toTag);
    clock.advance(2999);
    expect(tx.state).toBe('Confirmed');
    clock.advance(1 + 100); // timer I, swept in steps of T1/5
    expect(tx.state).toBe('Terminated');
    expect(layer.stats.acksAbsorbed).toBe(2);
    expect(layer.stats.retransmissionsAbsorbed).toBe(1);
    expect(layer.absorbs(request('INVITE'))).toBe(false);
    // CANCEL's own record (timer J) is all that is left
    clock.advance(32_100);
    expect(clock.size).toBe(0);
  });

  it('sends no timer G retransmissions over TCP and ends at once on ACK (timer I = 0)', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('INVITE', { source: TCP }));
    const tx = delivered[0]!.tx!;
    tx.replyStatus(404);
    clock.advance(10_000);
    expect(sent.map((s) => s.res.status)).toEqual([404]);
    layer.receive(request('ACK', { source: TCP, toTag: tx.toTag }));
    expect(tx.state).toBe('Terminated');
  });

  it('repeats the final response to a retransmitted INVITE in Completed', () => {
    const { layer, sent, delivered } = setup({ tryingDelayMs: 0 });
    layer.receive(request('INVITE'));
    expect(sent.map((s) => s.res.status)).toEqual([100]);
    delivered[0]!.tx!.replyStatus(480);
    layer.receive(request('INVITE'));
    expect(sent.map((s) => s.res.status)).toEqual([100, 480, 480]);
    expect(delivered).toHaveLength(1);
  });

  it('after a 2xx waits in Accepted (RFC 6026): INVITE copies absorbed, 2xx copies sent, the 2xx ACK goes to the application', () => {
    const { layer, sent, delivered, clock } = setup();
    layer.receive(request('INVITE'));
    const tx = delivered[0]!.tx!;
    const ok = tx.replyStatus(200);
    expect(tx.state).toBe('Accepted');
    layer.receive(request('INVITE'));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => s.res)).toEqual([ok]);
    tx.reply(ok); // the UAS retransmitted its 200; the proxy relays it again
    expect(sent.map((s) => s.res)).toEqual([ok, ok]);
    // ACK for a 2xx has its own branch: end to end, to the application without a transaction
    layer.receive(request('ACK', { branch: 'z9hG4bKack2xx', toTag: tx.toTag }));
    expect(delivered).toHaveLength(2);
    expect(delivered[1]!.req.method).toBe('ACK');
    expect(delivered[1]!.tx).toBeUndefined();
    expect(layer.findServer(request('INVITE'))).toBeUndefined(); // a compact record now
    expect(layer.absorbs(request('INVITE'))).toBe(true);
    clock.advance(32_000 + 100); // timer L, swept in steps of T1/5
    expect(tx.state).toBe('Terminated');
    expect(layer.absorbs(request('INVITE'))).toBe(false);
    expect(clock.size).toBe(0);
  });

  it('matches a CANCEL to its INVITE: 200 for the CANCEL with the INVITE To tag, callback, then 487 and ACK', () => {
    const { layer, sent, delivered } = setup();
    const cancels: SipRequest[] = [];
    layer.receive(request('INVITE'));
    const tx = delivered[0]!.tx!;
    tx.onCancel((c) => {
      cancels.push(c);
      tx.replyStatus(487);
    });
    tx.replyStatus(180);
    layer.receive(request('CANCEL'));
    expect(delivered).toHaveLength(1);
    expect(cancels).toHaveLength(1);
    const statuses = sent.map((s) => `${s.res.status} ${s.res.cseq().method}`);
    expect(statuses).toEqual(['180 INVITE', '200 CANCEL', '487 INVITE']);
    const cancelOk = sent[1]!.res;
    expect(cancelOk.to().params.get('tag')).toBe(tx.toTag);
    expect(sent[2]!.res.to().params.get('tag')).toBe(tx.toTag);
    expect(tx.cancelled).toBe(true);
    // a retransmitted CANCEL gets its 200 again and nothing else happens
    layer.receive(request('CANCEL'));
    expect(sent.map((s) => s.res.status)).toEqual([180, 200, 487, 200]);
    expect(cancels).toHaveLength(1);
    layer.receive(request('ACK', { toTag: tx.toTag }));
    expect(tx.state).toBe('Confirmed');
    expect(layer.stats.cancelsMatched).toBe(1);
  });

  it('delivers a CANCEL that arrived before the callback was registered', () => {
    const { layer, delivered } = setup();
    layer.receive(request('INVITE'));
    layer.receive(request('CANCEL'));
    const got: string[] = [];
    delivered[0]!.tx!.onCancel((c) => got.push(c.method));
    expect(got).toEqual(['CANCEL']);
  });

  it('answers 200 to a CANCEL after the final response but does not call the callback', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('INVITE'));
    const tx = delivered[0]!.tx!;
    let called = false;
    tx.onCancel(() => (called = true));
    tx.replyStatus(486);
    layer.receive(request('CANCEL'));
    expect(called).toBe(false);
    expect(sent.map((s) => s.res.status)).toEqual([486, 200]);
  });

  it('answers 200 with the 2xx To tag to a CANCEL after a relayed 2xx (Accepted record), and never calls the callback', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('INVITE'));
    const tx = delivered[0]!.tx!;
    let called = false;
    tx.onCancel(() => (called = true));
    const ok = createResponse(tx.request, 200, { toTag: 'uas-tag-9' });
    tx.reply(ok);
    expect(layer.findServer(tx.request)).toBeUndefined();
    layer.receive(request('CANCEL'));
    expect(called).toBe(false);
    expect(sent.map((s) => `${s.res.status} ${s.res.cseq().method}`)).toEqual(['200 INVITE', '200 CANCEL']);
    expect(sent[1]!.res.to().params.get('tag')).toBe('uas-tag-9');
    expect(layer.stats.cancelsMatched).toBe(1);
    expect(layer.stats.cancelsUnmatched).toBe(0);
  });

  it('keeps an RFC 2543 INVITE (no magic cookie) answered 2xx as a transaction for timer L', () => {
    const { layer, delivered, clock } = setup();
    layer.receive(request('INVITE', { branch: null }));
    const tx = delivered[0]!.tx!;
    tx.replyStatus(200);
    expect(layer.findServer(request('INVITE', { branch: null }))).toBe(tx);
    layer.receive(request('INVITE', { branch: null }));
    expect(delivered).toHaveLength(1);
    clock.advance(32_000);
    expect(tx.state).toBe('Terminated');
    expect(layer.findServer(request('INVITE', { branch: null }))).toBeUndefined();
    expect(clock.size).toBe(0);
  });

  it('answers 481 to a CANCEL that matches no transaction and does not deliver it', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('CANCEL', { branch: 'z9hG4bKnothing' }));
    expect(delivered).toHaveLength(0);
    expect(sent.map((s) => s.res.status)).toEqual([481]);
    expect(layer.stats.cancelsUnmatched).toBe(1);
    layer.receive(request('CANCEL', { branch: 'z9hG4bKnothing' }));
    expect(sent.map((s) => s.res.status)).toEqual([481, 481]);
  });

  it('passes an ACK that matches no transaction to the application', () => {
    const { layer, delivered } = setup();
    layer.receive(request('ACK', { branch: 'z9hG4bKstray', toTag: 'x' }));
    expect(delivered.map((d) => [d.req.method, d.tx])).toEqual([['ACK', undefined]]);
  });

  it('drops a transaction whose application never answers after its lifetime', () => {
    const clock = new FakeClock();
    const layer = new TransactionLayer({
      transport: { send: async () => undefined, sendResponse: async () => undefined },
      logger: pino({ level: 'silent' }),
      timers: clock,
      inviteLifetimeMs: 60_000,
      onRequest: () => undefined,
    });
    layer.receive(request('INVITE'));
    layer.receive(request('OPTIONS', { branch: 'z9hG4bKopt' }));
    expect(layer.stats.serverTransactions).toBe(2);
    clock.advance(60_000);
    expect(layer.stats.serverTransactions).toBe(0);
    expect(clock.size).toBe(0);
  });
});

describe('RFC 2543 fallback matching (no magic cookie)', () => {
  it('matches retransmissions of a request without a branch', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('REGISTER', { branch: null }));
    delivered[0]!.tx!.replyStatus(401);
    layer.receive(request('REGISTER', { branch: null }));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => s.res.status)).toEqual([401, 401]);
    // a new CSeq is a new transaction
    layer.receive(request('REGISTER', { branch: null, cseq: 2 }));
    expect(delivered).toHaveLength(2);
  });

  it('matches the ACK by the To tag of the response sent, and a CANCEL to its INVITE', () => {
    const { layer, delivered, sent } = setup();
    layer.receive(request('INVITE', { branch: '1' }));
    const tx = delivered[0]!.tx!;
    const cancelled: string[] = [];
    tx.onCancel((c) => cancelled.push(c.method));
    layer.receive(request('CANCEL', { branch: '1' }));
    expect(cancelled).toEqual(['CANCEL']);
    tx.replyStatus(487);
    // wrong To tag: not ours, goes up
    layer.receive(request('ACK', { branch: '1', toTag: 'someone-else' }));
    expect(delivered).toHaveLength(2);
    layer.receive(request('ACK', { branch: '1', toTag: tx.toTag }));
    expect(delivered).toHaveLength(2);
    expect(tx.state).toBe('Confirmed');
    expect(sent.map((s) => s.res.status)).toEqual([200, 487]);
  });
});

describe('server transaction limits', () => {
  it('answers 503 with Retry-After statelessly when the table is full, and ACKs are never answered', () => {
    const { layer, delivered, sent } = setup({ maxServerTransactions: 1 });
    layer.receive(request('REGISTER'));
    layer.receive(request('REGISTER', { branch: 'z9hG4bKsecond' }));
    expect(delivered).toHaveLength(1);
    expect(sent.map((s) => [s.res.status, s.res.get('retry-after')])).toEqual([[503, '5']]);
    expect(layer.stats.overloadRejected).toBe(1);
    expect(layer.stats.serverTransactions).toBe(1);
  });

  it('takes maxTransactions as the cap of each table', () => {
    const clock = new FakeClock();
    const sent: number[] = [];
    const layer = new TransactionLayer({
      transport: { send: async () => undefined, sendResponse: async (res) => void sent.push(res.status) },
      logger: pino({ level: 'silent' }),
      timers: clock,
      maxTransactions: 2,
      onRequest: () => undefined,
    });
    for (const b of ['z9hG4bKm1', 'z9hG4bKm2', 'z9hG4bKm3']) layer.receive(request('OPTIONS', { branch: b }));
    expect(layer.stats.serverTransactions).toBe(2);
    expect(sent).toEqual([503]);
  });

  it('clears every timer on close', () => {
    const { layer, clock, delivered } = setup();
    layer.receive(request('INVITE'));
    delivered[0]!.tx!.replyStatus(486);
    layer.receive(request('OPTIONS', { branch: 'z9hG4bKo' }));
    layer.close();
    expect(clock.size).toBe(0);
    expect(layer.stats.serverTransactions).toBe(0);
  });
});

describe('completed transactions kept as response bytes', () => {
  it('repeats to each retransmission exactly the bytes first sent for it, across many records sharing storage', () => {
    const clock = new FakeClock();
    const sent: Buffer[] = [];
    const delivered: ServerTransaction[] = [];
    const layer = new TransactionLayer({
      transport: {
        send: async () => undefined,
        sendResponse: async () => {
          throw new Error('a transport that prepares responses gets them prepared');
        },
        prepareResponse: (res: SipResponse, to?: Source) => ({ bytes: serialize(res), target: { transport: 'udp' as const, address: '192.0.2.10', port: 5060 }, to }),
        sendPrepared: async (p: { bytes: Buffer }) => {
          // What the socket would be handed: copied at once, as sending does.
          sent.push(Buffer.from(p.bytes));
        },
      },
      logger: pino({ level: 'silent' }),
      timers: clock,
      onRequest: (_req, tx) => delivered.push(tx!),
    });
    // Responses of different lengths, ~600 of them: together several times the storage a few
    // hundred records share, so that records sit on both sides of every boundary.
    const count = 600;
    const first: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      layer.receive(request('REGISTER', { branch: `z9hG4bKrec${i}`, cseq: i + 1 }));
      const reason = `Unauthorized ${'x'.repeat(i % 97)}`;
      delivered[i]!.replyStatus(401, { reason, toTag: `t${i}`, headers: [['WWW-Authenticate', `Digest realm="example.com", nonce="n${i}"`]] });
      first.push(sent[sent.length - 1]!);
    }
    expect(sent).toHaveLength(count);
    clock.advance(2_000);
    for (let i = count - 1; i >= 0; i--) {
      layer.receive(request('REGISTER', { branch: `z9hG4bKrec${i}`, cseq: i + 1 }));
      const again = sent[sent.length - 1]!;
      expect(again.equals(first[i]!)).toBe(true);
      expect(again.toString('latin1')).toContain(`nonce="n${i}"`);
    }
    expect(sent).toHaveLength(2 * count);
    expect(delivered).toHaveLength(count);
  });
});

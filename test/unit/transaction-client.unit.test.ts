import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { type SipRequest, type SipResponse, parseMessage } from '../../src/core/sip/index.js';
import { type ClientDelegate, TransactionLayer } from '../../src/core/transaction/index.js';
import type { Destination } from '../../src/core/transport/index.js';
import { FakeClock } from '../support/fake-clock.js';

const UDP_DEST: Destination = { address: '198.51.100.20', port: 5060, transport: 'udp' };
const TCP_DEST: Destination = { address: '198.51.100.20', port: 5060, transport: 'tcp' };
const BRANCH = 'z9hG4bKclient1';

function outgoing(method: string, opts: { branch?: string } = {}): SipRequest {
  const text =
    `${method} sip:bob@198.51.100.20 SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP 203.0.113.1:5060;branch=${opts.branch ?? BRANCH}\r\n` +
    'Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKupstream;received=192.0.2.10\r\n' +
    'Max-Forwards: 69\r\n' +
    'Route: <sip:edge.example.net;lr>\r\n' +
    'Record-Route: <sip:203.0.113.1;lr>\r\n' +
    'From: Alice <sip:alice@example.com>;tag=fa1\r\n' +
    'To: Bob <sip:bob@example.com>\r\n' +
    'Call-ID: call-9@192.0.2.10\r\n' +
    `CSeq: 4711 ${method}\r\n` +
    'Content-Length: 0\r\n\r\n';
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || !r.message.isRequest) throw new Error('fixture does not parse');
  return r.message;
}

function response(status: number, opts: { branch?: string; method?: string; toTag?: string } = {}): SipResponse {
  const text =
    `SIP/2.0 ${status} Whatever\r\n` +
    `Via: SIP/2.0/UDP 203.0.113.1:5060;branch=${opts.branch ?? BRANCH}\r\n` +
    'Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKupstream;received=192.0.2.10\r\n' +
    'From: Alice <sip:alice@example.com>;tag=fa1\r\n' +
    `To: Bob <sip:bob@example.com>${status > 100 ? `;tag=${opts.toTag ?? 'tb9'}` : ''}\r\n` +
    'Call-ID: call-9@192.0.2.10\r\n' +
    `CSeq: 4711 ${opts.method ?? 'INVITE'}\r\n` +
    'Content-Length: 0\r\n\r\n';
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || r.message.isRequest) throw new Error('fixture does not parse');
  return r.message;
}

interface Wire {
  req: SipRequest;
  dest: Destination;
  at: number;
}

function setup(opts: { failSend?: boolean } = {}) {
  const clock = new FakeClock();
  const wire: Wire[] = [];
  const strays: SipResponse[] = [];
  const layer = new TransactionLayer({
    transport: {
      send: async (bytes, dest) => {
        const r = parseMessage(bytes);
        if (!r.ok || !r.message.isRequest) throw new Error(`layer sent something unparseable: ${r.ok ? 'a response' : r.reason}`);
        wire.push({ req: r.message, dest, at: clock.now });
        if (opts.failSend) throw Object.assign(new Error('connection refused'), { code: 'TRANSPORT_CONNECT_FAILED' });
      },
      sendResponse: async () => undefined,
    },
    logger: pino({ level: 'silent' }),
    timers: clock,
    onRequest: () => undefined,
    onStrayResponse: (res) => strays.push(res),
  });
  const events: string[] = [];
  const responses: SipResponse[] = [];
  const delegate: ClientDelegate = {
    onResponse: (res) => {
      responses.push(res);
      events.push(`response ${res.status}`);
    },
    onTimeout: () => events.push(`timeout@${clock.now}`),
    onTransportError: (err) => events.push(`transport error: ${err.message}`),
  };
  return { clock, wire, strays, layer, events, responses, delegate };
}

const sends = (wire: Wire[], method: string) => wire.filter((w) => w.req.method === method).map((w) => w.at);

describe('non-INVITE client transaction', () => {
  it('retransmits over UDP with timer E doubling to T2 and times out with timer F at 64*T1', () => {
    const { layer, wire, clock, events, delegate } = setup();
    const tx = layer.sendRequest(outgoing('REGISTER'), UDP_DEST, delegate);
    expect(tx.state).toBe('Trying');
    clock.advance(40_000);
    expect(sends(wire, 'REGISTER')).toEqual([0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    expect(events).toEqual(['timeout@32000']);
    expect(tx.state).toBe('Terminated');
    expect(layer.stats.clientTransactions).toBe(0);
    expect(layer.stats.timeouts).toBe(1);
    expect(clock.size).toBe(0);
  });

  it('keeps retransmitting at T2 once a provisional response arrived', () => {
    const { layer, wire, clock, delegate, events } = setup();
    layer.sendRequest(outgoing('OPTIONS'), UDP_DEST, delegate);
    clock.advance(600); // sent at 0 and 500
    layer.receive(response(100, { method: 'OPTIONS' }));
    clock.advance(9000); // to 9600: next E at 1500 (interval was 1000) then every T2
    expect(sends(wire, 'OPTIONS')).toEqual([0, 500, 1500, 5500, 9500]);
    expect(events).toEqual(['response 100']);
  });

  it('passes the final response up once, absorbs its retransmissions, and ends after T4 (timer K)', () => {
    const { layer, wire, clock, delegate, events } = setup();
    const tx = layer.sendRequest(outgoing('REGISTER'), UDP_DEST, delegate);
    layer.receive(response(401, { method: 'REGISTER' }));
    layer.receive(response(401, { method: 'REGISTER' }));
    expect(events).toEqual(['response 401']);
    expect(tx.state).toBe('Completed');
    expect(layer.stats.responsesAbsorbed).toBe(1);
    clock.advance(4999);
    layer.receive(response(401, { method: 'REGISTER' }));
    expect(layer.stats.responsesAbsorbed).toBe(2);
    expect(tx.state).toBe('Completed');
    clock.advance(1 + 100); // timer K, swept in steps of T1/5
    expect(tx.state).toBe('Terminated');
    expect(sends(wire, 'REGISTER')).toEqual([0]);
    expect(clock.size).toBe(0);
    expect(events).toEqual(['response 401']);
  });

  it('does not retransmit over TCP, still times out with timer F, and ends at once on a final response', () => {
    const a = setup();
    a.layer.sendRequest(outgoing('OPTIONS'), TCP_DEST, a.delegate);
    a.clock.advance(32_000);
    expect(sends(a.wire, 'OPTIONS')).toEqual([0]);
    expect(a.events).toEqual(['timeout@32000']);

    const b = setup();
    const tx = b.layer.sendRequest(outgoing('OPTIONS'), TCP_DEST, b.delegate);
    b.layer.receive(response(200, { method: 'OPTIONS' }));
    expect(tx.state).toBe('Terminated');
    expect(b.clock.size).toBe(0);
  });

  it('matches responses by branch and CSeq method, so a response for another method is a stray', () => {
    const { layer, delegate, events, strays } = setup();
    layer.sendRequest(outgoing('OPTIONS'), UDP_DEST, delegate);
    layer.receive(response(200, { method: 'REGISTER' }));
    layer.receive(response(200, { method: 'OPTIONS', branch: 'z9hG4bKother' }));
    expect(events).toEqual([]);
    expect(strays).toHaveLength(2);
  });

  it('reports a transport failure and ends', async () => {
    const { layer, delegate, events } = setup({ failSend: true });
    const tx = layer.sendRequest(outgoing('OPTIONS'), TCP_DEST, delegate);
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual(['transport error: connection refused']);
    expect(tx.state).toBe('Terminated');
    expect(layer.stats.clientTransactions).toBe(0);
  });

  it('refuses a request whose top Via has no magic-cookie branch', () => {
    const { layer, delegate } = setup();
    expect(() => layer.sendRequest(outgoing('OPTIONS', { branch: 'old-style' }), UDP_DEST, delegate)).toThrow(/z9hG4bK/);
  });
});

describe('INVITE client transaction', () => {
  it('retransmits over UDP with timer A doubling without cap and times out with timer B', () => {
    const { layer, wire, clock, events, delegate } = setup();
    layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    clock.advance(40_000);
    expect(sends(wire, 'INVITE')).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500]);
    expect(events).toEqual(['timeout@32000']);
    expect(layer.stats.clientTransactions).toBe(0);
    expect(clock.size).toBe(0);
  });

  it('stops retransmitting on a provisional response and no longer times out with timer B', () => {
    const { layer, wire, clock, events, delegate } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    clock.advance(700);
    layer.receive(response(180));
    clock.advance(60_000);
    expect(sends(wire, 'INVITE')).toEqual([0, 500]);
    expect(events).toEqual(['response 180']);
    expect(tx.state).toBe('Proceeding');
  });

  it('acknowledges a non-2xx final response hop by hop (s17.1.1.3) and re-sends the ACK for retransmissions', () => {
    const { layer, wire, clock, events, delegate } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    layer.receive(response(486, { toTag: 'busy1' }));
    layer.receive(response(486, { toTag: 'busy1' }));
    expect(events).toEqual(['response 486']);
    const acks = wire.filter((w) => w.req.method === 'ACK');
    expect(acks).toHaveLength(2);
    const ack = acks[0]!.req;
    expect(acks[0]!.dest).toEqual(UDP_DEST);
    expect(ack.uri).toBe('sip:bob@198.51.100.20');
    expect(ack.getAll('via')).toEqual(['SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKclient1']);
    expect(ack.getAll('route')).toEqual(['<sip:edge.example.net;lr>']);
    expect(ack.has('record-route')).toBe(false);
    expect(ack.get('from')).toBe('Alice <sip:alice@example.com>;tag=fa1');
    expect(ack.get('to')).toBe('Bob <sip:bob@example.com>;tag=busy1');
    expect(ack.callId).toBe('call-9@192.0.2.10');
    expect(ack.cseq()).toEqual({ seq: 4711, method: 'ACK' });
    expect(ack.maxForwards()).toBe(70);
    expect(tx.state).toBe('Completed');
    clock.advance(31_999);
    expect(tx.state).toBe('Completed');
    // Timer D is a compact record: a late copy of the 486 still gets the very same ACK, and a 2xx
    // that makes no sense now is absorbed
    layer.receive(response(486, { toTag: 'busy1' }));
    layer.receive(response(200, { toTag: 'busy1' }));
    const later = wire.filter((w) => w.req.method === 'ACK');
    expect(later).toHaveLength(3);
    expect(later[2]!.dest).toEqual(UDP_DEST);
    expect(later[2]!.req.getAll('via')).toEqual(ack.getAll('via'));
    expect(later[2]!.req.get('to')).toBe(ack.get('to'));
    expect(events).toEqual(['response 486']);
    clock.advance(1 + 100); // timer D, swept in steps of T1/5
    expect(tx.state).toBe('Terminated');
    expect(clock.size).toBe(0);
    layer.receive(response(486, { toTag: 'busy1' }));
    expect(wire.filter((w) => w.req.method === 'ACK')).toHaveLength(3); // no record left: a stray
  });

  it('passes the first 2xx to the delegate; in Accepted (RFC 6026) further 2xx go to the stray handler, other responses are absorbed, no ACK is sent', () => {
    const { layer, wire, clock, events, delegate, strays } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    layer.receive(response(200));
    expect(layer.stats.clientTransactions).toBe(1); // counted while its record lasts
    layer.receive(response(200));
    layer.receive(response(486)); // nonsense after a 2xx: absorbed
    expect(events).toEqual(['response 200']);
    expect(strays.map((r) => r.status)).toEqual([200]);
    expect(layer.stats.strayResponses).toBe(0);
    expect(layer.stats.responsesAbsorbed).toBe(1);
    expect(tx.state).toBe('Accepted');
    expect(sends(wire, 'ACK')).toEqual([]);
    clock.advance(32_000 + 100); // timer M, swept in steps of T1/5
    expect(tx.state).toBe('Terminated');
    expect(layer.stats.clientTransactions).toBe(0);
    expect(clock.size).toBe(0);
    layer.receive(response(486));
    expect(layer.stats.strayResponses).toBe(1); // no record any more: a plain stray
    expect(strays.map((r) => r.status)).toEqual([200, 486]);
  });

  it('holds a CANCEL until a provisional response arrives (s9.1), then sends it with the INVITE identity', () => {
    const { layer, wire, clock, delegate, events } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    tx.cancel();
    clock.advance(100);
    expect(sends(wire, 'CANCEL')).toEqual([]);
    layer.receive(response(180));
    const cancels = wire.filter((w) => w.req.method === 'CANCEL');
    expect(cancels).toHaveLength(1);
    const cancel = cancels[0]!.req;
    expect(cancel.uri).toBe('sip:bob@198.51.100.20');
    expect(cancel.getAll('via')).toEqual(['SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKclient1']);
    expect(cancel.get('to')).toBe('Bob <sip:bob@example.com>');
    expect(cancel.get('from')).toBe('Alice <sip:alice@example.com>;tag=fa1');
    expect(cancel.cseq()).toEqual({ seq: 4711, method: 'CANCEL' });
    expect(cancel.getAll('route')).toEqual(['<sip:edge.example.net;lr>']);
    // the CANCEL is a client transaction of its own: its 200 does not reach the INVITE's user
    layer.receive(response(200, { method: 'CANCEL' }));
    layer.receive(response(487));
    expect(events).toEqual(['response 180', 'response 487']);
    expect(sends(wire, 'ACK')).toHaveLength(1);
    tx.cancel();
    expect(sends(wire, 'CANCEL')).toHaveLength(1);
  });

  it('sends the CANCEL at once in Proceeding, retransmits it, and gives the INVITE up 64*T1 later without a final response', () => {
    const { layer, wire, clock, delegate, events } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    layer.receive(response(183));
    tx.cancel();
    expect(sends(wire, 'CANCEL')).toEqual([0]);
    clock.advance(32_000);
    expect(sends(wire, 'CANCEL').slice(0, 3)).toEqual([0, 500, 1500]);
    expect(events).toEqual(['response 183', 'timeout@32000']);
    expect(tx.state).toBe('Terminated');
    expect(layer.stats.clientTransactions).toBe(0);
    expect(clock.size).toBe(0);
  });

  it('sends no CANCEL when the cancel was asked before a final response came without any provisional', () => {
    const { layer, wire, delegate } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, delegate);
    tx.cancel();
    layer.receive(response(603));
    expect(sends(wire, 'CANCEL')).toEqual([]);
    expect(sends(wire, 'ACK')).toHaveLength(1);
  });

  it('a delegate that throws does not break the transaction', () => {
    const { layer, wire, clock } = setup();
    const tx = layer.sendRequest(outgoing('INVITE'), UDP_DEST, {
      onResponse: () => {
        throw new Error('bug upstairs');
      },
      onTimeout: () => undefined,
      onTransportError: () => undefined,
    });
    layer.receive(response(404));
    expect(sends(wire, 'ACK')).toHaveLength(1);
    expect(tx.state).toBe('Completed');
    layer.close();
    expect(clock.size).toBe(0);
  });
});

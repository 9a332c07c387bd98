import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pino from 'pino';
import { type SipRequest, type SipResponse, parseMessage } from '../../src/core/sip/index.js';
import { type ClientTransaction, type ServerTransaction, TransactionLayer } from '../../src/core/transaction/index.js';
import { FakeClock } from '../support/fake-clock.js';

const METHODS = ['INVITE', 'REGISTER'] as const;

function inbound(method: string, k: number, toTag?: string, transport: 'udp' | 'tcp' = 'udp'): SipRequest {
  const base = k % 2 === 0 ? 'INVITE' : 'REGISTER';
  const text =
    `${method} sip:u@example.com SIP/2.0\r\n` +
    `Via: SIP/2.0/${transport.toUpperCase()} 192.0.2.1;branch=z9hG4bKp${k}\r\n` +
    'Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=f\r\n' +
    `To: <sip:u@example.com>${toTag ? `;tag=${toTag}` : ''}\r\n` +
    `Call-ID: p${k}\r\nCSeq: 1 ${method === 'ACK' || method === 'CANCEL' ? method : base}\r\nContent-Length: 0\r\n\r\n`;
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || !r.message.isRequest) throw new Error('fixture');
  r.message.source = { address: '192.0.2.1', port: 5060, transport };
  return r.message;
}

function outbound(k: number): SipRequest {
  const method = METHODS[k % 2]!;
  const r = parseMessage(
    Buffer.from(
      `${method} sip:u@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKc${k}\r\nMax-Forwards: 70\r\n` +
        `From: <sip:a@example.com>;tag=f\r\nTo: <sip:u@example.com>\r\nCall-ID: c${k}\r\nCSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`,
    ),
  );
  if (!r.ok || !r.message.isRequest) throw new Error('fixture');
  return r.message;
}

function response(k: number, status: number, method: string): SipResponse {
  const r = parseMessage(
    Buffer.from(
      `SIP/2.0 ${status} X\r\nVia: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKc${k}\r\nFrom: <sip:a@example.com>;tag=f\r\n` +
        `To: <sip:u@example.com>;tag=t\r\nCall-ID: c${k}\r\nCSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`,
    ),
  );
  if (!r.ok || r.message.isRequest) throw new Error('fixture');
  return r.message;
}

const key = fc.nat({ max: 3 });
const status = fc.constantFrom(100, 180, 200, 401, 486);
const step = fc.oneof(
  fc.record({ t: fc.constant('request' as const), k: key, tcp: fc.boolean() }),
  fc.record({ t: fc.constant('reply' as const), k: key, status }),
  fc.record({ t: fc.constant('ack' as const), k: key }),
  fc.record({ t: fc.constant('cancel' as const), k: key }),
  fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20_000 }) }),
  fc.record({ t: fc.constant('send' as const), k: key }),
  fc.record({ t: fc.constant('response' as const), k: key, status, cancelResponse: fc.boolean() }),
  fc.record({ t: fc.constant('clientCancel' as const), k: key }),
);

describe('transaction layer properties', () => {
  it('under any interleaving, requests reach the application once per transaction, clients end once, and everything ends', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const clock = new FakeClock();
        const delivered: Array<{ req: SipRequest; tx: ServerTransaction | undefined }> = [];
        const layer = new TransactionLayer({
          transport: { send: async () => undefined, sendResponse: async () => undefined },
          logger: pino({ level: 'silent' }),
          timers: clock,
          onRequest: (req, tx) => delivered.push({ req, tx }),
        });
        const servers = new Map<number, ServerTransaction>();
        const clients = new Map<number, { tx: ClientTransaction; finals: number; timeouts: number }>();
        const ended: Array<{ finals: number; timeouts: number }> = [];

        for (const s of steps) {
          switch (s.t) {
            case 'request': {
              const req = inbound(s.k % 2 === 0 ? 'INVITE' : 'REGISTER', s.k, undefined, s.tcp ? 'tcp' : 'udp');
              const existed = layer.absorbs(req);
              const before = delivered.length;
              layer.receive(req);
              if (existed) expect(delivered.length).toBe(before);
              else {
                expect(delivered.length).toBe(before + 1);
                servers.set(s.k, delivered[delivered.length - 1]!.tx!);
              }
              break;
            }
            case 'reply':
              servers.get(s.k)?.replyStatus(s.status);
              break;
            case 'ack': {
              const tx = servers.get(s.k);
              layer.receive(inbound('ACK', s.k, tx?.toTag ?? 'x'));
              break;
            }
            case 'cancel':
              layer.receive(inbound('CANCEL', s.k));
              break;
            case 'advance':
              clock.advance(s.ms);
              break;
            case 'send': {
              const live = clients.get(s.k);
              if (live && live.tx.state !== 'Terminated') break;
              if (live) ended.push(live);
              const rec = { tx: undefined as unknown as ClientTransaction, finals: 0, timeouts: 0 };
              rec.tx = layer.sendRequest(outbound(s.k), { address: '198.51.100.1', port: 5060, transport: 'udp' }, {
                onResponse: (res) => {
                  if (res.status >= 300) rec.finals++;
                },
                onTimeout: () => rec.timeouts++,
                onTransportError: () => undefined,
              });
              clients.set(s.k, rec);
              break;
            }
            case 'response':
              layer.receive(response(s.k, s.status, s.cancelResponse ? 'CANCEL' : METHODS[s.k % 2]!));
              break;
            case 'clientCancel':
              clients.get(s.k)?.tx.cancel();
              break;
          }
        }
        clock.advance(10 * 60_000);
        for (const c of [...clients.values(), ...ended]) {
          expect(c.finals + c.timeouts).toBeLessThanOrEqual(1);
        }
        expect(layer.stats.serverTransactions).toBe(0);
        expect(layer.stats.clientTransactions).toBe(0);
        expect(clock.size).toBe(0);
      }),
      { numRuns: 400 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type FrameEvent, StreamFramer, contentLength } from '../../src/core/transport/index.js';
import { parseMessage } from '../../src/core/sip/index.js';

const LIMITS = { maxMessageBytes: 16384, headroomBytes: 4096 };

function sipMessage(i: number, body = '', opts: { compact?: boolean } = {}): string {
  const length = opts.compact ? `l: ${Buffer.byteLength(body)}` : `Content-Length: ${Buffer.byteLength(body)}`;
  return (
    `OPTIONS sip:u${i}@example.com SIP/2.0\r\n` +
    `Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK${i}\r\n` +
    'Max-Forwards: 70\r\n' +
    'From: <sip:a@example.com>;tag=1\r\n' +
    'To: <sip:b@example.com>\r\n' +
    `Call-ID: c${i}\r\n` +
    `CSeq: ${i + 1} OPTIONS\r\n` +
    (body ? 'Content-Type: text/plain\r\n' : '') +
    `${length}\r\n\r\n${body}`
  );
}

function messages(events: FrameEvent[]): string[] {
  return events.flatMap((e) => (e.type === 'message' ? [e.bytes.toString('utf8')] : []));
}

function feed(framer: StreamFramer, stream: Buffer, cuts: number[]): FrameEvent[] {
  const out: FrameEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, stream.length]) {
    out.push(...framer.push(stream.subarray(prev, c)));
    prev = c;
  }
  return out;
}

describe('stream framing', () => {
  const a = sipMessage(1, 'v=0\r\n\r\nbody with a blank line\r\n\r\n');
  const b = sipMessage(2);
  const stream = Buffer.from(a + b);

  it('yields the same two messages whatever byte position the stream is split at', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const framer = new StreamFramer(LIMITS);
      const got = messages(feed(framer, stream, [cut]));
      expect(got, `split at ${cut}`).toEqual([a, b]);
      expect(framer.buffered).toBe(0);
    }
  });

  it('yields the messages when every byte arrives on its own', () => {
    const framer = new StreamFramer(LIMITS);
    const cuts = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(messages(feed(framer, stream, cuts))).toEqual([a, b]);
  });

  it('yields many messages from one chunk', () => {
    const all = Array.from({ length: 50 }, (_, i) => sipMessage(i, i % 3 ? 'x'.repeat(i) : '', { compact: i % 2 === 0 }));
    const framer = new StreamFramer(LIMITS);
    expect(messages(framer.push(Buffer.from(all.join(''))))).toEqual(all);
  });

  it('answers a double-CRLF ping, ignores single CRLFs between messages, and waits on a partial ping', () => {
    const framer = new StreamFramer(LIMITS);
    expect(framer.push(Buffer.from('\r\n\r'))).toEqual([]);
    expect(framer.push(Buffer.from('\n'))).toEqual([{ type: 'ping' }]);
    const ev = framer.push(Buffer.from(`\r\n${b}\r\n\r\n\r\n\r\n`));
    expect(ev.map((e) => e.type)).toEqual(['message', 'ping', 'ping']);
  });

  it('reports a message without Content-Length as unframeable (400)', () => {
    const framer = new StreamFramer(LIMITS);
    const noLength = b.replace(/Content-Length: 0\r\n/, '');
    const ev = framer.push(Buffer.from(noLength + b));
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'error', status: 400, reason: 'missing Content-Length on a stream transport' });
    // nothing comes out after an error: the connection is to be closed
    expect(framer.push(Buffer.from(b))).toEqual([]);
  });

  it('rejects a declared body beyond the message limit with 513 without waiting for it', () => {
    const framer = new StreamFramer(LIMITS);
    const big = b.replace('Content-Length: 0', 'Content-Length: 20000');
    const ev = framer.push(Buffer.from(big));
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'error', status: 513 });
    const head = (ev[0] as Extract<FrameEvent, { type: 'error' }>).head;
    expect(head.toString()).toContain('Call-ID: c2');
  });

  it('rejects an endless header section with 513 and never buffers more than the limit', () => {
    const framer = new StreamFramer(LIMITS);
    const events: FrameEvent[] = [];
    events.push(...framer.push(Buffer.from('OPTIONS sip:x@example.com SIP/2.0\r\n')));
    for (let i = 0; i < 2000 && events.length === 0; i++) {
      events.push(...framer.push(Buffer.from(`X-Filler-${i}: ${'y'.repeat(20)}\r\n`)));
      expect(framer.buffered).toBeLessThanOrEqual(LIMITS.maxMessageBytes + LIMITS.headroomBytes);
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'error', status: 513 });
  });

  it('reads Content-Length in any case, compact, folded, and rejects conflicting values', () => {
    const head = (rows: string) => Buffer.from(`INVITE sip:x SIP/2.0\r\n${rows}\r\n`);
    expect(contentLength(head('content-LENGTH: 12\r\n'))).toBe(12);
    expect(contentLength(head('l:7\r\n'))).toBe(7);
    expect(contentLength(head('Content-Length:\r\n  9\r\n'))).toBe(9);
    expect(contentLength(head('Content-Length: 3\r\nl: 3\r\n'))).toBe(3);
    expect(contentLength(head('Content-Length: 3\r\nl: 4\r\n'))).toBe('conflicting Content-Length headers');
    expect(contentLength(head('Content-Length: -1\r\n'))).toBe('malformed Content-Length');
  });
});

describe('stream framing properties', () => {
  const msgArb = fc.record({
    body: fc.string({ maxLength: 300 }),
    compact: fc.boolean(),
    keepAlive: fc.constantFrom('', '\r\n', '\r\n\r\n'),
  });

  it('splitting a stream of valid messages at random points yields exactly those messages', () => {
    fc.assert(
      fc.property(fc.array(msgArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 }), (specs, rawCuts) => {
        const texts = specs.map((s, i) => sipMessage(i, s.body, { compact: s.compact }));
        const stream = Buffer.from(specs.map((s, i) => s.keepAlive + texts[i]).join(''));
        const cuts = [...new Set(rawCuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
        const framer = new StreamFramer(LIMITS);
        const events = feed(framer, stream, cuts);
        const got = events.filter((e) => e.type === 'message').map((e) => (e as { bytes: Buffer }).bytes);
        expect(got.map((g) => g.toString('utf8'))).toEqual(texts);
        // each framed message parses as a stream message, body intact
        got.forEach((g, i) => {
          const r = parseMessage(g, undefined, false);
          expect(r.ok).toBe(true);
          if (r.ok) expect(r.message.body.toString('utf8')).toBe(specs[i]!.body);
        });
        expect(events.filter((e) => e.type === 'ping')).toHaveLength(specs.filter((s) => s.keepAlive === '\r\n\r\n').length);
        expect(events.some((e) => e.type === 'error')).toBe(false);
        expect(framer.buffered).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes never throw and never grow the buffer beyond its limit', () => {
    const small = { maxMessageBytes: 512, headroomBytes: 128 };
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.constantFrom('\r\n', '\r\n\r\n', 'Content-Length: 5\r\n', 'l: 99999\r\n', 'INVITE sip:a SIP/2.0\r\n').map((s) => Buffer.from(s))), {
          maxLength: 40,
        }),
        (chunks) => {
          const framer = new StreamFramer(small);
          let errors = 0;
          for (const c of chunks) {
            for (const e of framer.push(Buffer.from(c))) {
              if (e.type === 'error') errors++;
              if (e.type === 'message') expect(e.bytes.length).toBeLessThanOrEqual(small.maxMessageBytes);
            }
            expect(framer.buffered).toBeLessThanOrEqual(small.maxMessageBytes + small.headroomBytes);
          }
          expect(errors).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

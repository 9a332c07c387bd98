import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AnyMessage,
  DEFAULT_LIMITS,
  HeaderError,
  UriError,
  createResponse,
  parseCSeq,
  parseMessage,
  parseNameAddr,
  parseParams,
  parseUri,
  parseVia,
  serialize,
  splitCommaList,
  quote,
} from '../../src/core/sip/index.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sip');
const SEEDS = [
  'seed-register-auth',
  'seed-register-auth-folded',
  'seed-invite-sdp',
  'seed-401',
  'sbc-register-phone',
  'rfc4475-wsinv',
  'rfc4475-intmeth',
  'rfc4475-longreq',
  'rfc4475-mpart01',
  'rfc4475-esc01',
  'rfc5118-ipv6-port',
].map((n) => readFileSync(path.join(dir, `${n}.sip`)));
// A status line with no SP before its empty reason phrase (written back with the SP).
SEEDS.push(Buffer.from(SEEDS[3]!.toString('latin1').replace('SIP/2.0 401 Unauthorized', 'SIP/2.0 401'), 'latin1'));

/** Calls every parsed accessor; only HeaderError (a malformed header) may come out of them. */
function exercise(msg: AnyMessage): void {
  const probes: Array<() => unknown> = [
    () => msg.vias(),
    () => msg.from(),
    () => msg.to(),
    () => msg.callId,
    () => msg.cseq(),
    () => msg.contacts(),
    () => msg.routes(),
    () => msg.recordRoutes(),
    () => msg.expires(),
    () => msg.maxForwards(),
    () => (msg.isRequest ? msg.requestUri() : undefined),
  ];
  for (const probe of probes) {
    try {
      probe();
    } catch (err) {
      if (!(err instanceof HeaderError)) throw err;
    }
  }
}

/**
 * What must hold for any input: no exception, no internal error hidden behind the safety net, a
 * refusal is a proper value, an acceptance can be used and written out again.
 */
function checkAnyInput(buf: Buffer): void {
  const r = parseMessage(buf);
  if (r.ok) {
    exercise(r.message);
    const out = serialize(r.message);
    const again = parseMessage(out);
    expect(again.ok).toBe(true);
    return;
  }
  // parseMessage catches everything as a last resort; reaching that net means a bug in the parser.
  expect(r.reason).not.toMatch(/^unparseable message/);
  expect([400, 505, 513]).toContain(r.status);
  expect(r.reason.length).toBeGreaterThan(0);
  expect(r.reason.length).toBeLessThanOrEqual(120);
  if (r.partial) {
    expect(r.partial.headers.some((h) => h.key === 'via')).toBe(true);
    const answer = serialize(createResponse(r.partial, r.status, { reason: r.reason }));
    expect(answer.subarray(0, 12).toString('latin1')).toBe(`SIP/2.0 ${r.status} `);
    // An answer is only built when it is itself a well-formed message (however large it is: a 513
    // repeats the oversized request's Via rows).
    const back = parseMessage(answer, { ...DEFAULT_LIMITS, maxMessageBytes: 1 << 20, maxLineLength: 1 << 20 });
    expect(back.ok ? back.message.isRequest : back.reason).toBe(false);
  }
}

const seed = fc.constantFrom(...SEEDS);

/** Splits a message at its line ends (keeping them), so line-level mutations stay line-shaped. */
function lines(buf: Buffer): Buffer[] {
  if (buf.length === 0) return [Buffer.alloc(0)];
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const nl = buf.indexOf(0x0a, at);
    const end = nl === -1 ? buf.length : nl + 1;
    out.push(buf.subarray(at, end));
    at = end;
  }
  return out;
}

const sipish = fc.constantFrom(...'\r\n \t:;,<>"\\@?=/[]%()*aZ09.-'.split(''));
const nasty = fc.string({ unit: fc.oneof(sipish, fc.constantFrom('\u0000', '\u00ff', 'é', '\ufeff')), maxLength: 40 });

type Mutation = (b: Buffer) => Buffer;

const mutation: fc.Arbitrary<Mutation> = fc.oneof<fc.Arbitrary<Mutation>[]>(
  // byte flips
  fc
    .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 })
    .map((flips) => (b: Buffer) => {
      const c = Buffer.from(b);
      for (const [pos, v] of flips) c[pos % c.length] = v;
      return c;
    }),
  // truncation
  fc.nat().map((n) => (b: Buffer) => b.subarray(0, n % (b.length + 1))),
  // a duplicated line
  fc.nat().map((n) => (b: Buffer) => {
    const ls = lines(b);
    const i = n % ls.length;
    return Buffer.concat([...ls.slice(0, i + 1), ls[i]!, ...ls.slice(i + 1)]);
  }),
  // a removed line
  fc.nat().map((n) => (b: Buffer) => {
    const ls = lines(b);
    const i = n % ls.length;
    return Buffer.concat([...ls.slice(0, i), ...ls.slice(i + 1)]);
  }),
  // an injected header row, name and value drawn from SIP's special characters
  fc.tuple(fc.nat(), nasty, nasty).map(([n, name, value]) => (b: Buffer) => {
    const ls = lines(b);
    const i = 1 + (n % Math.max(1, ls.length - 1));
    return Buffer.concat([...ls.slice(0, i), Buffer.from(`${name}: ${value}\r\n`, 'utf8'), ...ls.slice(i)]);
  }),
  // a huge value made of a repeated troublesome pattern (quotes, commas, angle brackets, folds)
  fc
    .tuple(fc.constantFrom('Via', 'Contact', 'From', 'To', 'Route', 'CSeq', 'X-Big', 'Content-Length'), fc.constantFrom('"', ',', '<', ';', '\\', '\r\n ', 'a;b=', '[', '%'), fc.integer({ min: 1, max: 70_000 }))
    .map(([name, unit, n]) => (b: Buffer) => {
      const ls = lines(b);
      return Buffer.concat([ls[0]!, Buffer.from(`${name}: ${unit.repeat(Math.ceil(n / unit.length))}\r\n`), ...ls.slice(1)]);
    }),
  // random bytes spliced in
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([n, bytes]) => (b: Buffer) => {
    const i = n % (b.length + 1);
    return Buffer.concat([b.subarray(0, i), Buffer.from(bytes), b.subarray(i)]);
  }),
);

describe('parseMessage on mutated real messages', () => {
  it('never throws, never trips its own safety net, and every answer is usable', () => {
    fc.assert(
      fc.property(seed, fc.array(mutation, { minLength: 1, maxLength: 4 }), (base, muts) => {
        checkAnyInput(muts.reduce<Buffer>((b, m) => m(b), base));
      }),
      { numRuns: 1500 },
    );
  });

  it('copes with arbitrary bytes and with streams of CR, LF and folds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => checkAnyInput(Buffer.from(bytes))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('\r', '\n', ' ', '\t', ':', 'V', 'SIP/2.0 ', 'INVITE '), maxLength: 400 }), (s) =>
        checkAnyInput(Buffer.from(s, 'latin1')),
      ),
      { numRuns: 500 },
    );
  });
});

// ---- generated valid messages ------------------------------------------------------------------

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const host = fc.oneof(
  fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => `${ls.join('.')}.example`),
  fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.')),
  fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 2, maxLength: 4 }).map((g) => `[2001:db8::${g.map((x) => x.toString(16)).join(':')}]`),
);
const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined });
const user = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9._~+-]{0,11}$/);
const word = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}$/);
const display = fc.option(
  fc.oneof(
    fc.string({ unit: fc.constantFrom(...'ab ,;<>@"\\é'.split('')), maxLength: 16 }).map(quote),
    fc.array(word, { minLength: 1, maxLength: 3 }).map((ws) => ws.join(' ')),
  ),
  { nil: undefined },
);
const method = fc.constantFrom('INVITE', 'REGISTER', 'OPTIONS', 'BYE', 'MESSAGE', 'X-CUSTOM');
/** A header name as a sender might spell it: canonical, shouted, lowercase or compact. */
const spelling = (long: string, compact?: string) =>
  fc.constantFrom(...[long, long.toUpperCase(), long.toLowerCase(), ...(compact ? [compact] : [])]);

interface Generated {
  readonly bytes: Buffer;
  readonly method: string;
  readonly callId: string;
  readonly seq: number;
  readonly branches: string[];
  readonly fromTag: string;
  readonly contactCount: number;
  readonly body: Buffer;
}

const validMessage: fc.Arbitrary<Generated> = fc
  .record({
    method,
    ruser: user,
    rhost: host,
    rport: port,
    vias: fc.array(fc.tuple(fc.constantFrom('UDP', 'TCP', 'TLS', 'udp'), host, port, word), { minLength: 1, maxLength: 4 }),
    viaAsList: fc.boolean(),
    fromDisplay: display,
    fromUser: user,
    fromTag: word,
    toUser: user,
    callId: fc.stringMatching(/^[A-Za-z0-9.!%*_+`'~()<>:\\"/[\]?{}-]{1,24}(@[a-z0-9.]{1,12})?$/),
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    contacts: fc.array(fc.tuple(display, user, host, fc.option(fc.integer({ min: 0, max: 7200 }), { nil: undefined })), { maxLength: 3 }),
    names: fc.record({ via: spelling('Via', 'v'), from: spelling('From', 'f'), to: spelling('To', 't'), callId: spelling('Call-ID', 'i'), contact: spelling('Contact', 'm'), length: spelling('Content-Length', 'l') }),
    fold: fc.boolean(),
    extra: fc.array(fc.tuple(word, fc.string({ unit: fc.constantFrom(...'abc ,;="<>é'.split('')), maxLength: 30 })), { maxLength: 3 }),
    body: fc.uint8Array({ maxLength: 300 }),
  })
  .map((g) => {
    const hp = (h: string, p: number | undefined) => (p === undefined ? h : `${h}:${p}`);
    const na = (d: string | undefined, uri: string) => (d === undefined ? `<${uri}>` : `${d} <${uri}>`);
    const branches = g.vias.map((v, i) => `z9hG4bK${v[3]}${i}`);
    const viaValues = g.vias.map((v, i) => `SIP/2.0/${v[0]} ${hp(v[1], v[2])};branch=${branches[i]}`);
    const rows: string[] = [];
    if (g.viaAsList) rows.push(`${g.names.via}: ${viaValues.join(',\r\n ')}`);
    else for (const v of viaValues) rows.push(`${g.names.via}: ${v}`);
    rows.push(`Max-Forwards: 70`);
    rows.push(`${g.names.from}: ${na(g.fromDisplay, `sip:${g.fromUser}@example.com`)};tag=${g.fromTag}`);
    rows.push(`${g.names.to}: ${g.fold ? '\r\n\t' : ''}<sip:${g.toUser}@example.com>`);
    rows.push(`${g.names.callId}: ${g.callId}`);
    rows.push(`CSeq: ${g.seq} ${g.method}`);
    for (const [d, u, h, e] of g.contacts) rows.push(`${g.names.contact}: ${na(d, `sip:${u}@${h}`)}${e === undefined ? '' : `;expires=${e}`}`);
    for (const [n, v] of g.extra) rows.push(`X-${n}: ${v}`);
    rows.push(`${g.names.length}: ${g.body.length}`);
    const head = `${g.method} sip:${g.ruser}@${hp(g.rhost, g.rport)} SIP/2.0\r\n${rows.join('\r\n')}\r\n\r\n`;
    return {
      bytes: Buffer.concat([Buffer.from(head, 'utf8'), Buffer.from(g.body)]),
      method: g.method,
      callId: g.callId,
      seq: g.seq,
      branches,
      fromTag: g.fromTag,
      contactCount: g.contacts.length,
      body: Buffer.from(g.body),
    };
  });

describe('generated valid messages', () => {
  it('parse with the fields they were built from and serialise byte for byte', () => {
    fc.assert(
      fc.property(validMessage, (g) => {
        const r = parseMessage(g.bytes);
        if (!r.ok) throw new Error(`refused: ${r.reason}\n${g.bytes.toString('utf8')}`);
        const m = r.message;
        expect(m.isRequest && m.method).toBe(g.method);
        expect(m.callId).toBe(g.callId);
        expect(m.cseq()).toEqual({ seq: g.seq, method: g.method });
        expect(m.vias().map((v) => v.branch)).toEqual(g.branches);
        expect(m.from().params.get('tag')).toBe(g.fromTag);
        expect(m.contacts()).toHaveLength(g.contactCount);
        expect(m.body.equals(g.body)).toBe(true);
        expect(serialize(m).equals(g.bytes)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('parse(serialize(parse(x))) is stable after a change, and serialising again is idempotent', () => {
    fc.assert(
      fc.property(validMessage, fc.integer({ min: 0, max: 69 }), (g, mf) => {
        const first = parseMessage(g.bytes);
        if (!first.ok) throw new Error(first.reason);
        first.message.set('Max-Forwards', String(mf));
        first.message.prepend('Via', 'SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy');
        const out = serialize(first.message);
        const second = parseMessage(out);
        if (!second.ok) throw new Error(second.reason);
        expect(second.message.headers.map((h) => [h.key, h.value])).toEqual(first.message.headers.map((h) => [h.key, h.value]));
        expect(second.message.maxForwards()).toBe(mf);
        expect(second.message.vias()).toHaveLength(g.branches.length + 1);
        expect(second.message.body.equals(g.body)).toBe(true);
        second.message.modified = true;
        second.message.wire = undefined;
        expect(serialize(second.message).equals(out)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });
});

describe('serialising edited messages', () => {
  type Edit = (m: AnyMessage) => void;
  const value = fc.string({ unit: fc.constantFrom(...'ab1 ;=<>:@"é'.split('')), maxLength: 20 });
  const headerName = fc.constantFrom('Via', 'v', 'Max-Forwards', 'Contact', 'content-length', 'X-Test', 'Route', 'P-hint', 'Authorization', 'To');
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.tuple(headerName, value).map(([n, v]): Edit => (m) => m.set(n, v)),
    fc.tuple(headerName, value).map(([n, v]): Edit => (m) => m.append(n, v)),
    fc.tuple(headerName, value).map(([n, v]): Edit => (m) => m.prepend(n, v)),
    headerName.map((n): Edit => (m) => void m.remove(n)),
    headerName.map((n): Edit => (m) => void m.removeFirstValue(n)),
    fc.uint8Array({ maxLength: 40 }).map((b): Edit => (m) => m.setBody(Buffer.from(b))),
    fc.constant<Edit>((m) => {
      if (m.isRequest) m.setRequestUri('sip:elsewhere.example.net;lr');
    }),
  );

  it('copying untouched rows from the received bytes gives exactly the bytes re-encoding gives', () => {
    fc.assert(
      fc.property(fc.constantFrom(...SEEDS), fc.array(edit, { maxLength: 6 }), (bytes, edits) => {
        const r = parseMessage(bytes);
        if (!r.ok) throw new Error(r.reason);
        const m = r.message;
        for (const e of edits) e(m);
        const copy = m.isRequest ? m.clone() : m.clone();
        const viaLayout = serialize(copy);
        // Plain-ASCII header blocks (all but intmeth's) are served from the received bytes.
        const head = bytes.subarray(0, bytes.indexOf('\r\n\r\n'));
        expect(copy.layout !== undefined).toBe(head.every((b) => b < 0x80) && !head.includes('SIP/2.0 401\r\n'));
        copy.layout = undefined;
        expect(serialize(copy).toString('latin1')).toBe(viaLayout.toString('latin1'));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('component parsers on arbitrary strings', () => {
  const anyText = fc.oneof(nasty, fc.string({ maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 40 }), fc.constantFrom('sip:', 'sip:@', 'sip:[', 'sip:a@[::1', '<sip:a>;', '"\\', 'SIP/2.0/UDP ', 'SIP / 2.0 / UDP [::1]:99999'));
  const prefixed = fc.tuple(fc.constantFrom('', 'sip:', 'sips:', '<sip:', '"x" <sip:', 'SIP/2.0/UDP ', 'tel:'), anyText).map(([a, b]) => a + b);

  it.each([
    ['parseUri', parseUri],
    ['parseNameAddr', parseNameAddr],
    ['parseVia', parseVia],
    ['parseCSeq', parseCSeq],
  ] as const)('%s throws nothing but UriError', (_name, parser) => {
    fc.assert(
      fc.property(prefixed, (s) => {
        try {
          parser(s);
        } catch (err) {
          expect(err).toBeInstanceOf(UriError);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('parseParams and splitCommaList never throw', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        parseParams(s);
        expect(splitCommaList(s).every((p) => p.length > 0)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

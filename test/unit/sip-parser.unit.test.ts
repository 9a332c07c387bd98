import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type AnyMessage,
  type NameAddr,
  type SipRequest,
  type SipResponse,
  DEFAULT_LIMITS,
  HeaderError,
  createResponse,
  parseMessage,
  serialize,
  UriError,
  parseUri,
  unescapeUser,
  unquote,
} from '../../src/core/sip/index.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sip');
const load = (name: string): Buffer => readFileSync(path.join(dir, `${name}.sip`));

function parse(name: string): AnyMessage {
  const r = parseMessage(load(name));
  if (!r.ok) throw new Error(`${name} was rejected: ${r.status} ${r.reason}`);
  return r.message;
}
const req = (name: string): SipRequest => {
  const m = parse(name);
  if (!m.isRequest) throw new Error(`${name} is not a request`);
  return m;
};
const res = (name: string): SipResponse => {
  const m = parse(name);
  if (m.isRequest) throw new Error(`${name} is not a response`);
  return m;
};
const tag = (na: NameAddr): string | null | undefined => na.params.get('tag');
const contacts = (m: AnyMessage): NameAddr[] => {
  const c = m.contacts();
  if (c === '*') throw new Error('wildcard');
  return c;
};
/** The body as it sits in the fixture: everything after the first empty line. */
const fixtureBody = (name: string): Buffer => {
  const b = load(name);
  return b.subarray(b.indexOf('\r\n\r\n') + 4);
};

/** Messages sipledger accepts, parses and can forward exactly as received. */
const VALID = [
  'seed-register-noauth',
  'seed-401',
  'seed-register-auth',
  'seed-register-auth-folded',
  'seed-200-register',
  'seed-invite-sdp',
  'seed-407',
  'seed-ack',
  'seed-invite-proxy-auth',
  'seed-100-giving-a-try',
  'seed-100-trying-3via',
  'sbc-register-phone',
  'sbc-register-core',
  'sbc-200-register',
  'rfc4475-wsinv',
  'rfc4475-intmeth',
  'rfc4475-esc01',
  'rfc4475-escnull',
  'rfc4475-esc02',
  'rfc4475-lwsdisp',
  'rfc4475-longreq',
  'rfc4475-semiuri',
  'rfc4475-transports',
  'rfc4475-mpart01',
  'rfc4475-unreason',
  'rfc4475-noreason',
  'rfc4475-badbranch',
  'rfc4475-baddate',
  'rfc4475-badaspec',
  'rfc4475-regbadct',
  'rfc4475-unkscm',
  'rfc4475-novelsc',
  'rfc4475-unksm2',
  'rfc4475-bext01',
  'rfc4475-invut',
  'rfc4475-regaut01',
  'rfc4475-bcast',
  'rfc4475-zeromf',
  'rfc4475-regescrt',
  'rfc5118-ipv6-good',
  'rfc5118-ipv6-port',
];

/**
 * Messages sipledger refuses, with the answer RFC 4475 expects from a proxy/registrar.
 * `partial: true` means a response is built (the Via, From, To, Call-ID and CSeq it copies are
 * well-formed); `false` means the input is dropped: responses, requests with nothing to answer to,
 * and requests whose answer would have to repeat a broken header (no peer could parse it).
 */
const INVALID: ReadonlyArray<{ name: string; status: number; partial: boolean; reason: RegExp; why: string }> = [
  { name: 'rfc4475-badinv01', status: 400, partial: false, reason: /Via/, why: 's3.1.2.1: extraneous separators; a 400 would repeat the broken Via, so it is dropped' },
  { name: 'rfc4475-clerr', status: 400, partial: true, reason: /Content-Length/, why: 's3.1.2.2: over UDP, Content-Length larger than the datagram: 400' },
  { name: 'rfc4475-ncl', status: 400, partial: true, reason: /Content-Length/, why: 's3.1.2.3: negative Content-Length: 400' },
  { name: 'rfc4475-scalar02', status: 400, partial: false, reason: /CSeq/, why: 's3.1.2.4: overlarge scalar fields; a 400 would repeat the overlarge CSeq, so it is dropped' },
  { name: 'rfc4475-scalarlg', status: 400, partial: false, reason: /CSeq/, why: 's3.1.2.5: a response with overlarge scalars is dropped' },
  { name: 'rfc4475-quotbal', status: 400, partial: false, reason: /To/, why: 's3.1.2.6: unterminated quoted display name; a 400 would repeat the broken To, so it is dropped' },
  { name: 'rfc4475-ltgtruri', status: 400, partial: true, reason: /Request-URI/, why: 's3.1.2.7: <> around the Request-URI: 400' },
  { name: 'rfc4475-lwsruri', status: 400, partial: true, reason: /request line/, why: 's3.1.2.8: LWS inside the Request-URI: 400' },
  { name: 'rfc4475-lwsstart', status: 400, partial: true, reason: /request line/, why: 's3.1.2.9: several SP between request-line elements: 400' },
  { name: 'rfc4475-trws', status: 400, partial: true, reason: /request line/, why: 's3.1.2.10: SP after the SIP version: 400' },
  { name: 'rfc4475-escruri', status: 400, partial: true, reason: /Request-URI/, why: 's3.1.2.11: escaped headers in the Request-URI: 400 is acceptable, and a proxy must not forward them' },
  { name: 'rfc4475-baddn', status: 400, partial: false, reason: /display name/, why: 's3.1.2.15: non-token characters in a display name; a 400 would repeat the broken From, so it is dropped' },
  { name: 'rfc4475-badvers', status: 505, partial: true, reason: /version/, why: 's3.1.2.16: unknown protocol version: 505' },
  { name: 'rfc4475-mismatch01', status: 400, partial: true, reason: /CSeq method/, why: 's3.1.2.17: start line and CSeq method differ: 400' },
  { name: 'rfc4475-mismatch02', status: 400, partial: true, reason: /CSeq method/, why: 's3.1.2.18: unknown method and CSeq mismatch: 400 (501 also allowed)' },
  { name: 'rfc4475-bigcode', status: 400, partial: false, reason: /status/, why: 's3.1.2.19: overlarge response code: the response is dropped' },
  { name: 'rfc4475-insuf', status: 400, partial: false, reason: /missing/, why: 's3.3.1: missing From, To and Call-ID: nothing to build a response from, dropped' },
  { name: 'rfc4475-multi01', status: 400, partial: true, reason: /more than one/, why: 's3.3.8: several values in single-valued fields: 400' },
  { name: 'rfc4475-mcl01', status: 400, partial: true, reason: /Content-Length/, why: 's3.3.9: several Content-Length values: 400' },
  { name: 'rfc5118-ipv6-bad', status: 400, partial: true, reason: /Request-URI/, why: 'RFC 5118 s4.3: IPv6 host without brackets: 400' },
];

describe('golden fixtures', () => {
  it('every fixture file is classified, so a new fixture cannot go untested', () => {
    const files = readdirSync(dir).filter((f) => f.endsWith('.sip')).map((f) => f.slice(0, -4));
    const known = new Set([...VALID, ...INVALID.map((i) => i.name), 'rfc4475-dblreq', 'rfc4475-inv2543']);
    expect(files.filter((f) => !known.has(f))).toEqual([]);
    expect([...known].filter((k) => !files.includes(k))).toEqual([]);
  });

  it.each(VALID)('%s parses and an untouched message serialises byte for byte', (name) => {
    const bytes = load(name);
    const r = parseMessage(bytes);
    expect(r.ok ? 'ok' : `${r.status} ${r.reason}`).toBe('ok');
    if (!r.ok) return;
    expect(serialize(r.message).equals(bytes)).toBe(true);
    // The same holds when the bytes are not reused wholesale: every untouched row from raw.
    r.message.wire = undefined;
    expect(serialize(r.message).toString('latin1')).toBe(bytes.toString('latin1'));
  });

  it.each(VALID)('%s survives parse(serialize(parse(x))) with the same rows and body', (name) => {
    const first = parse(name);
    first.modified = true;
    first.wire = undefined;
    const r = parseMessage(serialize(first));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.message.headers.map((h) => [h.key, h.value])).toEqual(first.headers.map((h) => [h.key, h.value]));
    expect(r.message.body.equals(first.body)).toBe(true);
  });

  it.each(INVALID)('$name is refused with $status ($why)', ({ name, status, partial, reason }) => {
    const r = parseMessage(load(name));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(status);
    expect(r.reason).toMatch(reason);
    expect(r.reason.length).toBeLessThanOrEqual(120);
    expect(r.partial !== undefined).toBe(partial);
    if (r.partial) {
      // The partial request is answerable: the response carries its Via rows and dialog headers
      // as received (RFC 3261 s8.2.6.2), with the reason phrase naming the problem.
      const bytes = serialize(createResponse(r.partial, r.status, { reason: r.reason, toTag: 'x1' }));
      const answer = bytes.toString('utf8');
      expect(answer.startsWith(`SIP/2.0 ${status} ${r.reason}\r\n`)).toBe(true);
      for (const key of ['via', 'from', 'call-id', 'cseq']) {
        expect(answer).toContain(`\r\n${r.partial.headers.find((h) => h.key === key)!.raw}\r\n`);
      }
      const back = parseMessage(bytes);
      expect(back.ok ? back.message.isRequest : back.reason).toBe(false);
    }
  });
});

describe('seed captures (Grandstream BT110 through OpenSER)', () => {
  it('REGISTER with digest credentials: request line, Vias, tags, CSeq, Contact, Expires', () => {
    const m = req('seed-register-auth');
    expect(m.method).toBe('REGISTER');
    expect(m.uri).toBe('sip:192.168.1.15');
    expect(m.requestUri().host).toBe('192.168.1.15');
    expect(m.vias().map((v) => [v.transport, v.host, v.branch])).toEqual([
      ['UDP', '192.168.1.15', 'z9hG4bK65d.33f1abb2.0'],
      ['UDP', '192.168.1.10', 'z9hG4bKa468c8b72fe7a3a7'],
    ]);
    expect(tag(m.from())).toBe('20321951e0685e4d');
    expect(m.from().uri.user).toBe('10');
    expect(tag(m.to())).toBeUndefined();
    expect(m.callId).toBe('33706713ea3b83fd@192.168.1.10');
    expect(m.cseq()).toEqual({ seq: 101, method: 'REGISTER' });
    expect(contacts(m).map((c) => c.uri.raw)).toEqual(['sip:10@192.168.1.10']);
    expect(m.expires()).toBe(150);
    expect(m.maxForwards()).toBe(68);
    expect(m.get('authorization')).toBe(
      'Digest username="10", realm="192.168.1.15", algorithm=MD5, uri="sip:192.168.1.15", nonce="462791f06aa9b37a34fd11b1adc58c5a9df7c95b", response="be9e8d46b8dcd522f22301e1f2b3287c"',
    );
    expect(m.get('P-Hint')).toBe('Self-Looped');
    expect(m.body.length).toBe(0);
  });

  it('a folded Authorization header unfolds to the single-line value and is forwarded still folded', () => {
    const folded = req('seed-register-auth-folded');
    expect(folded.get('Authorization')).toBe(req('seed-register-auth').get('authorization'));
    folded.set('Max-Forwards', String(folded.maxForwards()! - 1));
    const out = serialize(folded).toString('latin1');
    expect(out).toBe(load('seed-register-auth-folded').toString('latin1').replace('Max-Forwards: 69\r\n', 'Max-Forwards: 68\r\n'));
    expect(out).toContain('algorithm=MD5,\r\n uri="sip:192.168.1.15"');
  });

  it('401 and 200 answers: status, reason, To tag, challenge, Contact expires', () => {
    const challenge = res('seed-401');
    expect([challenge.status, challenge.reason]).toEqual([401, 'Unauthorized']);
    expect(tag(challenge.to())).toBe('4f4b3fc66ce1848604aacd9b43692540.ca9b');
    expect(challenge.get('WWW-Authenticate')).toBe('Digest realm="192.168.1.15", nonce="462791f06aa9b37a34fd11b1adc58c5a9df7c95b"');
    const ok = res('seed-200-register');
    expect(ok.status).toBe(200);
    expect(contacts(ok)[0]!.params.get('expires')).toBe('150');
    expect(res('seed-100-giving-a-try').reason).toBe('Giving a try');
    expect(res('seed-100-trying-3via').vias().map((v) => v.branch)).toEqual([
      'z9hG4bKd696.7412566.0',
      'z9hG4bKd696.6412566.0',
      'z9hG4bK97d3b9d4b3648ecf',
    ]);
  });

  it('INVITE with SDP: body bytes, Content-Type, Allow list', () => {
    const m = req('seed-invite-sdp');
    expect(m.body.equals(fixtureBody('seed-invite-sdp'))).toBe(true);
    expect(m.get('content-type')).toBe('application/sdp');
    expect(m.getAll('allow')).toEqual(['INVITE', 'ACK', 'CANCEL', 'BYE', 'NOTIFY', 'REFER', 'OPTIONS', 'INFO', 'SUBSCRIBE']);
    const auth = req('seed-invite-proxy-auth');
    expect(auth.get('proxy-authorization')).toMatch(/^Digest username="10", realm="192.168.1.15", algorithm=MD5, uri="sip:11@192.168.1.15", nonce=/);
    expect(req('seed-ack').cseq()).toEqual({ seq: 21582, method: 'ACK' });
  });

  it('SBC registration: quoted display names, a quoted Contact parameter holding commas, rport, Path', () => {
    const phone = req('sbc-register-phone');
    expect(phone.from().displayName).toBe('"Corey Lewis"');
    expect(unquote(phone.from().displayName!)).toBe('Corey Lewis');
    const [c, ...more] = contacts(phone);
    expect(more).toEqual([]);
    expect(c!.uri.port).toBe(5060);
    expect(c!.uri.params.get('transport')).toBe('udp');
    expect(c!.params.get('methods')).toBe('"INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE, SUBSCRIBE, NOTIFY, PRACK, UPDATE, REFER"');
    expect(phone.topVia()!.params.get('rport')).toBeNull();
    expect(phone.topVia()!.port).toBe(5060);
    expect(phone.getAll('supported')).toEqual(['100rel', 'replaces']);
    const core = req('sbc-register-core');
    expect(core.getAll('path')).toEqual(['<sip:10.20.30.5:5060;lr>']);
    expect(contacts(core)[0]!.uri.user).toBe('9197400628-2h3m9c1e0a8b');
    const ok = res('sbc-200-register');
    expect(contacts(ok)[0]!.params.get('expires')).toBe('3599');
    expect(contacts(ok)[0]!.params.get('q')).toBe('0.5');
  });
});

describe('RFC 4475 valid messages', () => {
  it('wsinv: folding, LWS everywhere, compact forms mixed with long ones, leading zeros, unknown headers', () => {
    const m = req('rfc4475-wsinv');
    expect(m.method).toBe('INVITE');
    expect(m.requestUri().params.has('unknownparam')).toBe(true);
    expect(m.requestUri().params.get('unknownparam')).toBeNull();
    expect(m.to().uri.user).toBe('vivekg');
    expect(tag(m.to())).toBe('1918181833n');
    expect(m.from().displayName).toBe('"J Rosenberg \\\\\\""');
    expect(unquote(m.from().displayName!)).toBe('J Rosenberg \\"');
    expect(tag(m.from())).toBe('98asjd8');
    expect(m.maxForwards()).toBe(68);
    expect(m.callId).toBe('wsinv.ndaksdj@192.0.2.1');
    expect(m.cseq()).toEqual({ seq: 9, method: 'INVITE' });
    expect(m.vias().map((v) => [v.protocol, v.transport, v.host, v.branch])).toEqual([
      ['SIP/2.0', 'UDP', '192.0.2.2', '390skdjuw'],
      ['SIP/2.0', 'TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['SIP/2.0', 'UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    expect(m.topVia()!.params.get('rport')).toBeNull();
    expect(m.get('subject')).toBe('');
    expect(m.has('s')).toBe(true);
    expect(m.get('NewFangledHeader')).toBe('newfangled value continued newfangled value');
    expect(m.get('UnknownHeaderWithUnusualValue')).toBe(';;,,;;,;');
    expect(m.routes().map((r) => [r.uri.host, r.uri.params.has('lr')])).toEqual([['services.example.com', true]]);
    const [c] = contacts(m);
    expect(c!.displayName).toBe('"Quoted string \\"\\""');
    expect([c!.params.get('newparam'), c!.params.get('secondparam'), c!.params.get('q')]).toEqual(['newvalue', null, '0.33']);
    expect(m.body.length).toBe(150);
  });

  it('intmeth: the whole token alphabet in the method, an unusual Request-URI, quoted NUL, UTF-8 values', () => {
    const m = req('rfc4475-intmeth');
    const method = "!interesting-Method0123456789_*+`.%indeed'~";
    expect(m.method).toBe(method);
    expect(m.cseq()).toEqual({ seq: 139122385, method });
    const ruri = m.requestUri();
    expect(ruri.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(ruri.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(ruri.host).toBe('example.com');
    expect(m.topVia()!.branch).toBe("z9hG4bK-.!%66*_+`'~");
    expect(m.to().uri.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(m.to().displayName).toBe('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"');
    expect(m.from().displayName).toBe("token1~` token2'+_ token3*%!.-");
    expect(m.from().params.get("fromparam''~+*_!.-%")).toBe('"работающий"');
    expect(tag(m.from())).toBe("_token~1'+`*%!-.");
    expect(m.callId).toBe('intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    expect(m.maxForwards()).toBe(255);
    expect(m.get("extensionHeader-!.%*+_`'~")).toBe('\ufeff大停電');
  });

  it('esc01 and escnull: escapes stay as written in URIs and decode on demand', () => {
    const m = req('rfc4475-esc01');
    expect(m.requestUri().user).toBe('sips%3Auser%40example.com');
    expect(unescapeUser(m.requestUri().user!)).toBe('sips:user@example.com');
    expect(m.requestUri().host).toBe('example.net');
    expect(unescapeUser(m.to().uri.user!)).toBe('user');
    expect(unescapeUser(m.from().uri.user!)).toBe('I have spaces');
    expect(m.callId).toBe('esc01.239409asdfakjkn23onasd0-3234');
    expect(m.get('Content-Type')).toBe('application/sdp');
    const [c] = contacts(m);
    expect(c!.uri.user).toBe('cal%6Cer');
    expect(c!.uri.params.get('n%61me')).toBe('v%61lue%25%34%31');
    const n = req('rfc4475-escnull');
    expect(n.to().uri.user).toBe('null-%00-null');
    expect(contacts(n).map((x) => x.uri.user)).toEqual(['%00', '%00%00']);
    expect(n.get('content-length')).toBe('0');
  });

  it('esc02: % in a method or header name is not an escape', () => {
    const m = req('rfc4475-esc02');
    expect(m.method).toBe('RE%47IST%45R');
    expect(m.cseq().method).toBe('RE%47IST%45R');
    expect(contacts(m).map((c) => c.uri.host)).toEqual(['host1.example.com', 'host3.example.com']);
    expect(m.get('C%6Fntact')).toBe('<sip:alias2@host2.example.com>');
    expect(m.topVia()!.branch).toBe('z9hG4bK209%fzsnel234');
    expect(m.to().displayName).toBe('"%Z%45"');
  });

  it('lwsdisp, semiuri, transports: display name glued to <, ; in the user part, unknown transports', () => {
    const d = req('rfc4475-lwsdisp');
    expect([d.from().displayName, d.from().uri.raw, tag(d.from())]).toEqual(['caller', 'sip:caller@example.com', '323']);
    const s = req('rfc4475-semiuri');
    expect([s.requestUri().user, s.requestUri().host, s.requestUri().params.size]).toEqual(['user;par=u%40example.net', 'example.com', 0]);
    expect(s.getAll('accept')).toEqual(['application/sdp', 'application/pkcs7-mime', 'multipart/mixed', 'multipart/signed', 'message/sip', 'message/sipfrag']);
    const t = req('rfc4475-transports');
    expect(t.vias().map((v) => v.transport)).toEqual(['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
    expect(t.callId).toBe('transports.kijh4akdnaqjkwendsasfdj');
  });

  it('longreq: long values, 34 Via rows in every spelling', () => {
    const m = req('rfc4475-longreq');
    expect(m.to().displayName).toBe(`"I have a user name of ${'extreme'.repeat(10)} proportion"`);
    expect(m.to().uri.port).toBe(6000);
    expect(m.to().uri.params.get(`longparam${'name'.repeat(25)}`)).toBe('shortvalue');
    expect(tag(m.from())).toBe(`12${'982'.repeat(50)}424`);
    const vias = m.vias();
    expect(vias).toHaveLength(34);
    expect(vias.slice(0, 33).map((v) => v.host)).toEqual(Array.from({ length: 33 }, (_, i) => `sip${33 - i}.example.com`));
    expect(vias[33]!.branch).toBe(`very${'long'.repeat(50)}branchvalue`);
    expect(vias[33]!.params.get('received')).toBe('192.0.2.5');
    expect(m.get(`Unknown-${'Long'.repeat(20)}-Name`)).toMatch(/^unknown-(long){20}-value; unknown-/);
    expect(contacts(m)[0]!.uri.user).toBe('amazinglylongcallername'.repeat(5));
    expect(m.body.length).toBe(150);
  });

  it('mpart01: a binary multipart body is kept octet for octet', () => {
    const m = req('rfc4475-mpart01');
    expect(m.body.equals(fixtureBody('rfc4475-mpart01'))).toBe(true);
    expect(m.body.includes(Buffer.from([0x30, 0x82, 0x01, 0x52]))).toBe(true);
    expect(m.get('content-type')).toBe('multipart/mixed;boundary=7a9cbec02ceef655');
    m.set('Max-Forwards', '69');
    const out = serialize(m);
    expect(out.subarray(out.length - m.body.length).equals(fixtureBody('rfc4475-mpart01'))).toBe(true);
  });

  it('unreason and noreason: UTF-8 reason phrase, empty reason phrase', () => {
    expect(res('rfc4475-unreason').reason).toBe('= 2**3 * 5**2 но сто девяносто девять - простое');
    expect(res('rfc4475-unreason').body.length).toBe(154);
    const n = res('rfc4475-noreason');
    expect([n.status, n.reason]).toEqual([100, '']);
  });

  it('dblreq: octets after the Content-Length body in a datagram are discarded (RFC 3261 s18.3)', () => {
    const m = req('rfc4475-dblreq');
    expect([m.method, m.callId, m.body.length]).toEqual(['REGISTER', 'dblreq.0ha0isndaksdj99sdfafnl3lk233412', 0]);
    const bytes = load('rfc4475-dblreq');
    expect(serialize(m).toString('latin1')).toBe(bytes.subarray(0, bytes.indexOf('\r\n\r\n') + 4).toString('latin1'));
  });

  it('inv2543: an RFC 2543 INVITE (no branch, no tags, no Max-Forwards, no Content-Length) is accepted', () => {
    const bytes = load('rfc4475-inv2543');
    const m = req('rfc4475-inv2543');
    expect(m.topVia()!.branch).toBeUndefined();
    expect(tag(m.from())).toBeUndefined();
    expect(m.maxForwards()).toBeUndefined();
    // addr-spec form: ';user=phone' is a header parameter of To, not a URI parameter (RFC 3261 s20).
    expect(m.to().params.get('user')).toBe('phone');
    expect(m.body.equals(fixtureBody('rfc4475-inv2543'))).toBe(true);
    // Every message sipledger sends is framed, so the forwarded copy gains a Content-Length row.
    const head = bytes.subarray(0, bytes.indexOf('\r\n\r\n') + 2).toString('latin1');
    expect(serialize(m).toString('latin1')).toBe(`${head}Content-Length: 105\r\n\r\n${fixtureBody('rfc4475-inv2543').toString('latin1')}`);
    // Over a stream there is no datagram boundary, so the missing Content-Length is an error.
    const stream = parseMessage(bytes, DEFAULT_LIMITS, false);
    expect(stream.ok ? 'ok' : stream.reason).toMatch(/Content-Length/);
  });

  it('messages whose problems belong to the application parse cleanly (the router answers 416/420/415/401/483)', () => {
    expect(req('rfc4475-unkscm').requestUri()).toMatchObject({ scheme: 'nobodyknowsthisscheme', host: '' });
    expect(req('rfc4475-novelsc').requestUri().scheme).toBe('soap.beep');
    const u = req('rfc4475-unksm2');
    expect([u.to().uri.scheme, u.from().uri.scheme, contacts(u)[0]!.uri.scheme]).toEqual(['isbn', 'http', 'name']);
    const b = req('rfc4475-bext01');
    expect(b.getAll('require')).toEqual(['nothingSupportsThis', 'nothingSupportsThisEither']);
    expect(b.getAll('proxy-require')).toEqual(['noProxiesSupportThis', 'norDoAnyProxiesSupportThis']);
    expect(req('rfc4475-invut').get('content-type')).toBe('application/unknownformat');
    expect(req('rfc4475-regaut01').get('authorization')).toBe('NoOneKnowsThisScheme opaque-data=here');
    expect(req('rfc4475-zeromf').maxForwards()).toBe(0);
    expect(req('rfc4475-badbranch').topVia()!.branch).toBe('z9hG4bK');
    expect(res('rfc4475-bcast').vias()[1]!.host).toBe('255.255.255.255');
    expect(contacts(req('rfc4475-regescrt'))[0]!.uri.headers).toBe('Route=%3Csip:sip.example.com%3E');
  });

  it('liberal where RFC 4475 allows it: a non-GMT Date and spaces inside <> are forwarded unchanged', () => {
    expect(req('rfc4475-baddate').get('date')).toBe('Fri, 01 Jan 2010 16:00:00 EST');
    const a = req('rfc4475-badaspec');
    expect([a.to().uri.host, a.to().displayName]).toEqual(['example.org', '"Watson, Thomas"']);
    expect(a.from().displayName).toBe('"Bell, Alexander"');
  });

  it('regbadct: a Contact URI with headers outside <> is refused where Contact is used (the registrar: 400)', () => {
    const m = req('rfc4475-regbadct');
    expect(() => m.contacts()).toThrow(HeaderError);
  });

  it('a URI with white space, a control character, a quote or an angle bracket is refused, so it is never written back into a request', () => {
    // Found by the fuzzer: a Contact `<sip:11 "@host>` was stored, and every call to its user was
    // relayed with a Request-URI that broke the request line.
    for (const bad of ['sip:11 "@127.0.0.1:34617', 'sip:11"@example.com', 'sip:a<b@example.com', 'sip:a@example.com;x="a b"', 'sip:a@example.com>', 'sip:a\t@example.com', 'sip:a\u007f@example.com']) {
      expect(() => parseUri(bad), bad).toThrow(UriError);
    }
    expect(parseUri('sip:%2211%20x@example.com').user).toBe('%2211%20x');
    expect(parseUri('  sip:alice@example.com  ').host).toBe('example.com');
    const m = parseMessage(Buffer.from(load('seed-register-auth').toString('latin1').replace(/^Contact: .*$/m, 'Contact: <sip:11 "@127.0.0.1:34617>'), 'latin1'));
    if (!m.ok || !m.message.isRequest) throw new Error('the REGISTER itself should parse');
    expect(() => (m.message as SipRequest).contacts()).toThrow(HeaderError);
  });

  it('IPv6 references in the Request-URI, Via (with received) and Contact (RFC 5118)', () => {
    const g = req('rfc5118-ipv6-good');
    expect(g.requestUri().host).toBe('[2001:db8::10]');
    expect(g.topVia()!.host).toBe('[2001:db8::9:1]');
    expect(contacts(g)[0]!.uri.host).toBe('[2001:db8::1]');
    const p = req('rfc5118-ipv6-port');
    expect([p.requestUri().host, p.requestUri().port]).toEqual(['[2001:db8::10]', 5070]);
    expect([p.topVia()!.port, p.topVia()!.params.get('received'), p.topVia()!.params.get('rport')]).toEqual([5070, '[2001:db8::9:255]', '5070']);
    expect(contacts(p).map((c) => [c.uri.port, c.params.get('expires')])).toEqual([
      [5070, undefined],
      [5071, '60'],
    ]);
  });
});

describe('changed messages', () => {
  it('a changed header is written canonically while every other row keeps its bytes', () => {
    const m = req('rfc4475-wsinv');
    m.set('Max-Forwards', '67');
    m.prepend('v', 'SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew1');
    const out = serialize(m).toString('latin1');
    const original = load('rfc4475-wsinv').toString('latin1');
    expect(out.startsWith('INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\nTO :\r\n sip:vivekg@')).toBe(true);
    expect(out).toContain('MaX-fOrWaRdS: 67\r\n');
    expect(out).toContain('Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew1\r\nVia  : SIP  /   2.0\r\n /UDP\r\n');
    expect(out.replace('MaX-fOrWaRdS: 67', 'MaX-fOrWaRdS: 0068').replace('Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew1\r\n', '')).toBe(original);
    const again = parseMessage(Buffer.from(out, 'latin1'));
    expect(again.ok && again.message.vias().length).toBe(4);
  });

  it('removing the top Via and a credential header keeps the rest intact; a new body rewrites Content-Length', () => {
    const m = req('seed-invite-proxy-auth');
    m.removeFirstValue('via');
    expect(m.remove('Proxy-Authorization')).toBe(1);
    const out = serialize(m).toString('latin1');
    expect(out).not.toContain('z9hG4bKd696.6412566.0');
    expect(out).not.toContain('Proxy-Authorization');
    expect(out).toContain('\r\nVia: SIP/2.0/UDP 192.168.1.10;branch=z9hG4bK97d3b9d4b3648ecf\r\n');
    m.setBody(Buffer.from('v=0\r\n'), 'application/sdp');
    const framed = serialize(m).toString('latin1');
    expect(framed).toContain('\r\nContent-Length: 5\r\n');
    expect(framed.endsWith('\r\n\r\nv=0\r\n')).toBe(true);
  });

  it('a response built from a seed request copies Via, From, To, Call-ID and CSeq rows as received', () => {
    const m = req('seed-register-auth');
    const out = serialize(createResponse(m, 200, { toTag: 'abc', headers: [['Contact', '<sip:10@192.168.1.10>;expires=150']] })).toString('latin1');
    expect(out).toBe(
      'SIP/2.0 200 OK\r\n' +
        'Via: SIP/2.0/UDP 192.168.1.15;branch=z9hG4bK65d.33f1abb2.0\r\n' +
        'Via: SIP/2.0/UDP 192.168.1.10;branch=z9hG4bKa468c8b72fe7a3a7\r\n' +
        'From: <sip:10@192.168.1.15>;tag=20321951e0685e4d\r\n' +
        'To: <sip:10@192.168.1.15>;tag=abc\r\n' +
        'Call-ID: 33706713ea3b83fd@192.168.1.10\r\n' +
        'CSeq: 101 REGISTER\r\n' +
        'Contact: <sip:10@192.168.1.10>;expires=150\r\n' +
        'Content-Length: 0\r\n\r\n',
    );
  });
});

describe('limits', () => {
  const register = load('seed-register-auth');
  const withHeader = (row: string): Buffer => {
    const at = register.indexOf('\r\n\r\n') + 2;
    return Buffer.concat([register.subarray(0, at), Buffer.from(`${row}\r\n`), register.subarray(at)]);
  };

  it('a request over the size limit gets 513 with an answerable partial, even a 64 KB datagram', () => {
    for (const size of [DEFAULT_LIMITS.maxMessageBytes, 65_000]) {
      const r = parseMessage(withHeader(`X-Padding: ${'a'.repeat(size)}`), { ...DEFAULT_LIMITS, maxLineLength: 100_000 });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.status).toBe(513);
      expect(r.partial?.callId).toBe('33706713ea3b83fd@192.168.1.10');
    }
  });

  it('too many header rows and too long a row are 400 with a reason naming the limit', () => {
    const many = parseMessage(withHeader(Array.from({ length: 130 }, (_, i) => `X-H${i}: ${i}`).join('\r\n')));
    expect(many.ok ? 'ok' : `${many.status} ${many.reason}`).toBe('400 too many headers (limit 128)');
    const long = parseMessage(withHeader(`X-Long: ${'b'.repeat(9000)}`));
    expect(long.ok ? 'ok' : `${long.status} ${long.reason}`).toBe('400 header line too long');
    if (!long.ok) expect(long.partial).toBeDefined();
  });

  it('empty input, CRLF keep-alives and garbage are dropped without an answer', () => {
    for (const input of ['', '\r\n\r\n', 'hello', '\x00\x01\x02 \xff', 'SIP/2.0\r\n\r\n']) {
      const r = parseMessage(Buffer.from(input, 'latin1'));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.partial).toBeUndefined();
    }
  });

  it('a reason that quotes received text is one line of printable ASCII, fit for a reason phrase', () => {
    const r = parseMessage(Buffer.from(register.toString('latin1').replace('From: <sip:10@192.168.1.15>', 'From: <sip:10@192.168.1.15:50\r6=\u00e9>'), 'latin1'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toMatch(/^[\x20-\x7e]+$/);
    expect(r.reason).toMatch(/^From: character "\\r" not allowed in a URI/);
  });

  it('a request repeating To is answered with one To, so the 400 itself parses', () => {
    const r = parseMessage(withHeader('To: <sip:carol@example.com>'));
    expect(r.ok ? 'ok' : r.reason).toBe('more than one To header');
    if (r.ok || !r.partial) throw new Error('expected an answerable refusal');
    const answer = parseMessage(serialize(createResponse(r.partial, 400, { reason: r.reason })));
    expect(answer.ok && answer.message.to().uri.raw).toBe('sip:10@192.168.1.15');
  });

  it('leading CRLFs before the start line are ignored (RFC 3261 s7.5)', () => {
    const r = parseMessage(Buffer.concat([Buffer.from('\r\n\r\n'), register]));
    expect(r.ok && r.message.isRequest && r.message.method).toBe('REGISTER');
  });
});

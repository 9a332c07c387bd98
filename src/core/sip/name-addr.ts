import { type Params, parseParams, formatParams } from './params.js';
import { type SipUri, parseUri, parseHostPort, UriError } from './uri.js';
import { isToken, isTokenChar, printable, trimLws } from './headers.js';

/** `[display-name] <uri> *(;param)` or `addr-spec *(;param)` (RFC 3261 s20.10, s20.20, s20.39). */
export interface NameAddr {
  readonly displayName: string | undefined; // as written, quotes included
  readonly uri: SipUri;
  readonly params: Params; // header parameters (tag, expires, q, +sip.instance, lr on Route...)
  /** True when the URI was enclosed in angle brackets. */
  readonly bracketed: boolean;
  readonly raw: string;
}

export function parseNameAddr(text: string): NameAddr {
  const raw = trimLws(text);
  const lt = findUnquoted(raw, 0x3c /* < */);
  if (lt !== -1) {
    const gt = raw.indexOf('>', lt);
    if (gt === -1) throw new UriError(`unterminated '<' in ${truncate(raw)}`);
    const display = trimLws(raw.slice(0, lt));
    if (display) checkDisplayName(display, raw);
    const uri = parseUri(raw.slice(lt + 1, gt));
    const params = parseParams(raw, gt + 1);
    if (!params) throw new UriError(`unterminated quoted parameter in ${truncate(raw)}`);
    return { displayName: display || undefined, uri, params, bracketed: true, raw };
  }
  if (raw.charCodeAt(0) === 0x22) throw new UriError(`display name without <URI>: ${truncate(raw)}`);
  // addr-spec form: "if the URI contains a comma, question mark or semicolon, the URI MUST be
  // enclosed in angle brackets" (RFC 3261 s20), so any ';' starts a header parameter and a '?' or
  // ',' before it is an error.
  const semi = raw.indexOf(';');
  const spec = semi === -1 ? raw : raw.slice(0, semi);
  if (spec.indexOf('?') !== -1 || spec.indexOf(',') !== -1) {
    throw new UriError(`URI with '?' or ',' must be enclosed in <>: ${truncate(raw)}`);
  }
  const uri = parseUri(spec);
  const params = semi === -1 ? new Map() : parseParams(raw, semi + 1);
  if (!params) throw new UriError(`unterminated quoted parameter in ${truncate(raw)}`);
  return { displayName: undefined, uri, params, bracketed: false, raw };
}

/**
 * display-name = *(token LWS) / quoted-string (RFC 3261 s25.1). Unquoted names may carry UTF-8
 * (phones send them), but never separators such as ',' or '"' (RFC 4475 s3.1.2.15).
 */
function checkDisplayName(display: string, context: string): void {
  if (display.charCodeAt(0) === 0x22) {
    let i = 1;
    for (; i < display.length; i++) {
      const c = display.charCodeAt(i);
      if (c === 0x5c) i++;
      else if (c === 0x22) break;
    }
    if (i >= display.length) throw new UriError(`unterminated quoted display name in ${truncate(context)}`);
    if (i !== display.length - 1) throw new UriError(`invalid display name in ${truncate(context)}`);
    return;
  }
  for (let i = 0; i < display.length; i++) {
    const c = display.charCodeAt(i);
    if (c >= 0x80 || c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) continue;
    if (!isToken(display, i, i + 1)) throw new UriError(`invalid display name in ${truncate(context)}`);
  }
}

export function formatNameAddr(na: Omit<NameAddr, 'raw' | 'bracketed'>): string {
  const display = na.displayName ? `${na.displayName} ` : '';
  return `${display}<${na.uri.raw}>${formatParams(na.params)}`;
}

/** A Via header value (RFC 3261 s20.42). */
export interface Via {
  readonly protocol: string; // 'SIP/2.0'
  readonly transport: string; // uppercase: UDP, TCP, TLS, SCTP, WS, WSS
  readonly host: string;
  readonly port: number | undefined;
  readonly params: Params;
  readonly branch: string | undefined;
  readonly raw: string;
}

export function parseVia(text: string): Via {
  const raw = trimLws(text);
  // The form nearly every Via takes: no white space inside sent-protocol, a common transport.
  if (raw.startsWith('SIP/2.0/')) {
    const t = raw.startsWith('UDP', 8) ? 'UDP' : raw.startsWith('TCP', 8) ? 'TCP' : raw.startsWith('TLS', 8) ? 'TLS' : undefined;
    const c = raw.charCodeAt(11);
    if (t !== undefined && (c === 0x20 || c === 0x09)) return viaFrom(raw, 'SIP/2.0', t, skipLws(raw, 12));
  }
  // sent-protocol: SIP / 2.0 / UDP, with optional whitespace around the slashes (RFC 3261 s20.42).
  let i = 0;
  const nameEnd = tokenEnd(raw, i);
  i = skipLws(raw, nameEnd);
  if (nameEnd === 0 || raw.charCodeAt(i) !== 0x2f /* / */) throw new UriError(`malformed Via: ${truncate(raw)}`);
  const verStart = skipLws(raw, i + 1);
  const verEnd = tokenEnd(raw, verStart);
  i = skipLws(raw, verEnd);
  if (verEnd === verStart || raw.charCodeAt(i) !== 0x2f) throw new UriError(`malformed Via: ${truncate(raw)}`);
  const trStart = skipLws(raw, i + 1);
  const trEnd = tokenEnd(raw, trStart);
  const hostStart = skipLws(raw, trEnd);
  if (trEnd === trStart || hostStart === trEnd) throw new UriError(`malformed Via: ${truncate(raw)}`);
  const protocol = `${raw.slice(0, nameEnd).toUpperCase()}/${raw.slice(verStart, verEnd)}`;
  return viaFrom(raw, protocol, raw.slice(trStart, trEnd).toUpperCase(), hostStart);
}

/** The sent-by and parameters of a Via whose sent-protocol is already read. */
function viaFrom(raw: string, protocol: string, transport: string, hostStart: number): Via {
  const semi = raw.indexOf(';', hostStart);
  let hostport = semi === -1 ? raw.slice(hostStart) : raw.slice(hostStart, semi);
  if (mayHaveSpace(hostport)) hostport = hostport.replace(/\s+/g, '');
  const { host, port } = parseHostPort(hostport, raw);
  let params: Params;
  if (semi !== -1) {
    // RFC 3261 s20.42 allows a comment after the params; strip "(...)".
    const p = raw.indexOf('(', semi) === -1 ? parseParams(raw, semi + 1) : parseParams(raw.replace(/\([^)]*\)\s*$/, ''), semi + 1);
    if (!p) throw new UriError(`unterminated quoted parameter in Via: ${truncate(raw)}`);
    params = p;
  } else params = new Map();
  const branch = params.get('branch') ?? undefined;
  return { protocol, transport, host, port, params, branch, raw };
}

/** False only when s certainly holds no white space (checked without a regular expression). */
function mayHaveSpace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return true;
  }
  return false;
}

function tokenEnd(s: string, i: number): number {
  while (i < s.length && isTokenChar(s.charCodeAt(i))) i++;
  return i;
}

function skipLws(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) break;
    i++;
  }
  return i;
}

export function formatVia(v: Omit<Via, 'raw' | 'branch'>): string {
  const port = v.port !== undefined ? `:${v.port}` : '';
  return `${v.protocol}/${v.transport} ${v.host}${port}${formatParams(v.params)}`;
}

/** CSeq (RFC 3261 s20.16). */
export interface CSeq {
  readonly seq: number;
  readonly method: string;
}

export function parseCSeq(text: string): CSeq {
  const fast = plainCSeq(text);
  if (fast !== undefined) return fast;
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$/.exec(text);
  if (!m) throw new UriError(`malformed CSeq: ${truncate(text)}`);
  const seq = Number(m[1]);
  // "The sequence number MUST be expressible as a 32-bit unsigned integer" (s8.1.1.5).
  if (seq > 0xffffffff) throw new UriError(`CSeq out of range: ${truncate(text)}`);
  return { seq, method: m[2]! };
}

/** `1*DIGIT LWS token` in plain ASCII, read without a regular expression; undefined otherwise. */
function plainCSeq(text: string): CSeq | undefined {
  let i = skipLws(text, 0);
  const d = i;
  let seq = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) break;
    seq = seq * 10 + c;
    i++;
  }
  if (i === d || i - d > 10 || seq > 0xffffffff) return undefined;
  const m = skipLws(text, i);
  if (m === i) return undefined;
  const e = tokenEnd(text, m);
  if (e === m || skipLws(text, e) !== text.length) return undefined;
  return { seq, method: text.slice(m, e) };
}

function findUnquoted(s: string, code: number): number {
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === code) return i;
  }
  return -1;
}

function truncate(s: string): string {
  return printable(s);
}

import { type Params, parseParams, formatParams } from './params.js';
import { type SipUri, parseUri, parseHostPort, UriError } from './uri.js';

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
  const raw = text.trim();
  const lt = findUnquoted(raw, 0x3c /* < */);
  if (lt !== -1) {
    const gt = raw.indexOf('>', lt);
    if (gt === -1) throw new UriError(`unterminated '<' in ${truncate(raw)}`);
    const display = raw.slice(0, lt).trim();
    const uri = parseUri(raw.slice(lt + 1, gt));
    const params = parseParams(raw, gt + 1);
    if (!params) throw new UriError(`unterminated quoted parameter in ${truncate(raw)}`);
    return { displayName: display || undefined, uri, params, bracketed: true, raw };
  }
  if (raw.charCodeAt(0) === 0x22) throw new UriError(`display name without <URI>: ${truncate(raw)}`);
  // addr-spec form: "the URI MUST NOT contain ... semicolon" (RFC 3261 s20), so any ';' starts
  // a header parameter.
  const semi = raw.indexOf(';');
  const uri = parseUri(semi === -1 ? raw : raw.slice(0, semi));
  const params = semi === -1 ? new Map() : parseParams(raw, semi + 1);
  if (!params) throw new UriError(`unterminated quoted parameter in ${truncate(raw)}`);
  return { displayName: undefined, uri, params, bracketed: false, raw };
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
  const raw = text.trim();
  // sent-protocol: SIP / 2.0 / UDP, with optional whitespace around the slashes.
  const m = /^([A-Za-z0-9.!%*_+`'~-]+)\s*\/\s*([A-Za-z0-9.!%*_+`'~-]+)\s*\/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+/.exec(raw);
  if (!m) throw new UriError(`malformed Via: ${truncate(raw)}`);
  const protocol = `${m[1]!.toUpperCase()}/${m[2]}`;
  const transport = m[3]!.toUpperCase();
  const rest = raw.slice(m[0].length);
  const semi = rest.indexOf(';');
  const hostport = (semi === -1 ? rest : rest.slice(0, semi)).replace(/\s+/g, '');
  // RFC 3261 s20.42 allows a comment after the params; strip "(...)".
  const { host, port } = parseHostPort(hostport, raw);
  let params: Params = new Map();
  if (semi !== -1) {
    const p = parseParams(rest.replace(/\([^)]*\)\s*$/, ''), semi + 1);
    if (!p) throw new UriError(`unterminated quoted parameter in Via: ${truncate(raw)}`);
    params = p;
  }
  const branch = params.get('branch') ?? undefined;
  return { protocol, transport, host, port, params, branch: branch ?? undefined, raw };
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
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$/.exec(text);
  if (!m) throw new UriError(`malformed CSeq: ${truncate(text)}`);
  const seq = Number(m[1]);
  // "The sequence number MUST be expressible as a 32-bit unsigned integer" (s8.1.1.5).
  if (seq > 0xffffffff) throw new UriError(`CSeq out of range: ${truncate(text)}`);
  return { seq, method: m[2]! };
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
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

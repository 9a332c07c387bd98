import { type Params, parseParams, formatParams } from './params.js';
import { printable, trimLws } from './headers.js';

/**
 * A SIP or SIPS URI (RFC 3261 s19.1). Other schemes (tel:, mailto:, urn:) are kept opaque:
 * `host` is empty and only `raw` is meaningful.
 */
export interface SipUri {
  readonly scheme: string; // lowercase: 'sip', 'sips', 'tel', ...
  readonly user: string | undefined; // still %-escaped, as written
  readonly password: string | undefined;
  readonly host: string; // lowercase; IPv6 references keep their brackets
  readonly port: number | undefined;
  readonly params: Params;
  readonly headers: string | undefined; // the part after '?', as written
  readonly raw: string;
}

export class UriError extends Error {
  readonly code = 'SIP_URI_INVALID';
}

/** Parses a URI; throws UriError on a malformed SIP/SIPS URI. */
export function parseUri(text: string): SipUri {
  const raw = trimLws(text);
  // No URI holds white space, control characters, '"', '<' or '>' unescaped (RFC 3261 s25.1,
  // RFC 3986 s2): accepted, such a URI would be written back into a Request-URI, a Contact or a
  // Route that no longer parses (a contact `<sip:11 "@host>` stored by the registrar made every
  // call to its user a request with a broken request line).
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x7f) {
      throw new UriError(`character ${JSON.stringify(raw[i])} not allowed in a URI: ${truncate(raw)}`);
    }
  }
  const colon = raw.indexOf(':');
  if (colon <= 0) throw new UriError(`URI without a scheme: ${truncate(raw)}`);
  let scheme = colon === 3 && raw.startsWith('sip') ? 'sip' : colon === 4 && raw.startsWith('sips') ? 'sips' : raw.slice(0, colon);
  if (scheme !== 'sip' && scheme !== 'sips') {
    scheme = scheme.toLowerCase();
    if (!SCHEME.test(scheme)) throw new UriError(`invalid URI scheme: ${truncate(raw)}`);
    if (scheme !== 'sip' && scheme !== 'sips') {
      return { scheme, user: undefined, password: undefined, host: '', port: undefined, params: new Map(), headers: undefined, raw };
    }
  }
  // userinfo may itself hold ';', '?', '/' and ',' (RFC 3261 s25.1 user-unreserved), but never an
  // unescaped '@'; so the userinfo ends at the first '@', and only after it do ';' and '?' start
  // parameters and headers.
  let user: string | undefined;
  let password: string | undefined;
  let hostStart = colon + 1;
  const at = raw.indexOf('@', hostStart);
  if (at !== -1) {
    const pc = raw.indexOf(':', hostStart);
    if (pc !== -1 && pc < at) {
      user = raw.slice(hostStart, pc);
      password = raw.slice(pc + 1, at);
    } else user = raw.slice(hostStart, at);
    if (user === '') throw new UriError(`empty user part: ${truncate(raw)}`);
    hostStart = at + 1;
  }
  let end = raw.length;
  let headers: string | undefined;
  const qmark = raw.indexOf('?', hostStart);
  if (qmark !== -1) {
    headers = raw.slice(qmark + 1);
    end = qmark;
  }
  const semi = raw.indexOf(';', hostStart);
  let params: Params;
  let hostEnd = end;
  if (semi !== -1 && semi < end) {
    const parsed = parseParams(raw, semi + 1, end);
    if (!parsed) throw new UriError(`unterminated quoted parameter: ${truncate(raw)}`);
    params = parsed;
    hostEnd = semi;
  } else params = new Map();
  const { host, port } = parseHostPort(raw.slice(hostStart, hostEnd), raw);
  return { scheme, user, password, host, port, params, headers, raw };
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/;
export function parseHostPort(hostport: string, context = hostport): { host: string; port: number | undefined } {
  let host: string;
  let portText: string | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close === -1) throw new UriError(`unterminated IPv6 reference: ${truncate(context)}`);
    host = hostport.slice(0, close + 1).toLowerCase();
    const after = hostport.slice(close + 1);
    if (after) {
      if (!after.startsWith(':')) throw new UriError(`garbage after IPv6 reference: ${truncate(context)}`);
      portText = after.slice(1);
    }
    if (!/^\[[0-9a-f:.]+\]$/.test(host)) throw new UriError(`invalid IPv6 reference: ${truncate(context)}`);
  } else {
    const pc = hostport.indexOf(':');
    if (pc !== -1) {
      host = hostport.slice(0, pc);
      portText = hostport.slice(pc + 1);
    } else host = hostport;
    // Hosts nearly always arrive lowercase and valid: check both in one pass.
    if (!isHostname(host)) {
      host = host.toLowerCase();
      if (!isHostname(host)) throw new UriError(`invalid host: ${truncate(context)}`);
    }
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (portText.length === 0 || portText.length > 5) throw new UriError(`invalid port: ${truncate(context)}`);
    port = 0;
    for (let i = 0; i < portText.length; i++) {
      const c = portText.charCodeAt(i) - 0x30;
      if (c < 0 || c > 9) throw new UriError(`invalid port: ${truncate(context)}`);
      port = port * 10 + c;
    }
    if (port > 65535) throw new UriError(`port out of range: ${truncate(context)}`);
  }
  return { host, port };
}

/**
 * hostname or IPv4address (RFC 3261 s25.1), lowercase: alphanumerics, '-', '.', and '_' (seen in
 * the wild), starting with an alphanumeric, ending with an alphanumeric or '_', optionally a final '.'.
 */
function isHostname(h: string): boolean {
  let end = h.length;
  if (end === 0) return false;
  if (end > 1 && h.charCodeAt(end - 1) === 0x2e /* . */) end--;
  if (!alnum(h.charCodeAt(0))) return false;
  for (let i = 1; i < end; i++) {
    const c = h.charCodeAt(i);
    if (!(alnum(c) || c === 0x2d || c === 0x2e || c === 0x5f)) return false;
  }
  const last = h.charCodeAt(end - 1);
  return end === 1 || alnum(last) || last === 0x5f;
}

function alnum(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

/** Serialises a URI; an unchanged URI is returned exactly as written. */
export function formatUri(uri: SipUri): string {
  return uri.raw;
}

/** Builds a new URI from parts (the result's `raw` is the canonical rendering). */
export function buildUri(parts: Omit<SipUri, 'raw'>): SipUri {
  let s = `${parts.scheme}:`;
  if (parts.user !== undefined) {
    s += parts.user;
    if (parts.password !== undefined) s += `:${parts.password}`;
    s += '@';
  }
  s += parts.host;
  if (parts.port !== undefined) s += `:${parts.port}`;
  s += formatParams(parts.params);
  if (parts.headers !== undefined) s += `?${parts.headers}`;
  return { ...parts, raw: s };
}

export function withParam(uri: SipUri, name: string, value: string | null): SipUri {
  const params = new Map(uri.params);
  params.set(name.toLowerCase(), value);
  return buildUri({ ...uri, params });
}

/** Decodes %-escapes of a URI user part (RFC 3261 s19.1.4 compares unescaped). */
export function unescapeUser(user: string): string {
  if (user.indexOf('%') === -1) return user;
  try {
    return decodeURIComponent(user);
  } catch {
    return user;
  }
}

/** The address-of-record key sipledger uses: `sip:user@domain`, domain lowercase, no port or params. */
export function aorOf(uri: SipUri): string {
  const scheme = uri.scheme === 'sips' ? 'sip' : uri.scheme;
  return uri.user !== undefined ? `${scheme}:${unescapeUser(uri.user)}@${uri.host}` : `${scheme}:${uri.host}`;
}

/** The default port for a URI's transport (RFC 3261 s19.1.2). */
export function defaultPort(uri: SipUri): number {
  return uri.scheme === 'sips' || (uri.params.get('transport') ?? '').toLowerCase() === 'tls' ? 5061 : 5060;
}

function truncate(s: string): string {
  return printable(s);
}

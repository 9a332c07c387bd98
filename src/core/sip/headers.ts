/**
 * Header names: canonical keys, compact forms (RFC 3261 s7.3.3, s20) and which headers may carry
 * several comma-separated values (RFC 3261 s7.3.1).
 */

/** Compact form -> canonical lowercase long name. */
const COMPACT: Record<string, string> = {
  i: 'call-id',
  m: 'contact',
  e: 'content-encoding',
  l: 'content-length',
  c: 'content-type',
  f: 'from',
  s: 'subject',
  k: 'supported',
  t: 'to',
  v: 'via',
  o: 'event',
  u: 'allow-events',
  r: 'refer-to',
  b: 'referred-by',
  a: 'accept-contact',
  j: 'reject-contact',
  d: 'request-disposition',
  x: 'session-expires',
  y: 'identity',
  n: 'identity-info',
};

/** Canonical spelling used when sipledger writes a header it created itself. */
const CANONICAL_NAME: Record<string, string> = {
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'mime-version': 'MIME-Version',
  'rack': 'RAck',
  'rseq': 'RSeq',
};

/**
 * Headers whose grammar is a comma-separated list (RFC 3261 s7.3.1: "it MUST be possible to combine
 * the multiple header field rows into one ... comma-separated list"). Authorization-style headers are
 * not: their values contain commas inside one credential.
 */
const MULTI_VALUE = new Set([
  'via',
  'contact',
  'route',
  'record-route',
  'allow',
  'supported',
  'require',
  'proxy-require',
  'unsupported',
  'accept',
  'accept-encoding',
  'accept-language',
  'allow-events',
  'content-encoding',
  'content-language',
  'in-reply-to',
  'path',
  'service-route',
  'alert-info',
  'call-info',
  'error-info',
  'warning',
  'reply-to',
  'privacy',
]);

const keyCache = new Map<string, string>();

/** Lookup table for RFC 3261 s25.1 `token` characters (alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"). */
const TOKEN_CHARS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9.!%*_+`'~-]/.test(ch)) TOKEN_CHARS[c] = 1;
}

/**
 * A quotation of received text safe for logs and for a reason phrase: at most `max` characters,
 * anything outside printable ASCII (CR, LF, NUL, UTF-8) shown as '?'.
 */
export function printable(s: string, max = 80): string {
  const cut = s.length > max ? `${s.slice(0, max - 3)}...` : s;
  return cut.replace(/[^\x20-\x7e]/g, '?');
}

/** True for a character code allowed in an RFC 3261 token. */
export function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN_CHARS[c] === 1;
}

/** True when `s[start, end)` is a non-empty RFC 3261 token. */
export function isToken(s: string, start = 0, end = s.length): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TOKEN_CHARS[c] === 0) return false;
  }
  return true;
}

/**
 * Trims linear white space (SP, HTAB, and the CR/LF of folded lines) from both ends. Unlike
 * String.prototype.trim it leaves other Unicode spaces (a BOM, NBSP) alone: they are part of a
 * UTF-8 value, not SIP whitespace (RFC 3261 s25.1 LWS).
 */
export function trimLws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isLwsChar(s.charCodeAt(a))) a++;
  while (b > a && isLwsChar(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

function isLwsChar(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/**
 * The spellings phones and proxies actually send, indexed by length and first character, so that
 * the common case is one or two string comparisons instead of hashing a freshly sliced name.
 * Entries are [spelling, key] with the spelling as an internalised constant.
 */
const KNOWN: Array<Array<Array<readonly [string, string]> | undefined> | undefined> = [];
function addKnown(spelling: string, key: string): void {
  const byChar = (KNOWN[spelling.length] ??= []);
  const list = (byChar[spelling.charCodeAt(0)] ??= []);
  if (!list.some((e) => e[0] === spelling)) list.push([spelling, key]);
}
for (const key of [
  'via', 'from', 'to', 'call-id', 'cseq', 'contact', 'max-forwards', 'content-length', 'content-type',
  'expires', 'user-agent', 'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate',
  'route', 'record-route', 'allow', 'supported', 'server', 'accept', 'require', 'proxy-require', 'path',
  'event', 'subject', 'date', 'timestamp', 'allow-events', 'min-expires', 'retry-after', 'warning', 'privacy',
]) {
  addKnown(canonicalName(key), key);
  addKnown(key.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase()), key);
  addKnown(key, key);
  addKnown(key.toUpperCase(), key);
}
for (const [compact, key] of Object.entries(COMPACT)) {
  addKnown(compact, key);
  addKnown(compact.toUpperCase(), key);
}

/**
 * The [spelling, key] of a well-known header name written at text[start, end), without slicing it,
 * or undefined.
 */
export function knownHeader(text: string, start: number, end: number): readonly [string, string] | undefined {
  const list = KNOWN[end - start]?.[text.charCodeAt(start)];
  if (list === undefined) return undefined;
  const len = end - start;
  outer: for (let i = 0; i < list.length; i++) {
    const entry = list[i]!;
    const spelling = entry[0];
    // The first character matched through the index.
    for (let j = 1; j < len; j++) if (text.charCodeAt(start + j) !== spelling.charCodeAt(j)) continue outer;
    return entry;
  }
  return undefined;
}

/** Lowercase long-form key for a header name as written on the wire. */
export function headerKey(name: string): string {
  const list = KNOWN[name.length]?.[name.charCodeAt(0)];
  if (list !== undefined) {
    for (let i = 0; i < list.length; i++) {
      const entry = list[i]!;
      if (entry[0] === name) return entry[1];
    }
  }
  const cached = keyCache.get(name);
  if (cached !== undefined) return cached;
  const lower = name.toLowerCase();
  const key = lower.length === 1 ? (COMPACT[lower] ?? lower) : lower;
  if (keyCache.size < 1024) keyCache.set(name, key);
  return key;
}

/** The spelling sipledger uses for a header it writes itself. */
export function canonicalName(key: string): string {
  const special = CANONICAL_NAME[key];
  if (special) return special;
  return key.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

export function isMultiValue(key: string): boolean {
  return MULTI_VALUE.has(key);
}

/**
 * Splits a header value on commas that are outside quoted strings and angle brackets.
 * Returns trimmed, non-empty parts.
 */
export function splitCommaList(value: string): string[] {
  if (value.indexOf(',') === -1) {
    const t = value.trim();
    return t ? [t] : [];
  }
  const out: string[] = [];
  let depthAngle = 0;
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const ch = value.charCodeAt(i);
    if (inQuote) {
      if (ch === 0x5c /* \ */) i++;
      else if (ch === 0x22 /* " */) inQuote = false;
    } else if (ch === 0x22) inQuote = true;
    else if (ch === 0x3c /* < */) depthAngle++;
    else if (ch === 0x3e /* > */) depthAngle = Math.max(0, depthAngle - 1);
    else if (ch === 0x2c /* , */ && depthAngle === 0) {
      const part = value.slice(start, i).trim();
      if (part) out.push(part);
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last) out.push(last);
  return out;
}

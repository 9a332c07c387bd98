/**
 * Parsing and formatting of Digest credentials (Authorization / Proxy-Authorization) and challenges
 * (WWW-Authenticate / Proxy-Authenticate), RFC 3261 s25.1 and RFC 7616 s3.3-3.4.
 *
 * Tolerant where deployed phones differ (spacing, folded lines, quoted or unquoted values, the case
 * of parameter names, empty list elements) and strict where ambiguity would be a security problem: a
 * parameter given twice is rejected, because two `response` or `realm` values could be read
 * differently by us and by a backend. Bad input yields a value describing the problem, never a throw.
 */

export type ParseFailure = { readonly ok: false; readonly reason: string; readonly scheme?: string };

export type ParamsResult = { readonly ok: true; readonly scheme: string; readonly params: ReadonlyMap<string, string> } | ParseFailure;

/** Parsed Digest credentials. Parameter names are lower-cased; values are unquoted. */
export interface DigestCredentials {
  readonly username: string;
  readonly realm: string;
  readonly nonce: string;
  readonly uri: string;
  readonly response: string;
  /** The algorithm token as received (absent means MD5, RFC 7616 s3.4). */
  readonly algorithm?: string;
  readonly qop?: string;
  readonly nc?: string;
  readonly cnonce?: string;
  readonly opaque?: string;
  readonly userhash?: boolean;
  /** Every parameter, lower-cased names, unquoted values. */
  readonly params: ReadonlyMap<string, string>;
}

export type CredentialsResult = { readonly ok: true; readonly credentials: DigestCredentials } | ParseFailure;

export interface DigestChallenge {
  readonly realm: string;
  readonly nonce: string;
  readonly algorithm?: string;
  /** The qop options offered, e.g. ['auth'] or ['auth', 'auth-int']. */
  readonly qop: readonly string[];
  readonly stale: boolean;
  readonly opaque?: string;
  readonly params: ReadonlyMap<string, string>;
}

export type ChallengeResult = { readonly ok: true; readonly challenge: DigestChallenge } | ParseFailure;

/** Upper bound on one header value: a credential is a few hundred bytes; anything far longer is abuse. */
const MAX_VALUE_LENGTH = 8192;
const MAX_PARAMS = 32;

// RFC 3261 s25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
const TOKEN = new Uint8Array(128);
for (const c of "-.!%*_+`'~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;
const isToken = (c: number): boolean => c < 128 && TOKEN[c] === 1;
// Whitespace including folded lines (RFC 3261 s7.3.1: LWS = [*WSP CRLF] 1*WSP).
const isWs = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Parses `scheme param=value, param="value", ...` into the scheme and a map of lower-cased
 * parameter names to unquoted values. Scans character codes, and slices a quoted value in one
 * piece unless it holds a quoted-pair: this runs on every authenticated request.
 */
export function parseAuthParams(value: string): ParamsResult {
  if (value.length > MAX_VALUE_LENGTH) return { ok: false, reason: 'credentials too long' };
  let i = 0;
  const n = value.length;
  const skipWs = (): void => {
    while (i < n && isWs(value.charCodeAt(i))) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && isToken(value.charCodeAt(i))) i++;
    return value.slice(start, i);
  };

  skipWs();
  const scheme = readToken();
  if (scheme === '') return { ok: false, reason: 'missing authentication scheme' };
  if (i < n && !isWs(value.charCodeAt(i))) return { ok: false, reason: 'invalid character after scheme', scheme };

  const params = new Map<string, string>();
  let expectSeparator = false;
  while (true) {
    skipWs();
    if (i >= n) break;
    if (value.charCodeAt(i) === 0x2c) {
      // RFC 7230 s7: empty list elements (",,", a trailing comma) are tolerated.
      i++;
      expectSeparator = false;
      continue;
    }
    if (expectSeparator) return { ok: false, reason: 'expected "," between parameters', scheme };
    const name = readToken().toLowerCase();
    if (name === '') return { ok: false, reason: `unexpected character ${JSON.stringify(value[i])} in parameters`, scheme };
    skipWs();
    if (value.charCodeAt(i) !== 0x3d) return { ok: false, reason: `parameter ${name} has no value`, scheme };
    i++;
    skipWs();
    let paramValue: string;
    if (value.charCodeAt(i) === QUOTE) {
      i++;
      const from = i;
      let out: string | undefined;
      let closed = false;
      while (i < n) {
        const ch = value.charCodeAt(i);
        if (ch === BACKSLASH) {
          // RFC 3261 s25.1 quoted-pair, but never an escaped CR or LF.
          const next = value.charCodeAt(i + 1);
          if (Number.isNaN(next) || next === CR || next === LF) break;
          out = (out ?? value.slice(from, i)) + value[i + 1]!;
          i += 2;
          continue;
        }
        if (ch === QUOTE) {
          closed = true;
          break;
        }
        if (ch === CR || ch === LF) break;
        if (out !== undefined) out += value[i]!;
        i++;
      }
      if (!closed) return { ok: false, reason: `unterminated quoted value for ${name}`, scheme };
      paramValue = out ?? value.slice(from, i);
      i++;
    } else {
      paramValue = readToken();
      if (paramValue === '') return { ok: false, reason: `parameter ${name} has an empty or invalid value`, scheme };
    }
    if (params.has(name)) return { ok: false, reason: `duplicate parameter ${name}`, scheme };
    if (params.size >= MAX_PARAMS) return { ok: false, reason: 'too many parameters', scheme };
    params.set(name, paramValue);
    expectSeparator = true;
  }
  return { ok: true, scheme, params };
}

/**
 * RFC 8187 ext-value (`UTF-8''percent-encoded`), used by RFC 7616 s3.4.4 `username*` for user names
 * that are not plain ASCII.
 */
function decodeExtValue(value: string): string | undefined {
  const match = /^utf-8'[^']*'(.*)$/i.exec(value);
  if (!match) return undefined;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return undefined;
  }
}

const REQUIRED = ['realm', 'nonce', 'uri', 'response'] as const;

/**
 * Parses one Authorization / Proxy-Authorization value as Digest credentials.
 * Returns `{ ok: false, scheme }` for another scheme (e.g. Basic) so callers can ignore it.
 */
export function parseDigestCredentials(value: string): CredentialsResult {
  const parsed = parseAuthParams(value);
  if (!parsed.ok) return parsed;
  const { scheme, params } = parsed;
  if (scheme.toLowerCase() !== 'digest') return { ok: false, reason: `scheme ${scheme} is not Digest`, scheme };

  let username = params.get('username');
  const extended = params.get('username*');
  if (extended !== undefined) {
    // RFC 7616 s3.4.4: "username*" MUST NOT be used together with "username".
    if (username !== undefined) return { ok: false, reason: 'both username and username* present', scheme };
    username = decodeExtValue(extended);
    if (username === undefined) return { ok: false, reason: 'username* is not a valid UTF-8 ext-value', scheme };
  }
  if (username === undefined) return { ok: false, reason: 'missing username', scheme };
  for (const key of REQUIRED) {
    if (!params.has(key)) return { ok: false, reason: `missing ${key}`, scheme };
  }
  const userhash = params.get('userhash');
  const credentials: DigestCredentials = {
    username,
    realm: params.get('realm')!,
    nonce: params.get('nonce')!,
    uri: params.get('uri')!,
    response: params.get('response')!,
    ...optional('algorithm', params.get('algorithm')),
    ...optional('qop', params.get('qop')),
    ...optional('nc', params.get('nc')),
    ...optional('cnonce', params.get('cnonce')),
    ...optional('opaque', params.get('opaque')),
    ...(userhash !== undefined ? { userhash: userhash.toLowerCase() === 'true' } : {}),
    params,
  };
  return { ok: true, credentials };
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

/** Parses one WWW-Authenticate / Proxy-Authenticate value as a Digest challenge. */
export function parseDigestChallenge(value: string): ChallengeResult {
  const parsed = parseAuthParams(value);
  if (!parsed.ok) return parsed;
  const { scheme, params } = parsed;
  if (scheme.toLowerCase() !== 'digest') return { ok: false, reason: `scheme ${scheme} is not Digest`, scheme };
  const realm = params.get('realm');
  const nonce = params.get('nonce');
  if (realm === undefined) return { ok: false, reason: 'missing realm', scheme };
  if (nonce === undefined) return { ok: false, reason: 'missing nonce', scheme };
  const qop = (params.get('qop') ?? '')
    .split(',')
    .map((q) => q.trim().toLowerCase())
    .filter((q) => q !== '');
  return {
    ok: true,
    challenge: {
      realm,
      nonce,
      ...optional('algorithm', params.get('algorithm')),
      ...optional('opaque', params.get('opaque')),
      qop,
      stale: (params.get('stale') ?? '').toLowerCase() === 'true',
      params,
    },
  };
}

/** A quoted-string with `"` and `\` escaped (RFC 3261 s25.1). CR and LF are never emitted. */
export function quote(value: string): string {
  // Realms, nonces and qop lists almost never hold a character to escape: skip the replaces then.
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replace(/[\r\n]/g, '').replace(/(["\\])/g, '\\$1')}"`;
}
const NEEDS_ESCAPE = /["\\\r\n]/;

export interface ChallengeParams {
  readonly realm: string;
  readonly nonce: string;
  readonly algorithm: string;
  readonly qop?: readonly string[];
  readonly stale?: boolean;
  readonly opaque?: string;
}

/**
 * Formats a challenge: `Digest realm="...", nonce="...", qop="auth", algorithm=MD5[, stale=true]`.
 * `algorithm` is always explicit: some phones mis-handle SHA-2 challenges without it, and an explicit
 * MD5 costs nothing. RFC 7616 s3.3: qop-options and realm are quoted, algorithm and stale are tokens.
 */
export function formatDigestChallenge(params: ChallengeParams): string {
  const parts = [`realm=${quote(params.realm)}`, `nonce=${quote(params.nonce)}`];
  if (params.opaque !== undefined) parts.push(`opaque=${quote(params.opaque)}`);
  if (params.qop !== undefined && params.qop.length > 0) parts.push(`qop=${quote(params.qop.join(','))}`);
  parts.push(`algorithm=${params.algorithm}`);
  if (params.stale) parts.push('stale=true');
  return `Digest ${parts.join(', ')}`;
}

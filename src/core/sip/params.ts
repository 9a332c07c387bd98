/**
 * Generic parameters (RFC 3261 s25.1 `generic-param`): `;name=value` lists as found after URIs,
 * name-addrs and Via. Names are matched case-insensitively (stored lowercase); values are kept as
 * written, quotes included, so that re-serialising is faithful.
 */
export type Params = Map<string, string | null>;

/**
 * Parses `;a=b;c;d="x;y"` (the leading `;` optional) into a Params map.
 * Returns null when a quoted string is not terminated.
 */
export function parseParams(text: string, start = 0, end = text.length): Params | null {
  const params: Params = new Map();
  // Positions of the next '=' and ';' at or after i (end when none), found with indexOf and reused
  // until passed, so the whole scan stays linear however many parameters there are.
  let eq = -1;
  let semi = -1;
  let i = start;
  while (i < end) {
    // skip separators and whitespace
    const ch = text.charCodeAt(i);
    if (ch === 0x3b /* ; */ || isWs(ch)) {
      i++;
      continue;
    }
    if (eq < i) eq = bounded(text.indexOf('=', i), end);
    if (semi < i) semi = bounded(text.indexOf(';', i), end);
    const j = eq < semi ? eq : semi;
    const name = paramName(text, i, j);
    if (j < end && j === eq) {
      let k = j + 1;
      while (k < end && isWs(text.charCodeAt(k))) k++;
      if (k < end && text.charCodeAt(k) === 0x22) {
        let q = k + 1;
        while (q < end && text.charCodeAt(q) !== 0x22) {
          if (text.charCodeAt(q) === 0x5c) q++;
          q++;
        }
        if (q >= end) return null;
        if (name) params.set(name, text.slice(k, q + 1));
        i = q + 1;
      } else {
        if (semi < k) semi = bounded(text.indexOf(';', k), end);
        if (name) params.set(name, trimmed(text, k, semi));
        i = semi;
      }
    } else {
      if (name) params.set(name, null);
      i = j;
    }
  }
  return params;
}

function bounded(at: number, end: number): number {
  return at === -1 || at > end ? end : at;
}

/** White space as String.prototype.trim saw it for the ASCII range. */
function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a || c === 0x0b || c === 0x0c;
}

/** Parameter names seen on nearly every message, by length: reused rather than sliced. */
const KNOWN_PARAMS: Array<string[] | undefined> = [];
for (const name of ['tag', 'branch', 'lr', 'rport', 'received', 'expires', 'transport', 'q', 'maddr', 'user', 'ttl', 'methods', 'reg-id', '+sip.instance', 'ob', 'nonce', 'realm']) {
  (KNOWN_PARAMS[name.length] ??= []).push(name);
}

/** The trimmed, lowercased parameter name in text[i, j); slices once in the common case. */
function paramName(text: string, i: number, j: number): string {
  for (let k = i; k < j; k++) {
    const c = text.charCodeAt(k);
    if ((c >= 0x41 && c <= 0x5a) || c >= 0x80) return text.slice(i, j).trim().toLowerCase();
  }
  const known = KNOWN_PARAMS[j - i];
  if (known !== undefined) {
    outer: for (const name of known) {
      for (let k = 0; k < name.length; k++) if (text.charCodeAt(i + k) !== name.charCodeAt(k)) continue outer;
      return name;
    }
  }
  return trimmed(text, i, j);
}

/** text.slice(a, b).trim(), without the extra copy when there is nothing to trim. */
function trimmed(text: string, a: number, b: number): string {
  if (a >= b) return '';
  const first = text.charCodeAt(a);
  const last = text.charCodeAt(b - 1);
  const v = text.slice(a, b);
  return isWs(first) || isWs(last) || first >= 0x80 || last >= 0x80 ? v.trim() : v;
}

export function formatParams(params: Params): string {
  let out = '';
  for (const [k, v] of params) out += v === null ? `;${k}` : `;${k}=${v}`;
  return out;
}

/** Removes surrounding quotes and backslash escapes from a quoted-string. */
export function unquote(value: string): string {
  if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) {
    return value.slice(1, -1).replace(/\\(.)/g, '$1');
  }
  return value;
}

/** Quotes a string for use as a quoted-string (RFC 3261 s25.1). */
export function quote(value: string): string {
  return `"${value.replace(/(["\\])/g, '\\$1')}"`;
}

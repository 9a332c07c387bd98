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
  let i = start;
  while (i < end) {
    // skip separators and whitespace
    let ch = text.charCodeAt(i);
    if (ch === 0x3b /* ; */ || ch === 0x20 || ch === 0x09) {
      i++;
      continue;
    }
    let j = i;
    while (j < end) {
      ch = text.charCodeAt(j);
      if (ch === 0x3d /* = */ || ch === 0x3b) break;
      j++;
    }
    const name = text.slice(i, j).trim().toLowerCase();
    if (j < end && text.charCodeAt(j) === 0x3d) {
      let k = j + 1;
      while (k < end && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x09)) k++;
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
        let q = k;
        while (q < end && text.charCodeAt(q) !== 0x3b) q++;
        if (name) params.set(name, text.slice(k, q).trim());
        i = q;
      }
    } else {
      if (name) params.set(name, null);
      i = j;
    }
  }
  return params;
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

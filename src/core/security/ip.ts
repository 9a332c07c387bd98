/**
 * IP addresses and CIDR prefixes, IPv4 and IPv6, parsed by hand so that every rule sipledger's
 * security modules depend on is visible here:
 *
 * - an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4
 *   peer) is the IPv4 address it maps: a ban or a CIDR written either way matches both spellings;
 * - IPv4 octets with leading zeros (`010.0.0.1`) are refused: some parsers read them as octal, so
 *   accepting them would let a filter and the system resolver disagree on which host is meant;
 * - a zone index (`fe80::1%eth0`) is dropped and brackets (`[2001:db8::1]`) are accepted;
 * - a CIDR whose address has bits set beyond its prefix (`10.1.2.3/8`) is the network it names
 *   (`10.0.0.0/8`), as `ip route` reads it.
 *
 * Canonical text is dotted quad for IPv4 and RFC 5952 for IPv6 (lowercase, no leading zeros, the
 * longest run of two or more zero groups as `::`, the first one on a tie).
 */

export type IpFamily = 4 | 6;

/** A parsed address: IPv4 in one 32-bit word, IPv6 in four, most significant first. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly words: readonly number[];
}

export interface Cidr {
  readonly family: IpFamily;
  /** The network address (bits beyond the prefix cleared). */
  readonly words: readonly number[];
  readonly prefix: number;
}

const V4_RE = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;
const HEX_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;

function parseV4(text: string): number | undefined {
  const m = V4_RE.exec(text);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) return undefined;
    v = v * 256 + o;
  }
  return v;
}

function parseV6(text: string): number[] | undefined {
  if (text.length > 45 + 2) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (part: string, last: boolean): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const g = items[i]!;
      if (last && i === items.length - 1 && g.includes('.')) {
        const v4 = parseV4(g);
        if (v4 === undefined) return undefined;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!HEX_GROUP_RE.test(g)) return undefined;
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0]!, false);
    const tail = groupsOf(halves[1]!, true);
    if (!head || !tail) return undefined;
    // RFC 4291 s2.2: "::" stands for one or more groups of zeros.
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    const all = groupsOf(halves[0]!, true);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  }
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) words.push(((groups[i]! << 16) | groups[i + 1]!) >>> 0);
  return words;
}

/** Parses an IPv4 or IPv6 address; undefined when `text` is not one (a host name, garbage). */
export function parseIp(text: string): IpAddress | undefined {
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  if (t.includes(':')) {
    const zone = t.indexOf('%');
    if (zone !== -1) t = t.slice(0, zone);
    const words = parseV6(t);
    if (!words) return undefined;
    // ::ffff:0:0/96, IPv4-mapped (RFC 4291 s2.5.5.2): the IPv4 address itself.
    if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return { family: 4, words: [words[3]!] };
    return { family: 6, words };
  }
  const v4 = parseV4(t);
  return v4 === undefined ? undefined : { family: 4, words: [v4] };
}

/** True when `text` is an IPv4 or IPv6 address. */
export function isIp(text: string): boolean {
  return parseIp(text) !== undefined;
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.words[0]!;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups: number[] = [];
  for (const w of ip.words) groups.push(w >>> 16, w & 0xffff);
  // RFC 5952 s4.2: compress the longest run of zero groups (length >= 2), the first on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** The canonical text of an address, or undefined when `text` is not an address. */
export function canonicalIp(text: string): string | undefined {
  const ip = parseIp(text);
  return ip ? formatIp(ip) : undefined;
}

function maskWord(word: number, bitsInWord: number): number {
  if (bitsInWord <= 0) return 0;
  if (bitsInWord >= 32) return word >>> 0;
  return (word & (~0 << (32 - bitsInWord))) >>> 0;
}

/**
 * Parses `address/prefix` or a bare address (a host: /32 or /128). An IPv4-mapped IPv6 prefix of
 * 96 bits or more (`::ffff:10.0.0.0/104`) is the IPv4 prefix it maps (`10.0.0.0/8`).
 */
export function parseCidr(text: string): Cidr | undefined {
  const t = text.trim();
  const slash = t.lastIndexOf('/');
  const addrText = slash === -1 ? t : t.slice(0, slash);
  const prefixText = slash === -1 ? undefined : t.slice(slash + 1);
  if (prefixText !== undefined && !/^(0|[1-9]\d{0,2})$/.test(prefixText)) return undefined;
  let mapped = false;
  let ip = parseIp(addrText);
  if (!ip) return undefined;
  if (ip.family === 4 && addrText.includes(':')) mapped = true;
  let prefix = prefixText === undefined ? (ip.family === 4 ? 32 : 128) : Number(prefixText);
  if (mapped && prefixText !== undefined) {
    if (prefix < 96 || prefix > 128) {
      // A prefix shorter than the mapping covers IPv6 space beyond IPv4; keep it as IPv6.
      const v6 = parseV6(addrText.replace(/^\[|\]$/g, '').replace(/%.*$/, ''));
      if (!v6 || prefix > 128) return undefined;
      ip = { family: 6, words: v6 };
    } else {
      prefix -= 96;
    }
  }
  const max = ip.family === 4 ? 32 : 128;
  if (prefix > max) return undefined;
  const words = ip.words.map((w, i) => maskWord(w, prefix - 32 * i));
  return { family: ip.family, words, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, words: c.words })}/${c.prefix}`;
}

/** True when `ip` lies inside `cidr` (an IPv4 address never lies inside an IPv6 prefix, mapped ones aside). */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  for (let i = 0; i < cidr.words.length; i++) {
    if (maskWord(ip.words[i]!, cidr.prefix - 32 * i) !== cidr.words[i]) return false;
  }
  return true;
}

/** A list of CIDR prefixes checked in order; small lists (configuration), so a linear scan. */
export class CidrList {
  readonly #entries: Array<{ cidr: Cidr; text: string }> = [];

  /** Throws a TypeError naming the text when it is not a CIDR or an address. */
  constructor(texts: Iterable<string> = []) {
    for (const t of texts) this.add(t);
  }

  add(text: string): void {
    const cidr = parseCidr(text);
    if (!cidr) throw new TypeError(`'${text}' is not an IP address or CIDR prefix`);
    this.#entries.push({ cidr, text: formatCidr(cidr) });
  }

  get size(): number {
    return this.#entries.length;
  }

  /** The first prefix (canonical text) that holds `address`, or undefined. Non-addresses match nothing. */
  match(address: string | IpAddress): string | undefined {
    if (this.#entries.length === 0) return undefined;
    const ip = typeof address === 'string' ? parseIp(address) : address;
    if (!ip) return undefined;
    for (const e of this.#entries) if (cidrContains(e.cidr, ip)) return e.text;
    return undefined;
  }

  has(address: string | IpAddress): boolean {
    return this.match(address) !== undefined;
  }
}

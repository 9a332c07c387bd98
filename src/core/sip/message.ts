import { canonicalName, headerKey, isMultiValue, printable, splitCommaList, trimLws } from './headers.js';
import { type CSeq, type NameAddr, type Via, parseCSeq, parseNameAddr, parseVia } from './name-addr.js';
import { type SipUri, parseUri } from './uri.js';

/**
 * One header field row. `raw` is the row exactly as received (folded continuation lines included,
 * without the final CRLF); a row that sipledger did not touch is written back from `raw`, byte for
 * byte. Rows created or changed by sipledger have `raw === undefined`.
 */
export interface HeaderField {
  readonly name: string;
  readonly key: string;
  readonly value: string;
  readonly raw: string | undefined;
}

export type Transport = 'udp' | 'tcp' | 'tls';

/**
 * The received bytes of a message and, for each received row, its byte range there: `rows[i]`
 * occupies `bytes[spans[2 * i], spans[2 * i + 1])`, its CRLF included. The start line as received
 * occupies `bytes[startFrom, startTo)` with its CRLF; the body as received is `body`,
 * ending at `bodyEnd`, after the empty line that follows `headEnd`.
 */
export interface WireLayout {
  readonly bytes: Buffer;
  /** method, Request-URI, version of a request; version, status, reason of a response. */
  readonly startLine: readonly [string, string | number, string];
  readonly startFrom: number;
  readonly startTo: number;
  readonly rows: readonly HeaderField[];
  readonly spans: readonly number[];
  readonly headEnd: number;
  readonly body: Buffer;
  readonly bodyEnd: number;
}

/** Where a message came from: the network source, not what its headers claim. */
export interface Source {
  readonly address: string;
  readonly port: number;
  readonly transport: Transport;
  /** The local listening address and port it arrived on. */
  readonly local?: { readonly address: string; readonly port: number };
  /** For stream transports: the connection it arrived on, so responses can use the same one. */
  readonly connectionId?: number;
}

export class HeaderError extends Error {
  readonly code = 'SIP_HEADER_INVALID';
  constructor(
    readonly header: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The parts of a SIP message shared by requests and responses (RFC 3261 s7). Headers are kept
 * as rows; the few that routing needs are parsed on first use and cached until changed.
 */
export abstract class SipMessage {
  headers: HeaderField[];
  body: Buffer;
  /** Set once a header or the body was changed; untouched messages can reuse their bytes. */
  modified = false;
  /** The received bytes, when this message came from the network and was not changed since. */
  wire: Buffer | undefined;
  source: Source | undefined;
  /**
   * Where the received rows sit in the received bytes (set by the parser when the header block is
   * plain ASCII with CRLF line ends), so that untouched rows can be copied rather than re-encoded.
   * Rows are immutable, so this stays valid whatever is later done to `headers`.
   */
  layout: WireLayout | undefined;

  private parsed: ParsedHeaders | undefined;

  constructor(headers: HeaderField[], body: Buffer) {
    this.headers = headers;
    this.body = body;
  }

  abstract readonly isRequest: boolean;

  // ---- raw access ------------------------------------------------------------------------------

  /** The first value of a header (any spelling or compact form), or undefined. */
  get(name: string): string | undefined {
    const key = headerKey(name);
    for (const h of this.headers) if (h.key === key) return h.value;
    return undefined;
  }

  has(name: string): boolean {
    const key = headerKey(name);
    return this.headers.some((h) => h.key === key);
  }

  /**
   * Every value of a header: rows in order, and for list-valued headers (Via, Contact, Route...)
   * each comma-separated element on its own.
   */
  getAll(name: string): string[] {
    const key = headerKey(name);
    const out: string[] = [];
    const multi = isMultiValue(key);
    for (const h of this.headers) {
      if (h.key !== key) continue;
      if (multi) out.push(...splitCommaList(h.value));
      else out.push(h.value);
    }
    return out;
  }

  /** Replaces every row of this header with one row holding `value`. */
  set(name: string, value: string): void {
    const key = headerKey(name);
    const idx = this.headers.findIndex((h) => h.key === key);
    const row: HeaderField = { name: idx === -1 ? outName(name, key) : this.headers[idx]!.name, key, value, raw: undefined };
    if (idx === -1) this.headers.push(row);
    else {
      const headers = this.headers;
      headers[idx] = row;
      for (let i = idx + 1; i < headers.length; i++) {
        if (headers[i]!.key === key) {
          this.headers = headers.filter((h, j) => j <= idx || h.key !== key);
          break;
        }
      }
    }
    this.touched(key);
  }

  /** Adds a row at the end. */
  append(name: string, value: string): void {
    const key = headerKey(name);
    this.headers.push({ name: outName(name, key), key, value, raw: undefined });
    this.touched(key);
  }

  /** Adds a row above the first row of the same header, or at the top when there is none. */
  prepend(name: string, value: string): void {
    const key = headerKey(name);
    const idx = this.headers.findIndex((h) => h.key === key);
    const row = { name: outName(name, key), key, value, raw: undefined };
    if (idx === -1) this.headers.unshift(row);
    else this.headers.splice(idx, 0, row);
    this.touched(key);
  }

  /** Removes every row of a header; returns how many were removed. */
  remove(name: string): number {
    const key = headerKey(name);
    const before = this.headers.length;
    this.headers = this.headers.filter((h) => h.key !== key);
    const n = before - this.headers.length;
    if (n) this.touched(key);
    return n;
  }

  /**
   * Removes the first element of a list-valued header (the top Via, the top Route): the first
   * comma-separated value of its first row, or that whole row when it holds one value.
   */
  removeFirstValue(name: string): string | undefined {
    const key = headerKey(name);
    const idx = this.headers.findIndex((h) => h.key === key);
    if (idx === -1) return undefined;
    const row = this.headers[idx]!;
    const parts = splitCommaList(row.value);
    const first = parts.shift();
    if (parts.length === 0) this.headers.splice(idx, 1);
    else this.headers[idx] = { name: row.name, key, value: parts.join(', '), raw: undefined };
    this.touched(key);
    return first;
  }

  /** Removes the n-th value (in getAll order) of a header that is not list-valued. */
  removeNth(name: string, n: number): void {
    const key = headerKey(name);
    let seen = 0;
    const idx = this.headers.findIndex((h) => h.key === key && seen++ === n);
    if (idx !== -1) {
      this.headers.splice(idx, 1);
      this.touched(key);
    }
  }

  setBody(body: Buffer, contentType?: string): void {
    this.body = body;
    if (contentType !== undefined) this.set('Content-Type', contentType);
    this.set('Content-Length', String(body.length));
  }

  protected touched(key: string): void {
    this.modified = true;
    this.wire = undefined;
    const p = this.parsed;
    if (p === undefined) return;
    const field = FIELD.get(key);
    if (field !== undefined) p[field] = UNSET;
    else p.other?.delete(key);
  }

  protected cached<T>(key: string, compute: () => T): T {
    const p = (this.parsed ??= new ParsedHeaders());
    const field = FIELD.get(key);
    if (field !== undefined) {
      const hit = p[field];
      if (hit !== UNSET) return hit as T;
      const v = compute();
      p[field] = v;
      return v;
    }
    p.other ??= new Map();
    if (p.other.has(key)) return p.other.get(key) as T;
    const v = compute();
    p.other.set(key, v);
    return v;
  }

  // ---- parsed access (throws HeaderError when the header is malformed) --------------------------

  /** Every Via value, top first. */
  vias(): Via[] {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.via !== UNSET) return p.via as Via[];
    const out: Via[] = [];
    for (const h of this.headers) {
      if (h.key !== 'via') continue;
      for (const v of splitCommaList(h.value)) out.push(wrap('Via', parseVia, v));
    }
    p.via = out;
    return out;
  }

  topVia(): Via | undefined {
    return this.vias()[0];
  }

  from(): NameAddr {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.from !== UNSET) return p.from as NameAddr;
    return (p.from = required(this, 'From', parseNameAddr));
  }

  to(): NameAddr {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.to !== UNSET) return p.to as NameAddr;
    return (p.to = required(this, 'To', parseNameAddr));
  }

  get callId(): string {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.callId !== UNSET) return p.callId as string;
    const g = this.get('call-id');
    const v = g === undefined ? undefined : trimLws(g);
    if (!v) throw new HeaderError('Call-ID', 'missing Call-ID');
    return (p.callId = v);
  }

  cseq(): CSeq {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.cseq !== UNSET) return p.cseq as CSeq;
    return (p.cseq = required(this, 'CSeq', parseCSeq));
  }

  /** Max-Forwards, or undefined when absent. */
  maxForwards(): number | undefined {
    const p = (this.parsed ??= new ParsedHeaders());
    if (p.maxForwards !== UNSET) return p.maxForwards as number | undefined;
    const v = this.get('max-forwards');
    if (v === undefined) return (p.maxForwards = undefined);
    const t = trimLws(v);
    // Max-Forwards = 1*DIGIT, "an integer in the range 0-255" (RFC 3261 s20.22); leading zeros are
    // allowed (RFC 4475 s3.1.1.1).
    const n = digits(t, 10);
    if (n === undefined || n > 255) throw new HeaderError('Max-Forwards', `malformed Max-Forwards: ${printable(t, 20)}`);
    return (p.maxForwards = n);
  }

  /** Contact values; `'*'` for the wildcard (RFC 3261 s10.2.2). */
  contacts(): NameAddr[] | '*' {
    return this.cached('contact', () => {
      const values = this.getAll('contact');
      if (values.length === 1 && values[0] === '*') return '*' as const;
      return values.map((v) => {
        if (v === '*') throw new HeaderError('Contact', "'*' must be the only Contact");
        return wrap('Contact', parseNameAddr, v);
      });
    });
  }

  routes(): NameAddr[] {
    return this.cached('route', () => this.getAll('route').map((v) => wrap('Route', parseNameAddr, v)));
  }

  recordRoutes(): NameAddr[] {
    return this.cached('record-route', () => this.getAll('record-route').map((v) => wrap('Record-Route', parseNameAddr, v)));
  }

  /** The Expires header as a number of seconds, or undefined. */
  expires(): number | undefined {
    return this.cached('expires', () => {
      const v = this.get('expires');
      if (v === undefined) return undefined;
      const t = trimLws(v);
      const n = digits(t, 10);
      if (n === undefined) throw new HeaderError('Expires', `malformed Expires: ${printable(t, 20)}`);
      return n;
    });
  }
}

export class SipRequest extends SipMessage {
  readonly isRequest = true as const;
  method: string;
  uri: string;
  version: string;
  private parsedUri: SipUri | undefined;

  constructor(method: string, uri: string, headers: HeaderField[], body: Buffer, version = 'SIP/2.0') {
    super(headers, body);
    this.method = method;
    this.uri = uri;
    this.version = version;
  }

  /** The Request-URI, parsed (throws HeaderError when malformed). */
  requestUri(): SipUri {
    if (!this.parsedUri) this.parsedUri = wrap('Request-URI', parseUri, this.uri);
    return this.parsedUri;
  }

  setRequestUri(uri: string): void {
    this.uri = uri;
    this.parsedUri = undefined;
    this.modified = true;
    this.wire = undefined;
  }

  /** A deep-enough copy for forwarding: header rows are shared (immutable), the list is not. */
  clone(): SipRequest {
    const r = new SipRequest(this.method, this.uri, this.headers.slice(), this.body, this.version);
    r.source = this.source;
    r.layout = this.layout;
    return r;
  }
}

export class SipResponse extends SipMessage {
  readonly isRequest = false as const;
  status: number;
  reason: string;
  version: string;

  constructor(status: number, reason: string, headers: HeaderField[], body: Buffer, version = 'SIP/2.0') {
    super(headers, body);
    this.status = status;
    this.reason = reason;
    this.version = version;
  }

  clone(): SipResponse {
    const r = new SipResponse(this.status, this.reason, this.headers.slice(), this.body, this.version);
    r.source = this.source;
    r.layout = this.layout;
    return r;
  }
}

export type AnyMessage = SipRequest | SipResponse;

function outName(name: string, key: string): string {
  // Keep a caller's explicit spelling unless it is a compact form or all lowercase.
  return name.length === 1 || name === key ? canonicalName(key) : name;
}

function wrap<A, T>(header: string, fn: (arg: A) => T, arg: A): T {
  try {
    return fn(arg);
  } catch (err) {
    if (err instanceof HeaderError) throw err;
    throw new HeaderError(header, (err as Error).message);
  }
}

function required<T>(msg: SipMessage, header: string, parse: (v: string) => T): T {
  const v = msg.get(header);
  if (v === undefined) throw new HeaderError(header, `missing ${header}`);
  return wrap(header, parse, v);
}

/** The value of 1 to `max` ASCII digits, or undefined. */
function digits(t: string, max: number): number | undefined {
  if (t.length === 0 || t.length > max) return undefined;
  let n = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return undefined;
    n = n * 10 + c;
  }
  return n;
}

const UNSET: unique symbol = Symbol('unset');

/** Parsed header values, one field per header routing reads, so a lookup is a property load. */
class ParsedHeaders {
  via: unknown = UNSET;
  from: unknown = UNSET;
  to: unknown = UNSET;
  callId: unknown = UNSET;
  cseq: unknown = UNSET;
  maxForwards: unknown = UNSET;
  contact: unknown = UNSET;
  route: unknown = UNSET;
  recordRoute: unknown = UNSET;
  expires: unknown = UNSET;
  other: Map<string, unknown> | undefined = undefined;
}

type ParsedField = Exclude<keyof ParsedHeaders, 'other'>;

const FIELD = new Map<string, ParsedField>([
  ['via', 'via'],
  ['from', 'from'],
  ['to', 'to'],
  ['call-id', 'callId'],
  ['cseq', 'cseq'],
  ['max-forwards', 'maxForwards'],
  ['contact', 'contact'],
  ['route', 'route'],
  ['record-route', 'recordRoute'],
  ['expires', 'expires'],
]);

import { headerKey, isToken, knownHeader, printable } from './headers.js';
import { type HeaderField, HeaderError, SipRequest, SipResponse, type AnyMessage, type WireLayout } from './message.js';

/** Hard limits on what sipledger reads from one message. */
export interface ParseLimits {
  /** Largest message (start line + headers + body) accepted; bigger requests get 513. */
  readonly maxMessageBytes: number;
  /** Most header rows in one message. */
  readonly maxHeaders: number;
  /** Longest header row (after unfolding). */
  readonly maxLineLength: number;
}

export const DEFAULT_LIMITS: ParseLimits = Object.freeze({
  maxMessageBytes: 16384,
  maxHeaders: 128,
  maxLineLength: 8192,
});

export type ParseResult =
  | { readonly ok: true; readonly message: AnyMessage }
  | {
      readonly ok: false;
      /** A short, log-safe description of what is wrong. */
      readonly reason: string;
      /** The status to answer with when the message is a request we could answer (400, 505, 513). */
      readonly status: number;
      /**
       * What could be read of a request: enough headers (Via, From, To, Call-ID, CSeq) to build a
       * response to it, or undefined when nothing can be answered (the input is dropped).
       */
      readonly partial: SipRequest | undefined;
    };

const EMPTY = Buffer.alloc(0);
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const LFLF = Buffer.from('\n\n', 'latin1');
// "The SIP-Version string is case-insensitive, but implementations MUST send upper-case" (s7.1).
const VERSION = /^SIP\/\d+\.\d+$/i;
const STATUS_LINE = /^(SIP\/\d+\.\d+) (\d{3})(?: (.*))?$/;

/**
 * Parses one complete SIP message (one UDP datagram, or one message already framed from a stream).
 * Never throws: malformed input is a value.
 */
export function parseMessage(buf: Buffer, limits: ParseLimits = DEFAULT_LIMITS, datagram = true): ParseResult {
  try {
    return parseUnsafe(buf, limits, datagram);
  } catch (err) {
    return fail(`unparseable message: ${(err as Error).message}`.slice(0, 120), 400, undefined);
  }
}

function fail(reason: string, status: number, partial: SipRequest | undefined): ParseResult {
  // The reason may become a reason phrase: one line of printable text.
  return { ok: false, reason: printable(reason, 120), status, partial };
}

function parseUnsafe(buf: Buffer, limits: ParseLimits, datagram: boolean): ParseResult {
  // RFC 3261 s7.5: "Implementations processing SIP messages over stream-oriented transports MUST
  // ignore any CRLF appearing before the start-line"; we do the same for datagrams.
  let start = 0;
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  if (start >= buf.length) return fail('empty message', 400, undefined);

  let headEnd = buf.indexOf(CRLFCRLF, start);
  let sepLen = 4;
  if (headEnd === -1) {
    // Tolerate bare-LF line ends (RFC 4475 s3.1.1.13 style robustness).
    headEnd = buf.indexOf(LFLF, start);
    sepLen = 2;
  }
  // No empty line: the whole datagram is headers (a sender that omits the final CRLF).
  const textEnd = headEnd === -1 ? buf.length : headEnd;
  const bodyStart = headEnd === -1 ? buf.length : headEnd + sepLen;
  const text = buf.toString('utf8', start, textEnd);

  let lineEnd = text.indexOf('\n');
  if (lineEnd === -1) lineEnd = text.length;
  let next = lineEnd + 1;
  const startLine = text.charCodeAt(lineEnd - 1) === 0x0d ? text.slice(0, lineEnd - 1) : text.slice(0, lineEnd);
  if (startLine.length > limits.maxLineLength) return fail('start line too long', 400, undefined);

  // The first problem found; requests still get their headers read so that the answer can be sent.
  let problem: string | undefined;
  let request: { method: string; uri: string; version: string } | undefined;
  let response: { status: number; reason: string; version: string } | undefined;
  if (startLine.startsWith('SIP/')) {
    const m = STATUS_LINE.exec(startLine);
    if (!m) return fail('malformed status line', 400, undefined);
    response = { version: m[1]!, status: Number(m[2]), reason: m[3] ?? '' };
    if (response.status < 100 || response.status > 699) return fail('status code out of range', 400, undefined);
  } else {
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 s25.1): exactly one SP
    // between the elements, none inside the Request-URI or after the version (RFC 4475 s3.1.2.8-10).
    const sp1 = startLine.indexOf(' ');
    const sp2 = sp1 === -1 ? -1 : startLine.indexOf(' ', sp1 + 1);
    if (sp1 > 0 && sp2 > sp1 + 1 && startLine.indexOf(' ', sp2 + 1) === -1) {
      request = { method: startLine.slice(0, sp1), uri: startLine.slice(sp1 + 1, sp2), version: startLine.slice(sp2 + 1) };
      if (!isToken(request.method)) return fail('malformed request line: method is not a token', 400, undefined);
      if (!VERSION.test(request.version)) problem = 'malformed request line: bad SIP version';
      else if (/\s/.test(request.uri)) problem = 'malformed request line: white space in the Request-URI';
    } else {
      // Read well enough to answer: method, the rest, and a version at the end.
      const t = startLine.trim();
      const a = t.indexOf(' ');
      const b = t.lastIndexOf(' ');
      if (a <= 0 || b === a || !isToken(t, 0, a) || !VERSION.test(t.slice(b + 1))) return fail('malformed request line', 400, undefined);
      request = { method: t.slice(0, a), uri: t.slice(a + 1, b).trim(), version: t.slice(b + 1) };
      problem = 'malformed request line: unexpected white space';
    }
  }

  // Header rows, unfolding continuation lines (RFC 3261 s7.3.1: "a header field value MAY be
  // extended over multiple lines by preceding each extra line with at least one SP or HTAB").
  const headers: HeaderField[] = [];
  let nextColon = -1;
  // Byte ranges of the rows, kept when every character of the head is one byte (plain ASCII) and
  // every row ends in CRLF, which is what phones send.
  let spans: number[] | undefined = text.length === textEnd - start && sepLen === 4 && text.charCodeAt(startLine.length) === 0x0d ? [] : undefined;
  let contentLength: number | undefined;
  let clCount = 0;
  while (next < text.length) {
    const lineStart = next;
    lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd === -1) lineEnd = text.length;
    next = lineEnd + 1;
    // Folded rows: swallow continuation lines into one raw row.
    let folded = false;
    while (next < text.length) {
      const c = text.charCodeAt(next);
      if (c !== 0x20 && c !== 0x09) break;
      folded = true;
      lineEnd = text.indexOf('\n', next);
      if (lineEnd === -1) lineEnd = text.length;
      next = lineEnd + 1;
    }
    const rawEnd = text.charCodeAt(lineEnd - 1) === 0x0d ? lineEnd - 1 : lineEnd;
    if (rawEnd <= lineStart) continue;
    const raw = text.slice(lineStart, rawEnd);
    // Scan the received text itself (a flat string) unless the row was folded; slicing only the
    // pieces kept keeps this loop cheap.
    const line = folded ? unfold(raw) : text;
    const a = folded ? 0 : lineStart;
    const z = folded ? line.length : rawEnd;
    if (z - a > limits.maxLineLength) {
      problem ??= 'header line too long';
      continue;
    }
    let colon: number;
    if (folded) colon = bounded(line.indexOf(':'), z);
    else {
      // The next ':' in the text, reused while rows before it have none (keeps the scan linear).
      if (nextColon < a) nextColon = bounded(text.indexOf(':', a), text.length);
      colon = nextColon < z ? nextColon : z;
    }
    if (colon === a || colon === z) {
      problem ??= 'malformed header line';
      continue;
    }
    let nameEnd = colon;
    while (nameEnd > a && (line.charCodeAt(nameEnd - 1) === 0x20 || line.charCodeAt(nameEnd - 1) === 0x09)) nameEnd--;
    const known = knownHeader(line, a, nameEnd);
    if (known === undefined && !isToken(line, a, nameEnd)) {
      problem ??= 'malformed header name';
      continue;
    }
    if (headers.length >= limits.maxHeaders) {
      problem ??= `too many headers (limit ${limits.maxHeaders})`;
      break;
    }
    const name = known !== undefined ? known[0] : line.slice(a, nameEnd);
    let vs = colon + 1;
    let ve = z;
    while (vs < ve && (line.charCodeAt(vs) === 0x20 || line.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (line.charCodeAt(ve - 1) === 0x20 || line.charCodeAt(ve - 1) === 0x09)) ve--;
    const key = known !== undefined ? known[1] : headerKey(name);
    const value = line.slice(vs, ve);
    const row: HeaderField = { name, key, value, raw };
    headers.push(row);
    if (spans !== undefined) {
      if (rawEnd === text.length || (text.charCodeAt(rawEnd) === 0x0d && text.charCodeAt(rawEnd + 1) === 0x0a)) spans.push(start + lineStart, start + rawEnd + 2);
      else spans = undefined;
    }
    // Content-Length (RFC 3261 s18.3, s20.14).
    if (key === 'content-length') {
      clCount++;
      if (!/^\d{1,10}$/.test(value)) problem ??= 'malformed Content-Length';
      else if (contentLength !== undefined && contentLength !== Number(value)) problem ??= 'conflicting Content-Length headers';
      else contentLength = Number(value);
    }
  }

  let body = bodyStart < buf.length ? buf.subarray(bodyStart) : EMPTY;
  if (clCount === 0 && !datagram) problem ??= 'missing Content-Length on a stream transport';
  if (contentLength !== undefined) {
    if (contentLength > body.length) problem ??= 'Content-Length larger than the body';
    // "Any additional bytes in the transport packet beyond the end of the body MUST be discarded."
    else if (contentLength < body.length) body = body.subarray(0, contentLength);
  }

  const tooBig = buf.length > limits.maxMessageBytes;
  if (request) {
    const msg = new SipRequest(request.method, request.uri, headers, body, request.version);
    if (tooBig) return fail(`message too large (${buf.length} bytes, limit ${limits.maxMessageBytes})`, 513, answerable(msg));
    if (problem) return fail(problem, 400, answerable(msg));
    if (request.version.toUpperCase() !== 'SIP/2.0') return fail(`unsupported SIP version ${request.version.slice(0, 16)}`, 505, answerable(msg));
    const bad = validateCore(msg);
    if (bad) return fail(bad, 400, answerable(msg));
    if (start === 0 && headEnd !== -1 && contentLength === body.length && bodyStart + body.length === buf.length) msg.wire = buf;
    if (spans !== undefined) msg.layout = layoutOf(buf, [msg.method, msg.uri, msg.version], startLine.length, start, headers, spans, headEnd, body);
    return { ok: true, message: msg };
  }
  if (tooBig) return fail('response too large', 513, undefined);
  if (problem) return fail(problem, 400, undefined);
  const msg = new SipResponse(response!.status, response!.reason, headers, body, response!.version);
  const bad = validateCore(msg);
  if (bad) return fail(bad, 400, undefined);
  if (start === 0 && headEnd !== -1 && contentLength === body.length && bodyStart + body.length === buf.length) msg.wire = buf;
  // A status line without the SP before an empty reason is written back with it, as re-encoding does.
  if (spans !== undefined && startLine.length === msg.version.length + 5 + msg.reason.length) {
    msg.layout = layoutOf(buf, [msg.version, msg.status, msg.reason], startLine.length, start, headers, spans, headEnd, body);
  }
  return { ok: true, message: msg };
}

function layoutOf(
  buf: Buffer,
  startLine: WireLayout['startLine'],
  startLength: number,
  start: number,
  headers: HeaderField[],
  spans: number[],
  headEnd: number,
  body: Buffer,
): WireLayout {
  const startTo = start + startLength + 2;
  return {
    bytes: buf,
    startLine,
    startFrom: start,
    startTo,
    rows: headers.slice(),
    spans,
    headEnd: spans.length > 0 ? spans[spans.length - 1]! : startTo,
    body,
    bodyEnd: headEnd + 4 + body.length,
  };
}

function bounded(at: number, end: number): number {
  return at === -1 || at > end ? end : at;
}

/** Joins folded continuation lines with one SP, as the value a header means. */
function unfold(raw: string): string {
  return raw.replace(/[ \t]*\r?\n[ \t]+/g, ' ');
}

/** Core headers that appear once at most (RFC 3261 s7.3.1: only comma-list headers may repeat). */
const SINGLE_NAME: Record<'from' | 'to' | 'call-id' | 'cseq' | 'max-forwards', string> = {
  from: 'From',
  to: 'To',
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'max-forwards': 'Max-Forwards',
};

/** The headers every transaction needs (RFC 3261 s8.1.1): parsed eagerly so bad ones get a 400. */
function validateCore(msg: AnyMessage): string | undefined {
  let seen = 0;
  for (const h of msg.headers) {
    const k = h.key;
    const bit = k === 'from' ? 1 : k === 'to' ? 2 : k === 'call-id' ? 4 : k === 'cseq' ? 8 : k === 'max-forwards' ? 16 : 0;
    if (bit === 0) continue;
    // RFC 4475 s3.3.8: several values in a single-valued field are an error (400).
    if (seen & bit) return `more than one ${SINGLE_NAME[k as keyof typeof SINGLE_NAME]} header`;
    seen |= bit;
  }
  try {
    if (msg.vias().length === 0) return 'missing Via';
    msg.from();
    msg.to();
    void msg.callId;
    const cseq = msg.cseq();
    if (msg.isRequest) {
      if (cseq.method !== msg.method) return 'CSeq method does not match the request method';
      // The Request-URI of a request never carries headers (RFC 3261 s19.1.1, table 1; RFC 4475
      // s3.1.2.11), and a proxy must not forward them.
      if (msg.requestUri().headers !== undefined) return 'Request-URI must not carry headers';
    }
    msg.maxForwards();
    return undefined;
  } catch (err) {
    if (err instanceof HeaderError) {
      const text = err.message.startsWith(err.header) || err.message.includes(` ${err.header}`) ? err.message : `${err.header}: ${err.message}`;
      return text.slice(0, 120);
    }
    throw err;
  }
}

/**
 * The request itself when a response can be built for it, or undefined. The headers a response
 * copies (RFC 3261 s8.2.6.2: every Via, From, To, Call-ID, CSeq) must be present and well-formed:
 * an answer that repeats a broken one is a message no peer can parse, so such input is dropped.
 */
function answerable(msg: SipRequest): SipRequest | undefined {
  try {
    if (msg.vias().length === 0) return undefined;
    msg.from();
    msg.to();
    void msg.callId;
    msg.cseq();
    return msg;
  } catch {
    return undefined;
  }
}

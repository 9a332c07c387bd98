import { headerKey } from './headers.js';
import { type HeaderField, HeaderError, SipRequest, SipResponse, type AnyMessage } from './message.js';

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

const TOKEN = /^[A-Za-z0-9.!%*_+`'~-]+$/;
const EMPTY = Buffer.alloc(0);

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
  return { ok: false, reason, status, partial };
}

function parseUnsafe(buf: Buffer, limits: ParseLimits, datagram: boolean): ParseResult {
  // RFC 3261 s7.5: "Implementations processing SIP messages over stream-oriented transports MUST
  // ignore any CRLF appearing before the start-line"; we do the same for datagrams.
  let start = 0;
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  if (start >= buf.length) return fail('empty message', 400, undefined);

  let headEnd = buf.indexOf('\r\n\r\n', start, 'latin1');
  let sepLen = 4;
  if (headEnd === -1) {
    // Tolerate bare-LF line ends (RFC 4475 s3.1.1.13 style robustness).
    headEnd = buf.indexOf('\n\n', start, 'latin1');
    sepLen = 2;
  }
  let headText: string;
  let bodyStart: number;
  if (headEnd === -1) {
    // No empty line: the whole datagram is headers (a sender that omits the final CRLF).
    headText = buf.toString('utf8', start);
    bodyStart = buf.length;
  } else {
    headText = buf.toString('utf8', start, headEnd);
    bodyStart = headEnd + sepLen;
  }

  const lines = headText.split(/\r?\n/);
  const startLine = lines[0]!;
  if (startLine.length > limits.maxLineLength) return fail('start line too long', 400, undefined);

  let request: { method: string; uri: string; version: string } | undefined;
  let response: { status: number; reason: string; version: string } | undefined;
  if (startLine.startsWith('SIP/')) {
    const m = /^(SIP\/\d+\.\d+) (\d{3}) ?(.*)$/.exec(startLine);
    if (!m) return fail('malformed status line', 400, undefined);
    response = { version: m[1]!, status: Number(m[2]), reason: m[3]! };
    if (response.status < 100 || response.status > 699) return fail('status code out of range', 400, undefined);
  } else {
    const sp1 = startLine.indexOf(' ');
    const sp2 = startLine.lastIndexOf(' ');
    if (sp1 <= 0 || sp2 === sp1) return fail('malformed request line', 400, undefined);
    const method = startLine.slice(0, sp1);
    const uri = startLine.slice(sp1 + 1, sp2);
    const version = startLine.slice(sp2 + 1);
    if (!TOKEN.test(method)) return fail('malformed request line: method is not a token', 400, undefined);
    if (!uri || /\s/.test(uri)) return fail('malformed request line: bad Request-URI', 400, undefined);
    request = { method, uri, version };
  }

  // Header rows, unfolding continuation lines (RFC 3261 s7.3.1: "a header field value MAY be
  // extended over multiple lines by preceding each extra line with at least one SP or HTAB").
  const headers: HeaderField[] = [];
  let problem: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    let line = lines[i]!;
    let raw = line;
    while (i + 1 < lines.length) {
      const next = lines[i + 1]!;
      const c = next.charCodeAt(0);
      if (c !== 0x20 && c !== 0x09) break;
      line += ' ' + next.trim();
      raw += '\r\n' + next;
      i++;
    }
    if (line.length === 0) continue;
    if (line.length > limits.maxLineLength) {
      problem ??= 'header line too long';
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) {
      problem ??= `malformed header line`;
      continue;
    }
    const name = line.slice(0, colon).trimEnd();
    if (!TOKEN.test(name)) {
      problem ??= `malformed header name`;
      continue;
    }
    if (headers.length >= limits.maxHeaders) {
      problem ??= `too many headers (limit ${limits.maxHeaders})`;
      break;
    }
    headers.push({ name, key: headerKey(name), value: line.slice(colon + 1).trim(), raw });
  }

  // Body and Content-Length (RFC 3261 s18.3, s20.14).
  let body = bodyStart < buf.length ? buf.subarray(bodyStart) : EMPTY;
  let contentLength: number | undefined;
  let clCount = 0;
  for (const h of headers) {
    if (h.key !== 'content-length') continue;
    clCount++;
    if (!/^\d{1,10}$/.test(h.value)) problem ??= 'malformed Content-Length';
    else if (contentLength !== undefined && contentLength !== Number(h.value)) problem ??= 'conflicting Content-Length headers';
    else contentLength = Number(h.value);
  }
  if (clCount === 0 && !datagram) problem ??= 'missing Content-Length on a stream transport';
  if (contentLength !== undefined) {
    if (contentLength > body.length) problem ??= 'Content-Length larger than the body';
    // "Any additional bytes in the transport packet beyond the end of the body MUST be discarded."
    else if (contentLength < body.length) body = body.subarray(0, contentLength);
  }

  const msg: AnyMessage = request
    ? new SipRequest(request.method, request.uri, headers, body, request.version)
    : new SipResponse(response!.status, response!.reason, headers, body, response!.version);

  const tooBig = buf.length > limits.maxMessageBytes;
  if (request) {
    const answerable = canAnswer(msg as SipRequest);
    const partial = answerable ? (msg as SipRequest) : undefined;
    if (tooBig) return fail(`message too large (${buf.length} bytes, limit ${limits.maxMessageBytes})`, 513, partial);
    if (problem) return fail(problem, 400, partial);
    if (request.version !== 'SIP/2.0') return fail(`unsupported SIP version ${request.version.slice(0, 16)}`, 505, partial);
    const bad = validateCore(msg);
    if (bad) return fail(bad, 400, partial);
  } else {
    if (tooBig) return fail('response too large', 513, undefined);
    if (problem) return fail(problem, 400, undefined);
    const bad = validateCore(msg);
    if (bad) return fail(bad, 400, undefined);
  }
  if (!msg.modified && headEnd !== -1 && start === 0 && contentLength === body.length && bodyStart + body.length === buf.length) {
    msg.wire = buf;
  }
  return { ok: true, message: msg };
}

/** The headers every transaction needs (RFC 3261 s8.1.1): parsed eagerly so bad ones get a 400. */
function validateCore(msg: AnyMessage): string | undefined {
  try {
    if (msg.vias().length === 0) return 'missing Via';
    msg.from();
    msg.to();
    void msg.callId;
    const cseq = msg.cseq();
    if (msg.isRequest && cseq.method !== msg.method) return 'CSeq method does not match the request method';
    msg.maxForwards();
    return undefined;
  } catch (err) {
    if (err instanceof HeaderError) return err.message.slice(0, 120);
    throw err;
  }
}

/** True when a response can be built: a usable top Via plus the headers copied into responses. */
function canAnswer(msg: SipRequest): boolean {
  try {
    const via = msg.topVia();
    if (!via) return false;
    return msg.has('from') && msg.has('to') && msg.has('call-id') && msg.has('cseq');
  } catch {
    return false;
  }
}

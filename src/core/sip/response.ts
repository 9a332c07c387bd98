import { randomBase64url, randomHex } from './random-pool.js';
import { type HeaderField, SipRequest, SipResponse } from './message.js';
import { headerKey } from './headers.js';

/** Standard reason phrases (RFC 3261 s21 and extensions sipledger sends). */
export const REASON: Readonly<Record<number, string>> = {
  100: 'Trying',
  180: 'Ringing',
  200: 'OK',
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  423: 'Interval Too Brief',
  473: 'Filtered Destination',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  484: 'Address Incomplete',
  487: 'Request Terminated',
  488: 'Not Acceptable Here',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Server Time-out',
  505: 'Version Not Supported',
  513: 'Message Too Large',
  600: 'Busy Everywhere',
  603: 'Decline',
};

export interface ResponseOptions {
  readonly reason?: string;
  /** Extra header rows, in order. */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: Buffer;
  readonly contentType?: string;
  /** The To tag to add when the request's To has none (stable across retransmissions). */
  readonly toTag?: string;
}

const COPIED = new Set(['via', 'from', 'to', 'call-id', 'cseq']);

/**
 * Builds a response to a request (RFC 3261 s8.2.6.2): Via rows, From, To, Call-ID and CSeq copied
 * from the request as they were, a To tag added to non-100 responses that lack one.
 */
export function createResponse(req: SipRequest, status: number, options: ResponseOptions = {}): SipResponse {
  const headers: HeaderField[] = [];
  const once = new Set<string>();
  for (const h of req.headers) {
    if (!COPIED.has(h.key)) continue;
    // From, To, Call-ID and CSeq appear once; a request that repeats one (refused with 400, RFC 4475
    // s3.3.8) is answered with the first, so that the answer itself is well-formed.
    if (h.key !== 'via') {
      if (once.has(h.key)) continue;
      once.add(h.key);
    }
    if (h.key === 'to' && status > 100 && !hasTag(h.value)) {
      headers.push({ name: h.name, key: h.key, value: `${h.value};tag=${options.toTag ?? newTag()}`, raw: undefined });
    } else headers.push(h);
  }
  // RFC 3261 s8.2.6.1: a 100 Trying copies Timestamp.
  if (status === 100) {
    const ts = req.get('timestamp');
    if (ts !== undefined) headers.push({ name: 'Timestamp', key: 'timestamp', value: ts, raw: undefined });
  }
  for (const [name, value] of options.headers ?? []) headers.push({ name, key: headerKey(name), value, raw: undefined });
  const body = options.body ?? Buffer.alloc(0);
  if (options.contentType) headers.push({ name: 'Content-Type', key: 'content-type', value: options.contentType, raw: undefined });
  headers.push({ name: 'Content-Length', key: 'content-length', value: String(body.length), raw: undefined });
  const res = new SipResponse(status, options.reason ?? REASON[status] ?? 'Unknown', headers, body);
  return res;
}

function hasTag(toValue: string): boolean {
  return /;\s*tag\s*=/i.test(toValue);
}

/** A To or From tag: 64 random bits (RFC 3261 s19.3 asks for at least 32). */
export function newTag(): string {
  return randomHex(8);
}

/** A branch parameter with the RFC 3261 magic cookie (s8.1.1.7). */
export function newBranch(): string {
  return `z9hG4bK${randomBase64url(10)}`;
}

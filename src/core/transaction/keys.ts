import type { AnyMessage, SipRequest, Via } from '../sip/index.js';

/** RFC 3261 s8.1.1.7: branches of RFC 3261 elements start with this magic cookie. */
export const MAGIC_COOKIE = 'z9hG4bK';

export function hasMagicCookie(branch: string | undefined): branch is string {
  return branch !== undefined && branch.startsWith(MAGIC_COOKIE) && branch.length > MAGIC_COOKIE.length;
}

function sentBy(via: Via): string {
  return via.port === undefined ? via.host : `${via.host}:${via.port}`;
}

const SEP = '\u0000';

/**
 * The server transaction a request belongs to (RFC 3261 s17.2.3).
 *
 * With the magic cookie: "the request matches a transaction if the branch parameter in the request
 * is equal to the one in the top Via header field of the request that created the transaction, the
 * sent-by value in the top Via of the request is equal to the one in the request that created the
 * transaction, and the method of the request matches the one that created the transaction, except
 * for ACK, where the method of the request that created the transaction is INVITE."
 *
 * Without it (RFC 2543 peers), the key is the Request-URI, To tag, From tag, Call-ID, CSeq and
 * top Via; an ACK is matched separately through {@link ackKey}, since its To tag is the one of our
 * response and its CSeq method differs.
 */
export function serverKey(req: SipRequest): string {
  const via = req.topVia()!;
  const method = req.method === 'ACK' ? 'INVITE' : req.method;
  if (hasMagicCookie(via.branch)) return `${via.branch}${SEP}${sentBy(via)}${SEP}${method}`;
  const cseq = req.cseq();
  return ['2543', req.uri, tag(req, 'to'), tag(req, 'from'), req.callId, cseq.seq, cseq.method, via.raw].join(SEP);
}

/** For a magic-cookie CANCEL: the key of the INVITE transaction it cancels (s9.2). */
export function inviteKeyFor(req: SipRequest): string | undefined {
  const via = req.topVia()!;
  if (!hasMagicCookie(via.branch)) return undefined;
  return `${via.branch}${SEP}${sentBy(via)}${SEP}INVITE`;
}

/**
 * RFC 2543 matching of an ACK or CANCEL to an INVITE: Request-URI, From tag, Call-ID, CSeq number
 * and top Via (the To tag is compared separately against the tag of the response sent).
 */
export function ackKey(req: SipRequest): string {
  const via = req.topVia()!;
  return ['2543a', req.uri, tag(req, 'from'), req.callId, req.cseq().seq, via.raw].join(SEP);
}

/** The client transaction a response belongs to (RFC 3261 s17.1.3): top Via branch + CSeq method. */
export function clientKey(msg: AnyMessage): string | undefined {
  const branch = msg.topVia()?.branch;
  if (branch === undefined) return undefined;
  return `${branch}${SEP}${msg.cseq().method}`;
}

export function clientKeyOf(branch: string, method: string): string {
  return `${branch}${SEP}${method}`;
}

export function tag(msg: AnyMessage, header: 'to' | 'from'): string {
  const na = header === 'to' ? msg.to() : msg.from();
  return na.params.get('tag') ?? '';
}

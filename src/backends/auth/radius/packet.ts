/**
 * Byte-level checks on RADIUS replies that the `radius` codec does not do safely.
 *
 * The codec's own verify_response compares digests through lossy string conversion and ignores a
 * missing Message-Authenticator, so replies are verified here, in constant time, before the codec
 * decodes them.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { ATTR } from './dictionary.js';

export const HEADER_LENGTH = 20;
const AUTHENTICATOR_OFFSET = 4;
const AUTHENTICATOR_LENGTH = 16;
/** RFC 2865 section 3: "The maximum length is 4096." */
export const MAX_PACKET_LENGTH = 4096;

export const CODE = {
  ACCESS_REQUEST: 1,
  ACCESS_ACCEPT: 2,
  ACCESS_REJECT: 3,
  ACCESS_CHALLENGE: 11,
  STATUS_SERVER: 12,
} as const;

export type ReplyVerdict =
  | { readonly ok: true; readonly packet: Buffer }
  | { readonly ok: false; readonly reason: string };

/**
 * Verifies a reply to a request whose Request Authenticator was `requestAuthenticator`.
 *
 * Returns the reply trimmed to its Length field when the Response Authenticator and the
 * Message-Authenticator are both correct, and a reason otherwise. Never throws.
 */
export function verifyReply(reply: Buffer, requestAuthenticator: Buffer, secret: string): ReplyVerdict {
  if (reply.length < HEADER_LENGTH) return { ok: false, reason: 'shorter than a RADIUS header' };
  const length = reply.readUInt16BE(2);
  // RFC 2865 section 3: "If the packet is shorter than the Length field indicates, it MUST be
  // silently discarded. [...] Octets outside the range of the Length field MUST be treated as padding
  // and ignored on reception."
  if (length < HEADER_LENGTH || length > MAX_PACKET_LENGTH) return { ok: false, reason: 'invalid Length field' };
  if (reply.length < length) return { ok: false, reason: 'shorter than its Length field' };
  const packet = Buffer.from(reply.subarray(0, length));

  // Walk the attributes: they must tile the packet exactly, and exactly one Message-Authenticator
  // of 18 octets is required (RFC 3579 section 3.2; FreeRADIUS < 3.2.5 sends it only when configured,
  // and without it a reply can be forged: CVE-2024-3596).
  let offset = HEADER_LENGTH;
  let maOffset = -1;
  while (offset < length) {
    if (offset + 2 > length) return { ok: false, reason: 'truncated attribute' };
    const type = packet[offset]!;
    const attrLength = packet[offset + 1]!;
    if (attrLength < 2 || offset + attrLength > length) return { ok: false, reason: 'invalid attribute length' };
    if (type === ATTR.MESSAGE_AUTHENTICATOR) {
      if (attrLength !== 2 + 16) return { ok: false, reason: 'invalid Message-Authenticator length' };
      if (maOffset !== -1) return { ok: false, reason: 'more than one Message-Authenticator' };
      maOffset = offset + 2;
    }
    offset += attrLength;
  }
  if (maOffset === -1) return { ok: false, reason: 'no Message-Authenticator' };

  // RFC 2865 section 3: "ResponseAuth = MD5(Code+ID+Length+RequestAuth+Attributes+Secret)".
  const withRequestAuth = Buffer.from(packet);
  requestAuthenticator.copy(withRequestAuth, AUTHENTICATOR_OFFSET);
  const expectedAuth = createHash('md5').update(withRequestAuth).update(secret, 'utf8').digest();
  const gotAuth = packet.subarray(AUTHENTICATOR_OFFSET, AUTHENTICATOR_OFFSET + AUTHENTICATOR_LENGTH);
  const authOk = timingSafeEqual(expectedAuth, gotAuth);

  // RFC 3579 section 3.2: for Access-Accept/Reject/Challenge "the Message-Authenticator is calculated
  // [...] using the Request-Authenticator from the Access-Request this packet is in reply to", with
  // the Message-Authenticator itself taken as sixteen octets of zero.
  const gotMa = Buffer.from(packet.subarray(maOffset, maOffset + 16));
  withRequestAuth.fill(0, maOffset, maOffset + 16);
  const expectedMa = createHmac('md5', secret).update(withRequestAuth).digest();
  const maOk = timingSafeEqual(expectedMa, gotMa);

  if (!authOk) return { ok: false, reason: 'Response Authenticator mismatch (wrong shared secret or forged reply)' };
  if (!maOk) return { ok: false, reason: 'Message-Authenticator mismatch (wrong shared secret or forged reply)' };
  return { ok: true, packet };
}

/** The Request Authenticator of an encoded request. */
export function requestAuthenticatorOf(packet: Buffer): Buffer {
  return Buffer.from(packet.subarray(AUTHENTICATOR_OFFSET, AUTHENTICATOR_OFFSET + AUTHENTICATOR_LENGTH));
}

/** True when an encoded request carries a non-zero Message-Authenticator. */
export function hasMessageAuthenticator(packet: Buffer): boolean {
  let offset = HEADER_LENGTH;
  const length = Math.min(packet.length, packet.readUInt16BE(2));
  while (offset + 2 <= length) {
    const type = packet[offset]!;
    const attrLength = packet[offset + 1]!;
    if (attrLength < 2) return false;
    if (type === ATTR.MESSAGE_AUTHENTICATOR && attrLength === 18) {
      return packet.subarray(offset + 2, offset + 18).some((b) => b !== 0);
    }
    offset += attrLength;
  }
  return false;
}

/** One draft-sterman Digest-Attributes (207) value: `[subtype][length incl. 2][value]`. */
export function digestSubAttribute(subtype: number, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > 251) throw new RangeError(`digest sub-attribute ${subtype} is longer than 251 bytes`);
  const out = Buffer.alloc(bytes.length + 2);
  out[0] = subtype;
  out[1] = bytes.length + 2;
  bytes.copy(out, 2);
  return out;
}

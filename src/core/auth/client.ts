/**
 * The client side of digest authentication: answering a challenge as a phone does (RFC 7616 s3.4).
 * Used by tests, benchmarks and health probes that register against sipledger.
 */
import { randomBytes } from 'node:crypto';
import type { DigestAlgorithm } from './backend.js';
import { parseDigestChallenge, quote, type DigestChallenge } from './credentials.js';
import { computeHa1, computeResponse, normalizeAlgorithm } from './digest.js';

export interface DigestAnswerParams {
  /** A WWW-Authenticate / Proxy-Authenticate value, or one already parsed. */
  readonly challenge: string | DigestChallenge;
  readonly username: string;
  readonly password: string;
  readonly method: string;
  /** The digest `uri` directive (normally the Request-URI). */
  readonly uri: string;
  readonly body?: Buffer | string;
  /** 'none' answers as an RFC 2069 client. Default: 'auth' when offered, else none. */
  readonly qop?: 'auth' | 'auth-int' | 'none';
  /** Nonce count, 1 for the first request with this nonce. Default 1. */
  readonly nc?: number;
  /** Default: 16 random hex characters. */
  readonly cnonce?: string;
  /** Answer with another algorithm than the challenge's (to test servers). */
  readonly algorithm?: DigestAlgorithm;
}

/** An Authorization / Proxy-Authorization value answering `challenge`. Throws on an unusable challenge. */
export function answerDigestChallenge(params: DigestAnswerParams): string {
  let challenge: DigestChallenge;
  if (typeof params.challenge === 'string') {
    const parsed = parseDigestChallenge(params.challenge);
    if (!parsed.ok) throw new TypeError(`unusable challenge: ${parsed.reason}`);
    challenge = parsed.challenge;
  } else {
    challenge = params.challenge;
  }
  const algorithm = params.algorithm ?? normalizeAlgorithm(challenge.algorithm);
  if (algorithm === undefined) throw new TypeError(`unsupported algorithm ${String(challenge.algorithm)}`);
  const qop = params.qop === 'none' ? undefined : (params.qop ?? (challenge.qop.includes('auth') ? 'auth' : undefined));
  const cnonce = params.cnonce ?? randomBytes(8).toString('hex');
  const nc = (params.nc ?? 1).toString(16).padStart(8, '0');
  const ha1 = computeHa1({ algorithm, username: params.username, realm: challenge.realm, password: params.password, nonce: challenge.nonce, cnonce });
  const response = computeResponse({
    algorithm,
    ha1,
    nonce: challenge.nonce,
    method: params.method,
    uri: params.uri,
    ...(qop !== undefined ? { qop, nc, cnonce } : {}),
    ...(params.body !== undefined ? { body: params.body } : {}),
  });
  const parts = [
    `username=${quote(params.username)}`,
    `realm=${quote(challenge.realm)}`,
    `nonce=${quote(challenge.nonce)}`,
    `uri=${quote(params.uri)}`,
    `response=${quote(response)}`,
    `algorithm=${algorithm}`,
  ];
  if (qop !== undefined) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce=${quote(cnonce)}`);
  else if (algorithm.endsWith('-sess')) parts.push(`cnonce=${quote(cnonce)}`);
  if (challenge.opaque !== undefined) parts.push(`opaque=${quote(challenge.opaque)}`);
  return `Digest ${parts.join(', ')}`;
}

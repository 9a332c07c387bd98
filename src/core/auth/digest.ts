/**
 * Digest computations (RFC 2617 s3.2.2, RFC 7616 s3.4, RFC 8760 for SIP).
 *
 * Pure functions: no clock, no randomness, no I/O. Every value is lower-case hex, as RFC 7616 s3.4
 * requires for the `response` and as every deployed HA1 column stores it.
 */
import * as crypto from 'node:crypto';
import type { DigestAlgorithm } from './backend.js';

interface AlgorithmInfo {
  readonly name: DigestAlgorithm;
  /** Node's name for the hash function. */
  readonly hash: 'md5' | 'sha256' | 'sha512-256';
  /** Length of the hex digest. */
  readonly hexLength: number;
  readonly session: boolean;
  /** Larger is stronger; used to order challenges strongest first (RFC 8760 s2.4). */
  readonly strength: number;
}

const ALGORITHMS: Readonly<Record<DigestAlgorithm, AlgorithmInfo>> = {
  'SHA-512-256': { name: 'SHA-512-256', hash: 'sha512-256', hexLength: 64, session: false, strength: 6 },
  'SHA-512-256-sess': { name: 'SHA-512-256-sess', hash: 'sha512-256', hexLength: 64, session: true, strength: 5 },
  'SHA-256': { name: 'SHA-256', hash: 'sha256', hexLength: 64, session: false, strength: 4 },
  'SHA-256-sess': { name: 'SHA-256-sess', hash: 'sha256', hexLength: 64, session: true, strength: 3 },
  MD5: { name: 'MD5', hash: 'md5', hexLength: 32, session: false, strength: 2 },
  'MD5-sess': { name: 'MD5-sess', hash: 'md5', hexLength: 32, session: true, strength: 1 },
};

/** Every algorithm sipledger implements, strongest first. */
export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = Object.values(ALGORITHMS)
  .sort((a, b) => b.strength - a.strength)
  .map((a) => a.name);

/**
 * The canonical algorithm name for a token as received, or undefined when sipledger does not
 * implement it. RFC 7616 s3.3: the algorithm token is case-insensitive; an absent algorithm means MD5.
 */
export function normalizeAlgorithm(token: string | undefined): DigestAlgorithm | undefined {
  if (token === undefined) return 'MD5';
  const wanted = token.toLowerCase();
  return DIGEST_ALGORITHMS.find((a) => a.toLowerCase() === wanted);
}

/** True for the `-sess` variants, whose HA1 is bound to the nonce and cnonce. */
export function isSessionAlgorithm(algorithm: DigestAlgorithm): boolean {
  return ALGORITHMS[algorithm].session;
}

/** Length of the hex digests the algorithm produces (32 for MD5, 64 for the SHA-2 family). */
export function digestHexLength(algorithm: DigestAlgorithm): number {
  return ALGORITHMS[algorithm].hexLength;
}

/** Sorts algorithms strongest first without duplicates (the order challenges are offered in). */
export function strongestFirst(algorithms: Iterable<DigestAlgorithm>): DigestAlgorithm[] {
  return [...new Set(algorithms)].sort((a, b) => ALGORITHMS[b].strength - ALGORITHMS[a].strength);
}

/**
 * One-shot hashing (Node >= 20.12) skips the Hash object a streaming digest builds: about a third
 * of the cost for inputs of a digest's size. Older Node 20 releases take the streaming path.
 */
const oneShot: ((algorithm: string, data: string | Buffer, encoding: 'hex') => string) | undefined =
  typeof (crypto as { hash?: unknown }).hash === 'function' ? crypto.hash : undefined;

/** H(data) for the algorithm's hash function, lower-case hex. */
export function digestHash(algorithm: DigestAlgorithm, data: string | Buffer): string {
  const name = ALGORITHMS[algorithm].hash;
  return oneShot ? oneShot(name, data, 'hex') : crypto.createHash(name).update(data).digest('hex');
}

export interface Ha1Params {
  readonly algorithm: DigestAlgorithm;
  /** The digest username exactly as the client sends it (possibly `user@domain`). */
  readonly username: string;
  readonly realm: string;
  readonly password: string;
  /** Required for the `-sess` algorithms. */
  readonly nonce?: string;
  /** Required for the `-sess` algorithms. */
  readonly cnonce?: string;
}

/**
 * HA1 = H(A1). RFC 7616 s3.4.2: for the plain algorithms `A1 = unq(username) ":" unq(realm) ":" passwd`;
 * for the `-sess` algorithms `A1 = H(unq(username) ":" unq(realm) ":" passwd) ":" unq(nonce) ":" unq(cnonce)`.
 */
export function computeHa1(params: Ha1Params): string {
  const base = digestHash(params.algorithm, `${params.username}:${params.realm}:${params.password}`);
  return isSessionAlgorithm(params.algorithm) ? sessionHa1(params.algorithm, base, params.nonce, params.cnonce) : base;
}

/**
 * The session HA1 from a stored (non-session) HA1: `H(HA1 ":" nonce ":" cnonce)`. The inner HA1 is
 * the hex form, as RFC 7616 s3.4.2 and RFC 2617 erratum 1649 state (not the 16 raw octets).
 * Returns the HA1 unchanged for the non-session algorithms.
 */
export function sessionHa1(algorithm: DigestAlgorithm, baseHa1: string, nonce: string | undefined, cnonce: string | undefined): string {
  if (!isSessionAlgorithm(algorithm)) return baseHa1;
  if (nonce === undefined || cnonce === undefined) {
    throw new TypeError(`${algorithm} needs nonce and cnonce to compute HA1`);
  }
  return digestHash(algorithm, `${baseHa1.toLowerCase()}:${nonce}:${cnonce}`);
}

export interface ResponseParams {
  readonly algorithm: DigestAlgorithm;
  /** The final HA1 (already session-bound for `-sess`; see {@link computeHa1} and {@link sessionHa1}). */
  readonly ha1: string;
  readonly nonce: string;
  readonly method: string;
  /** The digest `uri` directive, as sent by the client. */
  readonly uri: string;
  /** Absent for RFC 2069 clients (no qop). */
  readonly qop?: 'auth' | 'auth-int';
  readonly nc?: string;
  readonly cnonce?: string;
  /** The message body, for qop=auth-int. */
  readonly body?: Buffer | string;
  /** H(body) when already known (e.g. computed once for a verifying backend). */
  readonly bodyDigest?: string;
}

/**
 * The expected `response` directive.
 *
 * RFC 7616 s3.4.1: with qop, `response = KD(H(A1), unq(nonce) ":" nc ":" unq(cnonce) ":" unq(qop) ":" H(A2))`;
 * without qop (RFC 2069 compatibility), `response = KD(H(A1), unq(nonce) ":" H(A2))`.
 * RFC 7616 s3.4.3: `A2 = Method ":" request-uri` for qop=auth (or none), and
 * `A2 = Method ":" request-uri ":" H(entity-body)` for qop=auth-int.
 */
export function computeResponse(params: ResponseParams): string {
  const { algorithm } = params;
  let a2 = `${params.method}:${params.uri}`;
  if (params.qop === 'auth-int') {
    a2 += `:${params.bodyDigest ?? digestHash(algorithm, params.body ?? '')}`;
  }
  const ha2 = digestHash(algorithm, a2);
  const ha1 = params.ha1.toLowerCase();
  if (params.qop === undefined) {
    return digestHash(algorithm, `${ha1}:${params.nonce}:${ha2}`);
  }
  if (params.nc === undefined || params.cnonce === undefined) {
    throw new TypeError('qop needs nc and cnonce');
  }
  return digestHash(algorithm, `${ha1}:${params.nonce}:${params.nc}:${params.cnonce}:${params.qop}:${ha2}`);
}

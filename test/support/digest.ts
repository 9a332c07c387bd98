/**
 * RFC 2617 section 3.2.2 digest responses (MD5 and MD5-sess), computed independently of the code
 * under test so that tests can present a correct (or deliberately wrong) Authorization.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { DigestVerifyRequest } from '../../src/core/auth/backend.js';

export interface DigestInput {
  username: string;
  realm: string;
  /** Either the clear-text password or the stored HA1 = MD5(username:realm:password). */
  password?: string;
  ha1?: string;
  method: string;
  uri: string;
  nonce: string;
  algorithm?: 'MD5' | 'MD5-sess';
  qop?: 'auth' | 'auth-int';
  nc?: string;
  cnonce?: string;
  /** The message body, for qop=auth-int. */
  body?: string;
}

export const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex');

export function digestResponse(d: DigestInput): string {
  let ha1 = d.ha1 ?? md5(`${d.username}:${d.realm}:${d.password ?? ''}`);
  // RFC 2617: for "MD5-sess", A1 = H(user:realm:passwd) ":" nonce-value ":" cnonce-value.
  if (d.algorithm === 'MD5-sess') ha1 = md5(`${ha1}:${d.nonce}:${d.cnonce ?? ''}`);
  // RFC 2617: for qop "auth-int", A2 = Method ":" digest-uri-value ":" H(entity-body).
  const a2 = d.qop === 'auth-int' ? `${d.method}:${d.uri}:${md5(d.body ?? '')}` : `${d.method}:${d.uri}`;
  const ha2 = md5(a2);
  if (d.qop === undefined) return md5(`${ha1}:${d.nonce}:${ha2}`);
  return md5(`${ha1}:${d.nonce}:${d.nc ?? ''}:${d.cnonce ?? ''}:${d.qop}:${ha2}`);
}

/** A REGISTER digest as a phone would send it, with a fresh hex nonce and cnonce. */
export function registerDigest(user: string, secret: { password?: string; ha1?: string }, extra: Partial<DigestInput> = {}): DigestVerifyRequest {
  const input: DigestInput = {
    username: user,
    realm: 'example.com',
    method: 'REGISTER',
    uri: 'sip:example.com',
    nonce: randomBytes(16).toString('hex'),
    qop: 'auth',
    nc: '00000001',
    cnonce: randomBytes(8).toString('hex'),
    algorithm: 'MD5',
    ...secret,
    ...extra,
  };
  const request: DigestVerifyRequest = {
    username: input.username,
    realm: input.realm,
    nonce: input.nonce,
    uri: input.uri,
    method: input.method,
    response: digestResponse(input),
    algorithm: input.algorithm ?? 'MD5',
    sipUriUser: user,
    ...(input.qop !== undefined ? { qop: input.qop, nc: input.nc!, cnonce: input.cnonce! } : {}),
    ...(input.qop === 'auth-int' ? { bodyDigest: md5(input.body ?? '') } : {}),
  };
  return request;
}

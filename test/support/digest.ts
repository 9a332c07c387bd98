/**
 * RFC 2617 section 3.2.2 digest responses (MD5 and MD5-sess), computed independently of the code
 * under test so that tests can present a correct (or deliberately wrong) Authorization.
 */
import { createHash } from 'node:crypto';

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

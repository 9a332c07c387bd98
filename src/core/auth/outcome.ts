/**
 * What the proxy hands to the authenticator, and what it gets back. Independent of the SIP message
 * model on purpose: the proxy builds this plain view from whatever message representation it has.
 */
import type { Attributes, DigestAlgorithm } from './backend.js';
import { AUTH_FAILURE_CAUSES, type AuthFailureCause } from '../log/events.js';

export interface AuthRequest {
  /** 'REGISTER', 'INVITE', ... REGISTER is answered 401/WWW-Authenticate, anything else 407/Proxy-Authenticate. */
  readonly method: string;
  /** The raw Request-URI (compared with the digest `uri` only in strict mode). */
  readonly requestUri: string;
  /** The message body, for qop=auth-int. */
  readonly body: Buffer;
  /**
   * The values of every Authorization header (REGISTER) or Proxy-Authorization header (other methods),
   * as received, in message order. Indices into this array are what {@link AuthOk.consumed} returns.
   */
  readonly credentials: readonly string[];
  /** The identity claimed: the To URI for REGISTER, the From URI otherwise. `user` may be ''. */
  readonly identity: { readonly user: string; readonly domain: string };
  readonly source: { readonly address: string; readonly port: number; readonly transport: 'udp' | 'tcp' | 'tls' };
  readonly userAgent?: string;
  readonly callId?: string;
}

/** The fixed vocabulary of outcomes (Kamailio's auth return codes, named). */
export type AuthOutcome = 'ok' | 'no_credentials' | AuthFailureCause;

/** Every outcome: the audited failure causes are the event log's vocabulary (auth.failed). */
export const AUTH_OUTCOMES: readonly AuthOutcome[] = ['ok', 'no_credentials', ...AUTH_FAILURE_CAUSES];

/** A ready-made stateless answer for the proxy to send (it adds Via, To tag, Call-ID, CSeq...). */
export interface AuthReply {
  readonly status: 400 | 401 | 403 | 407 | 500 | 503;
  readonly reason: string;
  /** Extra header fields in order, e.g. several WWW-Authenticate challenges strongest first. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
}

/** How the nonce presented looked, when one was examined (for logs and audit events). */
export type NonceState = 'valid' | 'expired' | 'forged' | 'forgotten';

interface AuthResultBase {
  /** The digest username (the auth id), when credentials for our realm were read. */
  readonly user?: string;
  /** The realm authenticated against (the served domain's realm), when the domain is served. */
  readonly realm?: string;
  /** The served domain (canonical, lower-case) whose backend was used. */
  readonly domain?: string;
  readonly algorithm?: DigestAlgorithm;
  /** The backend instance name, when it was consulted. */
  readonly backend?: string;
  readonly nonce?: NonceState;
  /** A short human reason for logs and audit events. Never contains a secret. */
  readonly detail: string;
}

export interface AuthOk extends AuthResultBase {
  readonly outcome: 'ok';
  readonly user: string;
  readonly realm: string;
  readonly domain: string;
  readonly algorithm: DigestAlgorithm;
  readonly backend: string;
  /** The attributes (AVPs) loaded with the credentials, e.g. `rpid`. */
  readonly attributes: Attributes;
  /**
   * Indices into {@link AuthRequest.credentials} of the values for our realm, which the proxy must
   * remove before relaying (consume_credentials). Values for other realms are left for the next hop.
   */
  readonly consumed: readonly number[];
  readonly reply?: undefined;
}

export interface AuthFailure extends AuthResultBase {
  readonly outcome: Exclude<AuthOutcome, 'ok'>;
  /**
   * The realm challenged or checked; for realm_mismatch, the realm the credentials named or else the
   * identity's domain. Always present, as audit events require it.
   */
  readonly realm: string;
  /** The served domain; for realm_mismatch (and malformed requests for unserved domains) the identity's domain. */
  readonly domain: string;
  /** The algorithm of the credential examined, else the strongest one the domain offers (MD5 for unserved domains). */
  readonly algorithm: DigestAlgorithm;
  readonly reply: AuthReply;
  readonly attributes?: undefined;
  readonly consumed?: undefined;
}

export type AuthResult = AuthOk | AuthFailure;

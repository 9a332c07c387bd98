/**
 * The contract between sipledger's digest-authentication framework and the places credentials live.
 *
 * As in Kamailio, the framework (nonces, challenges, qop, nonce-count replay protection, identity
 * checks, credential stripping) owns everything protocol-related; a backend owns none of it.
 * A backend has one of two shapes:
 *
 * - a {@link CredentialStore} returns what the framework needs to check the digest itself: a
 *   plain password, or a pre-computed HA1 (`MD5(user:realm:password)`) or HA1b
 *   (`MD5(user@domain:realm:password)`), plus attributes (Kamailio's AVPs from load_credentials).
 *   Kamailio's auth_db is this shape; so are the in-memory and MySQL backends.
 * - a {@link DigestVerifier} is handed the whole digest and answers accept or reject itself
 *   (Kamailio's auth_radius: FreeRADIUS rlm_digest checks the response).
 *
 * Expected answers ("no such user", "rejected") are values. Infrastructure failures (database down,
 * every RADIUS server silent, timeout) are thrown as {@link BackendUnavailableError}; the framework
 * turns them into the outcome `backend_unavailable` and a 500/503 with Retry-After, never a challenge.
 */

/** Digest algorithms sipledger can challenge with (RFC 2617, RFC 7616, RFC 8760). */
export type DigestAlgorithm = 'MD5' | 'MD5-sess' | 'SHA-256' | 'SHA-256-sess' | 'SHA-512-256' | 'SHA-512-256-sess';

/** Attribute values loaded with the credentials (Kamailio's AVPs). */
export type AttributeValue = string | number;
export type Attributes = Record<string, AttributeValue | AttributeValue[]>;

export interface LookupOptions {
  /** Aborted when the framework's per-lookup budget (default 2 s) runs out. */
  readonly signal: AbortSignal;
  /**
   * When the budget runs out, on the `performance.now()` clock: the signal aborts at that moment.
   * The authenticator creates the signal only when a backend reads it (an AbortSignal and its
   * listener cost several microseconds per lookup), so a backend that enforces deadlines of its
   * own can take this instead of listening on the signal. Absent when the caller only has a signal.
   */
  readonly deadline?: number;
}

/** Who to look up. `username` is the digest username; `domain` is the realm being authenticated. */
export interface CredentialQuery {
  readonly username: string;
  readonly domain: string;
}

/** What a credential store knows about one subscriber. At least one secret form must be present. */
export interface Credentials {
  /** Clear-text password (Kamailio `calculate_ha1 = 1`). */
  readonly password?: string;
  /** Hex MD5(username:realm:password). */
  readonly ha1?: string;
  /** Hex MD5(username@domain:realm:password), for phones that put user@domain in the digest username. */
  readonly ha1b?: string;
  readonly attributes: Attributes;
}

export interface CredentialStore {
  readonly kind: 'store';
  /** Instance name from the configuration, used in logs, metrics and events. */
  readonly name: string;
  /** Resolves null when the subscriber does not exist. Throws BackendUnavailableError on failure. */
  lookup(query: CredentialQuery, options: LookupOptions): Promise<Credentials | null>;
  close(): Promise<void>;
}

/** Everything a verifying backend needs to check a digest response (draft-sterman-aaa-sip layout). */
export interface DigestVerifyRequest {
  readonly username: string;
  readonly realm: string;
  readonly nonce: string;
  readonly uri: string;
  readonly method: string;
  readonly response: string;
  readonly algorithm: DigestAlgorithm;
  readonly qop?: 'auth' | 'auth-int';
  readonly nc?: string;
  readonly cnonce?: string;
  /** Hex H(body), for qop=auth-int. */
  readonly bodyDigest?: string;
  /** The user part of the identity being claimed: To user for REGISTER, From user otherwise. */
  readonly sipUriUser?: string;
  /** The address the SIP request came from, for backends that log or filter on it. */
  readonly sourceAddress?: string;
}

export type VerifyResult =
  | { readonly result: 'accept'; readonly attributes: Attributes }
  | { readonly result: 'reject'; readonly reason?: string };

export interface DigestVerifier {
  readonly kind: 'verifier';
  readonly name: string;
  /** The algorithms the server behind this backend can check; domains using it offer only these. */
  readonly algorithms: readonly DigestAlgorithm[];
  verify(request: DigestVerifyRequest, options: LookupOptions): Promise<VerifyResult>;
  close(): Promise<void>;
}

/** Optional capabilities shared by both shapes (Kamailio's uri_db and alias_db). */
export interface IdentityTable {
  /**
   * The uri table: may the authenticated `authUser@authDomain` use the SIP identity
   * `sipUser@sipDomain`? Resolves null when the table has no rows for the auth id, in which case the
   * framework falls back to the default rule (user == user and domain == realm).
   */
  ownsIdentity?(
    auth: { user: string; domain: string },
    sip: { user: string; domain: string },
    options: LookupOptions,
  ): Promise<boolean | null>;
  /** The aliases table: the canonical AOR for an alias, or null when it is not an alias. */
  resolveAlias?(alias: { user: string; domain: string }, options: LookupOptions): Promise<{ user: string; domain: string } | null>;
}

export type AuthBackend = (CredentialStore | DigestVerifier) & IdentityTable;

/** An infrastructure failure: the backend could not give an answer. Never answered with a challenge. */
export class BackendUnavailableError extends Error {
  readonly code = 'BACKEND_UNAVAILABLE';
  readonly retriable = true;
  constructor(
    readonly backend: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BackendUnavailableError';
  }
}

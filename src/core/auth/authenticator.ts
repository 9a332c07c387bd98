/**
 * sipledger's digest authentication framework: the part Kamailio's `auth` module plays.
 *
 * It owns everything protocol-related: the realm per served domain, signed nonces, challenges (401 /
 * WWW-Authenticate for REGISTER, 407 / Proxy-Authenticate otherwise), qop, algorithms, nonce-count
 * replay protection, stale=true, the identity check (check_to / check_from) and which credentials to
 * strip before relaying (consume_credentials). Backends only answer "who is this" (a credential
 * store) or "is this digest right" (a verifier).
 *
 * Every expected result, including a backend that is down, is a value ({@link AuthResult}) with a
 * ready-made reply; `authenticate` never throws for anything a request or a backend can do.
 */
import { Deadlines } from './deadlines.js';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import {
  BackendUnavailableError,
  type Attributes,
  type AuthBackend,
  type Credentials,
  type DigestAlgorithm,
  type LookupOptions,
} from './backend.js';
import { parseDigestCredentials, formatDigestChallenge, type DigestCredentials } from './credentials.js';
import { computeHa1, computeResponse, digestHash, isSessionAlgorithm, normalizeAlgorithm, sessionHa1 } from './digest.js';
import { DomainTable, normalizeDomain, type DomainAuth, type ResolvedDomain } from './domains.js';
import { AuthConfigError } from './errors.js';
import { NonceCodec } from './nonce.js';
import type { AuthFailure, AuthOk, AuthOutcome, AuthReply, AuthRequest, AuthResult, NonceState } from './outcome.js';
import { NonceCountTracker } from './replay.js';

export interface DigestAuthenticatorOptions {
  /**
   * The HMAC key nonces are signed with (at least 16 bytes). Give every instance of a cluster the
   * same secret so that each accepts the nonces the others issued.
   */
  readonly secret: string | Buffer;
  /** How long a nonce may be answered. Default 30 000 ms. */
  readonly nonceLifetimeMs?: number;
  /** Allowance for peers' clocks that disagree slightly. Default 1 000 ms. */
  readonly clockDriftMs?: number;
  /** Milliseconds since the epoch; injectable for tests. Default Date.now. */
  readonly clock?: () => number;
  /** Nonce counts remembered per nonce below the highest seen (out-of-order window). Default 64. */
  readonly replayWindow?: number;
  /** Nonces whose counts are remembered at once; least recently used forgotten first. Default 65 536. */
  readonly maxTrackedNonces?: number;
  /**
   * Require the digest `uri` to equal the Request-URI (RFC 2617 s3.2.2.5). Off by default: SIPp and
   * some phones put the target address there, and the nonce already binds the answer to us.
   */
  readonly strictUri?: boolean;
  /** Budget for one backend call; past it the request is answered 503. Default 2 000 ms. */
  readonly lookupTimeoutMs?: number;
  /** Retry-After, in seconds, on backend_unavailable. Default 5. */
  readonly retryAfterSeconds?: number;
  /** Status for backend_unavailable: 503 (default; lets phones fail over via DNS SRV) or 500. */
  readonly unavailableStatus?: 500 | 503;
  readonly logger: Logger;
  readonly domains: readonly DomainAuth[];
}

interface Candidate {
  readonly index: number;
  readonly credentials: DigestCredentials;
}

/** One shared attributes object for failures would be mutable; ok results get a fresh copy. */
function copyAttributes(attributes: Attributes): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(attributes)) out[k] = Array.isArray(v) ? [...v] : v;
  return out;
}

/** What a failure result carries besides its outcome and reply. */
type FailureFields = Omit<AuthFailure, 'outcome' | 'reply'>;

const HEX = /^[0-9a-fA-F]+$/;
const NC = /^[0-9a-fA-F]{8}$/;

export class DigestAuthenticator {
  readonly #domains: DomainTable;
  readonly #nonces: NonceCodec;
  readonly #counts: NonceCountTracker;
  readonly #strictUri: boolean;
  readonly #timeoutMs: number;
  readonly #deadlines: Deadlines;
  readonly #templates = new WeakMap<ResolvedDomain, ReadonlyArray<{ prefix: string; suffix: string; staleSuffix: string }>>();
  readonly #retryAfter: number;
  readonly #unavailableStatus: 500 | 503;
  readonly #log: Logger;
  readonly #clock: () => number;

  constructor(options: DigestAuthenticatorOptions) {
    this.#log = options.logger.child({ module: 'auth' });
    this.#clock = options.clock ?? Date.now;
    this.#nonces = new NonceCodec({
      secret: options.secret,
      ...(options.nonceLifetimeMs !== undefined ? { lifetimeMs: options.nonceLifetimeMs } : {}),
      ...(options.clockDriftMs !== undefined ? { clockDriftMs: options.clockDriftMs } : {}),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
    });
    try {
      this.#counts = new NonceCountTracker({
        ...(options.replayWindow !== undefined ? { window: options.replayWindow } : {}),
        ...(options.maxTrackedNonces !== undefined ? { maxNonces: options.maxTrackedNonces } : {}),
      });
    } catch (err) {
      throw new AuthConfigError(options.replayWindow !== undefined ? 'replayWindow' : 'maxTrackedNonces', (err as Error).message, { cause: err });
    }
    this.#timeoutMs = options.lookupTimeoutMs ?? 2_000;
    if (!Number.isFinite(this.#timeoutMs) || this.#timeoutMs <= 0) throw new AuthConfigError('lookupTimeoutMs', 'must be a positive number of milliseconds');
    this.#deadlines = new Deadlines(this.#timeoutMs);
    this.#retryAfter = options.retryAfterSeconds ?? 5;
    if (!Number.isInteger(this.#retryAfter) || this.#retryAfter < 0) throw new AuthConfigError('retryAfterSeconds', 'must be a non-negative integer');
    this.#unavailableStatus = options.unavailableStatus ?? 503;
    if (this.#unavailableStatus !== 500 && this.#unavailableStatus !== 503) throw new AuthConfigError('unavailableStatus', 'must be 500 or 503');
    this.#strictUri = options.strictUri ?? false;
    this.#domains = new DomainTable(options.domains);
    for (const d of this.#domains.dropped) {
      this.#log.warn({ domain: d.domain, algorithms: d.algorithms }, 'algorithms not offered: the verifying backend cannot check them');
    }
  }

  /** Whether `domain` (a To/From host) is one of ours, case-insensitively. */
  servesDomain(domain: string): boolean {
    return this.#domains.get(domain) !== undefined;
  }

  /** The served domain for a host name (case-insensitive), or undefined. */
  domain(domain: string): ResolvedDomain | undefined {
    return this.#domains.get(domain);
  }

  /** Every served domain, in configuration order. */
  domains(): readonly ResolvedDomain[] {
    return this.#domains.all();
  }

  /**
   * A fresh challenge for `method` in `domain`'s realm, for routes that demand authentication
   * without having called {@link authenticate}. Undefined when the domain is not served: a foreign
   * domain is never challenged with our realm.
   */
  challenge(method: string, domain: string): AuthReply | undefined {
    const resolved = this.#domains.get(domain);
    return resolved === undefined ? undefined : this.#challengeReply(method, resolved, false);
  }

  /**
   * The canonical AOR for an alias through the domain's backend (Kamailio's alias_db), or null when
   * it is not an alias, the domain is not served or its backend has no alias table.
   * Throws {@link BackendUnavailableError} when the backend fails or runs out of time.
   */
  async resolveAlias(alias: { user: string; domain: string }): Promise<{ user: string; domain: string } | null> {
    const resolved = this.#domains.get(alias.domain);
    const backend = resolved?.backend;
    if (backend?.resolveAlias === undefined) return null;
    return this.#withBudget(backend, 'alias lookup', (options) => backend.resolveAlias!({ user: alias.user, domain: normalizeDomain(alias.domain) }, options));
  }

  /**
   * Checks the credentials of a request (Kamailio's www_authorize / proxy_authorize, then check_to /
   * check_from), and says what to answer.
   */
  async authenticate(req: AuthRequest): Promise<AuthResult> {
    const result = await this.#authenticate(req);
    const unavailable = result.outcome === 'backend_unavailable';
    // pino's habit: a disabled level costs one branch, not a log entry built and dropped.
    if (!unavailable && !this.#log.isLevelEnabled('debug')) return result;
    const entry = {
      outcome: result.outcome,
      method: req.method,
      user: result.user,
      realm: result.realm,
      identity: `${req.identity.user}@${req.identity.domain}`,
      source: `${req.source.transport}:${req.source.address}:${req.source.port}`,
      callId: req.callId,
      detail: result.detail,
    };
    if (unavailable) this.#log.warn(entry, 'authentication backend unavailable');
    else this.#log.debug(entry, 'authentication outcome');
    return result;
  }

  async #authenticate(req: AuthRequest): Promise<AuthResult> {
    // 1. Read every Digest credential. Other schemes belong to other hops; a Digest value we cannot
    //    read is answered 400, since we cannot tell whether it was meant for us.
    // Every failure names a realm, a domain and an algorithm (audit events require them): those of
    // the identity's served domain when there is one, else the identity's own domain.
    const identityDomain = normalizeDomain(req.identity.domain) || 'unknown';
    const served = this.#domains.get(identityDomain);
    const fallback = {
      realm: served?.realm ?? identityDomain,
      domain: served?.domain ?? identityDomain,
      algorithm: served?.algorithms[0] ?? ('MD5' as DigestAlgorithm),
    };
    const parsed: Candidate[] = [];
    for (const [index, value] of req.credentials.entries()) {
      const r = parseDigestCredentials(value);
      if (r.ok) parsed.push({ index, credentials: r.credentials });
      else if (r.scheme !== undefined && r.scheme.toLowerCase() !== 'digest') continue;
      else return this.#malformed(req, fallback, `credentials #${index}: ${r.reason}`);
    }

    // 2. The realm: the served domain of the identity (To for REGISTER, From otherwise), as with
    //    Kamailio's empty realm. When that domain is not ours, credentials for one of our realms may
    //    still authenticate (a uri table can let an auth id use a foreign SIP identity), but a
    //    request for a domain we do not serve is never challenged with our realm.
    let domain = served;
    if (domain === undefined) {
      domain = parsed.map((p) => this.#domains.byRealm(p.credentials.realm)).find((d) => d !== undefined);
      if (domain === undefined) {
        const first = parsed[0]?.credentials;
        return this.#fail('realm_mismatch', { status: 403, reason: 'Forbidden (domain not served)', headers: [] }, {
          ...fallback,
          ...(first !== undefined ? { user: first.username, realm: first.realm || identityDomain, algorithm: normalizeAlgorithm(first.algorithm) ?? 'MD5' } : {}),
          detail: `domain ${identityDomain} is not served`,
        });
      }
    }
    const realmKey = domain.realm.toLowerCase();
    const ours = parsed.filter((p) => p.credentials.realm.toLowerCase() === realmKey);
    const base = { realm: domain.realm, domain: domain.domain, algorithm: domain.algorithms[0]! };
    if (ours.length === 0) {
      const detail = parsed.length === 0 ? 'no credentials' : `credentials only for other realms (${parsed.map((p) => p.credentials.realm).join(', ')})`;
      return this.#challenged('no_credentials', req, domain, false, { ...base, detail });
    }

    // 3. The credential to check: the strongest algorithm we offer among those answered for our
    //    realm (a phone may answer several challenges of one realm; RFC 8760 s2.4).
    let chosen: { candidate: Candidate; algorithm: DigestAlgorithm } | undefined;
    for (const candidate of ours) {
      const algorithm = normalizeAlgorithm(candidate.credentials.algorithm);
      if (algorithm === undefined || !domain.algorithms.includes(algorithm)) continue;
      if (chosen === undefined || domain.algorithms.indexOf(algorithm) < domain.algorithms.indexOf(chosen.algorithm)) {
        chosen = { candidate, algorithm };
      }
    }
    if (chosen === undefined) {
      const offered = ours.map((p) => p.credentials.algorithm ?? 'MD5').join(', ');
      return this.#malformed(req, { ...base, user: ours[0]!.credentials.username }, `algorithm ${offered} not offered in realm ${domain.realm}`);
    }
    const { algorithm } = chosen;
    const cred = chosen.candidate.credentials;
    const user = cred.username;
    const withUser = { ...base, user, algorithm };

    const problem = this.#validate(req, cred, algorithm);
    if (problem !== undefined) return this.#malformed(req, withUser, problem);
    const qop = cred.qop === undefined ? undefined : (cred.qop.toLowerCase() as 'auth' | 'auth-int');

    // 4. The nonce must be one we signed for this realm. A forged one is not worth a backend lookup,
    //    and never earns stale=true: that would let anyone make a phone retry forever.
    const verdict = this.#nonces.verify(cred.nonce, domain.realm);
    if (verdict.status === 'forged') {
      return this.#challenged('stale_nonce', req, domain, false, { ...withUser, nonce: 'forged', detail: `nonce rejected: ${verdict.reason}` });
    }

    // 5. The response, checked by us (credential store) or by the backend (verifier).
    const at = cred.username.lastIndexOf('@');
    const authUser = at > 0 ? cred.username.slice(0, at) : cred.username;
    const bodyDigest = qop === 'auth-int' ? digestHash(algorithm, req.body) : undefined;
    const backend = domain.backend;
    const withBackend = { ...withUser, backend: backend.name, nonce: verdict.status as NonceState };
    let attributes: Attributes;
    try {
      if (backend.kind === 'store') {
        const stored = await this.#withBudget(backend, 'credential lookup', (options) =>
          backend.lookup({ username: authUser, domain: domain.realm }, options),
        );
        if (stored === null) {
          // The hashing of a real check, so timing does not tell users apart either.
          this.#checkStored({ password: '', attributes: {} }, cred, algorithm, qop, req, bodyDigest, false);
          return this.#challenged('unknown_user', req, domain, false, { ...withBackend, detail: `no subscriber ${authUser} in realm ${domain.realm}` });
        }
        const check = this.#checkStored(stored, cred, algorithm, qop, req, bodyDigest, at > 0);
        if (check !== true) {
          if (check === 'no_usable_secret') {
            this.#log.warn({ realm: domain.realm, user, algorithm, backend: backend.name }, 'stored credentials hold only an MD5 HA1; cannot check this algorithm');
          }
          const detail = check === 'no_usable_secret' ? `no stored secret usable with ${algorithm}` : 'wrong response';
          return this.#challenged('bad_password', req, domain, false, { ...withBackend, detail });
        }
        attributes = stored.attributes;
      } else {
        const answer = await this.#withBudget(backend, 'digest verification', (options) =>
          backend.verify(
            {
              username: cred.username,
              realm: cred.realm,
              nonce: cred.nonce,
              uri: cred.uri,
              method: req.method,
              response: cred.response.toLowerCase(),
              algorithm,
              ...(qop !== undefined ? { qop, nc: cred.nc! } : {}),
              ...(cred.cnonce !== undefined ? { cnonce: cred.cnonce } : {}),
              ...(bodyDigest !== undefined ? { bodyDigest } : {}),
              sipUriUser: req.identity.user,
              sourceAddress: req.source.address,
            },
            options,
          ),
        );
        if (answer.result !== 'accept') {
          // A verifier cannot tell an unknown user from a wrong password; neither can the phone.
          return this.#challenged('bad_password', req, domain, false, { ...withBackend, detail: `rejected by ${backend.name}${answer.reason ? `: ${answer.reason}` : ''}` });
        }
        attributes = answer.attributes;
      }
    } catch (err) {
      return this.#unavailable(err, backend, withUser);
    }

    // 6. The response is right. RFC 7616 s3.3: stale "indicat[es] that the previous request from the
    //    client was rejected because the nonce value was stale. If stale is true, the client may wish
    //    to simply retry the request with a new encrypted response, without re-prompting the user".
    if (verdict.status === 'expired') {
      return this.#challenged('stale_nonce', req, domain, true, { ...withBackend, detail: `nonce expired ${Math.round(this.#ageMs(verdict.issuedAt) / 1000)} s after issue` });
    }
    if (qop !== undefined) {
      const nc = Number.parseInt(cred.nc!, 16);
      const seen = this.#counts.check(cred.nonce, nc, verdict.issuedAt);
      if (seen === 'replayed') {
        // Retransmissions are answered by the transaction layer and never get here, so a count seen
        // before is a replay; it gets a plain challenge, not stale=true.
        return this.#challenged('nonce_reused', req, domain, false, { ...withBackend, detail: `nonce count ${cred.nc} already used` });
      }
      if (seen === 'forgotten') {
        return this.#challenged('stale_nonce', req, domain, true, { ...withBackend, nonce: 'forgotten', detail: 'nonce no longer tracked for replay protection' });
      }
    }

    // 7. check_to / check_from: the authenticated user must own the identity it claims.
    const claimed = { user: req.identity.user, domain: normalizeDomain(req.identity.domain) };
    let owns: boolean | null = null;
    if (backend.ownsIdentity !== undefined) {
      try {
        owns = await this.#withBudget(backend, 'identity lookup', (options) => backend.ownsIdentity!({ user: authUser, domain: domain.realm }, claimed, options));
      } catch (err) {
        return this.#unavailable(err, backend, withUser);
      }
    }
    if (owns === null) owns = claimed.user === authUser && (domain.names.includes(claimed.domain) || claimed.domain === realmKey);
    if (!owns) {
      const header = this.#isRegister(req.method) ? 'To' : 'From';
      return this.#fail('identity_mismatch', { status: 403, reason: `Forbidden (${header} identity not owned by ${authUser})`.slice(0, 120), headers: [] }, {
        ...withBackend,
        detail: `${authUser}@${domain.realm} may not use ${header} ${claimed.user}@${claimed.domain}`,
      });
    }

    const ok: AuthOk = {
      outcome: 'ok',
      user,
      realm: domain.realm,
      domain: domain.domain,
      algorithm,
      backend: backend.name,
      nonce: 'valid',
      attributes: copyAttributes(attributes),
      consumed: ours.map((p) => p.index),
      detail: `authenticated ${authUser}@${domain.realm} with ${algorithm}${qop ? ` qop=${qop}` : ''}`,
    };
    return ok;
  }

  /** Directive-level checks that make a credential unusable whatever the password. */
  #validate(req: AuthRequest, cred: DigestCredentials, algorithm: DigestAlgorithm): string | undefined {
    if (cred.username === '') return 'empty username';
    if (cred.userhash === true) return 'userhash not offered';
    if (!HEX.test(cred.response)) return 'response is not hexadecimal';
    if (cred.qop !== undefined) {
      const qop = cred.qop.toLowerCase();
      if (qop !== 'auth' && qop !== 'auth-int') return `unsupported qop ${cred.qop}`;
      // RFC 7616 s3.4: "cnonce ... MUST be specified if a qop directive is sent"; likewise nc.
      if (cred.nc === undefined || !NC.test(cred.nc) || Number.parseInt(cred.nc, 16) === 0) return 'qop without a valid nc';
      if (cred.cnonce === undefined || cred.cnonce === '') return 'qop without cnonce';
    } else if (cred.nc !== undefined) {
      return 'nc without qop';
    }
    if (isSessionAlgorithm(algorithm) && (cred.cnonce === undefined || cred.cnonce === '')) return `${algorithm} without cnonce`;
    if (this.#strictUri && cred.uri.trim().toLowerCase() !== req.requestUri.trim().toLowerCase()) {
      // RFC 2617 s3.2.2.5: "The authenticating server MUST assure that the resource designated by the
      // "uri" directive is the same as the resource specified in the Request-Line; if they are not,
      // the server SHOULD return a 400 Bad Request error."
      return 'digest uri differs from the Request-URI';
    }
    return undefined;
  }

  /** True when the response matches one of the stored secret forms. */
  #checkStored(
    stored: Credentials,
    cred: DigestCredentials,
    algorithm: DigestAlgorithm,
    qop: 'auth' | 'auth-int' | undefined,
    req: AuthRequest,
    bodyDigest: string | undefined,
    usernameHasDomain: boolean,
  ): true | 'wrong' | 'no_usable_secret' {
    const ha1s: string[] = [];
    if (typeof stored.password === 'string') {
      // The HA1 over exactly what the phone hashed: its username (possibly user@domain) and realm.
      ha1s.push(computeHa1({ algorithm, username: cred.username, realm: cred.realm, password: stored.password, nonce: cred.nonce, cnonce: cred.cnonce }));
    } else if (algorithm.startsWith('MD5')) {
      // Stored HA1 forms are MD5 by definition (Kamailio's ha1 / ha1b columns).
      const stems = usernameHasDomain ? [stored.ha1b, stored.ha1] : [stored.ha1];
      for (const stem of stems) {
        if (typeof stem === 'string' && stem.length === 32 && HEX.test(stem)) ha1s.push(sessionHa1(algorithm, stem.toLowerCase(), cred.nonce, cred.cnonce));
      }
    }
    if (ha1s.length === 0) return 'no_usable_secret';
    const received = Buffer.from(cred.response.toLowerCase(), 'latin1');
    let match = false;
    for (const ha1 of ha1s) {
      const expected = Buffer.from(
        computeResponse({
          algorithm,
          ha1,
          nonce: cred.nonce,
          method: req.method,
          uri: cred.uri,
          ...(qop !== undefined ? { qop, nc: cred.nc!, cnonce: cred.cnonce! } : {}),
          ...(bodyDigest !== undefined ? { bodyDigest } : {}),
        }),
        'latin1',
      );
      // Constant-time comparison; the length of a digest is public (it follows from the algorithm).
      if (expected.length === received.length && timingSafeEqual(expected, received)) match = true;
    }
    return match ? true : 'wrong';
  }

  #withBudget<T>(backend: AuthBackend, what: string, call: (options: LookupOptions) => Promise<T>): Promise<T> {
    const budget = new LookupBudget(performance.now() + this.#timeoutMs);
    return new Promise<T>((resolve, reject) => {
      const deadline = this.#deadlines.add(() => {
        const err = new BackendUnavailableError(backend.name, `${what} timed out after ${this.#timeoutMs} ms`);
        budget.abort(err);
        reject(err);
      });
      const settle = <V>(fn: (v: V) => void) => (v: V): void => {
        this.#deadlines.remove(deadline);
        fn(v);
      };
      let pending: Promise<T>;
      try {
        pending = call(budget);
      } catch (err) {
        // A synchronous throw from a backend is a rejection like any other.
        settle(reject)(err);
        return;
      }
      pending.then(settle(resolve), settle(reject));
    });
  }

  #unavailable(err: unknown, backend: AuthBackend, extra: Omit<FailureFields, 'detail'>): AuthFailure {
    let detail: string;
    if (err instanceof BackendUnavailableError) {
      detail = `${backend.name}: ${err.message}`;
    } else {
      // A backend broke its contract (threw something other than BackendUnavailableError). Still an
      // answer, not a crash; logged loudly because it is a bug.
      this.#log.error({ err, backend: backend.name }, 'authentication backend threw an unexpected error');
      detail = `${backend.name}: unexpected error: ${err instanceof Error ? err.message : String(err)}`;
    }
    return this.#fail(
      'backend_unavailable',
      {
        status: this.#unavailableStatus,
        reason: this.#unavailableStatus === 503 ? 'Service Unavailable' : 'Server Internal Error',
        headers: [['Retry-After', String(this.#retryAfter)]],
      },
      { ...extra, backend: backend.name, detail: detail.slice(0, 300) },
    );
  }

  #malformed(_req: AuthRequest, extra: Omit<FailureFields, 'detail'>, detail: string): AuthFailure {
    return this.#fail('malformed', { status: 400, reason: 'Bad Request (malformed credentials)', headers: [] }, { ...extra, detail });
  }

  #challenged(outcome: Exclude<AuthOutcome, 'ok'>, req: AuthRequest, domain: ResolvedDomain, stale: boolean, extra: FailureFields): AuthFailure {
    return this.#fail(outcome, this.#challengeReply(req.method, domain, stale), extra);
  }

  /**
   * The challenge header of a domain, per algorithm, around its nonce: formatted once with a
   * marker where the nonce goes, so that each challenge is two concatenations, not a formatting.
   */
  #challengeTemplates(domain: ResolvedDomain): ReadonlyArray<{ prefix: string; suffix: string; staleSuffix: string }> {
    let t = this.#templates.get(domain);
    if (t === undefined) {
      const marker = '\u0001nonce\u0001';
      t = domain.algorithms.map((algorithm) => {
        const [prefix, suffix] = formatDigestChallenge({ realm: domain.realm, nonce: marker, algorithm, qop: ['auth'], stale: false }).split(marker) as [string, string];
        const [, staleSuffix] = formatDigestChallenge({ realm: domain.realm, nonce: marker, algorithm, qop: ['auth'], stale: true }).split(marker) as [string, string];
        return { prefix, suffix, staleSuffix };
      });
      this.#templates.set(domain, t);
    }
    return t;
  }

  #challengeReply(method: string, domain: ResolvedDomain, stale: boolean): AuthReply {
    const register = this.#isRegister(method);
    const header = register ? 'WWW-Authenticate' : 'Proxy-Authenticate';
    const nonce = this.#nonces.issue(domain.realm);
    // RFC 8760 s2.4: "The UAS MUST add these header fields to the response in the order that it
    // would prefer to see them used, starting with the most preferred algorithm at the top."
    const templates = this.#challengeTemplates(domain);
    const headers = templates.map((t) => [header, t.prefix + nonce + (stale ? t.staleSuffix : t.suffix)] as const);
    return register
      ? { status: 401, reason: 'Unauthorized', headers }
      : { status: 407, reason: 'Proxy Authentication Required', headers };
  }

  #fail(outcome: Exclude<AuthOutcome, 'ok'>, reply: AuthReply, extra: FailureFields): AuthFailure {
    return { ...extra, outcome, reply };
  }

  #isRegister(method: string): boolean {
    return method.toUpperCase() === 'REGISTER';
  }

  #ageMs(issuedAt: number): number {
    return Math.max(0, this.#clock() - issuedAt);
  }
}

/**
 * A lookup's budget as the backend sees it. The AbortSignal is made on first read: the MySQL backend
 * takes the deadline instead (its executor times statements out itself), and a synchronous backend
 * never waits long enough to be aborted, so most lookups never pay for a signal.
 */
class LookupBudget implements LookupOptions {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  constructor(readonly deadline: number) {}

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * sipledger's default request routing: the route script of the OpenSER/SER configurations users
 * know (sanity, record_route, loose_route, uri==myself, www_authorize + check_to +
 * consume_credentials + save for REGISTER, proxy_authorize + check_from + consume_credentials +
 * lookup("aliases") + lookup("location") + t_relay for calls), as code, with every authentication
 * outcome, binding change and call step recorded as an event.
 *
 * Where the seeds' script relays requests for foreign domains without authentication, sipledger
 * does not: a request for a domain it does not serve is relayed only when the caller authenticated
 * against one of its own domains (no open relay).
 */
import type { Logger } from 'pino';
import type { AuthRequest, AuthResult } from '../auth/outcome.js';
import type { AttributeValue } from '../auth/backend.js';
import {
  type SipledgerEvent,
  type Source as EventSource,
  authFailed,
  authSucceeded,
  callAnswered,
  callAttempted,
  callEnded,
  callFailed,
  callRouted,
} from '../log/events.js';
import { AorLocks } from './aor-lock.js';
import { decideRegister, contactsForResponse, type RegistrarConfig, type BindingView } from '../registrar/registrar.js';
import { HeaderError, type SipRequest, type SipResponse } from '../sip/message.js';
import { createResponse, type ResponseOptions } from '../sip/response.js';
import { aorOf, parseUri, unescapeUser, type SipUri } from '../sip/uri.js';
import { parseNameAddr } from '../sip/name-addr.js';
import type { ProxyCore, ProxyServerTransaction, Target, Destination } from './proxy-core.js';
import type { TransportName } from './resolver.js';
import { userKey } from '../security/ban-values.js';
import type { BanCheck, BanVerdict } from '../security/brute-force-guard.js';

/** What the router needs of a server transaction. */
export interface RouterTransaction extends ProxyServerTransaction {
  readonly toTag: string;
  /** False once the transaction has its final response, or was dropped at the end of its lifetime. */
  awaitingFinal(): boolean;
}

/** What the router needs of the authenticator. */
export interface RouterAuth {
  servesDomain(domain: string): boolean;
  /** The digest realm of a served domain (for per-user bans, which are keyed user@realm). */
  realmOf?(domain: string): string | undefined;
  authenticate(req: AuthRequest): Promise<AuthResult>;
  resolveAlias?(alias: { user: string; domain: string }): Promise<{ user: string; domain: string } | null>;
}

/** What the router needs of the ledger. */
export interface RouterLedger {
  /** `deferrable`: nothing waits on these events, the log may hold them back to share a write. */
  append(events: readonly SipledgerEvent[], opts?: { readonly deferrable?: boolean }): Promise<void>;
  readonly location: { bindings(aor: string, now: number): readonly RouterBinding[] };
}

export interface RouterBinding extends BindingView {
  readonly source: EventSource;
}

export interface RouterOptions {
  readonly auth: RouterAuth;
  readonly ledger: RouterLedger;
  readonly proxy: ProxyCore;
  /** The brute-force guard: banned users are refused before authentication. */
  readonly guard?: { check(q: BanCheck): BanVerdict };
  readonly registrar: RegistrarConfig;
  /** Our listening addresses, to recognise our own Route entries and Request-URIs. */
  readonly localAddresses: () => ReadonlyArray<{ host: string; port: number }>;
  /** Static aliases (alias AOR -> canonical AOR), consulted before the backend's alias table. */
  readonly aliases?: ReadonlyMap<string, string>;
  readonly instance?: string;
  readonly clock?: () => number;
  readonly logger: Logger;
  /** Retry-After seconds for a REGISTER whose binding could not be made durable. */
  readonly retryAfterSeconds?: number;
  /** Server header value; undefined to send none. */
  readonly serverHeader?: string;
  /**
   * Most REGISTERs waiting for one AOR while another of its registrations is decided (default 32);
   * more are answered 503 with Retry-After.
   */
  readonly maxPendingPerAor?: number;
}

export interface RouterStats {
  requests: Record<string, number>;
  responses: Record<string, number>;
  authOutcomes: Record<string, number>;
  registrations: number;
  appendFailures: number;
  /** REGISTERs answered 503 because too many registrations of their AOR were already waiting. */
  aorQueueFull: number;
  /** Authenticated REGISTERs whose transaction ended while they waited for their AOR: not decided. */
  staleRegistrations: number;
}

const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE';
const SUPPORTED = 'path, outbound';
/** Extensions sipledger as a proxy understands in Proxy-Require (s16.3 step 5). */
const PROXY_EXTENSIONS = new Set<string>([]);
/** Records that gate no answer (call steps, authentication outcomes) may wait to share a log write. */
const DEFERRABLE = Object.freeze({ deferrable: true });

export class Router {
  readonly stats: RouterStats = { requests: {}, responses: {}, authOutcomes: {}, registrations: 0, appendFailures: 0, aorQueueFull: 0, staleRegistrations: 0 };
  readonly aorLocks: AorLocks;
  private readonly clock: () => number;

  constructor(private readonly opts: RouterOptions) {
    this.clock = opts.clock ?? Date.now;
    this.aorLocks = new AorLocks(opts.maxPendingPerAor ?? 32);
  }

  /** Entry point from the transaction layer. `tx` is undefined for an ACK that matched no transaction. */
  handle(req: SipRequest, tx: RouterTransaction | undefined): void {
    const method = methodLabel(req.method);
    this.stats.requests[method] = (this.stats.requests[method] ?? 0) + 1;
    const run = tx ? this.route(req, tx) : this.routeStateless(req);
    run.catch((err: unknown) => {
      if (err instanceof HeaderError) {
        if (tx) this.reply(tx, 400, { reason: `Bad Request (${err.message})` });
        return;
      }
      this.opts.logger.error({ err, method: req.method, callId: safeCallId(req) }, 'request handling failed');
      if (tx) this.reply(tx, 500, { headers: [['Retry-After', String(this.opts.retryAfterSeconds ?? 5)]] });
    });
  }

  private reply(tx: RouterTransaction, status: number, options: ResponseOptions = {}): SipResponse {
    const headers = options.headers ? [...options.headers] : [];
    if (this.opts.serverHeader) headers.push(['Server', this.opts.serverHeader]);
    const res = createResponse(tx.request, status, { ...options, headers, toTag: tx.toTag });
    this.countResponse(tx.request.method, status);
    tx.reply(res);
    return res;
  }

  private countResponse(method: string, status: number): void {
    const key = `${methodLabel(method)} ${status}`;
    this.stats.responses[key] = (this.stats.responses[key] ?? 0) + 1;
  }

  /** ACK for a 2xx (no transaction): forwarded end to end along the route set. */
  private async routeStateless(req: SipRequest): Promise<void> {
    if (req.method !== 'ACK') return;
    const routed = this.looseRoute(req);
    if (routed || !this.isMyself(req.requestUri())) await this.opts.proxy.forwardStateless(req);
  }

  private async route(req: SipRequest, tx: RouterTransaction): Promise<void> {
    // --- sanity (Kamailio's sanity module / the seeds' mf_process_maxfwd_header) -------------------
    const mf = req.maxForwards();
    const ruri = req.requestUri();
    if (ruri.scheme !== 'sip' && ruri.scheme !== 'sips') {
      this.reply(tx, 416, { reason: 'Unsupported URI Scheme' });
      return;
    }
    const toMe = ruri.user === undefined && this.isMyself(ruri);
    if (req.method === 'OPTIONS' && toMe && !req.has('route')) {
      // s11.2: OPTIONS addressed to the proxy itself is answered, Max-Forwards 0 included.
      this.reply(tx, 200, { headers: [['Allow', ALLOW], ['Supported', SUPPORTED], ['Accept', 'application/sdp']] });
      return;
    }
    if (mf !== undefined && mf <= 0) {
      this.reply(tx, 483, { reason: 'Too Many Hops' });
      return;
    }
    // s16.3 step 5: "If the request contains a Proxy-Require header field with one or more
    // option-tags this element does not understand, the element MUST return a 420".
    const unsupported = req.getAll('proxy-require').filter((t) => !PROXY_EXTENSIONS.has(t.toLowerCase()));
    if (unsupported.length > 0) {
      this.reply(tx, 420, { headers: [['Unsupported', unsupported.join(', ')]] });
      return;
    }

    // --- loose_route: in-dialog requests follow the route set, never challenged ---------------------
    const inDialog = req.to().params.has('tag');
    if (this.looseRoute(req)) {
      await this.relayInDialog(req, tx);
      return;
    }
    if (inDialog) {
      // An in-dialog request that did not come along our Record-Route: not ours to relay.
      if (req.method !== 'ACK') this.reply(tx, 404, { reason: 'Not Here' });
      return;
    }
    if (req.method === 'ACK' || req.method === 'CANCEL') {
      // CANCELs that match a transaction never get here; an unmatched one has nothing to cancel.
      if (req.method === 'CANCEL') this.reply(tx, 481);
      return;
    }

    if (req.method === 'REGISTER') {
      const toUri = req.to().uri;
      if (this.opts.auth.servesDomain(toUri.host)) {
        await this.register(req, tx);
        return;
      }
    }
    await this.routeOutOfDialog(req, tx);
  }

  // ---- REGISTER -----------------------------------------------------------------------------------

  private async register(req: SipRequest, tx: RouterTransaction): Promise<void> {
    const to = req.to().uri;
    if (this.userBanned(req, tx, { user: userOf(to), domain: to.host })) return;
    const auth = await this.authenticate(req, 'REGISTER', { user: userOf(to), domain: to.host });
    if (!auth) return;
    if (auth.outcome !== 'ok') {
      this.answerAuthFailure(tx, auth);
      this.recordAuthFailure(req, auth);
      return;
    }
    // consume_credentials(): the registrar is the last hop, but the stored request never carries them.
    const aor = aorOf(to);
    const contacts = req.contacts();
    const expiresHeader = req.expires();
    const cseq = req.cseq().seq;
    const source = sourceOf(req);
    const path = req.getAll('path');
    const ua = req.get('user-agent');

    const outcome = await this.aorLocks.run(aor, async () => {
      if (!tx.awaitingFinal()) {
        // Answered or dropped while it waited (its phone has given up on it): deciding it now would
        // change bindings nobody will be told about.
        this.stats.staleRegistrations++;
        void this.appendQuietly([this.authSucceededEvent(req, auth, this.clock())]);
        return;
      }
      const now = this.clock();
      const current = this.opts.ledger.location.bindings(aor, now);
      const decision = decideRegister(
        {
          aor,
          contacts,
          expiresHeader,
          callId: req.callId,
          cseq,
          source,
          now,
          ...(ua !== undefined ? { userAgent: ua } : {}),
          ...(path.length ? { path } : {}),
          ...(this.opts.instance !== undefined ? { instance: this.opts.instance } : {}),
        },
        current,
        this.opts.registrar,
      );
      const success = this.authSucceededEvent(req, auth, now);
      if (decision.kind === 'reject') {
        void this.appendQuietly([success]);
        this.reply(tx, decision.status, { reason: decision.reason, headers: decision.headers });
        return;
      }
      try {
        // DESIGN contract 2: the 200 OK is sent only once the binding is durable.
        await this.opts.ledger.append([success, ...decision.events]);
      } catch (err) {
        this.stats.appendFailures++;
        this.opts.logger.warn({ err: (err as Error).message, aor }, 'binding not durable: REGISTER answered 503');
        this.reply(tx, 503, { reason: 'Service Unavailable (event log unavailable)', headers: [['Retry-After', String(this.opts.retryAfterSeconds ?? 5)]] });
        return;
      }
      this.stats.registrations++;
      const contactsOut = contactsForResponse(decision.bindings, now);
      const headers: Array<[string, string]> = contactsOut.map((c) => ['Contact', c] as [string, string]);
      headers.push(['Date', new Date(now).toUTCString()]);
      if (path.length) headers.push(['Path', path.join(', ')]);
      this.reply(tx, 200, { headers });
    });
    if (outcome === 'full') {
      this.stats.aorQueueFull++;
      void this.appendQuietly([this.authSucceededEvent(req, auth, this.clock())]);
      this.opts.logger.debug({ aor }, 'too many registrations of one AOR waiting: REGISTER answered 503');
      this.reply(tx, 503, {
        reason: 'Service Unavailable (too many registrations of this address pending)',
        headers: [['Retry-After', String(this.opts.retryAfterSeconds ?? 5)]],
      });
    }
  }

  // ---- calls and other out-of-dialog requests -------------------------------------------------------

  private async routeOutOfDialog(req: SipRequest, tx: RouterTransaction): Promise<void> {
    const from = req.from().uri;
    const ruri = req.requestUri();
    const fromServed = from.scheme.startsWith('sip') && this.opts.auth.servesDomain(from.host);
    const ruriServed = this.opts.auth.servesDomain(ruri.host) || (ruri.user !== undefined && this.isMyself(ruri));
    const events: SipledgerEvent[] = [];

    let attributes: Record<string, AttributeValue | AttributeValue[]> | undefined;
    let authUser: string | undefined;
    if (fromServed) {
      // proxy_authorize + check_from + consume_credentials.
      if (this.userBanned(req, tx, { user: userOf(from), domain: from.host })) return;
      const auth = await this.authenticate(req, req.method, { user: userOf(from), domain: from.host });
      if (!auth) return;
      if (auth.outcome !== 'ok') {
        this.answerAuthFailure(tx, auth);
        this.recordAuthFailure(req, auth);
        return;
      }
      events.push(this.authSucceededEvent(req, auth, this.clock()));
      for (const i of [...auth.consumed].sort((a, b) => b - a)) req.removeNth('proxy-authorization', i);
      attributes = auth.attributes;
      authUser = `${auth.user}@${auth.domain}`;
    } else if (!ruriServed) {
      // No open relay: a foreign caller to a foreign destination is refused without a challenge
      // (we have no realm to challenge it with).
      this.reply(tx, 403, { reason: 'Forbidden (relaying denied)' });
      return;
    }

    // Attributes loaded with the credentials can assert the caller's identity downstream.
    const rpid = attributes?.['rpid'];
    if (typeof rpid === 'string' && rpid) req.set('P-Asserted-Identity', rpid.includes('<') ? rpid : `<${rpid}>`);

    // lookup("aliases")
    let target = ruri;
    if (ruriServed && target.user !== undefined) target = await this.resolveAlias(target);

    const isInvite = req.method === 'INVITE';
    const callId = req.callId;
    if (isInvite) {
      events.push(
        callAttempted(
          { callId, from: aorOf(from), to: req.to().uri.raw, requestUri: req.uri, source: sourceOf(req) },
          this.meta(),
        ),
      );
    }

    const targetServed = this.opts.auth.servesDomain(target.host) || (target.user !== undefined && this.isMyself(target));
    let targets: Target[];
    if (!targetServed) {
      // uri != myself: relay to the Request-URI (the caller authenticated above).
      targets = [{ uri: target.raw, q: 1 }];
    } else {
      if (target.user === undefined) {
        this.reply(tx, 404, { reason: 'User Not Found' });
        return;
      }
      const bindings = this.opts.ledger.location.bindings(aorOf(target), this.clock());
      if (bindings.length === 0) {
        this.reply(tx, 404, { reason: 'User Not Found' });
        if (isInvite) events.push(callFailed({ callId, status: 404, reason: 'User Not Found' }, this.meta()));
        void this.appendQuietly(events);
        return;
      }
      targets = bindings.map((b) => bindingTarget(b));
    }

    // The relay contacts these targets at once: the call's routing goes in the same append.
    if (isInvite) events.push(callRouted({ callId, targets: targets.map((t) => t.uri) }, this.meta()));
    void this.appendQuietly(events);
    const caller = { ...(req.source ? { ip: req.source.address } : {}), ...(authUser ? { user: authUser } : {}) };
    this.opts.proxy.relay(tx, req, targets, {
      recordRoute: true,
      caller,
      onFinal: (res) => {
        this.countResponse(req.method, res.status);
        if (!isInvite) return;
        const ev = res.status < 300 ? callAnswered({ callId, status: res.status }, this.meta()) : callFailed({ callId, status: res.status, reason: res.reason }, this.meta());
        void this.appendQuietly([ev]);
      },
    });
  }

  private async relayInDialog(req: SipRequest, tx: RouterTransaction): Promise<void> {
    if (req.method === 'BYE') {
      const by = req.from().params.get('tag') ? 'caller' : undefined;
      void this.appendQuietly([callEnded({ callId: req.callId, ...(by ? { by } : {}) }, this.meta())]);
    }
    // The next hop is the (remaining) route set or the Request-URI; resolution happens in the core.
    this.opts.proxy.relay(tx, req, [{ uri: req.uri, q: 1 }], {
      recordRoute: false,
      onFinal: (res) => this.countResponse(req.method, res.status),
    });
  }

  // ---- loose_route (s16.4) ------------------------------------------------------------------------

  /**
   * Processes our own entries of the route set. Returns true when the request carried a Route that
   * named us (it is following a dialog route set through this proxy).
   */
  private looseRoute(req: SipRequest): boolean {
    let routed = false;
    // s16.4: "If the Request-URI contains a value this proxy previously placed into a Record-Route
    // header field, the proxy MUST replace the Request-URI in the request with the last value from
    // the Route header field, and remove that value" (the previous hop was a strict router).
    const ruri = req.requestUri();
    const routes = ruri.user === undefined && this.isMyself(ruri) ? req.getAll('route') : [];
    // (A Route header may be present yet hold no value, e.g. "Route: ,": nothing to take then.)
    if (routes.length > 0) {
      const last = routes[routes.length - 1]!;
      const na = parseNameAddr(last);
      req.setRequestUri(na.uri.raw);
      req.remove('route');
      for (const r of routes.slice(0, -1)) req.append('Route', r);
      routed = true;
    }
    // "If the first value in the Route header field indicates this proxy, the proxy MUST remove that
    // value from the request." Two entries of ours may follow each other (double Record-Route).
    for (let i = 0; i < 2; i++) {
      const top = req.routes()[0];
      if (!top || !this.isMyself(top.uri) || top.uri.user !== undefined) break;
      req.removeFirstValue('route');
      routed = true;
    }
    return routed;
  }

  private isMyself(uri: SipUri): boolean {
    const host = uri.host.startsWith('[') ? uri.host.slice(1, -1) : uri.host;
    const port = uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060);
    for (const l of this.opts.localAddresses()) {
      if (l.host === host && l.port === port) return true;
      if ((l.host === '0.0.0.0' || l.host === '::') && l.port === port && (host === '127.0.0.1' || host === 'localhost')) return true;
    }
    return uri.port === undefined && uri.user === undefined && this.opts.auth.servesDomain(host);
  }

  // ---- auth helpers -------------------------------------------------------------------------------

  private async authenticate(req: SipRequest, method: string, identity: { user: string; domain: string }): Promise<AuthResult | undefined> {
    const header = method === 'REGISTER' ? 'authorization' : 'proxy-authorization';
    const ua = req.get('user-agent');
    const result = await this.opts.auth.authenticate({
      method: req.method,
      requestUri: req.uri,
      body: req.body,
      credentials: req.getAll(header),
      identity,
      source: sourceOf(req),
      callId: req.callId,
      ...(ua !== undefined ? { userAgent: ua } : {}),
    });
    this.stats.authOutcomes[result.outcome] = (this.stats.authOutcomes[result.outcome] ?? 0) + 1;
    return result;
  }

  /**
   * A user banned by the brute-force guard (or an operator) is refused before its credentials are
   * looked at: 403, or no answer at all when the guard's action is 'drop'.
   */
  private userBanned(req: SipRequest, tx: RouterTransaction, identity: { user: string; domain: string }): boolean {
    if (!this.opts.guard || !identity.user) return false;
    const realm = this.opts.auth.realmOf?.(identity.domain) ?? identity.domain;
    const verdict = this.opts.guard.check({ ip: req.source?.address ?? '', user: userKey(identity.user, realm), now: this.clock() });
    if (!verdict.banned) return false;
    if (verdict.action === 'reject') this.reply(tx, 403, { reason: 'Forbidden (banned)' });
    return true;
  }

  private answerAuthFailure(tx: RouterTransaction, auth: Exclude<AuthResult, { outcome: 'ok' }>): void {
    this.reply(tx, auth.reply.status, { reason: auth.reply.reason, headers: auth.reply.headers.map(([n, v]) => [n, v] as [string, string]) });
  }

  private recordAuthFailure(req: SipRequest, auth: Exclude<AuthResult, { outcome: 'ok' }>): void {
    // DESIGN contract 5: every outcome but no_credentials becomes an event.
    if (auth.outcome === 'no_credentials') return;
    this.opts.logger.info({ outcome: auth.outcome, user: auth.user, realm: auth.realm, ip: req.source?.address, detail: auth.detail }, 'authentication failed');
    const ua = req.get('user-agent');
    void this.appendQuietly([
      authFailed(
        {
          ...(auth.user !== undefined ? { user: auth.user } : {}),
          realm: auth.realm ?? '',
          domain: auth.domain ?? '',
          method: req.method,
          source: sourceOf(req),
          algorithm: auth.algorithm ?? 'MD5',
          callId: req.callId,
          cause: auth.outcome,
          ...(ua !== undefined ? { userAgent: ua } : {}),
        },
        this.meta(),
      ),
    ]);
  }

  private authSucceededEvent(req: SipRequest, auth: Extract<AuthResult, { outcome: 'ok' }>, now: number): SipledgerEvent {
    const ua = req.get('user-agent');
    return authSucceeded(
      {
        user: auth.user,
        realm: auth.realm,
        domain: auth.domain,
        method: req.method,
        source: sourceOf(req),
        algorithm: auth.algorithm,
        callId: req.callId,
        ...(ua !== undefined ? { userAgent: ua } : {}),
      },
      { time: now, ...(this.opts.instance !== undefined ? { instance: this.opts.instance } : {}) },
    );
  }

  private async resolveAlias(uri: SipUri): Promise<SipUri> {
    const aor = aorOf(uri);
    const fixed = this.opts.aliases?.get(aor);
    if (fixed) return parseUri(fixed);
    if (this.opts.auth.resolveAlias && uri.user !== undefined) {
      const hit = await this.opts.auth.resolveAlias({ user: unescapeUser(uri.user), domain: uri.host });
      if (hit) return parseUri(`sip:${hit.user}@${hit.domain}`);
    }
    return uri;
  }

  // ---- plumbing -----------------------------------------------------------------------------------

  private meta(): { time: number; instance?: string } {
    return { time: this.clock(), ...(this.opts.instance !== undefined ? { instance: this.opts.instance } : {}) };
  }

  private async appendQuietly(events: readonly SipledgerEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.opts.ledger.append(events, DEFERRABLE);
    } catch (err) {
      this.stats.appendFailures++;
      this.opts.logger.warn({ err: (err as Error).message, types: events.map((e) => e.type) }, 'events not recorded');
    }
  }
}

/** Methods counted by name; any other token (a method is whatever a peer sends) counts as OTHER. */
const COUNTED_METHODS = new Set(['INVITE', 'ACK', 'BYE', 'CANCEL', 'REGISTER', 'OPTIONS', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE']);

/**
 * The method as a statistics key and metric label: a fixed set, so that random method tokens can
 * grow neither memory nor the metrics' label cardinality.
 */
export function methodLabel(method: string): string {
  return COUNTED_METHODS.has(method) ? method : 'OTHER';
}

function userOf(uri: SipUri): string {
  return uri.user !== undefined ? unescapeUser(uri.user) : '';
}

function sourceOf(req: SipRequest): EventSource {
  const s = req.source;
  return s ? { address: s.address, port: s.port, transport: s.transport } : { address: '0.0.0.0', port: 0, transport: 'udp' };
}

function safeCallId(req: SipRequest): string | undefined {
  try {
    return req.callId;
  } catch {
    return undefined;
  }
}

/** A registered contact as a relay target: its URI, and for stream transports its own flow. */
function bindingTarget(b: RouterBinding): Target {
  const na = parseNameAddr(b.contact);
  const t: { uri: string; q: number; destination?: Destination } = { uri: na.uri.raw, q: b.q };
  if (b.source.transport !== 'udp') {
    // A phone on TCP/TLS is reached over the connection it registered on (RFC 5626 flows; as
    // Kamailio's tcp aliases do): its Contact port is usually not listening.
    t.destination = { address: b.source.address, port: b.source.port, transport: b.source.transport as TransportName };
  }
  return t;
}

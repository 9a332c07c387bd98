/**
 * The stateful proxy engine (RFC 3261 s16): forwards a request to one or more targets through
 * client transactions, forks in parallel (equal q) and in sequence (lower q after higher ones
 * fail), selects the best response (s16.7), propagates CANCEL (s16.10), and forwards ACK for 2xx
 * and stray 2xx retransmissions statelessly.
 *
 * The engine knows nothing of authentication or location: the router decides the targets.
 */
import type { Logger } from 'pino';
import { type SipRequest, type SipResponse } from '../sip/message.js';
import { createResponse, newBranch } from '../sip/response.js';
import { serialize } from '../sip/serializer.js';
import { parseUri, type SipUri } from '../sip/uri.js';
import type { Hop, Resolver, TransportName } from './resolver.js';
import type { DestinationCaller, DestinationFilter } from '../security/destination-filter.js';

export interface Destination extends Hop {
  readonly connectionId?: number;
}

/** What the engine needs of a server transaction. */
export interface ProxyServerTransaction {
  readonly request: SipRequest;
  readonly isInvite: boolean;
  reply(res: SipResponse): void;
  onCancel(cb: (cancel: SipRequest) => void): void;
}

export interface ProxyClientTransaction {
  cancel(): void;
}

export interface ClientDelegate {
  onResponse(res: SipResponse): void;
  onTimeout(): void;
  onTransportError(err: Error): void;
}

export interface ProxyTransactionLayer {
  sendRequest(req: SipRequest, dest: Destination, delegate: ClientDelegate): ProxyClientTransaction;
}

export interface ProxySender {
  send(bytes: Buffer, dest: Destination): Promise<void>;
  sendResponse(res: SipResponse): Promise<void>;
}

/** Our own address on a transport, for Via and Record-Route. */
export type LocalAddressFn = (transport: TransportName) => { host: string; port: number } | undefined;

export interface Target {
  /** The new Request-URI. */
  readonly uri: string;
  readonly q: number;
  /** Send here instead of resolving the URI (a registered phone's flow: its TCP connection, or NAT). */
  readonly destination?: Destination;
}

export interface RelayOptions {
  /** Add our Record-Route (everything but REGISTER, as the seeds' script does). */
  readonly recordRoute: boolean;
  /** Called once with the response sent upstream as final (or the first 2xx). */
  readonly onFinal?: (res: SipResponse) => void;
  /** Called with every response received from a branch, before selection. */
  readonly onBranchResponse?: (res: SipResponse, target: Target) => void;
  /** Who is asking, for the destination filter's allow-lists. */
  readonly caller?: DestinationCaller;
}

/** A relay refused because the next hop is a protected destination (473, seed 002's IP blacklists). */
export class FilteredDestinationError extends Error {
  readonly code = 'SIP_FILTERED_DESTINATION';
  readonly retriable = false;
}

export interface ProxyStats {
  relayed: number;
  branches: number;
  statelessForwards: number;
  strayResponses: number;
}

/** Response classes ranked for s16.7 step 6 (lower is better, 6xx handled first). */
const PREFERRED_4XX = new Set([401, 407, 415, 420, 484]);

export class ProxyCore {
  readonly stats: ProxyStats = { relayed: 0, branches: 0, statelessForwards: 0, strayResponses: 0 };

  constructor(
    private readonly opts: {
      transactions: ProxyTransactionLayer;
      sender: ProxySender;
      resolver: Resolver;
      local: LocalAddressFn;
      logger: Logger;
      /** Protected destinations (gateways, media servers) relayed to only when allowed. */
      destinationFilter?: DestinationFilter;
    },
  ) {}

  /**
   * Relays a request (already loose-routed and authorised by the router) to the targets: groups of
   * equal q in parallel, groups in descending q order in sequence.
   */
  relay(st: ProxyServerTransaction, req: SipRequest, targets: readonly Target[], options: RelayOptions): void {
    this.stats.relayed++;
    const ctx = new ResponseContext(this, st, req, groupByQ(targets), options, this.opts.logger);
    st.onCancel(() => ctx.cancelAll());
    ctx.startNextGroup();
  }

  /** s16.6: prepares and sends one branch; returns the client transaction, or undefined on failure. */
  async forwardBranch(
    req: SipRequest,
    target: Target,
    recordRoute: boolean,
    delegate: ClientDelegate,
    caller?: DestinationCaller,
  ): Promise<ProxyClientTransaction | undefined> {
    // Step 1: "Make a copy of the received request".
    const fwd = req.clone();
    // Step 2: "Update the Request-URI ... with the target".
    fwd.setRequestUri(target.uri);
    // Step 3: Max-Forwards: decrement, or add with 70.
    const mf = fwd.maxForwards();
    fwd.set('Max-Forwards', String(mf === undefined ? 70 : mf - 1));

    // Step 6, strict-router compatibility: a top Route without `lr` becomes the Request-URI.
    const strict = strictRoute(fwd);

    // Step 7: determine the next hop: the top Route, else a target flow, else the Request-URI
    // (which, after strict-route rewriting, names the strict router).
    let hops: Destination[];
    const nextRoute = strict ? undefined : fwd.routes()[0];
    try {
      if (strict) hops = await this.opts.resolver.resolve(fwd.requestUri());
      else if (nextRoute) hops = await this.opts.resolver.resolve(nextRoute.uri);
      else if (target.destination) hops = [target.destination];
      else hops = await this.opts.resolver.resolve(fwd.requestUri());
    } catch (err) {
      this.opts.logger.info({ target: target.uri, err: (err as Error).message }, 'next hop not resolvable');
      return undefined;
    }
    const hop = hops[0];
    if (!hop) return undefined;
    // The filter applies to out-of-dialog relays (the router passes a caller for those); requests
    // inside a dialog that was admitted follow its route set (see docs/security.md).
    if (caller && this.opts.destinationFilter?.check(hop.address, hop.port, caller, hop.transport) === 'deny') {
      throw new FilteredDestinationError(`relay to protected destination ${hop.address}:${hop.port} refused`);
    }

    const local = this.opts.local(hop.transport);
    if (!local) {
      this.opts.logger.warn({ transport: hop.transport }, 'no listening socket for the next hop transport');
      return undefined;
    }
    // Step 4: Record-Route with `lr`; when the request changes transport, one entry per side so
    // that each party reaches us on its own transport.
    if (recordRoute) {
      const inbound = req.source?.transport ?? hop.transport;
      const inLocal = this.opts.local(inbound) ?? local;
      fwd.prepend('Record-Route', rrValue(inLocal, inbound));
      if (inbound !== hop.transport || inLocal.host !== local.host || inLocal.port !== local.port) {
        fwd.prepend('Record-Route', rrValue(local, hop.transport));
      }
    }
    // Step 8: our Via on top, with a new branch (and rport, RFC 3581).
    fwd.prepend('Via', `SIP/2.0/${hop.transport.toUpperCase()} ${hostForVia(local.host)}:${local.port};branch=${newBranch()};rport`);
    this.stats.branches++;
    return this.opts.transactions.sendRequest(fwd, hop, delegate);
  }

  /** ACK for a 2xx (and other requests forwarded without a transaction): s16.11 stateless forward. */
  async forwardStateless(req: SipRequest): Promise<void> {
    const fwd = req.clone();
    const mf = fwd.maxForwards();
    if (mf !== undefined && mf <= 0) return;
    fwd.set('Max-Forwards', String(mf === undefined ? 70 : mf - 1));
    const strict = strictRoute(fwd);
    const nextRoute = strict ? undefined : fwd.routes()[0];
    let hop: Destination | undefined;
    try {
      hop = (await this.opts.resolver.resolve(nextRoute ? nextRoute.uri : fwd.requestUri()))[0];
    } catch {
      hop = undefined;
    }
    if (!hop) {
      this.opts.logger.info({ method: req.method, uri: req.uri }, 'stateless forward: next hop not resolvable, dropped');
      return;
    }
    const local = this.opts.local(hop.transport);
    if (!local) return;
    // A stateless proxy's branch must be the same for retransmissions; derive it from the request's.
    const upstream = req.topVia()?.branch ?? '';
    fwd.prepend('Via', `SIP/2.0/${hop.transport.toUpperCase()} ${hostForVia(local.host)}:${local.port};branch=z9hG4bKsl${hashBranch(upstream + req.callId)};rport`);
    this.stats.statelessForwards++;
    await this.opts.sender.send(serialize(fwd), hop).catch((err: Error) => {
      this.opts.logger.info({ err: err.message }, 'stateless forward failed');
    });
  }

  /** A response that matched no client transaction (a 2xx retransmission): pop our Via, send on. */
  async forwardStrayResponse(res: SipResponse): Promise<void> {
    const vias = res.vias();
    if (vias.length < 2) return;
    const top = vias[0]!;
    const local = this.opts.local(top.transport.toLowerCase() as TransportName);
    if (!local || !top.branch) return;
    const fwd = res.clone();
    fwd.removeFirstValue('Via');
    this.stats.strayResponses++;
    await this.opts.sender.sendResponse(fwd).catch(() => undefined);
  }

  /** Builds a local response (408, 483, ...) to a request as if it came from a branch. */
  static localResponse(req: SipRequest, status: number, reason?: string): SipResponse {
    return createResponse(req, status, reason !== undefined ? { reason } : {});
  }
}

class Branch {
  tx: ProxyClientTransaction | undefined;
  final: SipResponse | undefined;
  gotProvisional = false;
  cancelRequested = false;
  constructor(readonly target: Target) {}
}

/** The response context of s16.7 for one relayed request. */
class ResponseContext {
  private branches: Branch[] = [];
  private finalSent = false;
  private cancelled = false;
  private groupIndex = 0;
  private best: SipResponse | undefined;

  constructor(
    private readonly core: ProxyCore,
    private readonly st: ProxyServerTransaction,
    private readonly req: SipRequest,
    private readonly groups: Target[][],
    private readonly options: RelayOptions,
    private readonly logger: Logger,
  ) {}

  startNextGroup(): void {
    const group = this.groups[this.groupIndex++];
    if (!group || this.cancelled) {
      this.finish();
      return;
    }
    const started = group.map((t) => new Branch(t));
    this.branches.push(...started);
    let pending = started.length;
    for (const b of started) {
      void this.core
        .forwardBranch(this.req, b.target, this.options.recordRoute, {
          onResponse: (res) => this.onResponse(b, res),
          onTimeout: () => this.onFinal(b, ProxyCore.localResponse(this.req, 408)),
          onTransportError: () => this.onFinal(b, ProxyCore.localResponse(this.req, 503, 'Service Unavailable (next hop unreachable)')),
        }, this.options.caller)
        .then((tx) => {
          if (!tx) {
            this.onFinal(b, ProxyCore.localResponse(this.req, 502, 'Bad Gateway (next hop not resolvable)'));
            return;
          }
          b.tx = tx;
          if (b.cancelRequested && !b.final) tx.cancel();
        })
        .catch((err: Error) => {
          if (err instanceof FilteredDestinationError) {
            this.logger.info({ err: err.message }, 'relay refused: filtered destination');
            this.onFinal(b, ProxyCore.localResponse(this.req, 473, 'Filtered Destination'));
            return;
          }
          this.logger.warn({ err: err.message }, 'branch could not be sent');
          this.onFinal(b, ProxyCore.localResponse(this.req, 500));
        })
        .finally(() => {
          pending--;
          void pending;
        });
    }
  }

  cancelAll(): void {
    this.cancelled = true;
    for (const b of this.branches) this.cancelBranch(b);
    // A branch that has not answered yet cannot be sent a CANCEL (s9.1: not before a provisional
    // response); as Kamailio's tm (cancel_b_method 0) does, it is given up at once with a local
    // 487, so the caller is not kept waiting for timer B. Its client transaction still sends the
    // CANCEL if a provisional response arrives later.
    for (const b of this.branches) {
      if (!b.final && !b.gotProvisional) this.onFinal(b, ProxyCore.localResponse(this.req, 487));
    }
  }

  private cancelBranch(b: Branch): void {
    if (b.final) return;
    b.cancelRequested = true;
    b.tx?.cancel();
  }

  private onResponse(b: Branch, res: SipResponse): void {
    // s16.7 step 3: "The proxy removes the topmost Via header field value from the response."
    const up = res.clone();
    up.removeFirstValue('Via');
    this.options.onBranchResponse?.(up, b.target);
    if (res.status < 200) {
      b.gotProvisional = true;
      // s16.7 step 5: 100 is not forwarded; other provisionals are, at once.
      if (res.status > 100 && !this.finalSent) this.st.reply(up);
      return;
    }
    this.onFinal(b, up);
  }

  private onFinal(b: Branch, res: SipResponse): void {
    if (b.final) {
      // A further 2xx on an INVITE branch (forking to several UAs): forward it too (s16.7 step 10).
      if (res.status < 300 && this.req.method === 'INVITE') this.st.reply(res);
      return;
    }
    b.final = res;
    if (res.status >= 200 && res.status < 300) {
      // s16.7 step 5/10: 2xx responses are forwarded immediately; other branches are cancelled.
      this.st.reply(res);
      if (!this.finalSent) {
        this.finalSent = true;
        this.options.onFinal?.(res);
      }
      for (const other of this.branches) if (other !== b) this.cancelBranch(other);
      return;
    }
    if (res.status >= 600) {
      // s16.7 step 5: on a 6xx, cancel all other client transactions.
      this.best = res;
      for (const other of this.branches) if (other !== b) this.cancelBranch(other);
    }
    if (this.branches.every((x) => x.final)) {
      if (this.finalSent) return;
      const has6xx = this.branches.some((x) => x.final!.status >= 600);
      if (!has6xx && !this.cancelled && this.groupIndex < this.groups.length) {
        this.startNextGroup();
        return;
      }
      this.finish();
    }
  }

  private finish(): void {
    if (this.finalSent) return;
    this.finalSent = true;
    const finals = this.branches.map((b) => b.final).filter((r): r is SipResponse => r !== undefined);
    let chosen = this.best ?? chooseBest(finals);
    if (!chosen) chosen = ProxyCore.localResponse(this.req, this.cancelled ? 487 : 480);
    if (chosen.status === 503) {
      // s16.7 step 6: "If the proxy chooses a 503 response, it MUST NOT forward it upstream;
      // it generates a 500 instead" — the 503 speaks of the next hop, not of us.
      chosen = ProxyCore.localResponse(this.req, 500, 'Server Internal Error (next hop unavailable)');
    }
    if (chosen.status === 401 || chosen.status === 407) chosen = aggregateChallenges(chosen, finals);
    this.st.reply(chosen);
    this.options.onFinal?.(chosen);
  }
}

/**
 * s16.7 step 6: a 6xx if there is one, else from the lowest class; within the class, responses that
 * let the caller resubmit (401, 407, 415, 420, 484) first, then the lowest code, a local 408 last
 * (as Kamailio's tm picks its branch).
 */
function chooseBest(finals: SipResponse[]): SipResponse | undefined {
  if (finals.length === 0) return undefined;
  const six = finals.find((r) => r.status >= 600);
  if (six) return six;
  let lowestClass = 7;
  for (const r of finals) lowestClass = Math.min(lowestClass, Math.floor(r.status / 100));
  const rank = (r: SipResponse): number => (PREFERRED_4XX.has(r.status) ? 0 : r.status === 408 ? 2000 : r.status);
  return finals.filter((r) => Math.floor(r.status / 100) === lowestClass).sort((a, b) => rank(a) - rank(b))[0];
}

/**
 * s16.6 step 6: "If the Route header field value of the request contains a URI without the lr
 * parameter [a strict router], the proxy MUST place the Request-URI into the Route header field as
 * the last value ... then place the first Route header field value into the Request-URI and remove
 * that value from the Route header field." Returns true when it did.
 */
function strictRoute(fwd: SipRequest): boolean {
  const top = fwd.routes()[0];
  if (!top || top.uri.params.has('lr')) return false;
  fwd.append('Route', `<${fwd.uri}>`);
  fwd.removeFirstValue('Route');
  fwd.setRequestUri(top.uri.raw);
  return true;
}

/** s16.7 step 7: a 401/407 upstream carries every challenge collected from the branches. */
function aggregateChallenges(chosen: SipResponse, finals: SipResponse[]): SipResponse {
  const out = chosen.clone();
  for (const r of finals) {
    if (r === chosen || (r.status !== 401 && r.status !== 407)) continue;
    for (const v of r.getAll('www-authenticate')) out.append('WWW-Authenticate', v);
    for (const v of r.getAll('proxy-authenticate')) out.append('Proxy-Authenticate', v);
  }
  return out;
}

function groupByQ(targets: readonly Target[]): Target[][] {
  const sorted = [...targets].sort((a, b) => b.q - a.q);
  const groups: Target[][] = [];
  for (const t of sorted) {
    const last = groups[groups.length - 1];
    if (last && last[0]!.q === t.q) last.push(t);
    else groups.push([t]);
  }
  return groups;
}

function rrValue(local: { host: string; port: number }, transport: TransportName): string {
  const tp = transport === 'udp' ? '' : `;transport=${transport}`;
  return `<sip:${hostForVia(local.host)}:${local.port}${tp};lr>`;
}

function hostForVia(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function hashBranch(s: string): string {
  // FNV-1a, enough to make a stable branch for the stateless ACK forward.
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16);
}

/** True when a URI names this proxy (one of our listening addresses, or a served domain). */
export function isLocalUri(uri: SipUri, locals: ReadonlyArray<{ host: string; port: number }>, domains: ReadonlySet<string>): boolean {
  if (uri.user === undefined && domains.has(uri.host)) return true;
  const host = uri.host.startsWith('[') ? uri.host.slice(1, -1) : uri.host;
  const port = uri.port ?? (uri.scheme === 'sips' ? 5061 : 5060);
  return locals.some((l) => l.host === host && l.port === port);
}

export function parseTargetUri(uri: string): SipUri {
  return parseUri(uri);
}

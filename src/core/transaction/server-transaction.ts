import { type ResponseOptions, type SipRequest, type SipResponse, createResponse } from '../sip/index.js';
import type { TransactionContext } from './context.js';
import { newTag } from '../sip/response.js';
import { TimerSet } from './timers.js';

/**
 * Server transaction states (RFC 3261 s17.2, with the RFC 6026 "Accepted" state for INVITE:
 * a 2xx leaves the transaction alive for 64*T1 so that INVITE retransmissions are absorbed instead
 * of reaching the proxy core as new requests).
 */
export type ServerTransactionState = 'Trying' | 'Proceeding' | 'Completed' | 'Confirmed' | 'Accepted' | 'Terminated';

export interface ServerTransaction {
  readonly request: SipRequest;
  readonly id: string;
  readonly state: ServerTransactionState;
  readonly isInvite: boolean;
  /** Stable To tag for responses this transaction generates locally (s8.2.6.2, s9.2). */
  readonly toTag: string;
  /** The last response sent, if any. */
  readonly lastResponse: SipResponse | undefined;
  /** True once a CANCEL matched this (INVITE) transaction. */
  readonly cancelled: boolean;
  /** Sends a response and remembers it for retransmissions of the request. */
  reply(res: SipResponse): void;
  /** createResponse(request, status, { toTag, ...opts }) and reply(); returns the response sent. */
  replyStatus(status: number, opts?: ResponseOptions): SipResponse;
  /**
   * Called when a CANCEL matches this INVITE transaction while no final response was sent. The
   * layer has already answered the CANCEL with 200 (s9.2); the caller cancels its branches and
   * answers 487 to the INVITE. A CANCEL that arrived before the callback was registered is
   * delivered at registration.
   */
  onCancel(cb: (cancel: SipRequest) => void): void;
}

/** Base of the two server transaction kinds; the layer drives it through the methods below. */
export abstract class ServerTransactionBase implements ServerTransaction {
  readonly kind = 'server' as const;
  private tag: string | undefined;
  abstract readonly isInvite: boolean;
  #state: ServerTransactionState;
  /**
   * Set when the layer took over the Completed state (a non-INVITE over UDP), the Accepted state
   * (an INVITE answered 2xx) or the Confirmed state (an INVITE's non-2xx acknowledged, over UDP):
   * from then on the layer's compact record alone meets retransmissions, and the state reads
   * Terminated once that record's generation has expired.
   */
  protected handedOverAt = -1;
  lastResponse: SipResponse | undefined;
  cancelled = false;
  protected readonly timers: TimerSet;
  protected readonly reliable: boolean;
  private cancelCb: ((cancel: SipRequest) => void) | undefined;
  private pendingCancel: SipRequest | undefined;

  constructor(
    protected readonly ctx: TransactionContext,
    readonly request: SipRequest,
    readonly id: string,
    initial: ServerTransactionState,
  ) {
    this.#state = initial;
    this.timers = new TimerSet(ctx.timers);
    this.reliable = request.source !== undefined && request.source.transport !== 'udp';
  }

  get state(): ServerTransactionState {
    // Handed over in Completed (non-INVITE), Accepted or Confirmed (INVITE); terminate() alone moves
    // the state on from there.
    if (this.handedOverAt >= 0 && this.ctx.completedExpired(this.handedOverAt, this.#state === 'Confirmed' ? 'T4' : 'J')) return 'Terminated';
    return this.#state;
  }

  set state(s: ServerTransactionState) {
    this.#state = s;
  }

  /** Made on first use: relayed responses carry the downstream tag and never need ours. */
  get toTag(): string {
    return (this.tag ??= newTag());
  }

  abstract reply(res: SipResponse): void;

  /** A retransmission of the request that created the transaction. */
  abstract retransmission(): void;

  replyStatus(status: number, opts: ResponseOptions = {}): SipResponse {
    const res = createResponse(this.request, status, { toTag: this.toTag, ...opts });
    this.reply(res);
    return res;
  }

  onCancel(cb: (cancel: SipRequest) => void): void {
    this.cancelCb = cb;
    const pending = this.pendingCancel;
    if (pending && this.awaitingFinal()) {
      this.pendingCancel = undefined;
      cb(pending);
    }
  }

  /** The layer matched a CANCEL to this transaction (and answered it 200 already). */
  cancel(req: SipRequest): void {
    this.cancelled = true;
    if (!this.awaitingFinal()) return;
    if (this.cancelCb) this.cancelCb(req);
    else this.pendingCancel = req;
  }

  awaitingFinal(): boolean {
    return this.state === 'Trying' || this.state === 'Proceeding';
  }

  /** Ends the transaction: clears its timers and removes it from the layer (exactly once). */
  terminate(): void {
    if (this.state === 'Terminated') return;
    this.#state = 'Terminated';
    this.timers.clear();
    this.cancelCb = undefined;
    this.pendingCancel = undefined;
    this.ctx.terminated(this);
  }

  protected send(res: SipResponse): void {
    this.ctx.transport.sendResponse(res, this.request.source).catch((err: unknown) => {
      // RFC 3261 s17.2.4: a transport failure is reported to the TU; with nobody left to answer,
      // the transaction ends.
      this.ctx.logger.warn({ err, tx: this.id, status: res.status }, 'sending a response failed');
      this.terminate();
    });
  }

  protected rejectLate(res: SipResponse): void {
    this.ctx.logger.debug({ tx: this.id, state: this.state, status: res.status }, 'response after the final one ignored');
  }

  /**
   * Guards against an application that never answers: the transaction cannot live for ever.
   * Restarted by every provisional response.
   */
  protected armLifetime(ms: number): void {
    this.timers.start('lifetime', ms, () => {
      if (!this.awaitingFinal()) return;
      this.ctx.logger.warn({ tx: this.id, method: this.request.method }, 'no final response within the transaction lifetime; transaction dropped');
      this.terminate();
    });
  }
}

/** RFC 3261 s17.2.2, Figure 8. */
export class NonInviteServerTransaction extends ServerTransactionBase {
  readonly isInvite = false;

  constructor(ctx: TransactionContext, request: SipRequest, id: string) {
    super(ctx, request, id, 'Trying');
    // The client gives up after timer F (64*T1); a response later than that reaches nobody.
    this.armLifetime(64 * ctx.config.t1 + ctx.config.t4);
  }

  reply(res: SipResponse): void {
    switch (this.state) {
      case 'Trying':
      case 'Proceeding':
        this.lastResponse = res;
        if (res.status < 200) {
          this.send(res);
          // "While in the Trying state, if the TU passes a provisional response to the server
          // transaction, the server transaction MUST enter the Proceeding state."
          this.state = 'Proceeding';
          return;
        }
        // "If the TU passes a final response (status codes 200-699) to the server while in the
        // "Proceeding" state, the transaction MUST enter the "Completed" state" ... "When the
        // server transaction enters the "Completed" state, it MUST set Timer J to fire in 64*T1
        // seconds for unreliable transports, and zero seconds for reliable transports."
        this.state = 'Completed';
        this.timers.stop('lifetime');
        if (this.reliable) {
          this.send(res);
          this.terminate();
          return;
        }
        // Timer J: the layer keeps only the response's wire bytes and where they go for the 32 s,
        // not this transaction and its parsed messages (ADR 0006).
        this.timers.clear();
        this.handedOverAt = this.ctx.handOverCompleted(this, res);
        return;
      default:
        // "Any other final responses passed by the TU to the server transaction MUST be discarded
        // while in the "Completed" state."
        this.rejectLate(res);
    }
  }

  retransmission(): void {
    this.ctx.stats.retransmissionsAbsorbed++;
    switch (this.state) {
      case 'Trying':
        // "If a retransmission of the request is received while in the "Trying" state, the
        // request MUST be discarded" (the application is still working on the first copy).
        return;
      case 'Proceeding':
      case 'Completed':
        // "If a retransmission of the request is received while in the "Proceeding" [or
        // "Completed"] state, the most recently sent provisional [final] response MUST be passed
        // to the transport layer for retransmission."
        if (this.lastResponse) this.send(this.lastResponse);
        return;
      default:
        return;
    }
  }
}

/** RFC 3261 s17.2.1, Figure 7, with the RFC 6026 s7.1 "Accepted" state. */
export class InviteServerTransaction extends ServerTransactionBase {
  readonly isInvite = true;
  private gInterval: number;

  constructor(ctx: TransactionContext, request: SipRequest, id: string) {
    super(ctx, request, id, 'Proceeding');
    this.gInterval = ctx.config.t1;
    // "the server transaction MUST generate a 100 (Trying) response unless it knows that the TU
    // will generate a provisional or final response within 200 ms": we wait that long, so a fast
    // answer (a 407 challenge, a 404) costs one packet instead of two.
    if (ctx.tryingDelayMs <= 0) this.sendTrying();
    else this.timers.start('trying', ctx.tryingDelayMs, () => this.sendTrying());
    this.armLifetime(ctx.inviteLifetimeMs);
  }

  private sendTrying(): void {
    if (this.state !== 'Proceeding' || this.lastResponse) return;
    const trying = createResponse(this.request, 100);
    this.lastResponse = trying;
    this.send(trying);
  }

  reply(res: SipResponse): void {
    this.timers.stop('trying');
    switch (this.state) {
      case 'Proceeding':
        this.lastResponse = res;
        this.send(res);
        if (res.status < 200) {
          this.armLifetime(this.ctx.inviteLifetimeMs);
          return;
        }
        this.timers.stop('lifetime');
        if (res.status < 300) {
          // RFC 6026 s7.1: "If, while in the "Proceeding" state, the TU passes a 2xx response
          // to the server transaction, the server transaction MUST pass this response to the
          // transport layer for transmission ... The server transaction MUST then transition to
          // the "Accepted" state" ... Timer L = 64*T1.
          this.state = 'Accepted';
          // Timer L: the layer keeps a compact record that absorbs copies of the INVITE, not this
          // transaction, its messages and whatever its user holds through it (ADR 0006).
          this.timers.clear();
          this.handedOverAt = this.ctx.handOverAccepted(this, res.to().params.get('tag') ?? this.toTag);
          if (this.handedOverAt < 0) this.timers.start('L', 64 * this.ctx.config.t1, () => this.terminate());
          return;
        }
        // "the response MUST be passed to the transport layer for transmission, and the state
        // machine MUST enter the "Completed" state. For unreliable transports, timer G is set to
        // fire in T1 seconds ... When the "Completed" state is entered, timer H MUST be set to
        // fire in 64*T1 seconds for all transports."
        this.state = 'Completed';
        if (!this.reliable) this.startG();
        this.timers.start('H', 64 * this.ctx.config.t1, () => {
          // "If timer H fires while in the "Completed" state, it implies that the ACK was never
          // received. In this case, the server transaction MUST transition to the "Terminated"
          // state, and MUST indicate to the TU that a transaction failure has occurred."
          this.ctx.stats.ackTimeouts++;
          this.ctx.logger.info({ tx: this.id, status: this.lastResponse?.status }, 'no ACK for a final response (timer H)');
          this.terminate();
        });
        return;
      case 'Accepted':
        // RFC 6026 s7.1: "Any 2xx responses passed from the TU to the server transaction while
        // in the "Accepted" state MUST be passed to the transport layer for transmission."
        if (res.status >= 200 && res.status < 300) {
          this.lastResponse = res;
          this.send(res);
        } else this.rejectLate(res);
        return;
      default:
        this.rejectLate(res);
    }
  }

  private startG(): void {
    this.timers.start('G', this.gInterval, () => {
      if (this.state !== 'Completed' || !this.lastResponse) return;
      // "If timer G fires, the response is passed to the transport layer once more for
      // retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds. From then on, when
      // timer G fires, the response is passed to the transport again for transmission, and timer
      // G is reset with a value that doubles, unless that value exceeds T2, in which case it is
      // reset with the value of T2."
      this.ctx.stats.retransmissionsSent++;
      this.send(this.lastResponse);
      this.gInterval = Math.min(2 * this.gInterval, this.ctx.config.t2);
      this.startG();
    });
  }

  retransmission(): void {
    this.ctx.stats.retransmissionsAbsorbed++;
    switch (this.state) {
      case 'Proceeding':
        // "If a request retransmission is received while in the "Proceeding" state, the most
        // recent provisional response that was received from the TU MUST be passed to the
        // transport layer for retransmission." Before the application answered, that is our 100.
        this.timers.stop('trying');
        if (this.lastResponse) this.send(this.lastResponse);
        else this.sendTrying();
        return;
      case 'Completed':
        // "while in the "Completed" state, if a request retransmission is received, the server
        // SHOULD pass the response to the transport for retransmission."
        if (this.lastResponse) this.send(this.lastResponse);
        return;
      default:
        // Confirmed: "any ACKs that are received are absorbed"; Accepted (RFC 6026): a
        // retransmitted INVITE is absorbed without passing it to the TU.
        return;
    }
  }

  /** An ACK matched this transaction. Returns true when it is for the TU (a 2xx ACK). */
  ack(): boolean {
    switch (this.state) {
      case 'Completed':
        // "If an ACK is received while the server transaction is in the "Completed" state, the
        // server transaction MUST transition to the "Confirmed" state. As Timer G is ignored in
        // this state, any retransmissions of the response will cease." ... "Timer I is set to
        // fire in T4 seconds for unreliable transports, and zero seconds for reliable transports."
        this.ctx.stats.acksAbsorbed++;
        this.state = 'Confirmed';
        this.timers.stop('G');
        this.timers.stop('H');
        if (this.reliable) {
          this.terminate();
          return false;
        }
        // Timer I: the layer keeps a compact record that absorbs copies, not this transaction.
        this.timers.clear();
        this.handedOverAt = this.ctx.handOverConfirmed(this, this.lastResponse?.to().params.get('tag') ?? this.toTag);
        if (this.handedOverAt < 0) this.timers.start('I', this.ctx.config.t4, () => this.terminate());
        return false;
      case 'Accepted':
        // RFC 6026 s7.1: "an ACK received in the "Accepted" state ... MUST be passed to the TU".
        return true;
      default:
        this.ctx.stats.acksAbsorbed++;
        return false;
    }
  }
}

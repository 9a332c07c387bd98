import { type HeaderField, SipRequest, type SipResponse, serialize } from '../sip/index.js';
import type { Destination } from '../transport/index.js';
import type { RecordTimer, TransactionContext } from './context.js';
import { TimerSet } from './timers.js';

/** Client transaction states (RFC 3261 s17.1, with the RFC 6026 "Accepted" state for INVITE). */
export type ClientTransactionState = 'Calling' | 'Trying' | 'Proceeding' | 'Completed' | 'Accepted' | 'Terminated';

/** Upward calls from a client transaction to its user (the proxy core). */
export interface ClientDelegate {
  /**
   * A response for the user: every provisional, the final one once, and for INVITE every 2xx
   * (RFC 6026: 2xx retransmissions are forwarded upstream by a proxy). Retransmitted non-2xx
   * finals are absorbed here.
   */
  onResponse(res: SipResponse): void;
  /** Timer B or F fired (the caller answers 408 upstream), or a CANCEL went unanswered. */
  onTimeout(): void;
  /** The request could not be sent (RFC 3261 s17.1.4: treat as 503). */
  onTransportError(err: Error): void;
}

export interface ClientTransaction {
  readonly id: string;
  readonly request: SipRequest;
  readonly state: ClientTransactionState;
  readonly destination: Destination;
  /**
   * Cancels an INVITE (RFC 3261 s9.1): the CANCEL is sent only after a provisional response was
   * received ("If no provisional response has been received, the CANCEL request MUST NOT be
   * sent; rather, the client MUST wait for the arrival of a provisional response before sending
   * the request"); before that it is remembered. Once a final response arrived this does nothing.
   */
  cancel(): void;
}

/** Starts a client transaction for a locally built request (the INVITE's CANCEL). */
export type StartClient = (req: SipRequest, dest: Destination, delegate: ClientDelegate) => ClientTransaction;

export abstract class ClientTransactionBase implements ClientTransaction {
  readonly kind = 'client' as const;
  #state: ClientTransactionState;
  /**
   * Set when the layer took over the Accepted state (an INVITE answered 2xx) or the Completed state
   * (over UDP): from then on the layer's compact record meets further responses, and the state
   * reads Terminated once that record's generation has expired.
   */
  protected handedOverAt = -1;
  /** The timer that ends this kind's Completed state: K (T4) for a non-INVITE, D for an INVITE. */
  protected abstract readonly completedTimer: RecordTimer;
  protected readonly timers: TimerSet;
  protected readonly reliable: boolean;
  protected readonly bytes: Buffer;
  private failed = false;

  constructor(
    protected readonly ctx: TransactionContext,
    readonly request: SipRequest,
    readonly destination: Destination,
    readonly id: string,
    protected readonly delegate: ClientDelegate,
    initial: ClientTransactionState,
  ) {
    this.#state = initial;
    this.timers = new TimerSet(ctx.timers);
    this.reliable = destination.transport !== 'udp';
    this.bytes = serialize(request);
  }

  get state(): ClientTransactionState {
    // Handed over in Accepted (INVITE, timer M) or Completed (INVITE, timer D; non-INVITE, timer K).
    if (this.handedOverAt >= 0 && this.ctx.completedExpired(this.handedOverAt, this.#state === 'Accepted' ? 'J' : this.completedTimer)) {
      return 'Terminated';
    }
    return this.#state;
  }

  set state(s: ClientTransactionState) {
    this.#state = s;
  }

  abstract start(): void;
  abstract receive(res: SipResponse): void;
  abstract cancel(): void;

  terminate(): void {
    if (this.state === 'Terminated') return;
    this.state = 'Terminated';
    this.timers.clear();
    this.ctx.terminated(this);
  }

  protected transmit(bytes: Buffer = this.bytes): void {
    this.ctx.transport.send(bytes, this.destination).catch((err: unknown) => this.transportError(err));
  }

  private transportError(err: unknown): void {
    if (this.failed || this.state === 'Terminated' || this.state === 'Completed' || this.state === 'Accepted') return;
    this.failed = true;
    // RFC 3261 s17.1.4: "the client transaction SHOULD inform the TU that a transport failure has
    // occurred, and the client transaction SHOULD transition directly to the "Terminated" state."
    this.terminate();
    this.safe(() => this.delegate.onTransportError(err instanceof Error ? err : new Error(String(err))));
  }

  protected timeout(): void {
    this.ctx.stats.timeouts++;
    this.terminate();
    this.safe(() => this.delegate.onTimeout());
  }

  protected pass(res: SipResponse): void {
    this.safe(() => this.delegate.onResponse(res));
  }

  /** A delegate that throws must not break the transaction machinery. */
  protected safe(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.ctx.logger.error({ err, tx: this.id }, 'client transaction delegate threw');
    }
  }
}

/** RFC 3261 s17.1.2, Figure 6. */
export class NonInviteClientTransaction extends ClientTransactionBase {
  protected readonly completedTimer = 'T4';
  private eInterval: number;

  constructor(ctx: TransactionContext, request: SipRequest, destination: Destination, id: string, delegate: ClientDelegate) {
    super(ctx, request, destination, id, delegate, 'Trying');
    this.eInterval = ctx.config.t1;
  }

  start(): void {
    // "The "Trying" state is entered when the TU initiates a new client transaction with a
    // request. When entering this state, the client transaction SHOULD set timer F to fire in
    // 64*T1 seconds. The request MUST be passed to the transport layer for transmission. If an
    // unreliable transport is in use, the client transaction MUST set timer E to fire in T1."
    this.timers.start('F', 64 * this.ctx.config.t1, () => this.timeout());
    this.transmit();
    if (!this.reliable) this.startE();
  }

  private startE(): void {
    this.timers.start('E', this.eInterval, () => {
      if (this.state !== 'Trying' && this.state !== 'Proceeding') return;
      // "If timer E fires while still in this state, the timer is reset, but this time with a
      // value of MIN(2*T1, T2)" ... "If Timer E fires while in the "Proceeding" state, the request
      // MUST be passed to the transport layer for retransmission, and Timer E MUST be reset with
      // a value of T2 seconds."
      this.ctx.stats.retransmissionsSent++;
      this.transmit();
      this.eInterval = this.state === 'Proceeding' ? this.ctx.config.t2 : Math.min(2 * this.eInterval, this.ctx.config.t2);
      this.startE();
    });
  }

  receive(res: SipResponse): void {
    switch (this.state) {
      case 'Trying':
      case 'Proceeding':
        if (res.status < 200) {
          this.state = 'Proceeding';
          this.pass(res);
          return;
        }
        // "If a final response (status codes 200-699) is received while in the "Trying" [or
        // "Proceeding"] state, the response MUST be passed to the TU, and the client transaction
        // MUST transition to the "Completed" state" ... "it MUST set Timer K to fire in T4
        // seconds for unreliable transports, and zero seconds for reliable transports."
        this.state = 'Completed';
        this.timers.stop('E');
        this.timers.stop('F');
        this.pass(res);
        if (this.reliable) this.terminate();
        else if (this.state === 'Completed') {
          // Timer K: the layer keeps a compact record that absorbs retransmissions, not this
          // transaction, its request and its delegate (ADR 0006).
          this.timers.clear();
          this.handedOverAt = this.ctx.handOverCompletedClient(this);
        }
        return;
      default:
        // Completed: "any retransmissions of the final response that are received ... absorbed".
        this.ctx.stats.responsesAbsorbed++;
    }
  }

  cancel(): void {
    // RFC 3261 s9.1: "a CANCEL ... SHOULD NOT be sent to cancel a request other than INVITE."
  }
}

/** RFC 3261 s17.1.1, Figure 5, with the RFC 6026 s7.2 "Accepted" state. */
export class InviteClientTransaction extends ClientTransactionBase {
  protected readonly completedTimer = 'D';
  private aInterval: number;
  private cancelWanted = false;
  private cancelSent = false;

  constructor(
    ctx: TransactionContext,
    request: SipRequest,
    destination: Destination,
    id: string,
    delegate: ClientDelegate,
    private readonly startClient: StartClient,
  ) {
    super(ctx, request, destination, id, delegate, 'Calling');
    this.aInterval = ctx.config.t1;
  }

  start(): void {
    // "The initial state, "calling", MUST be entered when the TU initiates a new client
    // transaction with an INVITE request. The client transaction MUST pass the request to the
    // transport layer for transmission. If an unreliable transport is being used, the client
    // transaction MUST start timer A with a value of T1 ... For any transport, the client
    // transaction MUST start timer B with a value of 64*T1 seconds."
    this.transmit();
    if (!this.reliable) this.startA();
    this.timers.start('B', 64 * this.ctx.config.t1, () => {
      if (this.state === 'Calling') this.timeout();
    });
  }

  private startA(): void {
    this.timers.start('A', this.aInterval, () => {
      if (this.state !== 'Calling') return;
      // "When timer A fires, the client transaction MUST retransmit the request by passing it to
      // the transport layer, and MUST reset the timer with a value of 2*T1."
      this.ctx.stats.retransmissionsSent++;
      this.transmit();
      this.aInterval *= 2;
      this.startA();
    });
  }

  receive(res: SipResponse): void {
    switch (this.state) {
      case 'Calling':
      case 'Proceeding':
        if (res.status < 200) {
          // "If the client transaction receives a provisional response while in the "Calling"
          // state, it transitions to the "Proceeding" state. In the "Proceeding" state, the client
          // transaction SHOULD NOT retransmit the request any longer."
          this.state = 'Proceeding';
          this.timers.stop('A');
          this.timers.stop('B');
          this.pass(res);
          if (this.cancelWanted && !this.cancelSent) this.sendCancel();
          else if (!this.cancelSent) this.armLifetime();
          return;
        }
        this.timers.stop('A');
        this.timers.stop('B');
        this.timers.stop('lifetime');
        this.timers.stop('cancel');
        if (res.status < 300) {
          // RFC 6026 s7.2: "If a 2xx response is received while the client INVITE state machine
          // is in the "Calling" or "Proceeding" states, it MUST transition to the "Accepted"
          // state, pass the 2xx response to the TU, and set Timer M to 64*T1."
          this.state = 'Accepted';
          this.pass(res);
          // Timer M: the layer keeps a compact record that passes further 2xx on as strays, not
          // this transaction, its request and its delegate (ADR 0006).
          this.timers.clear();
          if (this.state === 'Accepted') this.handedOverAt = this.ctx.handOverAcceptedClient(this);
          return;
        }
        // "When in either the "Calling" or "Proceeding" states, reception of a response with
        // status code from 300-699 MUST cause the client transaction to transition to
        // "Completed". The client transaction MUST pass the received response up to the TU, and
        // the client transaction MUST generate an ACK request" ... "Timer D [is set] to fire in
        // at least 32 seconds for unreliable transports, and zero seconds for reliable".
        this.state = 'Completed';
        this.completeWith(res);
        return;
      case 'Accepted':
        // Not reached through the layer once the state is handed over (see the layer's record).
        if (res.status >= 200 && res.status < 300) this.pass(res);
        else this.ctx.stats.responsesAbsorbed++;
        return;
      case 'Completed':
        // "Any retransmissions of the final response that are received while in the "Completed"
        // state MUST cause the ACK to be re-passed to the transport layer for retransmission, but
        // the newly generated ACK MUST NOT be passed up to the TU."
        this.ctx.stats.responsesAbsorbed++;
        if (res.status >= 300) this.transmit(serialize(this.buildAck(res)));
        return;
      default:
        this.ctx.stats.responsesAbsorbed++;
    }
  }

  /** Completed by a non-2xx final response: acknowledge it, pass it up, wait out timer D. */
  private completeWith(res: SipResponse): void {
    const ack = serialize(this.buildAck(res));
    this.transmit(ack);
    this.pass(res);
    if (this.reliable) this.terminate();
    else if (this.state === 'Completed') {
      // Timer D: the layer keeps the ACK's bytes to repeat them, not this transaction, its request
      // and its delegate (ADR 0006).
      this.timers.clear();
      this.handedOverAt = this.ctx.handOverCompletedInvite(this, ack);
    }
  }

  /**
   * A proxy relies on timer C (s16.6 step 11) to end a ringing branch; this backstop ends the
   * transaction if nobody does, so memory stays bounded. Restarted by every provisional response.
   */
  private armLifetime(): void {
    this.timers.start('lifetime', this.ctx.inviteLifetimeMs, () => {
      if (this.state === 'Proceeding') {
        this.ctx.logger.warn({ tx: this.id }, 'INVITE client transaction got no final response within its lifetime');
        this.timeout();
      }
    });
  }

  cancel(): void {
    if (this.cancelWanted) return;
    this.cancelWanted = true;
    if (this.state === 'Proceeding') this.sendCancel();
    // Calling: sent on the first provisional response; timer B still ends the transaction.
  }

  private sendCancel(): void {
    this.cancelSent = true;
    const cancel = this.buildCancel();
    this.startClient(cancel, this.destination, {
      onResponse: () => undefined,
      onTimeout: () => this.ctx.logger.info({ tx: this.id }, 'CANCEL got no response'),
      onTransportError: (err) => this.ctx.logger.info({ err, tx: this.id }, 'CANCEL could not be sent'),
    });
    // s9.1: "If no final response is received ... within 64*T1 seconds after the CANCEL was sent
    // the client SHOULD consider the original transaction cancelled and SHOULD destroy the client
    // transaction handling the original request."
    this.timers.stop('lifetime');
    this.timers.start('cancel', 64 * this.ctx.config.t1, () => {
      if (this.state === 'Proceeding') this.timeout();
    });
  }

  /**
   * RFC 3261 s17.1.1.3: "The ACK request constructed by the client transaction MUST contain values
   * for the Call-ID, From, and Request-URI that are equal to the values of those header fields in
   * the request passed to the transport by the client transaction ... The To header field in the
   * ACK MUST equal the To header field in the response being acknowledged ... The ACK MUST contain
   * a single Via header field, and this MUST be equal to the top Via header field of the original
   * request ... the CSeq header field in the ACK MUST contain the same value for the sequence
   * number as was present in the original request, but the method parameter MUST be equal to
   * "ACK" ... If the INVITE request whose response is being acknowledged had Route header fields,
   * those header fields MUST appear in the ACK."
   */
  private buildAck(res: SipResponse): SipRequest {
    const to = res.headers.find((h) => h.key === 'to');
    return this.derived('ACK', to ? copyRow(to) : undefined);
  }

  /**
   * RFC 3261 s9.1: "The Request-URI, Call-ID, To, the numeric part of CSeq, and From header fields
   * in the CANCEL request MUST be identical to those in the request being cancelled, including
   * tags. A CANCEL constructed by a client MUST have only a single Via header field value matching
   * the top Via value in the request being cancelled ... If the request being cancelled contains a
   * Route header field, the CANCEL request MUST include that Route header field's values."
   */
  private buildCancel(): SipRequest {
    return this.derived('CANCEL', undefined);
  }

  private derived(method: 'ACK' | 'CANCEL', toRow: HeaderField | undefined): SipRequest {
    const req = this.request;
    const headers: HeaderField[] = [];
    const topVia = req.getAll('via')[0]!;
    headers.push(row('Via', topVia));
    headers.push(row('Max-Forwards', '70'));
    for (const h of req.headers) if (h.key === 'route') headers.push(copyRow(h));
    const from = req.headers.find((h) => h.key === 'from');
    if (from) headers.push(copyRow(from));
    const to = toRow ?? req.headers.find((h) => h.key === 'to');
    if (to) headers.push(copyRow(to));
    headers.push(row('Call-ID', req.callId));
    headers.push(row('CSeq', `${req.cseq().seq} ${method}`));
    headers.push(row('Content-Length', '0'));
    return new SipRequest(method, req.uri, headers, Buffer.alloc(0));
  }
}

function row(name: string, value: string): HeaderField {
  return { name, key: name.toLowerCase(), value, raw: undefined };
}

function copyRow(h: HeaderField): HeaderField {
  return { name: h.name, key: h.key, value: h.value, raw: undefined };
}

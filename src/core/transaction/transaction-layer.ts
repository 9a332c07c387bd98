import type { Logger } from 'pino';
import { type AnyMessage, type SipRequest, type SipResponse, type Source, createResponse } from '../sip/index.js';
import { detach } from '../sip/detach.js';
import type { Destination, PreparedResponse } from '../transport/index.js';
import {
  type ClientDelegate,
  type ClientTransaction,
  type ClientTransactionBase,
  InviteClientTransaction,
  NonInviteClientTransaction,
} from './client-transaction.js';
import type { TransactionContext, TransactionStats, TransactionTransport } from './context.js';
import { ackKey, clientKey, clientKeyOf, hasMagicCookie, inviteKeyFor, serverKey, tag } from './keys.js';
import {
  InviteServerTransaction,
  NonInviteServerTransaction,
  type ServerTransaction,
  type ServerTransactionBase,
} from './server-transaction.js';
import { RecordTable, type TimedRecord } from './records.js';
import { DEFAULT_TIMERS, type TimerConfig, type Timers, realTimers } from './timers.js';

export interface TransactionLayerOptions {
  readonly transport: TransactionTransport;
  readonly logger: Logger;
  readonly timers?: Timers;
  readonly config?: Partial<TimerConfig>;
  /**
   * A new request for the application. `tx` is undefined only for an ACK that matches no server
   * transaction (the ACK for a 2xx, which a proxy forwards end to end) or that arrives for a 2xx
   * in the RFC 6026 Accepted state.
   */
  readonly onRequest: (req: SipRequest, tx: ServerTransaction | undefined) => void;
  /**
   * A response that matches no client transaction (RFC 3261 s17.1.3), or a 2xx for an INVITE client
   * transaction after its first 2xx (RFC 6026 Accepted, kept as a compact record without the
   * request's delegate): 2xx retransmissions and further 2xx from a forking UAS, which a proxy
   * forwards statelessly (s16.7).
   */
  readonly onStrayResponse?: (res: SipResponse) => void;
  /** Cap on each table (server and client transactions) unless set one by one below. */
  readonly maxTransactions?: number;
  /**
   * Most server transactions alive at once; beyond it new requests get 503 (default 150000). A
   * non-INVITE transaction over UDP stays for timer J (32 s) after its answer, so a registrar taking
   * 1,000 REGISTER/s holds about 32,000 finished transactions (about 6 KB each, measured).
   */
  readonly maxServerTransactions?: number;
  /**
   * Most finished server transactions remembered in each table of compact records (default:
   * maxServerTransactions): completed non-INVITE transactions for timer J (the response's wire bytes
   * and where they go, a few hundred bytes) together with INVITEs answered 2xx for timer L, and
   * INVITEs whose non-2xx was acknowledged for timer I. When a table is full its oldest record is
   * forgotten early rather than refusing new requests. Client records (timers M and K) are capped
   * at maxClientTransactions.
   */
  readonly maxCompletedTransactions?: number;
  /** Most client transactions alive at once; beyond it sendRequest fails (default 40000). */
  readonly maxClientTransactions?: number;
  /** Delay before an INVITE server transaction sends 100 Trying itself (default 200 ms; 0 = at once). */
  readonly tryingDelayMs?: number;
  /**
   * Longest wait for a final response to an INVITE, restarted by each provisional (default 300 s,
   * beyond a proxy's timer C of 180 s). A backstop against transactions that would never end.
   */
  readonly inviteLifetimeMs?: number;
  /** Retry-After, in seconds, of the 503 sent when the transaction table is full (default 5). */
  readonly overloadRetryAfter?: number;
}

/** An infrastructure failure of the transaction layer. */
export class TransactionError extends Error {
  constructor(
    readonly code: 'TRANSACTION_LIMIT' | 'TRANSACTION_EXISTS' | 'TRANSACTION_BAD_REQUEST',
    message: string,
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransactionError';
  }
}

/**
 * RFC 3261 s17: server transactions for requests received, client transactions for requests sent.
 * Sits between the transport (below) and the proxy core (above, the "TU").
 */
export class TransactionLayer {
  readonly stats: TransactionStats = {
    serverTransactions: 0,
    clientTransactions: 0,
    retransmissionsAbsorbed: 0,
    responsesAbsorbed: 0,
    retransmissionsSent: 0,
    timeouts: 0,
    overloadRejected: 0,
    strayResponses: 0,
    cancelsMatched: 0,
    cancelsUnmatched: 0,
    acksAbsorbed: 0,
    ackTimeouts: 0,
    completedEvicted: 0,
  };

  private readonly servers = new Map<string, ServerTransactionBase>();
  /** RFC 2543 INVITE transactions by the key their ACK and CANCEL are matched with. */
  private readonly legacyInvites = new Map<string, InviteServerTransaction>();
  private readonly legacyKeys = new Map<ServerTransactionBase, string>();
  private readonly clients = new Map<string, ClientTransactionBase>();
  /*
   * Compact records of finished transactions, by key (records.ts; ADR 0003). One timer sweeps them
   * all, in steps of T1/5, instead of a Node timer per transaction.
   */
  /**
   * Completed non-INVITE server transactions over UDP, for timer J: only what a retransmission of
   * the request needs (the final response, serialised); and INVITEs answered 2xx (RFC 6026
   * Accepted, timer L, as long as J): their copies are absorbed, a CANCEL is answered 200.
   */
  private readonly completed: RecordTable<CompletedRecord>;
  /**
   * INVITE server transactions whose non-2xx final response was acknowledged (Confirmed, timer I =
   * T4): copies of the INVITE and of its ACK are absorbed, a CANCEL is answered 200 with this To tag.
   */
  private readonly confirmed: RecordTable<{ generation: number; readonly toTag: string }>;
  /**
   * INVITE client transactions in the RFC 6026 Accepted state (timer M, as long as J): further 2xx
   * go to the stray handler, anything else is absorbed.
   */
  private readonly acceptedClients: RecordTable<TimedRecord>;
  /**
   * INVITE client transactions whose non-2xx final response they acknowledged (Completed, timer D):
   * a retransmission of that response gets the same ACK again.
   */
  private readonly completedInvites: RecordTable<{ generation: number; readonly ack: Buffer; readonly destination: Destination }>;
  /** Non-INVITE client transactions with their final response (Completed, timer K = T4): copies absorbed. */
  private readonly completedClients: RecordTable<TimedRecord>;
  private readonly tables: ReadonlyArray<RecordTable<TimedRecord>>;
  /**
   * Where records' response bytes are copied: slices of a slab that holds nothing else. Records
   * expire in the order they were made, so a slab is freed soon after its last record expires,
   * and a record costs a view onto the slab instead of an ArrayBuffer of its own (one per record
   * was ~200 bytes more per transaction, and work for every collection that sweeps buffers).
   */
  private slab: Buffer | undefined;
  private slabUsed = 0;
  private generation = 0;
  private generationTimer: unknown;
  private readonly generationMs: number;
  private readonly ctx: TransactionContext;
  private readonly logger: Logger;
  private readonly onRequest: TransactionLayerOptions['onRequest'];
  private readonly onStray: ((res: SipResponse) => void) | undefined;
  private readonly maxServers: number;
  private readonly maxClients: number;
  private readonly retryAfter: number;
  private closed = false;

  constructor(opts: TransactionLayerOptions) {
    this.logger = opts.logger;
    this.onRequest = opts.onRequest;
    this.onStray = opts.onStrayResponse;
    this.maxServers = opts.maxServerTransactions ?? opts.maxTransactions ?? 150_000;
    this.maxClients = opts.maxClientTransactions ?? opts.maxTransactions ?? 150_000;
    this.retryAfter = opts.overloadRetryAfter ?? 5;
    const maxCompleted = opts.maxCompletedTransactions ?? this.maxServers;
    const config = { ...DEFAULT_TIMERS, ...opts.config };
    // Steps of T1/5 (100 ms by default): a record outlives its timer by at most that.
    this.generationMs = Math.max(1, Math.floor(config.t1 / 5));
    const generations = (ms: number): number => Math.ceil(ms / this.generationMs);
    this.completed = new RecordTable(generations(64 * config.t1), maxCompleted);
    this.confirmed = new RecordTable(generations(config.t4), maxCompleted);
    this.acceptedClients = new RecordTable(generations(64 * config.t1), this.maxClients);
    this.completedInvites = new RecordTable(generations(timerD(config.t1)), this.maxClients);
    this.completedClients = new RecordTable(generations(config.t4), this.maxClients);
    this.tables = [this.completed, this.confirmed, this.acceptedClients, this.completedInvites, this.completedClients];
    this.ctx = {
      transport: opts.transport,
      timers: opts.timers ?? realTimers,
      config,
      logger: opts.logger,
      stats: this.stats,
      tryingDelayMs: opts.tryingDelayMs ?? 200,
      inviteLifetimeMs: opts.inviteLifetimeMs ?? 300_000,
      terminated: (tx) => this.remove(tx),
      handOverCompleted: (tx, res) => this.handOver(tx as ServerTransactionBase, res),
      handOverAccepted: (tx, toTag) => this.handOverAccepted(tx as ServerTransactionBase, toTag),
      handOverAcceptedClient: (tx) => this.keepClientRecord(tx as ClientTransactionBase, this.acceptedClients, { generation: 0 }),
      handOverConfirmed: (tx, toTag) => this.handOverConfirmed(tx as ServerTransactionBase, toTag),
      handOverCompletedClient: (tx) => this.keepClientRecord(tx as ClientTransactionBase, this.completedClients, { generation: 0 }),
      handOverCompletedInvite: (tx, ack) => this.keepClientRecord(tx as ClientTransactionBase, this.completedInvites, this.ackRecord(tx, ack)),
      completedExpired: (gen, timer) => (timer === 'T4' ? this.confirmed : timer === 'D' ? this.completedInvites : this.completed).expired(gen, this.generation),
    };
  }

  /** Feeds one message from the transport (wire this to TransportManager.onMessage). */
  receive(msg: AnyMessage): void {
    if (this.closed) return;
    try {
      if (msg.isRequest) this.receiveRequest(msg);
      else this.receiveResponse(msg);
    } catch (err) {
      // The parser validated Via, From, To, Call-ID and CSeq; anything else is a bug, not a crash.
      this.logger.error({ err, method: msg.isRequest ? msg.method : undefined }, 'transaction layer failed on a message');
    }
  }

  /**
   * Starts a client transaction. `req` already carries our top Via with a fresh branch
   * (newBranch()); the transaction retransmits, times out, absorbs response retransmissions and
   * acknowledges non-2xx final responses to INVITE itself.
   */
  sendRequest(req: SipRequest, dest: Destination, delegate: ClientDelegate): ClientTransaction {
    if (req.method === 'ACK') throw new TransactionError('TRANSACTION_BAD_REQUEST', 'an ACK is not a transaction; send it with the transport', false);
    const branch = req.topVia()?.branch;
    if (!hasMagicCookie(branch)) {
      throw new TransactionError('TRANSACTION_BAD_REQUEST', 'the top Via of a request sent statefully needs a branch with the z9hG4bK cookie', false);
    }
    const id = clientKeyOf(branch, req.method);
    if (this.clients.has(id)) throw new TransactionError('TRANSACTION_EXISTS', `a client transaction with branch ${branch} exists`, false);
    const tx: ClientTransactionBase =
      req.method === 'INVITE'
        ? new InviteClientTransaction(this.ctx, req, dest, id, delegate, (r, d, del) => this.sendRequest(r, d, del))
        : new NonInviteClientTransaction(this.ctx, req, dest, id, delegate);
    if (this.closed || this.clients.size >= this.maxClients) {
      const err = new TransactionError('TRANSACTION_LIMIT', this.closed ? 'transaction layer closed' : 'too many client transactions', !this.closed);
      tx.state = 'Terminated';
      queueMicrotask(() => delegate.onTransportError(err));
      return tx;
    }
    this.clients.set(id, tx);
    this.updateClientCount();
    tx.start();
    return tx;
  }

  /**
   * The server transaction for a request while it waits for or works on its final response (for
   * tests and diagnostics). A completed non-INVITE transaction over UDP, and an INVITE transaction
   * past its final response (answered 2xx, or its non-2xx acknowledged), is no longer an object:
   * see absorbs().
   */
  findServer(req: SipRequest): ServerTransaction | undefined {
    return this.servers.get(serverKey(req));
  }

  /** Whether a copy of this request would be absorbed as a retransmission (live or completed). */
  absorbs(req: SipRequest): boolean {
    const key = serverKey(req);
    return this.servers.has(key) || this.completed.has(key) || this.confirmed.has(key);
  }

  /** Server transactions still waiting for their final response (what a graceful stop waits for). */
  awaitingFinal(): number {
    let n = 0;
    for (const tx of this.servers.values()) if (tx.awaitingFinal()) n++;
    return n;
  }

  /** Ends every transaction and clears every timer. */
  close(): void {
    this.closed = true;
    for (const table of this.tables) table.clear();
    if (this.generationTimer !== undefined) this.ctx.timers.clearTimeout(this.generationTimer);
    this.generationTimer = undefined;
    // Records of every generation so far now read as expired.
    this.generation += Math.max(...this.tables.map((t) => t.lifetime)) + 1;
    this.updateServerCount();
    for (const tx of [...this.servers.values()]) tx.terminate();
    for (const tx of [...this.clients.values()]) tx.terminate();
  }

  // ---- server side ------------------------------------------------------------------------------

  private receiveRequest(req: SipRequest): void {
    if (req.method === 'ACK') return this.receiveAck(req);
    const key = serverKey(req);
    const existing = this.servers.get(key);
    if (existing) {
      existing.retransmission();
      return;
    }
    const done = this.completed.get(key);
    if (done) {
      this.stats.retransmissionsAbsorbed++;
      // RFC 6026 s7.1: in the "Accepted" state a retransmitted INVITE is absorbed (the 2xx is
      // retransmitted end to end by the UAS, not by this transaction).
      if (done.acceptedToTag !== undefined) return;
      // "If a retransmission of the request is received while in the "Completed" state, the
      // server transaction MUST pass the final response to the transport layer for retransmission."
      this.resend(key, done);
      return;
    }
    if (this.confirmed.has(key)) {
      // Confirmed: "any ACKs that are received are absorbed", and so are copies of the INVITE.
      this.stats.retransmissionsAbsorbed++;
      return;
    }
    if (req.method === 'CANCEL') return this.receiveCancel(req, key);
    if (this.servers.size >= this.maxServers) return this.overloaded(req);

    const tx = req.method === 'INVITE' ? new InviteServerTransaction(this.ctx, req, key) : new NonInviteServerTransaction(this.ctx, req, key);
    this.addServer(tx, key);
    if (tx instanceof InviteServerTransaction && !hasMagicCookie(req.topVia()!.branch)) {
      const legacy = ackKey(req);
      this.legacyInvites.set(legacy, tx);
      this.legacyKeys.set(tx, legacy);
    }
    this.deliver(req, tx);
  }

  private receiveAck(ack: SipRequest): void {
    let tx: ServerTransactionBase | undefined;
    if (hasMagicCookie(ack.topVia()!.branch)) {
      const key = serverKey(ack);
      tx = this.servers.get(key);
      if (tx === undefined && this.confirmed.has(key)) {
        // Confirmed (timer I): "any ACKs that are received are absorbed".
        this.stats.acksAbsorbed++;
        return;
      }
    } else {
      // RFC 2543: "the ACK matches ... if the To tag of the ACK matches the To tag of the response
      // sent by the server transaction".
      const candidate = this.legacyInvites.get(ackKey(ack));
      if (candidate?.lastResponse && candidate.lastResponse.status >= 200 && tagOf(candidate.lastResponse) === tag(ack, 'to')) tx = candidate;
    }
    if (tx instanceof InviteServerTransaction) {
      if (!tx.ack()) return;
    }
    // The ACK for a 2xx is a transaction of its own, end to end (s17.1.1.3, s16.7).
    this.deliver(ack, undefined);
  }

  private receiveCancel(cancel: SipRequest, key: string): void {
    // RFC 3261 s9.2: "the CANCEL method requests that the TU at the server side cancel a pending
    // transaction. The TU determines the transaction to be cancelled by taking the CANCEL request,
    // and then assuming that the request method is anything but CANCEL or ACK and applying the
    // transaction matching procedures of Section 17.2.3."
    const inviteKey = inviteKeyFor(cancel);
    const target = inviteKey !== undefined ? this.servers.get(inviteKey) : this.legacyInvites.get(ackKey(cancel));
    if (this.servers.size >= this.maxServers) return this.overloaded(cancel);
    const tx = new NonInviteServerTransaction(this.ctx, cancel, key);
    this.addServer(tx, key);
    const answered = target === undefined && inviteKey !== undefined ? (this.completed.get(inviteKey)?.acceptedToTag ?? this.confirmed.get(inviteKey)?.toTag) : undefined;
    if (answered !== undefined) {
      // The INVITE has its final response and its transaction is a compact record (Accepted or
      // Confirmed): s9.2, "the CANCEL request has no effect on the processing of the original
      // request", but it is answered 200, with the To tag of the INVITE's final response.
      this.stats.cancelsMatched++;
      tx.replyStatus(200, { toTag: answered });
      return;
    }
    if (!target || target.state === 'Terminated') {
      // "If the UAS did not find a matching transaction for the CANCEL according to the procedure
      // above, it SHOULD respond to the CANCEL with a 481 (Call Leg/Transaction Does Not Exist)."
      this.stats.cancelsUnmatched++;
      tx.replyStatus(481);
      return;
    }
    this.stats.cancelsMatched++;
    // s9.2 / s16.10: the CANCEL is answered at once with 200, its To tag that of the INVITE's
    // responses ("the To tag of the response to the CANCEL and the To tag in the response to the
    // original request SHOULD be the same").
    tx.replyStatus(200, { toTag: target.toTag });
    try {
      target.cancel(cancel);
    } catch (err) {
      this.logger.error({ err, tx: target.id }, 'CANCEL handler threw');
    }
  }

  private deliver(req: SipRequest, tx: ServerTransactionBase | undefined): void {
    try {
      this.onRequest(req, tx);
    } catch (err) {
      this.logger.error({ err, method: req.method }, 'request handler threw');
      if (tx?.awaitingFinal()) tx.replyStatus(500, { reason: 'Server Internal Error' });
    }
  }

  private overloaded(req: SipRequest): void {
    // Stateless: a full table must not grow to say so.
    this.stats.overloadRejected++;
    const res = createResponse(req, 503, { headers: [['Retry-After', String(this.retryAfter)]] });
    this.ctx.transport.sendResponse(res, req.source).catch((err: unknown) => this.logger.debug({ err }, 'sending 503 failed'));
  }

  private addServer(tx: ServerTransactionBase, key: string): void {
    this.servers.set(key, tx);
    this.updateServerCount();
  }

  private updateServerCount(): void {
    this.stats.serverTransactions = this.servers.size + this.completed.size + this.confirmed.size;
  }

  private updateClientCount(): void {
    this.stats.clientTransactions = this.clients.size + this.acceptedClients.size + this.completedInvites.size + this.completedClients.size;
  }

  // ---- completed non-INVITE transactions (timer J) -----------------------------------------------

  private handOver(tx: ServerTransactionBase, res: SipResponse): number {
    const t = this.ctx.transport;
    const to = tx.request.source;
    let record: CompletedRecord;
    if (t.prepareResponse && t.sendPrepared) {
      let prepared: PreparedResponse;
      try {
        prepared = t.prepareResponse(res, to);
      } catch (err) {
        this.logger.warn({ err, tx: tx.id, status: res.status }, 'sending a response failed');
        tx.terminate();
        return -1;
      }
      // The bytes are kept 32 s: copied out of Node's shared 8 KiB buffer pool, so that a record
      // pins no slab shared with short-lived buffers, into the records' own slab.
      const own = this.keepBytes(prepared.bytes);
      // Likewise the address from the Via: a copy, not a view onto the request's text.
      const target = { ...prepared.target, address: detach(prepared.target.address) };
      record = { generation: this.generation, prepared: { ...prepared, bytes: own, target }, res: undefined, to: undefined, acceptedToTag: undefined };
    } else {
      record = { generation: this.generation, prepared: undefined, res, to, acceptedToTag: undefined };
    }
    this.keepRecord(tx, this.completed, record);
    this.resend(tx.id, record);
    return record.generation;
  }

  /** RFC 6026 Accepted (timer L) for an INVITE server transaction that sent a 2xx. */
  private handOverAccepted(tx: ServerTransactionBase, toTag: string): number {
    // RFC 2543 peers match their ACK and CANCEL through the transaction object: it keeps the state.
    if (this.legacyKeys.has(tx)) return -1;
    const record: CompletedRecord = { generation: this.generation, prepared: undefined, res: undefined, to: undefined, acceptedToTag: detach(toTag) };
    this.keepRecord(tx, this.completed, record);
    return record.generation;
  }

  /** Timer I for an INVITE server transaction whose non-2xx final response was acknowledged. */
  private handOverConfirmed(tx: ServerTransactionBase, toTag: string): number {
    if (this.legacyKeys.has(tx)) return -1;
    const record = { generation: 0, toTag: detach(toTag) };
    this.keepRecord(tx, this.confirmed, record);
    return record.generation;
  }

  /**
   * Moves a client transaction out of the table into a compact record of `table` under its key:
   * timer M (Accepted), K (a non-INVITE's final response) or D (an INVITE's non-2xx acknowledged).
   * The record's generation is set here.
   */
  private keepClientRecord<V extends TimedRecord>(tx: ClientTransactionBase, table: RecordTable<V>, record: V): number {
    if (this.clients.get(tx.id) === tx) this.clients.delete(tx.id);
    record.generation = this.currentGeneration();
    table.add(detach(tx.id), record);
    this.updateClientCount();
    return record.generation;
  }

  /** Timer D: the ACK's bytes (copied into the records' slab) and where they went, to repeat them. */
  private ackRecord(tx: { readonly destination: Destination }, ack: Buffer): { generation: number; ack: Buffer; destination: Destination } {
    return { generation: 0, ack: this.keepBytes(ack), destination: { ...tx.destination, address: detach(tx.destination.address) } };
  }

  /**
   * Moves a server transaction out of the table into a compact record of `table` under its key; the
   * record's generation is set here.
   */
  private keepRecord<V extends TimedRecord>(tx: ServerTransactionBase, table: RecordTable<V>, record: V): void {
    if (this.servers.get(tx.id) === tx) this.servers.delete(tx.id);
    record.generation = this.currentGeneration();
    // The key is kept as long as the record: a copy of its own rather than a view onto the request's text.
    if (table.add(detach(tx.id), record)) this.stats.completedEvicted++;
    this.updateServerCount();
  }

  /** The generation a record made now belongs to; starts the sweep if the tables were idle. */
  private currentGeneration(): number {
    if (this.generationTimer === undefined) {
      // Idle until now: a fresh generation starts with this record.
      this.generation++;
      this.generationTimer = this.ctx.timers.setTimeout(() => this.sweep(), this.generationMs);
    }
    return this.generation;
  }

  private keepBytes(bytes: Buffer): Buffer {
    const n = bytes.length;
    if (n > RECORD_SLAB_BYTES / 4) return Buffer.from(bytes);
    if (this.slab === undefined || this.slabUsed + n > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(RECORD_SLAB_BYTES);
      this.slabUsed = 0;
    }
    const own = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    bytes.copy(own);
    this.slabUsed += n;
    return own;
  }

  private resend(key: string, record: CompletedRecord): void {
    const t = this.ctx.transport;
    const sent = record.prepared && t.sendPrepared ? t.sendPrepared(record.prepared) : t.sendResponse(record.res!, record.to);
    sent.catch((err: unknown) => {
      // s17.2.4: a transport failure ends the transaction.
      this.logger.warn({ err, tx: key }, 'sending a response failed');
      if (this.completed.get(key) === record) {
        this.completed.delete(key);
        this.updateServerCount();
      }
    });
  }

  private sweep(): void {
    this.generationTimer = undefined;
    this.generation++;
    let left = 0;
    for (const table of this.tables) {
      table.sweep(this.generation);
      left += table.size;
    }
    this.updateServerCount();
    this.updateClientCount();
    if (left > 0 && !this.closed) {
      this.generationTimer = this.ctx.timers.setTimeout(() => this.sweep(), this.generationMs);
    }
  }

  // ---- client side ------------------------------------------------------------------------------

  private receiveResponse(res: SipResponse): void {
    const key = clientKey(res);
    const tx = key !== undefined ? this.clients.get(key) : undefined;
    if (tx) {
      tx.receive(res);
      return;
    }
    const failed = key !== undefined ? this.completedInvites.get(key) : undefined;
    if (failed) {
      // Completed (timer D): "Any retransmissions of the final response that are received while in
      // the "Completed" state MUST cause the ACK to be re-passed to the transport layer for
      // retransmission, but the newly generated ACK MUST NOT be passed up to the TU."
      this.stats.responsesAbsorbed++;
      if (res.status >= 300) {
        this.ctx.transport.send(failed.ack, failed.destination).catch((err: unknown) => this.logger.debug({ err }, 're-sending an ACK failed'));
      }
      return;
    }
    if (key !== undefined && this.completedClients.has(key)) {
      // Completed (timer K): "any retransmissions of the final response that are received while
      // in the "Completed" state" are absorbed.
      this.stats.responsesAbsorbed++;
      return;
    }
    if (key !== undefined && this.acceptedClients.has(key)) {
      // RFC 6026 s7.2: in the "Accepted" state 2xx responses are passed up, anything else is
      // absorbed. Up is the stray handler, as before RFC 6026 (a proxy forwards them statelessly).
      if (res.status >= 200 && res.status < 300) this.passStray(res);
      else this.stats.responsesAbsorbed++;
      return;
    }
    this.stats.strayResponses++;
    this.passStray(res);
  }

  private passStray(res: SipResponse): void {
    if (this.onStray) {
      try {
        this.onStray(res);
      } catch (err) {
        this.logger.error({ err }, 'stray response handler threw');
      }
    }
  }

  // ---- bookkeeping ------------------------------------------------------------------------------

  private remove(tx: { readonly id: string; readonly kind: 'server' | 'client' }): void {
    if (tx.kind === 'server') {
      if (this.servers.get(tx.id) === tx) this.servers.delete(tx.id);
      const legacy = this.legacyKeys.get(tx as ServerTransactionBase);
      if (legacy !== undefined) {
        this.legacyKeys.delete(tx as ServerTransactionBase);
        if (this.legacyInvites.get(legacy) === tx) this.legacyInvites.delete(legacy);
      }
      this.updateServerCount();
    } else {
      if (this.clients.get(tx.id) === tx) this.clients.delete(tx.id);
      this.updateClientCount();
    }
  }
}

/** Timer D: "at least 32 seconds for unreliable transports" (RFC 3261 s17.1.1.2), and 64*T1. */
function timerD(t1: number): number {
  return Math.max(32_000, 64 * t1);
}

/** Size of the slabs completed records' response bytes are kept in (about 100 responses each). */
const RECORD_SLAB_BYTES = 64 * 1024;

/**
 * What timer J keeps of a completed non-INVITE server transaction, or timer L of an INVITE server
 * transaction in the Accepted state.
 */
interface CompletedRecord {
  generation: number;
  /** The final response, serialised, and where it goes (transports that can prepare). */
  readonly prepared: PreparedResponse | undefined;
  /** Otherwise the response itself and the request's source. */
  readonly res: SipResponse | undefined;
  readonly to: Source | undefined;
  /** Set for an INVITE answered 2xx (Accepted): copies are absorbed, a CANCEL is answered 200 with this tag. */
  readonly acceptedToTag: string | undefined;
}

function tagOf(res: SipResponse): string {
  return res.to().params.get('tag') ?? '';
}

import type { Logger } from 'pino';
import type { SipRequest, SipResponse, Source } from '../sip/index.js';
import type { Destination, PreparedResponse } from '../transport/index.js';
import type { TimerConfig, Timers } from './timers.js';

/** What the transaction layer needs from the transport below it. */
export interface TransactionTransport {
  send(bytes: Buffer, dest: Destination): Promise<void>;
  sendResponse(res: SipResponse, to?: Source): Promise<void>;
  /**
   * Serialise once, send many times: when present, a completed transaction keeps only these
   * bytes for its retransmissions (the TransportManager has both).
   */
  prepareResponse?(res: SipResponse, to?: Source): PreparedResponse;
  sendPrepared?(prepared: PreparedResponse): Promise<void>;
}

export interface TransactionStats {
  /** Server transactions alive now. */
  serverTransactions: number;
  /** Client transactions alive now. */
  clientTransactions: number;
  /** Retransmitted requests answered from (or held by) their server transaction. */
  retransmissionsAbsorbed: number;
  /** Retransmitted responses absorbed by their client transaction. */
  responsesAbsorbed: number;
  /** Requests and responses this layer retransmitted itself (timers A, E, G). */
  retransmissionsSent: number;
  /** Client transactions that timed out (timers B, F, or no answer to a CANCEL). */
  timeouts: number;
  /** Requests turned away with 503 because too many transactions were alive. */
  overloadRejected: number;
  /** Responses that matched no client transaction. */
  strayResponses: number;
  cancelsMatched: number;
  cancelsUnmatched: number;
  /** ACKs for non-2xx final responses absorbed hop by hop. */
  acksAbsorbed: number;
  /** INVITE server transactions whose ACK never came (timer H). */
  ackTimeouts: number;
  /**
   * Finished server transactions forgotten before their timer (J for a completed non-INVITE, L for
   * an INVITE answered 2xx, I for one whose non-2xx was acknowledged) because their table of
   * compact records was full (oldest first); a retransmission of theirs is handled as a new request.
   */
  completedEvicted: number;
}

/** Which lifetime a compact record has: 64*T1 (timers J, L, M), T4 (timers I, K) or timer D. */
export type RecordTimer = 'J' | 'T4' | 'D';

/** Shared by every transaction of one layer. */
export interface TransactionContext {
  readonly transport: TransactionTransport;
  readonly timers: Timers;
  readonly config: TimerConfig;
  readonly logger: Logger;
  readonly stats: TransactionStats;
  /** Delay before an INVITE server transaction sends 100 Trying itself. */
  readonly tryingDelayMs: number;
  /** Longest time a transaction may wait for a final response before it is given up. */
  readonly inviteLifetimeMs: number;
  /** Called once when a transaction reaches Terminated: it is removed from the tables. */
  terminated(tx: { readonly id: string; readonly kind: 'server' | 'client' }): void;
  /**
   * A non-INVITE server transaction over UDP sends its final response: the layer sends it, keeps
   * a compact record that repeats it to retransmissions for timer J, and drops the transaction
   * from its table. Returns the record's generation (see completedExpired), or -1 when the
   * response could not be sent (the transaction was terminated).
   */
  handOverCompleted(tx: { readonly id: string; readonly request: SipRequest }, res: SipResponse): number;
  /**
   * An INVITE server transaction sent a 2xx and enters the RFC 6026 Accepted state: the layer keeps
   * a compact record for timer L (64*T1) that absorbs copies of the INVITE and answers a late
   * CANCEL with 200 and `toTag`, and drops the transaction from its table (the transaction still
   * sends further 2xx its user passes it). Returns the record's generation, or -1 when the
   * transaction keeps the state itself (RFC 2543 peers, matched by the transaction object).
   */
  handOverAccepted(tx: { readonly id: string }, toTag: string): number;
  /**
   * An INVITE client transaction received a 2xx and enters the RFC 6026 Accepted state: the layer
   * keeps a compact record for timer M (64*T1) that passes further 2xx responses to the layer's
   * stray-response handler (a proxy forwards them upstream statelessly) and absorbs anything
   * else, and drops the transaction, its request and its delegate from its table. Returns the
   * record's generation.
   */
  handOverAcceptedClient(tx: { readonly id: string }): number;
  /**
   * An INVITE server transaction's non-2xx final response was acknowledged (Confirmed, over UDP):
   * the layer keeps a compact record for timer I (T4) that absorbs copies of the INVITE and its
   * ACK and answers a late CANCEL with 200 and `toTag`. Returns its generation, or -1 when the
   * transaction keeps the state itself (RFC 2543 peers).
   */
  handOverConfirmed(tx: { readonly id: string }, toTag: string): number;
  /**
   * A non-INVITE client transaction over UDP received its final response (Completed): the layer
   * keeps a compact record for timer K (T4) that absorbs retransmissions of it. Returns its
   * generation.
   */
  handOverCompletedClient(tx: { readonly id: string }): number;
  /**
   * An INVITE client transaction over UDP received a non-2xx final response and acknowledged it
   * (Completed): the layer keeps a compact record for timer D that sends `ack` again for each
   * retransmission of that response. Returns its generation.
   */
  handOverCompletedInvite(tx: { readonly id: string; readonly destination: Destination }, ack: Buffer): number;
  /**
   * Whether the compact records of this generation have expired: by `J` (64*T1: timers J, L and M,
   * the default), `T4` (timers I and K) or `D` (timer D).
   */
  completedExpired(generation: number, timer?: RecordTimer): boolean;
}

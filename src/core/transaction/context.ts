import type { Logger } from 'pino';
import type { SipResponse, Source } from '../sip/index.js';
import type { Destination } from '../transport/index.js';
import type { TimerConfig, Timers } from './timers.js';

/** What the transaction layer needs from the transport below it. */
export interface TransactionTransport {
  send(bytes: Buffer, dest: Destination): Promise<void>;
  sendResponse(res: SipResponse, to?: Source): Promise<void>;
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
}

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
}

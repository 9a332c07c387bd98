export type TransportErrorCode =
  | 'TRANSPORT_LISTEN_FAILED'
  | 'TRANSPORT_SEND_FAILED'
  | 'TRANSPORT_CONNECT_FAILED'
  | 'TRANSPORT_NO_ROUTE'
  | 'TRANSPORT_PEER_SLOW'
  | 'TRANSPORT_CLOSED';

/** An infrastructure failure below SIP: a socket could not be bound, reached or written. */
export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransportError';
  }
}

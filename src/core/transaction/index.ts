export { TransactionLayer, TransactionError, type TransactionLayerOptions } from './transaction-layer.js';
export type { ServerTransaction, ServerTransactionState } from './server-transaction.js';
export type { ClientTransaction, ClientDelegate, ClientTransactionState } from './client-transaction.js';
export type { TransactionStats, TransactionTransport } from './context.js';
export { type TimerConfig, type Timers, DEFAULT_TIMERS, realTimers } from './timers.js';
export { MAGIC_COOKIE, hasMagicCookie } from './keys.js';

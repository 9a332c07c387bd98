export {
  TransportManager,
  type ListenSpec,
  type Destination,
  type PreparedResponse,
  type TransportOptions,
  type TransportStats,
  redactCredentials,
} from './transport-manager.js';
export { TransportError, type TransportErrorCode } from './errors.js';
export { StreamFramer, type FrameEvent, type FramerLimits, contentLength } from './stream-framer.js';
export { firstVia, stampVia, responseTarget, defaultPortFor, type ResponseTarget } from './via.js';

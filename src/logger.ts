import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * The one root logger. Secrets never reach it: credentials headers, passwords, HA1 values and
 * RADIUS/admin secrets are redacted wherever they appear in a logged object (pino's redaction,
 * set up once here, costs nothing per call when the paths are absent).
 */
export const REDACT_PATHS = [
  'authorization',
  'proxyAuthorization',
  'headers.authorization',
  'headers["proxy-authorization"]',
  'password',
  'ha1',
  'ha1b',
  'secret',
  'token',
  '*.authorization',
  '*.password',
  '*.ha1',
  '*.ha1b',
  '*.secret',
  '*.token',
];

export function createLogger(level = 'info', destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { name: 'sipledger' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(opts, destination) : pino(opts);
}

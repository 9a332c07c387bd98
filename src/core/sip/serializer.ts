import type { AnyMessage } from './message.js';

/**
 * Writes a message as bytes. An untouched received message is returned as received; otherwise
 * untouched header rows go out byte for byte and changed rows in canonical form.
 */
export function serialize(msg: AnyMessage): Buffer {
  if (msg.wire && !msg.modified) return msg.wire;
  let head = msg.isRequest ? `${msg.method} ${msg.uri} ${msg.version}\r\n` : `${msg.version} ${msg.status} ${msg.reason}\r\n`;
  let hasLength = false;
  for (const h of msg.headers) {
    if (h.key === 'content-length') {
      hasLength = true;
      // Keep the row if it is right, rewrite it when the body changed.
      if (Number(h.value) !== msg.body.length) {
        head += `${h.name}: ${msg.body.length}\r\n`;
        continue;
      }
    }
    head += h.raw ?? `${h.name}: ${h.value}`;
    head += '\r\n';
  }
  // Every message sipledger sends carries Content-Length, so it can be framed on any transport.
  if (!hasLength) head += `Content-Length: ${msg.body.length}\r\n`;
  head += '\r\n';
  if (msg.body.length === 0) return Buffer.from(head, 'utf8');
  const headBuf = Buffer.from(head, 'utf8');
  return Buffer.concat([headBuf, msg.body], headBuf.length + msg.body.length);
}

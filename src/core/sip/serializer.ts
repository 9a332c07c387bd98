import type { AnyMessage, HeaderField, WireLayout } from './message.js';

/**
 * Writes a message as bytes. An untouched received message is returned as received; otherwise
 * untouched header rows go out byte for byte and changed rows in canonical form.
 */
export function serialize(msg: AnyMessage): Buffer {
  if (msg.wire && !msg.modified) return msg.wire;
  const layout = msg.layout;
  return layout === undefined ? fromStrings(msg, startLineOf(msg)) : fromLayout(msg, layout);
}

function startLineOf(msg: AnyMessage): string {
  return msg.isRequest ? `${msg.method} ${msg.uri} ${msg.version}` : `${msg.version} ${msg.status} ${msg.reason}`;
}

/** True when the start line still reads as received (unchanged fields are the very same strings). */
function sameStartLine(msg: AnyMessage, received: WireLayout['startLine']): boolean {
  return msg.isRequest
    ? msg.method === received[0] && msg.uri === received[1] && msg.version === received[2]
    : msg.version === received[0] && msg.status === received[1] && msg.reason === received[2];
}

/** The row as text, or a rewritten Content-Length row when the body changed size. */
function rowText(h: HeaderField, bodyLength: number): string {
  // Keep the Content-Length row if it is right, rewrite it when the body changed.
  if (h.key === 'content-length' && Number(h.value) !== bodyLength) return `${h.name}: ${bodyLength}`;
  return h.raw ?? `${h.name}: ${h.value}`;
}

function fromStrings(msg: AnyMessage, startLine: string): Buffer {
  let head = `${startLine}\r\n`;
  let hasLength = false;
  const bodyLength = msg.body.length;
  for (const h of msg.headers) {
    if (h.key === 'content-length') hasLength = true;
    head += rowText(h, bodyLength);
    head += '\r\n';
  }
  // Every message sipledger sends carries Content-Length, so it can be framed on any transport.
  if (!hasLength) head += `Content-Length: ${bodyLength}\r\n`;
  head += '\r\n';
  if (bodyLength === 0) return Buffer.from(head, 'utf8');
  const headBuf = Buffer.from(head, 'utf8');
  return Buffer.concat([headBuf, msg.body], headBuf.length + bodyLength);
}

/**
 * The same bytes as fromStrings, but rows still present from the received message are copied from
 * the received bytes in runs, and only new or changed rows are encoded.
 */
function fromLayout(msg: AnyMessage, layout: WireLayout): Buffer {
  const { rows, spans, bytes } = layout;
  const body = msg.body;
  const bodyLength = body.length;
  // Segments: [from, to) byte ranges of `bytes` as number pairs, or text to encode.
  const segs: Array<number | string> = [];
  let size = 0;
  let runFrom = -1;
  let runTo = -1;
  if (sameStartLine(msg, layout.startLine)) {
    runFrom = layout.startFrom;
    runTo = layout.startTo;
  } else {
    const line = `${startLineOf(msg)}\r\n`;
    segs.push(line);
    size += Buffer.byteLength(line);
  }
  let hasLength = false;
  let lengthRewritten = false;
  let next = 0; // where the search for the next received row resumes
  for (const h of msg.headers) {
    let text: string | undefined;
    if (h.key === 'content-length') {
      hasLength = true;
      if (Number(h.value) !== bodyLength) {
        text = `${h.name}: ${bodyLength}\r\n`;
        lengthRewritten = true;
      }
    }
    let i = -1;
    if (text === undefined) {
      // Rows keep their order under every edit the message API offers, so look forward first.
      for (let k = next; k < rows.length; k++) {
        if (rows[k] === h) {
          i = k;
          break;
        }
      }
      if (i === -1) text = `${h.raw ?? `${h.name}: ${h.value}`}\r\n`;
    }
    if (i !== -1) {
      next = i + 1;
      const from = spans[2 * i]!;
      const to = spans[2 * i + 1]!;
      if (from === runTo) runTo = to;
      else {
        if (runFrom !== -1) {
          segs.push(runFrom, runTo);
          size += runTo - runFrom;
        }
        runFrom = from;
        runTo = to;
      }
      continue;
    }
    if (runFrom !== -1) {
      segs.push(runFrom, runTo);
      size += runTo - runFrom;
      runFrom = -1;
      runTo = -1;
    }
    segs.push(text!);
    size += Buffer.byteLength(text!);
  }
  // The empty line and an unchanged body follow the last received row as they did on the wire.
  let tailDone = false;
  if (hasLength && !lengthRewritten && body === layout.body && runTo === layout.headEnd && runFrom !== -1) {
    runTo = layout.bodyEnd;
    tailDone = true;
  }
  if (runFrom !== -1) {
    segs.push(runFrom, runTo);
    size += runTo - runFrom;
  }
  let tail = '';
  if (!tailDone) {
    // Every message sipledger sends carries Content-Length, so it can be framed on any transport.
    tail = hasLength ? '\r\n' : `Content-Length: ${bodyLength}\r\n\r\n`;
    size += tail.length + bodyLength;
  }

  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let k = 0; k < segs.length; k++) {
    const seg = segs[k]!;
    if (typeof seg === 'string') at += out.write(seg, at, 'utf8');
    else {
      const to = segs[++k] as number;
      at += bytes.copy(out, at, seg, to);
    }
  }
  if (!tailDone) {
    at += out.write(tail, at, 'latin1');
    if (bodyLength > 0) body.copy(out, at);
  }
  return out;
}

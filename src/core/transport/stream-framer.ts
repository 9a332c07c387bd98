/**
 * Cuts a SIP byte stream (TCP, TLS) into messages.
 *
 * RFC 3261 s18.3: "In the case of stream-oriented transports such as TCP, the Content-Length header
 * field indicates the size of the body. All SIP implementations MUST use a Content-Length header
 * field to frame messages over stream-oriented transports." A message without one cannot be framed,
 * so the connection is answered (when possible) and closed.
 *
 * RFC 5626 s3.5.1: a double CRLF between messages is a keep-alive "ping" and is answered with a
 * single CRLF "pong"; RFC 3261 s7.5: "Implementations processing SIP messages over stream-oriented
 * transports MUST ignore any CRLF appearing before the start-line".
 *
 * The framer is pure (no I/O): bytes in, events out. It copies each chunk once into a growable
 * buffer, so a peer that sends one byte at a time costs linear, not quadratic, work.
 */

export type FrameEvent =
  | { readonly type: 'message'; readonly bytes: Buffer }
  | { readonly type: 'ping' }
  /**
   * The stream cannot be framed any further. `head` holds what was read of the offending message
   * (its header section, when there is one) so that a response can be attempted; then the
   * connection must be closed.
   */
  | { readonly type: 'error'; readonly status: 400 | 513; readonly reason: string; readonly head: Buffer };

export interface FramerLimits {
  /** Largest framed message (start line + headers + body). */
  readonly maxMessageBytes: number;
  /** Extra bytes a connection may buffer beyond one message (pipelined requests). */
  readonly headroomBytes?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const HEADER_END = Buffer.from('\r\n\r\n', 'latin1');

export class StreamFramer {
  private buf: Buffer;
  private start = 0;
  private end = 0;
  /** Offset (absolute in buf) up to which the current head was searched for CRLFCRLF. */
  private scanned = 0;
  /** Length of the message whose header section was read, while its body is still arriving. */
  private pending: number | undefined;
  private failed = false;
  private readonly maxMessage: number;
  private readonly maxBuffered: number;

  constructor(limits: FramerLimits) {
    this.maxMessage = limits.maxMessageBytes;
    this.maxBuffered = limits.maxMessageBytes + (limits.headroomBytes ?? 4096);
    this.buf = Buffer.allocUnsafe(Math.min(4096, this.maxBuffered));
  }

  /** Bytes held while waiting for the rest of a message. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Feeds a chunk; returns the events it completes. After an 'error' event nothing more comes out. */
  push(chunk: Buffer): FrameEvent[] {
    if (this.failed) return [];
    const out: FrameEvent[] = [];
    let offset = 0;
    // Append in slices no larger than the free room, framing in between, so that a huge chunk
    // never grows the buffer beyond the connection limit.
    while (offset < chunk.length && !this.failed) {
      const room = this.maxBuffered - this.buffered;
      if (room <= 0) {
        this.fail(out, 513, `message exceeds ${this.maxMessage} bytes`);
        break;
      }
      const n = Math.min(room, chunk.length - offset);
      this.append(chunk, offset, n);
      offset += n;
      this.drain(out);
    }
    return out;
  }

  private append(chunk: Buffer, from: number, n: number): void {
    if (this.end + n > this.buf.length) {
      const live = this.end - this.start;
      if (live + n <= this.buf.length && this.start > 0) {
        this.buf.copy(this.buf, 0, this.start, this.end);
      } else {
        let cap = this.buf.length * 2;
        while (cap < live + n) cap *= 2;
        const next = Buffer.allocUnsafe(Math.min(cap, Math.max(this.maxBuffered, live + n)));
        this.buf.copy(next, 0, this.start, this.end);
        this.buf = next;
      }
      this.scanned -= this.start;
      this.start = 0;
      this.end = live;
    }
    chunk.copy(this.buf, this.end, from, from + n);
    this.end += n;
  }

  private drain(out: FrameEvent[]): void {
    while (!this.failed && this.start < this.end) {
      // Keep-alives and stray line ends between messages.
      const c = this.buf[this.start]!;
      if (c === CR || c === LF) {
        if (this.startsWithPing()) {
          this.consume(4);
          out.push({ type: 'ping' });
          continue;
        }
        // Wait when what we hold could still become a ping ("\r", "\r\n", "\r\n\r").
        if (this.isPingPrefix()) return;
        this.consume(1);
        continue;
      }
      if (this.pending !== undefined) {
        if (this.end - this.start < this.pending) return;
        this.emit(out, this.pending);
        continue;
      }
      const from = Math.max(this.start, this.scanned - 3);
      const headEnd = this.buf.indexOf(HEADER_END, from);
      if (headEnd === -1 || headEnd + 4 > this.end) {
        this.scanned = this.end;
        if (this.end - this.start > this.maxMessage) this.fail(out, 513, `message header exceeds ${this.maxMessage} bytes`);
        return;
      }
      const bodyStart = headEnd + 4;
      const head = this.buf.subarray(this.start, bodyStart);
      const cl = contentLength(head);
      if (typeof cl === 'string') {
        this.fail(out, 400, cl, bodyStart);
        return;
      }
      const total = bodyStart - this.start + cl;
      if (total > this.maxMessage) {
        this.fail(out, 513, `message too large (${total} bytes, limit ${this.maxMessage})`, bodyStart);
        return;
      }
      if (this.end - this.start < total) {
        this.pending = total;
        return;
      }
      this.emit(out, total);
    }
  }

  private emit(out: FrameEvent[], total: number): void {
    out.push({ type: 'message', bytes: Buffer.from(this.buf.subarray(this.start, this.start + total)) });
    this.pending = undefined;
    this.consume(total);
  }

  private startsWithPing(): boolean {
    return (
      this.end - this.start >= 4 &&
      this.buf[this.start] === CR &&
      this.buf[this.start + 1] === LF &&
      this.buf[this.start + 2] === CR &&
      this.buf[this.start + 3] === LF
    );
  }

  private isPingPrefix(): boolean {
    const n = this.end - this.start;
    if (n >= 4) return false;
    for (let i = 0; i < n; i++) if (this.buf[this.start + i] !== HEADER_END[i]) return false;
    return true;
  }

  private consume(n: number): void {
    this.start += n;
    this.scanned = this.start;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
      this.scanned = 0;
    }
  }

  private fail(out: FrameEvent[], status: 400 | 513, reason: string, headEnd = this.end): void {
    this.failed = true;
    this.pending = undefined;
    const head = Buffer.from(this.buf.subarray(this.start, headEnd));
    out.push({ type: 'error', status, reason, head });
    this.start = 0;
    this.end = 0;
    this.scanned = 0;
  }
}

/**
 * The Content-Length of a header section, or a string saying why it cannot be framed.
 * Handles the compact form `l`, any letter case, folded values and repeated equal rows.
 */
export function contentLength(head: Buffer): number | string {
  const text = head.toString('latin1');
  const lines = text.split('\r\n');
  let value: number | undefined;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name !== 'content-length' && name !== 'l') continue;
    let v = line.slice(colon + 1);
    while (i + 1 < lines.length && (lines[i + 1]!.startsWith(' ') || lines[i + 1]!.startsWith('\t'))) v += ' ' + lines[++i]!;
    v = v.trim();
    if (!/^\d{1,10}$/.test(v)) return 'malformed Content-Length';
    const n = Number(v);
    if (value !== undefined && value !== n) return 'conflicting Content-Length headers';
    value = n;
  }
  if (value === undefined) return 'missing Content-Length on a stream transport';
  return value;
}

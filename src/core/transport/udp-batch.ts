/**
 * The wire format of datagram batches between the main thread and a UDP I/O thread
 * (udp-thread.ts): many datagrams in one ArrayBuffer, handed over (transferred, not copied) in one
 * message per turn of the sender's event loop.
 *
 * Each entry: u32 payload length, u16 port, u8 address length, the address in ASCII, the payload.
 * Addresses are literals (the I/O thread never resolves names), so ASCII is exact.
 */

const HEADER = 7;

/** Collects datagrams for one batch. */
export class BatchWriter {
  private chunks: Array<{ bytes: Uint8Array; address: string; port: number }> = [];
  private size = 0;

  get length(): number {
    return this.chunks.length;
  }

  push(bytes: Uint8Array, address: string, port: number): void {
    this.chunks.push({ bytes, address, port });
    this.size += HEADER + address.length + bytes.length;
  }

  /** The batch as one ArrayBuffer (to be transferred); the writer is empty afterwards. */
  take(): ArrayBuffer {
    const ab = new ArrayBuffer(this.size);
    const u8 = new Uint8Array(ab);
    const dv = new DataView(ab);
    let off = 0;
    for (const c of this.chunks) {
      dv.setUint32(off, c.bytes.length);
      dv.setUint16(off + 4, c.port);
      const n = c.address.length;
      u8[off + 6] = n;
      off += HEADER;
      for (let i = 0; i < n; i++) u8[off + i] = c.address.charCodeAt(i);
      off += n;
      u8.set(c.bytes, off);
      off += c.bytes.length;
    }
    this.chunks = [];
    this.size = 0;
    return ab;
  }
}

/**
 * Calls `each` for every datagram of a batch. `offset`/`length` locate the payload in `ab`; the
 * callee copies what it keeps (the batch's memory is shared by all its datagrams).
 */
export function readBatch(ab: ArrayBuffer, each: (ab: ArrayBuffer, offset: number, length: number, address: string, port: number) => void): void {
  const u8 = new Uint8Array(ab);
  const dv = new DataView(ab);
  let off = 0;
  while (off + HEADER <= ab.byteLength) {
    const len = dv.getUint32(off);
    const port = dv.getUint16(off + 4);
    const n = u8[off + 6]!;
    off += HEADER;
    let address = '';
    for (let i = 0; i < n; i++) address += String.fromCharCode(u8[off + i]!);
    off += n;
    each(ab, off, len, address, port);
    off += len;
  }
}

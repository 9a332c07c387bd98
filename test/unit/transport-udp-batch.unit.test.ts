import { describe, expect, it } from 'vitest';
import { BatchWriter, readBatch } from '../../src/core/transport/udp-batch.js';

function read(ab: ArrayBuffer): Array<{ text: string; address: string; port: number }> {
  const out: Array<{ text: string; address: string; port: number }> = [];
  readBatch(ab, (buf, offset, length, address, port) => out.push({ text: Buffer.from(buf, offset, length).toString('latin1'), address, port }));
  return out;
}

describe('datagram batches between the main thread and a UDP I/O thread', () => {
  it('carries datagrams with their IPv4 and IPv6 peers, in order, payloads byte for byte', () => {
    const w = new BatchWriter();
    const binary = Buffer.from([0, 255, 13, 10, 0x80]);
    w.push(Buffer.from('REGISTER sip:a SIP/2.0\r\n\r\n'), '127.0.0.1', 5060);
    w.push(binary, 'fe80::1:2:3:4%eth0', 65535);
    w.push(Buffer.alloc(0), '::ffff:192.0.2.1', 1);
    expect(w.length).toBe(3);
    const got = read(w.take());
    expect(got).toEqual([
      { text: 'REGISTER sip:a SIP/2.0\r\n\r\n', address: '127.0.0.1', port: 5060 },
      { text: binary.toString('latin1'), address: 'fe80::1:2:3:4%eth0', port: 65535 },
      { text: '', address: '::ffff:192.0.2.1', port: 1 },
    ]);
  });

  it('starts empty again after a batch is taken, and carries a 64 KiB datagram whole', () => {
    const w = new BatchWriter();
    w.push(Buffer.from('one'), '10.0.0.1', 5060);
    w.take();
    expect(w.length).toBe(0);
    const big = Buffer.alloc(65_507, 0x61);
    w.push(big, '10.0.0.2', 5062);
    const got = read(w.take());
    expect(got).toHaveLength(1);
    expect(got[0]!.text.length).toBe(65_507);
    expect(got[0]!.address).toBe('10.0.0.2');
    expect(read(new BatchWriter().take())).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { type SipRequest, parseMessage, parseVia, serialize } from '../../src/core/sip/index.js';
import { responseTarget, stampVia } from '../../src/core/transport/index.js';

function req(via: string, extraVia = ''): SipRequest {
  const text =
    'REGISTER sip:example.com SIP/2.0\r\n' +
    `Via: ${via}${extraVia ? `, ${extraVia}` : ''}\r\n` +
    'Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n';
  const r = parseMessage(Buffer.from(text));
  if (!r.ok || !r.message.isRequest) throw new Error('fixture');
  return r.message;
}

describe('stamping the top Via with the real source (RFC 3261 s18.2.1, RFC 3581)', () => {
  it('leaves a Via alone when sent-by is the source address and no rport is asked', () => {
    const r = req('SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1');
    expect(stampVia(r, { address: '192.0.2.1', port: 5060 })).toBe(false);
    expect(r.modified).toBe(false);
  });

  it('adds received when sent-by differs from the source (NAT, or a host name)', () => {
    const r = req('SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1');
    stampVia(r, { address: '198.51.100.7', port: 31000 });
    expect(r.topVia()!.params.get('received')).toBe('198.51.100.7');
    expect(r.topVia()!.params.has('rport')).toBe(false);
    const n = req('SIP/2.0/UDP phone.example.com;branch=z9hG4bK1');
    stampVia(n, { address: '192.0.2.1', port: 5060 });
    expect(n.topVia()!.params.get('received')).toBe('192.0.2.1');
  });

  it('fills an empty rport with the source port and always adds received then', () => {
    const r = req('SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1');
    stampVia(r, { address: '192.0.2.1', port: 40123 });
    const via = r.topVia()!;
    expect(via.params.get('rport')).toBe('40123');
    expect(via.params.get('received')).toBe('192.0.2.1');
    expect(via.branch).toBe('z9hG4bK1');
    expect(serialize(r).toString()).toContain('Via: SIP/2.0/UDP 192.0.2.1:5060;rport=40123;branch=z9hG4bK1;received=192.0.2.1\r\n');
  });

  it('rewrites only the first value of a combined Via row', () => {
    const r = req('SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1', 'SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK0');
    stampVia(r, { address: '192.0.2.1', port: 5060 });
    expect(r.vias().map((v) => [v.host, v.params.get('received')])).toEqual([
      ['10.0.0.5', '192.0.2.1'],
      ['10.0.0.9', undefined],
    ]);
  });

  it('treats equal IPv6 spellings as the same host', () => {
    const r = req('SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1');
    expect(stampVia(r, { address: '2001:0db8:0:0:0:0:0:1', port: 5060 })).toBe(false);
  });
});

describe('where responses go (RFC 3261 s18.2.2, RFC 3581 s4)', () => {
  it('UDP: received and rport win, then maddr, then sent-by with the default port', () => {
    expect(responseTarget(parseVia('SIP/2.0/UDP 10.0.0.5:5062;rport=40000;received=198.51.100.7'))).toEqual({
      transport: 'udp',
      address: '198.51.100.7',
      port: 40000,
    });
    expect(responseTarget(parseVia('SIP/2.0/UDP 10.0.0.5:5062;received=198.51.100.7'))).toMatchObject({ address: '198.51.100.7', port: 5062 });
    expect(responseTarget(parseVia('SIP/2.0/UDP 10.0.0.5;maddr=239.1.1.1'))).toMatchObject({ address: '239.1.1.1', port: 5060 });
    expect(responseTarget(parseVia('SIP/2.0/UDP [2001:db8::1]'))).toMatchObject({ address: '2001:db8::1', port: 5060 });
  });

  it('TCP/TLS: the connection the request came from, else received with the sent-by port', () => {
    expect(responseTarget(parseVia('SIP/2.0/TLS 10.0.0.5;rport=40001;received=198.51.100.7'))).toEqual({
      transport: 'tls',
      address: '198.51.100.7',
      port: 5061,
      connectionAddress: '198.51.100.7',
      connectionPort: 40001,
    });
  });

  it('has no target for transports sipledger does not speak', () => {
    expect(responseTarget(parseVia('SIP/2.0/SCTP 10.0.0.5'))).toBeUndefined();
  });
});

import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CidrList, canonicalIp, cidrContains, formatCidr, parseCidr, parseIp } from '../../src/core/security/ip.js';
import { canonicalBanValue } from '../../src/core/security/ban-values.js';

function inside(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const a = parseIp(ip);
  if (!c || !a) throw new Error(`bad fixture ${cidr} ${ip}`);
  return cidrContains(c, a);
}

describe('IP address parsing', () => {
  it('accepts dotted quads and refuses octets above 255, leading zeros, short or long forms', () => {
    expect(canonicalIp('192.0.2.1')).toBe('192.0.2.1');
    expect(canonicalIp('0.0.0.0')).toBe('0.0.0.0');
    expect(canonicalIp('255.255.255.255')).toBe('255.255.255.255');
    for (const bad of ['256.0.0.1', '010.0.0.1', '1.2.3', '1.2.3.4.5', '1.2.3.', ' ', '', 'example.com', '1.2.3.4/24', '-1.2.3.4', '1.2.3.0x4']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it('writes IPv6 the RFC 5952 way: lowercase, no leading zeros, longest zero run compressed, first on a tie', () => {
    expect(canonicalIp('2001:0DB8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(canonicalIp('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(canonicalIp('2001:db8:0:1:0:0:0:1')).toBe('2001:db8:0:1::1');
    // A single zero group is not compressed (RFC 5952 s4.2.2).
    expect(canonicalIp('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(canonicalIp('::')).toBe('::');
    expect(canonicalIp('::1')).toBe('::1');
    expect(canonicalIp('1::')).toBe('1::');
    expect(canonicalIp('[2001:db8::1]')).toBe('2001:db8::1');
    expect(canonicalIp('fe80::1%eth0')).toBe('fe80::1');
    expect(canonicalIp('1:2:3:4:5:6:7::')).toBe('1:2:3:4:5:6:7:0');
    expect(canonicalIp('64:ff9b::192.0.2.33')).toBe('64:ff9b::c000:221');
  });

  it('refuses malformed IPv6: two "::", too many groups, five hex digits, a dotted quad not at the end', () => {
    for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '1::2:3:4:5:6:7:8', '12345::', ':1::2', '1:2:3:4:5:6:7:8:', '1.2.3.4::', '::ffff:256.1.1.1', 'g::1', ':::']) {
      expect(parseIp(bad), bad).toBeUndefined();
    }
  });

  it('reads an IPv4-mapped IPv6 address as the IPv4 address it maps', () => {
    expect(canonicalIp('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(canonicalIp('::FFFF:c000:0201')).toBe('192.0.2.1');
    expect(canonicalIp('[::ffff:10.0.0.1]')).toBe('10.0.0.1');
    // IPv4-compatible (deprecated) and NAT64 addresses are not mapped ones.
    expect(parseIp('::192.0.2.1')!.family).toBe(6);
  });

  it('agrees with node:net about what an address is, on generated addresses in every spelling', () => {
    const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });
    fc.assert(
      fc.property(v6, fc.boolean(), (groups, upper) => {
        const full = groups.map((g) => g.toString(16)).join(':');
        const text = upper ? full.toUpperCase() : full;
        const canon = canonicalIp(text);
        expect(canon).toBeDefined();
        expect(isIP(canon!)).toBe(canon!.includes(':') ? 6 : 4);
        // The canonical form parses back to the same address.
        expect(canonicalIp(canon!)).toBe(canon);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), (s) => {
        // Whatever we accept, node accepts too (we may be stricter, never looser).
        if (parseIp(s) !== undefined && !s.includes('%') && !s.startsWith('[')) expect(isIP(s.trim())).not.toBe(0);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('CIDR matching', () => {
  it('matches IPv4 prefixes at their edges', () => {
    expect(inside('10.0.0.0/8', '10.0.0.0')).toBe(true);
    expect(inside('10.0.0.0/8', '10.255.255.255')).toBe(true);
    expect(inside('10.0.0.0/8', '11.0.0.0')).toBe(false);
    expect(inside('10.0.0.0/8', '9.255.255.255')).toBe(false);
    expect(inside('192.0.2.128/25', '192.0.2.127')).toBe(false);
    expect(inside('192.0.2.128/25', '192.0.2.128')).toBe(true);
    expect(inside('203.0.113.7/32', '203.0.113.7')).toBe(true);
    expect(inside('203.0.113.7/32', '203.0.113.6')).toBe(false);
    expect(inside('0.0.0.0/0', '255.255.255.255')).toBe(true);
    expect(inside('128.0.0.0/1', '127.255.255.255')).toBe(false);
    expect(inside('128.0.0.0/1', '128.0.0.0')).toBe(true);
  });

  it('matches IPv6 prefixes across 32-bit word boundaries', () => {
    expect(inside('2001:db8::/32', '2001:db8:ffff::1')).toBe(true);
    expect(inside('2001:db8::/32', '2001:db9::1')).toBe(false);
    expect(inside('2001:db8::/33', '2001:db8:7fff::1')).toBe(true);
    expect(inside('2001:db8::/33', '2001:db8:8000::1')).toBe(false);
    expect(inside('2001:db8::/64', '2001:db8::ffff:ffff:ffff:ffff')).toBe(true);
    expect(inside('2001:db8::/64', '2001:db8:0:1::')).toBe(false);
    expect(inside('2001:db8::1/128', '2001:db8::1')).toBe(true);
    expect(inside('2001:db8::1/128', '2001:db8::2')).toBe(false);
    expect(inside('::/0', '2001:db8::1')).toBe(true);
    expect(inside('2001:db8::/127', '2001:db8::1')).toBe(true);
    expect(inside('2001:db8::/127', '2001:db8::2')).toBe(false);
  });

  it('keeps the families apart, except that mapped addresses and mapped prefixes are IPv4', () => {
    expect(inside('::/0', '192.0.2.1')).toBe(false);
    expect(inside('0.0.0.0/0', '2001:db8::1')).toBe(false);
    expect(inside('10.0.0.0/8', '::ffff:10.1.2.3')).toBe(true);
    expect(formatCidr(parseCidr('::ffff:10.0.0.0/104')!)).toBe('10.0.0.0/8');
    expect(inside('::ffff:10.0.0.0/104', '10.9.9.9')).toBe(true);
    // A mapped prefix shorter than the mapping itself covers IPv6 space: it stays IPv6.
    expect(parseCidr('::ffff:0.0.0.0/80')!.family).toBe(6);
  });

  it('normalises host bits beyond the prefix and refuses bad prefixes', () => {
    expect(formatCidr(parseCidr('10.1.2.3/8')!)).toBe('10.0.0.0/8');
    expect(formatCidr(parseCidr('2001:db8::1/32')!)).toBe('2001:db8::/32');
    expect(formatCidr(parseCidr('192.0.2.1')!)).toBe('192.0.2.1/32');
    expect(formatCidr(parseCidr('2001:db8::1')!)).toBe('2001:db8::1/128');
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', '10.0.0.0/', '/8', '10.0.0.0/08', '10.0.0.0/-1', '10.0.0.0/8/8', 'host/8', '10.0.0.0/ 8']) {
      expect(parseCidr(bad), bad).toBeUndefined();
    }
  });

  it('a CidrList names the prefix that matched and refuses bad entries by name', () => {
    const list = new CidrList(['10.0.0.0/8', '2001:db8::/32', '192.0.2.10']);
    expect(list.match('10.20.30.40')).toBe('10.0.0.0/8');
    expect(list.match('::ffff:10.20.30.40')).toBe('10.0.0.0/8');
    expect(list.match('2001:DB8::5')).toBe('2001:db8::/32');
    expect(list.match('192.0.2.10')).toBe('192.0.2.10/32');
    expect(list.match('192.0.2.11')).toBeUndefined();
    expect(list.match('gateway.example.com')).toBeUndefined();
    expect(() => new CidrList(['10.0.0.0/8', '10.0.0.0/40'])).toThrow(/'10.0.0.0\/40'/);
  });
});

describe('ban values', () => {
  it('has one spelling per address, prefix and user', () => {
    expect(canonicalBanValue('ip', '::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(canonicalBanValue('ip', '2001:DB8::0001')).toBe('2001:db8::1');
    expect(canonicalBanValue('ip', '198.51.100.77/24')).toBe('198.51.100.0/24');
    expect(canonicalBanValue('ip', '198.51.100.77/32')).toBe('198.51.100.77');
    expect(canonicalBanValue('ip', 'not-an-ip')).toBeUndefined();
    expect(canonicalBanValue('user', 'alice@Example.COM')).toBe('alice@example.com');
    expect(canonicalBanValue('user', 'Alice@example.com')).toBe('Alice@example.com');
    expect(canonicalBanValue('user', 'alice')).toBeUndefined();
    expect(canonicalBanValue('user', '@example.com')).toBeUndefined();
  });
});

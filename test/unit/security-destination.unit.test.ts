import { describe, expect, it } from 'vitest';
import { DestinationFilter } from '../../src/core/security/destination-filter.js';
import { securityConfigFrom, type DestinationFilterConfig } from '../../src/core/security/config.js';

function filter(protectedList: DestinationFilterConfig): DestinationFilter {
  return new DestinationFilter(securityConfigFrom({ destinations: protectedList }).destinations);
}

describe('destination filter', () => {
  const f = filter({
    protected: [
      { name: 'pstn-gateways', addresses: ['192.168.2.10', '10.20.0.0/16'], allowSources: ['10.30.0.0/24'], allowUsers: ['pstn-trunk@example.com'] },
      { name: 'media', addresses: ['2001:db8:5::/48'], ports: [5060, 5080] },
      { name: 'tls-admin', addresses: ['192.0.2.7'], ports: [5061], transports: ['tls'] },
    ],
  });

  it('denies relaying to a protected address or prefix from anyone not on its allow-lists', () => {
    expect(f.check('192.168.2.10', 5060)).toBe('deny');
    expect(f.check('10.20.255.1', 5060, { ip: '203.0.113.5', user: 'alice@example.com' })).toBe('deny');
    expect(f.match('10.20.0.1', 5060)).toBe('pstn-gateways');
    // Just outside the prefix, and another host.
    expect(f.check('10.21.0.1', 5060)).toBe('allow');
    expect(f.check('192.168.2.11', 5060)).toBe('allow');
  });

  it('allows it from an allowed source prefix or for an allowed authenticated user', () => {
    expect(f.check('192.168.2.10', 5060, { ip: '10.30.0.77' })).toBe('allow');
    expect(f.check('192.168.2.10', 5060, { ip: '::ffff:10.30.0.77' })).toBe('allow');
    expect(f.check('192.168.2.10', 5060, { ip: '10.30.1.1' })).toBe('deny');
    expect(f.check('192.168.2.10', 5060, { user: 'pstn-trunk@EXAMPLE.com' })).toBe('allow');
    // The user part is case-sensitive (RFC 3261 s19.1.4).
    expect(f.check('192.168.2.10', 5060, { user: 'PSTN-trunk@example.com' })).toBe('deny');
    expect(f.stats.allowedByRule).toBeGreaterThan(0);
  });

  it('protects only the listed ports and transports when a rule names them', () => {
    expect(f.check('2001:db8:5:1::9', 5060)).toBe('deny');
    expect(f.check('2001:db8:5:1::9', 5080)).toBe('deny');
    expect(f.check('2001:db8:5:1::9', 5070)).toBe('allow');
    expect(f.check('2001:DB8:0005:0001:0000:0000:0000:0009', 5060)).toBe('deny');
    expect(f.check('[2001:db8:5::1]', 5060)).toBe('deny');
    expect(f.check('2001:db8:6::1', 5060)).toBe('allow');
    expect(f.check('192.0.2.7', 5061, {}, 'tls')).toBe('deny');
    expect(f.check('192.0.2.7', 5061, {}, 'udp')).toBe('allow');
    // Transport unknown: the rule applies (fail closed).
    expect(f.check('192.0.2.7', 5061)).toBe('deny');
    expect(f.check('192.0.2.7', 5060, {}, 'tls')).toBe('allow');
  });

  it('a destination inside several rules needs every one of them to admit the caller', () => {
    const two = filter({
      protected: [
        { addresses: ['10.0.0.0/8'], allowSources: ['192.0.2.0/24'] },
        { addresses: ['10.1.0.0/16'], allowUsers: ['ops@example.com'] },
      ],
    });
    expect(two.check('10.2.0.1', 5060, { ip: '192.0.2.1' })).toBe('allow');
    expect(two.check('10.1.0.1', 5060, { ip: '192.0.2.1' })).toBe('deny');
    expect(two.check('10.1.0.1', 5060, { ip: '192.0.2.1', user: 'ops@example.com' })).toBe('allow');
  });

  it('lets through what is not an IP literal (checked after DNS resolution) and everything when nothing is protected', () => {
    expect(f.check('gw.example.com', 5060)).toBe('allow');
    const none = filter({ protected: [] });
    expect(none.empty).toBe(true);
    expect(none.check('192.168.2.10', 5060)).toBe('allow');
  });

  it('refuses a configuration with a bad address, naming its key path', () => {
    expect(() => securityConfigFrom({ destinations: { protected: [{ addresses: ['10.0.0.0/8', '10.0.0.0/99'], allowSources: ['nope'] }] } })).toThrow(
      /security\.destinations\.protected\[0\]\.addresses\[1\]: '10\.0\.0\.0\/99'[\s\S]*allowSources\[0\]: 'nope'/,
    );
  });
});

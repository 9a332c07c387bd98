/**
 * The `security:` configuration: the schema fragment accepts what securityConfigFrom understands
 * (the defaults included) and refuses unknown keys and bad values, and securityConfigFrom fills in
 * defaults and names the key path of each problem a schema cannot see.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SECURITY, SecurityConfigError, securityConfigFrom } from '../../src/core/security/config.js';

const root = path.resolve(import.meta.dirname, '../..');
const fragment = JSON.parse(readFileSync(path.join(root, 'src/core/security/config-fragment.json'), 'utf8')) as { security: object };
const configSchema = JSON.parse(readFileSync(path.join(root, 'schemas/config.schema.json'), 'utf8')) as { properties: Record<string, unknown> };

/** The configuration schema as it will be once the fragment is pasted into its properties. */
function validator(): (doc: unknown) => { ok: boolean; errors: string[] } {
  const schema = { ...configSchema, properties: { ...configSchema.properties, ...fragment } };
  const ajv = new Ajv({ allErrors: true, strict: false });
  const v = ajv.compile(schema);
  return (doc) => (v(doc) ? { ok: true, errors: [] } : { ok: false, errors: (v.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`) });
}

const base = { backends: { local: { type: 'memory', users: [] } }, domains: [{ domain: 'example.com', backend: 'local' }] };

const example = YAML.parse(`
security:
  bruteForce:
    enabled: true
    action: drop
    ip: { failures: 30, windowSeconds: 60, banSeconds: 900 }
    user: { failures: 5, windowSeconds: 600, banSeconds: 300 }
    nat: { windowSeconds: 7200, perUser: 0.5, maxMultiplier: 10 }
    causes: [bad_password, unknown_user]
    exempt: [192.0.2.0/24, "2001:db8:1::/48"]
    maxTracked: 50000
  flood:
    requests: 200
    windowSeconds: 1
    logIntervalSeconds: 30
    exempt: [192.0.2.10]
  destinations:
    protected:
      - name: pstn-gateways
        addresses: [192.168.2.10, 10.20.0.0/16]
        ports: [5060]
        transports: [udp, tcp]
        allowSources: [10.30.0.0/24]
        allowUsers: [pstn-trunk@example.com]
`) as { security: Parameters<typeof securityConfigFrom>[0] };

describe('security configuration', () => {
  it('the schema with the fragment accepts a full security section and the defaults', () => {
    const validate = validator();
    expect(validate({ ...base, ...example })).toEqual({ ok: true, errors: [] });
    expect(validate({ ...base, security: DEFAULT_SECURITY })).toEqual({ ok: true, errors: [] });
    expect(validate({ ...base, security: {} })).toEqual({ ok: true, errors: [] });
    expect(validate(base)).toEqual({ ok: true, errors: [] });
  });

  it('the schema refuses unknown keys, bad enums and out-of-range numbers', () => {
    const validate = validator();
    for (const bad of [
      { bruteForce: { action: 'tarpit' } },
      { bruteForce: { ip: { failures: -1 } } },
      { bruteForce: { causes: ['no_credentials'] } },
      { bruteForce: { treshold: 3 } },
      { flood: { requests: 0 } },
      { flood: { windowSeconds: 0 } },
      { destinations: { protected: [{ ports: [5060] }] } },
      { destinations: { protected: [{ addresses: ['10.0.0.1'], ports: [70000] }] } },
      { destinations: { protected: [{ addresses: ['10.0.0.1'], allowUsers: ['nodomain'] }] } },
    ]) {
      expect(validate({ ...base, security: bad }).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it('fills in defaults under what the file gives', () => {
    const c = securityConfigFrom({ bruteForce: { ip: { failures: 5 } }, flood: { requests: 10 } });
    expect(c.bruteForce.ip).toEqual({ failures: 5, windowSeconds: 60, banSeconds: 600 });
    expect(c.bruteForce.user).toEqual({ failures: 10, windowSeconds: 300, banSeconds: 300 });
    expect(c.bruteForce.action).toBe('reject');
    expect(c.flood).toMatchObject({ requests: 10, windowSeconds: 2, exempt: ['127.0.0.0/8', '::1'] });
    expect(c.destinations.protected).toEqual([]);
    expect(securityConfigFrom(undefined)).toEqual(DEFAULT_SECURITY);
    expect(securityConfigFrom(example.security).bruteForce.nat).toEqual({ windowSeconds: 7200, perUser: 0.5, maxMultiplier: 10 });
  });

  it('names the key path of every address that does not parse', () => {
    let err: unknown;
    try {
      securityConfigFrom({ bruteForce: { exempt: ['10.0.0.0/8', '10.0.0.300'] }, flood: { exempt: ['::1', 'localhost'] } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecurityConfigError);
    expect((err as SecurityConfigError).code).toBe('CONFIG_INVALID');
    expect((err as SecurityConfigError).problems).toEqual([
      { path: 'security.bruteForce.exempt[1]', message: "'10.0.0.300' is not an IP address or CIDR prefix" },
      { path: 'security.flood.exempt[1]', message: "'localhost' is not an IP address or CIDR prefix" },
    ]);
  });
});

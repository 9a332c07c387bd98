/**
 * The example configurations shipped in examples/ are valid and say what their comments promise:
 * the quick start (users alice and bob, sipledger.test, 127.0.0.1:5060, admin on 8080), the small
 * site (Kamailio subscriber table, file log) and the carrier (two RADIUS servers, Kafka).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, configFromObject, loadConfig } from '../../src/config/config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const example = (name: string): Record<string, unknown> => YAML.parse(readFileSync(path.join(root, 'examples', name), 'utf8')) as Record<string, unknown>;
const tmp = mkdtempSync(path.join(tmpdir(), 'sipledger-examples-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('example configurations', () => {
  it('quickstart.yaml: alice and bob in sipledger.test, UDP+TCP on 127.0.0.1:5060, file log, admin on loopback 8080', () => {
    const cfg = loadConfig(path.join(root, 'examples', 'quickstart.yaml'));
    expect(cfg.domains).toEqual([{ domain: 'sipledger.test', backend: 'local' }]);
    const local = cfg.backends['local'];
    expect(local?.type).toBe('memory');
    expect(local?.type === 'memory' && local.users?.map((u) => [u.username, u.password])).toEqual([
      ['alice', 'alice-secret'],
      ['bob', 'bob-secret'],
    ]);
    expect(cfg.listen.map((l) => `${l.transport}:${l.address}:${l.port}`)).toEqual(['udp:127.0.0.1:5060', 'tcp:127.0.0.1:5060']);
    expect(cfg.log.type).toBe('file');
    expect(cfg.admin).toMatchObject({ enabled: true, address: '127.0.0.1', port: 8080 });
  });

  it('small-site.yaml: a MySQL subscriber table with its password from a file, and a file log with group commit', () => {
    const doc = example('small-site.yaml');
    const pwFile = path.join(tmp, 'db-password');
    writeFileSync(pwFile, 'kamailioro-password\n');
    const backends = doc['backends'] as Record<string, Record<string, unknown>>;
    backends['kamailio-db']!['password'] = { file: pwFile };
    const cfg = configFromObject(doc, 'small-site.yaml', tmp);
    const db = cfg.backends['kamailio-db'];
    expect(db).toMatchObject({ type: 'mysql', useDomain: true, calculateHa1: false, uriTable: 'uri', aliasTable: 'dbaliases' });
    expect(cfg.log).toMatchObject({ type: 'file', dir: '/var/lib/sipledger/log', fsync: 'batch' });
    expect(cfg.domains[0]).toMatchObject({ domain: 'example.com', backend: 'kamailio-db', algorithms: ['MD5'] });
  });

  it('small-site.yaml as shipped names the missing password file by key path', () => {
    expect(() => configFromObject(example('small-site.yaml'), 'small-site.yaml', tmp)).toThrow(ConfigError);
    try {
      configFromObject(example('small-site.yaml'), 'small-site.yaml', tmp);
    } catch (err) {
      expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['backends.kamailio-db.password']);
    }
  });

  it('carrier.yaml: two RADIUS servers, a Kafka log, secrets from the environment, admin off loopback with a token', () => {
    const env = { RADIUS_SECRET: 'r', SIPLEDGER_NONCE_SECRET: 'n', SIPLEDGER_ADMIN_TOKEN: 't' };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    try {
      const cfg = configFromObject(example('carrier.yaml'), 'carrier.yaml', tmp);
      const aaa = cfg.backends['aaa'];
      expect(aaa?.type === 'radius' && aaa.servers.map((s) => s.host)).toEqual(['10.0.0.11', '10.0.0.12']);
      expect(cfg.log).toMatchObject({ type: 'kafka', topic: 'sipledger-events' });
      expect((cfg.log as { brokers: string[] }).brokers).toHaveLength(3);
      expect(cfg.auth.secret).toEqual({ env: 'SIPLEDGER_NONCE_SECRET' });
      expect(cfg.admin).toMatchObject({ address: '0.0.0.0', token: { env: 'SIPLEDGER_ADMIN_TOKEN' } });
      expect(cfg.instance).toBe('edge-a');
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('carrier.yaml without its environment names each missing variable', () => {
    const saved = { ...process.env };
    for (const k of ['RADIUS_SECRET', 'SIPLEDGER_NONCE_SECRET', 'SIPLEDGER_ADMIN_TOKEN']) delete process.env[k];
    try {
      configFromObject(example('carrier.yaml'), 'carrier.yaml', tmp);
      expect.unreachable('the configuration should be refused');
    } catch (err) {
      const problems = (err as ConfigError).problems;
      expect(problems.map((p) => p.path).sort()).toEqual(['admin.token', 'auth.secret', 'backends.aaa.servers[0].secret', 'backends.aaa.servers[1].secret']);
      expect(problems.find((p) => p.path === 'auth.secret')?.message).toContain('SIPLEDGER_NONCE_SECRET');
    } finally {
      Object.assign(process.env, saved);
    }
  });
});

describe('listen[].ioThread', () => {
  const withListen = (listen: unknown[]): Record<string, unknown> => ({ ...example('quickstart.yaml'), listen });

  it('is accepted on a UDP listener and kept in the configuration', () => {
    const cfg = configFromObject(withListen([{ transport: 'udp', address: '127.0.0.1', port: 5060, ioThread: true }]), 'io.yaml', tmp);
    expect(cfg.listen[0]).toMatchObject({ transport: 'udp', ioThread: true });
  });

  const problemsOf = (listen: unknown[]): ReadonlyArray<{ path: string; message: string }> => {
    try {
      configFromObject(withListen(listen), 'io.yaml', tmp);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).problems;
    }
    throw new Error('the configuration was accepted');
  };

  it('on a TCP listener is refused with the key path named', () => {
    const problems = problemsOf([
      { transport: 'udp', address: '127.0.0.1', port: 5060 },
      { transport: 'tcp', address: '127.0.0.1', port: 5060, ioThread: true },
    ]);
    expect(problems).toEqual([{ path: 'listen[1].ioThread', message: 'an I/O thread is for udp listeners only' }]);
  });

  it('that is not a boolean is refused with the key path named', () => {
    const problems = problemsOf([{ transport: 'udp', address: '127.0.0.1', port: 5062, ioThread: 'yes' }]);
    expect(problems.map((p) => p.path)).toEqual(['listen[0].ioThread']);
    expect(problems[0]!.message).toMatch(/boolean/);
  });
});

describe('warmUp', () => {
  const withWarmUp = (warmUp: unknown): Record<string, unknown> => ({ ...example('quickstart.yaml'), warmUp });

  it('runs 5,000 simulated registrations and 1,000 calls by default, and takes other numbers or 0 (none)', () => {
    expect(configFromObject(example('quickstart.yaml'), 'w.yaml', tmp).warmUp).toEqual({ registrations: 5000, calls: 1000 });
    expect(configFromObject(withWarmUp({ registrations: 0, calls: 0 }), 'w.yaml', tmp).warmUp).toEqual({ registrations: 0, calls: 0 });
    expect(configFromObject(withWarmUp({ registrations: 20000 }), 'w.yaml', tmp).warmUp).toEqual({ registrations: 20000, calls: 1000 });
  });

  it('refuses a negative or fractional count, or an unknown key, with the key path named', () => {
    for (const [warmUp, path] of [
      [{ registrations: -1 }, 'warmUp.registrations'],
      [{ registrations: 1.5 }, 'warmUp.registrations'],
      [{ calls: -5 }, 'warmUp.calls'],
      [{ seconds: 3 }, 'warmUp'],
    ] as const) {
      let problems: ReadonlyArray<{ path: string; message: string }> = [];
      try {
        configFromObject(withWarmUp(warmUp), 'w.yaml', tmp);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        problems = (e as ConfigError).problems;
      }
      expect(problems.map((p) => p.path), JSON.stringify(warmUp)).toEqual([path]);
    }
  });
});

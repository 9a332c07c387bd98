/**
 * The configuration file: YAML, validated once at start against schemas/config.schema.json
 * (fastify's habit), then checked for references between sections. Every problem names the key
 * path and what is wrong; nothing starts with a bad configuration.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import YAML from 'yaml';
import { securityConfigFrom, SecurityConfigError, type SecurityConfig, type SecurityConfigInput } from '../core/security/config.js';

export type Secret = string | { env: string } | { file: string };

export interface ListenConfig {
  transport: 'udp' | 'tcp' | 'tls';
  address: string;
  port: number;
  cert?: string;
  key?: string;
  /** UDP: receive and send on an I/O thread of its own, so the main thread's system calls move there. */
  ioThread?: boolean;
}

export interface MemoryUserConfig {
  username: string;
  domain?: string;
  password?: Secret;
  ha1?: string;
  ha1b?: string;
  attributes?: Record<string, string | number>;
  identities?: string[];
}

export type BackendConfig =
  | { type: 'memory'; users?: MemoryUserConfig[]; usersFile?: string }
  | {
      type: 'mysql';
      url?: Secret;
      host?: string;
      port?: number;
      user?: string;
      password?: Secret;
      database?: string;
      table?: string;
      columns?: { user?: string; domain?: string; password?: string; ha1?: string; ha1b?: string };
      useDomain?: boolean;
      calculateHa1?: boolean;
      loadCredentials?: Record<string, string>;
      uriTable?: string | false;
      aliasTable?: string | false;
      queryTimeoutMs?: number;
      poolSize?: number;
      cacheTtlMs?: number;
    }
  | {
      type: 'radius';
      servers: Array<{ host: string; port?: number; secret: Secret }>;
      timeoutMs?: number;
      retries?: number;
      deadTimeMs?: number;
      nasIpAddress?: string;
    };

export type LogConfig =
  | { type: 'file'; dir: string; fsync?: 'always' | 'batch' | 'none'; segmentBytes?: number; lingerMs?: number }
  | { type: 'kafka'; brokers: string[]; topic: string; clientId?: string; fetchWaitMs?: number; lingerMs?: number }
  | { type: 'memory' };

export interface SipledgerConfig {
  instance?: string;
  listen: ListenConfig[];
  limits: {
    maxMessageBytes: number;
    maxHeaders: number;
    maxLineLength: number;
    maxTransactions?: number;
    tcpIdleTimeoutMs?: number;
    maxConnections?: number;
    maxConnectionsPerIp?: number;
  };
  registrar: { minExpires: number; maxExpires: number; defaultExpires: number; maxContacts: number; appendTimeoutMs: number; maxPendingPerAor: number };
  auth: { secret?: Secret; nonceLifetime: number; strictUri: boolean; lookupTimeoutMs: number };
  backends: Record<string, BackendConfig>;
  domains: Array<{ domain: string; realm?: string; backend: string; algorithms?: string[] }>;
  aliases: Record<string, string>;
  log: LogConfig;
  snapshots: { dir?: string; every?: number };
  admin: { enabled: boolean; address: string; port: number; token?: Secret };
  logging: { level: string; sipTrace: boolean };
  retryAfter: number;
  /** Simulated registrations and calls run through a private copy of the request path before the sockets open (src/warmup.ts). */
  warmUp: { registrations: number; calls: number };
  /** Brute-force guard, flood limit and destination filter (docs/security.md). */
  security: SecurityConfig;
  /** The directory relative paths in the file are resolved against. */
  baseDir: string;
}

export interface ConfigProblem {
  /** The key path, e.g. `domains[0].backend`. */
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(`${file}: invalid configuration\n${problems.map((p) => `  ${p.path || '(top level)'}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The package root, found from this file in src/ (tsx) or dist/src/ (built). */
export function packageRoot(): string {
  let dir = here;
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(path.join(dir, 'package.json'));
      return dir;
    } catch {
      dir = path.dirname(dir);
    }
  }
  throw new Error('sipledger package root not found');
}

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(doc: unknown): ErrorObject[] {
  if (!validator) {
    const schema = JSON.parse(readFileSync(path.join(packageRoot(), 'schemas', 'config.schema.json'), 'utf8')) as object;
    const ajv = new Ajv({ allErrors: true, strict: false });
    validator = ajv.compile(schema);
  }
  return validator(doc) ? [] : (validator.errors ?? []);
}

/** Reads, validates and completes a configuration file. Throws ConfigError listing every problem. */
export function loadConfig(file: string): SipledgerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `not valid YAML: ${(err as Error).message.split('\n')[0]}` }]);
  }
  return configFromObject(doc, file, path.dirname(path.resolve(file)));
}

export function configFromObject(doc: unknown, file = '<config>', baseDir = process.cwd()): SipledgerConfig {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, [{ path: '', message: 'must be a mapping of keys to values' }]);
  }
  const errors = validate(doc);
  if (errors.length) throw new ConfigError(file, summarise(errors));
  const raw = doc as Record<string, unknown> & Partial<SipledgerConfig>;

  const cfg: SipledgerConfig = {
    ...(raw.instance !== undefined ? { instance: raw.instance } : {}),
    listen: raw.listen ?? [
      { transport: 'udp', address: '127.0.0.1', port: 5060 },
      { transport: 'tcp', address: '127.0.0.1', port: 5060 },
    ],
    limits: { maxMessageBytes: 16384, maxHeaders: 128, maxLineLength: 8192, ...(raw.limits ?? {}) },
    registrar: { minExpires: 60, maxExpires: 3600, defaultExpires: 3600, maxContacts: 10, appendTimeoutMs: 3000, maxPendingPerAor: 32, ...(raw.registrar ?? {}) },
    auth: { nonceLifetime: 30, strictUri: false, lookupTimeoutMs: 2000, ...(raw.auth ?? {}) },
    backends: raw.backends!,
    domains: raw.domains!,
    aliases: raw.aliases ?? {},
    log: raw.log ?? { type: 'file', dir: 'data/log', fsync: 'batch' },
    snapshots: raw.snapshots ?? {},
    admin: { enabled: true, address: '127.0.0.1', port: 8080, ...(raw.admin ?? {}) },
    logging: { level: 'info', sipTrace: false, ...(raw.logging ?? {}) },
    retryAfter: raw.retryAfter ?? 5,
    warmUp: { registrations: 5000, calls: 1000, ...(raw.warmUp ?? {}) },
    security: undefined as unknown as SecurityConfig,
    baseDir,
  };

  const problems: ConfigProblem[] = [];
  try {
    cfg.security = securityConfigFrom(raw['security'] as SecurityConfigInput | undefined);
  } catch (err) {
    if (!(err instanceof SecurityConfigError)) throw err;
    problems.push(...err.problems);
  }
  cfg.domains.forEach((d, i) => {
    if (!cfg.backends[d.backend]) {
      problems.push({ path: `domains[${i}].backend`, message: `no backend named '${d.backend}' (defined: ${Object.keys(cfg.backends).join(', ')})` });
      return;
    }
    const b = cfg.backends[d.backend]!;
    if (b.type === 'radius' && d.algorithms?.some((a) => a !== 'MD5' && a !== 'MD5-sess')) {
      problems.push({ path: `domains[${i}].algorithms`, message: 'a RADIUS backend can check only MD5 and MD5-sess' });
    }
  });
  const seen = new Map<string, number>();
  cfg.domains.forEach((d, i) => {
    const k = d.domain.toLowerCase();
    if (seen.has(k)) problems.push({ path: `domains[${i}].domain`, message: `'${d.domain}' is already served by domains[${seen.get(k)}]` });
    seen.set(k, i);
  });
  cfg.listen.forEach((l, i) => {
    if (l.transport === 'tls' && (!l.cert || !l.key)) problems.push({ path: `listen[${i}]`, message: 'a tls listener needs cert and key' });
    if (l.ioThread && l.transport !== 'udp') problems.push({ path: `listen[${i}].ioThread`, message: 'an I/O thread is for udp listeners only' });
  });
  for (const [name, b] of Object.entries(cfg.backends)) {
    if (b.type === 'memory') {
      (b.users ?? []).forEach((u, i) => {
        if (u.password === undefined && u.ha1 === undefined && u.ha1b === undefined) {
          problems.push({ path: `backends.${name}.users[${i}]`, message: 'needs one of password, ha1 or ha1b' });
        }
      });
    }
    if (b.type === 'mysql' && b.url === undefined && b.host === undefined) {
      problems.push({ path: `backends.${name}`, message: 'needs url or host' });
    }
  }
  if (cfg.registrar.minExpires > cfg.registrar.maxExpires) {
    problems.push({ path: 'registrar.minExpires', message: `is larger than registrar.maxExpires (${cfg.registrar.maxExpires})` });
  }
  // Secrets that come from the environment or files must be there now, not on first use.
  forEachSecret(cfg, (secret, p) => {
    try {
      resolveSecret(secret, baseDir);
    } catch (err) {
      problems.push({ path: p, message: (err as Error).message });
    }
  });
  if (problems.length) throw new ConfigError(file, problems);

  // Relative paths are relative to the configuration file.
  if (cfg.log.type === 'file') cfg.log = { ...cfg.log, dir: path.resolve(baseDir, cfg.log.dir) };
  if (cfg.snapshots.dir) cfg.snapshots = { ...cfg.snapshots, dir: path.resolve(baseDir, cfg.snapshots.dir) };
  else if (cfg.log.type === 'file') cfg.snapshots = { ...cfg.snapshots, dir: path.join(path.dirname(cfg.log.dir), 'snapshots') };
  // A Kafka instance without snapshots would replay the whole retained topic on every start.
  else if (cfg.log.type === 'kafka') cfg.snapshots = { ...cfg.snapshots, dir: path.resolve(baseDir, 'data', cfg.instance ?? 'default', 'snapshots') };
  cfg.listen = cfg.listen.map((l) => ({
    ...l,
    ...(l.cert ? { cert: path.resolve(baseDir, l.cert) } : {}),
    ...(l.key ? { key: path.resolve(baseDir, l.key) } : {}),
  }));
  return cfg;
}

function forEachSecret(cfg: SipledgerConfig, fn: (s: Secret, path: string) => void): void {
  if (cfg.auth.secret !== undefined) fn(cfg.auth.secret, 'auth.secret');
  if (cfg.admin.token !== undefined) fn(cfg.admin.token, 'admin.token');
  for (const [name, b] of Object.entries(cfg.backends)) {
    if (b.type === 'mysql') {
      if (b.url !== undefined) fn(b.url, `backends.${name}.url`);
      if (b.password !== undefined) fn(b.password, `backends.${name}.password`);
    } else if (b.type === 'radius') {
      b.servers.forEach((s, i) => fn(s.secret, `backends.${name}.servers[${i}].secret`));
    } else {
      (b.users ?? []).forEach((u, i) => {
        if (u.password !== undefined) fn(u.password, `backends.${name}.users[${i}].password`);
      });
    }
  }
}

export type MysqlBackendConfig = Extract<BackendConfig, { type: 'mysql' }>;

/**
 * Where a mysql backend's subscriber table is and how it is read, secrets resolved: what both the
 * credential store and `sipledger users` connect with. Keys the configuration leaves out are absent.
 */
export function mysqlConnection(b: MysqlBackendConfig, baseDir: string) {
  const out = {
    url: b.url !== undefined ? resolveSecret(b.url, baseDir) : undefined,
    host: b.host,
    port: b.port,
    user: b.user,
    password: b.password !== undefined ? resolveSecret(b.password, baseDir) : undefined,
    database: b.database,
    table: b.table,
    columns: b.columns,
    aliasTable: b.aliasTable,
    queryTimeoutMs: b.queryTimeoutMs,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as Partial<typeof out>;
}

/** The value of a secret; throws naming the variable or file when it is missing. */
export function resolveSecret(secret: Secret, baseDir = process.cwd()): string {
  if (typeof secret === 'string') return secret;
  if ('env' in secret) {
    const v = process.env[secret.env];
    if (v === undefined || v === '') throw new Error(`environment variable ${secret.env} is not set`);
    return v;
  }
  const file = path.resolve(baseDir, secret.file);
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new Error(`cannot read secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function summarise(errors: ErrorObject[]): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    // if/then and oneOf produce a wrapper error next to the useful one; keep the useful ones.
    if (e.keyword === 'if' || (e.keyword === 'oneOf' && errors.length > 1 && errors.some((x) => x !== e && x.instancePath.startsWith(e.instancePath)))) continue;
    const p = pointerToPath(e.instancePath);
    let message: string;
    switch (e.keyword) {
      case 'additionalProperties':
        message = `unknown key '${(e.params as { additionalProperty: string }).additionalProperty}'`;
        break;
      case 'required':
        message = `missing required key '${(e.params as { missingProperty: string }).missingProperty}'`;
        break;
      case 'enum':
        message = `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues).map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      default:
        message = e.message ?? 'is invalid';
    }
    const key = `${p}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: p, message });
  }
  return out;
}

function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  return pointer
    .split('/')
    .slice(1)
    .map((seg) => seg.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '');
}

/**
 * The composition root: configuration -> backends -> event log and rebuilt projections ->
 * authenticator, registrar and router -> transaction layer -> transports. Only when the projections
 * have caught up with the log does sipledger open its SIP sockets, so the first request already
 * sees every binding that was acknowledged before the restart.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import YAML from 'yaml';
import { type AuthBackend, type DigestAlgorithm, type LookupOptions } from './core/auth/backend.js';
import { DigestAuthenticator } from './core/auth/authenticator.js';
import type { DomainAuth } from './core/auth/domains.js';
import { Ledger } from './core/log/ledger.js';
import type { EventLog } from './core/log/event-log.js';
import { MemoryLog } from './core/log/memory-log.js';
import { ProxyCore } from './core/proxy/proxy-core.js';
import { Resolver, type TransportName } from './core/proxy/resolver.js';
import { Router, type RouterTransaction } from './core/proxy/router.js';
import type { SipRequest } from './core/sip/message.js';
import { TransactionLayer } from './core/transaction/index.js';
import { warmUp, type WarmUpResult } from './warmup.js';
import { TransportManager } from './core/transport/index.js';
import { MemoryBackend, type MemoryUser } from './backends/auth/memory.js';
import { createMysqlBackend } from './backends/auth/mysql.js';
import { createRadiusBackend } from './backends/auth/radius/backend.js';
import { FileLog } from './backends/log/file-log.js';
import { KafkaLog } from './backends/log/kafka-log.js';
import { type SipledgerConfig, type MemoryUserConfig, mysqlConnection, resolveSecret } from './config/config.js';
import { AdminServer } from './admin/server.js';
import { BruteForceGuard, DestinationFilter, FloodLimiter } from './core/security/index.js';
import { createResponse } from './core/sip/response.js';
import { Histogram, timed } from './core/metrics/histogram.js';

export interface Sipledger {
  readonly config: SipledgerConfig;
  readonly ledger: Ledger;
  readonly transports: TransportManager;
  readonly transactions: TransactionLayer;
  readonly router: Router;
  readonly proxy: ProxyCore;
  readonly authenticator: DigestAuthenticator;
  readonly backends: ReadonlyMap<string, AuthBackend>;
  readonly security: { readonly guard: BruteForceGuard; readonly flood: FloodLimiter; readonly destinations: DestinationFilter };
  /** Latency histograms (seconds): credential lookups or digest checks per backend, and event appends. */
  readonly latency: { readonly backends: ReadonlyMap<string, Histogram>; readonly append: Histogram };
  /** The event log's own counters, where it keeps them (the file log: appends, fsync groups, bytes). */
  readonly logStats: (() => Record<string, number>) | undefined;
  readonly admin: AdminServer | undefined;
  readonly logger: Logger;
  readonly startedAt: number;
  /** Re-reads the in-memory users (SIGHUP). */
  reload(): void;
  /** Stops accepting requests, lets running transactions finish (bounded), flushes and snapshots. */
  stop(graceMs?: number): Promise<void>;
}

export async function startSipledger(config: SipledgerConfig, logger: Logger): Promise<Sipledger> {
  const startedAt = Date.now();
  const backends = new Map<string, AuthBackend>();
  const memoryBackends = new Map<string, { backend: MemoryBackend; load: () => MemoryUser[] }>();

  for (const [name, b] of Object.entries(config.backends)) {
    const log = logger.child({ backend: name });
    if (b.type === 'memory') {
      const load = (): MemoryUser[] => memoryUsers(b.users ?? [], b.usersFile, config, name);
      const backend = new MemoryBackend({ name, users: load() });
      memoryBackends.set(name, { backend, load });
      backends.set(name, backend);
    } else if (b.type === 'mysql') {
      backends.set(
        name,
        createMysqlBackend({
          name,
          logger: log,
          ...mysqlConnection(b, config.baseDir),
          ...(b.useDomain !== undefined ? { useDomain: b.useDomain } : {}),
          ...(b.calculateHa1 !== undefined ? { calculateHa1: b.calculateHa1 } : {}),
          ...(b.loadCredentials !== undefined ? { loadCredentials: b.loadCredentials } : {}),
          ...(b.uriTable !== undefined ? { uriTable: b.uriTable } : {}),
          ...(b.poolSize !== undefined ? { poolSize: b.poolSize } : {}),
          ...(b.cacheTtlMs !== undefined ? { cacheTtlMs: b.cacheTtlMs } : {}),
        }),
      );
    } else {
      backends.set(
        name,
        createRadiusBackend({
          name,
          logger: log,
          servers: b.servers.map((s) => ({ host: s.host, port: s.port ?? 1812, secret: resolveSecret(s.secret, config.baseDir) })),
          ...(b.timeoutMs !== undefined ? { timeoutMs: b.timeoutMs } : {}),
          ...(b.retries !== undefined ? { retries: b.retries } : {}),
          ...(b.deadTimeMs !== undefined ? { deadTimeMs: b.deadTimeMs } : {}),
          ...(b.nasIpAddress !== undefined ? { nasIpAddress: b.nasIpAddress } : {}),
        }),
      );
    }
  }

  // Every backend call is timed for the per-backend latency histograms (/metrics).
  const backendLatency = new Map<string, Histogram>();
  const timedBackends = new Map<string, AuthBackend>();
  for (const [name, b] of backends) {
    const h = new Histogram();
    backendLatency.set(name, h);
    timedBackends.set(name, timeBackend(b, h));
  }
  const domains: DomainAuth[] = config.domains.map((d) => ({
    domain: d.domain,
    ...(d.realm !== undefined ? { realm: d.realm } : {}),
    backend: timedBackends.get(d.backend)!,
    ...(d.algorithms !== undefined ? { algorithms: d.algorithms as DigestAlgorithm[] } : {}),
  }));
  const secret = config.auth.secret !== undefined ? resolveSecret(config.auth.secret, config.baseDir) : localSecret(config, logger);
  const authenticator = new DigestAuthenticator({
    secret,
    nonceLifetimeMs: config.auth.nonceLifetime * 1000,
    strictUri: config.auth.strictUri,
    lookupTimeoutMs: config.auth.lookupTimeoutMs,
    retryAfterSeconds: config.retryAfter,
    logger,
    domains,
  });

  // The log, and the projections rebuilt from it, before any socket opens.
  const eventLog = await openLog(config, logger);
  const appendLatency = new Histogram();
  const logStats = 'stats' in eventLog ? () => ({ ...(eventLog as unknown as { stats: Record<string, number> }).stats }) : undefined;
  const ledger = await Ledger.open({
    log: eventLog,
    logger: logger.child({ module: 'ledger' }),
    ...(config.snapshots.dir ? { snapshotDir: config.snapshots.dir } : {}),
    ...(config.snapshots.every !== undefined ? { snapshotEvery: config.snapshots.every } : {}),
  });

  // Compiled code before the first phone: a private run of the request path (src/warmup.ts).
  let warmed: WarmUpResult;
  try {
    warmed = await warmUp({ registrations: config.warmUp.registrations, calls: config.warmUp.calls, limits: config.limits, fileLog: config.log.type === 'file', logger });
  } catch (err) {
    // A failed warm-up costs speed, not service: start cold, and say why.
    logger.warn({ err: (err as Error).message }, 'warm-up failed; starting with cold code');
    warmed = { registrations: 0, calls: 0, ms: 0 };
  }

  // Abuse resistance (docs/security.md). The guard is fed after the replay, so history never
  // produces new bans; bans already in the log are in ledger.bans.
  const guard = new BruteForceGuard({
    config: config.security.bruteForce,
    bans: ledger.bans,
    ...(config.instance !== undefined ? { instance: config.instance } : {}),
    logger: logger.child({ module: 'security' }),
  });
  ledger.onEvent((event) => {
    const bans = guard.observe(event);
    if (bans.length > 0) {
      setImmediate(() => {
        ledger.append(bans).catch((err: Error) => logger.warn({ err: err.message }, 'ban not recorded'));
      });
    }
  });
  const flood = new FloodLimiter(config.security.flood);
  const destinationFilter = new DestinationFilter(config.security.destinations);

  const transports = await TransportManager.listen({
    listen: config.listen.map((l) => ({
      transport: l.transport,
      address: l.address,
      port: l.port,
      ...(l.ioThread ? { ioThread: true } : {}),
      ...(l.transport === 'tls' ? { tls: { cert: readFileSync(l.cert!), key: readFileSync(l.key!) } } : {}),
    })),
    limits: config.limits,
    logger: logger.child({ module: 'transport' }),
    ...(config.limits.tcpIdleTimeoutMs !== undefined ? { tcpIdleTimeoutMs: config.limits.tcpIdleTimeoutMs } : {}),
    ...(config.limits.maxConnections !== undefined ? { maxConnections: config.limits.maxConnections } : {}),
    ...(config.limits.maxConnectionsPerIp !== undefined ? { maxConnectionsPerIp: config.limits.maxConnectionsPerIp } : {}),
    ...(config.logging.sipTrace ? { trace: true } : {}),
  });
  const listening = transports.listening();
  const localAddresses = (): Array<{ host: string; port: number }> => listening.map((l) => ({ host: l.address, port: l.port }));
  const local = (transport: TransportName): { host: string; port: number } | undefined => {
    const l = listening.find((x) => x.transport === transport);
    if (!l) return undefined;
    // A wildcard listener advertises loopback here; deployments behind NAT set an explicit address.
    const host = l.address === '0.0.0.0' ? '127.0.0.1' : l.address === '::' ? '::1' : l.address;
    return { host, port: l.port };
  };

  // The transaction layer calls up into the router, which is built on the layer: late-bound.
  const up: { router?: Router; proxy?: ProxyCore } = {};
  let accepting = true;
  const transactions = new TransactionLayer({
    transport: transports,
    logger: logger.child({ module: 'transaction' }),
    ...(config.limits.maxTransactions !== undefined ? { maxTransactions: config.limits.maxTransactions } : {}),
    onRequest: (req: SipRequest, tx) => {
      if (!accepting) {
        tx?.replyStatus(503, { headers: [['Retry-After', String(config.retryAfter)]] });
        return;
      }
      up.router!.handle(req, tx as RouterTransaction | undefined);
    },
    onStrayResponse: (res) => void up.proxy!.forwardStrayResponse(res),
  });
  transports.onMessage((msg) => {
    if (msg.isRequest && msg.source) {
      const ip = msg.source.address;
      const now = Date.now();
      // Flood limit first (what pike does): a flooding source costs one lookup per datagram.
      const admitted = flood.admit(ip, now);
      if (!admitted.allowed) {
        if (admitted.log) logger.warn({ ip, droppedSinceLog: admitted.droppedSinceLog }, 'flood limit: requests from this source dropped');
        return;
      }
      const verdict = guard.check({ ip, now });
      if (verdict.banned) {
        if (verdict.action === 'reject' && msg.method !== 'ACK') {
          transports.sendResponse(createResponse(msg, 403, { reason: 'Forbidden (banned)' }), msg.source).catch(() => undefined);
        }
        return;
      }
    }
    transactions.receive(msg);
  });

  const proxy = new ProxyCore({
    transactions,
    sender: transports,
    resolver: new Resolver(),
    local,
    logger: logger.child({ module: 'proxy' }),
    ...(destinationFilter.empty ? {} : { destinationFilter }),
  });
  const aliasBackends = domains;
  const router = new Router({
    auth: {
      servesDomain: (d) => authenticator.servesDomain(d),
      realmOf: (d) => authenticator.domain(d)?.realm,
      authenticate: (r) => authenticator.authenticate(r),
      resolveAlias: async (alias) => {
        const d = authenticator.domain(alias.domain);
        const backend = d?.backend ?? aliasBackends.find((x) => x.domain === alias.domain)?.backend;
        if (!backend?.resolveAlias) return null;
        try {
          return await backend.resolveAlias(alias, lookupWithin(config.auth.lookupTimeoutMs));
        } catch (err) {
          logger.warn({ err: (err as Error).message }, 'alias lookup failed; using the Request-URI as it is');
          return null;
        }
      },
    },
    ledger: {
      location: ledger.location,
      // A request waits a bounded time for durability (a slow disk, Kafka unreachable): then 503.
      // The latency histogram is the wait before a 200 OK: deferrable records (answering nobody) stay out of it.
      append: (events, opts) => {
        const appended = (): Promise<void> => withDeadline(ledger.append(events, opts), config.registrar.appendTimeoutMs);
        return opts?.deferrable ? appended() : timed(appendLatency, appended);
      },
    },
    proxy,
    guard,
    registrar: config.registrar,
    localAddresses,
    aliases: new Map(Object.entries(config.aliases).map(([a, t]) => [normalizeAor(a), normalizeAor(t)])),
    logger: logger.child({ module: 'router' }),
    retryAfterSeconds: config.retryAfter,
    serverHeader: 'sipledger',
    maxPendingPerAor: config.registrar.maxPendingPerAor,
    ...(config.instance !== undefined ? { instance: config.instance } : {}),
  });

  up.router = router;
  up.proxy = proxy;
  let admin: AdminServer | undefined;
  const app: Sipledger = {
    config,
    ledger,
    transports,
    transactions,
    router,
    proxy,
    authenticator,
    backends,
    security: { guard, flood, destinations: destinationFilter },
    latency: { backends: backendLatency, append: appendLatency },
    logStats,
    get admin() {
      return admin;
    },
    logger,
    startedAt,
    reload() {
      for (const [name, m] of memoryBackends) {
        try {
          m.backend.reload(m.load());
          logger.info({ backend: name }, 'in-memory users reloaded');
        } catch (err) {
          logger.error({ backend: name, err: (err as Error).message }, 'in-memory users not reloaded; keeping the previous list');
        }
      }
    },
    async stop(graceMs = 5000) {
      accepting = false;
      const deadline = Date.now() + graceMs;
      while (transactions.awaitingFinal() > 0 && Date.now() < deadline) await sleep(50);
      await admin?.close();
      await transports.close();
      transactions.close();
      try {
        await ledger.snapshot();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'snapshot at shutdown failed');
      }
      await ledger.close();
      for (const b of backends.values()) await b.close().catch(() => undefined);
    },
  };
  if (config.admin.enabled) {
    admin = await AdminServer.start(app, {
      address: config.admin.address,
      port: config.admin.port,
      ...(config.admin.token !== undefined ? { token: resolveSecret(config.admin.token, config.baseDir) } : {}),
      logger: logger.child({ module: 'admin' }),
    });
  }
  logger.info(
    {
      listen: listening.map((l) => `${l.transport}:${l.address}:${l.port}`),
      // The listeners whose datagrams go through an I/O thread (listen[].ioThread).
      ioThread: listening.filter((l) => l.ioThread).map((l) => `${l.transport}:${l.address}:${l.port}`),
      domains: config.domains.map((d) => d.domain),
      log: config.log.type,
      contacts: ledger.location.count(Date.now()),
      admin: admin ? admin.address() : undefined,
      startupMs: Date.now() - startedAt,
      warmUp: warmed,
    },
    'sipledger started',
  );
  return app;
}

async function openLog(config: SipledgerConfig, logger: Logger): Promise<EventLog> {
  const log = config.log;
  if (log.type === 'memory') return new MemoryLog();
  if (log.type === 'file') {
    mkdirSync(log.dir, { recursive: true });
    return FileLog.open({
      dir: log.dir,
      fsync: log.fsync ?? 'batch',
      ...(log.segmentBytes !== undefined ? { segmentBytes: log.segmentBytes } : {}),
      ...(log.lingerMs !== undefined ? { lingerMs: log.lingerMs } : {}),
      logger: logger.child({ module: 'file-log' }),
    });
  }
  return KafkaLog.open({
    brokers: log.brokers,
    topic: log.topic,
    clientId: log.clientId ?? `sipledger-${config.instance ?? process.pid}`,
    ...(log.fetchWaitMs !== undefined ? { maxWaitTimeInMs: log.fetchWaitMs } : {}),
    ...(log.lingerMs !== undefined ? { lingerMs: log.lingerMs } : {}),
    logger: logger.child({ module: 'kafka-log' }),
  });
}

function memoryUsers(inline: MemoryUserConfig[], usersFile: string | undefined, config: SipledgerConfig, backendName: string): MemoryUser[] {
  let list = inline;
  if (usersFile) {
    const file = path.resolve(config.baseDir, usersFile);
    const doc = YAML.parse(readFileSync(file, 'utf8')) as { users?: MemoryUserConfig[] } | null;
    list = [...inline, ...(doc?.users ?? [])];
  }
  const defaultDomain = config.domains.find((d) => d.backend === backendName)?.domain ?? '';
  return list.map((u) => ({
    username: u.username,
    domain: u.domain ?? defaultDomain,
    ...(u.password !== undefined ? { password: resolveSecret(u.password, config.baseDir) } : {}),
    ...(u.ha1 !== undefined ? { ha1: u.ha1 } : {}),
    ...(u.ha1b !== undefined ? { ha1b: u.ha1b } : {}),
    ...(u.attributes !== undefined ? { attributes: u.attributes } : {}),
    ...(u.identities !== undefined ? { identities: u.identities } : {}),
  }));
}

function normalizeAor(s: string): string {
  const t = s.trim();
  const withScheme = /^sips?:/i.test(t) ? t : `sip:${t}`;
  const at = withScheme.lastIndexOf('@');
  return at === -1 ? withScheme : withScheme.slice(0, at + 1) + withScheme.slice(at + 1).toLowerCase();
}

/**
 * Lookup options for a budget of `ms` from now. The AbortSignal (a timer, and an exception object
 * when it fires) is made when a backend reads it, and not otherwise; the MySQL backend takes the deadline.
 */
function lookupWithin(ms: number): LookupOptions {
  const deadline = performance.now() + ms;
  let signal: AbortSignal | undefined;
  return {
    deadline,
    get signal() {
      return (signal ??= AbortSignal.timeout(Math.max(0, Math.ceil(deadline - performance.now()))));
    },
  };
}

/** Rejects when `p` has not settled within `ms` (the append may still complete later). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`event log did not confirm the append within ${ms} ms`), { code: 'LOG_TIMEOUT', retriable: true })), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** The same backend, with every lookup or verification timed into `h`. */
function timeBackend(b: AuthBackend, h: Histogram): AuthBackend {
  const base = {
    name: b.name,
    close: () => b.close(),
    ...(b.ownsIdentity ? { ownsIdentity: b.ownsIdentity.bind(b) } : {}),
    ...(b.resolveAlias ? { resolveAlias: b.resolveAlias.bind(b) } : {}),
  };
  if (b.kind === 'store') return { ...base, kind: 'store', lookup: (q, o) => timed(h, () => b.lookup(q, o)) };
  return { ...base, kind: 'verifier', algorithms: b.algorithms, verify: (r, o) => timed(h, () => b.verify(r, o)) };
}

/**
 * Without auth.secret, a single instance with a file log keeps a generated key beside its log, so
 * nonces it issued stay valid across a restart. Clusters must configure a shared auth.secret.
 */
function localSecret(config: SipledgerConfig, logger: Logger): Buffer {
  if (config.log.type !== 'file') {
    logger.warn('auth.secret not set: nonces are signed with a random key that other instances do not share');
    return randomBytes(32);
  }
  const file = path.join(path.dirname(config.log.dir), 'nonce-secret');
  try {
    return Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
  } catch {
    const key = randomBytes(32);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600 });
    logger.info({ file }, 'auth.secret not set: generated a nonce key for this instance');
    return key;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The admin HTTP API: health, readiness, Prometheus metrics, and read-only views of the location
 * and audit projections. Loopback by default; a bearer token is required when bound elsewhere.
 */
import { handleBansRequest } from '../core/security/ban-admin.js';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Sipledger } from '../app.js';
import { AUTH_FAILURE_CAUSES, type AuthFailureCause } from '../core/log/events.js';
import { EventCounters, renderMetrics } from './metrics.js';

export interface AdminOptions {
  readonly address: string;
  readonly port: number;
  readonly token?: string;
  readonly logger: Logger;
}

/** True for an address that only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address);
}

export class AdminServer {
  private constructor(
    private readonly server: Server,
    private readonly opts: AdminOptions,
    private readonly detach: () => void,
  ) {}

  static async start(app: Sipledger, opts: AdminOptions): Promise<AdminServer> {
    if (!isLoopback(opts.address) && !opts.token) {
      throw new Error(`admin.token: required when the admin API listens on ${opts.address} (not loopback)`);
    }
    const tokenHash = opts.token ? createHash('sha256').update(opts.token).digest() : undefined;
    const { counters, detach } = EventCounters.attach(app);
    const server = createServer((req, res) => {
      try {
        if (tokenHash && !authorised(req, tokenHash)) {
          send(res, 401, { error: 'unauthorized' }, { 'www-authenticate': 'Bearer' });
          return;
        }
        handle(app, counters, req, res);
      } catch (err) {
        opts.logger.error({ err }, 'admin request failed');
        send(res, 500, { error: 'internal error' });
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port, opts.address, () => resolve());
      });
    } catch (err) {
      detach();
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(new Error(`admin API cannot listen on ${opts.address}:${opts.port}: ${e.code ?? e.message}`, { cause: err }), {
        code: e.code ?? 'ADMIN_LISTEN',
        retriable: e.code === 'EADDRINUSE',
      });
    }
    return new AdminServer(server, opts, detach);
  }

  address(): string {
    const a = this.server.address() as AddressInfo;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.detach();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  get options(): AdminOptions {
    return this.opts;
  }
}

function authorised(req: IncomingMessage, tokenHash: Buffer): boolean {
  const h = req.headers.authorization ?? '';
  const m = /^Bearer\s+(.+)$/i.exec(h);
  if (!m) return false;
  const given = createHash('sha256').update(m[1]!.trim()).digest();
  return timingSafeEqual(given, tokenHash);
}

/** Reads a small JSON request body (bans are a few hundred bytes; anything over 64 KiB is refused). */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 65536) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new Error('request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

function handleBans(app: Sipledger, url: URL, req: IncomingMessage, res: ServerResponse): void {
  const body = req.method === 'POST' || req.method === 'DELETE' ? readJson(req) : Promise.resolve(undefined);
  body
    .then((b) =>
      handleBansRequest(req.method ?? 'GET', url.searchParams, b, {
        bans: app.ledger.bans,
        append: (events) => app.ledger.append(events),
        now: Date.now(),
        ...(app.config.instance !== undefined ? { instance: app.config.instance } : {}),
      }),
    )
    .then(
      (r) => send(res, r.status, r.body),
      (err: Error) => send(res, 400, { error: err.message }),
    );
}

function handle(app: Sipledger, counters: EventCounters, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://admin');
  if (url.pathname === '/bans') {
    handleBans(app, url, req, res);
    return;
  }
  if (req.method !== 'GET') {
    send(res, 405, { error: 'method not allowed' });
    return;
  }
  const now = Date.now();
  switch (url.pathname) {
    case '/health':
      send(res, 200, { status: 'ok', uptimeSeconds: Math.round((now - app.startedAt) / 1000) });
      return;
    case '/ready': {
      const ready = app.ledger.ready;
      send(res, ready ? 200 : 503, { ready, position: app.ledger.position, appliedEvents: app.ledger.appliedCount });
      return;
    }
    case '/metrics':
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(renderMetrics(app, now, counters));
      return;
    case '/location': {
      const aor = url.searchParams.get('aor');
      const at = url.searchParams.get('at');
      const when = at ? Date.parse(at) : now;
      if (aor !== null && !/^sips?:[^@\s]+@[^@\s]+$/i.test(aor)) {
        send(res, 400, { error: "'aor' must be sip:user@domain" });
        return;
      }
      if (Number.isNaN(when)) {
        send(res, 400, { error: "'at' is not a date" });
        return;
      }
      // The live projection answers for now and later (expiry is a function of the query time);
      // a past time needs the table as it was, replayed from the log up to that instant.
      const answer = (location: typeof app.ledger.location): void => {
        const aors = aor ? [aor] : location.aors(when);
        const out = aors.map((a) => ({ aor: a, bindings: location.bindings(a, when) }));
        send(res, 200, { at: new Date(when).toISOString(), aors: out });
      };
      if (when >= now) answer(app.ledger.location);
      else {
        app.ledger.locationAt(when).then(answer, (err: unknown) => {
          send(res, 503, { error: `the log could not be replayed: ${(err as Error).message}` });
        });
      }
      return;
    }
    case '/audit': {
      const since = url.searchParams.get('since');
      const sinceMs = since ? parseSince(since, now) : now - 3600_000;
      if (sinceMs === undefined) {
        send(res, 400, { error: "'since' is neither a duration (1h, 15m) nor a date" });
        return;
      }
      const cause = url.searchParams.get('cause');
      if (cause && !AUTH_FAILURE_CAUSES.includes(cause as AuthFailureCause)) {
        send(res, 400, { error: `'cause' must be one of ${AUTH_FAILURE_CAUSES.join(', ')}` });
        return;
      }
      const limitText = url.searchParams.get('limit') ?? '1000';
      if (!/^\d+$/.test(limitText)) {
        send(res, 400, { error: "'limit' must be a whole number" });
        return;
      }
      const q = {
        since: sinceMs,
        ...(url.searchParams.get('user') ? { user: url.searchParams.get('user')! } : {}),
        ...(url.searchParams.get('ip') ? { ip: url.searchParams.get('ip')! } : {}),
        ...(cause ? { cause: cause as AuthFailureCause } : {}),
      };
      send(res, 200, {
        since: new Date(sinceMs).toISOString(),
        total: app.ledger.audit.countFailures(q),
        failures: app.ledger.audit.failures({ ...q, limit: Number(limitText) }),
        byCause: app.ledger.audit.countByCause({ since: sinceMs }),
      });
      return;
    }
    default:
      send(res, 404, { error: 'not found' });
  }
}

export function parseSince(text: string, now: number): number | undefined {
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(text.trim());
  if (m) {
    const mult = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return now - Number(m[1]) * mult;
  }
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

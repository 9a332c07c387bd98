/**
 * Adding, lifting and listing bans by hand: the rules shared by `sipledger ban` (which writes to
 * the log itself) and the admin API's /bans endpoint (for a running instance holding a file log).
 * A manual ban is the same `ban.added` event the guard writes, so it is enforced everywhere the log
 * reaches.
 */
import { banAdded, banRemoved, type BanAddedEvent, type BanRemovedEvent, type BanScope, type SipledgerEvent } from '../log/events.js';
import { canonicalBanValue, type BanView } from './ban-values.js';

/** A ban with no end: the latest time a JavaScript Date can hold (year 275760). */
export const FOREVER = 8_640_000_000_000_000;

export interface ManualBan {
  readonly scope: string;
  readonly value: string;
  /** Seconds from now; 'forever' or absent with `until` absent means 3600. */
  readonly seconds?: number | 'forever';
  /** Absolute end, epoch ms; wins over seconds. */
  readonly until?: number;
  readonly reason?: string;
}

export type BanRequestResult<E> = { readonly ok: true; readonly event: E } | { readonly ok: false; readonly error: string };

const DEFAULT_SECONDS = 3600;

function scopeOf(scope: string): BanScope | undefined {
  return scope === 'ip' || scope === 'user' ? scope : undefined;
}

/** Checks a manual ban and builds its event. Values are stored in canonical form. */
export function manualBanAdded(input: ManualBan, now: number, instance?: string): BanRequestResult<BanAddedEvent> {
  const scope = scopeOf(input.scope);
  if (!scope) return { ok: false, error: `scope must be 'ip' or 'user', not '${input.scope}'` };
  const value = canonicalBanValue(scope, input.value);
  if (value === undefined) {
    return { ok: false, error: scope === 'ip' ? `'${input.value}' is not an IP address or CIDR prefix` : `'${input.value}' is not user@realm` };
  }
  let until: number;
  if (input.until !== undefined) {
    if (!Number.isSafeInteger(input.until) || input.until <= now) return { ok: false, error: 'until must be a time in the future (epoch ms)' };
    until = Math.min(FOREVER, input.until);
  } else if (input.seconds === 'forever') {
    until = FOREVER;
  } else {
    const s = input.seconds ?? DEFAULT_SECONDS;
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) return { ok: false, error: 'the duration must be a positive number of seconds' };
    until = Math.min(FOREVER, now + Math.round(s * 1000));
  }
  const reason = (input.reason ?? 'added by an operator').slice(0, 500);
  return { ok: true, event: banAdded({ scope, value, until, reason }, { time: now, ...(instance !== undefined ? { instance } : {}) }) };
}

/** Checks a lift request and builds its event. */
export function manualBanRemoved(input: { scope: string; value: string }, now: number, instance?: string): BanRequestResult<BanRemovedEvent> {
  const scope = scopeOf(input.scope);
  if (!scope) return { ok: false, error: `scope must be 'ip' or 'user', not '${input.scope}'` };
  const value = canonicalBanValue(scope, input.value);
  if (value === undefined) return { ok: false, error: `'${input.value}' names no ${scope === 'ip' ? 'address or prefix' : 'user@realm'}` };
  return { ok: true, event: banRemoved({ scope, value }, { time: now, ...(instance !== undefined ? { instance } : {}) }) };
}

/** Parses a duration: `90`, `90s`, `15m`, `2h`, `7d`, or `forever`. Undefined when it is none of these. */
export function parseDuration(text: string): number | 'forever' | undefined {
  const t = text.trim().toLowerCase();
  if (t === 'forever' || t === 'permanent') return 'forever';
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(t);
  if (!m) return undefined;
  const n = Number(m[1]);
  const mult = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  const seconds = n * mult;
  return seconds > 0 ? seconds : undefined;
}

/** What the admin endpoint needs of a running instance. */
export interface BanAdminDeps {
  readonly bans: { active(now: number): readonly BanView[]; get(scope: BanScope, value: string): BanView | undefined };
  /** Appends and resolves once durable and applied (Ledger.append). */
  append(events: readonly SipledgerEvent[]): Promise<void>;
  readonly now: number;
  readonly instance?: string;
}

export interface BanAdminResponse {
  readonly status: number;
  readonly body: unknown;
}

/**
 * The admin API's /bans resource: `GET /bans` lists bans in force; `POST /bans` with a JSON body
 * `{scope, value, seconds? | until?, reason?}` adds one (201); `DELETE /bans?scope=ip&value=...`
 * lifts one (200, `removed: false` when none was in force). Other methods get 405.
 */
export async function handleBansRequest(method: string, query: URLSearchParams, body: unknown, deps: BanAdminDeps): Promise<BanAdminResponse> {
  switch (method) {
    case 'GET':
      return { status: 200, body: { bans: deps.bans.active(deps.now) } };
    case 'POST': {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return { status: 400, body: { error: 'expected a JSON object {scope, value, seconds, reason}' } };
      const b = body as Record<string, unknown>;
      if (typeof b['scope'] !== 'string' || typeof b['value'] !== 'string') return { status: 400, body: { error: 'scope and value are required strings' } };
      const seconds = b['seconds'];
      if (seconds !== undefined && seconds !== 'forever' && typeof seconds !== 'number') return { status: 400, body: { error: "seconds must be a number or 'forever'" } };
      if (b['until'] !== undefined && typeof b['until'] !== 'number') return { status: 400, body: { error: 'until must be epoch ms' } };
      if (b['reason'] !== undefined && typeof b['reason'] !== 'string') return { status: 400, body: { error: 'reason must be a string' } };
      const r = manualBanAdded(
        {
          scope: b['scope'],
          value: b['value'],
          ...(seconds !== undefined ? { seconds: seconds as number | 'forever' } : {}),
          ...(b['until'] !== undefined ? { until: b['until'] as number } : {}),
          ...(b['reason'] !== undefined ? { reason: b['reason'] as string } : {}),
        },
        deps.now,
        deps.instance,
      );
      if (!r.ok) return { status: 400, body: { error: r.error } };
      await deps.append([r.event]);
      return { status: 201, body: { ban: { scope: r.event.scope, value: r.event.value, until: r.event.until, reason: r.event.reason, since: r.event.time } } };
    }
    case 'DELETE': {
      const r = manualBanRemoved({ scope: query.get('scope') ?? '', value: query.get('value') ?? '' }, deps.now, deps.instance);
      if (!r.ok) return { status: 400, body: { error: r.error } };
      const existing = deps.bans.get(r.event.scope, r.event.value);
      const inForce = existing !== undefined && existing.until > deps.now;
      await deps.append([r.event]);
      return { status: 200, body: { removed: inForce, scope: r.event.scope, value: r.event.value } };
    }
    default:
      return { status: 405, body: { error: 'method not allowed' } };
  }
}

/**
 * The registrar's decision (RFC 3261 s10.3 steps 6-8) as a pure function:
 * `(request, current bindings, now) -> events | rejection`. No I/O, no clock: the caller passes `now`,
 * appends the events durably, and only then answers 200 OK with the resulting bindings.
 */
import { detach } from '../sip/detach.js';
import type { NameAddr } from '../sip/name-addr.js';
import { formatParams } from '../sip/params.js';
import { buildUri, type SipUri } from '../sip/uri.js';
import {
  type SipledgerEvent,
  type Source,
  contactBound,
  contactRefreshed,
  contactRemoved,
} from '../log/events.js';

export interface RegistrarConfig {
  /** Shortest accepted registration, seconds; shorter (non-zero) requests get 423 (RFC 3261 s10.3 step 7). */
  readonly minExpires: number;
  /** Longest granted registration, seconds; longer requests are shortened to this. */
  readonly maxExpires: number;
  /** Used when neither the Contact `expires` parameter nor the Expires header says. */
  readonly defaultExpires: number;
  /** Most live contacts per address of record. */
  readonly maxContacts: number;
}

export const DEFAULT_REGISTRAR: RegistrarConfig = Object.freeze({
  minExpires: 60,
  maxExpires: 3600,
  defaultExpires: 3600,
  maxContacts: 10,
});

/** What the registrar needs to know of a stored binding. */
export interface BindingView {
  readonly uri: string;
  readonly contact: string;
  readonly expiresAt: number;
  readonly q: number;
  readonly callId: string;
  readonly cseq: number;
  readonly instanceId?: string;
  readonly regId?: number;
}

export interface RegisterInput {
  /** Canonical address of record (`sip:user@domain`). */
  readonly aor: string;
  /** The request's Contact values; `'*'` for the wildcard; empty for a query. */
  readonly contacts: readonly NameAddr[] | '*';
  readonly expiresHeader: number | undefined;
  readonly callId: string;
  readonly cseq: number;
  readonly userAgent?: string;
  readonly source: Source;
  readonly path?: readonly string[];
  readonly now: number;
  readonly instance?: string;
}

export type RegistrarDecision =
  | {
      readonly kind: 'accept';
      readonly events: SipledgerEvent[];
      /** The bindings after the events apply, for the 200 OK's Contact list. */
      readonly bindings: BindingView[];
    }
  | {
      readonly kind: 'reject';
      readonly status: number;
      readonly reason: string;
      readonly headers: Array<[string, string]>;
    };

function reject(status: number, reason: string, headers: Array<[string, string]> = []): RegistrarDecision {
  return { kind: 'reject', status, reason, headers };
}

/** The identity of a binding: RFC 5626 instance + reg-id when given, else the contact URI. */
function bindingKey(b: { uri: string; instanceId?: string; regId?: number }): string {
  return b.instanceId !== undefined ? `i:${b.instanceId}:${b.regId ?? ''}` : `u:${b.uri}`;
}

/** The comparable form of a contact URI (host and parameter names lowercased by the parser). */
export function normalizeContactUri(uri: SipUri): string {
  return buildUri(uri).raw;
}

export function decideRegister(input: RegisterInput, current: readonly BindingView[], config: RegistrarConfig): RegistrarDecision {
  const live = current.filter((b) => b.expiresAt > input.now);
  const meta = { time: input.now, ...(input.instance !== undefined ? { instance: input.instance } : {}) };

  // A REGISTER without Contact is a query: answer with the current bindings (s10.3 step 8).
  if (input.contacts !== '*' && input.contacts.length === 0) {
    return { kind: 'accept', events: [], bindings: live };
  }

  if (input.contacts === '*') {
    // s10.3 step 6: "If the request has additional Contact fields or an expiration time other than
    // zero, the request is invalid, and the server MUST return a 400".
    if (input.expiresHeader !== 0) return reject(400, 'Bad Request (Contact: * requires Expires: 0)');
    const events: SipledgerEvent[] = [];
    for (const b of live) {
      // "If it does agree, it MUST remove the binding only if the CSeq in the request is higher than
      // the value stored for that binding. Otherwise, the update MUST be aborted".
      if (b.callId === input.callId && input.cseq <= b.cseq) return reject(400, 'Bad Request (CSeq not higher than the registered one)');
      events.push(contactRemoved({ aor: input.aor, uri: b.uri, callId: input.callId, cseq: input.cseq, reason: 'wildcard' }, meta));
    }
    return { kind: 'accept', events, bindings: [] };
  }

  const next = new Map<string, BindingView>();
  for (const b of live) next.set(bindingKey(b), b);
  const events: SipledgerEvent[] = [];
  const seen = new Set<string>();

  for (const c of input.contacts) {
    if (c.uri.scheme !== 'sip' && c.uri.scheme !== 'sips') return reject(400, `Bad Request (unsupported Contact URI scheme ${c.uri.scheme.slice(0, 10)})`);
    const expiresParam = c.params.get('expires');
    let expires: number;
    if (expiresParam !== undefined && expiresParam !== null) {
      if (!/^\d{1,10}$/.test(expiresParam)) return reject(400, 'Bad Request (malformed Contact expires)');
      expires = Number(expiresParam);
    } else expires = input.expiresHeader ?? config.defaultExpires;

    // s10.3 step 7: "If and only if the requested expiration interval is greater than zero AND
    // smaller than one hour AND less than a registrar-configured minimum, the registrar MAY reject
    // the registration with a response of 423 (Interval Too Brief)."
    if (expires > 0 && expires < 3600 && expires < config.minExpires) {
      return reject(423, 'Interval Too Brief', [['Min-Expires', String(config.minExpires)]]);
    }
    if (expires > config.maxExpires) expires = config.maxExpires;

    const qText = c.params.get('q');
    let q = 1;
    if (qText !== undefined && qText !== null) {
      q = Number(qText);
      if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(qText) || Number.isNaN(q)) return reject(400, 'Bad Request (malformed q value)');
    }
    const instanceRaw = c.params.get('+sip.instance');
    const instanceId = instanceRaw ? instanceRaw.replace(/^"|"$/g, '') : undefined;
    const regIdText = c.params.get('reg-id');
    const regId = regIdText && /^\d{1,10}$/.test(regIdText) ? Number(regIdText) : undefined;

    const uri = normalizeContactUri(c.uri);
    const key = bindingKey({ uri, ...(instanceId !== undefined ? { instanceId } : {}), ...(regId !== undefined ? { regId } : {}) });
    if (seen.has(key)) continue; // the same contact twice in one request: the first wins
    seen.add(key);
    const existing = next.get(key);

    // "If the binding does exist, the registrar checks the Call-ID value. If the Call-ID value in the
    // existing binding differs from the Call-ID value in the request, the binding MUST be removed if
    // the expiration time is zero and updated otherwise. If they are the same, the registrar compares
    // the CSeq value. If the value is higher than that of the existing binding, it MUST update or
    // remove the binding as above. If not, the update MUST be aborted and the request fails."
    if (existing && existing.callId === input.callId && input.cseq <= existing.cseq) {
      return reject(400, 'Bad Request (CSeq not higher than the registered one)');
    }

    if (expires === 0) {
      if (existing) {
        next.delete(key);
        events.push(contactRemoved({ aor: input.aor, uri: existing.uri, callId: input.callId, cseq: input.cseq, reason: 'unregistered' }, meta));
      }
      continue;
    }

    const contact = contactAsRegistered(c);
    // A binding lives until it expires or is replaced: its strings are detached from the request's
    // text, which would otherwise stay in memory with it.
    const payload = {
      aor: detach(input.aor),
      contact: detach(contact),
      uri: detach(uri),
      expiresAt: input.now + expires * 1000,
      q,
      callId: detach(input.callId),
      cseq: input.cseq,
      source: input.source,
      ...(input.userAgent !== undefined ? { userAgent: detach(input.userAgent) } : {}),
      ...(instanceId !== undefined ? { instanceId: detach(instanceId) } : {}),
      ...(regId !== undefined ? { regId } : {}),
      ...(input.path && input.path.length ? { path: input.path.map(detach) } : {}),
    };
    if (existing && existing.uri !== uri) {
      // Same instance re-registering from a new address: the old URI goes.
      events.push(contactRemoved({ aor: input.aor, uri: existing.uri, callId: input.callId, cseq: input.cseq, reason: 'replaced' }, meta));
    }
    events.push(existing && existing.uri === uri ? contactRefreshed(payload, meta) : contactBound(payload, meta));
    next.set(key, payload);
  }

  if (next.size > config.maxContacts) {
    // Kamailio's registrar answers this case 503 "Too many registered contacts"; operators match on it.
    return reject(503, 'Too Many Registered Contacts');
  }
  return { kind: 'accept', events, bindings: [...next.values()].sort(byQ) };
}

function byQ(a: BindingView, b: BindingView): number {
  return b.q - a.q;
}

/** The Contact value to store: as registered, without the `expires` parameter (it is per response). */
function contactAsRegistered(c: NameAddr): string {
  if (c.bracketed && !c.params.has('expires')) return c.raw;
  const params = new Map(c.params);
  params.delete('expires');
  const display = c.displayName ? `${c.displayName} ` : '';
  return `${display}<${c.uri.raw}>${formatParams(params)}`;
}

/** Contact header values for a 200 OK: every binding with its remaining time (s10.3 step 8). */
export function contactsForResponse(bindings: readonly BindingView[], now: number): string[] {
  const out: string[] = [];
  for (const b of bindings) {
    const remaining = Math.max(0, Math.ceil((b.expiresAt - now) / 1000));
    if (remaining === 0) continue;
    const c = b.contact;
    out.push(`${c};expires=${remaining}`);
  }
  return out;
}

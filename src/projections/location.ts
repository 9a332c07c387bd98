/**
 * The location table: address of record -> contacts, rebuilt from contact.* events.
 *
 * Expiry is not an event the projection waits for: a binding is live while `expiresAt > now`, with
 * `now` given by the caller, so replaying the log at any later time answers correctly without a
 * timer (DESIGN.md, contract 1). `apply` reads no clock.
 */
import type { ContactBoundPayload, SipledgerEvent } from '../core/log/events.js';
import type { Projection } from '../core/log/projection.js';

/** A binding as the registrar and router see it. */
export interface Binding extends ContactBoundPayload {
  /** Time of the event that last wrote it. */
  readonly time: number;
  readonly instance?: string;
  /** Time of the first bind of this (aor, key), kept across refreshes. */
  readonly boundAt: number;
  /** Time of the last bind or refresh. */
  readonly updatedAt: number;
}

/**
 * How long after the newest event time a lapsed binding is still kept in memory. Purging never
 * changes an answer for a query time at or after the events (the binding is no longer live then);
 * the margin covers instances whose clocks run slightly behind the writers'.
 */
const PURGE_MARGIN_MS = 10 * 60_000;
/** A full sweep for lapsed bindings every this many events, so AORs that went silent are freed too. */
const SWEEP_EVERY = 50_000;

/**
 * The identity of a binding within its AOR. RFC 5626 section 6: "the registrar MUST ... [treat] the
 * combination of the instance-id and reg-id as the key"; without an instance, RFC 3261 section 10.3
 * step 7 matches bindings by contact URI.
 */
function bindingKey(b: { uri: string; instanceId?: string; regId?: number }): string {
  return b.instanceId !== undefined ? `i\u0000${b.instanceId}\u0000${b.regId ?? ''}` : `u\u0000${b.uri}`;
}

/**
 * The binding an event writes. Built field by field rather than with a rest spread: replay runs this
 * for every registration event in the log, and a fixed object shape keeps it fast.
 */
function toBinding(e: ContactBoundPayload & { time: number; instance?: string }, boundAt: number): Binding {
  const b: {
    -readonly [K in keyof Binding]: Binding[K];
  } = {
    aor: e.aor,
    contact: e.contact,
    uri: e.uri,
    expiresAt: e.expiresAt,
    q: e.q,
    callId: e.callId,
    cseq: e.cseq,
    source: e.source,
    time: e.time,
    boundAt,
    updatedAt: e.time,
  };
  if (e.userAgent !== undefined) b.userAgent = e.userAgent;
  if (e.instanceId !== undefined) b.instanceId = e.instanceId;
  if (e.regId !== undefined) b.regId = e.regId;
  if (e.path !== undefined) b.path = e.path;
  if (e.received !== undefined) b.received = e.received;
  if (e.instance !== undefined) b.instance = e.instance;
  return b;
}

function byPreference(a: Binding, b: Binding): number {
  return b.q - a.q || b.updatedAt - a.updatedAt || (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0);
}

export interface LocationSnapshot {
  readonly bindings: Binding[];
  readonly newestTime: number;
  readonly sinceSweep: number;
}

export class LocationProjection implements Projection {
  readonly name = 'location';
  readonly version = 1;
  #byAor = new Map<string, Map<string, Binding>>();
  #newestTime = 0;
  #sinceSweep = 0;

  apply(event: SipledgerEvent): void {
    if (event.time > this.#newestTime) this.#newestTime = event.time;
    switch (event.type) {
      case 'contact.bound':
      case 'contact.refreshed': {
        let contacts = this.#byAor.get(event.aor);
        if (!contacts) {
          contacts = new Map();
          this.#byAor.set(event.aor, contacts);
        }
        const key = bindingKey(event);
        const previous = contacts.get(key);
        // A refresh that arrives for a binding we never saw (its bind was before a purge, or was written
        // by an instance whose events we started reading late) still creates it.
        const binding = toBinding(event, previous?.boundAt ?? event.time);
        if (previous && previous.uri !== binding.uri) contacts.delete(key);
        contacts.set(key, binding);
        this.#purgeAor(event.aor, contacts);
        break;
      }
      case 'contact.removed': {
        const contacts = this.#byAor.get(event.aor);
        if (contacts) {
          for (const [key, b] of contacts) if (b.uri === event.uri) contacts.delete(key);
          this.#purgeAor(event.aor, contacts);
        }
        break;
      }
      default:
        // contact.expired is housekeeping only; every other type belongs to other projections.
        break;
    }
    if (++this.#sinceSweep >= SWEEP_EVERY) this.#sweep();
  }

  #purgeAor(aor: string, contacts: Map<string, Binding>): void {
    const horizon = this.#newestTime - PURGE_MARGIN_MS;
    for (const [key, b] of contacts) if (b.expiresAt <= horizon) contacts.delete(key);
    if (contacts.size === 0) this.#byAor.delete(aor);
  }

  #sweep(): void {
    this.#sinceSweep = 0;
    for (const [aor, contacts] of this.#byAor) this.#purgeAor(aor, contacts);
  }

  /** Live bindings of `aor` at `now`: q descending, then most recently updated first. */
  bindings(aor: string, now: number): Binding[] {
    const contacts = this.#byAor.get(aor);
    if (!contacts) return [];
    const out: Binding[] = [];
    for (const b of contacts.values()) if (b.expiresAt > now) out.push(b);
    return out.sort(byPreference);
  }

  /** AORs with at least one live binding at `now`, sorted. */
  aors(now: number): string[] {
    const out: string[] = [];
    for (const [aor, contacts] of this.#byAor) {
      for (const b of contacts.values()) {
        if (b.expiresAt > now) {
          out.push(aor);
          break;
        }
      }
    }
    return out.sort();
  }

  /** Number of live bindings at `now`. */
  count(now: number): number {
    let n = 0;
    for (const contacts of this.#byAor.values()) for (const b of contacts.values()) if (b.expiresAt > now) n++;
    return n;
  }

  truncate(): void {
    this.#byAor = new Map();
    this.#newestTime = 0;
    this.#sinceSweep = 0;
  }

  toSnapshot(): LocationSnapshot {
    const bindings: Binding[] = [];
    for (const contacts of this.#byAor.values()) for (const b of contacts.values()) bindings.push(b);
    return { bindings, newestTime: this.#newestTime, sinceSweep: this.#sinceSweep };
  }

  restore(state: unknown): void {
    const s = state as Partial<LocationSnapshot> | null;
    if (!s || !Array.isArray(s.bindings) || typeof s.newestTime !== 'number' || typeof s.sinceSweep !== 'number') {
      throw new TypeError('malformed location snapshot');
    }
    this.truncate();
    for (const b of s.bindings) {
      let contacts = this.#byAor.get(b.aor);
      if (!contacts) {
        contacts = new Map();
        this.#byAor.set(b.aor, contacts);
      }
      contacts.set(bindingKey(b), b);
    }
    this.#newestTime = s.newestTime;
    this.#sinceSweep = s.sinceSweep;
  }
}

/**
 * sipledger's events: every registration, authentication outcome and call step is one of these,
 * appended to the log and replayed into the projections (DESIGN.md, contracts 1 and 4).
 *
 * Each event is versioned data: `{ type, version, id, time, instance?, ...payload }`. The JSON Schema of
 * each (type, version) lives in schemas/events/<type>.v<version>.json; older versions are upcast on read
 * (see schemas.ts), so history is never migrated in place.
 */
import { randomUUID } from 'node:crypto';

export type Transport = 'udp' | 'tcp' | 'tls';

/** Where a request came from (the socket address, not what the message claims). */
export interface Source {
  readonly address: string;
  readonly port: number;
  readonly transport: Transport;
}

/** Fields every event carries. */
export interface EventEnvelope<T extends string, V extends number = 1> {
  readonly type: T;
  readonly version: V;
  /** A UUID, unique per event; projections and consumers may use it to drop duplicates. */
  readonly id: string;
  /** Epoch milliseconds of the instant it happened (not when it was read or applied). */
  readonly time: number;
  /** The sipledger instance that emitted it, when several share a log. */
  readonly instance?: string;
}

export interface ContactBoundPayload {
  /** Canonical address of record: `sip:user@domain`, scheme sip, domain lowercase (see canonicalAor). */
  readonly aor: string;
  /** The Contact header value exactly as registered, parameters included. */
  readonly contact: string;
  /** The contact URI alone. */
  readonly uri: string;
  /** Absolute expiry, epoch ms. A binding is live while expiresAt > now. */
  readonly expiresAt: number;
  /** RFC 3261 q-value, 0..1; 1 when the Contact had none. */
  readonly q: number;
  readonly callId: string;
  readonly cseq: number;
  readonly userAgent?: string;
  readonly source: Source;
  /** RFC 5626 +sip.instance value. */
  readonly instanceId?: string;
  /** RFC 5626 reg-id. */
  readonly regId?: number;
  /** RFC 3327 Path header values, in order. */
  readonly path?: readonly string[];
  /** The address the REGISTER was received from, when it differs from the Contact (NAT). */
  readonly received?: string;
}

export type RemovalReason = 'unregistered' | 'wildcard' | 'replaced' | 'admin';

export interface ContactRemovedPayload {
  readonly aor: string;
  readonly uri: string;
  readonly callId: string;
  readonly cseq: number;
  readonly reason: RemovalReason;
}

export interface ContactExpiredPayload {
  readonly aor: string;
  readonly uri: string;
}

export type AuthFailureCause =
  | 'unknown_user'
  | 'bad_password'
  | 'stale_nonce'
  | 'nonce_reused'
  | 'identity_mismatch'
  | 'realm_mismatch'
  | 'backend_unavailable'
  | 'malformed';

export const AUTH_FAILURE_CAUSES: readonly AuthFailureCause[] = [
  'unknown_user',
  'bad_password',
  'stale_nonce',
  'nonce_reused',
  'identity_mismatch',
  'realm_mismatch',
  'backend_unavailable',
  'malformed',
];

export interface AuthSucceededPayload {
  readonly user: string;
  readonly realm: string;
  readonly domain: string;
  readonly method: string;
  readonly source: Source;
  readonly userAgent?: string;
  readonly algorithm: string;
  readonly callId?: string;
}

export interface AuthFailedPayload {
  /** Absent only when the credentials were too malformed to name a user. */
  readonly user?: string;
  readonly realm: string;
  readonly domain: string;
  readonly method: string;
  readonly source: Source;
  readonly userAgent?: string;
  readonly algorithm: string;
  readonly callId?: string;
  readonly cause: AuthFailureCause;
}

export interface CallAttemptedPayload {
  readonly callId: string;
  readonly from: string;
  readonly to: string;
  readonly requestUri: string;
  readonly source: Source;
}
export interface CallRoutedPayload {
  readonly callId: string;
  readonly targets: readonly string[];
}
export interface CallAnsweredPayload {
  readonly callId: string;
  readonly status: number;
}
export interface CallFailedPayload {
  readonly callId: string;
  readonly status: number;
  readonly reason?: string;
}
export interface CallEndedPayload {
  readonly callId: string;
  /** Which side hung up: 'caller', 'callee', or an instance decision such as 'timeout'. */
  readonly by?: string;
}

export type BanScope = 'ip' | 'user';
export interface BanAddedPayload {
  readonly scope: BanScope;
  readonly value: string;
  /** Epoch ms; the ban is in force while until > now. */
  readonly until: number;
  readonly reason: string;
}
export interface BanRemovedPayload {
  readonly scope: BanScope;
  readonly value: string;
}

/** Payload per event type, current version. */
export interface EventPayloads {
  'contact.bound': ContactBoundPayload;
  'contact.refreshed': ContactBoundPayload;
  'contact.removed': ContactRemovedPayload;
  'contact.expired': ContactExpiredPayload;
  'auth.succeeded': AuthSucceededPayload;
  'auth.failed': AuthFailedPayload;
  'call.attempted': CallAttemptedPayload;
  'call.routed': CallRoutedPayload;
  'call.answered': CallAnsweredPayload;
  'call.failed': CallFailedPayload;
  'call.ended': CallEndedPayload;
  'ban.added': BanAddedPayload;
  'ban.removed': BanRemovedPayload;
}

export type EventType = keyof EventPayloads;

export const EVENT_TYPES: readonly EventType[] = [
  'contact.bound',
  'contact.refreshed',
  'contact.removed',
  'contact.expired',
  'auth.succeeded',
  'auth.failed',
  'call.attempted',
  'call.routed',
  'call.answered',
  'call.failed',
  'call.ended',
  'ban.added',
  'ban.removed',
];

/** The version this code emits for each type; readers upcast older ones to it. */
export const CURRENT_VERSION: { readonly [T in EventType]: number } = {
  'contact.bound': 1,
  'contact.refreshed': 1,
  'contact.removed': 1,
  'contact.expired': 1,
  'auth.succeeded': 1,
  'auth.failed': 1,
  'call.attempted': 1,
  'call.routed': 1,
  'call.answered': 1,
  'call.failed': 1,
  'call.ended': 1,
  'ban.added': 1,
  'ban.removed': 1,
};

export type EventOf<T extends EventType> = EventEnvelope<T> & EventPayloads[T];

export type ContactBoundEvent = EventOf<'contact.bound'>;
export type ContactRefreshedEvent = EventOf<'contact.refreshed'>;
export type ContactRemovedEvent = EventOf<'contact.removed'>;
export type ContactExpiredEvent = EventOf<'contact.expired'>;
export type AuthSucceededEvent = EventOf<'auth.succeeded'>;
export type AuthFailedEvent = EventOf<'auth.failed'>;
export type CallAttemptedEvent = EventOf<'call.attempted'>;
export type CallRoutedEvent = EventOf<'call.routed'>;
export type CallAnsweredEvent = EventOf<'call.answered'>;
export type CallFailedEvent = EventOf<'call.failed'>;
export type CallEndedEvent = EventOf<'call.ended'>;
export type BanAddedEvent = EventOf<'ban.added'>;
export type BanRemovedEvent = EventOf<'ban.removed'>;

/** Every event sipledger emits, discriminated by `type`. */
export type SipledgerEvent =
  | ContactBoundEvent
  | ContactRefreshedEvent
  | ContactRemovedEvent
  | ContactExpiredEvent
  | AuthSucceededEvent
  | AuthFailedEvent
  | CallAttemptedEvent
  | CallRoutedEvent
  | CallAnsweredEvent
  | CallFailedEvent
  | CallEndedEvent
  | BanAddedEvent
  | BanRemovedEvent;

export interface EventMeta {
  /** Epoch ms of the instant it happened. */
  readonly time: number;
  /** Defaults to a fresh UUID. */
  readonly id?: string;
  readonly instance?: string;
}

/** Builds an event of the current version for `type`. */
export function makeEvent<T extends EventType>(type: T, payload: EventPayloads[T], meta: EventMeta): EventOf<T> {
  // Copied with Object.assign and completed field by field, not with object spread: in Node 20 (V8 11)
  // `{ ...payload, ... }` gives every object its own hidden class, which turns each later property
  // read of the event (schema check, JSON encoding, projections) into a slow, megamorphic lookup.
  // Keys come out in the same order as `{ ...payload, ...envelope }`: the payload's, then the envelope's.
  const event: { type?: T; version?: number; id?: string; time?: number; instance?: string } = Object.assign({}, payload);
  // The envelope wins over same-named payload fields, so an event can be built from another's fields.
  event.type = type;
  event.version = CURRENT_VERSION[type];
  event.id = meta.id ?? randomUUID();
  event.time = meta.time;
  if (meta.instance !== undefined) event.instance = meta.instance;
  return event as unknown as EventOf<T>;
}

export const contactBound = (p: ContactBoundPayload, m: EventMeta): ContactBoundEvent => makeEvent('contact.bound', p, m);
export const contactRefreshed = (p: ContactBoundPayload, m: EventMeta): ContactRefreshedEvent =>
  makeEvent('contact.refreshed', p, m);
export const contactRemoved = (p: ContactRemovedPayload, m: EventMeta): ContactRemovedEvent => makeEvent('contact.removed', p, m);
export const contactExpired = (p: ContactExpiredPayload, m: EventMeta): ContactExpiredEvent => makeEvent('contact.expired', p, m);
export const authSucceeded = (p: AuthSucceededPayload, m: EventMeta): AuthSucceededEvent => makeEvent('auth.succeeded', p, m);
export const authFailed = (p: AuthFailedPayload, m: EventMeta): AuthFailedEvent => makeEvent('auth.failed', p, m);
export const callAttempted = (p: CallAttemptedPayload, m: EventMeta): CallAttemptedEvent => makeEvent('call.attempted', p, m);
export const callRouted = (p: CallRoutedPayload, m: EventMeta): CallRoutedEvent => makeEvent('call.routed', p, m);
export const callAnswered = (p: CallAnsweredPayload, m: EventMeta): CallAnsweredEvent => makeEvent('call.answered', p, m);
export const callFailed = (p: CallFailedPayload, m: EventMeta): CallFailedEvent => makeEvent('call.failed', p, m);
export const callEnded = (p: CallEndedPayload, m: EventMeta): CallEndedEvent => makeEvent('call.ended', p, m);
export const banAdded = (p: BanAddedPayload, m: EventMeta): BanAddedEvent => makeEvent('ban.added', p, m);
export const banRemoved = (p: BanRemovedPayload, m: EventMeta): BanRemovedEvent => makeEvent('ban.removed', p, m);

export function isEventType(type: unknown): type is EventType {
  return typeof type === 'string' && Object.prototype.hasOwnProperty.call(CURRENT_VERSION, type);
}

/**
 * The canonical form of an address of record: `sip:user@domain`, scheme sip (sips and tel are not
 * AORs here), domain lowercased, no port, no parameters. The user part keeps its case: RFC 3261
 * section 19.1.4 compares user parts case-sensitively. Returns null for anything that is not a SIP URI
 * with a user and a host.
 */
export function canonicalAor(uri: string): string | null {
  const m = /^\s*<?\s*sips?:([^@\s;?>]+)@([^\s;?>:]+)(?::\d+)?(?:[;?][^>]*)?>?\s*$/i.exec(uri);
  if (!m) return null;
  const user = m[1]!;
  const host = m[2]!.toLowerCase();
  return `sip:${user}@${host}`;
}

/**
 * The key an event is partitioned by, so one user's events stay in order (DESIGN.md, "Scaling out"):
 * the AOR for registration events, user@realm for auth events, the Call-ID for calls, scope:value for bans.
 */
export function partitionKey(event: SipledgerEvent): string {
  switch (event.type) {
    case 'contact.bound':
    case 'contact.refreshed':
    case 'contact.removed':
    case 'contact.expired':
      return event.aor;
    case 'auth.succeeded':
    case 'auth.failed':
      return `${event.user ?? ''}@${event.realm}`;
    case 'call.attempted':
    case 'call.routed':
    case 'call.answered':
    case 'call.failed':
    case 'call.ended':
      return event.callId;
    case 'ban.added':
    case 'ban.removed':
      return `${event.scope}:${event.value}`;
  }
}

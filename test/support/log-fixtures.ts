/** Event builders shared by the log, projection, crash and benchmark code. */
import {
  authFailed,
  authSucceeded,
  callAnswered,
  callAttempted,
  callEnded,
  callFailed,
  callRouted,
  contactBound,
  contactRefreshed,
  contactRemoved,
  type AuthFailureCause,
  type ContactBoundEvent,
  type ContactBoundPayload,
  type SipledgerEvent,
} from '../../src/core/log/events.js';

export const T0 = Date.UTC(2024, 4, 1, 14, 0, 0);

export function bound(
  user: string,
  n: number,
  time: number,
  overrides: Partial<ContactBoundPayload> = {},
): ContactBoundEvent {
  const uri = `sip:${user}@10.0.${(n >> 8) & 255}.${n & 255}:5060;transport=udp`;
  return contactBound(
    {
      aor: `sip:${user}@example.com`,
      contact: `<${uri}>;expires=3600`,
      uri,
      expiresAt: time + 3_600_000,
      q: 1,
      callId: `reg-${user}-${n}@10.0.0.1`,
      cseq: n + 1,
      userAgent: 'Yealink SIP-T46S 66.86.0.15',
      source: { address: `10.0.${(n >> 8) & 255}.${n & 255}`, port: 5060, transport: 'udp' },
      ...overrides,
    },
    { time },
  );
}

/** One of every event type, all valid against their schemas. */
export function oneOfEach(time = T0): SipledgerEvent[] {
  const source = { address: '192.0.2.10', port: 5060, transport: 'udp' as const };
  return [
    bound('alice', 1, time, {
      instanceId: '<urn:uuid:00000000-0000-1000-8000-000a95a0e128>',
      regId: 1,
      path: ['<sip:edge.example.com;lr>'],
      received: 'sip:198.51.100.7:40211',
    }),
    contactRefreshed(bound('alice', 1, time + 1000), { time: time + 1000 }),
    contactRemoved({ aor: 'sip:alice@example.com', uri: 'sip:alice@10.0.0.1:5060;transport=udp', callId: 'x@y', cseq: 9, reason: 'unregistered' }, { time: time + 2000 }),
    authSucceeded({ user: 'alice', realm: 'example.com', domain: 'example.com', method: 'REGISTER', source, algorithm: 'MD5', callId: 'c1' }, { time, instance: 'sl-a' }),
    authFailed(
      { user: 'bob', realm: 'example.com', domain: 'example.com', method: 'INVITE', source, algorithm: 'SHA-256', cause: 'bad_password', userAgent: 'friendly-scanner' },
      { time },
    ),
    authFailed({ realm: 'example.com', domain: 'example.com', method: 'REGISTER', source, algorithm: 'MD5', cause: 'malformed' }, { time }),
    callAttempted({ callId: 'call-1', from: 'sip:alice@example.com', to: 'sip:bob@example.com', requestUri: 'sip:bob@example.com', source }, { time }),
    callRouted({ callId: 'call-1', targets: ['sip:bob@10.0.0.2:5060'] }, { time: time + 10 }),
    callAnswered({ callId: 'call-1', status: 200 }, { time: time + 20 }),
    callEnded({ callId: 'call-1', by: 'caller' }, { time: time + 30 }),
    callFailed({ callId: 'call-2', status: 486, reason: 'Busy Here' }, { time }),
  ];
}

export function failure(user: string | undefined, ip: string, cause: AuthFailureCause, time: number): SipledgerEvent {
  return authFailed(
    {
      ...(user !== undefined && { user }),
      realm: 'example.com',
      domain: 'example.com',
      method: 'REGISTER',
      source: { address: ip, port: 5060, transport: 'udp' },
      algorithm: 'MD5',
      cause,
    },
    { time },
  );
}

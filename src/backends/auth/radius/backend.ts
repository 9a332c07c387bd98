/**
 * The RADIUS digest verifier: the RADIUS server checks the digest, sipledger only challenges
 * (Kamailio auth_radius; FreeRADIUS rlm_digest on the other side).
 *
 * Requests use the draft-sterman-aaa-sip-00 layout, the only one FreeRADIUS 3.x rlm_digest checks:
 * User-Name, Digest-Response (206), one Digest-Attributes (207) per digest parameter,
 * Service-Type, Sip-Uri-User (208), NAS-IP-Address and Message-Authenticator.
 */
import type { Logger } from 'pino';
import type {
  AttributeValue,
  Attributes,
  DigestAlgorithm,
  DigestVerifier,
  DigestVerifyRequest,
  LookupOptions,
  VerifyResult,
} from '../../../core/auth/backend.js';
import { parseSipAvp } from './avp.js';
import { RadiusClient, type RadiusAttributeList, type RadiusReply, type RadiusServerConfig, type RadiusServerHealth, type RadiusStats } from './client.js';
import { ATTR, DIGEST_SUB, NAMES } from './dictionary.js';
import { digestSubAttribute } from './packet.js';

export type { RadiusServerConfig, RadiusStats, RadiusServerHealth } from './client.js';

export interface RadiusBackendOptions {
  /** Instance name from the configuration, used in logs, metrics and events. */
  name: string;
  /** Tried in order; failover to the next. */
  servers: RadiusServerConfig[];
  /** Per attempt, default 1500 ms (keep it above the server's reject_delay). */
  timeoutMs?: number;
  /** Identical retransmissions per server, default 1. */
  retries?: number;
  /** How long a dead server is skipped before it is re-probed with Status-Server, default 10 s. */
  deadTimeMs?: number;
  /** Default '127.0.0.1'. */
  nasIpAddress?: string;
  /** Default 15 (Sip-Session in draft-sterman-aaa-sip). */
  serviceType?: number;
  logger: Logger;
}

export interface RadiusBackend extends DigestVerifier {
  /** A snapshot of the client's counters. */
  readonly stats: Readonly<RadiusStats>;
  /** Each configured server and whether it is currently used. */
  health(): RadiusServerHealth[];
}

/** rlm_digest checks MD5 and MD5-sess only; a SHA-2 response is always rejected by it. */
const ALGORITHMS: readonly DigestAlgorithm[] = Object.freeze(['MD5', 'MD5-sess'] as const);
const HEX32 = /^[0-9a-fA-F]{32}$/;
/** Reply attributes that are transport, not subscriber data. */
const NOT_ATTRIBUTES = new Set(['Message-Authenticator', 'Proxy-State', NAMES.SIP_AVP]);

export function createRadiusBackend(opts: RadiusBackendOptions): RadiusBackend {
  const serviceType = opts.serviceType ?? 15;
  if (!Number.isInteger(serviceType) || serviceType < 0 || serviceType > 0xffffffff) {
    throw new TypeError(`radius backend ${opts.name}: serviceType must be a 32-bit unsigned integer`);
  }
  const nasIpAddress = opts.nasIpAddress ?? '127.0.0.1';
  const log = opts.logger.child({ backend: opts.name });
  const client = new RadiusClient({
    name: opts.name,
    servers: opts.servers,
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
    deadTimeMs: opts.deadTimeMs,
    nasIpAddress,
    logger: opts.logger,
  });

  return {
    kind: 'verifier',
    name: opts.name,
    algorithms: ALGORITHMS,
    get stats() {
      return client.stats;
    },
    health: () => client.health(),
    async verify(request: DigestVerifyRequest, options: LookupOptions): Promise<VerifyResult> {
      const built = buildAccessRequest(request, serviceType, nasIpAddress);
      if (typeof built === 'string') {
        // Nothing a RADIUS server could accept: answer locally, as rlm_digest would.
        return { result: 'reject', reason: built };
      }
      const reply = await client.request(built, options.signal);
      return interpretReply(reply, log);
    },
    close: () => client.close(),
  };
}

/** The Access-Request attributes, or the reason the request cannot be expressed. */
export function buildAccessRequest(request: DigestVerifyRequest, serviceType: number, nasIpAddress: string): RadiusAttributeList | string {
  if (!ALGORITHMS.includes(request.algorithm)) return `algorithm ${request.algorithm} cannot be checked by RADIUS (MD5 and MD5-sess only)`;
  if (!HEX32.test(request.response)) return 'digest response is not 32 hex digits';
  for (const key of ['username', 'realm', 'nonce', 'uri', 'method'] as const) {
    if (typeof request[key] !== 'string' || request[key].length === 0) return `digest ${key} is empty`;
  }
  if (request.algorithm === 'MD5-sess' && (request.cnonce === undefined || request.cnonce.length === 0)) return 'MD5-sess without cnonce';
  if (request.qop !== undefined && (request.cnonce === undefined || request.nc === undefined)) return 'qop without cnonce or nc';

  // Kamailio auth_radius (append_realm_to_username): the RADIUS User-Name is user@realm unless the
  // digest username already names a domain. It only keys the password lookup; the hash uses the
  // Digest-Attributes user-name and realm.
  const userName = request.username.includes('@') ? request.username : `${request.username}@${request.realm}`;
  const subs: Array<[number, string | undefined]> = [
    [DIGEST_SUB.REALM, request.realm],
    [DIGEST_SUB.NONCE, request.nonce],
    [DIGEST_SUB.METHOD, request.method],
    [DIGEST_SUB.URI, request.uri],
    [DIGEST_SUB.QOP, request.qop],
    [DIGEST_SUB.ALGORITHM, request.algorithm],
    [DIGEST_SUB.BODY_DIGEST, request.qop === 'auth-int' ? request.bodyDigest : undefined],
    [DIGEST_SUB.CNONCE, request.cnonce],
    [DIGEST_SUB.NONCE_COUNT, request.nc],
    [DIGEST_SUB.USER_NAME, request.username],
  ];
  const attributes: RadiusAttributeList = [];
  try {
    if (Buffer.byteLength(userName, 'utf8') > 253) return 'User-Name longer than 253 bytes';
    attributes.push(['User-Name', userName]);
    attributes.push([NAMES.DIGEST_RESPONSE, request.response.toLowerCase()]);
    // One Digest-Attributes per parameter, as Kamailio sends them.
    for (const [subtype, value] of subs) {
      if (value !== undefined && value.length > 0) attributes.push([NAMES.DIGEST_ATTRIBUTES, digestSubAttribute(subtype, value)]);
    }
  } catch (err) {
    return err instanceof RangeError ? err.message : 'digest parameters cannot be encoded';
  }
  attributes.push(['Service-Type', serviceType]);
  if (request.sipUriUser !== undefined && request.sipUriUser.length > 0) {
    if (Buffer.byteLength(request.sipUriUser, 'utf8') > 253) return 'Sip-Uri-User longer than 253 bytes';
    attributes.push([NAMES.SIP_URI_USER, request.sipUriUser]);
  }
  attributes.push(['NAS-IP-Address', nasIpAddress]);
  return attributes;
}

/** Maps a verified reply to the verifier's outcome vocabulary. */
export function interpretReply(reply: Pick<RadiusReply, 'code' | 'attributes' | 'raw'>, log?: Logger): VerifyResult {
  if (reply.code !== 'Access-Accept') {
    // RFC 2865 section 4.4: "If the NAS does not support challenge/response, it MUST treat an
    // Access-Challenge as though it had received an Access-Reject instead."
    // Reply items of a reject are never loaded (FreeRADIUS 3 may leave authorize-time items in it).
    const message = reply.attributes['Reply-Message'];
    const reason = typeof message === 'string' ? message : Array.isArray(message) && typeof message[0] === 'string' ? message[0] : undefined;
    return reason === undefined ? { result: 'reject' } : { result: 'reject', reason };
  }
  const attributes: Attributes = {};
  for (const [type, value] of reply.raw) {
    if (type !== ATTR.SIP_AVP) continue;
    const avp = parseSipAvp(value.toString('utf8'));
    if (avp === null) {
      log?.warn({ attribute: 'SIP-AVP', length: value.length }, 'SIP-AVP not in name:value / name#int syntax; ignored');
      continue;
    }
    add(attributes, avp.name, avp.value);
  }
  for (const [name, value] of Object.entries(reply.attributes)) {
    if (NOT_ATTRIBUTES.has(name)) continue;
    if (name === 'Vendor-Specific' && isRecord(value)) {
      for (const [vsaName, vsaValue] of Object.entries(value)) addDecoded(attributes, vsaName, vsaValue);
      continue;
    }
    addDecoded(attributes, name, value);
  }
  return { result: 'accept', attributes };
}

function addDecoded(attributes: Attributes, name: string, value: unknown): void {
  const values = Array.isArray(value) && !isTagged(value) ? value : [value];
  for (const v of values) {
    const converted = toAttributeValue(isTagged(v) ? v[1] : v);
    if (converted !== undefined) add(attributes, name, converted);
  }
}

function add(attributes: Attributes, name: string, value: AttributeValue): void {
  const existing = attributes[name];
  if (existing === undefined) attributes[name] = value;
  else if (Array.isArray(existing)) existing.push(value);
  else attributes[name] = [existing, value];
}

/** The codec decodes a tagged attribute (RFC 2868) as [tag, value]. */
function isTagged(value: unknown): value is [number, unknown] {
  return Array.isArray(value) && value.length === 2 && typeof value[0] === 'number' && value[0] <= 0x1f && !Array.isArray(value[1]) && typeof value[1] !== 'number';
}

function toAttributeValue(value: unknown): AttributeValue | undefined {
  if (typeof value === 'string' || typeof value === 'number') return value;
  if (value instanceof Date) return Math.floor(value.getTime() / 1000);
  if (Buffer.isBuffer(value)) return `0x${value.toString('hex')}`;
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

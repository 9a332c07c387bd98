/**
 * The RADIUS dictionary sipledger loads into the `radius` codec, and the attribute numbers it uses.
 *
 * The codec bundles only the RFC dictionaries. They lack the draft-sterman-aaa-sip attributes that
 * FreeRADIUS rlm_digest and Kamailio auth_radius speak (206, 207, 208, 225), and the bundled
 * dictionary.rfc5090 already uses the name `Digest-Response` for attribute 103. The codec resolves a
 * name to whichever file defined it last, so our names are distinct (`Sterman-*`).
 *
 * The text is embedded here (not shipped as a data file) because the build copies only compiled
 * TypeScript into dist/ and the published package carries only dist/: the same code path works from
 * `tsx` on the source tree and from the installed package. The codec only reads dictionaries from
 * files, so the text is written to a private temporary directory while the codec reads it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const DICTIONARY_TEXT = `# sipledger: draft-sterman-aaa-sip attributes (FreeRADIUS rlm_digest, Kamailio auth_radius).
ATTRIBUTE	Sterman-Digest-Response		206	string
ATTRIBUTE	Sterman-Digest-Attributes	207	octets
ATTRIBUTE	Sip-Uri-User			208	string
ATTRIBUTE	SIP-AVP				225	string
VALUE	Service-Type	Sip-Session	15
`;

/** Attribute numbers (RFC 2865, RFC 3579, draft-sterman-aaa-sip-00). */
export const ATTR = {
  USER_NAME: 1,
  NAS_IP_ADDRESS: 4,
  SERVICE_TYPE: 6,
  REPLY_MESSAGE: 18,
  PROXY_STATE: 33,
  MESSAGE_AUTHENTICATOR: 80,
  DIGEST_RESPONSE: 206,
  DIGEST_ATTRIBUTES: 207,
  SIP_URI_USER: 208,
  SIP_AVP: 225,
} as const;

/** Sub-attribute types carried inside Digest-Attributes (207), draft-sterman-aaa-sip-00 section 3.2. */
export const DIGEST_SUB = {
  REALM: 1,
  NONCE: 2,
  METHOD: 3,
  URI: 4,
  QOP: 5,
  ALGORITHM: 6,
  BODY_DIGEST: 7,
  CNONCE: 8,
  NONCE_COUNT: 9,
  USER_NAME: 10,
} as const;

/** Attribute names this module relies on, as defined above. */
export const NAMES = {
  DIGEST_RESPONSE: 'Sterman-Digest-Response',
  DIGEST_ATTRIBUTES: 'Sterman-Digest-Attributes',
  SIP_URI_USER: 'Sip-Uri-User',
  SIP_AVP: 'SIP-AVP',
} as const;

/** The subset of the untyped `radius` package that sipledger uses. */
export interface RadiusCodec {
  add_dictionary(file: string): void;
  load_dictionaries(): void;
  unload_dictionaries(): void;
  attr_name_to_id(name: string, vendor?: number): string | number | undefined;
  attr_id_to_name(id: string | number, vendor?: number): string | undefined;
  encode(args: {
    code: string;
    secret: string;
    identifier?: number;
    attributes?: Array<[string | number, unknown, ...unknown[]]>;
    add_message_authenticator?: boolean;
    authenticator?: Buffer;
  }): Buffer;
  encode_response(args: {
    packet: DecodedPacket;
    code: string;
    secret: string;
    attributes?: Array<[string | number, unknown]>;
  }): Buffer;
  decode(args: { packet: Buffer; secret: string }): DecodedPacket;
}

export interface DecodedPacket {
  code: string;
  identifier: number;
  length: number;
  authenticator: Buffer;
  attributes: Record<string, unknown>;
  raw_attributes: Array<[number, Buffer]>;
}

const require = createRequire(import.meta.url);
let codec: RadiusCodec | undefined;
let dictionaryFile: string | undefined;

const loadedOurs = (c: RadiusCodec): boolean => String(c.attr_name_to_id(NAMES.DIGEST_ATTRIBUTES)) === String(ATTR.DIGEST_ATTRIBUTES);

/**
 * The codec with sipledger's dictionary loaded. The codec reads added dictionaries only on its first
 * encode/decode, and keeps them in memory: the file exists only while it is being read, in a private
 * directory. If something in this process already used the codec, or unloaded its dictionaries, it
 * is reloaded so that our attributes are known.
 */
export function radiusCodec(): RadiusCodec {
  if (codec !== undefined && loadedOurs(codec)) return codec;
  const loaded = require('radius') as RadiusCodec;
  let dir: string;
  if (dictionaryFile === undefined) {
    dir = mkdtempSync(path.join(tmpdir(), 'sipledger-radius-'));
    dictionaryFile = path.join(dir, 'dictionary.sipledger');
    loaded.add_dictionary(dictionaryFile);
  } else {
    // The codec remembers the path it was given: recreate it (exclusively: mkdir fails if it exists).
    dir = path.dirname(dictionaryFile);
    mkdirSync(dir, { mode: 0o700 });
  }
  try {
    writeFileSync(dictionaryFile, DICTIONARY_TEXT, { mode: 0o600, flag: 'wx' });
    loaded.load_dictionaries();
    if (!loadedOurs(loaded)) {
      // Loaded earlier without our file: load everything again, ours included.
      loaded.unload_dictionaries();
      loaded.load_dictionaries();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const [key, name] of Object.entries(NAMES)) {
    const expected = ATTR[key as keyof typeof NAMES];
    if (String(loaded.attr_name_to_id(name)) !== String(expected)) {
      throw new Error(`radius dictionary did not load: ${name} is not attribute ${expected}`);
    }
  }
  codec = loaded;
  return codec;
}

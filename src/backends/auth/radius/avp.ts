/**
 * SIP-AVP reply values in the OpenSER/Kamailio auth_radius syntax:
 *
 *   name:string    a string AVP named `name`
 *   name#int       an integer AVP named `name`
 *   #id:string     a string AVP with the numeric name `id`
 *   #id#int        an integer AVP with the numeric name `id`
 *
 * Numeric names are kept as `#id` keys so that they never collide with string names.
 */
import type { AttributeValue } from '../../../core/auth/backend.js';

export interface SipAvp {
  readonly name: string;
  readonly value: AttributeValue;
}

const INTEGER = /^[+-]?\d+$/;

/** Parses one SIP-AVP string; null when it is not in the Kamailio syntax. */
export function parseSipAvp(text: string): SipAvp | null {
  let name: string;
  let rest: string;
  if (text.startsWith('#')) {
    const match = /^#(\d+)([:#])/.exec(text);
    if (match === null) return null;
    name = `#${Number(match[1])}`;
    rest = text.slice(match[0].length - 1);
  } else {
    const sep = text.search(/[:#]/);
    if (sep <= 0) return null;
    name = text.slice(0, sep);
    rest = text.slice(sep);
  }
  const kind = rest[0];
  const raw = rest.slice(1);
  if (kind === ':') return { name, value: raw };
  if (!INTEGER.test(raw)) return null;
  const value = Number(raw);
  // Kamailio keeps integer AVPs in a C int.
  if (!Number.isSafeInteger(value) || value > 2 ** 31 - 1 || value < -(2 ** 31)) return null;
  return { name, value };
}

/**
 * Event schemas and upcasting (DESIGN.md, contract 4: events are versioned data, history is never
 * migrated). Every (type, version) has a JSON Schema in schemas/events/<type>.v<version>.json. When a
 * payload changes shape, the new version gets a new schema and an upcaster from the previous version;
 * readers run the chain on every record they decode, so projections only ever see current versions.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { CURRENT_VERSION, isEventType, type SipledgerEvent } from './events.js';

/** A raw record as stored: at least a type and a version. */
export interface StoredEvent {
  readonly type: string;
  readonly version: number;
  readonly [field: string]: unknown;
}

/** Turns a record of `fromVersion` into the same event at `fromVersion + 1`. Must be pure. */
export type Upcaster = (event: StoredEvent) => StoredEvent;

export class UpcasterRegistry {
  readonly #steps = new Map<string, Upcaster>();

  /** Registers the step from `fromVersion` to `fromVersion + 1` for `type`. */
  register(type: string, fromVersion: number, step: Upcaster): this {
    const key = `${type}\u0000${fromVersion}`;
    if (this.#steps.has(key)) throw new Error(`an upcaster for ${type} v${fromVersion} is already registered`);
    this.#steps.set(key, step);
    return this;
  }

  /**
   * Applies every registered step until none applies. Versions with no step (the current one, or a
   * version newer than this code knows) are returned unchanged.
   */
  upcast(event: StoredEvent): StoredEvent {
    let current = event;
    for (let guard = 0; guard < 1000; guard++) {
      const step = this.#steps.get(`${current.type}\u0000${current.version}`);
      if (!step) return current;
      const next = step(current);
      if (next.version !== current.version + 1 || next.type !== current.type) {
        throw new Error(`upcaster for ${current.type} v${current.version} must produce v${current.version + 1}`);
      }
      current = next;
    }
    throw new Error(`upcaster chain for ${event.type} does not terminate`);
  }
}

/**
 * The upcasters sipledger ships. Every event type is at version 1 today, so it is empty; a payload
 * change registers its step here together with the new schema file.
 */
export const defaultUpcasters = new UpcasterRegistry();

function findSchemaDir(): string {
  // Source (src/core/log) and build output (dist/src/core/log) sit at different depths below the
  // package root, which ships schemas/ (package.json "files").
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(dir, 'schemas', 'events');
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error('schemas/events not found above ' + fileURLToPath(import.meta.url));
}

export interface ValidationResult {
  readonly ok: boolean;
  /** Human-readable problems, empty when ok. */
  readonly errors: readonly string[];
}

/** Compiled validators for every schema file in schemas/events, loaded once. */
export class EventSchemas {
  readonly #validators = new Map<string, ValidateFunction>();

  constructor(dir: string = findSchemaDir()) {
    const ajv = new Ajv({ allErrors: true, strict: true });
    for (const file of readdirSync(dir)) {
      const m = /^(.+)\.v(\d+)\.json$/.exec(file);
      if (!m) continue;
      const schema = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as object;
      this.#validators.set(`${m[1]!}\u0000${m[2]!}`, ajv.compile(schema));
    }
  }

  has(type: string, version: number): boolean {
    return this.#validators.has(`${type}\u0000${version}`);
  }

  /** The (type, version) pairs that have a schema. */
  list(): Array<{ type: string; version: number }> {
    return [...this.#validators.keys()].map((k) => {
      const [type, version] = k.split('\u0000');
      return { type: type!, version: Number(version) };
    });
  }

  validate(event: unknown): ValidationResult {
    if (event === null || typeof event !== 'object') return { ok: false, errors: ['event is not an object'] };
    const { type, version } = event as { type?: unknown; version?: unknown };
    if (typeof type !== 'string' || typeof version !== 'number') {
      return { ok: false, errors: ['event has no string type and numeric version'] };
    }
    const validator = this.#validators.get(`${type}\u0000${version}`);
    if (!validator) return { ok: false, errors: [`no schema for ${type} v${version}`] };
    if (validator(event)) return { ok: true, errors: [] };
    return {
      ok: false,
      errors: (validator.errors ?? []).map((e) => `${type} v${version}${e.instancePath || ''} ${e.message ?? 'is invalid'}`),
    };
  }
}

let shared: EventSchemas | undefined;
/** The schemas shipped with sipledger, compiled on first use. */
export function eventSchemas(): EventSchemas {
  shared ??= new EventSchemas();
  return shared;
}

/**
 * Turns a decoded record into an event of the current version. Records of unknown types pass through
 * untouched (a newer instance may write types this one does not know; projections ignore them).
 */
export function decodeEvent(raw: unknown, upcasters: UpcasterRegistry = defaultUpcasters): SipledgerEvent {
  if (raw === null || typeof raw !== 'object' || typeof (raw as StoredEvent).type !== 'string') {
    throw new TypeError('record is not an event');
  }
  const stored = raw as StoredEvent;
  // Fast path for replay: the shipped chain ends at the current version.
  if (upcasters === defaultUpcasters && isEventType(stored.type) && stored.version === CURRENT_VERSION[stored.type]) {
    return stored as unknown as SipledgerEvent;
  }
  return upcasters.upcast(stored) as unknown as SipledgerEvent;
}

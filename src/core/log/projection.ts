import type { SipledgerEvent } from './events.js';

/**
 * A read model derived from the log (DESIGN.md, contract 1). `apply` is pure and deterministic: no
 * clock reads, no I/O, no randomness; everything it needs is in the event. Time-dependent answers
 * (expiry, windows) take the query time as an argument instead.
 */
export interface Projection {
  /** Stable name, the key of this projection's state in a snapshot. */
  readonly name: string;
  /**
   * Version of the state layout and of the rules. Bump it when either changes: a snapshot written by
   * another version is ignored and the projection is rebuilt from the log.
   */
  readonly version: number;
  apply(event: SipledgerEvent): void;
  /** Forgets everything, as if no event had been applied. */
  truncate(): void;
  /**
   * Plain JSON-serialisable state. The snapshot is written out over several turns of the event loop
   * while events keep applying, so what this returns must not change afterwards: fresh arrays and
   * objects holding records that apply() replaces rather than modifies.
   */
  toSnapshot(): unknown;
  /** Replaces the state with one produced by toSnapshot of the same version. Throws if malformed. */
  restore(state: unknown): void;
}

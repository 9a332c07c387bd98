/**
 * A copy of a string that shares no memory with the message it was cut from.
 *
 * Header values, parameters and tokens are substrings of a received message's text, and V8 keeps a
 * substring of 13 characters or more as a view onto its parent: a Call-ID or a nonce kept for
 * minutes would keep the whole request's text (several hundred bytes) alive with it. What outlives
 * the request (bindings, transaction keys, nonce counts, audit entries) is detached first.
 *
 * Prepending one character builds a two-part string; slicing that flattens it into a new string of
 * its own, and the slice then refers to that new string only. The content is always the same as the
 * input's: only the memory it points to differs.
 */
export function detach(s: string): string {
  return (' ' + s).slice(1);
}

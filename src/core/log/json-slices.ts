/**
 * JSON text of a large value, written out in slices with the event loop free between them.
 *
 * A snapshot of the location table is megabytes of JSON (100,000 bindings: ~90 MB). Built with one
 * JSON.stringify and written with one writeFile, it holds the event loop for tens to hundreds of
 * milliseconds, during which no SIP message is answered: a periodic snapshot showed up as the
 * p99 of registrations. Here arrays and plain objects are walked, their elements stringified one by
 * one, and the text handed to `write` in pieces of about `pieceChars` characters, yielding to the
 * event loop after each piece.
 *
 * The text is what JSON.stringify would produce for values made of plain objects, arrays and JSON
 * leaves (what Projection.toSnapshot returns): property order, `undefined` properties left out and
 * `undefined` array elements as `null`. Values that are not plain objects or arrays are stringified
 * whole. The caller must not change the value while this runs; projections' snapshot states hold
 * records that later events replace rather than modify, so events may keep applying meanwhile.
 */
export async function writeJsonInSlices(value: unknown, write: (piece: string) => Promise<void>, pieceChars = 256 * 1024): Promise<number> {
  const parts: string[] = [];
  let pending = 0;
  let total = 0;
  // Synchronous unless a piece is full: no promise per element.
  const push = (s: string): Promise<void> | undefined => {
    parts.push(s);
    pending += s.length;
    return pending >= pieceChars ? flush() : undefined;
  };
  const flush = async (): Promise<void> => {
    if (pending === 0) return;
    const piece = parts.join('');
    parts.length = 0;
    pending = 0;
    total += piece.length;
    await write(piece);
    // Let datagrams and timers run before the next piece is built.
    await new Promise<void>((resolve) => setImmediate(resolve));
  };

  // Objects and arrays are walked; an array's elements (the records) are stringified one by one,
  // unless an element is itself a long array.
  const walk = async (v: unknown): Promise<void> => {
    let w: Promise<void> | undefined;
    if (Array.isArray(v)) {
      if ((w = push('['))) await w;
      for (let i = 0; i < v.length; i++) {
        if (i > 0 && (w = push(','))) await w;
        const el: unknown = v[i];
        if (Array.isArray(el) && el.length > 64) await walk(el);
        else if ((w = push(JSON.stringify(el) ?? 'null'))) await w;
      }
      if ((w = push(']'))) await w;
      return;
    }
    if (isPlainObject(v)) {
      if ((w = push('{'))) await w;
      let first = true;
      for (const key of Object.keys(v)) {
        const el = v[key];
        if (Array.isArray(el) || isPlainObject(el)) {
          if ((w = push(`${first ? '' : ','}${JSON.stringify(key)}:`))) await w;
          first = false;
          await walk(el);
          continue;
        }
        const text = JSON.stringify(el);
        if (text === undefined) continue;
        if ((w = push(`${first ? '' : ','}${JSON.stringify(key)}:${text}`))) await w;
        first = false;
      }
      if ((w = push('}'))) await w;
      return;
    }
    const text = JSON.stringify(v);
    if (text === undefined) throw new TypeError('value has no JSON text');
    if ((w = push(text))) await w;
  };

  await walk(value);
  await flush();
  return total;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

/**
 * Summarises a V8 heap snapshot: totals of self sizes (object count and bytes per constructor or
 * string kind), largest first, to see what a benchmark's or a fuzz run's live objects are made of.
 * With `--retainers NAME`, also what holds the objects of that kind (retainer kind and edge name).
 *
 *   node --import tsx scripts/bench-heap-summary.ts FILE.heapsnapshot [--top 30] [--retainers object:Foo]
 *
 * The snapshot is read as bytes and its number arrays are scanned in place, so snapshots larger than
 * the biggest string V8 can hold (about 512 MiB) can be read too.
 */
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: scripts/bench-heap-summary.ts FILE.heapsnapshot [--top N] [--retainers KIND]');
  process.exit(2);
}
const argAfter = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const top = Number(argAfter('--top') ?? 30) || 30;
const retainersOf = argAfter('--retainers');

const buf = readFileSync(file);

/** Offset just past `"key":[` (the first one after `from`). */
function arrayStart(key: string, from = 0): number {
  const at = buf.indexOf(`"${key}":[`, from, 'latin1');
  if (at < 0) throw new Error(`${file}: no "${key}" array`);
  return at + key.length + 4;
}

/** Parses a JSON array of non-negative integers starting at `start` into a typed array. */
function readNumbers(start: number): Float64Array {
  let out = new Float64Array(1 << 20);
  let n = 0;
  let cur = 0;
  let inNum = false;
  for (let i = start; i < buf.length; i++) {
    const c = buf[i]!;
    if (c >= 0x30 && c <= 0x39) {
      cur = cur * 10 + (c - 0x30);
      inNum = true;
      continue;
    }
    if (inNum) {
      if (n === out.length) {
        const grown = new Float64Array(out.length * 2);
        grown.set(out);
        out = grown;
      }
      out[n++] = cur;
      cur = 0;
      inNum = false;
    }
    if (c === 0x5d) break; // ]
  }
  return out.subarray(0, n);
}

/** Parses the JSON array of strings starting at `start`, one element at a time. */
function readStrings(start: number): string[] {
  const out: string[] = [];
  let i = start;
  for (;;) {
    while (buf[i] === 0x2c || buf[i] === 0x0a || buf[i] === 0x20) i++;
    if (buf[i] === 0x5d || i >= buf.length) return out;
    // buf[i] is the opening quote: find the closing one, skipping escapes.
    let j = i + 1;
    while (buf[j] !== 0x22) j += buf[j] === 0x5c ? 2 : 1;
    out.push(JSON.parse(buf.toString('utf8', i, j + 1)) as string);
    i = j + 1;
  }
}

const metaStart = buf.indexOf('"meta":', 0, 'latin1');
const metaEnd = buf.indexOf('"node_count"', metaStart, 'latin1');
const meta = JSON.parse(`{${buf.toString('utf8', metaStart, metaEnd).replace(/,\s*$/, '')}}`) as {
  meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] };
};
const nodeFields = meta.meta.node_fields;
const stride = nodeFields.length;
const typeAt = nodeFields.indexOf('type');
const nameAt = nodeFields.indexOf('name');
const sizeAt = nodeFields.indexOf('self_size');
const edgeCountAt = nodeFields.indexOf('edge_count');
const types = meta.meta.node_types[0];
const edgeStride = meta.meta.edge_fields.length;
const edgeTypeAt = meta.meta.edge_fields.indexOf('type');
const edgeNameAt = meta.meta.edge_fields.indexOf('name_or_index');
const edgeToAt = meta.meta.edge_fields.indexOf('to_node');
const edgeTypes = meta.meta.edge_types[0];

const nodes = readNumbers(arrayStart('nodes', metaEnd));
const strings = readStrings(arrayStart('strings', metaEnd));

const kindOf = (i: number): string => {
  const type = types[nodes[i + typeAt]!]!;
  return type === 'object' || type === 'closure' || type === 'native' ? `${type}:${strings[nodes[i + nameAt]!]}` : type;
};

const totals = new Map<string, { count: number; bytes: number }>();
let all = 0;
for (let i = 0; i < nodes.length; i += stride) {
  const name = kindOf(i);
  const size = nodes[i + sizeAt]!;
  all += size;
  const t = totals.get(name) ?? { count: 0, bytes: 0 };
  t.count++;
  t.bytes += size;
  totals.set(name, t);
}
console.log(`${file}: ${(all / 1048576).toFixed(1)} MiB in ${nodes.length / stride} objects`);
for (const [name, t] of [...totals.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) {
  console.log(`${(t.bytes / 1048576).toFixed(1).padStart(8)} MiB ${String(t.count).padStart(9)}  ${name.slice(0, 80)}`);
}

if (retainersOf !== undefined) {
  const edges = readNumbers(arrayStart('edges', metaEnd));
  const held = new Map<string, { count: number; bytes: number }>();
  let e = 0;
  for (let i = 0; i < nodes.length; i += stride) {
    const from = kindOf(i);
    const count = nodes[i + edgeCountAt]!;
    for (let k = 0; k < count; k++, e += edgeStride) {
      const to = edges[e + edgeToAt]!;
      if (kindOf(to) !== retainersOf) continue;
      const edgeType = edgeTypes[edges[e + edgeTypeAt]!]!;
      if (edgeType === 'weak') continue;
      const edgeName = edgeType === 'element' || edgeType === 'hidden' ? `[${edgeType}]` : strings[edges[e + edgeNameAt]!];
      const key = `${from} .${edgeName}`;
      const t = held.get(key) ?? { count: 0, bytes: 0 };
      t.count++;
      t.bytes += nodes[to + sizeAt]!;
      held.set(key, t);
    }
  }
  console.log(`\nretainers of ${retainersOf} (holder kind, edge; objects held, their self size):`);
  for (const [key, t] of [...held.entries()].sort((a, b) => b[1].count - a[1].count).slice(0, top)) {
    console.log(`${String(t.count).padStart(9)} ${(t.bytes / 1048576).toFixed(1).padStart(8)} MiB  ${key.slice(0, 110)}`);
  }
}

const pathsOf = argAfter('--paths');
if (pathsOf !== undefined) {
  // Reverse edges (retainer lists) for every node, then a chain of first strong retainers for a few
  // objects of the kind: what keeps them alive, step by step towards the roots.
  const edges = readNumbers(arrayStart('edges', metaEnd));
  const nodeCount = nodes.length / stride;
  const firstEdge = new Uint32Array(nodeCount + 1);
  for (let n = 0, e = 0; n < nodeCount; n++) {
    firstEdge[n] = e;
    e += nodes[n * stride + edgeCountAt]! * edgeStride;
  }
  firstEdge[nodeCount] = edges.length;
  const retainerCount = new Uint32Array(nodeCount + 1);
  for (let e = 0; e < edges.length; e += edgeStride) retainerCount[edges[e + edgeToAt]! / stride]!++;
  const retainerStart = new Uint32Array(nodeCount + 1);
  for (let n = 0, s = 0; n <= nodeCount; n++) {
    retainerStart[n] = s;
    s += retainerCount[n] ?? 0;
  }
  const retainerEdge = new Uint32Array(edges.length / edgeStride);
  const fill = retainerStart.slice();
  for (let n = 0; n < nodeCount; n++) {
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += edgeStride) {
      const to = edges[e + edgeToAt]! / stride;
      retainerEdge[fill[to]!++] = e;
    }
  }
  const ownerOfEdge = (e: number): number => {
    let lo = 0;
    let hi = nodeCount - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (firstEdge[mid]! <= e) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  // Distance from the root over strong edges, so each chain follows a shortest path to the roots.
  const distance = new Uint32Array(nodeCount).fill(0xffffffff);
  distance[0] = 0;
  let queue = [0];
  while (queue.length > 0) {
    const nextQueue: number[] = [];
    for (const n of queue) {
      for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += edgeStride) {
        if (edgeTypes[edges[e + edgeTypeAt]!] === 'weak') continue;
        const to = edges[e + edgeToAt]! / stride;
        if (distance[to] !== 0xffffffff) continue;
        distance[to] = distance[n]! + 1;
        nextQueue.push(to);
      }
    }
    queue = nextQueue;
  }
  const chains = new Map<string, number>();
  let sampled = 0;
  let unreachable = 0;
  for (let n = 0; n < nodeCount && sampled < 2000; n++) {
    if (kindOf(n * stride) !== pathsOf) continue;
    sampled++;
    if (distance[n] === 0xffffffff) {
      unreachable++;
      continue;
    }
    const steps: string[] = [];
    let cur = n;
    while (distance[cur]! > 0) {
      let next = -1;
      let label = '';
      for (let r = retainerStart[cur]!; r < retainerStart[cur + 1]!; r++) {
        const e = retainerEdge[r]!;
        const edgeType = edgeTypes[edges[e + edgeTypeAt]!]!;
        if (edgeType === 'weak') continue;
        const owner = ownerOfEdge(e);
        if (distance[owner] !== distance[cur]! - 1) continue;
        next = owner;
        const edgeName = edgeType === 'element' || edgeType === 'hidden' ? `[${edgeType}]` : strings[edges[e + edgeNameAt]!];
        label = `${kindOf(owner * stride)}.${edgeName}`;
        break;
      }
      if (next < 0) break;
      steps.push(label);
      cur = next;
    }
    const key = (process.argv.includes('--tail') ? steps.slice(-10) : steps).join(' <- ');
    chains.set(key, (chains.get(key) ?? 0) + 1);
  }
  console.log(`\nretainer chains of ${sampled} objects of ${pathsOf}, ${unreachable} not reachable from the roots (count, shortest chain from the object outwards):`);
  for (const [key, count] of [...chains.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${String(count).padStart(6)}  ${key}`);
}

const edgesOf = argAfter('--edges');
if (edgesOf !== undefined) {
  // Outgoing edges of objects of the kind, aggregated by edge name and target kind (for closures and
  // suspended async functions, the `function`/`shared` edges name the code).
  const edges = readNumbers(arrayStart('edges', metaEnd));
  const out = new Map<string, number>();
  let n = 0;
  for (let i = 0, e = 0; i < nodes.length; i += stride) {
    const count = nodes[i + edgeCountAt]!;
    if (kindOf(i) !== edgesOf) {
      e += count * edgeStride;
      continue;
    }
    n++;
    for (let k = 0; k < count; k++, e += edgeStride) {
      const edgeType = edgeTypes[edges[e + edgeTypeAt]!]!;
      const edgeName = edgeType === 'element' || edgeType === 'hidden' ? `[${edgeType}]` : strings[edges[e + edgeNameAt]!];
      const to = edges[e + edgeToAt]!;
      const target = `${kindOf(to)} "${String(strings[nodes[to + nameAt]!]).slice(0, 60)}"`;
      const key = `.${edgeName} -> ${target}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
  }
  console.log(`\noutgoing edges of ${n} objects of ${edgesOf} (count, edge -> target kind "name"):`);
  for (const [key, count] of [...out.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${String(count).padStart(9)}  ${key}`);
}

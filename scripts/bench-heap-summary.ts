/**
 * Summarises a V8 heap snapshot: retained-by-type totals of self sizes (object count and bytes per
 * constructor or string kind), largest first, to see what a benchmark's live objects are made of.
 *
 *   node --import tsx scripts/bench-heap-summary.ts FILE.heapsnapshot [--top 30]
 */
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: scripts/bench-heap-summary.ts FILE.heapsnapshot [--top N]');
  process.exit(2);
}
const top = Number(process.argv[process.argv.indexOf('--top') + 1] ?? 30) || 30;
const snap = JSON.parse(readFileSync(file, 'utf8')) as {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
};
const fields = snap.snapshot.meta.node_fields;
const stride = fields.length;
const typeAt = fields.indexOf('type');
const nameAt = fields.indexOf('name');
const sizeAt = fields.indexOf('self_size');
const types = snap.snapshot.meta.node_types[0];
const totals = new Map<string, { count: number; bytes: number }>();
let all = 0;
for (let i = 0; i < snap.nodes.length; i += stride) {
  const type = types[snap.nodes[i + typeAt]!]!;
  const name = type === 'object' || type === 'closure' ? `${type}:${snap.strings[snap.nodes[i + nameAt]!]}` : type;
  const size = snap.nodes[i + sizeAt]!;
  all += size;
  const t = totals.get(name) ?? { count: 0, bytes: 0 };
  t.count++;
  t.bytes += size;
  totals.set(name, t);
}
console.log(`${file}: ${(all / 1048576).toFixed(1)} MiB in ${snap.nodes.length / stride} objects`);
for (const [name, t] of [...totals.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) {
  console.log(`${(t.bytes / 1048576).toFixed(1).padStart(8)} MiB ${String(t.count).padStart(9)}  ${name.slice(0, 80)}`);
}

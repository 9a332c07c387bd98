/**
 * A fixed-bucket latency histogram in Prometheus' cumulative form. Recording costs one short loop
 * over the bucket bounds; nothing is allocated per observation.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS_SECONDS) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }

  /** Prometheus text lines for this histogram, with the given labels. */
  render(name: string, labels: Record<string, string> = {}): string[] {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`);
    const join = (extra: string[]): string => (extra.length ? `{${extra.join(',')}}` : '');
    const out: string[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      out.push(`${name}_bucket${join([...l, `le="${this.bounds[i]}"`])} ${cumulative}`);
    }
    out.push(`${name}_bucket${join([...l, 'le="+Inf"'])} ${this.count}`);
    out.push(`${name}_sum${join(l)} ${this.sum}`);
    out.push(`${name}_count${join(l)} ${this.count}`);
    return out;
  }
}

/** Times a promise-returning call into a histogram (seconds), success or failure alike. */
export async function timed<T>(h: Histogram, fn: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  try {
    return await fn();
  } finally {
    h.observe(Number(process.hrtime.bigint() - start) / 1e9);
  }
}

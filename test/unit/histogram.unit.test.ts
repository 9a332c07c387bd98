import { describe, expect, it } from 'vitest';
import { Histogram, timed } from '../../src/core/metrics/histogram.js';

describe('latency histogram', () => {
  it('counts observations into cumulative Prometheus buckets with sum and count', () => {
    const h = new Histogram([0.01, 0.1, 1]);
    for (const v of [0.005, 0.05, 0.05, 0.5, 7]) h.observe(v);
    expect(h.render('x', { backend: 'db' })).toEqual([
      'x_bucket{backend="db",le="0.01"} 1',
      'x_bucket{backend="db",le="0.1"} 3',
      'x_bucket{backend="db",le="1"} 4',
      'x_bucket{backend="db",le="+Inf"} 5',
      `x_sum{backend="db"} ${0.005 + 0.05 + 0.05 + 0.5 + 7}`,
      'x_count{backend="db"} 5',
    ]);
  });

  it('times failures as well as successes', async () => {
    const h = new Histogram();
    await timed(h, async () => 1);
    await expect(timed(h, async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(h.count).toBe(2);
  });
});

import { afterEach, describe, expect, it, vi } from 'vitest';
import { Deadlines } from '../../src/core/auth/deadlines.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('Deadlines (one timer for every backend budget)', () => {
  it('expires each budget when its own time has passed, in the order they began, with one timer at a time', () => {
    vi.useFakeTimers();
    const d = new Deadlines(1_000);
    const fired: string[] = [];
    d.add(() => fired.push('a'));
    vi.advanceTimersByTime(300);
    const b = d.add(() => fired.push('b'));
    vi.advanceTimersByTime(300);
    d.add(() => fired.push('c'));
    expect(vi.getTimerCount()).toBe(1);
    d.remove(b);
    vi.advanceTimersByTime(399);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a']);
    // b was removed in time; c is due 1000 ms after it began (t = 1600)
    vi.advanceTimersByTime(599);
    expect(fired).toEqual(['a']);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['a', 'c']);
    expect(d.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('leaves no timer re-armed once every budget ended in time', () => {
    vi.useFakeTimers();
    const d = new Deadlines(500);
    const fired: number[] = [];
    for (let i = 0; i < 100; i++) d.remove(d.add(() => fired.push(i)));
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(500);
    expect(fired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});

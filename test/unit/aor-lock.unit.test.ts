import { describe, expect, it } from 'vitest';
import { AorLocks } from '../../src/core/proxy/aor-lock.js';

/** A promise and the function that settles it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('AorLocks: one registration at a time per AOR, with a bounded queue', () => {
  it('runs the registrations of one AOR in arrival order, each after the previous one finished', async () => {
    const locks = new AorLocks(8);
    const order: string[] = [];
    const first = gate();
    const a = locks.run('sip:alice@example.com', async () => {
      order.push('a start');
      await first.promise;
      order.push('a end');
    });
    const b = locks.run('sip:alice@example.com', async () => {
      order.push('b');
    });
    const c = locks.run('sip:alice@example.com', async () => {
      order.push('c');
    });
    await Promise.resolve();
    expect(order).toEqual(['a start']);
    expect(locks.waitingCount).toBe(2);
    first.open();
    expect(await Promise.all([a, b, c])).toEqual(['done', 'done', 'done']);
    expect(order).toEqual(['a start', 'a end', 'b', 'c']);
    expect(locks.heldCount).toBe(0);
  });

  it('refuses an arrival when maxWaiting are already waiting, without running it', async () => {
    const locks = new AorLocks(2);
    const hold = gate();
    let ran = 0;
    const holder = locks.run('sip:alice@example.com', () => hold.promise);
    const waiting = [1, 2].map(() => locks.run('sip:alice@example.com', async () => void ran++));
    const refused = await locks.run('sip:alice@example.com', async () => void ran++);
    expect(refused).toBe('full');
    expect(locks.waitingCount).toBe(2);
    hold.open();
    expect(await holder).toBe('done');
    expect(await Promise.all(waiting)).toEqual(['done', 'done']);
    expect(ran).toBe(2);
    // Once the queue has drained, the AOR takes registrations again.
    expect(await locks.run('sip:alice@example.com', async () => void ran++)).toBe('done');
    expect(ran).toBe(3);
  });

  it('keeps AORs independent: a full queue on one does not delay or refuse another', async () => {
    const locks = new AorLocks(1);
    const hold = gate();
    const holder = locks.run('sip:alice@example.com', () => hold.promise);
    const waiter = locks.run('sip:alice@example.com', async () => undefined);
    expect(await locks.run('sip:alice@example.com', async () => undefined)).toBe('full');
    let bobRan = false;
    expect(await locks.run('sip:bob@example.com', async () => void (bobRan = true))).toBe('done');
    expect(bobRan).toBe(true);
    hold.open();
    await Promise.all([holder, waiter]);
  });

  it('passes the AOR on when a holder throws, and the error reaches no caller but that holder', async () => {
    const locks = new AorLocks(4);
    const failing = locks.run('sip:alice@example.com', async () => {
      await Promise.resolve();
      throw new Error('log unavailable');
    });
    let nextRan = false;
    const next = locks.run('sip:alice@example.com', async () => void (nextRan = true));
    await expect(failing).rejects.toThrow('log unavailable');
    expect(await next).toBe('done');
    expect(nextRan).toBe(true);
    expect(locks.heldCount).toBe(0);
  });
});

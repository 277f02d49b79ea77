// The connection queues of postgres.js, as patched in patches/postgres@3.4.9.patch. Unpatched,
// a queue that never drains (the idle connections of a pool larger than the load) keeps every
// slot it ever shifted out, and each query's move between queues scans them all: a
// long-lived server slowed down query after query (see docs/operating.md, "The postgres.js patch").
import { describe, expect, test } from "bun:test";
import { join } from "node:path";

interface Queue<T> {
  readonly length: number;
  push(x: T): T;
  shift(): T | undefined;
  remove(x: T): T | null;
}

const queueModule = join(import.meta.dir, "..", "node_modules", "postgres", "src", "queue.js");
const { default: Queue } = (await import(queueModule)) as { default: <T>() => Queue<T> };

describe("postgres.js connection queue", () => {
  test("stays first-in first-out through shifts, removals and compaction", () => {
    const queue = Queue<number>();
    const model: number[] = [];
    let next = 0;
    for (let round = 0; round < 5000; round++) {
      queue.push(next);
      model.push(next++);
      queue.push(next);
      model.push(next++);
      expect(queue.shift()).toBe(model.shift());
      if (round % 7 === 0) {
        const victim = model[Math.floor(model.length / 2)]!;
        expect(queue.remove(victim)).toBe(victim);
        model.splice(model.indexOf(victim), 1);
      }
      expect(queue.length).toBe(model.length);
    }
    expect(queue.remove(-1)).toBeNull();
    while (model.length > 0) expect(queue.shift()).toBe(model.shift());
    expect(queue.length).toBe(0);
  });

  test("a queue that never drains does not slow removal down", () => {
    // Four idle connections taken and given back a million times, as a pool does per query.
    const queue = Queue<object>();
    const connections = Array.from({ length: 4 }, () => ({}));
    for (const c of connections) queue.push(c);
    for (let i = 0; i < 1_000_000; i++) queue.push(queue.shift()!);
    const began = performance.now();
    // Removing a connection that is not in the queue scanned every slot ever used: ~1 ms each.
    for (let i = 0; i < 5000; i++) queue.remove({});
    expect(performance.now() - began).toBeLessThan(200);
    expect(queue.length).toBe(4);
  });
});

// db/batcher.ts: concurrent calls coalesce into one run, each caller gets its own result,
// a failed batch is retried item by item unless the failure is the connection's, and a
// stalled batch does not hold the next one up for longer than stallMs.
import { describe, expect, test } from "bun:test";
import { Batcher } from "../db/batcher.ts";

const options = { maxBatch: 100, maxInFlight: 1, stallMs: 1000 };

/** A run that records its batches and answers each item doubled once `gate` opens. */
function recorder() {
  const batches: number[][] = [];
  let open: () => void = () => {};
  let gate = new Promise<void>((resolve) => (open = resolve));
  return {
    batches,
    run: async (items: readonly number[]) => {
      batches.push([...items]);
      await gate;
      return items.map((item) => item * 2);
    },
    open() {
      open();
    },
    close() {
      gate = new Promise<void>((resolve) => (open = resolve));
    },
  };
}

describe("Batcher", () => {
  test("calls of one turn go out together and each gets its own result", async () => {
    const r = recorder();
    r.open();
    const batcher = new Batcher(r.run, options);
    expect(await Promise.all([1, 2, 3].map((i) => batcher.submit(i)))).toEqual([2, 4, 6]);
    expect(r.batches).toEqual([[1, 2, 3]]);
  });

  test("calls made while a batch is out wait for it, then go out as one batch", async () => {
    const r = recorder();
    const batcher = new Batcher(r.run, options);
    const first = batcher.submit(1);
    await Bun.sleep(1);
    const later = [2, 3, 4].map((i) => batcher.submit(i));
    await Bun.sleep(1);
    expect(r.batches).toEqual([[1]]);
    r.open();
    expect(await Promise.all([first, ...later])).toEqual([2, 4, 6, 8]);
    expect(r.batches).toEqual([[1], [2, 3, 4]]);
  });

  test("a batch holds at most maxBatch items", async () => {
    const r = recorder();
    r.open();
    const batcher = new Batcher(r.run, { ...options, maxBatch: 2, maxInFlight: 3 });
    await Promise.all([1, 2, 3, 4, 5].map((i) => batcher.submit(i)));
    expect(r.batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  test("a failed batch is run again item by item, so only the failing item fails", async () => {
    const seen: number[][] = [];
    const batcher = new Batcher(async (items: readonly number[]) => {
      seen.push([...items]);
      if (items.includes(2)) throw Object.assign(new Error("lock timeout"), { code: "55P03" });
      return items.map((item) => item * 2);
    }, options);
    const results = await Promise.allSettled([1, 2, 3].map((i) => batcher.submit(i)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(results[0]).toMatchObject({ value: 2 });
    expect(results[2]).toMatchObject({ value: 6 });
    expect(seen).toEqual([[1, 2, 3], [1], [2], [3]]);
  });

  test("a failure the items would share (a lost connection) fails every item without a retry", async () => {
    let runs = 0;
    const batcher = new Batcher(
      async () => {
        runs++;
        throw Object.assign(new Error("gone"), { code: "CONNECTION_CLOSED" });
      },
      { ...options, retrySeparately: (error) => (error as { code?: string }).code !== "CONNECTION_CLOSED" },
    );
    const results = await Promise.allSettled([1, 2, 3].map((i) => batcher.submit(i)));
    expect(results.every((r) => r.status === "rejected")).toBe(true);
    expect(runs).toBe(1);
  });

  test("a batch answering the wrong number of results fails rather than answering wrongly", async () => {
    const batcher = new Batcher(async (items: readonly number[]) => items.slice(1), options);
    const results = await Promise.allSettled([1, 2].map((i) => batcher.submit(i)));
    // Run alone, each item answers nothing: every caller gets an error, none a wrong value.
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  });

  test("a stalled batch lets the next one go after stallMs", async () => {
    const r = recorder();
    const batcher = new Batcher(r.run, { ...options, stallMs: 200 });
    const began = performance.now();
    const stuck = batcher.submit(1);
    await Bun.sleep(1);
    const next = batcher.submit(2);
    await Bun.sleep(20);
    expect(r.batches).toEqual([[1]]);
    while (r.batches.length < 2 && performance.now() - began < 5000) await Bun.sleep(5);
    expect(r.batches).toEqual([[1], [2]]);
    expect(performance.now() - began).toBeGreaterThanOrEqual(195);
    r.open();
    expect(await Promise.all([stuck, next])).toEqual([2, 4]);
  });
});

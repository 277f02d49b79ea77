// Coalesces concurrent calls of one statement into one round trip (group commit). A call made
// while fewer than `maxInFlight` batches are at the database goes out at once (with whatever
// else was submitted in the same turn of the event loop); one made while the database is busy
// waits for the next batch. So an idle server adds no delay, and a busy one shares a commit,
// a round trip and the statement's overhead among many requests.
//
// Every caller is answered only once its batch has committed. When a batch of several fails
// for a reason other than a lost connection (one item waiting on a lock, a deadlock between
// two batches), its items are run again one by one, so one item cannot fail the others.

export interface BatcherOptions {
  /** Items per statement at most. */
  maxBatch: number;
  /** Batches at the database at once; more calls wait and join the next batch. */
  maxInFlight: number;
  /**
   * A batch out longer than this stops counting against `maxInFlight`, so one batch waiting on
   * a lock held elsewhere holds the others up this long at most.
   */
  stallMs: number;
  /** Whether an error of a batch is worth running its items separately (default: always). */
  retrySeparately?: (error: unknown) => boolean;
}

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class Batcher<I, O> {
  private queue: Pending<I, O>[] = [];
  private inFlight = 0;
  private scheduled = false;

  /** `run` answers one result per item, in the items' order. */
  constructor(
    private readonly run: (items: readonly I[]) => Promise<readonly O[]>,
    private readonly options: BatcherOptions,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.inFlight >= this.options.maxInFlight) return;
    this.scheduled = true;
    // Calls submitted in the same synchronous run join this batch.
    queueMicrotask(() => {
      this.scheduled = false;
      while (this.queue.length > 0 && this.inFlight < this.options.maxInFlight) {
        const batch = this.queue.length <= this.options.maxBatch ? this.queue : this.queue.slice(0, this.options.maxBatch);
        this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
        this.inFlight++;
        let counted = true;
        const release = () => {
          if (!counted) return;
          counted = false;
          clearTimeout(stalled);
          this.inFlight--;
          this.schedule();
        };
        const stalled = setTimeout(release, this.options.stallMs);
        void this.execute(batch).finally(release);
      }
    });
  }

  private async execute(batch: Pending<I, O>[]): Promise<void> {
    let results: readonly O[];
    try {
      results = await this.run(batch.map((pending) => pending.item));
      if (results.length !== batch.length) throw new Error(`batch of ${batch.length} answered ${results.length} results`);
    } catch (error) {
      if (batch.length > 1 && (this.options.retrySeparately?.(error) ?? true)) {
        await Promise.all(batch.map((pending) => this.execute([pending])));
      } else {
        for (const pending of batch) pending.reject(error);
      }
      return;
    }
    batch.forEach((pending, i) => pending.resolve(results[i]!));
  }
}

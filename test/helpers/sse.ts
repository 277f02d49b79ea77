// Reads a Server-Sent Events response in tests: events are parsed as they arrive and can be
// awaited by predicate, with a deadline.
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
  /** A comment line (heartbeat) rather than an event. */
  comment?: string;
}

export interface SseReader {
  events: SseEvent[];
  /** Resolves with the first event (from the start) matching `predicate`. */
  waitFor(predicate: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  close(): Promise<void>;
}

export function readSse(response: Response): SseReader {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffer = "";
  let ended = false;
  let wake: () => void = () => {};
  void (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event: SseEvent = { event: "message", id: undefined, data: "" };
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) event.comment = line.slice(1).trim();
            else if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("event: ")) event.event = line.slice(7);
            else if (line.startsWith("data: ")) data.push(line.slice(6));
          }
          event.data = data.join("\n");
          if (data.length > 0 || event.comment !== undefined) events.push(event);
        }
        wake();
      }
    } catch {
      // cancelled
    } finally {
      ended = true;
      wake();
    }
  })();
  return {
    events,
    async waitFor(predicate, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(predicate);
        if (found) return found;
        if (ended) throw new Error("the stream ended");
        const left = deadline - Date.now();
        if (left <= 0) throw new Error("timed out waiting for an event");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    close: () => reader.cancel().catch(() => {}),
  };
}

/** The feed entry an event carries. */
export const entryOf = (event: SseEvent) => JSON.parse(event.data) as { jti: string; exp: number; revoked_at: number; cursor: number };

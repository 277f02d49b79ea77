// A TCP proxy in front of PostgreSQL that counts database round trips by statement: the
// server under test connects through it, and every point where its driver must wait for the
// database (a Sync or Flush in the extended protocol, or a simple Query) is counted against
// the statement it ends. Pipelined messages count once each, so the count is an upper bound
// on round trips. The bytes are forwarded unchanged.
import type { Socket } from "bun";

export interface WireCounter {
  port: number;
  /** Round trips per statement (its SQL text, whitespace collapsed, cut at 100 characters). */
  counts(): Record<string, number>;
  reset(): void;
  stop(): void;
}

const STARTUP_CODES_KEEPING_STARTUP = new Set([80877103, 80877104]); // SSLRequest, GSSENCRequest

function label(query: string): string {
  return query.replace(/\s+/g, " ").trim().slice(0, 100);
}

interface ClientState {
  upstream: Socket<undefined> | undefined;
  pendingUp: Uint8Array[];
  pendingDown: Uint8Array[];
  buffer: Buffer;
  startup: boolean;
  statements: Map<string, string>;
  current: string;
}

export async function wireCounter(target: { hostname: string; port: number }): Promise<WireCounter> {
  let counts: Record<string, number> = {};
  const count = (query: string) => {
    const key = label(query);
    counts[key] = (counts[key] ?? 0) + 1;
  };

  /** Consumes whole frontend messages from the buffer, counting waits. */
  function parse(state: ClientState) {
    for (;;) {
      const b = state.buffer;
      if (state.startup) {
        if (b.length < 8) return;
        const length = b.readInt32BE(0);
        if (b.length < length) return;
        state.startup = STARTUP_CODES_KEEPING_STARTUP.has(b.readInt32BE(4));
        state.buffer = b.subarray(length);
        continue;
      }
      if (b.length < 5) return;
      const length = b.readInt32BE(1);
      if (b.length < 1 + length) return;
      const type = String.fromCharCode(b[0]!);
      const body = b.subarray(5, 1 + length);
      if (type === "P") {
        const nameEnd = body.indexOf(0);
        const query = body.toString("utf8", nameEnd + 1, body.indexOf(0, nameEnd + 1));
        state.statements.set(body.toString("utf8", 0, nameEnd), query);
        state.current = query;
      } else if (type === "B") {
        const portalEnd = body.indexOf(0);
        const statement = body.toString("utf8", portalEnd + 1, body.indexOf(0, portalEnd + 1));
        state.current = state.statements.get(statement) ?? state.current;
      } else if (type === "Q") {
        count(body.toString("utf8", 0, body.indexOf(0)));
      } else if (type === "S" || type === "H") {
        count(state.current);
      }
      state.buffer = b.subarray(1 + length);
    }
  }

  function send(socket: Socket<unknown> | undefined, pending: Uint8Array[], data?: Uint8Array) {
    if (data) pending.push(data);
    if (!socket) return;
    while (pending.length > 0) {
      const chunk = pending[0]!;
      const written = socket.write(chunk);
      if (written === chunk.length) pending.shift();
      else {
        pending[0] = chunk.subarray(Math.max(0, written));
        return;
      }
    }
  }

  const server = Bun.listen<ClientState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(client) {
        const state: ClientState = {
          upstream: undefined,
          pendingUp: [],
          pendingDown: [],
          buffer: Buffer.alloc(0),
          startup: true,
          statements: new Map(),
          current: "",
        };
        client.data = state;
        state.upstream = await Bun.connect({
          hostname: target.hostname,
          port: target.port,
          socket: {
            data: (_, data) => send(client, state.pendingDown, data),
            drain: (upstream) => send(upstream, state.pendingUp),
            close: () => void client.end(),
            error: () => void client.end(),
          },
        });
        send(state.upstream, state.pendingUp);
      },
      data(client, data) {
        const state = client.data;
        state.buffer = state.buffer.length > 0 ? Buffer.concat([state.buffer, data]) : Buffer.from(data);
        parse(state);
        send(state.upstream, state.pendingUp, new Uint8Array(data));
      },
      drain: (client) => send(client, client.data.pendingDown),
      close: (client) => void client.data.upstream?.end(),
      error: (client) => void client.data.upstream?.end(),
    },
  });
  return {
    port: server.port,
    counts: () => ({ ...counts }),
    reset: () => {
      counts = {};
    },
    stop: () => server.stop(true),
  };
}

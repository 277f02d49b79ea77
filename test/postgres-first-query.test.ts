// A connection of a multi-host URL that dies during its first query, as patched in
// patches/postgres@3.4.9.patch. postgres.js keeps a new connection in its `connecting` queue until
// the first query it was opened for has answered, and took an error there for a failed attempt to
// connect: another host to try. Unpatched, the query in flight was neither failed nor dropped but
// taken along to the next host, whose first ReadyForQuery resolved it with the rows the dead
// server had sent — in the split of test/cluster-faults.test.ts, a connection made to the hung
// primary got through when it woke up, sent an INSERT and died with the demotion: the INSERT was
// answered as committed (a mint answered 200) though only the old primary had it, uncommitted.
// See docs/operating.md, "The postgres.js patch".
import { afterAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import postgres from "postgres";
import { TEST_DATABASE_URL } from "./helpers/db.ts";

/** Server message types (PostgreSQL protocol). */
const READY_FOR_QUERY = 0x5a; // 'Z'

/**
 * A proxy in front of PostgreSQL that passes the startup through, then, when the first query has
 * answered, holds back its ReadyForQuery and closes the client's connection: the server's
 * answer arrived, but never the end of it — a server that died mid-answer.
 */
function dyingProxy(target: { hostname: string; port: number }) {
  return Bun.listen<{ upstream?: Socket<unknown>; pending: Buffer[]; ready: number; buffered: Buffer; closed: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(client) {
        client.data = { pending: [], ready: 0, buffered: Buffer.alloc(0), closed: false };
        client.data.upstream = await Bun.connect({
          hostname: target.hostname,
          port: target.port,
          socket: {
            data(_, chunk) {
              const state = client.data;
              state.buffered = Buffer.concat([state.buffered, chunk]);
              // Whole messages only: a type byte and a length that counts itself.
              while (!state.closed && state.buffered.length >= 5) {
                const length = state.buffered.readUInt32BE(1) + 1;
                if (state.buffered.length < length) break;
                const message = state.buffered.subarray(0, length);
                state.buffered = state.buffered.subarray(length);
                if (message[0] === READY_FOR_QUERY && ++state.ready === 2) {
                  state.closed = true;
                  client.end();
                  return;
                }
                client.write(message);
              }
            },
            close() {
              client.end();
            },
          },
        });
        for (const chunk of client.data.pending) client.data.upstream.write(chunk);
      },
      data(client, chunk) {
        if (client.data.upstream) client.data.upstream.write(chunk);
        else client.data.pending.push(Buffer.from(chunk));
      },
      close(client) {
        client.data.upstream?.end();
      },
    },
  });
}

describe.skipIf(!TEST_DATABASE_URL)("postgres.js: a connection that dies during its first query", () => {
  const url = new URL(TEST_DATABASE_URL!);
  const target = { hostname: url.hostname, port: Number(url.port || 5432) };
  const proxy = dyingProxy(target);
  afterAll(() => proxy.stop(true));

  test("fails that query; the next host does not answer it with the dead server's rows", async () => {
    // The proxy first, then the server itself. No array types fetched: the first query is the second ReadyForQuery.
    const sql = postgres(`postgres://${url.username}@127.0.0.1:${proxy.port},${target.hostname}:${target.port}${url.pathname}`, {
      max: 1,
      fetch_types: false,
      onnotice: () => {},
      connect_timeout: 2,
    });
    try {
      const first = sql`select 'answered by the server that died' as v`.execute();
      // Waiting for the pool's one connection: it goes to the next host once the first has died.
      const next = sql`select 'next' as v, inet_server_port() as port`.execute();
      const outcome = await first.then(
        (rows) => `resolved with ${JSON.stringify(rows)}`,
        (error: { code?: string }) => error.code,
      );
      expect(outcome).toBe("CONNECTION_CLOSED");
      const [row] = await next;
      expect(row).toEqual({ v: "next", port: target.port });
      expect((await sql`select 'still' as v`)[0]!.v).toBe("still");
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
});

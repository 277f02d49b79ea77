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
const PARAMETER_STATUS = 0x53; // 'S'
const ERROR_RESPONSE = 0x45; // 'E'

function message(type: number, body: string): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeUInt32BE(Buffer.byteLength(body) + 4, 1);
  return Buffer.concat([header, Buffer.from(body)]);
}

/**
 * A proxy in front of PostgreSQL that relays each whole message the server sends through
 * `relay`: what it answers is passed on, `"close"` closes the client's connection. With `once`,
 * connections after the first are closed at once.
 */
function proxy(target: { hostname: string; port: number }, relay: (message: Buffer, readies: number) => Buffer | "close", { once = false } = {}) {
  let connections = 0;
  return Bun.listen<{ upstream?: Socket<unknown>; pending: Buffer[]; ready: number; buffered: Buffer; closed: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(client) {
        client.data = { pending: [], ready: 0, buffered: Buffer.alloc(0), closed: once && ++connections > 1 };
        if (client.data.closed) return void client.end();
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
                const received = state.buffered.subarray(0, length);
                state.buffered = state.buffered.subarray(length);
                if (received[0] === READY_FOR_QUERY) state.ready++;
                const relayed = relay(received, state.ready);
                if (relayed === "close") {
                  state.closed = true;
                  client.end();
                  return;
                }
                client.write(relayed);
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
        if (client.data.closed) return;
        if (client.data.upstream) client.data.upstream.write(chunk);
        else client.data.pending.push(Buffer.from(chunk));
      },
      close(client) {
        client.data.upstream?.end();
      },
    },
  });
}

/** The startup passed through, then the first query's answer without its ReadyForQuery: a server that died mid-answer. */
const diesInFirstAnswer = (received: Buffer, readies: number) => (received[0] === READY_FOR_QUERY && readies === 2 ? "close" : received);

/** A server that says it is a hot standby (in_hot_standby on), and is otherwise the server itself. */
const posesAsStandby = (received: Buffer) =>
  received[0] === PARAMETER_STATUS && received.toString("utf8", 5).startsWith("in_hot_standby\0") ? message(PARAMETER_STATUS, "in_hot_standby\0on\0") : received;

/** A node being restarted: every startup is answered FATAL 57P03, then closed. */
function startingUp() {
  return Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(client) {
        client.write(message(ERROR_RESPONSE, "SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"));
        client.end();
      },
    },
  });
}

describe.skipIf(!TEST_DATABASE_URL)("postgres.js: a connection that dies during its first query", () => {
  const url = new URL(TEST_DATABASE_URL!);
  const target = { hostname: url.hostname, port: Number(url.port || 5432) };
  const dying = proxy(target, diesInFirstAnswer);
  afterAll(() => dying.stop(true));

  test("fails that query; the next host does not answer it with the dead server's rows", async () => {
    // The proxy first, then the server itself. No array types fetched: the first query is the second ReadyForQuery.
    const sql = postgres(`postgres://${url.username}@127.0.0.1:${dying.port},${target.hostname}:${target.port}${url.pathname}`, {
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

  test("a later attempt that meets a FATAL at startup does not open the connection on a standby", async () => {
    // A dies in its first answer (and refuses later connections), B is starting up, C is a standby: no primary to open on.
    const a = proxy(target, diesInFirstAnswer, { once: true });
    const b = startingUp();
    const c = proxy(target, posesAsStandby);
    const sql = postgres(`postgres://${url.username}@127.0.0.1:${a.port},127.0.0.1:${b.port},127.0.0.1:${c.port}${url.pathname}?target_session_attrs=primary`, {
      max: 1,
      fetch_types: false,
      onnotice: () => {},
      connect_timeout: 2,
    });
    const outcome = (query: Promise<unknown>) => query.then((rows) => `answered ${JSON.stringify(rows)}`, (error: { code?: string }) => error.code);
    try {
      const first = outcome(sql`select 'first' as v`.execute());
      const second = outcome(sql`select 'second' as v`.execute());
      expect(await first).toBe("CONNECTION_CLOSED");
      expect(await second).toBe("57P03");
      // No primary: it fails (B's FATAL, the last answer). Unpatched, the deferred FATAL skipped the
      // target_session_attrs check, and C, a standby, answered it.
      expect(await outcome(sql`select 'third' as v`.execute())).toBe("57P03");
    } finally {
      await sql.end({ timeout: 1 });
      for (const server of [a, b, c]) server.stop(true);
    }
  });
});

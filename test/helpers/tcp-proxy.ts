// A TCP proxy a test can stop and restart on the same port: put it between the app's
// connection pool and PostgreSQL to take the database away and bring it back.
import type { Socket, TCPSocketListener } from "bun";

interface Side {
  socket: Socket<Connection> | undefined;
  /** Bytes not yet accepted by the socket (before it connected, or under backpressure). */
  queue: Uint8Array[];
}

interface Connection {
  client: Side;
  upstream: Side;
}

function send(side: Side, chunk: Uint8Array): void {
  if (!side.socket || side.queue.length > 0) {
    side.queue.push(chunk.slice());
    return;
  }
  const written = side.socket.write(chunk);
  if (written < chunk.length) side.queue.push(chunk.slice(Math.max(written, 0)));
}

function flush(side: Side): void {
  while (side.socket && side.queue.length > 0) {
    const chunk = side.queue[0]!;
    const written = side.socket.write(chunk);
    if (written < chunk.length) {
      side.queue[0] = chunk.subarray(Math.max(written, 0));
      return;
    }
    side.queue.shift();
  }
}

export interface TcpProxy {
  readonly port: number;
  /** Refuses new connections and closes every open one, both ways. */
  stop(): void;
  /** Accepts connections again, on the same port. */
  start(): void;
}

export function startTcpProxy(target: { hostname: string; port: number }): TcpProxy {
  const open = new Set<Connection>();
  let listener: TCPSocketListener<Connection> | undefined;
  let port = 0;

  const listen = () =>
    Bun.listen<Connection>({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(client) {
          const connection: Connection = { client: { socket: client, queue: [] }, upstream: { socket: undefined, queue: [] } };
          client.data = connection;
          open.add(connection);
          Bun.connect<Connection>({
            hostname: target.hostname,
            port: target.port,
            data: connection,
            socket: {
              open(upstream) {
                connection.upstream.socket = upstream;
                flush(connection.upstream);
              },
              data: (_upstream, chunk) => send(connection.client, chunk),
              drain: () => flush(connection.upstream),
              close: () => void connection.client.socket?.end(),
              error: () => void connection.client.socket?.end(),
            },
          }).catch(() => client.end());
        },
        data: (client, chunk) => send(client.data.upstream, chunk),
        drain: (client) => flush(client.data.client),
        close(client) {
          client.data.upstream.socket?.end();
          open.delete(client.data);
        },
        error: (client) => void client.end(),
      },
    });

  listener = listen();
  port = listener.port;
  return {
    get port() {
      return port;
    },
    stop() {
      listener?.stop(true);
      listener = undefined;
      for (const connection of open) {
        connection.client.socket?.terminate();
        connection.upstream.socket?.terminate();
      }
      open.clear();
    },
    start() {
      listener ??= listen();
    },
  };
}

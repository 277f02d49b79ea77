// The admin socket: a Unix domain socket, mode 0600, beside the data (TA_ADMIN_SOCKET), on which
// the server answers the admin API to whoever may open it — the file's permissions are the
// credential, there is nothing to configure. The CLI finds a running server through it.
import { chmodSync, existsSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";

/** The socket is taken by a running server, or cannot be made private. */
export class AdminSocketError extends Error {
  override name = "AdminSocketError";
}

export interface AdminSocket {
  path: string;
  stop(): Promise<void>;
}

/** Whether a server answers on the socket at `path` (within `timeoutMs`). */
export async function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  if (!existsSync(path)) return false;
  try {
    const response = await fetch("http://localhost/healthz", { unix: path, signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/**
 * Listens on `path` with `fetch`. A socket file left by a process that died is replaced; one a
 * live server answers on is refused. Refuses to start unless the socket is this user's alone.
 */
export async function openAdminSocket(path: string, fetch: (request: Request) => Response | Promise<Response>): Promise<AdminSocket> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (existsSync(path)) {
    if (await socketAnswers(path)) {
      throw new AdminSocketError(`admin socket ${path} is in use by a running server (give this instance its own TA_ADMIN_SOCKET, or off)`);
    }
    unlinkSync(path);
  }
  // Created private (umask 177 → mode 0600) so that it is never open to others, even briefly.
  const umask = process.umask(0o177);
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({ unix: path, fetch, development: false });
  } finally {
    process.umask(umask);
  }
  chmodSync(path, 0o600);
  const stat = statSync(path);
  if ((stat.mode & 0o777) !== 0o600 || (process.getuid && stat.uid !== process.getuid())) {
    await server.stop(true);
    throw new AdminSocketError(`admin socket ${path} cannot be made private (mode ${(stat.mode & 0o777).toString(8)}): refusing to start`);
  }
  const inode = stat.ino;
  return {
    path,
    async stop() {
      await server.stop(true);
      // Only our own socket file: another process may have replaced it meanwhile.
      try {
        if (statSync(path).ino === inode) unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}

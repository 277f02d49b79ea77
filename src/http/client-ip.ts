// The client's IP, for per-address throttling (sign-ins, client authentication): from the
// reverse proxy's header when TA_CLIENT_IP_HEADER is set (for X-Forwarded-For its last entry,
// the one the nearest proxy appended — entries further left are written by the client), else
// the socket's peer. Undefined when neither is known (app.handle without a server).
import type { Server } from "bun";

export function clientIp(request: Request, server: Server<unknown> | null | undefined, header: string | undefined): string | undefined {
  if (header) {
    const value = request.headers.get(header) ?? "";
    return (header === "x-forwarded-for" ? value.split(",").at(-1)! : value).trim().slice(0, 64) || undefined;
  }
  return server?.requestIP(request)?.address;
}

// Export/import: data written on the embedded PGlite is readable on PostgreSQL (and on another
// PGlite) after the move — tokens minted before still verify, revoked ones stay revoked.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { consents, revocationEvents, users } from "../db/schema.ts";
import { exportToString, importData, tablesInDependencyOrder, TransferError } from "../db/transfer.ts";
import { createLogger } from "../src/log.ts";
import { createServices } from "../src/services.ts";
import type { Services } from "../src/services.ts";
import { createClient, createTestApp, mintClientSession, mintCodeSession, post } from "./helpers/app.ts";
import type { TestApp } from "./helpers/app.ts";
import { backends, openTestDatabase } from "./helpers/db.ts";

// Databases opened inside tests and CLI runs take seconds on a loaded 2-core machine.
setDefaultTimeout(60_000);

async function tableCounts(database: Database): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { name } of tablesInDependencyOrder()) {
    const [row] = await database.rows<{ n: number }>(sql`select count(*)::int as n from ${sql.identifier(name)}`);
    counts[name] = Number(row!.n);
  }
  return counts;
}

const lines = (text: string) => text.split("\n");

describe("export from PGlite", () => {
  let source: TestApp;
  let exported: string;
  const fixture: Record<string, string> = {};
  const opened: Database[] = [];

  afterAll(async () => {
    await source?.close();
    for (const database of opened) await database.close();
  });

  async function sourceApp(): Promise<TestApp> {
    if (source) return source;
    source = await createTestApp("pglite");
    const t = source;
    const confidential = await createClient(t, "confidential");
    const publicClient = await createClient(t, "public");
    const [user] = await t.database.db.insert(users).values({ username: "alice", passwordHash: "$argon2id$v=19$m=65536,t=2,p=1$x$y" }).returning();
    await t.database.db.insert(consents).values({ userId: user!.id, clientId: publicClient.client.clientId, scope: "read" });
    const live = await mintCodeSession(t, publicClient, user!.id);
    const revoked = await mintCodeSession(t, confidential);
    const machine = await mintClientSession(t, confidential);
    const [res] = await post(t, "/oauth/revoke", { token: revoked.refreshToken! }, confidential.auth.headers);
    expect(res.status).toBe(200);
    Object.assign(fixture, {
      liveAccess: live.accessToken,
      liveRefresh: live.refreshToken!,
      revokedAccess: revoked.accessToken,
      revokedRefresh: revoked.refreshToken!,
      machineAccess: machine.accessToken,
      confidentialId: confidential.client.clientId,
      confidentialSecret: confidential.secret!,
    });
    exported = await exportToString(t.database);
    return t;
  }

  test("writes a header, every row of every table in dependency order, and an end line with the counts", async () => {
    const t = await sourceApp();
    const entries = lines(exported).filter((l) => l !== "").map((l) => JSON.parse(l));
    expect(entries[0]).toMatchObject({ format: "token-authority/export", version: 1 });
    const end = entries.at(-1);
    expect(end.end).toBe(true);
    expect(end.counts).toEqual(await tableCounts(t.database));
    const order = tablesInDependencyOrder().map((table) => table.name);
    const seen = entries.slice(1, -1).map((e) => order.indexOf(e.table));
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(order.indexOf("clients")).toBeLessThan(order.indexOf("sessions"));
    expect(order.indexOf("authorization_grants")).toBeLessThan(order.indexOf("sessions"));
  });

  describe.each(backends)("import into %s", (backend) => {
    let target: Database;
    let services: Services;

    test("moves every row; tokens minted before verify, revoked ones stay revoked, the client still authenticates", async () => {
      const t = await sourceApp();
      target = await openTestDatabase(backend);
      opened.push(target);
      const counts = await importData(target, lines(exported));
      expect(counts).toEqual(await tableCounts(t.database));
      expect(await tableCounts(target)).toEqual(await tableCounts(t.database));

      services = await createServices({ config: t.config, database: target, log: createLogger("silent") });
      expect(services.keys.jwks()).toEqual(t.services.keys.jwks()); // no new key was generated
      expect((await services.pipeline.verify(fixture.liveAccess!)).ok).toBe(true);
      expect((await services.pipeline.verify(fixture.liveRefresh!, "refresh_token")).ok).toBe(true);
      expect((await services.pipeline.verify(fixture.machineAccess!)).ok).toBe(true);
      expect(await services.pipeline.verify(fixture.revokedAccess!)).toEqual({ ok: false, reason: "inactive" });
      expect(await services.pipeline.verify(fixture.revokedRefresh!, "refresh_token")).toEqual({ ok: false, reason: "inactive" });
      const client = await services.clients.find(fixture.confidentialId!);
      const { secretMatches } = await import("../src/oauth/clients.ts");
      expect(secretMatches(client!, fixture.confidentialSecret!)).toBe(true);
    });

    test("the moved database keeps working: a revocation there appends to the feed after the imported cursors", async () => {
      expect(services).toBeDefined();
      const before = await target.db.select({ cursor: revocationEvents.cursor }).from(revocationEvents);
      expect(before.length).toBeGreaterThan(0);
      const { claims } = await services.tokens.verify(fixture.machineAccess!);
      expect(await services.revocation.revoke({ token: fixture.machineAccess!, tokenTypeHint: undefined, clientId: claims.client_id })).toBe("revoked");
      expect((await services.pipeline.verify(fixture.machineAccess!)).ok).toBe(false);
      const after = await target.db.select({ cursor: revocationEvents.cursor }).from(revocationEvents);
      const newest = Math.max(...after.map((r) => r.cursor));
      expect(newest).toBeGreaterThan(Math.max(...before.map((r) => r.cursor)));
    });
  });

  test("refuses a non-empty target, a truncated file and a foreign file, changing nothing", async () => {
    await sourceApp();
    const target = await openTestDatabase("pglite");
    opened.push(target);
    const all = lines(exported);
    const truncated = all.slice(0, Math.floor(all.length / 2));
    await expect(importData(target, truncated)).rejects.toThrow(/truncated/);
    expect(Object.values(await tableCounts(target)).every((n) => n === 0)).toBe(true);
    await expect(importData(target, ['{"format":"something-else"}'])).rejects.toThrow(TransferError);
    await expect(importData(target, ["not json"])).rejects.toThrow(/not a JSON object/);
    const tampered = all.map((line) => line.replace('"username":"alice"', '"username":"mallory"'));
    const counts = JSON.parse(all.filter((l) => l).at(-1)!).counts;
    expect(counts.users).toBe(1);
    await importData(target, tampered); // content is not checksummed, only completeness
    await expect(importData(target, all)).rejects.toThrow(/not empty/);
  });

  test("refuses an export from another schema version", async () => {
    await sourceApp();
    const target = await openTestDatabase("pglite");
    opened.push(target);
    const [header, ...rest] = lines(exported);
    const older = JSON.parse(header!);
    older.migrations = older.migrations.slice(0, -1);
    await expect(importData(target, [JSON.stringify(older), ...rest])).rejects.toThrow(/schema version/);
  });
});

describe("export and import commands", () => {
  test("move an embedded data directory into another database through a file", async () => {
    const { mkdtempSync, rmSync, readFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { main } = await import("../src/main.ts");
    const dir = mkdtempSync(join(tmpdir(), "ta-transfer-"));
    const out: string[] = [];
    const io = (env: Record<string, string>) => ({ env: { TA_LOG_LEVEL: "error", ...env }, stdout: (s: string) => out.push(s), readStdin: async () => "" });
    try {
      const from = { TA_DATA_DIR: join(dir, "from") };
      const to = { TA_DATA_DIR: join(dir, "to") };
      expect(await main(["clients", "create", "--name", "moved"], io(from))).toBe(0);
      const created = JSON.parse(out.at(-1)!);
      const file = join(dir, "export.ndjson");
      expect(await main(["export", "--output", file], io(from))).toBe(0);
      expect(readFileSync(file, "utf8")).toContain(created.client_id);
      expect(await main(["import", "--input", file], io(to))).toBe(0);
      expect(JSON.parse(out.at(-1)!).clients).toBe(1);
      expect(await main(["clients", "list"], io(to))).toBe(0);
      expect(out.at(-1)).toContain(created.client_id);
      expect(await main(["import", "--input", file], io(to))).toBe(1); // not empty any more
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

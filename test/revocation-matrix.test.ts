// POST /oauth/revoke (RFC 7009): the token kind × hint × client matrix with its effects, on every
// backend, black-box through the app.
import { describe, expect, test } from "bun:test";
import type { TestClient } from "./helpers/app.ts";
import { post, revoke } from "./helpers/app.ts";
import { backends } from "./helpers/db.ts";
import {
  client, clientFamily, codeFamily, countRoundTrips, expectDead, expectEmpty200, expectLive, observable, refreshAtTokenEndpoint, REVOKE, snapshot,
  unknownToken, useApp, watchLogs,
} from "./helpers/families.ts";

// The matrix: token kind × hint × client

type Kind = "access token" | "refresh token" | "client-credentials access token";
type HintCase = "no hint" | "correct hint" | "wrong hint" | 'unrecognised hint "foo"';
type Role = "its owner (confidential)" | "its owner (public)" | "another confidential client" | "another public client";

const KINDS: readonly Kind[] = ["access token", "refresh token", "client-credentials access token"];
const HINTS: readonly HintCase[] = ["no hint", "correct hint", "wrong hint", 'unrecognised hint "foo"'];
const ROLES: readonly Role[] = ["its owner (confidential)", "its owner (public)", "another confidential client", "another public client"];

function hintFor(kind: Kind, hint: HintCase): string | undefined {
  const own = kind === "refresh token" ? "refresh_token" : "access_token";
  const other = own === "refresh_token" ? "access_token" : "refresh_token";
  return { "no hint": undefined, "correct hint": own, "wrong hint": other, 'unrecognised hint "foo"': "foo" }[hint];
}

const matrix = KINDS.flatMap((kind) =>
  HINTS.flatMap((hint) =>
    ROLES.filter((role) => !(kind === "client-credentials access token" && role === "its owner (public)")) // public clients have no client_credentials
      .map((role) => [kind, hint, role, role.startsWith("its owner") ? "family revoked" : "family untouched"] as const),
  ),
);

describe.each(backends)("revocation matrix [%s]", (backend) => {
  const ready = useApp(backend);
  let clients: Promise<Record<"ownerConfidential" | "ownerPublic" | "otherConfidential" | "otherPublic", TestClient>> | undefined;
  const matrixClients = () =>
    (clients ??= (async () => {
      const t = await ready();
      return {
        ownerConfidential: await client(t, "confidential"),
        ownerPublic: await client(t, "public"),
        otherConfidential: await client(t, "confidential"),
        otherPublic: await client(t, "public"),
      };
    })());

  test.each(matrix)("%s, %s, presented by %s: 200, %s", async (kind, hint, role) => {
    const t = await ready();
    const c = await matrixClients();
    const owner = role === "its owner (public)" ? c.ownerPublic : c.ownerConfidential;
    const presenter = {
      "its owner (confidential)": c.ownerConfidential,
      "its owner (public)": c.ownerPublic,
      "another confidential client": c.otherConfidential,
      "another public client": c.otherPublic,
    }[role];
    const f = kind === "client-credentials access token" ? await clientFamily(t, owner) : await codeFamily(t, owner);
    const token = kind === "refresh token" ? f.refreshToken! : f.accessToken;
    const [unknownRes, unknownBody] = await revoke(t, presenter, await unknownToken(t), hintFor(kind, hint));

    const logs = watchLogs(t);
    const roundTrips = await countRoundTrips(t);
    const [res, body] = await revoke(t, presenter, token, hintFor(kind, hint));
    // The hint only orders the search: a wrong one costs a second lookup, never a miss.
    expect(roundTrips.stop()).toBe(hint === "wrong hint" ? 2 : 1);

    expectEmpty200(res, body);
    const sentHint = hintFor(kind, hint);
    expect(logs()).toContainEqual(
      expect.objectContaining({
        event: "token.revocation.requested",
        client_id: presenter.client.clientId,
        hint: sentHint === "access_token" || sentHint === "refresh_token" ? sentHint : null,
      }),
    );
    if (presenter === owner) {
      expect(logs()).toContainEqual(
        expect.objectContaining({ event: "token.revocation.completed", session_id: f.sessionId, outcome: "revoked", family_revoked: 1 }),
      );
      await expectDead(t, f);
    } else {
      // RFC 7009 §2.1: the token is not revoked; the answer is exactly that for an unknown token.
      expect(observable(res, body)).toEqual(observable(unknownRes, unknownBody));
      expect(logs()).toContainEqual(
        expect.objectContaining({ event: "security.revocation.client_mismatch", client_id: presenter.client.clientId, session_id: f.sessionId }),
      );
      expect(logs().some((line) => line.event === "token.revocation.completed")).toBe(false);
      await expectLive(t, f);
      if (f.refreshToken) expect((await refreshAtTokenEndpoint(t, f))[0].status).toBe(200);
    }
  });

  test.each([
    ["access token", "another confidential client"],
    ["access token", "another public client"],
    ["refresh token", "another confidential client"],
    ["refresh token", "another public client"],
  ] as const)("a public client's %s presented by %s: 200, family untouched", async (kind, role) => {
    const t = await ready();
    const c = await matrixClients();
    const f = await codeFamily(t, c.ownerPublic);
    const presenter = role === "another confidential client" ? c.otherConfidential : c.otherPublic;
    const [res, body] = await revoke(t, presenter, kind === "refresh token" ? f.refreshToken! : f.accessToken);
    expectEmpty200(res, body);
    await expectLive(t, f);
  });

  test("its owner authenticating with client_secret_post revokes the family", async () => {
    const t = await ready();
    const owner = await client(t, "confidential", { tokenEndpointAuthMethod: "client_secret_post" });
    const f = await codeFamily(t, owner);
    const [res, body] = await post(t, REVOKE, { token: f.refreshToken!, client_id: owner.client.clientId, client_secret: owner.secret! });
    expectEmpty200(res, body);
    await expectDead(t, f);
  });

  test("an unknown token of this server: 200 after searching every kind, nothing changes", async () => {
    const t = await ready();
    const c = await matrixClients();
    const before = await snapshot(t);
    const roundTrips = await countRoundTrips(t);
    const [res, body] = await revoke(t, c.ownerConfidential, await unknownToken(t), "access_token");
    // RFC 7009 §2.1: the hinted lookup failed, so the search MUST extend to the other kind.
    expect(roundTrips.stop()).toBe(2);
    expectEmpty200(res, body);
    expect(await snapshot(t)).toEqual(before);
  });

  test("a hint longer than any known hint is ignored, not refused", async () => {
    const t = await ready();
    const c = await matrixClients();
    const f = await codeFamily(t, c.ownerConfidential);
    const [res, body] = await revoke(t, c.ownerConfidential, f.refreshToken!, "refresh_token".repeat(20));
    expectEmpty200(res, body);
    await expectDead(t, f);
  });
});

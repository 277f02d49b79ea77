// The Shared Signals transmitter's HTTP side (SSF 1.0 §7, §8; RFC 8936): its metadata, the
// stream management API and each poll stream's poll endpoint. Every route but the metadata takes
// a bearer token of this server with the `ssf` scope, checked before the body is validated (an
// unauthenticated caller learns nothing from validation errors); the token's client is the receiver.
import { Elysia, t } from "elysia";
import type { Services } from "../services.ts";
import { SSF_SCOPE } from "../oauth/scopes.ts";
import { metadataPath, SSF_PATHS, transmitterMetadata } from "../ssf/streams.ts";
import { bearerClient } from "./bearer.ts";
import { onlyMethods } from "./method-not-allowed.ts";
import { emptyResponse, jsonResponse } from "./responses.ts";

const REALM = "token-authority-ssf";

const eventUris = t.Array(t.String({ minLength: 1, maxLength: 256 }), { maxItems: 50 });
const delivery = t.Object({
  method: t.String({ minLength: 1, maxLength: 64 }),
  endpoint_url: t.Optional(t.String({ minLength: 1, maxLength: 2048 })),
  authorization_header: t.Optional(t.String({ minLength: 1, maxLength: 4096 })),
});
/** SSF 1.0 §8.1.1: what a receiver supplies; the transmitter's fields may be present in an update, and must then match. */
const streamFields = {
  events_requested: t.Optional(eventUris),
  delivery: t.Optional(delivery),
  description: t.Optional(t.String({ maxLength: 10_000 })),
  iss: t.Optional(t.Unknown()),
  aud: t.Optional(t.Unknown()),
  events_supported: t.Optional(t.Unknown()),
  events_delivered: t.Optional(t.Unknown()),
  min_verification_interval: t.Optional(t.Unknown()),
};
const streamId = t.String({ minLength: 1, maxLength: 100 });
const subjectBody = t.Object({ stream_id: streamId, subject: t.Unknown(), verified: t.Optional(t.Boolean()) });

const noContent = () => emptyResponse(204);

export function ssfEndpoints({ config, pipeline, ssf }: Services) {
  const metadata = transmitterMetadata(config);
  const receivers = new WeakMap<Request, string>();
  const { streams, poll } = ssf;

  const managed = new Elysia({ name: "ssf-management" })
    .onTransform(async ({ request }) => {
      receivers.set(request, await bearerClient(pipeline, request, SSF_SCOPE, REALM));
    })
    .resolve(({ request }) => ({ receiver: receivers.get(request)! }))
    .post(SSF_PATHS.configuration, async ({ receiver, body }) => jsonResponse(await streams.create(receiver, body), 201), {
      body: t.Object({ ...streamFields, backlog: t.Optional(t.Boolean()) }),
    })
    .get(SSF_PATHS.configuration, async ({ receiver, query }) => jsonResponse(await streams.read(receiver, query.stream_id)), {
      query: t.Object({ stream_id: t.Optional(streamId) }),
    })
    .patch(SSF_PATHS.configuration, async ({ receiver, body }) => jsonResponse(await streams.update(receiver, body, false)), {
      body: t.Object({ stream_id: streamId, ...streamFields }),
    })
    .put(SSF_PATHS.configuration, async ({ receiver, body }) => jsonResponse(await streams.update(receiver, body, true)), {
      body: t.Object({ stream_id: streamId, ...streamFields }),
    })
    .delete(SSF_PATHS.configuration, async ({ receiver, query }) => (await streams.delete(receiver, query.stream_id), noContent()), {
      query: t.Object({ stream_id: streamId }),
    })
    .get(SSF_PATHS.status, async ({ receiver, query }) => jsonResponse(await streams.status(receiver, query.stream_id)), {
      query: t.Object({ stream_id: streamId }),
    })
    .post(SSF_PATHS.status, async ({ receiver, body }) => jsonResponse(await streams.setStatus(receiver, body.stream_id, body.status, body.reason)), {
      body: t.Object({
        stream_id: streamId,
        status: t.Union([t.Literal("enabled"), t.Literal("paused"), t.Literal("disabled")]),
        reason: t.Optional(t.String({ maxLength: 1000 })),
      }),
    })
    // §8.1.3.2: "an empty 200 OK"; §8.1.3.3: "204 No Content".
    .post(SSF_PATHS.addSubject, async ({ receiver, body }) => (await streams.addSubject(receiver, body.stream_id, body.subject), emptyResponse()), {
      body: subjectBody,
    })
    .post(SSF_PATHS.removeSubject, async ({ receiver, body }) => (await streams.removeSubject(receiver, body.stream_id, body.subject), noContent()), {
      body: subjectBody,
    })
    .post(SSF_PATHS.verification, async ({ receiver, body }) => (await streams.verify(receiver, body.stream_id, body.state), noContent()), {
      body: t.Object({ stream_id: streamId, state: t.Optional(t.String({ maxLength: 1000 })) }),
    })
    .post(`${SSF_PATHS.poll}/:stream_id`, async ({ receiver, params, body, request }) => jsonResponse(await poll.poll(receiver, params.stream_id, body, request.signal)), {
      body: t.Object({
        maxEvents: t.Optional(t.Integer({ minimum: 0 })),
        returnImmediately: t.Optional(t.Boolean()),
        ack: t.Optional(t.Array(t.String({ maxLength: 200 }), { maxItems: 10_000 })),
        // RFC 8936 §2.4 with RFC 8935 §2.3: each member an error object whose "err" is required.
        setErrs: t.Optional(t.Record(t.String({ maxLength: 200 }), t.Object({ err: t.String({ maxLength: 200 }), description: t.Optional(t.String({ maxLength: 2000 })) }))),
      }),
    });

  return new Elysia({ name: "ssf" })
    .use(onlyMethods(metadataPath(config.issuer), ["GET"]))
    .use(onlyMethods(SSF_PATHS.configuration, ["GET", "POST", "PATCH", "PUT", "DELETE"]))
    .use(onlyMethods(SSF_PATHS.status, ["GET", "POST"]))
    .use(onlyMethods(SSF_PATHS.addSubject, ["POST"]))
    .use(onlyMethods(SSF_PATHS.removeSubject, ["POST"]))
    .use(onlyMethods(SSF_PATHS.verification, ["POST"]))
    .get(metadataPath(config.issuer), () =>
      new Response(JSON.stringify(metadata), {
        headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*" },
      }),
    )
    .use(managed);
}

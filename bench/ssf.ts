// The Shared Signals phases of `bun run bench` (issue 17), against the running executable:
// - revocation at c=32 with no stream, with three push streams (loopback receivers answering
//   202) and with a dead and a slow receiver (nothing listening; a receiver that never answers),
//   interleaved in rounds; every push stream must receive every revocation of its run;
// - revocation → SET latency at a push receiver and at a long-polling poll receiver, one
//   revocation at a time (each measured from the moment the revocation request is sent).
// The receivers here decode SETs without verifying them (the tests verify; this measures the server).
import type { CpuShare, LoadResult, Reply } from "./lib.ts";
import { closedLoop, latencyStats } from "./lib.ts";

const PUSH = "urn:ietf:rfc:8935";
const POLL = "urn:ietf:rfc:8936";
const SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

export interface SsfBenchInput {
  base: string;
  /** A receiver: a client with client_credentials and the ssf scope. */
  receiver: { clientId: string; secret: string; auth: string };
  /** Loopback ports the server may push to (TA_OUTBOUND_ALLOW_HOSTS): three receivers, a dead one, a slow one. */
  ports: { push: [number, number, number]; dead: number; slow: number };
  /** Live access tokens, enough for every run (3 × rounds × perRun + 2 × latencySamples). */
  tokens: string[];
  perRun: number;
  rounds: number;
  latencySamples: number;
  revoke(token: string): Promise<Reply>;
  meter: () => Promise<() => Promise<CpuShare>>;
}

export interface SsfBenchResult {
  runs: Record<"none" | "push" | "dead", LoadResult[]>;
  /** Per push run: seconds from the end of the load until all three receivers had every SET. */
  drain_seconds: number[];
  /** SETs received per push run (3 × perRun expected), and how many arrived twice. */
  delivered: number[];
  duplicates: number;
  push_latency_ms: ReturnType<typeof latencyStats>;
  poll_latency_ms: ReturnType<typeof latencyStats>;
  /** Settles when the server has answered the poll receiver's last long poll (within TA_SSF_LONG_POLL of the return). */
  lastLongPoll: Promise<void>;
}

const sidOfToken = (token: string) => (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { sid: string }).sid;
function sidOfSet(set: string): string | undefined {
  const payload = JSON.parse(Buffer.from(set.split(".")[1]!, "base64url").toString()) as { sub_id?: { session?: { id?: string } }; events?: Record<string, unknown> };
  return payload.events?.[SESSION_REVOKED] ? payload.sub_id?.session?.id : undefined;
}

/** A push receiver: answers 202 and notes when each session's SET arrived. */
function receiverAt(port: number) {
  const arrivals = new Map<string, number>();
  let duplicates = 0;
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    async fetch(request) {
      const sid = sidOfSet(await request.text());
      if (sid !== undefined) {
        if (arrivals.has(sid)) duplicates++;
        else arrivals.set(sid, performance.now());
      }
      return new Response(null, { status: 202 });
    },
  });
  return { arrivals, duplicates: () => duplicates, stop: () => server.stop(true) };
}

export async function ssfBench(input: SsfBenchInput): Promise<SsfBenchResult> {
  const { base, ports, perRun } = input;
  const token = await ssfToken(base, input.receiver.auth);
  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const createStream = async (delivery: Record<string, string>) => {
    const response = await api("POST", "/ssf/streams", { events_requested: [SESSION_REVOKED], delivery });
    if (response.status !== 201) throw new Error(`stream creation answered ${response.status}: ${await response.text()}`);
    return (await response.json()) as { stream_id: string; delivery: { endpoint_url: string } };
  };
  const deleteStream = async (id: string) => {
    const response = await api("DELETE", `/ssf/streams?stream_id=${id}`);
    if (response.status !== 204) throw new Error(`stream deletion answered ${response.status}`);
  };
  const pushTo = (port: number) => createStream({ method: PUSH, endpoint_url: `http://127.0.0.1:${port}/events` });

  const receivers = ports.push.map(receiverAt);
  // The slow receiver accepts the connection and never answers (the transmitter gives up after 5 s).
  const slow = Bun.serve({ hostname: "127.0.0.1", port: ports.slow, idleTimeout: 30, fetch: () => new Promise<Response>(() => {}) });
  const tokens = input.tokens.slice();
  const take = (n: number) => tokens.splice(0, n);
  const runs: SsfBenchResult["runs"] = { none: [], push: [], dead: [] };
  const drain: number[] = [];
  const delivered: number[] = [];
  const load = (slice: string[]) => closedLoop(slice, 32, (t) => input.revoke(t), { meter: input.meter });
  try {
    for (let round = 0; round < input.rounds; round++) {
      runs.none.push(await load(take(perRun)));

      const streams = await Promise.all(ports.push.map(pushTo));
      const slice = take(perRun);
      const sids = slice.map(sidOfToken);
      runs.push.push(await load(slice));
      const ended = performance.now();
      const deadline = ended + 120_000;
      while (!receivers.every((r) => sids.every((sid) => r.arrivals.has(sid)))) {
        if (performance.now() > deadline) throw new Error("the push receivers did not get every SET within 120 s");
        await Bun.sleep(20);
      }
      drain.push(Math.round((performance.now() - ended) / 10) / 100);
      delivered.push(receivers.reduce((n, r) => n + sids.filter((sid) => r.arrivals.has(sid)).length, 0));
      for (const stream of streams) await deleteStream(stream.stream_id);

      const troubled = [await pushTo(ports.dead), await pushTo(ports.slow)];
      runs.dead.push(await load(take(perRun)));
      for (const stream of troubled) await deleteStream(stream.stream_id);
    }

    /** One revocation at a time: from sending it until its SET is among `arrivals`. */
    const latencies = async (arrivals: ReadonlyMap<string, number>, what: string) => {
      const measured: number[] = [];
      for (const t of take(input.latencySamples)) {
        const sid = sidOfToken(t);
        const sent = performance.now();
        await input.revoke(t);
        const deadline = performance.now() + 5000;
        while (!arrivals.has(sid) && performance.now() < deadline) await Bun.sleep(0.2);
        const arrived = arrivals.get(sid);
        if (arrived === undefined) throw new Error(`a ${what} SET did not arrive within 5 s`);
        measured.push(arrived - sent);
      }
      return measured;
    };

    // Latency at a push receiver.
    const latencyStream = await pushTo(ports.push[0]);
    const pushLatencies = await latencies(receivers[0]!.arrivals, "pushed");
    await deleteStream(latencyStream.stream_id);

    // Latency at a poll receiver in long-poll mode: it acknowledges what it got and waits again.
    const pollStream = await createStream({ method: POLL });
    const pollArrivals = new Map<string, number>();
    const stop = new AbortController();
    const polling = (async () => {
      let ack: string[] = [];
      while (!stop.signal.aborted) {
        const response = await api("POST", `/ssf/poll/${pollStream.stream_id}`, { ack, maxEvents: 100 }).catch(() => undefined);
        if (!response) continue;
        const now = performance.now();
        const { sets } = (await response.json()) as { sets: Record<string, string> };
        ack = Object.keys(sets);
        for (const set of Object.values(sets)) {
          const sid = sidOfSet(set);
          if (sid !== undefined && !pollArrivals.has(sid)) pollArrivals.set(sid, now);
        }
      }
    })();
    // The first long poll is waiting before the first revocation.
    await Bun.sleep(200);
    const pollLatencies = await latencies(pollArrivals, "polled");
    stop.abort();
    // The last long poll answers by itself within TA_SSF_LONG_POLL; the stream's deletion does not wait for it.
    await deleteStream(pollStream.stream_id);

    const sorted = (values: number[]) => values.slice().sort((a, b) => a - b);
    return {
      runs,
      drain_seconds: drain,
      delivered,
      duplicates: receivers.reduce((n, r) => n + r.duplicates(), 0),
      push_latency_ms: latencyStats(sorted(pushLatencies)),
      poll_latency_ms: latencyStats(sorted(pollLatencies)),
      lastLongPoll: polling,
    };
  } finally {
    for (const r of receivers) r.stop();
    slow.stop(true);
  }
}

async function ssfToken(base: string, auth: string): Promise<string> {
  const response = await fetch(`${base}/oauth/token`, {
    method: "POST",
    headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "client_credentials", scope: "ssf" }),
  });
  if (response.status !== 200) throw new Error(`the ssf token answered ${response.status}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

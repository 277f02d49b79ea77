// A throw-away high-availability PostgreSQL (#21): one etcd member and three PostgreSQL 15 nodes
// under Patroni, on free loopback ports in one temporary directory, with synchronous replication.
// One implementation for the tests (startPatroniCluster) and for people (scripts/patroni-cluster.ts).
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { freePort } from "./binary.ts";
import { asRoot, PG_BIN, postgresUid } from "./postgres-cluster.ts";

const NODE_NAMES = ["node1", "node2", "node3"] as const;
const SCRIPT = join(import.meta.dir, "..", "..", "scripts", "patroni-cluster.ts");
const STATE_FILE = "cluster.json";

/**
 * Patroni's timing (seconds). A dead leader's key lives out its ttl, so a failover after a crash
 * takes about ttl + loop_wait. Patroni's rule is loop_wait + 2 × retry_timeout ≤ ttl; a ttl much
 * below 10 risks a spurious failover when a loaded CI machine stalls the leader's loop.
 */
const TIMING = { ttl: 10, loop_wait: 1, retry_timeout: 4 } as const;

export interface PatroniClusterOptions {
  /**
   * The cluster's directory: created if missing, must not hold a cluster yet; the cluster outlives
   * this process (the script's `start`). Default: a new temporary directory, and a watchdog that
   * stops the cluster if this process exits without stopping it (a test run killed midway).
   */
  dir?: string;
  /**
   * When a commit is acknowledged. Both wait for the synchronous standby: `on` until it has
   * flushed the commit to its WAL (an acknowledged commit survives the primary's death), and
   * `remote_apply` also until it has replayed it, so a read on that standby sees the commit too
   * (what replica reads need, #21 item 4) — at the price of the replay in every commit's latency.
   */
  synchronousCommit?: "on" | "remote_apply";
  /** How long to wait for a leader with both replicas streaming (ms). */
  timeoutMs?: number;
}

export interface PatroniNode {
  readonly name: string;
  readonly host: "127.0.0.1";
  /** PostgreSQL's port. */
  readonly port: number;
  /** Patroni's REST API port. */
  readonly restApiPort: number;
  readonly dir: string;
  readonly dataDir: string;
  /** postgres://postgres@127.0.0.1:PORT/DATABASE: this node only, whatever its role. */
  url(database?: string): string;
}

export interface PatroniMember {
  name: string;
  role: "leader" | "sync_standby" | "replica" | string;
  state: string;
  timeline?: number;
  lag?: number | string;
}

export interface PatroniCluster {
  readonly dir: string;
  readonly nodes: readonly PatroniNode[];
  /** Every node in one URL; postgres.js connects to the one that is the primary (see `url`). */
  readonly dsn: string;
  /**
   * postgres://postgres@127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/DATABASE?target_session_attrs=primary.
   * `primary`, not `read-write`: postgres.js decides read-write from the server's
   * default_transaction_read_only only, which a hot standby reports as `off`
   * (node_modules/postgres/src/connection.js, tryNext), so `read-write` can land on a replica.
   * While no host is primary (each refuses or is a standby), a query does not fail: postgres.js
   * tries the hosts round and round without a pause (connection.js, error() and closed()) until
   * one is, so wait for a leader (waitForLeader) before connecting during a failover.
   */
  url(database?: string): string;
  readonly etcdUrl: string;
  /** The node holding the leader lock with PostgreSQL running as primary, asked of each node's REST API. */
  primary(): Promise<PatroniNode | undefined>;
  /** Waits for a running primary (other than `not`, when given), polling until `timeoutMs`. */
  waitForLeader(timeoutMs: number, options?: { not?: PatroniNode }): Promise<PatroniNode>;
  /** Waits until every node whose Patroni runs streams from the primary, the one Patroni names synchronous synchronously. */
  waitForReplicas(timeoutMs: number): Promise<PatroniNode>;
  /** The members as the DCS sees them (Patroni's GET /cluster, asked of any node that answers). */
  members(): Promise<PatroniMember[]>;
  /**
   * Signals a node's processes by pid: its Patroni, its postmaster and the postmaster's children.
   * SIGKILL (the default) is the machine dying: all of them at once, and resolves once they are
   * gone. SIGSTOP is the machine hanging (SIGCONT resumes it).
   */
  kill(node: PatroniNode, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a node's Patroni again on its data directory (a former primary rejoins, pg_rewind when needed). */
  start(node: PatroniNode): Promise<void>;
  /** Kills every process the cluster started, by pid, and removes its directory. */
  stop(): Promise<void>;
}

/** What Patroni's REST API says of its own node (GET /patroni, /primary). */
interface PatroniStatus {
  role?: string;
  state?: string;
  replication?: Array<{ application_name: string; state: string; sync_state: string }>;
}

interface NodeState {
  name: string;
  port: number;
  restApiPort: number;
  patroniPid?: number;
}

interface ClusterState {
  dir: string;
  etcd: { pid?: number; clientPort: number; peerPort: number };
  nodes: NodeState[];
  watchdogPid?: number;
}

/** Why a Patroni cluster cannot be started here, or undefined when it can. */
export function patroniUnavailableReason(): string | undefined {
  for (const command of ["patroni", "etcd"]) {
    if (!Bun.which(command)) return `no ${command} on PATH (apt-get install patroni etcd-server)`;
  }
  if (!existsSync(join(PG_BIN, "postgres"))) return `no postgres in ${PG_BIN} (set TA_PG_BIN)`;
  if (asRoot && !postgresUid()) return "running as root without a `postgres` OS user to run PostgreSQL as";
  return undefined;
}

/** Starts etcd and three Patroni nodes; resolves once a primary runs with both replicas streaming, one synchronously. */
export async function startPatroniCluster(options: PatroniClusterOptions = {}): Promise<PatroniCluster> {
  const reason = patroniUnavailableReason();
  if (reason) throw new Error(`cannot start a Patroni cluster: ${reason}`);
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "ta-patroni-"));
  if (existsSync(join(dir, STATE_FILE))) throw new Error(`${dir} already holds a cluster (stop it first)`);
  mkdirSync(dir, { recursive: true });
  const postgresUser = asRoot ? postgresUid() : undefined;
  if (postgresUser) chownSync(dir, postgresUser.uid, postgresUser.gid);

  const ports = distinctFreePorts(2 + 2 * NODE_NAMES.length);
  const state: ClusterState = {
    dir,
    etcd: { clientPort: ports[0]!, peerPort: ports[1]! },
    nodes: NODE_NAMES.map((name, i) => ({ name, port: ports[2 + 2 * i]!, restApiPort: ports[3 + 2 * i]! })),
  };
  const cluster = clusterFromState(state);
  try {
    saveState(state);
    if (!options.dir) state.watchdogPid = spawnDetached([process.execPath, SCRIPT, "watch", dir, String(process.pid)], "/dev/null");
    state.etcd.pid = spawnDetached(etcdCommand(state), join(dir, "etcd.log"));
    saveState(state);
    await until("etcd answers", Date.now() + 30_000, async () => {
      const response = await fetch(`${cluster.etcdUrl}/health`, { signal: AbortSignal.timeout(1000) });
      return response.ok ? true : undefined;
    });
    for (const node of state.nodes) {
      const nodeDir = join(dir, node.name);
      mkdirSync(nodeDir, { recursive: true });
      if (postgresUser) chownSync(nodeDir, postgresUser.uid, postgresUser.gid);
      writeFileSync(join(nodeDir, "patroni.yml"), JSON.stringify(patroniConfig(state, node, options), null, 2));
      await cluster.start(cluster.nodes.find((n) => n.name === node.name)!);
    }
    await cluster.waitForReplicas(options.timeoutMs ?? 90_000);
    return cluster;
  } catch (error) {
    const logs = logTails(state);
    await cluster.stop();
    throw new Error(`${(error as Error).message}\n${logs}`);
  }
}

/**
 * Creates database `name` at the primary and waits until every node accepts connections to it.
 * A standby that has not replayed the CREATE DATABASE yet refuses them (FATAL 3D000), and a
 * connection through the multi-host URL failed with that instead of trying the next host (seen
 * by the suite's replica-reads setup on 2026-12-07).
 */
export async function createClusterDatabase(cluster: Pick<PatroniCluster, "url" | "nodes">, name: string): Promise<void> {
  const admin = postgres(cluster.url("postgres"), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  for (const node of cluster.nodes) {
    await until(`database ${name} on ${node.name}`, Date.now() + 30_000, async () => {
      const sql = postgres(node.url(name), { max: 1, onnotice: () => {}, connect_timeout: 2 });
      try {
        await sql`select 1`;
        return true;
      } finally {
        await sql.end({ timeout: 1 });
      }
    });
  }
}

/** Stops the cluster in `dir` once process `owner` has exited, unless it was stopped before (the watchdog's loop). */
export async function stopWhenGone(dir: string, owner: number): Promise<void> {
  const state = join(dir, STATE_FILE);
  while (alive(owner) && existsSync(state)) await Bun.sleep(1000);
  if (existsSync(state)) await openPatroniCluster(dir).stop();
}

/** The cluster whose directory is `dir` (started by startPatroniCluster, maybe in another process). */
export function openPatroniCluster(dir: string): PatroniCluster {
  const path = join(dir, STATE_FILE);
  if (!existsSync(path)) throw new Error(`${dir} holds no cluster (no ${STATE_FILE})`);
  return clusterFromState(JSON.parse(readFileSync(path, "utf8")) as ClusterState);
}

function clusterFromState(state: ClusterState): PatroniCluster {
  const { dir } = state;
  const nodes: PatroniNode[] = state.nodes.map(({ name, port, restApiPort }) => ({
    name,
    host: "127.0.0.1",
    port,
    restApiPort,
    dir: join(dir, name),
    dataDir: join(dir, name, "data"),
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`,
  }));
  const nodeState = (node: PatroniNode) => state.nodes.find((n) => n.name === node.name)!;
  /** The node's Patroni, if it runs (a pid in the state file is checked against /proc: pids are reused). */
  const patroniPid = (node: PatroniNode) => {
    const pid = nodeState(node).patroniPid;
    return runs(pid, join(node.dir, "patroni.yml")) ? pid : undefined;
  };
  const url = (database = "postgres") =>
    `postgres://postgres@${nodes.map((n) => `${n.host}:${n.port}`).join(",")}/${database}?target_session_attrs=primary`;

  /** The node's Patroni status (GET /primary: 200 only on the lock holder), or undefined when it does not answer. */
  async function primaryStatus(node: PatroniNode): Promise<PatroniStatus | undefined> {
    try {
      const response = await fetch(`http://127.0.0.1:${node.restApiPort}/primary`, { signal: AbortSignal.timeout(1000) });
      return response.status === 200 ? await response.json() : undefined;
    } catch {
      return undefined;
    }
  }

  async function primary(): Promise<PatroniNode | undefined> {
    for (const node of nodes) {
      const status = await primaryStatus(node);
      if (status && (status.role === "master" || status.role === "primary") && status.state === "running") return node;
    }
    return undefined;
  }

  const cluster: PatroniCluster = {
    dir,
    nodes,
    dsn: url(),
    url,
    etcdUrl: `http://127.0.0.1:${state.etcd.clientPort}`,
    primary,
    waitForLeader(timeoutMs, { not } = {}) {
      return until(`a primary${not ? ` other than ${not.name}` : ""}`, Date.now() + timeoutMs, async () => {
        const node = await primary();
        return node && node.name !== not?.name ? node : undefined;
      });
    },
    waitForReplicas(timeoutMs) {
      return until("a primary with every running node streaming, one synchronously", Date.now() + timeoutMs, async () => {
        const leader = await primary();
        const status = leader && (await primaryStatus(leader));
        if (!leader || !status) return undefined;
        const replicas = nodes.filter((n) => n !== leader && patroniPid(n));
        const streaming = (status.replication ?? []).filter((r) => r.state === "streaming");
        const allStreaming = replicas.every((r) => streaming.some((s) => s.application_name === r.name));
        // Patroni promotes only the member its /sync key names, so that key must name one too
        // (until it does, the primary runs with synchronous_standby_names = '*').
        const members = await cluster.members();
        const sync = members.find((m) => m.role === "sync_standby" && m.state === "running");
        return allStreaming && sync && streaming.some((s) => s.application_name === sync.name && s.sync_state === "sync") ? leader : undefined;
      });
    },
    async members() {
      for (const node of nodes) {
        try {
          const response = await fetch(`http://127.0.0.1:${node.restApiPort}/cluster`, { signal: AbortSignal.timeout(1000) });
          if (response.ok) return ((await response.json()) as { members: PatroniMember[] }).members;
        } catch {}
      }
      throw new Error("no Patroni REST API answers");
    },
    async kill(node, name = "SIGKILL") {
      const patroni = patroniPid(node);
      const postmaster = postmasterPid(node.dataDir);
      // Stopped, neither reacts to the other's death nor forks a child that the list would miss.
      const parents = [patroni, postmaster].filter(alive);
      for (const pid of parents) signal(pid, "SIGSTOP");
      const pids = [...parents, ...descendantsOf(parents)];
      for (const pid of pids) signal(pid, name);
      if (name !== "SIGKILL" && name !== "SIGSTOP") for (const pid of parents) signal(pid, "SIGCONT");
      if (name !== "SIGKILL") return;
      await until(`${node.name}'s processes exit`, Date.now() + 10_000, async () => (pids.some(alive) ? undefined : true));
      nodeState(node).patroniPid = undefined;
      saveState(state);
    },
    async start(node) {
      if (patroniPid(node)) throw new Error(`${node.name}'s Patroni is running`);
      nodeState(node).patroniPid = spawnDetached(["patroni", join(node.dir, "patroni.yml")], join(node.dir, "patroni.log"), {
        cwd: node.dir,
        asPostgres: true,
      });
      saveState(state);
    },
    async stop() {
      // Patroni first, with what it runs (initdb, pg_basebackup, pg_rewind), so that none of them
      // restarts or promotes what is stopped next; then an immediate shutdown of each postmaster
      // (SIGQUIT: it ends its children and frees its shared memory; SIGCONT in case the node was
      // stopped), and SIGKILL for whatever is left at the deadline.
      const patronis = nodes.map(patroniPid).filter(alive);
      for (const pid of patronis) signal(pid, "SIGSTOP");
      const patroniChildren = descendantsOf(patronis);
      for (const pid of [...patronis, ...patroniChildren]) signal(pid, "SIGKILL");
      const postmasters = nodes.map((n) => postmasterPid(n.dataDir)).filter(alive);
      const children = descendantsOf(postmasters);
      for (const pid of postmasters) signal(pid, "SIGQUIT");
      for (const pid of [...postmasters, ...children]) signal(pid, "SIGCONT");
      const etcd = [state.etcd.pid].filter((pid) => runs(pid, join(dir, "etcd")));
      const watchdog = state.watchdogPid !== process.pid ? [state.watchdogPid].filter((pid) => runs(pid, dir)) : [];
      for (const pid of [...etcd, ...watchdog]) signal(pid, "SIGKILL");
      const pids = [...patronis, ...patroniChildren, ...postmasters, ...children, ...etcd, ...watchdog];
      try {
        await until("the cluster's processes exit", Date.now() + 10_000, async () => (pids.some(alive) ? undefined : true));
      } catch {
        for (const pid of pids.filter(alive)) signal(pid, "SIGKILL");
        await until("the cluster's processes exit after SIGKILL", Date.now() + 5_000, async () => (pids.some(alive) ? undefined : true));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

function patroniConfig(state: ClusterState, node: NodeState, options: PatroniClusterOptions) {
  const nodeDir = join(state.dir, node.name);
  const address = (port: number) => `127.0.0.1:${port}`;
  return {
    scope: "ta",
    name: node.name,
    restapi: { listen: address(node.restApiPort), connect_address: address(node.restApiPort) },
    // etcd's v2 API, not v3: Patroni 3.0.2 (Debian 12's) on v3 lets a primary that hung past its
    // lease, then woke up, overwrite the new leader's key unconditionally (fixed in 3.0.3 by
    // patroni/patroni#2689): the new primary demotes, and what it committed — answered 200 —
    // is lost (test/cluster-faults.test.ts, the split). On v2 the key is updated by
    // compare-and-swap on its value, and the old primary, failing it, demotes itself.
    etcd: { host: address(state.etcd.clientPort) },
    bootstrap: {
      dcs: {
        ...TIMING,
        // Only the synchronous standby may be promoted; strict: with no standby left, commits
        // wait rather than being acknowledged by the primary alone.
        synchronous_mode: true,
        synchronous_mode_strict: true,
        postgresql: {
          use_pg_rewind: true,
          parameters: {
            synchronous_commit: options.synchronousCommit ?? "on",
            wal_level: "replica",
            hot_standby: "on",
            max_wal_senders: 10,
            max_replication_slots: 10,
            // How soon a standby that lost its primary tries again (default 5 s): after a failover
            // the remaining standby reconnects to the new primary, and strict synchronous mode
            // holds every commit until it has.
            wal_retrieve_retry_interval: "1s",
          },
        },
      },
      initdb: [{ encoding: "UTF8" }, { locale: "C" }, "no-sync"],
    },
    postgresql: {
      listen: address(node.port),
      connect_address: address(node.port),
      data_dir: join(nodeDir, "data"),
      bin_dir: PG_BIN,
      pgpass: join(nodeDir, "pgpass"),
      // Loopback only, in a directory nobody else uses: trust is enough.
      authentication: {
        superuser: { username: "postgres" },
        replication: { username: "replicator", password: "replicator" },
      },
      pg_hba: ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"],
      parameters: {
        unix_socket_directories: nodeDir,
        // Only processes are ever killed here, never the machine: every write they made is still
        // in the page cache (the same reasoning as postgres-cluster.ts).
        fsync: "off",
      },
      basebackup: [{ checkpoint: "fast" }],
      use_pg_rewind: true,
      remove_data_directory_on_rewind_failure: true,
      remove_data_directory_on_diverged_timelines: true,
    },
  };
}

function etcdCommand(state: ClusterState): string[] {
  const client = `http://127.0.0.1:${state.etcd.clientPort}`;
  const peer = `http://127.0.0.1:${state.etcd.peerPort}`;
  return [
    "etcd",
    ...["--name", "ta", "--data-dir", join(state.dir, "etcd")],
    ...["--listen-client-urls", client, "--advertise-client-urls", client],
    ...["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer],
    ...["--initial-cluster", `ta=${peer}`, "--initial-cluster-state", "new"],
    ...["--logger", "zap", "--log-level", "warn"],
    "--enable-v2=true",
  ];
}

/**
 * Starts a process in its own session (it outlives this one: the script's `start` returns), its
 * output appended to `log`; as root, PostgreSQL's processes run as the `postgres` OS user.
 */
function spawnDetached(command: string[], log: string, { cwd, asPostgres = false }: { cwd?: string; asPostgres?: boolean } = {}): number {
  const fd = openSync(log, "a");
  const user = asPostgres && asRoot ? postgresUid() : undefined;
  const proc = Bun.spawn(command, {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: cwd ?? tmpdir(), LC_ALL: "C.UTF-8" },
    stdio: ["ignore", fd, fd],
    detached: true,
    ...(user ?? {}),
  });
  closeSync(fd);
  proc.unref();
  return proc.pid;
}

function saveState(state: ClusterState): void {
  writeFileSync(join(state.dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

/** Ports that were free a moment ago, no two alike. */
function distinctFreePorts(count: number): number[] {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(freePort());
  return [...ports];
}

/** A process that exists and is not a zombie (a killed child this process has not reaped yet). */
function alive(pid: number | undefined): pid is number {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Whether `pid` is alive and its command line has the argument `argument`. */
function runs(pid: number | undefined, argument: string): pid is number {
  if (!alive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(argument);
  } catch {
    return false;
  }
}

/** A node's PostgreSQL processes: its postmaster and every descendant (backends, WAL senders, the startup process, …). */
export function postgresProcesses(node: Pick<PatroniNode, "dataDir">): number[] {
  const postmaster = postmasterPid(node.dataDir);
  return postmaster === undefined ? [] : [postmaster, ...descendantsOf([postmaster])];
}

/** The pid of the postmaster running on `dataDir` (from its postmaster.pid, checked against /proc). */
function postmasterPid(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
  return runs(pid, dataDir) ? pid : undefined;
}

/** Every live descendant of `parents` (children, their children, …), from one scan of /proc. */
function descendantsOf(parents: number[]): number[] {
  const childrenByParent = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      childrenByParent.set(ppid, [...(childrenByParent.get(ppid) ?? []), Number(entry)]);
    } catch {}
  }
  const found: number[] = [];
  const queue = [...parents];
  while (queue.length) {
    for (const child of childrenByParent.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found.filter(alive);
}

/** Sends a signal to `pid`; one that has exited since it was listed is no error. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/** Polls `probe` every 200 ms until it returns a value; throws once `deadline` (epoch ms) has passed. */
async function until<T>(what: string, deadline: number, probe: () => Promise<T | undefined>): Promise<T> {
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last: ${(last as Error).message})` : ""}`);
    await Bun.sleep(200);
  }
}

/** The last lines of every log, for a start that failed. */
function logTails(state: ClusterState): string {
  const logs = [join(state.dir, "etcd.log"), ...state.nodes.map((n) => join(state.dir, n.name, "patroni.log"))];
  return logs
    .filter((log) => existsSync(log))
    .map((log) => `--- ${log}\n${readFileSync(log, "utf8").split("\n").slice(-30).join("\n")}`)
    .join("\n");
}

// A throw-away Patroni cluster to try failover by hand (#21): etcd and three PostgreSQL 15 nodes on
// loopback, started by test/helpers/patroni.ts exactly as test/patroni-cluster.test.ts starts them.
//   bun scripts/patroni-cluster.ts start DIR   starts it in DIR, prints its URL and nodes, and returns
//   bun scripts/patroni-cluster.ts stop DIR    kills every process it started, by pid, and removes DIR
// (and `watch DIR PID`, the helper's watchdog: stops the cluster in DIR once process PID has exited).
import { resolve } from "node:path";
import { openPatroniCluster, startPatroniCluster, stopWhenGone } from "../test/helpers/patroni.ts";

const [command, dirArgument, owner] = process.argv.slice(2);
if (!dirArgument || (command !== "start" && command !== "stop" && !(command === "watch" && owner))) {
  console.error("usage: bun scripts/patroni-cluster.ts start|stop DIR");
  process.exit(2);
}
const dir = resolve(dirArgument);

if (command === "start") {
  const cluster = await startPatroniCluster({ dir });
  const primary = await cluster.primary();
  console.log(
    JSON.stringify(
      {
        dsn: cluster.dsn,
        primary: primary?.name,
        nodes: cluster.nodes.map(({ name, port, restApiPort, dataDir }) => ({ name, port, restApi: `http://127.0.0.1:${restApiPort}`, dataDir })),
        etcd: cluster.etcdUrl,
        patronictl: `patronictl -c ${dir}/node1/patroni.yml list`,
        stop: `bun scripts/patroni-cluster.ts stop ${dir}`,
      },
      null,
      2,
    ),
  );
} else if (command === "stop") {
  await openPatroniCluster(dir).stop();
} else {
  await stopWhenGone(dir, Number(owner));
}

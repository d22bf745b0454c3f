/** How much each part measures. `full` is what the issue asks for; `quick` keeps every key with tiny counts. */
export interface Profile {
  name: "full" | "quick";
  /** One-line-change pushes (pushToLive samples). */
  pushes: number;
  /** Wakes per idle tier, and starts by hand for the baseline. */
  wakes: number;
  /** wrk: measured seconds per target, warm-up seconds before each, threads, connections. */
  loadSeconds: number;
  warmupSeconds: number;
  loadThreads: number;
  loadConnections: number;
  /** Apps in the route table (and nginx server blocks) for the second router run. */
  routerApps: number;
  /** Control-plane size for the API part. */
  apiTeams: number;
  apiApps: number;
  /** Timed requests per API call. */
  apiIterations: number;
  /** Apps deployed and then scaled to zero on the whole platform (memory part). */
  memoryApps: number;
  /** Routes in the router whose memory is measured. */
  memoryRoutes: number;
  /** Quiet time before memory is sampled. */
  settleMs: number;
  /** The whole run's time limit; past it the run is torn down and fails. */
  deadlineMs: number;
}

export const FULL: Profile = {
  name: "full",
  pushes: 10,
  wakes: 20,
  loadSeconds: 10,
  warmupSeconds: 2,
  loadThreads: 1,
  loadConnections: 50,
  routerApps: 1000,
  apiTeams: 1000,
  apiApps: 10_000,
  apiIterations: 200,
  memoryApps: 100,
  memoryRoutes: 10_000,
  settleMs: 5000,
  deadlineMs: 60 * 60_000,
};

export const QUICK: Profile = {
  name: "quick",
  pushes: 2,
  wakes: 3,
  loadSeconds: 2,
  warmupSeconds: 1,
  loadThreads: 1,
  loadConnections: 50,
  routerApps: 1000,
  apiTeams: 100,
  apiApps: 1000,
  apiIterations: 20,
  memoryApps: 10,
  memoryRoutes: 10_000,
  settleMs: 2000,
  deadlineMs: 15 * 60_000,
};

/**
 * `serve --workers N`: the first process forks N workers (node:cluster) that
 * each run the whole server on the same two ports, so that one command uses
 * several cores. Node 20 has no `reusePort`, so the cluster module is what
 * lets processes share a port: the primary holds the listening sockets and
 * hands each new connection to a worker in turn. Each worker has its own
 * caches, policy set (it reloads the folder itself) and handle on the store;
 * the SQLite store is made for several processes (docs/store.md).
 *
 * The primary does no decisions. It starts one worker first and the rest once
 * that one listens (so a bad policy set or store refuses the start once, with
 * the worker's message, and a new store is created by one process only);
 * forwards SIGHUP; on SIGTERM or SIGINT stops every worker the way a single
 * server stops and exits when they have; and replaces a worker that dies
 * otherwise, waiting longer after each crash in a row.
 */
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";

/** The message a worker sends the primary once both its ports listen. */
export const WORKER_LISTENING = "portcullis:listening";

/** Past this, a worker still draining after SIGTERM is killed: the server's own grace is 5 s. */
const STOP_DEADLINE_MS = 30_000;
/** Restart delays after crashes in a row: 1 s doubling to 30 s; a worker that lived a minute resets it. */
const RESTART_DELAY_MS = { first: 1_000, max: 30_000, healthyAfter: 60_000 };

/**
 * Runs the primary until it is told to stop; resolves to the exit code: 0 after
 * a stop, or the first worker's code when it exits before listening.
 */
export function superviseWorkers(count: number, log: Logger): Promise<number> {
  return new Promise((resolve) => {
    const listening = new Set<Worker>();
    let stopping = false;
    let started = false;
    let crashesInARow = 0;
    let killTimer: NodeJS.Timeout | undefined;
    const restartTimers = new Set<NodeJS.Timeout>();

    // why: not cluster.workers, which keeps an exited worker until its channel closes
    const running = new Set<Worker>();
    const live = () => [...running];
    const fork = (): Worker => {
      const worker = cluster.fork();
      running.add(worker);
      const forkedAt = Date.now();
      worker.on("message", (message: unknown) => {
        if (message !== WORKER_LISTENING) return;
        listening.add(worker);
        if (!started) {
          started = true;
          log.info({ workers: count }, `worker ${worker.process.pid} listens; starting ${count - 1} more`);
          for (let i = 1; i < count; i++) fork();
        }
      });
      worker.once("exit", (code, signal) => {
        running.delete(worker);
        const wasListening = listening.delete(worker);
        if (stopping) {
          if (live().length === 0) finish(0);
          return;
        }
        if (!started) {
          // why: the first worker failed to start (its error is on stderr already); more would fail the same way
          log.error({ code, signal }, "the first worker exited before listening; not starting the others");
          finish(typeof code === "number" && code !== 0 ? code : 1);
          return;
        }
        crashesInARow = Date.now() - forkedAt > RESTART_DELAY_MS.healthyAfter ? 1 : crashesInARow + 1;
        const delay = Math.min(RESTART_DELAY_MS.max, RESTART_DELAY_MS.first * 2 ** (crashesInARow - 1));
        log.error({ pid: worker.process.pid, code, signal, wasListening, restartInMs: delay }, `worker ${worker.process.pid} exited; starting a new one in ${delay} ms`);
        const timer = setTimeout(() => {
          restartTimers.delete(timer);
          if (!stopping) fork();
        }, delay);
        restartTimers.add(timer);
      });
      return worker;
    };

    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal} received; stopping ${live().length} workers`);
      for (const timer of restartTimers) clearTimeout(timer);
      const workers = live();
      if (workers.length === 0) return finish(0);
      for (const worker of workers) signalWorker(worker, "SIGTERM");
      killTimer = setTimeout(() => {
        for (const worker of live()) signalWorker(worker, "SIGKILL");
      }, STOP_DEADLINE_MS);
      killTimer.unref();
    };
    const reload = () => {
      for (const worker of live()) signalWorker(worker, "SIGHUP");
    };
    const onSigterm = () => stop("SIGTERM");
    const onSigint = () => stop("SIGINT");
    process.on("SIGTERM", onSigterm);
    process.on("SIGINT", onSigint);
    process.on("SIGHUP", reload);

    function finish(code: number): void {
      clearTimeout(killTimer);
      for (const timer of restartTimers) clearTimeout(timer);
      process.off("SIGTERM", onSigterm);
      process.off("SIGINT", onSigint);
      process.off("SIGHUP", reload);
      // A worker still starting when the first one failed is not left behind.
      for (const worker of live()) signalWorker(worker, "SIGKILL");
      resolve(code);
    }

    fork();
  });
}

function signalWorker(worker: Worker, signal: NodeJS.Signals): void {
  try {
    worker.process.kill(signal);
  } catch {
    // Already gone: its exit event follows.
  }
}

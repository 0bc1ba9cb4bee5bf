/**
 * The HTTP benchmark's load generator: a child process (pinned to its own core by the runner)
 * that runs autocannon on request over its IPC channel and answers with the figures.
 *
 * Latency percentiles are computed here from every response's own time (autocannon's histogram
 * keeps whole milliseconds only): nearest-rank over the 2xx responses of the run.
 */
import autocannon from "autocannon";

export interface LoadRequest {
  id: number;
  url: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
}

export interface LoadResult {
  id: number;
  /** Completed responses per second over the run's wall time. */
  requestsPerSecond: number;
  responses: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Seconds the run took. */
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** CPU the load generator used over the run, as a share of one core (near 1 = it may be the bottleneck). */
  loadgenCpu: number;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

function run(req: LoadRequest): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    let times = new Float64Array(1 << 18);
    let n = 0;
    const cpuStart = process.cpuUsage();
    const wallStart = process.hrtime.bigint();
    const instance = autocannon({ url: req.url, headers: req.headers, connections: req.connections, duration: req.seconds, timeout: 10 }, (error, result) => {
      if (error) return reject(error);
      const cpu = process.cpuUsage(cpuStart);
      const wallUs = Number(process.hrtime.bigint() - wallStart) / 1000;
      const sorted = times.subarray(0, n).sort();
      const statusCodes: Record<string, number> = {};
      for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = count;
      const responses = Object.values(statusCodes).reduce((a, b) => a + b, 0);
      resolve({
        id: req.id,
        requestsPerSecond: Math.round(responses / result.duration),
        responses,
        p50Ms: round2(percentile(sorted, 0.5)),
        p90Ms: round2(percentile(sorted, 0.9)),
        p99Ms: round2(percentile(sorted, 0.99)),
        maxMs: round2(percentile(sorted, 1)),
        duration: result.duration,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        statusCodes,
        loadgenCpu: round2((cpu.user + cpu.system) / wallUs),
      });
    });
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      if (statusCode < 200 || statusCode > 299) return;
      if (n === times.length) {
        const grown = new Float64Array(times.length * 2);
        grown.set(times);
        times = grown;
      }
      times[n++] = responseTime;
    });
  });
}

process.on("message", (message: LoadRequest) => {
  run(message).then(
    (result) => process.send!(result),
    (error: Error) => process.send!({ id: message.id, error: error.message }),
  );
});
process.on("disconnect", () => process.exit(0));

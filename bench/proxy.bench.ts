/**
 * Proxy benchmark (issue 5): throughput and p50/p99 latency of a GET forwarded by keygate to a
 * portal's HTTP upstream — authentication, rate limits, scope check, identity headers, forwarding —
 * against, in the same run:
 *
 *   direct   the upstream itself, no proxy;
 *   undici   a bare reverse proxy (bench/servers/undici-proxy.ts): node:http and undici's
 *            dispatcher `stream`, the way and with the pool keygate uses, no checks;
 *   signing  the same bare proxy adding what keygate's forwarding contract adds to every request
 *            (X-Request-Id, X-Forwarded-*, the signed identity headers), still with no checks:
 *            it splits keygate's cost into the contract's and the checks';
 *   nginx    nginx `proxy_pass` with upstream keep-alive, one worker: the native ceiling. Skipped,
 *            with the command to install it, when there is no nginx (PATH, /usr/sbin/nginx, or
 *            BENCH_NGINX=<path>);
 *   keygate  `keygate serve` (the real CLI) with the RogerIQ profile.
 *
 * Goal: keygate at no less than 0.9 of the bare undici proxy's requests per second; the ratio to
 * nginx is reported.
 *
 * The upstream (bench/servers/upstream.ts) answers every request with the same 1 KB JSON page of
 * knowledge-base articles. keygate: RogerIQ written to a profile file with every per-minute limit
 * raised to 10⁹, started on an empty data directory (set up on first start); an organisation
 * portal with `{kind: "http", baseUrl: <upstream>}` and a request limit of 100,000 a second, and a
 * `kb:read` key with a rateLimit of 100,000 a second, are then created through src/manage/* on
 * the same SQLite database (RogerIQ has no management API; a data directory set up with a profile
 * file cannot be reopened by `serve --profile <file>`, so the setup cannot come first). Every
 * forwarded request is counted in 3 limits (tier per minute, key per second, portal per second) and
 * none is refused. All four are loaded with the same request, GET
 * /v1/projects/p1/kb/articles?status=published with an X-Api-Key header, and must answer 200 with
 * the upstream's body; keygate's answer must carry its X-Request-Id and rate-limit headers.
 *
 * Pinning, on 2 cores: the proxy under test AND the upstream on core 0, the load generator alone on
 * core 1. The server side (proxy + upstream) shares one core, so every proxied target pays the same
 * upstream cost out of the same core, and the load generator keeps a core of its own so that it is
 * not the limit for the fast proxies (nginx). The req/s ratios therefore include the upstream's
 * CPU on both sides (they are closer to 1 than the proxies alone); the proxies' own CPU per
 * request, from /proc, is reported too, and its ratio is the comparison of the proxies alone.
 * Runs: as bench/http.bench.ts (bench/harness.ts): a warm-up, then BENCH_RUNS interleaved runs per
 * target, medians.
 */
import type { ChildProcess } from "node:child_process";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_OWNER_EMAIL } from "../src/cli/setup.ts";
import { keyFormat } from "../src/core/keys/format.ts";
import type { Keygate } from "../src/manage/context.ts";
import { createKey } from "../src/manage/keys.ts";
import { createPortal, updatePortal } from "../src/manage/portals.ts";
import { BUILTIN_PROFILES, loadProfile } from "../src/profiles/index.ts";
import { openStore } from "../src/store/index.ts";
import { outboundPolicy } from "../src/upstream/outbound.ts";
import {
  type HttpRun,
  LoadGenerator,
  type LoadTarget,
  type MedianFigures,
  type QuietBudget,
  call,
  freePort,
  interleave,
  mediansOf,
  pinningText,
  quietBudgetFromEnv,
  round,
  settingsFromEnv,
  spawnNode,
  spawnPinned,
  stop,
  waitFor,
} from "./harness.ts";

export type ProxyTargetName = "direct" | "undici" | "signing" | "nginx" | "keygate";

export interface ProxySide {
  target: ProxyTargetName;
  url: string;
  warmup: HttpRun;
  runs: HttpRun[];
  /** serverCpu* is the proxy's (for direct: the upstream's); companions.upstream the upstream's behind a proxy. */
  median: MedianFigures;
}

export interface ProxyRatio {
  /** keygate against this target. */
  versus: Exclude<ProxyTargetName, "keygate">;
  /** keygate / versus, of the median req/s. */
  requestsPerSecond: number;
  p50: number;
  p99: number;
  /** versus / keygate, of the proxies' own CPU per request (null for direct, which has no proxy). */
  proxyCpu: number | null;
  /** Against undici: the goal, 0.9 of its req/s. */
  goal?: number;
  met?: boolean;
}

export interface ProxyBenchResult {
  method: {
    connections: number;
    seconds: number;
    warmupSeconds: number;
    runs: number;
    pinning: { server: number; loadgen: number } | null;
    request: string;
    bodyBytes: number;
    limitsPerRequest: number;
    undici: string;
    nginx: string | null;
    quietWaitSeconds: number;
  };
  sides: ProxySide[];
  ratios: ProxyRatio[];
  skipped: string[];
}

const HUGE = 1_000_000_000;
const PER_SECOND = 100_000;
const PATH = "/v1/projects/p1/kb/articles?status=published";
const requireHere = createRequire(import.meta.url);

/** The nginx binary: BENCH_NGINX, else nginx on PATH, else /usr/sbin/nginx; with its version. */
function findNginx(): { path: string; version: string } | { missing: string } {
  const candidates = process.env.BENCH_NGINX ? [process.env.BENCH_NGINX] : ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"];
  for (const path of candidates) {
    const r = spawnSync(path, ["-v"], { encoding: "utf8" });
    if (r.status === 0) return { path, version: /nginx\/(\S+)/.exec(r.stderr + r.stdout)?.[1] ?? "unknown" };
  }
  return {
    missing:
      `nginx: not found (${candidates.join(", ")}), so the nginx row is skipped. To include it: apt-get install -y nginx ` +
      "(Debian/Ubuntu, as root; nginx-light is the same server with fewer modules where the release has it: apt-cache policy nginx nginx-light), " +
      "or set BENCH_NGINX=<path to an nginx binary>. The benchmark runs its own nginx on 127.0.0.1 with a generated configuration; no service needs to run.",
  };
}

function nginxConfig(dir: string, port: number, upstreamPort: number): string {
  return `# Generated by bench/proxy.bench.ts: one worker, no access log, keep-alive both ways.
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:${upstreamPort};
    keepalive 128;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
`;
}

/** Polls `url` until it answers 200 (nginx prints nothing when it is ready). */
async function waitForHttp(url: string, child: ChildProcess, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited early (${child.signalCode ?? child.exitCode})`);
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not answering ${url} after ${timeoutMs} ms (${last})`);
}

/** RogerIQ with every per-minute (and per-day, per-second) limit of the profile and its tiers at 10⁹. */
function benchProfile(): unknown {
  const spec = JSON.parse(JSON.stringify(BUILTIN_PROFILES.rogeriq!)) as NonNullable<(typeof BUILTIN_PROFILES)["rogeriq"]>;
  const limits = spec.limits!;
  spec.limits = {
    ...limits,
    perMinute: HUGE,
    tiers: limits.tiers?.map((t) => ({ ...t, ...(t.perMinute === undefined ? {} : { perMinute: HUGE }), ...(t.perDay === undefined ? {} : { perDay: HUGE }), ...(t.perSecond === undefined ? {} : { perSecond: HUGE }) })),
  };
  return spec;
}

/** The portal and the kb:read key, created through the manage layer on keygate's data directory. */
async function setUpKeygate(dataDir: string, profileFile: string, upstreamUrl: string): Promise<string> {
  const serverSecret = readFileSync(join(dataDir, "secret"), "utf8").trim();
  const store = await openStore({ dataDir, serverSecret });
  try {
    const profile = loadProfile(profileFile);
    const kg: Keygate = {
      profile,
      store,
      serverSecret,
      format: keyFormat(profile.spec.keyTypes),
      // The benchmark's upstream listens on this machine.
      outbound: outboundPolicy(["127.0.0.1"]),
      now: Date.now,
      keyChanged: () => {},
      portalChanged: () => {},
    };
    const owner = await store.getUserByEmail(DEFAULT_OWNER_EMAIL);
    if (!owner) throw new Error(`keygate's data directory has no ${DEFAULT_OWNER_EMAIL}`);
    const actor = { user: owner, keyId: null, ip: null };
    const portal = await createPortal(kg, actor, { domain: "bench.example.com", name: "bench", upstream: { kind: "http", baseUrl: upstreamUrl } });
    await updatePortal(kg, actor, portal.id, { requestLimit: PER_SECOND });
    return (await createKey(kg, actor, { portalId: portal.id, name: "bench kb reader", scopes: "kb:read", rateLimit: PER_SECOND })).rawKey;
  } finally {
    await store.close();
  }
}

export async function runProxyBench(log: (line: string) => void = (line) => console.error(line), quiet: QuietBudget = quietBudgetFromEnv()): Promise<ProxyBenchResult> {
  const s = settingsFromEnv();
  if (s.profileDir) mkdirSync(s.profileDir, { recursive: true });
  const quietAtStart = quiet.seconds;
  const core = s.pinning?.server ?? null;
  const skipped: string[] = [];
  const nginx = findNginx();
  if ("missing" in nginx) {
    skipped.push(nginx.missing);
    log(`proxy bench: ${nginx.missing}`);
  }
  log(`proxy bench: GET ${PATH}; ${s.connections} connections, ${s.runs} × ${s.seconds} s per target after a ${s.warmupSeconds} s warm-up; ${pinningText(s, "proxy and upstream")}`);

  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-bench-proxy-"));
  const children: ChildProcess[] = [];
  let loadgen: LoadGenerator | undefined;
  try {
    const upstream = spawnNode(core, ["bench/servers/upstream.ts"], "pipe");
    children.push(upstream);
    const upLine = /listening (http:\/\/\S+) (\d+)/.exec(await waitFor(upstream, /listening (http:\/\/\S+) (\d+)/, "upstream"))!;
    const upstreamUrl = upLine[1]!;
    const bodyBytes = Number(upLine[2]);

    const undici = spawnNode(core, [...s.profArgs, "bench/servers/undici-proxy.ts", upstreamUrl], "pipe");
    children.push(undici);
    const undiciUrl = /listening (http:\/\/\S+)/.exec(await waitFor(undici, /listening (http:\/\/\S+)/, "undici proxy"))![1]!;
    const signing = spawnNode(core, [...s.profArgs, "bench/servers/undici-proxy.ts", upstreamUrl, "--identity"], "pipe");
    children.push(signing);
    const signingUrl = /listening (http:\/\/\S+)/.exec(await waitFor(signing, /listening (http:\/\/\S+)/, "undici proxy with identity headers"))![1]!;

    let nginxProcess: ChildProcess | undefined;
    let nginxUrl: string | undefined;
    if (!("missing" in nginx)) {
      // Its own directory, readable by the worker (which drops to nobody when started as root).
      const dir = mkdtempSync(join(os.tmpdir(), "keygate-bench-nginx-"));
      chmodSync(dir, 0o755);
      const port = await freePort();
      writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, port, Number(new URL(upstreamUrl).port)));
      nginxProcess = spawnPinned(core, nginx.path, ["-p", `${dir}/`, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], "pipe");
      children.push(nginxProcess);
      nginxProcess.once("exit", () => rmSync(dir, { recursive: true, force: true }));
      nginxProcess.stdout!.resume();
      nginxProcess.stderr!.resume();
      nginxUrl = `http://127.0.0.1:${port}`;
      try {
        await waitForHttp(`${nginxUrl}${PATH}`, nginxProcess, "nginx");
      } catch (e) {
        const errors = existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8").slice(-2000) : "";
        throw new Error(`${(e as Error).message}\n${errors}`, { cause: e });
      }
    }

    const profileFile = join(tmp, "rogeriq-bench.json");
    writeFileSync(profileFile, JSON.stringify(benchProfile()));
    const dataDir = join(tmp, "data");
    const keygate = spawnNode(core, [...s.profArgs, "bin/keygate.js", "serve", "--data-dir", dataDir, "--port", "0", "--profile", profileFile, "--allow-upstream", "127.0.0.1"], "pipe");
    children.push(keygate);
    const keygateUrl = /keygate listening on (http:\/\/\S+)/.exec(await waitFor(keygate, /keygate listening on (http:\/\/\S+)/, "keygate serve"))![1]!;
    const key = await setUpKeygate(dataDir, profileFile, upstreamUrl);

    // Every target answers the same request with the upstream's body; keygate adds its headers.
    const expected = (await call("GET", `${upstreamUrl}${PATH}`, key)).text;
    const urls: Record<ProxyTargetName, string | undefined> = { direct: upstreamUrl, undici: undiciUrl, signing: signingUrl, nginx: nginxUrl, keygate: keygateUrl };
    for (const [name, base] of Object.entries(urls)) {
      if (base === undefined) continue;
      const r = await call("GET", `${base}${PATH}`, key);
      if (r.status !== 200 || r.text !== expected) throw new Error(`${name}: GET ${PATH} answered ${r.status} ${r.text.slice(0, 300)}`);
      if (name === "keygate" && (!r.headers.get("x-request-id") || (r.headers.get("ratelimit-policy")?.split(",").length ?? 0) !== 3)) {
        throw new Error(`keygate: expected X-Request-Id and 3 limits in RateLimit-Policy, got ${JSON.stringify(Object.fromEntries(r.headers))}`);
      }
    }

    loadgen = new LoadGenerator(s.pinning?.loadgen ?? null);
    const pids: Record<ProxyTargetName, number | undefined> = { direct: upstream.pid, undici: undici.pid, signing: signing.pid, nginx: nginxProcess?.pid, keygate: keygate.pid };
    const targets: (LoadTarget & { target: ProxyTargetName })[] = (["direct", "undici", "signing", "nginx", "keygate"] as const)
      .filter((t) => urls[t] !== undefined)
      .map((t) => ({
        target: t,
        label: t.padEnd(8),
        url: `${urls[t]}${PATH}`,
        headers: { "x-api-key": key },
        pid: pids[t],
        companions: t === "direct" ? undefined : [{ name: "upstream", pid: upstream.pid }],
      }));
    const measured = await interleave(loadgen, targets, s, quiet, log);

    const sides: ProxySide[] = targets.map((t) => {
      const m = measured.get(t)!;
      return { target: t.target, url: t.url, warmup: m.warmup, runs: m.runs, median: mediansOf(m.runs) };
    });
    const kg = sides.find((x) => x.target === "keygate")!;
    const ratios: ProxyRatio[] = sides
      .filter((x): x is ProxySide & { target: ProxyRatio["versus"] } => x.target !== "keygate")
      .map((x) => {
        const ratio: ProxyRatio = {
          versus: x.target,
          requestsPerSecond: round(kg.median.requestsPerSecond / x.median.requestsPerSecond, 3),
          p50: round(kg.median.p50Ms / x.median.p50Ms, 3),
          p99: round(kg.median.p99Ms / x.median.p99Ms, 3),
          proxyCpu: x.target === "direct" || x.median.serverCpuUs === null || kg.median.serverCpuUs === null ? null : round(x.median.serverCpuUs / kg.median.serverCpuUs, 3),
        };
        if (x.target === "undici") {
          ratio.goal = 0.9;
          ratio.met = ratio.requestsPerSecond >= 0.9;
        }
        return ratio;
      });
    return {
      method: {
        connections: s.connections,
        seconds: s.seconds,
        warmupSeconds: s.warmupSeconds,
        runs: s.runs,
        pinning: s.pinning,
        request: `GET ${PATH}, X-Api-Key: a RogerIQ kb:read key`,
        bodyBytes,
        limitsPerRequest: 3,
        undici: (requireHere("undici/package.json") as { version: string }).version,
        nginx: "missing" in nginx ? null : nginx.version,
        quietWaitSeconds: round(quietAtStart - quiet.seconds, 1),
      },
      sides,
      ratios,
      skipped,
    };
  } finally {
    await loadgen?.close();
    for (const child of children.reverse()) await stop(child);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The Markdown tables of a proxy benchmark result: medians per target, then keygate against each. */
export function proxyTable(result: ProxyBenchResult): string[] {
  const name: Record<ProxyTargetName, string> = {
    direct: "upstream, direct",
    undici: "bare undici proxy",
    signing: "bare undici proxy + identity headers",
    nginx: "nginx proxy_pass",
    keygate: "keygate (RogerIQ)",
  };
  const lines = [
    `| GET ${PATH} via | median req/s | p50 ms | p99 ms | req/s per run | proxy CPU µs/req | upstream CPU µs/req | proxy CPU | upstream CPU | loadgen CPU | other CPU |`,
    "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
  ];
  for (const x of result.sides) {
    const m = x.median;
    const up = x.target === "direct" ? { cpu: m.serverCpu, cpuUs: m.serverCpuUs } : (m.companions?.upstream ?? { cpu: null, cpuUs: null });
    const proxyUs = x.target === "direct" ? "–" : (m.serverCpuUs ?? "–");
    const proxyCpu = x.target === "direct" ? "–" : (m.serverCpu ?? "–");
    lines.push(
      `| ${name[x.target]} | ${m.requestsPerSecond} | ${m.p50Ms} | ${m.p99Ms} | ${x.runs.map((r) => r.requestsPerSecond).join(" / ")} | ${proxyUs} | ${up.cpuUs ?? "–"} | ${proxyCpu} | ${up.cpu ?? "–"} | ${m.loadgenCpu} | ${m.otherCpu ?? "–"} |`,
    );
  }
  lines.push("", "| keygate against | keygate / it, req/s | p50 keygate / it | p99 keygate / it | its proxy CPU / keygate's, per request | goal |", "|---|---:|---:|---:|---:|---|");
  for (const r of result.ratios) {
    const goal = r.goal === undefined ? "–" : `≥ ${r.goal} (req/s): ${r.met ? "met" : "not met"}`;
    lines.push(`| ${name[r.versus]} | ${r.requestsPerSecond} | ${r.p50} | ${r.p99} | ${r.proxyCpu ?? "–"} | ${goal} |`);
  }
  for (const s of result.skipped) lines.push("", `Skipped: ${s}`);
  return lines;
}

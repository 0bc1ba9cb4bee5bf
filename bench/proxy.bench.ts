/**
 * Proxy benchmark (issues 5 and 13): throughput and p50/p99 latency of a GET forwarded by keygate
 * to a portal's HTTP upstream — authentication, rate limits, scope check, the identity assertion,
 * forwarding — against, in the same run:
 *
 *   direct       the upstream itself, no proxy;
 *   undici       a bare reverse proxy (bench/servers/undici-proxy.ts): node:http and undici's
 *                dispatcher `stream`, the way and with the pool keygate uses, no checks;
 *   assertion    the same bare proxy adding what keygate's forwarding contract adds to every
 *                request (X-Request-Id, X-Forwarded-*, and X-Keygate-Identity: one assertion signed
 *                at start, sent as keygate sends a key's kept one), still with no checks;
 *   nginx        nginx `proxy_pass` with upstream keep-alive, one worker: the native ceiling.
 *                Skipped, with the command to install it, when there is no nginx (PATH,
 *                /usr/sbin/nginx, or BENCH_NGINX=<path>);
 *   keygate      `keygate serve` (the real CLI) with the RogerIQ profile;
 *   forwardauth  nginx in front of the upstream with keygate as its auth service: the
 *                configuration of docs/forward-auth/nginx.conf (one worker, no access log), asking
 *                the same keygate process (skipped without nginx).
 *
 * Goals (issue 13): keygate at no less than 0.9 of the bare proxy forwarding the same assertion;
 * nginx + forward-auth at no less than 1.5 × keygate's own proxy. keygate against the bare proxy
 * without the assertion and against nginx, and nginx + forward-auth against nginx alone, are
 * reported.
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

export type ProxyTargetName = "direct" | "undici" | "assertion" | "nginx" | "keygate" | "forwardauth";

export interface ProxySide {
  target: ProxyTargetName;
  url: string;
  warmup: HttpRun;
  runs: HttpRun[];
  /** serverCpu* is the proxy's (for direct: the upstream's); companions.upstream the upstream's behind a proxy. */
  median: MedianFigures;
}

export interface ProxyRatio {
  /** This target (keygate, or nginx + forward-auth) … */
  of: "keygate" | "forwardauth";
  /** … against this one. */
  versus: ProxyTargetName;
  /** of / versus, of the median req/s. */
  requestsPerSecond: number;
  p50: number;
  p99: number;
  /** versus / of, of the proxies' own CPU per request (null for direct, which has no proxy, and forward-auth, which is two). */
  proxyCpu: number | null;
  /** The goal, as a ratio of req/s: keygate ≥ 0.9 × the bare proxy with the assertion; nginx + forward-auth ≥ 1.5 × keygate. */
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

/**
 * docs/forward-auth/nginx.conf as the benchmark runs it: its ports, one worker, no access log, the
 * temporary files in its own directory; everything else as documented.
 */
function forwardAuthConfig(dir: string, port: number, keygatePort: number, upstreamPort: number): string {
  const documented = readFileSync(new URL("../docs/forward-auth/nginx.conf", import.meta.url), "utf8");
  const config = documented
    .replace("worker_processes auto;", `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;`)
    .replace("events {}", "events { worker_connections 4096; }")
    .replace(
      "http {",
      `http {\n    access_log off;\n    client_body_temp_path ${dir}/client_body;\n    proxy_temp_path ${dir}/proxy;\n    fastcgi_temp_path ${dir}/fastcgi;\n    uwsgi_temp_path ${dir}/uwsgi;\n    scgi_temp_path ${dir}/scgi;\n    keepalive_requests 1000000;`,
    )
    .replaceAll("127.0.0.1:8080", `127.0.0.1:${keygatePort}`)
    .replaceAll("127.0.0.1:3000", `127.0.0.1:${upstreamPort}`)
    .replace("listen 8000;", `listen 127.0.0.1:${port};`);
  if (!config.includes(`127.0.0.1:${keygatePort}`) || !config.includes(`listen 127.0.0.1:${port};`)) throw new Error("docs/forward-auth/nginx.conf: the documented addresses were not found");
  return config;
}

/** Starts nginx on a configuration made for its directory and port; resolves once `path` answers 200 through it. */
async function startNginx(binary: string, core: number | null, config: (dir: string, port: number) => string, path: string, what: string, headers: Record<string, string> = {}): Promise<{ process: ChildProcess; url: string }> {
  // Its own directory, readable by the worker (which drops to nobody when started as root).
  const dir = mkdtempSync(join(os.tmpdir(), "keygate-bench-nginx-"));
  chmodSync(dir, 0o755);
  const port = await freePort();
  writeFileSync(join(dir, "nginx.conf"), config(dir, port));
  const child = spawnPinned(core, binary, ["-p", `${dir}/`, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], "pipe");
  child.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  child.stdout!.resume();
  child.stderr!.resume();
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}${path}`, child, what, 15_000, headers);
  } catch (e) {
    const errors = existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8").slice(-2000) : "";
    await stop(child);
    throw new Error(`${(e as Error).message}\n${errors}`, { cause: e });
  }
  return { process: child, url };
}

/** Polls `url` until it answers 200 (nginx prints nothing when it is ready). */
async function waitForHttp(url: string, child: ChildProcess, what: string, timeoutMs = 15_000, headers: Record<string, string> = {}): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited early (${child.signalCode ?? child.exitCode})`);
    try {
      const r = await fetch(url, { headers });
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
    const assertion = spawnNode(core, [...s.profArgs, "bench/servers/undici-proxy.ts", upstreamUrl, "--identity"], "pipe");
    children.push(assertion);
    const assertionUrl = /listening (http:\/\/\S+)/.exec(await waitFor(assertion, /listening (http:\/\/\S+)/, "undici proxy with the assertion"))![1]!;

    const upstreamPort = Number(new URL(upstreamUrl).port);
    let plain: { process: ChildProcess; url: string } | undefined;
    if (!("missing" in nginx)) {
      plain = await startNginx(nginx.path, core, (dir, port) => nginxConfig(dir, port, upstreamPort), PATH, "nginx");
      children.push(plain.process);
    }

    const profileFile = join(tmp, "rogeriq-bench.json");
    writeFileSync(profileFile, JSON.stringify(benchProfile()));
    const dataDir = join(tmp, "data");
    const keygate = spawnNode(core, [...s.profArgs, "bin/keygate.js", "serve", "--data-dir", dataDir, "--port", "0", "--profile", profileFile, "--allow-upstream", "127.0.0.1"], "pipe");
    children.push(keygate);
    const keygateUrl = /keygate listening on (http:\/\/\S+)/.exec(await waitFor(keygate, /keygate listening on (http:\/\/\S+)/, "keygate serve"))![1]!;
    const key = await setUpKeygate(dataDir, profileFile, upstreamUrl);
    let forwardAuth: { process: ChildProcess; url: string } | undefined;
    if (!("missing" in nginx)) {
      const keygatePort = Number(new URL(keygateUrl).port);
      forwardAuth = await startNginx(nginx.path, core, (dir, port) => forwardAuthConfig(dir, port, keygatePort, upstreamPort), PATH, "nginx + keygate forward-auth", { "x-api-key": key });
      children.push(forwardAuth.process);
    }

    // Every target answers the same request with the upstream's body; keygate adds its headers.
    const expected = (await call("GET", `${upstreamUrl}${PATH}`, key)).text;
    const urls: Record<ProxyTargetName, string | undefined> = { direct: upstreamUrl, undici: undiciUrl, assertion: assertionUrl, nginx: plain?.url, keygate: keygateUrl, forwardauth: forwardAuth?.url };
    for (const [name, base] of Object.entries(urls)) {
      if (base === undefined) continue;
      const r = await call("GET", `${base}${PATH}`, key);
      if (r.status !== 200 || r.text !== expected) throw new Error(`${name}: GET ${PATH} answered ${r.status} ${r.text.slice(0, 300)}`);
      if ((name === "keygate" || name === "forwardauth") && (!r.headers.get("x-request-id") || (r.headers.get("ratelimit-policy")?.split(",").length ?? 0) !== 3)) {
        throw new Error(`${name}: expected X-Request-Id and 3 limits in RateLimit-Policy, got ${JSON.stringify(Object.fromEntries(r.headers))}`);
      }
    }

    loadgen = new LoadGenerator(s.pinning?.loadgen ?? null);
    // A process's CPU includes its children's (nginx's worker); forward-auth's keygate is a companion.
    const pids: Record<ProxyTargetName, number | undefined> = { direct: upstream.pid, undici: undici.pid, assertion: assertion.pid, nginx: plain?.process.pid, keygate: keygate.pid, forwardauth: forwardAuth?.process.pid };
    const targets: (LoadTarget & { target: ProxyTargetName })[] = (["direct", "undici", "assertion", "nginx", "keygate", "forwardauth"] as const)
      .filter((t) => urls[t] !== undefined)
      .map((t) => ({
        target: t,
        label: t.padEnd(11),
        url: `${urls[t]}${PATH}`,
        headers: { "x-api-key": key },
        pid: pids[t],
        companions: t === "direct" ? undefined : [{ name: "upstream", pid: upstream.pid }, ...(t === "forwardauth" ? [{ name: "keygate", pid: keygate.pid }] : [])],
      }));
    const measured = await interleave(loadgen, targets, s, quiet, log);

    const sides: ProxySide[] = targets.map((t) => {
      const m = measured.get(t)!;
      return { target: t.target, url: t.url, warmup: m.warmup, runs: m.runs, median: mediansOf(m.runs) };
    });
    const side = (t: ProxyTargetName) => sides.find((x) => x.target === t);
    const ratio = (of: "keygate" | "forwardauth", versus: ProxyTargetName, goal?: number): ProxyRatio | undefined => {
      const a = side(of);
      const b = side(versus);
      if (!a || !b) return undefined;
      const r: ProxyRatio = {
        of,
        versus,
        requestsPerSecond: round(a.median.requestsPerSecond / b.median.requestsPerSecond, 3),
        p50: round(a.median.p50Ms / b.median.p50Ms, 3),
        p99: round(a.median.p99Ms / b.median.p99Ms, 3),
        proxyCpu: of === "forwardauth" || versus === "direct" || b.median.serverCpuUs === null || a.median.serverCpuUs === null ? null : round(b.median.serverCpuUs / a.median.serverCpuUs, 3),
      };
      if (goal !== undefined) {
        r.goal = goal;
        r.met = r.requestsPerSecond >= goal;
      }
      return r;
    };
    const ratios = [
      ratio("keygate", "direct"),
      ratio("keygate", "undici"),
      ratio("keygate", "assertion", 0.9),
      ratio("keygate", "nginx"),
      ratio("forwardauth", "keygate", 1.5),
      ratio("forwardauth", "nginx"),
    ].filter((r): r is ProxyRatio => r !== undefined);
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
    assertion: "bare undici proxy + the same cached assertion",
    nginx: "nginx proxy_pass",
    keygate: "keygate (RogerIQ)",
    forwardauth: "nginx + keygate forward-auth",
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
  lines.push("", "| target | against | req/s, target / it | p50 target / it | p99 target / it | its proxy CPU / the target's, per request | goal |", "|---|---|---:|---:|---:|---:|---|");
  for (const r of result.ratios) {
    const goal = r.goal === undefined ? "–" : `≥ ${r.goal} (req/s): ${r.met ? "met" : "not met"}`;
    lines.push(`| ${name[r.of]} | ${name[r.versus]} | ${r.requestsPerSecond} | ${r.p50} | ${r.p99} | ${r.proxyCpu ?? "–"} | ${goal} |`);
  }
  for (const s of result.skipped) lines.push("", `Skipped: ${s}`);
  return lines;
}
